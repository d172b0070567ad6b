//! The key schema: the one place that knows how DynamoDB keys are written.
//!
//! Every key starts with the tenant (`T#<tenant>#`), so no query built here can
//! reach another tenant's items. `#` cannot occur inside an id (see `domain::ids`).
//!
//! | table      | pk                         | sk                 | item                  |
//! |------------|----------------------------|--------------------|-----------------------|
//! | events     | `T#<tenant>#A#<account>`   | `E#<event id>`     | one event             |
//! | aggregates | `T#<tenant>#A#<account>`   | `H#<yyyy-mm-ddThh>`| one account-hour      |
//! | aggregates | `T#<tenant>#A#<account>`   | `D#<yyyy-mm-dd>`   | one account-day       |
//! | aggregates | `T#<tenant>#A#<account>`   | `M#<yyyy-mm>`      | one account-month (and its endpoint templates) |
//! | aggregates | `T#<tenant>#A#<account>`   | `X#<time>#<event id>` | a support or billing event, for the account page |
//! | aggregates | `T#<tenant>#ACCOUNTS`      | `A#<account>`      | the account: its contract and open tickets |
//! | subjects   | `T#<tenant>#U#<lookup>`    | -                  | one data subject      |
//! | tenants    | `T#<tenant>`               | `TENANT`           | the tenant            |
//! | tenants    | `T#<tenant>`               | `KEY#<key id>`     | one API key           |
//! | tenants    | `T#<tenant>`               | `EXPORT#<yyyy-mm>` | a month's export run and checkpoint |
//! | tenants    | `T#<tenant>`               | `PURGE`            | the lease of the purge run working on the tenant |
//! | privacy    | `T#<tenant>#PRIVACY`       | `R#<request id>`   | one data subject request |
//! | privacy    | `T#<tenant>#PRIVACY`       | `O#<type>[#<purpose>]#<pseudonym>` | the open request of a type for a subject |
//! | privacy    | `T#<tenant>#PRIVACY`       | `X#<suppression marker>` | an erasure a restore must re-apply |
//! | alerts     | `T#<tenant>#ALERTCONF`     | `RULES` / `WEBHOOK` / `SILENCE#<id>` | the tenant's alert rules, webhook, silences |
//! | alerts     | `T#<tenant>#ALERTSTATE`    | `A#<account>`      | an account's pending and firing alerts |
//! | alerts     | `T#<tenant>#ALERTS`        | `F#<account>#<fired at>#<rule>` | one alert that fired (the history) |
//! | alerts     | `T#<tenant>#NOTIFY`        | `N#<created at>#<id>` | one notification and its delivery |
//! | alerts     | `T#<tenant>#OUTBOX`        | `P#<created at>#<id>` | a notification not yet delivered everywhere |
//! | audit      | `T#<tenant>#AUDIT`         | `S#<seq, 12 digits>`| one audit entry      |
//! | audit      | `T#<tenant>#AUDITCHECK`    | `VERIFIED`         | the last verified anchor's sequence |
//! | audit      | `T#<tenant>#RETENTION`     | `D#<run start>#<run id>#<seq>` | one destruction record (proof of a purge) |
//!
//! Objects in the data bucket: `privacy/<tenant>/<request id>/<file>`, the
//! bundle of an access or portability request (expires after 7 days);
//! `exports/<tenant>/<yyyy-mm>/manifest.json` and
//! `exports/<tenant>/<yyyy-mm>/run-<run id>/{features,events}/part-<shard>.parquet`,
//! a month's re-training dataset (expires after 395 days).
//!
//! Objects in the audit anchor bucket: `anchors/<tenant>/<seq, 20 digits>_<hash>`,
//! one per anchored chain head (the listing alone tells every anchor).
//!
//! Sparse global secondary indexes (docs/decisions/0010):
//!
//! | table    | index        | pk attribute  | pk                                   | sk   |
//! |----------|--------------|---------------|--------------------------------------|------|
//! | events   | `by_subject` | `subject_key` | `T#<tenant>#S#<pseudonym>`           | `ts` |
//! | events   | `by_month`   | `month_key`   | `T#<tenant>#M#<yyyy-mm>#<shard 00-15>`| `ts` |
//! | subjects | `by_state`   | `state_key`   | `T#<tenant>#STATE`                   | `subject_id` |
//! | subjects | `by_pseudonym` | `subject_key` | `T#<tenant>#S#<pseudonym>`         | -    |
//! | aggregates | `by_expiry` | `expiry_key` | `T#<tenant>#EXPIRY`                   | `purge_at` |
//!
//! `by_pseudonym` (KEYS_ONLY) finds a person's record from the pseudonym their
//! events carry, so the purge can delete a record whose last event it deleted.
//! `by_expiry` (KEYS_ONLY) holds the directory entries of accounts with an end
//! date (or whose items still carry an old one): `purge_at` is when the purge
//! must next act on the account (docs/decisions/0019).

use time::{Date, OffsetDateTime};

use crate::domain::rollup::{day_label, month_label};
use crate::domain::{AccountId, EventId, HourBucket, SubjectId, TenantId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";

pub const BY_SUBJECT: &str = "by_subject";
pub const SUBJECT_KEY: &str = "subject_key";
pub const BY_MONTH: &str = "by_month";
pub const MONTH_KEY: &str = "month_key";
pub const BY_STATE: &str = "by_state";
pub const STATE_KEY: &str = "state_key";
pub const BY_PSEUDONYM: &str = "by_pseudonym";
pub const BY_EXPIRY: &str = "by_expiry";
pub const EXPIRY_KEY: &str = "expiry_key";
pub const PURGE_AT: &str = "purge_at";
/// Partitions of a tenant-month in `by_month`: one would cap a tenant's write rate.
pub const MONTH_SHARDS: u32 = 16;

pub fn subject_index_pk(tenant: &TenantId, subject: &SubjectId) -> String {
    format!("T#{tenant}#S#{}", subject.as_str())
}

/// `month` is `yyyy-mm`; the shard is a stable hash of the account (FNV-1a),
/// so one account's events of a month share a partition.
pub fn month_index_pk(tenant: &TenantId, month: &str, account: &AccountId) -> String {
    month_shard_pk(tenant, month, month_shard(account))
}

pub fn month_shard_pk(tenant: &TenantId, month: &str, shard: u32) -> String {
    format!("T#{tenant}#M#{month}#{shard:02}")
}

pub fn month_shard(account: &AccountId) -> u32 {
    let hash = account.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % MONTH_SHARDS
}

/// The partition of `by_expiry` holding a tenant's accounts with an end date.
pub fn expiry_index_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#EXPIRY")
}

/// The partition of a tenant's destruction records (in the audit table).
pub fn retention_records_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#RETENTION")
}

pub const RECORD_SK_PREFIX: &str = "D#";

pub fn retention_record_sk(record_id: &str) -> String {
    format!("{RECORD_SK_PREFIX}{record_id}")
}

/// Every partition a tenant holds in a table other than its accounts' and
/// subjects' (those are found through the directory and a prefix), for the
/// tenant's offboarding. The destruction records' partition is not listed: it
/// is the proof and stays until its own expiry.
pub fn tenant_partitions(tenant: &TenantId) -> [(&'static str, String); 10] {
    [
        ("PrivacyTable", privacy_pk(tenant)),
        ("AlertsTable", alert_config_pk(tenant)),
        ("AlertsTable", alert_state_pk(tenant)),
        ("AlertsTable", alert_history_pk(tenant)),
        ("AlertsTable", notification_pk(tenant)),
        ("AlertsTable", outbox_pk(tenant)),
        ("AuditTable", audit_pk(tenant)),
        ("AuditTable", audit_checkpoint_pk(tenant)),
        ("AggregatesTable", accounts_pk(tenant)),
        ("TenantsTable", tenant_pk(tenant)),
    ]
}

/// The data bucket's folders of a tenant: its re-training datasets and bundles.
pub fn tenant_exports_prefix(tenant: &TenantId) -> String {
    format!("exports/{tenant}/")
}

pub fn tenant_bundles_prefix(tenant: &TenantId) -> String {
    format!("privacy/{tenant}/")
}

pub fn state_index_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#STATE")
}

pub fn account_pk(tenant: &TenantId, account: &AccountId) -> String {
    format!("T#{tenant}#A#{account}")
}

pub fn event_sk(id: &EventId) -> String {
    format!("E#{id}")
}

/// The account of an account partition key of `tenant`.
pub fn account_of_pk<'a>(tenant: &TenantId, pk: &'a str) -> Option<&'a str> {
    pk.strip_prefix(&tenant_prefix(tenant))?.strip_prefix("A#")
}

pub fn event_id_of_sk(sk: &str) -> Option<&str> {
    sk.strip_prefix("E#")
}

pub fn aggregate_sk(hour: HourBucket) -> String {
    format!("H#{}", hour.label())
}

/// The hour label of an aggregate's sort key.
pub fn aggregate_hour(sk: &str) -> Option<&str> {
    sk.strip_prefix("H#")
}

pub const DAY_SK_PREFIX: &str = "D#";
pub const MONTH_SK_PREFIX: &str = "M#";
pub const ACTIVITY_SK_PREFIX: &str = "X#";

pub fn day_sk(day: Date) -> String {
    format!("{DAY_SK_PREFIX}{}", day_label(day))
}

pub fn month_sk(day: Date) -> String {
    format!("{MONTH_SK_PREFIX}{}", month_label(day))
}

/// A support or billing event's copy on its account: by time (whole seconds,
/// fixed width, so text order is time order), then id.
pub fn activity_sk(time: OffsetDateTime, id: &EventId) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{ACTIVITY_SK_PREFIX}{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z#{id}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The partition of a tenant's account directory.
pub fn accounts_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#ACCOUNTS")
}

pub fn account_entry_sk(account: &AccountId) -> String {
    format!("A#{account}")
}

pub fn account_of_entry_sk(sk: &str) -> Option<&str> {
    sk.strip_prefix("A#")
}

/// `lookup` is the hex HMAC of the user id (see `crypto::SubjectLookup`), never the id itself.
pub fn subject_pk(tenant: &TenantId, lookup: &str) -> String {
    format!("T#{tenant}#U#{lookup}")
}

/// The partition of a tenant's privacy requests, open-request locks and suppression markers.
pub fn privacy_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#PRIVACY")
}

pub const REQUEST_SK_PREFIX: &str = "R#";
pub const LOCK_SK_PREFIX: &str = "O#";
pub const MARKER_SK_PREFIX: &str = "X#";

pub fn request_sk(request_id: &str) -> String {
    format!("{REQUEST_SK_PREFIX}{request_id}")
}

/// One open request per type (and purpose) per subject.
pub fn lock_sk(kind: &str, purpose: Option<&str>, subject: &SubjectId) -> String {
    match purpose {
        Some(p) => format!("{LOCK_SK_PREFIX}{kind}#{p}#{}", subject.as_str()),
        None => format!("{LOCK_SK_PREFIX}{kind}#{}", subject.as_str()),
    }
}

pub fn marker_sk(marker: &str) -> String {
    format!("{MARKER_SK_PREFIX}{marker}")
}

/// The data bucket's folder of one request's bundle.
pub fn bundle_prefix(tenant: &TenantId, request_id: &str) -> String {
    format!("privacy/{tenant}/{request_id}/")
}

/// A tenant's alert rules, webhook and silences: one query reads them all.
pub fn alert_config_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#ALERTCONF")
}

pub const ALERT_RULES_SK: &str = "RULES";
pub const WEBHOOK_SK: &str = "WEBHOOK";
pub const SILENCE_SK_PREFIX: &str = "SILENCE#";

pub fn silence_sk(id: &str) -> String {
    format!("{SILENCE_SK_PREFIX}{id}")
}

pub fn alert_state_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#ALERTSTATE")
}

pub fn alert_state_sk(account: &AccountId) -> String {
    format!("A#{account}")
}

pub fn alert_history_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#ALERTS")
}

/// `fired_at` in whole-second RFC 3339 (sorts as time); an account's alerts are contiguous.
pub fn alert_history_sk(account: &AccountId, fired_at: &str, rule: &str) -> String {
    format!("F#{account}#{fired_at}#{rule}")
}

pub fn alert_history_prefix(account: Option<&AccountId>) -> String {
    match account {
        Some(account) => format!("F#{account}#"),
        None => "F#".to_owned(),
    }
}

pub fn notification_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#NOTIFY")
}

pub fn notification_sk(created_at: &str, id: &str) -> String {
    format!("N#{created_at}#{id}")
}

pub fn outbox_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#OUTBOX")
}

pub fn outbox_sk(created_at: &str, id: &str) -> String {
    format!("P#{created_at}#{id}")
}

pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub const TENANT_SK: &str = "TENANT";

/// The tenant of a tenants-table partition key (`T#<tenant>`).
pub fn tenant_of_pk(pk: &str) -> Option<&str> {
    pk.strip_prefix("T#").filter(|t| !t.contains('#'))
}
pub const KEY_SK_PREFIX: &str = "KEY#";

/// The lease of the purge run working on a tenant (only while it runs).
pub const PURGE_LEASE_SK: &str = "PURGE";

/// A month's export run record, in the tenant's partition of the tenants table.
pub fn export_run_sk(month: &str) -> String {
    format!("EXPORT#{month}")
}

/// Where a tenant's month is exported: `exports/<tenant>/<yyyy-mm>/`; the
/// manifest sits there, each run's files under `run-<id>/`.
pub fn export_prefix(tenant: &TenantId, month: &str) -> String {
    format!("exports/{tenant}/{month}/")
}

pub fn export_manifest_key(tenant: &TenantId, month: &str) -> String {
    format!("{}manifest.json", export_prefix(tenant, month))
}

pub fn export_run_prefix(tenant: &TenantId, month: &str, run_id: &str) -> String {
    format!("{}run-{run_id}/", export_prefix(tenant, month))
}

pub fn export_file_key(
    tenant: &TenantId,
    month: &str,
    run_id: &str,
    table: &str,
    shard: u32,
) -> String {
    format!(
        "{}{table}/part-{shard:02}.parquet",
        export_run_prefix(tenant, month, run_id)
    )
}

pub fn api_key_sk(key_id: &str) -> String {
    format!("{KEY_SK_PREFIX}{key_id}")
}

pub fn audit_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#AUDIT")
}

/// Zero-padded so that entries sort by sequence.
pub fn audit_sk(seq: u64) -> String {
    format!("S#{seq:012}")
}

pub fn audit_seq(sk: &str) -> Option<u64> {
    sk.strip_prefix("S#")?.parse().ok()
}

pub fn audit_checkpoint_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#AUDITCHECK")
}

pub const AUDIT_CHECKPOINT_SK: &str = "VERIFIED";

/// The anchor bucket's folder of a tenant.
pub fn anchor_prefix(tenant: &TenantId) -> String {
    format!("anchors/{tenant}/")
}

/// The object that anchors a chain head.
pub fn anchor_key(tenant: &TenantId, seq: u64, hash: &str) -> String {
    format!("anchors/{tenant}/{seq:020}_{hash}")
}

/// Lists from here to get the anchors at `seq` and after (`~` sorts after digits and `_`).
pub fn anchor_list_start(tenant: &TenantId, seq: u64) -> String {
    match seq.checked_sub(1) {
        Some(before) => format!("anchors/{tenant}/{before:020}~"),
        None => anchor_prefix(tenant),
    }
}

/// `(seq, hash)` of an anchor object's key under `prefix`.
pub fn anchor_of_key<'a>(prefix: &str, key: &'a str) -> Option<(u64, &'a str)> {
    let (seq, hash) = key.strip_prefix(prefix)?.split_once('_')?;
    let well_formed =
        seq.len() == 20 && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(())?;
    Some((seq.parse().ok()?, hash))
}

/// The prefix every key of a tenant starts with.
pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("T#{tenant}#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_starts_with_the_tenant() {
        let tenant = TenantId::parse("t1").expect("tenant");
        let account = AccountId::parse("acme").expect("account");
        let prefix = tenant_prefix(&tenant);
        assert_eq!(account_pk(&tenant, &account), "T#t1#A#acme");
        assert!(account_pk(&tenant, &account).starts_with(&prefix));
        assert!(subject_pk(&tenant, "ab12").starts_with(&prefix));
        assert_eq!(event_sk(&EventId::parse("e-1").expect("id")), "E#e-1");
        assert_eq!(account_of_pk(&tenant, "T#t1#A#acme"), Some("acme"));
        assert_eq!(account_of_pk(&tenant, "T#t2#A#acme"), None);
        assert_eq!(event_id_of_sk("E#e-1"), Some("e-1"));
        assert!(audit_pk(&tenant).starts_with(&prefix));
        assert!(tenant_pk(&tenant).starts_with(&prefix[..prefix.len() - 1]));
        assert_eq!(audit_seq(&audit_sk(42)), Some(42));
        let hash = "ab".repeat(32);
        let key = anchor_key(&tenant, 42, &hash);
        let folder = anchor_prefix(&tenant);
        assert_eq!(anchor_of_key(&folder, &key), Some((42, hash.as_str())));
        assert!(anchor_list_start(&tenant, 42) < key);
        assert!(anchor_list_start(&tenant, 43) > key);
        assert!(anchor_list_start(&tenant, 0) < key);
        assert!(state_index_pk(&tenant).starts_with(&prefix));
        assert!(privacy_pk(&tenant).starts_with(&prefix));
        let subject = SubjectId::from_stored("s_1".into());
        assert_eq!(
            lock_sk("objection", Some("alerting"), &subject),
            "O#objection#alerting#s_1"
        );
        assert_eq!(bundle_prefix(&tenant, "pr_1"), "privacy/t1/pr_1/");
        // FNV-1a of "acme" is 0x45fd71af (computed apart, in Python); mod 16 = 15.
        assert_eq!(
            month_index_pk(&tenant, "2026-11", &account),
            "T#t1#M#2026-11#15"
        );
        assert!(audit_sk(9) < audit_sk(10));
        assert!(accounts_pk(&tenant).starts_with(&prefix));
        assert_ne!(accounts_pk(&tenant), account_pk(&tenant, &account));
        let day = time::macros::date!(2026 - 03 - 01);
        assert_eq!(day_sk(day), "D#2026-03-01");
        assert_eq!(month_sk(day), "M#2026-03");
        let id = EventId::parse("e-1").expect("id");
        let at = time::macros::datetime!(2026-11-01 10:00:00.5 +01:00);
        assert_eq!(activity_sk(at, &id), "X#2026-11-01T09:00:00Z#e-1");
        // Every rollup kind sorts apart: D# < H# < M# < X#.
        assert!(day_sk(day) < aggregate_sk(HourBucket::of(at)));
        assert!(aggregate_sk(HourBucket::of(at)) < month_sk(day));
        assert!(month_sk(day) < activity_sk(at, &id));
    }
}
