//! Retention: the one place that decides how long each kind of stored item is
//! kept and when it expires (docs/decisions/0010).
//!
//! Items whose end is known when they are written carry `expires_at` from the
//! start; items kept for the customer relationship get theirs when it ends.
//! Reads treat an expired item as absent: DynamoDB TTL deletes days late, and the
//! emulator never does.

use time::{Date, Duration, OffsetDateTime};

/// Every kind of item vigil stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredItem {
    AuditEntry,
    RawEvent,
    HourlyAggregate,
    Subject,
    Account,
    Tenant,
    ApiKey,
    /// A data subject request and its receipt, kept as proof once closed.
    PrivacyRequest,
    /// What a restore from backup needs to re-apply an erasure.
    SuppressionMarker,
    /// An access or portability bundle in the data bucket (a bucket lifecycle rule).
    PrivacyBundle,
    /// A tenant's alert rules and webhook.
    AlertSettings,
    /// A silence of alerts (it ends at most `MAX_SILENCE` after it is made).
    AlertSilence,
    /// An account's pending and firing alerts.
    AlertState,
    /// An alert that fired, and when it resolved.
    AlertHistory,
    /// A notification sent (or being sent) and how its delivery went.
    AlertNotification,
    /// A month's re-training dataset in the data bucket (a bucket lifecycle rule).
    ExportDataset,
    /// The record (and checkpoint) of a month's export run.
    ExportRun,
    /// What a purge deleted, as proof of supervised destruction (no personal data).
    DestructionRecord,
}

/// How long a kind of item is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A fixed time after it is written.
    AfterWrite(Duration),
    /// The tenant's raw-event retention, counted from the event's own time.
    RawEventRetention,
    /// For the customer relationship, then `AFTER_RELATIONSHIP`.
    Relationship,
    /// As long as the tenant's contract, then `AFTER_RELATIONSHIP` (the tenant's
    /// offboarding; access management: keys have their own validity).
    Contract,
    /// Until the person's last event is deleted (raw-event retention or the
    /// account's purge), unless the record holds what they asked (a restriction,
    /// an objection, an erasure, a directive): then until the tenant leaves.
    UntilLastEvent,
}

/// Audit entries are kept one year.
pub const AUDIT_RETENTION: Duration = Duration::days(365);
/// Closed privacy requests (and their receipts) are kept 3 years: the time a
/// claim about how a right was answered can be brought (French civil limitation
/// is 5 years for contracts; the CNIL's guidance for proof of rights is 3 years).
pub const PRIVACY_REQUEST_RETENTION: Duration = Duration::days(3 * 365 + 1);
/// Suppression markers outlive every backup that predates the erasure: point-in-
/// time recovery keeps 35 days; a year also covers a yearly on-demand backup.
pub const SUPPRESSION_MARKER_RETENTION: Duration = Duration::days(365);
/// Point-in-time recovery keeps deleted items this long (DynamoDB's maximum).
pub const BACKUP_WINDOW: Duration = Duration::days(35);
/// Bundles are downloadable for 7 days (the data bucket's lifecycle rule), then
/// deleted; a link to one expires after `BUNDLE_LINK`.
pub const PRIVACY_BUNDLE_RETENTION: Duration = Duration::days(7);
pub const BUNDLE_LINK: Duration = Duration::hours(1);

/// A silence lasts at most 90 days; it is kept 30 days after the longest one ends.
pub const MAX_SILENCE: Duration = Duration::days(90);
pub const ALERT_SILENCE_RETENTION: Duration = Duration::days(120);
/// Alerts that fired: 13 months, so that a year can be compared with the last.
pub const ALERT_HISTORY_RETENTION: Duration = Duration::days(395);
/// Notifications and their delivery record: 30 days (long enough to look into a
/// failed delivery; the alert history keeps what fired).
pub const ALERT_NOTIFICATION_RETENTION: Duration = Duration::days(30);

/// Re-training datasets: 13 months, so a model can be trained on a full year
/// and compared with the year before; the run records that made them as long.
/// A replaced dataset's files stay one day as noncurrent versions (a reader
/// holding the old manifest can finish), then the bucket deletes them.
pub const EXPORT_RETENTION: Duration = Duration::days(395);

/// The privacy policy's ceiling: the relationship plus 3 years.
pub const AFTER_RELATIONSHIP: Duration = Duration::days(3 * 365 + 1);

/// Destruction records are proof, kept as long as a closed privacy request's
/// receipt (the time a claim can be brought), then deleted by TTL.
pub const DESTRUCTION_RECORD_RETENTION: Duration = PRIVACY_REQUEST_RETENTION;

/// How far ahead the operator's "due for deletion" listing looks.
pub const DUE_WINDOW: Duration = Duration::days(30);

impl StoredItem {
    pub const ALL: [StoredItem; 18] = [
        StoredItem::AuditEntry,
        StoredItem::RawEvent,
        StoredItem::HourlyAggregate,
        StoredItem::Subject,
        StoredItem::Account,
        StoredItem::Tenant,
        StoredItem::ApiKey,
        StoredItem::PrivacyRequest,
        StoredItem::SuppressionMarker,
        StoredItem::PrivacyBundle,
        StoredItem::AlertSettings,
        StoredItem::AlertSilence,
        StoredItem::AlertState,
        StoredItem::AlertHistory,
        StoredItem::AlertNotification,
        StoredItem::ExportDataset,
        StoredItem::ExportRun,
        StoredItem::DestructionRecord,
    ];

    /// The name the register of processing uses for this kind of item.
    pub fn register_name(self) -> &'static str {
        match self {
            StoredItem::AuditEntry => "audit_entry",
            StoredItem::RawEvent => "raw_event",
            StoredItem::HourlyAggregate => "rollup",
            StoredItem::Subject => "subject",
            StoredItem::Account => "account",
            StoredItem::Tenant => "tenant",
            StoredItem::ApiKey => "api_key",
            StoredItem::PrivacyRequest => "privacy_request",
            StoredItem::SuppressionMarker => "suppression_marker",
            StoredItem::PrivacyBundle => "privacy_bundle",
            StoredItem::AlertSettings => "alert_settings",
            StoredItem::AlertSilence => "alert_silence",
            StoredItem::AlertState => "alert_state",
            StoredItem::AlertHistory => "alert_history",
            StoredItem::AlertNotification => "alert_notification",
            StoredItem::ExportDataset => "export_dataset",
            StoredItem::ExportRun => "export_run",
            StoredItem::DestructionRecord => "destruction_record",
        }
    }

    pub fn rule(self) -> Rule {
        match self {
            StoredItem::AuditEntry => Rule::AfterWrite(AUDIT_RETENTION),
            StoredItem::RawEvent => Rule::RawEventRetention,
            StoredItem::Subject => Rule::UntilLastEvent,
            StoredItem::HourlyAggregate | StoredItem::Account | StoredItem::AlertState => {
                Rule::Relationship
            }
            StoredItem::Tenant | StoredItem::ApiKey | StoredItem::AlertSettings => Rule::Contract,
            StoredItem::AlertSilence => Rule::AfterWrite(ALERT_SILENCE_RETENTION),
            StoredItem::AlertHistory => Rule::AfterWrite(ALERT_HISTORY_RETENTION),
            StoredItem::AlertNotification => Rule::AfterWrite(ALERT_NOTIFICATION_RETENTION),
            StoredItem::PrivacyRequest => Rule::AfterWrite(PRIVACY_REQUEST_RETENTION),
            StoredItem::SuppressionMarker => Rule::AfterWrite(SUPPRESSION_MARKER_RETENTION),
            StoredItem::PrivacyBundle => Rule::AfterWrite(PRIVACY_BUNDLE_RETENTION),
            StoredItem::ExportDataset | StoredItem::ExportRun => Rule::AfterWrite(EXPORT_RETENTION),
            StoredItem::DestructionRecord => Rule::AfterWrite(DESTRUCTION_RECORD_RETENTION),
        }
    }
}

/// A tenant's raw-event retention, in days: 395 (13 months) by default; a tenant
/// may lower it to 62 days, never raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEventRetention(u16);

impl RawEventRetention {
    pub const DEFAULT_DAYS: u16 = 395;
    pub const MIN_DAYS: u16 = 62;

    pub fn days(days: i64) -> Option<Self> {
        u16::try_from(days)
            .ok()
            .filter(|d| (Self::MIN_DAYS..=Self::DEFAULT_DAYS).contains(d))
            .map(Self)
    }

    pub fn as_days(self) -> u16 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::days(i64::from(self.0))
    }
}

impl Default for RawEventRetention {
    fn default() -> Self {
        Self(Self::DEFAULT_DAYS)
    }
}

/// When an item expires, if that is known when it is written. `from` is the time
/// its retention counts from: the event's own time for a raw event, the time it
/// is written for anything else.
pub fn expires_at(
    item: StoredItem,
    from: OffsetDateTime,
    raw_events: RawEventRetention,
) -> Option<OffsetDateTime> {
    match item.rule() {
        Rule::AfterWrite(keep) => Some(from + keep),
        Rule::RawEventRetention => Some(from + raw_events.duration()),
        Rule::Relationship | Rule::Contract | Rule::UntilLastEvent => None,
    }
}

/// When an item kept for the relationship expires, once the relationship has ended.
pub fn after_relationship(ended: OffsetDateTime) -> OffsetDateTime {
    ended + AFTER_RELATIONSHIP
}

/// When what a contract kept expires, given its last day (an account's
/// `relationship_end`, a tenant's `contract_end`): 3 years after that day is over.
pub fn after_last_day(last_day: Date) -> OffsetDateTime {
    let ended = last_day
        .next_day()
        .unwrap_or(last_day)
        .midnight()
        .assume_utc();
    after_relationship(ended)
}

/// Whether an item with this expiry (epoch seconds, as stored) is still to be read.
pub fn is_live(expires_at: Option<i64>, now: OffsetDateTime) -> bool {
    expires_at.is_none_or(|at| at > now.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn every_item_has_a_rule_and_only_known_ends_expire_at_write() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let event_time = datetime!(2026-11-28 08:00 UTC);
        let default = RawEventRetention::default();
        let expiry = |item| expires_at(item, now, default);
        assert_eq!(
            expiry(StoredItem::AuditEntry),
            Some(datetime!(2027-11-29 12:00 UTC))
        );
        // 395 days after the event's own time, not after it was received.
        assert_eq!(
            expires_at(StoredItem::RawEvent, event_time, default),
            Some(datetime!(2027-12-28 08:00 UTC))
        );
        assert_eq!(StoredItem::Subject.rule(), Rule::UntilLastEvent);
        assert_eq!(expiry(StoredItem::Subject), None);
        for item in [StoredItem::HourlyAggregate, StoredItem::Account] {
            assert_eq!(item.rule(), Rule::Relationship);
            assert_eq!(expiry(item), None);
        }
        assert_eq!(expiry(StoredItem::ApiKey), None);
        // A month's dataset and its run record: 13 months after they are written.
        let written = datetime!(2026-12-01 02:00 UTC);
        for item in [StoredItem::ExportDataset, StoredItem::ExportRun] {
            assert_eq!(
                expires_at(item, written, default),
                Some(datetime!(2027-12-31 02:00 UTC))
            );
        }
        assert_eq!(
            expiry(StoredItem::DestructionRecord),
            Some(datetime!(2029-11-29 12:00 UTC))
        );
        assert_eq!(StoredItem::ALL.len(), 18);
        assert_eq!(
            after_relationship(datetime!(2026-12-31 00:00 UTC)),
            datetime!(2029-12-31 00:00 UTC)
        );
    }

    #[test]
    fn a_tenant_may_lower_raw_event_retention_but_not_raise_it() {
        assert_eq!(RawEventRetention::days(62).map(|r| r.as_days()), Some(62));
        assert_eq!(RawEventRetention::days(395).map(|r| r.as_days()), Some(395));
        assert_eq!(RawEventRetention::days(61), None);
        assert_eq!(RawEventRetention::days(396), None);
        assert_eq!(RawEventRetention::days(-1), None);
        let short = RawEventRetention::days(90).expect("90 days");
        let t = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(
            expires_at(StoredItem::RawEvent, t, short),
            Some(datetime!(2026-04-01 00:00 UTC))
        );
    }

    #[test]
    fn a_contract_keeps_its_data_three_years_after_its_last_day() {
        // Ends 2026-12-31: the day is over at 2027-01-01 00:00, plus 1,096 days.
        assert_eq!(
            after_last_day(time::macros::date!(2026 - 12 - 31)),
            datetime!(2030-01-01 00:00 UTC)
        );
    }

    #[test]
    fn expired_items_are_not_live() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let at = now.unix_timestamp();
        assert!(is_live(None, now));
        assert!(is_live(Some(at + 1), now));
        assert!(!is_live(Some(at), now));
        assert!(!is_live(Some(at - 86_400), now));
    }
}
