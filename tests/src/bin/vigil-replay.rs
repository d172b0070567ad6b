//! The alert replay: how good are the default rules on the demo's stories?
//!
//! Reads a dump of the demo (`infra/local/demo.py --dump`): its accounts, its
//! events and the incidents each story holds, with when they start (the ground
//! truth, written by the generator). Rolls the events up as ingestion does
//! (`AggregateDelta`), then steps through the two months in simulated time,
//! every `--step-hours`, running the same decision the scheduled evaluation
//! runs (`app::alerts::account_step`) with the rollups as they stood at that
//! time. Then, per default rule: alerts that match an incident (the rule's
//! kind of incident, on that account, started before it fired), false alarms,
//! incidents missed (neither firing when it started nor fired after), and the
//! delay from an incident's start to its first alert.
//!
//!   cargo run -p vigil-tests --bin vigil-replay -- demo.json [--step-hours 1] [--json out.json]
//!       [--min-precision 0.9] [--min-recall 0.9]

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};
use vigil_shared::app::alerts::account_step;
use vigil_shared::domain::account::AccountContract;
use vigil_shared::domain::alert::{default_rules, AccountAlerts, Kind, Rule, Status};
use vigil_shared::domain::rollup::{self, Rollup};
use vigil_shared::domain::sketch::ActiveUsers;
use vigil_shared::domain::{
    validate_event, AccountId, AggregateDelta, HourBucket, Limits, StoredEvent, SubjectId,
};
use vigil_shared::ports::AccountEntry;

#[derive(Deserialize)]
struct Dump {
    now: String,
    start: String,
    accounts: Vec<DemoAccount>,
    events: Vec<Value>,
    incidents: Vec<Incident>,
}

#[derive(Deserialize)]
struct DemoAccount {
    id: String,
    story: String,
    plan: Option<String>,
    monthly_quota: Option<u64>,
    tags: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct Incident {
    account: String,
    incident: String,
    start: String,
}

fn parse(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|_| panic!("not a time: {text}"))
}

/// The incidents a rule is meant to catch.
fn catches(rule: &Rule) -> &'static [&'static str] {
    match rule.kind {
        Kind::UsageDrop => &["churn", "silence"],
        Kind::UsageSpike => &[],
        Kind::Quota if rule.threshold.unwrap_or(0.0) >= 1.0 => &["quota_100"],
        Kind::Quota => &["quota_80"],
        Kind::QuotaForecast => &["over_quota_month"],
        Kind::ErrorRate => &["errors"],
        Kind::LatencyP95 => &["latency"],
        // A churning account that has stopped calling is inactive too.
        Kind::Inactivity => &["silence", "churn"],
        Kind::PaymentFailed => &["payment_failed"],
        Kind::TicketSurge => &["complaints"],
        Kind::HealthBelow => &["churn", "errors", "silence"],
    }
}

/// One account's rollups: hours, and each day's hours merged as it goes.
struct Rolled {
    hours: BTreeMap<HourBucket, Rollup>,
    /// Open-ticket changes by hour (the directory's count as it went).
    tickets: BTreeMap<HourBucket, i64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: vigil-replay DUMP.json [--step-hours N] [--json OUT]");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let step_hours: i64 = flag("--step-hours").map_or(1, |v| v.parse().expect("hours"));
    let dump: Dump = serde_json::from_str(&std::fs::read_to_string(path).expect("read the dump"))
        .expect("a demo dump");
    let (start, end) = (parse(&dump.start), parse(&dump.now));

    // Roll up as ingestion does: validate, pseudonymise, group by account-hour.
    let limits = Limits::default();
    let mut events = Vec::new();
    for value in &dump.events {
        let event = validate_event(value, end, &limits)
            .expect("the demo's events are valid")
            .event;
        let subject = event
            .user
            .as_ref()
            .map(|u| SubjectId::from_stored(format!("s_{u}")));
        events.push(StoredEvent::pseudonymised(event, subject));
    }
    let mut rolled: BTreeMap<String, Rolled> = BTreeMap::new();
    for delta in AggregateDelta::group(&events) {
        let r = rolled
            .entry(delta.account.to_string())
            .or_insert_with(|| Rolled {
                hours: BTreeMap::new(),
                tickets: BTreeMap::new(),
            });
        let rollup = Rollup {
            counters: delta.counters().into_iter().collect(),
            users: ActiveUsers::from_elements(delta.users.iter().copied()),
        };
        r.hours.entry(delta.hour).or_default().merge(&rollup);
        *r.tickets.entry(delta.hour).or_default() += delta.open_tickets_change();
    }

    let rules = default_rules();
    let mut states: BTreeMap<String, AccountAlerts> = BTreeMap::new();
    // (account, rule) -> each alert: when it fired, and resolved (None: still firing).
    type Episodes = Vec<(OffsetDateTime, Option<OffsetDateTime>)>;
    let mut fired: BTreeMap<(String, String), Episodes> = BTreeMap::new();
    let mut steps = 0;
    let mut now = start + Duration::days(1);
    while now <= end {
        steps += 1;
        let today = rollup::day_of(now);
        for account in &dump.accounts {
            let Some(r) = rolled.get(&account.id) else {
                continue;
            };
            // Steps fall on whole hours: the hours before `now` hold exactly
            // the events ingested by then (the current hour holds none yet).
            let current = HourBucket::of(now);
            let hours: BTreeMap<HourBucket, Rollup> = r
                .hours
                .range(..current)
                .map(|(h, x)| (*h, x.clone()))
                .collect();
            if hours.is_empty() {
                // Not a customer yet: the directory lists it from its first event.
                continue;
            }
            let mut days: BTreeMap<Date, Rollup> = BTreeMap::new();
            let first_day = today - Duration::days(vigil_shared::domain::alert::DAYS_READ - 1);
            for (hour, x) in &hours {
                let day = rollup::day_of(hour.start());
                if day >= first_day {
                    days.entry(day).or_default().merge(x);
                }
            }
            let open: i64 = r.tickets.range(..current).map(|(_, n)| n).sum();
            let entry = AccountEntry {
                account: AccountId::parse(&account.id).expect("account id"),
                contract: account.plan.as_ref().map(|plan| AccountContract {
                    name: account.id.clone(),
                    plan: Some(plan.clone()),
                    monthly_quota: account.monthly_quota,
                    relationship_start: None,
                    relationship_end: None,
                    tags: account.tags.clone(),
                }),
                open_tickets: open.max(0) as u64,
                registered_at: None,
                updated_at: None,
                quota_lowered_on: None,
            };
            let prior = states.remove(&account.id).unwrap_or_default();
            let step = account_step(&entry, &rules, &[], &prior, &days, &hours, now);
            for t in &step.transitions {
                let episodes = fired
                    .entry((account.id.clone(), t.alert.rule.clone()))
                    .or_default();
                match t.alert.status {
                    Status::Firing => episodes.push((t.alert.fired_at, None)),
                    Status::Resolved => {
                        if let Some(e) = episodes.iter_mut().find(|e| e.0 == t.alert.fired_at) {
                            e.1 = Some(now);
                        }
                    }
                }
            }
            let mut next = step.next;
            next.version = prior.version + u64::from(step.changed);
            states.insert(account.id.clone(), next);
        }
        now += Duration::hours(step_hours);
    }

    // Score each rule against the incidents it is meant to catch.
    let story_of: BTreeMap<&str, &str> = dump
        .accounts
        .iter()
        .map(|a| (a.id.as_str(), a.story.as_str()))
        .collect();
    let mut report = Vec::new();
    println!(
        "Alert replay of the demo ({} accounts, {} events, {} to {}, a step every {} h, {} steps)",
        dump.accounts.len(),
        dump.events.len(),
        dump.start,
        dump.now,
        step_hours,
        steps
    );
    println!(
        "{:<15} {:>6} {:>8} {:>6} {:>9} {:>6} {:>9} {:>7} {:>13}",
        "rule",
        "alerts",
        "matching",
        "false",
        "incidents",
        "missed",
        "precision",
        "recall",
        "median delay"
    );
    let (mut all_alerts, mut all_matching, mut all_incidents, mut all_caught) = (0, 0, 0, 0);
    let mut all_delays = Vec::new();
    for rule in &rules {
        let kinds = catches(rule);
        let incidents: Vec<&Incident> = dump
            .incidents
            .iter()
            .filter(|i| kinds.contains(&i.incident.as_str()))
            .collect();
        let mut matching = 0;
        let mut false_alarms = Vec::new();
        let mut caught: BTreeSet<usize> = BTreeSet::new();
        let mut delays = Vec::new();
        let mut first_hit: BTreeMap<usize, OffsetDateTime> = BTreeMap::new();
        let mut alerts = 0;
        for ((account, rule_id), episodes) in &fired {
            if rule_id != &rule.id {
                continue;
            }
            // An incident that starts while an alert of its kind already fires
            // on the account is caught at once (delay 0).
            for (index, incident) in incidents.iter().enumerate() {
                let start = parse(&incident.start);
                let firing = episodes
                    .iter()
                    .any(|(at, until)| *at <= start && until.is_none_or(|u| u > start));
                if &incident.account == account && firing {
                    caught.insert(index);
                    first_hit.insert(index, start);
                }
            }
            for (t, _) in episodes {
                alerts += 1;
                // The latest incident of the account that started before it fired.
                let hit = incidents
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| &i.account == account && parse(&i.start) <= *t)
                    .max_by_key(|(_, i)| parse(&i.start));
                match hit {
                    Some((index, _)) => {
                        matching += 1;
                        caught.insert(index);
                        let at = first_hit.entry(index).or_insert(*t);
                        *at = (*at).min(*t);
                    }
                    None => false_alarms.push(format!(
                        "{account} ({})",
                        story_of.get(account.as_str()).unwrap_or(&"?")
                    )),
                }
            }
        }
        for (index, at) in &first_hit {
            delays.push((*at - parse(&incidents[*index].start)).whole_minutes() as f64 / 60.0);
        }
        delays.sort_by(|a, b| a.total_cmp(b));
        let median = (!delays.is_empty()).then(|| delays[delays.len() / 2]);
        let precision = (alerts > 0).then(|| matching as f64 / alerts as f64);
        let recall = (!incidents.is_empty()).then(|| caught.len() as f64 / incidents.len() as f64);
        let show = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{:.0} %", v * 100.0));
        println!(
            "{:<15} {:>6} {:>8} {:>6} {:>9} {:>6} {:>9} {:>7} {:>13}",
            rule.id,
            alerts,
            matching,
            false_alarms.len(),
            incidents.len(),
            incidents.len() - caught.len(),
            show(precision),
            show(recall),
            median.map_or("n/a".to_owned(), |h| format!("{h:.1} h")),
        );
        if !false_alarms.is_empty() {
            let unique: BTreeSet<&String> = false_alarms.iter().collect();
            println!(
                "{:<15} false alarms on: {}",
                "",
                unique.into_iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let missed: Vec<String> = incidents
            .iter()
            .enumerate()
            .filter(|(i, _)| !caught.contains(i))
            .map(|(_, i)| format!("{} {}", i.account, i.incident))
            .collect();
        if !missed.is_empty() {
            println!("{:<15} missed: {}", "", missed.join(", "));
        }
        all_alerts += alerts;
        all_matching += matching;
        all_incidents += incidents.len();
        all_caught += caught.len();
        all_delays.extend(delays.iter().copied());
        report.push(json!({
            "rule": rule.id, "kind": rule.kind.as_str(), "alerts": alerts, "matching": matching,
            "false_alarms": false_alarms.len(), "incidents": incidents.len(), "missed": incidents.len() - caught.len(),
            "precision": precision, "recall": recall, "median_delay_hours": median,
        }));
    }
    all_delays.sort_by(|a, b| a.total_cmp(b));
    let median = (!all_delays.is_empty()).then(|| all_delays[all_delays.len() / 2]);
    let precision = all_matching as f64 / all_alerts.max(1) as f64;
    let recall = all_caught as f64 / all_incidents.max(1) as f64;
    println!(
        "all rules: precision {:.0} % ({all_matching} of {all_alerts} alerts match an incident), recall {:.0} % ({all_caught} of {all_incidents} incidents), median detection delay {}",
        precision * 100.0,
        recall * 100.0,
        median.map_or("n/a".to_owned(), |h| format!("{h:.1} h"))
    );
    // Floors for ./infra/test: a change that makes the default rules worse fails.
    for (name, value) in [("--min-precision", precision), ("--min-recall", recall)] {
        if let Some(floor) = flag(name).map(|v| v.parse::<f64>().expect("a share")) {
            if value < floor {
                eprintln!("the default rules fell below {name} {floor}: {value:.2}");
                std::process::exit(1);
            }
        }
    }
    if let Some(out) = flag("--json") {
        let body = json!({"step_hours": step_hours, "rules": report,
            "all": {"precision": precision, "recall": recall, "median_delay_hours": median}});
        std::fs::write(&out, serde_json::to_string_pretty(&body).expect("json"))
            .expect("write the report");
    }
}
