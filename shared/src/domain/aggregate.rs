//! Per-account aggregates, kept at ingestion for the dashboard and alerts: what
//! a chunk of one account-hour adds to its hour, its day and its month
//! (`rollup.rs` reads them back).

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::event::{EventData, Source, StoredEvent};
use super::ids::AccountId;
use super::rollup::ENDPOINT_COUNTER_PREFIX;
use super::sketch;

/// An hour in UTC, written `2026-11-01T10` (sorts as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourBucket {
    /// Whole hours since the Unix epoch.
    hours: i64,
}

impl HourBucket {
    pub fn of(time: OffsetDateTime) -> Self {
        Self {
            hours: time.unix_timestamp().div_euclid(3600),
        }
    }

    /// Parses a label such as `2026-11-01T10`.
    pub fn parse(label: &str) -> Option<Self> {
        let time = OffsetDateTime::parse(
            &format!("{label}:00:00Z"),
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        (label.len() == 13).then(|| Self::of(time))
    }

    /// Whole hours from `self` to `later`.
    pub fn hours_until(&self, later: HourBucket) -> i64 {
        later.hours - self.hours
    }

    pub fn start(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.hours * 3600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn label(&self) -> String {
        let start = OffsetDateTime::from_unix_timestamp(self.hours * 3600)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}",
            start.year(),
            u8::from(start.month()),
            start.day(),
            start.hour()
        )
    }
}

/// Upper bounds (ms) of the latency histogram buckets; a last bucket holds the rest.
pub const LATENCY_BUCKETS_MS: [u64; 6] = [50, 100, 250, 500, 1000, 2500];

/// The histogram bucket of a call's latency: the first bound it does not
/// exceed, or the last, open bucket.
pub fn latency_bucket(latency_ms: u64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|bound| latency_ms <= *bound)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// What one batch adds to one account-hour. Applied with a single DynamoDB ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateDelta {
    pub account: AccountId,
    pub hour: HourBucket,
    pub events: u64,
    pub per_source: [u64; 5],
    pub calls: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub latency_ms_sum: u64,
    pub latency_count: u64,
    /// Counts per `LATENCY_BUCKETS_MS` bucket, plus one for slower calls.
    pub latency_histogram: [u64; LATENCY_BUCKETS_MS.len() + 1],
    pub units: u64,
    pub failed_payments: u64,
    pub paid_payments: u64,
    pub tickets_opened: u64,
    /// Tickets solved or closed.
    pub tickets_closed: u64,
    /// Active-user sketch elements of the API callers (`sketch::element`).
    pub users: BTreeSet<u64>,
    /// Calls per endpoint template (kept on the month rollup only).
    pub endpoints: BTreeMap<String, u64>,
}

impl AggregateDelta {
    fn empty(account: AccountId, hour: HourBucket) -> Self {
        Self {
            account,
            hour,
            events: 0,
            per_source: [0; 5],
            calls: 0,
            errors_4xx: 0,
            errors_5xx: 0,
            latency_ms_sum: 0,
            latency_count: 0,
            latency_histogram: [0; LATENCY_BUCKETS_MS.len() + 1],
            units: 0,
            failed_payments: 0,
            paid_payments: 0,
            tickets_opened: 0,
            tickets_closed: 0,
            users: BTreeSet::new(),
            endpoints: BTreeMap::new(),
        }
    }

    fn add(&mut self, event: &StoredEvent) {
        self.events += 1;
        self.per_source[event.data.source().index()] += 1;
        match &event.data {
            EventData::ApiCall {
                endpoint,
                status,
                latency_ms,
                units,
                ..
            } => {
                self.calls += 1;
                if let Some(subject) = &event.subject {
                    self.users.insert(sketch::element(subject));
                }
                *self.endpoints.entry(endpoint.clone()).or_insert(0) += 1;
                match status {
                    400..=499 => self.errors_4xx += 1,
                    500..=599 => self.errors_5xx += 1,
                    _ => {}
                }
                self.latency_ms_sum += latency_ms;
                self.latency_count += 1;
                let bucket = latency_bucket(*latency_ms);
                self.latency_histogram[bucket] += 1;
                self.units += units;
            }
            EventData::Billing { status, .. } => match *status {
                "failed" => self.failed_payments += 1,
                "paid" => self.paid_payments += 1,
                _ => {}
            },
            EventData::SupportTicket { status, .. } => match *status {
                "open" => self.tickets_opened += 1,
                "solved" | "closed" => self.tickets_closed += 1,
                _ => {}
            },
            _ => {}
        }
    }

    /// One delta per distinct account-hour, in a stable order.
    pub fn group<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Vec<AggregateDelta> {
        let mut groups: BTreeMap<(AccountId, HourBucket), AggregateDelta> = BTreeMap::new();
        for event in events {
            // Withheld from analytics (restriction, objection): stored, not counted.
            if !event.counted() {
                continue;
            }
            groups
                .entry((event.account.clone(), event.hour()))
                .or_insert_with(|| AggregateDelta::empty(event.account.clone(), event.hour()))
                .add(event);
        }
        groups.into_values().collect()
    }

    /// Attribute name -> amount, for the counters that are not zero.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("events".to_owned(), self.events),
            ("calls".to_owned(), self.calls),
            ("errors_4xx".to_owned(), self.errors_4xx),
            ("errors_5xx".to_owned(), self.errors_5xx),
            ("latency_ms_sum".to_owned(), self.latency_ms_sum),
            ("latency_count".to_owned(), self.latency_count),
            ("units".to_owned(), self.units),
            ("failed_payments".to_owned(), self.failed_payments),
            ("paid_payments".to_owned(), self.paid_payments),
            ("tickets_opened".to_owned(), self.tickets_opened),
            ("tickets_closed".to_owned(), self.tickets_closed),
        ];
        for source in Source::ALL {
            out.push((
                format!("source_{}", source.as_str()),
                self.per_source[source.index()],
            ));
        }
        for (i, count) in self.latency_histogram.iter().enumerate() {
            let name = match LATENCY_BUCKETS_MS.get(i) {
                Some(bound) => format!("latency_le_{bound}"),
                None => "latency_gt_max".to_owned(),
            };
            out.push((name, *count));
        }
        out.retain(|(_, amount)| *amount > 0);
        out
    }

    /// The month rollup's counters: the hour's, and calls per endpoint template.
    pub fn month_counters(&self) -> Vec<(String, u64)> {
        let mut out = self.counters();
        out.extend(
            self.endpoints
                .iter()
                .map(|(e, n)| (format!("{ENDPOINT_COUNTER_PREFIX}{e}"), *n)),
        );
        out
    }

    /// Tickets opened less tickets solved or closed: the account's open tickets move by this.
    pub fn open_tickets_change(&self) -> i64 {
        self.tickets_opened as i64 - self.tickets_closed as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EventId;
    use time::macros::datetime;

    fn call(account: &str, time: OffsetDateTime, status: u16, latency_ms: u64) -> StoredEvent {
        StoredEvent {
            id: EventId::parse("e").expect("id"),
            time,
            account: AccountId::parse(account).expect("account"),
            subject: None,
            data: EventData::ApiCall {
                endpoint: "/v1/x".into(),
                method: "GET",
                status,
                latency_ms,
                units: 2,
            },
            withheld: Default::default(),
        }
    }

    #[test]
    fn hour_labels_are_utc_and_sortable() {
        assert_eq!(
            HourBucket::of(datetime!(2026-11-01 10:59:59 UTC)).label(),
            "2026-11-01T10"
        );
        assert_eq!(
            HourBucket::of(datetime!(2026-11-01 12:30 +02:00)).label(),
            "2026-11-01T10"
        );
    }

    #[test]
    fn labels_parse_back() {
        let hour = HourBucket::parse("2026-11-01T10").expect("parses");
        assert_eq!(hour.label(), "2026-11-01T10");
        assert_eq!(
            hour.hours_until(HourBucket::parse("2026-11-02T10").expect("parses")),
            24
        );
        assert!(HourBucket::parse("2026-11-01").is_none());
        assert!(HourBucket::parse("2026-11-01T25").is_none());
    }

    #[test]
    fn groups_by_account_and_hour() {
        let events = [
            call("a", datetime!(2026-11-01 10:00 UTC), 200, 40),
            call("a", datetime!(2026-11-01 10:10 UTC), 503, 3000),
            call("a", datetime!(2026-11-01 11:00 UTC), 404, 120),
            call("b", datetime!(2026-11-01 10:00 UTC), 201, 60),
        ];
        let deltas = AggregateDelta::group(&events);
        assert_eq!(deltas.len(), 3);
        let first = &deltas[0];
        assert_eq!((first.calls, first.errors_5xx, first.units), (2, 1, 4));
        assert_eq!(first.latency_ms_sum, 3040);
        assert_eq!(first.latency_histogram[0], 1);
        assert_eq!(first.latency_histogram[6], 1);
        assert_eq!(deltas[1].errors_4xx, 1);
        assert!(first.counters().contains(&("source_api_call".into(), 2)));
    }
}
