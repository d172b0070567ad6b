//! Consumption alerts (docs/decisions/0017): rules, the figures they test, and
//! each alert's lifecycle, as pure functions of rollups, contracts and `now`.
//!
//! An alert is one rule on one account. Its lifecycle, as Alertmanager's:
//! inactive → pending (the condition holds) → firing (it held for the rule's
//! `for`) → resolved (it no longer holds) → inactive. `step` moves every alert
//! of one account at once and says what to send: one notification per account
//! with every alert that fired, is due to repeat, or resolved; silenced alerts
//! keep their state but are left out.
//!
//! Figures come from rollups only (their cost grows with accounts × rules, not
//! events). Rollups never count events withheld from analytics (restriction),
//! and no rule reads a per-person figure (active users): an alert is about an
//! account's consumption and never concerns a person (see the ADR).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use super::account::{BillingStatus, Summary, Window};
use super::aggregate::HourBucket;
use super::ids::AccountId;
use super::rollup::{self, Rollup};

/// Days of day rollups an evaluation reads per account: the health score's
/// 30-day window and the one before it.
pub const DAYS_READ: i64 = 60;
/// Weeks of the same weekday the usage baseline takes its median over.
pub const BASELINE_WEEKS: i64 = 4;
/// Below this many expected calls in the window, usage rules stay quiet: too
/// little traffic to call a change a drop or a spike.
pub const DEFAULT_MIN_CALLS: u64 = 10;
/// An error-rate alert needs at least this many errors in its window...
pub const MIN_ERRORS: u64 = 3;
/// ...and this multiple of the account's own error rate the week before.
pub const SURGE_FACTOR: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    UsageDrop,
    UsageSpike,
    Quota,
    QuotaForecast,
    ErrorRate,
    LatencyP95,
    Inactivity,
    PaymentFailed,
    TicketSurge,
    HealthBelow,
}

/// What a kind's threshold and window mean, and their bounds.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: Kind,
    pub name: &'static str,
    /// (min, max, what it is) or None if the kind takes no threshold.
    pub threshold: Option<(f64, f64, &'static str)>,
    /// (min, max) of the window, or None if the kind takes no window.
    pub window: Option<(Duration, Duration)>,
    /// Whether `min_calls` applies.
    pub min_calls: bool,
}

pub const KINDS: [KindSpec; 10] = [
    KindSpec {
        kind: Kind::UsageDrop,
        name: "usage_drop",
        threshold: Some((
            0.05,
            0.95,
            "the share of the usual calls lost, 0.05 to 0.95",
        )),
        window: Some((Duration::days(1), Duration::days(14))),
        min_calls: true,
    },
    KindSpec {
        kind: Kind::UsageSpike,
        name: "usage_spike",
        threshold: Some((1.1, 100.0, "a multiple of the usual calls, 1.1 to 100")),
        window: Some((Duration::days(1), Duration::days(14))),
        min_calls: true,
    },
    KindSpec {
        kind: Kind::Quota,
        name: "quota",
        threshold: Some((0.01, 10.0, "a share of the monthly quota, 0.01 to 10")),
        window: None,
        min_calls: false,
    },
    KindSpec {
        kind: Kind::QuotaForecast,
        name: "quota_forecast",
        threshold: Some((0.01, 10.0, "a share of the monthly quota, 0.01 to 10")),
        window: None,
        min_calls: false,
    },
    KindSpec {
        kind: Kind::ErrorRate,
        name: "error_rate",
        threshold: Some((0.001, 1.0, "a share of failing calls, 0.001 to 1")),
        window: Some((Duration::hours(1), Duration::hours(72))),
        min_calls: true,
    },
    KindSpec {
        kind: Kind::LatencyP95,
        name: "latency_p95",
        threshold: Some((1.0, 600_000.0, "milliseconds, 1 to 600000")),
        window: Some((Duration::hours(1), Duration::hours(72))),
        min_calls: true,
    },
    KindSpec {
        kind: Kind::Inactivity,
        name: "inactivity",
        threshold: None,
        window: Some((Duration::days(1), Duration::days(30))),
        min_calls: false,
    },
    KindSpec {
        kind: Kind::PaymentFailed,
        name: "payment_failed",
        threshold: None,
        window: None,
        min_calls: false,
    },
    KindSpec {
        kind: Kind::TicketSurge,
        name: "ticket_surge",
        threshold: Some((1.0, 1000.0, "tickets opened in the window, 1 to 1000")),
        window: Some((Duration::days(1), Duration::days(30))),
        min_calls: false,
    },
    KindSpec {
        kind: Kind::HealthBelow,
        name: "health_below",
        threshold: Some((1.0, 100.0, "a health score, 1 to 100")),
        window: None,
        min_calls: false,
    },
];

impl Kind {
    pub fn spec(self) -> &'static KindSpec {
        KINDS.iter().find(|s| s.kind == self).unwrap_or(&KINDS[0])
    }

    pub fn parse(name: &str) -> Option<Kind> {
        KINDS.iter().find(|s| s.name == name).map(|s| s.kind)
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Whether the kind reads hour rollups (the others read days).
    pub fn reads_hours(self) -> bool {
        matches!(self, Kind::ErrorRate | Kind::LatencyP95)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn parse(name: &str) -> Option<Severity> {
        match name {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Which accounts a rule watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Plan(String),
    Tag(String),
    Accounts(Vec<AccountId>),
}

impl Scope {
    pub fn covers(&self, account: &AccountId, plan: Option<&str>, tags: &[String]) -> bool {
        match self {
            Scope::All => true,
            Scope::Plan(p) => plan == Some(p.as_str()),
            Scope::Tag(t) => tags.iter().any(|x| x == t),
            Scope::Accounts(list) => list.contains(account),
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub kind: Kind,
    pub threshold: Option<f64>,
    pub window: Option<Duration>,
    pub min_calls: u64,
    /// How long the condition must hold before the alert fires.
    pub pending_for: Duration,
    /// How often a firing alert is sent again.
    pub repeat: Duration,
    /// How long a firing alert stays firing once its condition clears.
    pub keep_firing_for: Duration,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub scope: Scope,
}

/// `15m`, `6h`, `3d`: a whole number of minutes, hours or days.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = number.parse().ok()?;
    match unit {
        "m" => Some(Duration::minutes(n)),
        "h" => Some(Duration::hours(n)),
        "d" => Some(Duration::days(n)),
        _ => None,
    }
}

/// The shortest of `d`, `h`, `m` that states `duration` exactly.
pub fn format_duration(duration: Duration) -> String {
    let minutes = duration.whole_minutes();
    if minutes % (24 * 60) == 0 {
        format!("{}d", minutes / (24 * 60))
    } else if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

/// What a tenant gets until it sets its own rules.
pub fn default_rules() -> Vec<Rule> {
    let rule = |id: &str,
                kind: Kind,
                threshold: Option<f64>,
                window: Option<Duration>,
                pending_for: Duration,
                severity: Severity| Rule {
        id: id.to_owned(),
        kind,
        threshold,
        window,
        min_calls: DEFAULT_MIN_CALLS,
        pending_for,
        repeat: Duration::days(1),
        keep_firing_for: Duration::ZERO,
        severity,
        labels: BTreeMap::new(),
        scope: Scope::All,
    };
    let mut rules = vec![
        rule(
            "usage-drop",
            Kind::UsageDrop,
            Some(0.4),
            Some(Duration::days(5)),
            Duration::ZERO,
            Severity::Warning,
        ),
        rule(
            "usage-spike",
            Kind::UsageSpike,
            Some(3.0),
            Some(Duration::days(1)),
            Duration::ZERO,
            Severity::Info,
        ),
        rule(
            "quota-80",
            Kind::Quota,
            Some(0.8),
            None,
            Duration::ZERO,
            Severity::Info,
        ),
        rule(
            "quota-100",
            Kind::Quota,
            Some(1.0),
            None,
            Duration::ZERO,
            Severity::Warning,
        ),
        rule(
            "quota-forecast",
            Kind::QuotaForecast,
            Some(1.0),
            None,
            Duration::hours(12),
            Severity::Info,
        ),
        rule(
            "error-rate",
            Kind::ErrorRate,
            Some(0.1),
            Some(Duration::hours(48)),
            Duration::hours(1),
            Severity::Critical,
        ),
        rule(
            "latency-p95",
            Kind::LatencyP95,
            Some(1000.0),
            Some(Duration::hours(48)),
            Duration::hours(1),
            Severity::Warning,
        ),
        rule(
            "inactivity",
            Kind::Inactivity,
            None,
            Some(Duration::days(7)),
            Duration::ZERO,
            Severity::Warning,
        ),
        rule(
            "payment-failed",
            Kind::PaymentFailed,
            None,
            None,
            Duration::ZERO,
            Severity::Critical,
        ),
        rule(
            "ticket-surge",
            Kind::TicketSurge,
            Some(2.0),
            Some(Duration::days(7)),
            Duration::ZERO,
            Severity::Warning,
        ),
        rule(
            "health-below",
            Kind::HealthBelow,
            Some(50.0),
            None,
            Duration::days(1),
            Severity::Warning,
        ),
    ];
    // Figures that flap around their threshold on quiet accounts stay firing
    // a while once clear: one page per episode (tuned with the replay).
    for rule in &mut rules {
        rule.keep_firing_for = match rule.kind {
            Kind::ErrorRate | Kind::LatencyP95 => Duration::hours(12),
            Kind::TicketSurge | Kind::QuotaForecast => Duration::days(2),
            _ => Duration::ZERO,
        };
    }
    rules
}

/// What an evaluation knows of one account: its contract's quota and the
/// rollups around `now`.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub now: OffsetDateTime,
    /// Registered by the tenant (an unregistered account that never called is
    /// a prospect, not an inactive customer).
    pub registered: bool,
    pub monthly_quota: Option<u64>,
    pub open_tickets: u64,
    /// Day rollups of the last `DAYS_READ` days up to today (today's so far).
    pub days: &'a BTreeMap<Date, Rollup>,
    /// Hour rollups of the longest hour window of the rules, up to this hour.
    pub hours: &'a BTreeMap<HourBucket, Rollup>,
}

/// A rule's figure on an account, and whether it breaches the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub value: Option<f64>,
    pub breached: bool,
}

impl Facts<'_> {
    pub fn today(&self) -> Date {
        rollup::day_of(self.now)
    }

    fn calls_on(&self, day: Date) -> u64 {
        self.days.get(&day).map_or(0, Rollup::calls)
    }

    /// The usual calls of `day`: the median of the same weekday over the
    /// previous `BASELINE_WEEKS` weeks (a quiet Sunday is compared with Sundays).
    pub fn baseline(&self, day: Date) -> f64 {
        let mut weeks: Vec<u64> = (1..=BASELINE_WEEKS)
            .map(|w| self.calls_on(day - Duration::weeks(w)))
            .collect();
        weeks.sort_unstable();
        let n = weeks.len();
        if n % 2 == 1 {
            weeks[n / 2] as f64
        } else {
            (weeks[n / 2 - 1] + weeks[n / 2]) as f64 / 2.0
        }
    }

    /// Calls and usual calls over the `days` complete days before today.
    pub fn usage(&self, days: i64) -> (u64, f64) {
        let today = self.today();
        (1..=days)
            .map(|back| today - Duration::days(back))
            .fold((0, 0.0), |(calls, usual), day| {
                (calls + self.calls_on(day), usual + self.baseline(day))
            })
    }

    fn hours_within(&self, window: Duration) -> Rollup {
        let to = HourBucket::of(self.now);
        let from = HourBucket::of(self.now - window + Duration::hours(1));
        Rollup::merged(self.hours.range(from..=to).map(|(_, r)| r))
    }

    /// The 7 complete days before the day of `time`, merged.
    fn week_before(&self, time: OffsetDateTime) -> Rollup {
        let day = rollup::day_of(time);
        Rollup::merged(
            self.days
                .range(day - Duration::days(7)..day)
                .map(|(_, r)| r),
        )
    }

    fn units_this_month(&self) -> u64 {
        let today = self.today();
        self.days
            .range(rollup::month_start(today)..=today)
            .map(|(_, r)| r.get("units"))
            .sum()
    }

    /// The 30-day summary ending today (health, billing status), as the dashboard computes it.
    pub fn summary(&self) -> Summary {
        let today = self.today();
        let window = Window {
            from: today - Duration::days(29),
            to: today,
        };
        Summary::of(window, self.days, self.monthly_quota, self.open_tickets)
    }

    /// The rule's figure on this account.
    pub fn read(&self, rule: &Rule) -> Reading {
        let threshold = rule.threshold.unwrap_or(0.0);
        let window = rule.window.unwrap_or(Duration::ZERO);
        let whole_days = window.whole_days().max(1);
        let reading = |value: Option<f64>, breached: bool| Reading { value, breached };
        match rule.kind {
            Kind::UsageDrop | Kind::UsageSpike => {
                let (calls, usual) = self.usage(whole_days);
                if usual < rule.min_calls as f64 {
                    return reading(None, false);
                }
                if rule.kind == Kind::UsageDrop {
                    let lost = 1.0 - calls as f64 / usual;
                    reading(Some(lost), lost >= threshold)
                } else {
                    let ratio = calls as f64 / usual;
                    reading(Some(ratio), ratio >= threshold)
                }
            }
            Kind::Quota | Kind::QuotaForecast => {
                let Some(quota) = self.monthly_quota.filter(|q| *q > 0) else {
                    return reading(None, false);
                };
                let used = self.units_this_month() as f64;
                if rule.kind == Kind::Quota {
                    let share = used / quota as f64;
                    return reading(Some(share), share >= threshold);
                }
                // The month so far plus the last 7 complete days' pace until its end.
                let today = self.today();
                let recent: u64 = (1..=7)
                    .map(|back| today - Duration::days(back))
                    .map(|d| self.days.get(&d).map_or(0, |r| r.get("units")))
                    .sum();
                let month_end =
                    rollup::month_start(rollup::month_start(today) + Duration::days(32))
                        - Duration::days(1);
                let elapsed_today = f64::from(self.now.hour()) / 24.0;
                let remaining = (month_end - today).whole_days() as f64 + (1.0 - elapsed_today);
                let projected = used + recent as f64 / 7.0 * remaining;
                let share = projected / quota as f64;
                reading(Some(share), share >= threshold)
            }
            Kind::ErrorRate | Kind::LatencyP95 => {
                let recent = self.hours_within(window);
                if recent.calls() < rule.min_calls.max(1) {
                    return reading(None, false);
                }
                if rule.kind == Kind::LatencyP95 {
                    let p95 = recent.latency_percentile(0.95).map(|ms| ms as f64);
                    return reading(p95, p95.is_some_and(|v| v >= threshold));
                }
                // A surge: over the threshold, at least `MIN_ERRORS` errors, and
                // at least `SURGE_FACTOR` times the account's own rate of the
                // week before (when that week had calls enough to tell).
                let rate = recent.error_rate().unwrap_or(0.0);
                let before = self.week_before(self.now - window);
                let usual = (before.calls() >= rule.min_calls)
                    .then(|| before.error_rate())
                    .flatten();
                let surge = usual.is_none_or(|u| rate >= SURGE_FACTOR * u);
                reading(
                    Some(rate),
                    rate >= threshold && recent.errors() >= MIN_ERRORS && surge,
                )
            }
            Kind::Inactivity => {
                let today = self.today();
                let last = self
                    .days
                    .range(..=today)
                    .rev()
                    .find(|(_, r)| r.is_active())
                    .map(|(d, _)| *d);
                let idle = match last {
                    Some(day) => (today - day).whole_days(),
                    None if self.registered => DAYS_READ,
                    None => return reading(None, false),
                };
                reading(Some(idle as f64), idle >= whole_days)
            }
            Kind::PaymentFailed => {
                let failed = self.summary().billing_status == BillingStatus::Failed;
                reading(Some(if failed { 1.0 } else { 0.0 }), failed)
            }
            Kind::TicketSurge => {
                let today = self.today();
                let opened: u64 = self
                    .days
                    .range(today - Duration::days(whole_days - 1)..=today)
                    .map(|(_, r)| r.get("tickets_opened"))
                    .sum();
                reading(Some(opened as f64), opened as f64 >= threshold)
            }
            Kind::HealthBelow => {
                let score = f64::from(self.summary().health.score);
                reading(Some(score), score < threshold)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Firing,
}

/// One rule's alert on one account, while it is pending or firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub phase: Phase,
    /// When the condition started to hold.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub fired_at: Option<OffsetDateTime>,
    /// When it was last sent (None: never, e.g. silenced since it fired).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub notified_at: Option<OffsetDateTime>,
    /// Firing, its condition clear since then (kept for `keep_firing_for`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub clear_since: Option<OffsetDateTime>,
    #[serde(default)]
    pub value: Option<f64>,
}

/// Every active alert of one account, and the version its record was read at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountAlerts {
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub alerts: BTreeMap<String, ActiveAlert>,
}

/// A silence: alerts matching every given matcher are not sent from `starts_at` to `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

impl Silence {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn mutes(&self, account: &AccountId, rule: &Rule, now: OffsetDateTime) -> bool {
        self.is_active(now)
            && self
                .account
                .as_deref()
                .is_none_or(|a| a == account.as_str())
            && self.rule.as_deref().is_none_or(|r| r == rule.id)
            && self
                .labels
                .iter()
                .all(|(k, v)| rule.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

/// One alert as a notification carries it: ids and figures, never personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifiedAlert {
    pub rule: String,
    pub kind: Kind,
    pub severity: Severity,
    pub status: Status,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
}

/// A change to an alert's history: it fired, or it resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: NotifiedAlert,
    /// Whether it was sent (false: silenced).
    pub sent: bool,
}

/// What one evaluation of one account changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// The account's active alerts after this evaluation.
    pub next: AccountAlerts,
    /// Whether `next` differs from what was read (a write is needed).
    pub changed: bool,
    /// Alerts to send now, in one notification (empty: nothing to send).
    pub send: Vec<NotifiedAlert>,
    /// Alerts that fired or resolved (the history).
    pub transitions: Vec<Transition>,
}

fn notified(
    rule: &Rule,
    alert: &ActiveAlert,
    status: Status,
    now: OffsetDateTime,
) -> NotifiedAlert {
    NotifiedAlert {
        rule: rule.id.clone(),
        kind: rule.kind,
        severity: rule.severity,
        status,
        labels: rule.labels.clone(),
        value: alert.value,
        threshold: rule.threshold,
        window: rule.window.map(format_duration),
        started_at: alert.since,
        fired_at: alert.fired_at.unwrap_or(now),
        resolved_at: (status == Status::Resolved).then_some(now),
    }
}

/// Moves every alert of one account to `now`. `readings` holds the rules that
/// apply to the account with their reading; an active alert whose rule is gone
/// (deleted, or no longer scoped to the account) resolves.
pub fn step(
    account: &AccountId,
    readings: &[(&Rule, Reading)],
    retired: &BTreeMap<String, Rule>,
    prior: &AccountAlerts,
    silences: &[Silence],
    now: OffsetDateTime,
) -> Step {
    let mut out = Step {
        next: AccountAlerts {
            version: prior.version,
            alerts: BTreeMap::new(),
        },
        ..Step::default()
    };
    let muted = |rule: &Rule| silences.iter().any(|s| s.mutes(account, rule, now));
    let mut due = false;
    let resolve = |rule: &Rule, alert: &ActiveAlert, out: &mut Step| {
        if alert.phase == Phase::Firing {
            let notice = notified(rule, alert, Status::Resolved, now);
            // A resolve notice only follows an alert that was sent.
            let sent = alert.notified_at.is_some() && !muted(rule);
            if sent {
                out.send.push(notice.clone());
            }
            out.transitions.push(Transition {
                alert: notice,
                sent,
            });
        }
    };
    for (rule, reading) in readings {
        let before = prior.alerts.get(&rule.id);
        if !reading.breached {
            let Some(alert) = before else { continue };
            // A firing alert stays firing `keep_firing_for` after its condition
            // clears (Prometheus' keep_firing_for): a flapping figure pages once.
            let cleared = alert.clear_since.unwrap_or(now);
            if alert.phase == Phase::Firing && now - cleared < rule.keep_firing_for {
                let mut kept = alert.clone();
                kept.clear_since = Some(cleared);
                kept.value = reading.value;
                if !muted(rule) {
                    due |= kept.notified_at.is_none_or(|at| now - at >= rule.repeat);
                }
                out.next.alerts.insert(rule.id.clone(), kept);
                continue;
            }
            resolve(rule, alert, &mut out);
            continue;
        }
        let mut alert = before.cloned().unwrap_or(ActiveAlert {
            phase: Phase::Pending,
            since: now,
            fired_at: None,
            notified_at: None,
            clear_since: None,
            value: reading.value,
        });
        alert.value = reading.value;
        alert.clear_since = None;
        if alert.phase == Phase::Pending && now - alert.since >= rule.pending_for {
            alert.phase = Phase::Firing;
            alert.fired_at = Some(now);
            out.transitions.push(Transition {
                alert: notified(rule, &alert, Status::Firing, now),
                sent: !muted(rule),
            });
        }
        if alert.phase == Phase::Firing && !muted(rule) {
            let repeat_due = alert.notified_at.is_none_or(|at| now - at >= rule.repeat);
            due |= repeat_due;
        }
        out.next.alerts.insert(rule.id.clone(), alert);
    }
    for (id, alert) in &prior.alerts {
        if readings.iter().any(|(r, _)| &r.id == id) {
            continue;
        }
        if let Some(rule) = retired.get(id) {
            resolve(rule, alert, &mut out);
        }
    }
    // One notification per account: when any alert is new, due again or
    // resolved, every unmuted firing alert goes with it (Alertmanager's group).
    if due || !out.send.is_empty() {
        for (rule, _) in readings {
            if let Some(alert) = out.next.alerts.get_mut(&rule.id) {
                if alert.phase == Phase::Firing && !muted(rule) {
                    alert.notified_at = Some(now);
                    out.send.push(notified(rule, alert, Status::Firing, now));
                }
            }
        }
    }
    out.send.sort_by(|a, b| a.rule.cmp(&b.rule));
    // Only the value changed: no write (the next evaluation reads it anew).
    type Key = (
        String,
        Phase,
        OffsetDateTime,
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
    );
    let comparable = |a: &AccountAlerts| -> Vec<Key> {
        a.alerts
            .iter()
            .map(|(k, v)| (k.clone(), v.phase, v.since, v.notified_at, v.clear_since))
            .collect()
    };
    out.changed = comparable(&out.next) != comparable(prior);
    out
}

/// An alert that fired, as the history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub account: String,
    pub rule: String,
    pub kind: String,
    pub severity: String,
    pub state: Status,
    pub started_at: OffsetDateTime,
    pub fired_at: OffsetDateTime,
    pub resolved_at: Option<OffsetDateTime>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub labels: BTreeMap<String, String>,
    /// False if it fired while silenced.
    pub notified: bool,
}

/// The EventBridge `detail-type` of every notification (README, "Alerts").
pub const DETAIL_TYPE: &str = "Vigil Alert Notification";
/// The EventBridge `source` of every notification.
pub const EVENT_SOURCE: &str = "vigil.alerts";
/// The payload's schema version.
pub const SCHEMA_VERSION: &str = "1";

/// One account's alerts sent together: the EventBridge event's `detail`, and
/// the webhook's body. Account id, rule ids and figures; never personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub schema_version: String,
    /// Stable across retries: a receiver drops one it has seen.
    pub id: String,
    pub tenant: String,
    pub account: String,
    /// `firing` if any alert in it fires, else `resolved`.
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub alerts: Vec<NotifiedAlertView>,
}

/// A notified alert with the line a person reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifiedAlertView {
    #[serde(flatten)]
    pub alert: NotifiedAlert,
    pub summary: String,
}

impl Notification {
    /// The notification of an account's state `version` (the one a commit
    /// writes): two evaluations that reach the same state name it alike.
    pub fn new(
        tenant: &str,
        account: &AccountId,
        version: u64,
        alerts: Vec<NotifiedAlert>,
        now: OffsetDateTime,
    ) -> Notification {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{tenant}|{account}|{version}").as_bytes());
        let id = format!("n_{}", &hex::encode(digest)[..24]);
        let status = if alerts.iter().any(|a| a.status == Status::Firing) {
            Status::Firing
        } else {
            Status::Resolved
        };
        Notification {
            schema_version: SCHEMA_VERSION.to_owned(),
            id,
            tenant: tenant.to_owned(),
            account: account.to_string(),
            status,
            created_at: now,
            alerts: alerts
                .into_iter()
                .map(|alert| NotifiedAlertView {
                    summary: describe(&alert),
                    alert,
                })
                .collect(),
        }
    }
}

/// One line a person can read about a notified alert (figures only).
pub fn describe(alert: &NotifiedAlert) -> String {
    let value = alert.value.unwrap_or(0.0);
    let threshold = alert.threshold.unwrap_or(0.0);
    // The history keeps no window: its lines say less, never something wrong.
    let over = alert
        .window
        .as_deref()
        .map(|w| format!(" over {w}"))
        .unwrap_or_default();
    let text = match alert.kind {
        Kind::UsageDrop => format!(
            "calls {:.0} % below the usual{over} (threshold {:.0} %)",
            value * 100.0,
            threshold * 100.0
        ),
        Kind::UsageSpike => format!("calls {value:.1}× the usual{over}"),
        Kind::Quota => format!("{:.0} % of the monthly quota used", value * 100.0),
        Kind::QuotaForecast => format!(
            "on pace for {:.0} % of the monthly quota by the end of the month",
            value * 100.0
        ),
        Kind::ErrorRate => format!("{:.1} % of calls failed{over}", value * 100.0),
        Kind::LatencyP95 => format!("p95 latency {value:.0} ms{over}"),
        Kind::Inactivity => format!("no activity for {value:.0} days"),
        Kind::PaymentFailed => "the latest payment failed".to_owned(),
        Kind::TicketSurge => format!("{value:.0} support tickets opened{over}"),
        Kind::HealthBelow => format!("health score {value:.0} (below {threshold:.0})"),
    };
    match alert.status {
        Status::Firing => text,
        Status::Resolved => format!("resolved: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sketch::ActiveUsers;
    use time::macros::datetime;

    fn calls(n: u64) -> Rollup {
        Rollup {
            counters: [("calls".to_owned(), n), ("latency_le_50".to_owned(), n)].into(),
            users: ActiveUsers::default(),
        }
    }

    fn rule(kind: Kind, threshold: Option<f64>, window: Option<Duration>) -> Rule {
        Rule {
            id: "r".into(),
            kind,
            threshold,
            window,
            min_calls: 10,
            pending_for: Duration::hours(2),
            repeat: Duration::hours(6),
            keep_firing_for: Duration::ZERO,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            scope: Scope::All,
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_duration("3d"), Some(Duration::days(3)));
        for bad in ["", "d", "-1d", "1.5h", "3w", "1 d", "9999999m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::hours(48)), "2d");
        assert_eq!(format_duration(Duration::minutes(90)), "90m");
    }

    #[test]
    fn a_quiet_weekend_is_not_a_drop_but_a_quiet_week_is() {
        // Weekdays 100 calls, weekends 10, for five weeks; today is a Monday.
        let now = datetime!(2026-11-30 09:00 UTC);
        let mut days = BTreeMap::new();
        for back in 1..=35 {
            let day = rollup::day_of(now) - Duration::days(back);
            let weekend = matches!(
                day.weekday(),
                time::Weekday::Saturday | time::Weekday::Sunday
            );
            days.insert(day, calls(if weekend { 10 } else { 100 }));
        }
        let hours = BTreeMap::new();
        let drop = rule(Kind::UsageDrop, Some(0.5), Some(Duration::days(2)));
        let facts = Facts {
            now,
            registered: true,
            monthly_quota: None,
            open_tickets: 0,
            days: &days,
            hours: &hours,
        };
        let reading = facts.read(&drop);
        assert!(!reading.breached, "{reading:?}");
        assert_eq!(reading.value, Some(0.0));
        // A quiet Friday (and Thursday) on top: no longer the usual.
        days.insert(rollup::day_of(now) - Duration::days(3), calls(10));
        days.insert(rollup::day_of(now) - Duration::days(4), calls(10));
        let facts = Facts {
            now,
            registered: true,
            monthly_quota: None,
            open_tickets: 0,
            days: &days,
            hours: &hours,
        };
        let three = rule(Kind::UsageDrop, Some(0.5), Some(Duration::days(3)));
        // Fri 10 (usual 100), Sat 10, Sun 10: 30 of 120 → 75 % lost.
        assert_eq!(facts.read(&three).value, Some(0.75));
        assert!(facts.read(&three).breached);
    }

    #[test]
    fn pending_then_firing_then_resolved_with_repeats() {
        let account = AccountId::parse("acme").expect("id");
        let r = rule(Kind::Inactivity, None, Some(Duration::days(7)));
        let t0 = datetime!(2026-11-30 00:00 UTC);
        let on = Reading {
            value: Some(8.0),
            breached: true,
        };
        let off = Reading {
            value: Some(0.0),
            breached: false,
        };
        let none = BTreeMap::new();
        let s1 = step(
            &account,
            &[(&r, on.clone())],
            &none,
            &AccountAlerts::default(),
            &[],
            t0,
        );
        assert!(s1.changed && s1.send.is_empty());
        assert_eq!(s1.next.alerts["r"].phase, Phase::Pending);
        // Twice at the same time: nothing more.
        let again = step(&account, &[(&r, on.clone())], &none, &s1.next, &[], t0);
        assert!(!again.changed && again.send.is_empty());
        let t2 = t0 + Duration::hours(2);
        let s2 = step(&account, &[(&r, on.clone())], &none, &s1.next, &[], t2);
        assert_eq!(s2.send.len(), 1);
        assert_eq!(s2.send[0].status, Status::Firing);
        assert_eq!(s2.send[0].started_at, t0);
        let s3 = step(
            &account,
            &[(&r, on.clone())],
            &none,
            &s2.next,
            &[],
            t2 + Duration::hours(5),
        );
        assert!(s3.send.is_empty() && !s3.changed);
        let s4 = step(
            &account,
            &[(&r, on.clone())],
            &none,
            &s2.next,
            &[],
            t2 + Duration::hours(6),
        );
        assert_eq!(s4.send.len(), 1, "repeat after 6 h");
        let s5 = step(
            &account,
            &[(&r, off)],
            &none,
            &s4.next,
            &[],
            t2 + Duration::hours(7),
        );
        assert_eq!(s5.send.len(), 1);
        assert_eq!(s5.send[0].status, Status::Resolved);
        assert!(s5.next.alerts.is_empty());
    }

    #[test]
    fn keep_firing_for_pages_once_through_a_flap() {
        let account = AccountId::parse("acme").expect("id");
        let mut r = rule(Kind::ErrorRate, Some(0.1), Some(Duration::hours(6)));
        r.pending_for = Duration::ZERO;
        r.keep_firing_for = Duration::hours(3);
        let (on, off) = (
            Reading {
                value: Some(0.2),
                breached: true,
            },
            Reading {
                value: Some(0.0),
                breached: false,
            },
        );
        let none = BTreeMap::new();
        let t0 = datetime!(2026-11-30 00:00 UTC);
        let fired = step(
            &account,
            &[(&r, on.clone())],
            &none,
            &AccountAlerts::default(),
            &[],
            t0,
        );
        assert_eq!(fired.send.len(), 1);
        // Clear for 2 h, then breached again: still the same alert, nothing sent.
        let clear = step(
            &account,
            &[(&r, off.clone())],
            &none,
            &fired.next,
            &[],
            t0 + Duration::hours(1),
        );
        assert!(clear.send.is_empty() && clear.changed);
        assert_eq!(clear.next.alerts["r"].phase, Phase::Firing);
        let again = step(
            &account,
            &[(&r, on)],
            &none,
            &clear.next,
            &[],
            t0 + Duration::hours(2),
        );
        assert!(again.send.is_empty() && again.transitions.is_empty());
        assert_eq!(again.next.alerts["r"].clear_since, None);
        // Clear for 3 h: resolved, once.
        let c1 = step(
            &account,
            &[(&r, off.clone())],
            &none,
            &again.next,
            &[],
            t0 + Duration::hours(3),
        );
        let c2 = step(
            &account,
            &[(&r, off)],
            &none,
            &c1.next,
            &[],
            t0 + Duration::hours(6),
        );
        assert!(c1.send.is_empty());
        assert_eq!(c2.send.len(), 1);
        assert_eq!(c2.send[0].status, Status::Resolved);
    }

    #[test]
    fn silences_mute_without_losing_state() {
        let account = AccountId::parse("acme").expect("id");
        let mut r = rule(Kind::PaymentFailed, None, None);
        r.pending_for = Duration::ZERO;
        let t0 = datetime!(2026-11-30 00:00 UTC);
        let on = Reading {
            value: Some(1.0),
            breached: true,
        };
        let silence = Silence {
            id: "s".into(),
            account: Some("acme".into()),
            rule: None,
            labels: BTreeMap::new(),
            starts_at: t0,
            ends_at: t0 + Duration::hours(1),
        };
        let none = BTreeMap::new();
        let muted = step(
            &account,
            &[(&r, on.clone())],
            &none,
            &AccountAlerts::default(),
            std::slice::from_ref(&silence),
            t0,
        );
        assert!(muted.send.is_empty());
        assert_eq!(muted.next.alerts["r"].phase, Phase::Firing);
        assert!(!muted.transitions[0].sent);
        // The silence over, the firing alert is sent once.
        let later = t0 + Duration::hours(1);
        let sent = step(&account, &[(&r, on)], &none, &muted.next, &[silence], later);
        assert_eq!(sent.send.len(), 1);
        assert_eq!(sent.send[0].fired_at, t0);
    }
}
