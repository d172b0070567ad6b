//! The retention purge's vocabulary (docs/decisions/0019): the classes of data
//! it destroys, under which policy, and the destruction record it leaves as
//! proof. Counts, classes, ids of business accounts and time windows only: a
//! record never holds personal data.

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::retention::{self, RawEventRetention};
use super::rollup;

/// What one unit of purge work destroys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// An account 3 years after its relationship ended: its events, rollups,
    /// activity copies, alert state and history, directory entry, and the
    /// subjects left without any event.
    Account,
    /// Events past the tenant's raw-event retention (with their activity copies
    /// and the subjects left without any event).
    RawEvents,
    /// Re-training datasets 395 days after they were written (every version).
    ExportDatasets,
    /// Access and portability bundles 7 days after they were written (every version).
    PrivacyBundles,
    /// Everything of a tenant 3 years after its contract ended.
    Tenant,
}

impl DataClass {
    pub const ALL: [DataClass; 5] = [
        DataClass::Account,
        DataClass::RawEvents,
        DataClass::ExportDatasets,
        DataClass::PrivacyBundles,
        DataClass::Tenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Account => "account",
            DataClass::RawEvents => "raw_events",
            DataClass::ExportDatasets => "export_datasets",
            DataClass::PrivacyBundles => "privacy_bundles",
            DataClass::Tenant => "tenant",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The rule of the retention module the class applies, as the record states it.
    pub fn policy(self) -> &'static str {
        match self {
            DataClass::Account => "relationship_end + 1096 days",
            DataClass::RawEvents => "event time + the tenant's raw_event_days",
            DataClass::ExportDatasets => "written + 395 days",
            DataClass::PrivacyBundles => "written + 7 days",
            DataClass::Tenant => "contract_end + 1096 days",
        }
    }

    /// How old an object of this class must be to go (the object classes only).
    pub fn object_age(self) -> Option<Duration> {
        match self {
            DataClass::ExportDatasets => Some(retention::EXPORT_RETENTION),
            DataClass::PrivacyBundles => Some(retention::PRIVACY_BUNDLE_RETENTION),
            _ => None,
        }
    }
}

/// Items deleted per table (by the template's logical id) and objects (keys)
/// and versions deleted from the data bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub items: BTreeMap<&'static str, u64>,
    pub objects: u64,
    pub versions: u64,
}

impl Counts {
    pub fn add_items(&mut self, table: &'static str, count: u64) {
        if count > 0 {
            *self.items.entry(table).or_insert(0) += count;
        }
    }

    pub fn add(&mut self, other: &Counts) {
        for (table, count) in &other.items {
            self.add_items(table, *count);
        }
        self.objects += other.objects;
        self.versions += other.versions;
    }

    pub fn total_items(&self) -> u64 {
        self.items.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total_items() == 0 && self.objects == 0 && self.versions == 0
    }
}

/// Proof of one unit of destruction: which policy, which class, whose data
/// (the tenant and, for an account, its id: a business customer, not a person),
/// how much, the window of expiry it covered and the run that did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestructionRecord {
    pub record_id: String,
    pub run_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub class: DataClass,
    pub policy: &'static str,
    pub account: Option<String>,
    /// What expired before this instant was deleted (the run's `now`, or the
    /// raw-event cutoff); `from` is the account's or tenant's expiry when known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub window_to: OffsetDateTime,
    pub counts: Counts,
}

/// Events older than this are past the tenant's raw-event retention.
pub fn raw_event_cutoff(now: OffsetDateTime, retention: RawEventRetention) -> OffsetDateTime {
    now - retention.duration()
}

/// The months (`yyyy-mm`) from the one holding `from` to the one holding `to`, both included.
pub fn months(from: OffsetDateTime, to: OffsetDateTime) -> Vec<String> {
    let last = rollup::month_start(rollup::day_of(to));
    let mut month = rollup::month_start(rollup::day_of(from));
    let mut out = Vec::new();
    while month <= last {
        out.push(rollup::month_label(month));
        // The 1st plus 31 days is in the next month; its 1st is the next start.
        month = rollup::month_start(month + Duration::days(31));
    }
    out
}

/// The first instant of the month holding `at` (UTC).
pub fn month_start(at: OffsetDateTime) -> OffsetDateTime {
    rollup::month_start(rollup::day_of(at))
        .midnight()
        .assume_utc()
}

/// A sortable, unique record id: the run's start, the run id and a sequence.
pub fn record_id(run_started: OffsetDateTime, run_id: &str, seq: u32) -> String {
    let at = run_started.format(&Rfc3339).unwrap_or_default();
    format!("{at}#{run_id}#{seq:04}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn months_span_years_and_include_both_ends() {
        assert_eq!(
            months(
                datetime!(2025-11-30 23:00 UTC),
                datetime!(2026-02-01 00:00 UTC)
            ),
            ["2025-11", "2025-12", "2026-01", "2026-02"]
        );
        assert_eq!(
            months(
                datetime!(2026-02-10 00:00 UTC),
                datetime!(2026-02-11 00:00 UTC)
            ),
            ["2026-02"]
        );
        assert!(months(
            datetime!(2026-03-01 00:00 UTC),
            datetime!(2026-02-01 00:00 UTC)
        )
        .is_empty());
    }

    #[test]
    fn the_cutoff_follows_the_tenants_setting() {
        let now = datetime!(2026-12-01 00:00 UTC);
        let short = RawEventRetention::days(62).expect("62");
        assert_eq!(
            raw_event_cutoff(now, short),
            datetime!(2026-09-30 00:00 UTC)
        );
        assert_eq!(
            raw_event_cutoff(now, RawEventRetention::default()),
            datetime!(2025-11-01 00:00 UTC)
        );
    }

    #[test]
    fn counts_add_up_and_leave_out_zeros() {
        let mut a = Counts::default();
        a.add_items("EventsTable", 3);
        a.add_items("SubjectsTable", 0);
        let mut b = Counts::default();
        b.add_items("EventsTable", 2);
        b.objects = 1;
        b.versions = 2;
        a.add(&b);
        assert_eq!(a.items, BTreeMap::from([("EventsTable", 5)]));
        assert_eq!((a.total_items(), a.objects, a.versions), (5, 1, 2));
        assert!(Counts::default().is_empty());
    }

    #[test]
    fn classes_round_trip_and_object_classes_have_an_age() {
        for class in DataClass::ALL {
            assert_eq!(DataClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(
            DataClass::ExportDatasets.object_age(),
            Some(Duration::days(395))
        );
        assert_eq!(DataClass::Account.object_age(), None);
        let id = record_id(datetime!(2026-12-01 03:00 UTC), "r1", 7);
        assert_eq!(id, "2026-12-01T03:00:00Z#r1#0007");
    }
}
