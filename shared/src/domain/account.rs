//! Accounts: the tenant's customers, their contracts, and the summary and health
//! score the dashboard shows for each (docs/decisions/0015).
//!
//! Health starts at 100; each signal below takes points off (never below 0):
//!
//! | signal | points |
//! |---|---|
//! | `silent`: no API or product activity in the window | 35 |
//! | `inactive`: activity, but none in the window's last 7 days | 20 |
//! | `usage_drop`: calls fell 20 % or more against the previous window | half the drop in percent, at most 30 |
//! | `errors`: error rate (4xx and 5xx) above 2 % | 2 per point above 2 %, at most 20 |
//! | `latency`: p95 above 1,000 ms | 10 |
//! | `quota`: units of the billing month at 90 % / 100 % of the quota | 5 / 10 |
//! | `payment_failed`: the latest payment outcome is a failure | 30 |
//! | `open_tickets`: support tickets open | 4 each, at most 16 |
//!
//! Bands: green from 75, amber from 50, red below.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, Duration};

use super::rollup::{self, Rollup};

/// What the tenant tells of one of its customers (`PUT /v1/accounts/{account}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountContract {
    pub name: String,
    pub plan: Option<String>,
    /// Units the plan includes per calendar month (UTC).
    pub monthly_quota: Option<u64>,
    pub relationship_start: Option<Date>,
    /// Drives retention: the account's data goes 3 years after it.
    pub relationship_end: Option<Date>,
    pub tags: Vec<String>,
}

/// A contract as the API shows it (dates as `yyyy-mm-dd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractView {
    pub name: String,
    pub plan: Option<String>,
    pub monthly_quota: Option<u64>,
    pub relationship_start: Option<String>,
    pub relationship_end: Option<String>,
    pub tags: Vec<String>,
}

impl AccountContract {
    pub fn view(&self) -> ContractView {
        ContractView {
            name: self.name.clone(),
            plan: self.plan.clone(),
            monthly_quota: self.monthly_quota,
            relationship_start: self.relationship_start.map(rollup::day_label),
            relationship_end: self.relationship_end.map(rollup::day_label),
            tags: self.tags.clone(),
        }
    }
}

/// A window of whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Date,
    pub to: Date,
}

impl Window {
    pub fn days(&self) -> i64 {
        (self.to - self.from).whole_days() + 1
    }

    /// The window of the same length just before this one.
    pub fn previous(&self) -> Window {
        let length = Duration::days(self.days());
        Window {
            from: self.from - length,
            to: self.to - length,
        }
    }

    /// The first day a summary reads: the previous window's, or the billing month's.
    pub fn read_from(&self) -> Date {
        self.previous().from.min(rollup::month_start(self.to))
    }

    pub fn contains(&self, day: Date) -> bool {
        (self.from..=self.to).contains(&day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Green,
    Amber,
    Red,
}

impl Band {
    pub fn of(score: u32) -> Band {
        match score {
            75.. => Band::Green,
            50.. => Band::Amber,
            _ => Band::Red,
        }
    }

    pub fn parse(value: &str) -> Option<Band> {
        [Band::Green, Band::Amber, Band::Red]
            .into_iter()
            .find(|b| b.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Green => "green",
            Band::Amber => "amber",
            Band::Red => "red",
        }
    }
}

/// One signal that pulled the score down, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Penalty {
    pub signal: &'static str,
    pub points: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub score: u32,
    pub band: Band,
    pub penalties: Vec<Penalty>,
}

/// The latest payment outcome seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingStatus {
    Paid,
    Failed,
    Unknown,
}

/// One account over a window: what the accounts list shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub calls: u64,
    pub previous_calls: u64,
    /// Change of calls against the previous window (0.25 = +25 %); None if it had none.
    pub trend: Option<f64>,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub error_rate: Option<f64>,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub active_users: u64,
    pub billing_month: String,
    pub units_billing_month: u64,
    pub quota_share: Option<f64>,
    /// The last day with API or product activity among the days read.
    pub last_seen: Option<String>,
    pub open_tickets: u64,
    pub billing_status: BillingStatus,
    pub health: Health,
    /// Calls per day of the window, oldest first.
    pub sparkline: Vec<u64>,
}

impl Summary {
    /// The summary of `window` from the account's day rollups (from
    /// `window.read_from()` to `window.to`), its quota and its open tickets.
    pub fn of(
        window: Window,
        days: &BTreeMap<Date, Rollup>,
        monthly_quota: Option<u64>,
        open_tickets: u64,
    ) -> Summary {
        let sum = |w: Window| Rollup::merged(days.range(w.from..=w.to).map(|(_, r)| r));
        let current = sum(window);
        let previous = sum(window.previous());
        let month_start = rollup::month_start(window.to);
        let units_billing_month: u64 = days
            .range(month_start..=window.to)
            .map(|(_, r)| r.get("units"))
            .sum();
        let quota_share = monthly_quota
            .filter(|q| *q > 0)
            .map(|q| units_billing_month as f64 / q as f64);
        let last_seen = days
            .range(..=window.to)
            .rev()
            .find(|(_, r)| r.is_active())
            .map(|(day, _)| *day);
        let billing_status = days
            .range(..=window.to)
            .rev()
            .map(|(_, r)| (r.get("paid_payments"), r.get("failed_payments")))
            .find(|(paid, failed)| paid + failed > 0)
            .map_or(BillingStatus::Unknown, |(paid, failed)| {
                if failed > paid {
                    BillingStatus::Failed
                } else {
                    BillingStatus::Paid
                }
            });
        let calls = current.calls();
        let previous_calls = previous.calls();
        let trend = (previous_calls > 0)
            .then(|| (calls as f64 - previous_calls as f64) / previous_calls as f64);
        let mut summary = Summary {
            calls,
            previous_calls,
            trend,
            errors_4xx: current.get("errors_4xx"),
            errors_5xx: current.get("errors_5xx"),
            error_rate: current.error_rate(),
            latency_p50_ms: current.latency_percentile(0.50),
            latency_p95_ms: current.latency_percentile(0.95),
            active_users: current.users.estimate(),
            billing_month: rollup::month_label(window.to),
            units_billing_month,
            quota_share,
            last_seen: last_seen.map(rollup::day_label),
            open_tickets,
            billing_status,
            health: Health {
                score: 100,
                band: Band::Green,
                penalties: Vec::new(),
            },
            sparkline: rollup::days(window.from, window.to)
                .map(|d| days.get(&d).map_or(0, Rollup::calls))
                .collect(),
        };
        summary.health = health(&summary, window, last_seen, current.is_active());
        summary
    }
}

fn penalty(signal: &'static str, points: u32, reason: String) -> Penalty {
    Penalty {
        signal,
        points,
        reason,
    }
}

/// The health score of a summary, with every signal that pulled it down.
fn health(summary: &Summary, window: Window, last_seen: Option<Date>, active: bool) -> Health {
    let mut penalties = Vec::new();
    if !active {
        penalties.push(penalty(
            "silent",
            35,
            "no API or product activity in the window".into(),
        ));
    } else if last_seen.is_some_and(|d| (window.to - d).whole_days() >= 7) {
        penalties.push(penalty(
            "inactive",
            20,
            "no activity in the window's last 7 days".into(),
        ));
    }
    if let Some(trend) = summary.trend {
        let drop = (-trend * 100.0).floor();
        if drop >= 20.0 {
            let points = ((drop / 2.0).floor() as u32).min(30);
            penalties.push(penalty(
                "usage_drop",
                points,
                format!("calls fell {drop:.0} % against the previous window"),
            ));
        }
    }
    if let Some(rate) = summary.error_rate {
        let over = rate * 100.0 - 2.0;
        if over > 0.0 {
            let points = ((over * 2.0).ceil() as u32).min(20);
            penalties.push(penalty(
                "errors",
                points,
                format!("{:.1} % of calls failed (over 2 %)", rate * 100.0),
            ));
        }
    }
    if summary.latency_p95_ms.is_some_and(|p95| p95 > 1000) {
        penalties.push(penalty(
            "latency",
            10,
            "95th percentile latency above 1,000 ms".into(),
        ));
    }
    if let Some(share) = summary.quota_share {
        let points = if share >= 1.0 {
            10
        } else if share >= 0.9 {
            5
        } else {
            0
        };
        if points > 0 {
            penalties.push(penalty(
                "quota",
                points,
                format!("{:.0} % of the monthly quota used", share * 100.0),
            ));
        }
    }
    if summary.billing_status == BillingStatus::Failed {
        penalties.push(penalty(
            "payment_failed",
            30,
            "the latest payment failed".into(),
        ));
    }
    if summary.open_tickets > 0 {
        let points = u32::try_from(summary.open_tickets.saturating_mul(4))
            .unwrap_or(u32::MAX)
            .min(16);
        penalties.push(penalty(
            "open_tickets",
            points,
            format!("{} support tickets open", summary.open_tickets),
        ));
    }
    let lost: u32 = penalties.iter().map(|p| p.points).sum();
    let score = 100u32.saturating_sub(lost);
    Health {
        score,
        band: Band::of(score),
        penalties,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sketch::ActiveUsers;
    use time::macros::date;

    fn day(calls: u64, errors_5xx: u64, units: u64) -> Rollup {
        let mut counters = BTreeMap::new();
        counters.insert("calls".to_owned(), calls);
        counters.insert("errors_5xx".to_owned(), errors_5xx);
        counters.insert("units".to_owned(), units);
        counters.insert("latency_le_100".to_owned(), calls);
        Rollup {
            counters,
            users: ActiveUsers::default(),
        }
    }

    #[test]
    fn a_window_knows_its_previous_and_what_to_read() {
        let w = Window {
            from: date!(2026 - 11 - 24),
            to: date!(2026 - 11 - 30),
        };
        assert_eq!(w.days(), 7);
        assert_eq!(w.previous().from, date!(2026 - 11 - 17));
        assert_eq!(w.previous().to, date!(2026 - 11 - 23));
        assert_eq!(w.read_from(), date!(2026 - 11 - 01));
    }

    #[test]
    fn a_silent_registered_account_is_amber() {
        let w = Window {
            from: date!(2026 - 11 - 01),
            to: date!(2026 - 11 - 30),
        };
        let s = Summary::of(w, &BTreeMap::new(), Some(100), 0);
        assert_eq!(s.health.score, 65);
        assert_eq!(s.health.band, Band::Amber);
        assert_eq!(s.sparkline.len(), 30);
        assert_eq!(s.quota_share, Some(0.0));
    }

    #[test]
    fn signals_add_up_and_are_explained() {
        let w = Window {
            from: date!(2026 - 11 - 21),
            to: date!(2026 - 11 - 30),
        };
        let mut days = BTreeMap::new();
        // Previous window: 10 days of 100 calls; this one: 10 days of 50, 5 % failing.
        for d in rollup::days(date!(2026 - 11 - 11), date!(2026 - 11 - 20)) {
            days.insert(d, day(100, 0, 100));
        }
        for d in rollup::days(w.from, w.to) {
            days.insert(d, day(50, 5, 100));
        }
        let s = Summary::of(w, &days, Some(2000), 2);
        assert_eq!(s.trend, Some(-0.5));
        assert_eq!(s.units_billing_month, 2000);
        assert_eq!(s.quota_share, Some(1.0));
        let points: Vec<(&str, u32)> = s
            .health
            .penalties
            .iter()
            .map(|p| (p.signal, p.points))
            .collect();
        // drop 50 % -> 25; 10 % errors -> 16; quota 100 % -> 10; 2 tickets -> 8.
        assert_eq!(
            points,
            vec![
                ("usage_drop", 25),
                ("errors", 16),
                ("quota", 10),
                ("open_tickets", 8)
            ]
        );
        assert_eq!(s.health.score, 41);
        assert_eq!(s.health.band, Band::Red);
    }
}
