//! The key schema: the one place that knows how DynamoDB keys are written.
//!
//! Every key starts with the tenant (`T#<tenant>#`), so no query built here can
//! reach another tenant's items. `#` cannot occur inside an id (see `domain::ids`).
//!
//! | table      | pk                         | sk                 | item                  |
//! |------------|----------------------------|--------------------|-----------------------|
//! | events     | `T#<tenant>#A#<account>`   | `E#<event id>`     | one event             |
//! | aggregates | `T#<tenant>#A#<account>`   | `H#<yyyy-mm-ddThh>`| one account-hour      |
//! | subjects   | `T#<tenant>#U#<lookup>`    | -                  | one data subject      |
//! | tenants    | `T#<tenant>`               | `TENANT`           | the tenant            |
//! | tenants    | `T#<tenant>`               | `KEY#<key id>`     | one API key           |
//! | audit      | `T#<tenant>#AUDIT`         | `S#<seq, 12 digits>`| one audit entry      |
//!
//! Sparse global secondary indexes (docs/decisions/0010):
//!
//! | table    | index        | pk attribute  | pk                                   | sk   |
//! |----------|--------------|---------------|--------------------------------------|------|
//! | events   | `by_subject` | `subject_key` | `T#<tenant>#S#<pseudonym>`           | `ts` |
//! | events   | `by_month`   | `month_key`   | `T#<tenant>#M#<yyyy-mm>#<shard 00-15>`| `ts` |
//! | subjects | `by_state`   | `state_key`   | `T#<tenant>#STATE`                   | `subject_id` |

use crate::domain::{AccountId, EventId, HourBucket, SubjectId, TenantId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";

pub const BY_SUBJECT: &str = "by_subject";
pub const SUBJECT_KEY: &str = "subject_key";
pub const BY_MONTH: &str = "by_month";
pub const MONTH_KEY: &str = "month_key";
pub const BY_STATE: &str = "by_state";
pub const STATE_KEY: &str = "state_key";
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

fn month_shard(account: &AccountId) -> u32 {
    let hash = account.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % MONTH_SHARDS
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

/// `lookup` is the hex HMAC of the user id (see `crypto::SubjectLookup`), never the id itself.
pub fn subject_pk(tenant: &TenantId, lookup: &str) -> String {
    format!("T#{tenant}#U#{lookup}")
}

pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub const TENANT_SK: &str = "TENANT";
pub const KEY_SK_PREFIX: &str = "KEY#";

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
        assert!(state_index_pk(&tenant).starts_with(&prefix));
        // FNV-1a of "acme" is 0x45fd71af (computed apart, in Python); mod 16 = 15.
        assert_eq!(
            month_index_pk(&tenant, "2026-11", &account),
            "T#t1#M#2026-11#15"
        );
        assert!(audit_sk(9) < audit_sk(10));
    }
}
