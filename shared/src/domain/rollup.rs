//! Rollups read back: the counters of one hour, day or month of one account
//! (written at ingestion, `aggregate.rs`), merged over any range, and what the
//! dashboard derives from them: error rate, latency percentiles from the
//! histogram, active users, units, top endpoint templates.

use std::collections::BTreeMap;

use time::{Date, Duration, Month, OffsetDateTime};

use super::aggregate::LATENCY_BUCKETS_MS;
use super::sketch::ActiveUsers;

/// The latency (ms) under which `quantile` of the calls fell, from counts per
/// `LATENCY_BUCKETS_MS` bucket plus one for slower calls: the upper bound of the
/// bucket holding that rank (nearest rank); for the last, open bucket, its lower
/// bound (the call took at least that long). None without calls. The dashboard,
/// the alerts and the export all read percentiles through this one rule.
pub fn histogram_percentile(counts: &[u64], quantile: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(
                LATENCY_BUCKETS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]),
            );
        }
    }
    None
}

/// Prefix of a month rollup's per-endpoint-template call counters.
pub const ENDPOINT_COUNTER_PREFIX: &str = "ep#";

/// `2026-11-01`.
pub fn day_label(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// A `yyyy-mm-dd` day, or None.
pub fn parse_day(label: &str) -> Option<Date> {
    let bytes = label.as_bytes();
    let shaped = label.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && label
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    let year: i32 = label[..4].parse().ok()?;
    let month: u8 = label[5..7].parse().ok()?;
    let day: u8 = label[8..].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// `2026-11`.
pub fn month_label(day: Date) -> String {
    format!("{:04}-{:02}", day.year(), u8::from(day.month()))
}

/// The first day of `day`'s month.
pub fn month_start(day: Date) -> Date {
    day.replace_day(1).unwrap_or(day)
}

/// The UTC day of a time.
pub fn day_of(time: OffsetDateTime) -> Date {
    time.to_offset(time::UtcOffset::UTC).date()
}

/// Every day from `from` to `to`, both included.
pub fn days(from: Date, to: Date) -> impl Iterator<Item = Date> {
    let count = (to - from).whole_days().max(-1) + 1;
    (0..count).map(move |i| from + Duration::days(i))
}

/// The counters and the active-user sketch of one bucket, or of several merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollup {
    pub counters: BTreeMap<String, u64>,
    pub users: ActiveUsers,
}

impl Rollup {
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Adds `other` to this one (counters summed, sketches united).
    pub fn merge(&mut self, other: &Rollup) {
        for (name, value) in &other.counters {
            *self.counters.entry(name.clone()).or_insert(0) += value;
        }
        self.users.merge(&other.users);
    }

    pub fn merged<'a>(rollups: impl IntoIterator<Item = &'a Rollup>) -> Rollup {
        let mut total = Rollup::default();
        for rollup in rollups {
            total.merge(rollup);
        }
        total
    }

    pub fn calls(&self) -> u64 {
        self.get("calls")
    }

    pub fn errors(&self) -> u64 {
        self.get("errors_4xx") + self.get("errors_5xx")
    }

    /// Errors (4xx and 5xx) per call, or None without calls.
    pub fn error_rate(&self) -> Option<f64> {
        let calls = self.calls();
        (calls > 0).then(|| self.errors() as f64 / calls as f64)
    }

    /// API or product activity (what the customer does, not the tenant).
    pub fn is_active(&self) -> bool {
        self.calls() > 0 || self.get("source_product") > 0
    }

    /// The latency (ms) under which `quantile` of the calls fell: the upper bound
    /// of the histogram bucket holding that rank; for the last, open bucket, its
    /// lower bound (the call took at least that long). None without calls.
    pub fn latency_percentile(&self, quantile: f64) -> Option<u64> {
        let counts: Vec<u64> = LATENCY_BUCKETS_MS
            .iter()
            .map(|bound| self.get(&format!("latency_le_{bound}")))
            .chain([self.get("latency_gt_max")])
            .collect();
        histogram_percentile(&counts, quantile)
    }

    /// Calls per endpoint template (month rollups keep them), most called first.
    pub fn endpoints(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .counters
            .iter()
            .filter_map(|(name, count)| {
                name.strip_prefix(ENDPOINT_COUNTER_PREFIX)
                    .map(|e| (e.to_owned(), *count))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn rollup(pairs: &[(&str, u64)]) -> Rollup {
        Rollup {
            counters: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            users: ActiveUsers::default(),
        }
    }

    #[test]
    fn days_parse_strictly() {
        assert_eq!(parse_day("2026-02-28"), Some(date!(2026 - 02 - 28)));
        for bad in [
            "2026-02-30",
            "2026-2-28",
            "2026-02-28T",
            "20260228",
            "2026-13-01",
            "+026-01-01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert_eq!(day_label(date!(2026 - 03 - 01)), "2026-03-01");
        assert_eq!(month_label(date!(2026 - 03 - 31)), "2026-03");
        assert_eq!(month_start(date!(2026 - 03 - 31)), date!(2026 - 03 - 01));
        assert_eq!(
            days(date!(2026 - 02 - 27), date!(2026 - 03 - 01)).count(),
            3
        );
        assert_eq!(
            days(date!(2026 - 03 - 01), date!(2026 - 02 - 27)).count(),
            0
        );
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        // 90 calls under 50 ms, 8 under 500, 2 over 2,500.
        let r = rollup(&[
            ("calls", 100),
            ("latency_le_50", 90),
            ("latency_le_500", 8),
            ("latency_gt_max", 2),
        ]);
        assert_eq!(r.latency_percentile(0.5), Some(50));
        assert_eq!(r.latency_percentile(0.9), Some(50));
        assert_eq!(r.latency_percentile(0.95), Some(500));
        assert_eq!(r.latency_percentile(0.99), Some(2500));
        assert_eq!(rollup(&[]).latency_percentile(0.5), None);
    }

    #[test]
    fn merging_sums_counters_and_ranks_endpoints() {
        let mut a = rollup(&[("calls", 3), ("errors_5xx", 1), ("ep#/v1/a", 3)]);
        a.merge(&rollup(&[("calls", 1), ("errors_4xx", 1), ("ep#/v1/b", 1)]));
        assert_eq!(a.calls(), 4);
        assert_eq!(a.error_rate(), Some(0.5));
        assert_eq!(
            a.endpoints(),
            vec![("/v1/a".to_owned(), 3), ("/v1/b".to_owned(), 1)]
        );
    }
}
