//! The monthly re-training export's domain (docs/decisions/0018): the month a
//! dataset covers, who is left out and why, the keyed-hash pseudonyms, the one
//! event-level row and the per-account-month features (computed from events
//! alone, so a left-out person changes no byte), the outcome label, and the
//! manifest a consumer reads first.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use super::account::AccountContract;
use super::aggregate::{latency_bucket, LATENCY_BUCKETS_MS};
use super::rollup::histogram_percentile;
use super::subject::{Purpose, SubjectState};
use super::{AccountId, EventData, StoredEvent, SubjectId, TenantId};
use crate::crypto::keyed_reference;

/// Bumped when a column is added, removed or changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// A calendar month (UTC), `yyyy-mm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExportMonth {
    year: i32,
    month: Month,
}

impl ExportMonth {
    /// `yyyy-mm`, years 2000 to 9999; None otherwise.
    pub fn parse(label: &str) -> Option<Self> {
        let (year, month) = label.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i32 = year.parse().ok().filter(|y| (2000..=9999).contains(y))?;
        let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
        Some(Self { year, month })
    }

    /// The month holding `time`.
    pub fn of(time: OffsetDateTime) -> Self {
        let t = time.to_offset(time::UtcOffset::UTC);
        Self {
            year: t.year(),
            month: t.month(),
        }
    }

    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, u8::from(self.month))
    }

    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).unwrap_or(Date::MIN)
    }

    /// Midnight UTC of the first day.
    pub fn start(self) -> OffsetDateTime {
        self.first_day().midnight().assume_utc()
    }

    /// The start of the next month (exclusive end).
    pub fn end(self) -> OffsetDateTime {
        self.next().start()
    }

    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            m => Self {
                year: self.year,
                month: m.next(),
            },
        }
    }

    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self {
                year: self.year - 1,
                month: Month::December,
            },
            m => Self {
                year: self.year,
                month: m.previous(),
            },
        }
    }

    pub fn days(self) -> u8 {
        self.month.length(self.year)
    }
}

/// Why events are left out of a dataset. Erased people's events are deleted by
/// the erasure itself; `Erased` counts those still being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    Erased,
    Restricted,
    /// Objected to `model_training` (Art. 21).
    Objected,
    /// The event itself is withheld from `model_training` (stored while the
    /// person's restriction or objection stood).
    Withheld,
}

impl Exclusion {
    /// Why a subject in this state is left out, if they are.
    pub fn of_subject(state: &SubjectState) -> Option<Self> {
        if state.erased_at.is_some() {
            Some(Self::Erased)
        } else if state.restricted {
            Some(Self::Restricted)
        } else if state.objections.contains(&Purpose::ModelTraining) {
            Some(Self::Objected)
        } else {
            None
        }
    }

    /// Why this event is left out, if it is: its subject's state first, then
    /// the event's own `withheld` purposes.
    pub fn of_event(event: &StoredEvent, subjects: &HashMap<SubjectId, Exclusion>) -> Option<Self> {
        if let Some(reason) = event.subject.as_ref().and_then(|s| subjects.get(s)) {
            return Some(*reason);
        }
        event
            .withheld
            .contains(&Purpose::ModelTraining)
            .then_some(Self::Withheld)
    }
}

/// Fixed messages whose KMS HMAC is the pseudonymisation secret. Accounts:
/// one secret per tenant (stable across months); subjects: one per tenant and
/// month (a person's rows of two months cannot be joined). Versioned so the
/// secrets can be changed without touching the key.
pub fn account_secret_message(tenant: &TenantId) -> Vec<u8> {
    format!("vigil/export/account/v1/{tenant}").into_bytes()
}

pub fn subject_secret_message(tenant: &TenantId, month: ExportMonth) -> Vec<u8> {
    format!("vigil/export/subject/v1/{tenant}/{}", month.label()).into_bytes()
}

/// The keyed hashes that stand for accounts and subjects in a dataset.
#[derive(Clone)]
pub struct Pseudonyms {
    account: [u8; 32],
    subject: [u8; 32],
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(..)")
    }
}

impl Pseudonyms {
    pub fn new(account: [u8; 32], subject: [u8; 32]) -> Self {
        Self { account, subject }
    }

    pub fn account(&self, account: &AccountId) -> String {
        keyed_reference(&self.account, account.as_str())
    }

    /// Of the stored pseudonym (itself random): the dataset never holds it.
    pub fn subject(&self, subject: &SubjectId) -> String {
        keyed_reference(&self.subject, subject.as_str())
    }
}

/// One row of the event-level table: every column is justified in the register
/// (`docs/register-of-processing.json`, `exports`). Identifiers (event, ticket
/// and invoice ids), amounts and every tenant-chosen text but the endpoint
/// template are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub time_us: i64,
    pub account_ref: String,
    pub subject_ref: Option<String>,
    pub source: &'static str,
    pub endpoint: Option<String>,
    pub method: Option<&'static str>,
    pub http_status: Option<i32>,
    pub latency_ms: Option<i64>,
    pub units: Option<i64>,
    pub ticket_priority: Option<&'static str>,
    pub ticket_status: Option<&'static str>,
    pub billing_status: Option<&'static str>,
}

/// Microseconds since the epoch (UTC).
pub fn micros(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000) as i64
}

impl EventRow {
    pub fn of(event: &StoredEvent, pseudonyms: &Pseudonyms) -> Self {
        let mut row = Self {
            time_us: micros(event.time),
            account_ref: pseudonyms.account(&event.account),
            subject_ref: event.subject.as_ref().map(|s| pseudonyms.subject(s)),
            source: event.data.source().as_str(),
            endpoint: None,
            method: None,
            http_status: None,
            latency_ms: None,
            units: None,
            ticket_priority: None,
            ticket_status: None,
            billing_status: None,
        };
        match &event.data {
            EventData::ApiCall {
                endpoint,
                method,
                status,
                latency_ms,
                units,
            } => {
                row.endpoint = Some(endpoint.clone());
                row.method = Some(method);
                row.http_status = Some(i32::from(*status));
                row.latency_ms = Some(clamp_i64(*latency_ms));
                row.units = Some(clamp_i64(*units));
            }
            EventData::SupportTicket {
                priority, status, ..
            } => {
                row.ticket_priority = Some(priority);
                row.ticket_status = Some(status);
            }
            EventData::Billing { status, .. } => row.billing_status = Some(status),
            EventData::Product { .. } | EventData::Marketing { .. } => {}
        }
        row
    }
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What the next month held for an account, where it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Churned,
    Downgraded,
    Retained,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Churned => "churned",
            Outcome::Downgraded => "downgraded",
            Outcome::Retained => "retained",
        }
    }

    /// The label of `month` at `now`: churned once the relationship has ended by
    /// the end of the next month; otherwise known only once the next month is
    /// over: downgraded if the quota was lowered during it, else retained.
    pub fn of(
        month: ExportMonth,
        contract: Option<&AccountContract>,
        quota_lowered_on: Option<Date>,
        now: OffsetDateTime,
    ) -> Option<Self> {
        let next = month.next();
        let today = now.to_offset(time::UtcOffset::UTC).date();
        let ended = contract.and_then(|c| c.relationship_end);
        if let Some(end) = ended {
            if end < next.end().date() && end <= today {
                return Some(Outcome::Churned);
            }
        }
        if now < next.end() {
            return None;
        }
        let lowered =
            quota_lowered_on.is_some_and(|day| day >= next.first_day() && day < next.end().date());
        Some(if lowered {
            Outcome::Downgraded
        } else {
            Outcome::Retained
        })
    }
}

/// One account's month, accumulated event by event in fixed memory but for
/// the sets of distinct users and endpoint templates.
#[derive(Debug, Clone, Default)]
pub struct AccountMonth {
    calls: u64,
    units: u64,
    errors_4xx: u64,
    errors_5xx: u64,
    latency: [u64; LATENCY_BUCKETS_MS.len() + 1],
    daily_calls: [u64; 31],
    active_days: u32,
    users: HashSet<SubjectId>,
    endpoints: HashSet<String>,
    product_events: u64,
    marketing_touches: u64,
    tickets: u64,
    urgent_tickets: u64,
    invoices: u64,
    failed_payments: u64,
}

impl AccountMonth {
    /// Adds one event of `month` (the caller reads the month's events only).
    pub fn add(&mut self, event: &StoredEvent, month: ExportMonth) {
        let day = event
            .time
            .to_offset(time::UtcOffset::UTC)
            .day()
            .saturating_sub(1)
            .min(month.days().saturating_sub(1));
        let day = usize::from(day);
        match &event.data {
            EventData::ApiCall {
                endpoint,
                status,
                latency_ms,
                units,
                ..
            } => {
                self.calls += 1;
                self.daily_calls[day] += 1;
                self.units = self.units.saturating_add(*units);
                match status {
                    400..=499 => self.errors_4xx += 1,
                    500..=599 => self.errors_5xx += 1,
                    _ => {}
                }
                self.latency[latency_bucket(*latency_ms)] += 1;
                if !self.endpoints.contains(endpoint) {
                    self.endpoints.insert(endpoint.clone());
                }
            }
            EventData::Product { .. } => self.product_events += 1,
            EventData::Marketing { .. } => self.marketing_touches += 1,
            EventData::SupportTicket { priority, .. } => {
                self.tickets += 1;
                if matches!(*priority, "high" | "urgent") {
                    self.urgent_tickets += 1;
                }
            }
            EventData::Billing { status, .. } => {
                self.invoices += 1;
                if *status == "failed" {
                    self.failed_payments += 1;
                }
            }
        }
        if matches!(
            event.data,
            EventData::ApiCall { .. } | EventData::Product { .. }
        ) {
            self.active_days |= 1 << day;
            if let Some(subject) = &event.subject {
                if !self.users.contains(subject) {
                    self.users.insert(subject.clone());
                }
            }
        }
    }

    /// The feature row; `contract` and `quota_lowered_on` from the account
    /// directory (None for an account never registered).
    pub fn features(
        &self,
        month: ExportMonth,
        account_ref: String,
        contract: Option<&AccountContract>,
        quota_lowered_on: Option<Date>,
        now: OffsetDateTime,
    ) -> FeatureRow {
        let quota = contract.and_then(|c| c.monthly_quota);
        FeatureRow {
            month_start_us: micros(month.start()),
            account_ref,
            tenure_months: contract
                .and_then(|c| c.relationship_start)
                .map(|start| months_between(start, month.first_day())),
            monthly_quota: quota.map(clamp_i64),
            calls: clamp_i64(self.calls),
            units: clamp_i64(self.units),
            errors_4xx: clamp_i64(self.errors_4xx),
            errors_5xx: clamp_i64(self.errors_5xx),
            error_rate: (self.calls > 0)
                .then(|| (self.errors_4xx + self.errors_5xx) as f64 / self.calls as f64),
            latency_p50_ms: histogram_percentile(&self.latency, 0.50).map(clamp_i64),
            latency_p95_ms: histogram_percentile(&self.latency, 0.95).map(clamp_i64),
            latency_p99_ms: histogram_percentile(&self.latency, 0.99).map(clamp_i64),
            calls_trend: daily_trend(&self.daily_calls[..usize::from(month.days())]),
            active_days: self.active_days.count_ones() as i32,
            active_users: self.users.len() as i64,
            endpoint_templates: self.endpoints.len() as i64,
            quota_share: quota
                .filter(|q| *q > 0)
                .map(|q| self.units as f64 / q as f64),
            product_events: clamp_i64(self.product_events),
            marketing_touches: clamp_i64(self.marketing_touches),
            tickets: clamp_i64(self.tickets),
            urgent_tickets: clamp_i64(self.urgent_tickets),
            invoices: clamp_i64(self.invoices),
            failed_payments: clamp_i64(self.failed_payments),
            outcome: Outcome::of(month, contract, quota_lowered_on, now).map(Outcome::as_str),
        }
    }
}

/// Whole months from `from` to `to` (0 if `to` is not later).
fn months_between(from: Date, to: Date) -> i32 {
    let months = (to.year() - from.year()) * 12 + i32::from(u8::from(to.month()))
        - i32::from(u8::from(from.month()))
        - i32::from(to.day() < from.day());
    months.max(0)
}

/// The least-squares slope of calls per day over the month, divided by the mean
/// calls per day: the relative change per day (0.01: +1 % a day). None without
/// calls.
pub fn daily_trend(daily: &[u64]) -> Option<f64> {
    let n = daily.len() as f64;
    let total: u64 = daily.iter().sum();
    if total == 0 || daily.len() < 2 {
        return None;
    }
    let mean_day = (n - 1.0) / 2.0;
    let mean_calls = total as f64 / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (day, calls) in daily.iter().enumerate() {
        let dx = day as f64 - mean_day;
        covariance += dx * (*calls as f64 - mean_calls);
        variance += dx * dx;
    }
    Some(covariance / variance / mean_calls)
}

/// One row of the feature table (one per account and month).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    pub month_start_us: i64,
    pub account_ref: String,
    pub tenure_months: Option<i32>,
    pub monthly_quota: Option<i64>,
    pub calls: i64,
    pub units: i64,
    pub errors_4xx: i64,
    pub errors_5xx: i64,
    pub error_rate: Option<f64>,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub latency_p99_ms: Option<i64>,
    pub calls_trend: Option<f64>,
    pub active_days: i32,
    pub active_users: i64,
    pub endpoint_templates: i64,
    pub quota_share: Option<f64>,
    pub product_events: i64,
    pub marketing_touches: i64,
    pub tickets: i64,
    pub urgent_tickets: i64,
    pub invoices: i64,
    pub failed_payments: i64,
    pub outcome: Option<&'static str>,
}

/// Whether a registered account belongs in `month` even without events: its
/// relationship overlaps the month (no dates: it does).
pub fn in_relationship(contract: &AccountContract, month: ExportMonth) -> bool {
    let started = contract
        .relationship_start
        .is_none_or(|start| start < month.end().date());
    let not_ended = contract
        .relationship_end
        .is_none_or(|end| end >= month.first_day());
    started && not_ended
}

/// One file of a dataset, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFile {
    /// `features` or `events`.
    pub table: String,
    pub key: String,
    /// The S3 version written (a consumer can fetch exactly it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
}

/// Counts of what was left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// Events left out, by reason.
    pub events: BTreeMap<Exclusion, u64>,
    /// Subjects left out by their state, by reason (of the tenant, whatever the month).
    pub subjects: BTreeMap<Exclusion, u64>,
}

impl Excluded {
    pub fn add(&mut self, other: &Excluded) {
        for (reason, count) in &other.events {
            *self.events.entry(*reason).or_default() += count;
        }
    }
}

/// What a consumer reads first, written last: without it, no dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub tenant: String,
    pub month: String,
    pub run_id: String,
    pub code_version: String,
    /// The events' time range: from (included) to (excluded), RFC 3339.
    pub time_range: TimeRange,
    pub created_at: String,
    pub files: Vec<DatasetFile>,
    pub rows: BTreeMap<String, u64>,
    pub excluded: Excluded,
    pub pseudonyms: PseudonymNote,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudonymNote {
    pub algorithm: String,
    pub account_ref: String,
    pub subject_ref: String,
}

impl Default for PseudonymNote {
    fn default() -> Self {
        Self {
            algorithm: "HMAC-SHA256 (first 128 bits, hex) under a secret derived by KMS".into(),
            account_ref: "stable across months for the tenant: an account's months can be joined"
                .into(),
            subject_ref: "changes every month: a person's rows of two months cannot be joined"
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn months_parse_and_step() {
        let m = ExportMonth::parse("2026-12").unwrap();
        assert_eq!(m.next().label(), "2027-01");
        assert_eq!(m.previous().label(), "2026-11");
        assert_eq!(m.end(), datetime!(2027-01-01 00:00 UTC));
        assert_eq!(ExportMonth::parse("2026-02").unwrap().days(), 28);
        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "1999-01", "2026-00", "",
        ] {
            assert!(ExportMonth::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_trend_is_the_relative_slope() {
        // 10, 20, 30: +10 a day around a mean of 20, i.e. +50 % a day.
        assert_eq!(daily_trend(&[10, 20, 30]), Some(0.5));
        assert_eq!(daily_trend(&[5, 5, 5, 5]), Some(0.0));
        assert_eq!(daily_trend(&[0, 0]), None);
    }

    #[test]
    fn outcomes_are_known_only_when_they_happened() {
        let month = ExportMonth::parse("2026-10").unwrap();
        let ends = |end| AccountContract {
            name: "a".into(),
            plan: None,
            monthly_quota: None,
            relationship_start: None,
            relationship_end: end,
            tags: vec![],
        };
        let during_next = datetime!(2026-11-20 00:00 UTC);
        let after_next = datetime!(2026-12-01 00:00 UTC);
        let ended = ends(Some(date!(2026 - 11 - 15)));
        assert_eq!(
            Outcome::of(month, Some(&ended), None, during_next),
            Some(Outcome::Churned)
        );
        assert_eq!(
            Outcome::of(month, Some(&ended), None, datetime!(2026-11-10 00:00 UTC)),
            None
        );
        let open = ends(None);
        assert_eq!(Outcome::of(month, Some(&open), None, during_next), None);
        assert_eq!(
            Outcome::of(month, Some(&open), None, after_next),
            Some(Outcome::Retained)
        );
        assert_eq!(
            Outcome::of(month, Some(&open), Some(date!(2026 - 11 - 03)), after_next),
            Some(Outcome::Downgraded)
        );
        assert_eq!(
            Outcome::of(
                month,
                Some(&ends(Some(date!(2027 - 03 - 01)))),
                None,
                after_next
            ),
            Some(Outcome::Retained)
        );
    }

    #[test]
    fn tenure_counts_whole_months() {
        assert_eq!(
            months_between(date!(2025 - 10 - 01), date!(2026 - 11 - 01)),
            13
        );
        assert_eq!(
            months_between(date!(2025 - 10 - 15), date!(2026 - 11 - 01)),
            12
        );
        assert_eq!(
            months_between(date!(2026 - 12 - 15), date!(2026 - 11 - 01)),
            0
        );
    }

    #[test]
    fn references_are_keyed_and_short() {
        let a = Pseudonyms::new([1; 32], [2; 32]);
        let b = Pseudonyms::new([3; 32], [2; 32]);
        let account = AccountId::parse("acme").unwrap();
        assert_eq!(a.account(&account).len(), 32);
        assert_ne!(a.account(&account), b.account(&account));
        assert_eq!(a.account(&account), a.account(&account));
    }
}
