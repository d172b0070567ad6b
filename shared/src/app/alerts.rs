//! Alert use cases (docs/decisions/0017): rules, silences and the webhook as
//! the API receives them (validated, each error naming its field), and the
//! scheduled work: evaluate every account of a tenant at `now`, commit what
//! changed, then deliver the outbox to the bus and the webhook.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::adapters::bus::AlertBus;
use crate::adapters::dynamo::alerts::{AlertsTable, Delivery, Pending, StoredSettings};
use crate::adapters::dynamo::AggregateTable;
use crate::adapters::kms::WebhookSecrets;
use crate::adapters::webhook::{acceptable_url, WebhookClient, WebhookFailure};
use crate::app::accounts::is_label;
use crate::domain::aggregate::HourBucket;
use crate::domain::alert::{
    self, default_rules, describe, format_duration, parse_duration, AccountAlerts, Facts,
    HistoryEntry, Kind, Notification, NotifiedAlert, Reading, Rule, Scope, Severity, Silence,
    Status, DAYS_READ, DEFAULT_MIN_CALLS,
};
use crate::domain::retention::MAX_SILENCE;
use crate::domain::rollup::{self, day_label, Rollup};
use crate::domain::{AccountId, TenantId};
use crate::http::ApiError;
use crate::ports::{AccountEntry, DashboardStore, Granularity, StoreError};

pub const MAX_RULES: usize = 40;
pub const MAX_LABELS: usize = 10;
pub const MAX_LABEL_VALUE_CHARS: usize = 60;
pub const MAX_SCOPE_ACCOUNTS: usize = 100;
/// Accounts whose rollups are read at once.
const CONCURRENT_ACCOUNTS: usize = 16;
/// How long a run holds a notification it is delivering.
const DELIVERY_LEASE: Duration = Duration::minutes(2);
/// Attempts (one per run, after the backoff) before a delivery is given up.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 8;
/// Notifications one run delivers per tenant at most (a healthy receiver answers
/// in tens of milliseconds; a failing one is probed once per run).
pub const MAX_DELIVERIES_PER_RUN: usize = 500;
/// Times an evaluation reads an account again after losing a race for it.
const COMMIT_TRIES: usize = 3;

/// A rule as the API reads and writes it (and as it is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub id: String,
    pub kind: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub threshold: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub window: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::whole_number"
    )]
    pub min_calls: Option<i64>,
    #[serde(
        rename = "for",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub pending_for: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub repeat: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub keep_firing_for: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub severity: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub scope: Option<ScopeBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub plan: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub tag: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub accounts: Option<Vec<String>>,
}

/// `PUT /v1/alerts/rules`: the whole rule set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesBody {
    pub rules: Vec<RuleBody>,
}

fn labels_valid(labels: &BTreeMap<String, String>, field: &str) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(field, "at most 10 labels"));
    }
    for (name, value) in labels {
        if !is_label(name) {
            return Err(ApiError::invalid(
                format!("{field}.{name}"),
                "label names are 1 to 40 lowercase letters, digits, - or _",
            ));
        }
        // Labels travel in notifications: no room for a person's address.
        if value.is_empty()
            || value.chars().count() > MAX_LABEL_VALUE_CHARS
            || value
                .chars()
                .any(|c| c.is_control() || c == '@' || c == '＠')
        {
            return Err(ApiError::invalid(
                format!("{field}.{name}"),
                "label values are 1 to 60 characters, without control characters or @",
            ));
        }
    }
    Ok(())
}

impl RuleBody {
    /// The rule, or the field (`rules[i].…`) that is wrong and what it should be.
    pub fn validate(&self, at: &str, known: &HashSet<String>) -> Result<Rule, ApiError> {
        let field = |name: &str| format!("{at}.{name}");
        if !is_label(&self.id) {
            return Err(ApiError::invalid(
                field("id"),
                "expected 1 to 40 lowercase letters, digits, - or _",
            ));
        }
        let names: Vec<&str> = alert::KINDS.iter().map(|k| k.name).collect();
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            ApiError::invalid(
                field("kind"),
                format!("expected one of {}", names.join(", ")),
            )
        })?;
        let spec = kind.spec();
        let threshold = match (spec.threshold, self.threshold) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    field("threshold"),
                    format!("{} takes no threshold", spec.name),
                ))
            }
            (Some((_, _, what)), None) => {
                return Err(ApiError::invalid(
                    field("threshold"),
                    format!("required: {what}"),
                ))
            }
            (Some((min, max, what)), Some(t)) => {
                if !(t.is_finite() && (min..=max).contains(&t)) {
                    return Err(ApiError::invalid(
                        field("threshold"),
                        format!("expected {what}"),
                    ));
                }
                Some(t)
            }
        };
        let window = match (spec.window, &self.window) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    field("window"),
                    format!("{} takes no window", spec.name),
                ))
            }
            (Some((min, max)), given) => {
                let expected = format!(
                    "a duration such as 3d or 6h, from {} to {}{}",
                    format_duration(min),
                    format_duration(max),
                    if min >= Duration::days(1) {
                        ", in whole days"
                    } else {
                        ""
                    }
                );
                let Some(text) = given else {
                    return Err(ApiError::invalid(
                        field("window"),
                        format!("required: {expected}"),
                    ));
                };
                let w = parse_duration(text)
                    .filter(|w| (min..=max).contains(w))
                    .filter(|w| min < Duration::days(1) || w.whole_minutes() % (24 * 60) == 0)
                    .filter(|w| min >= Duration::days(1) || w.whole_minutes() % 60 == 0)
                    .ok_or_else(|| ApiError::invalid(field("window"), expected))?;
                Some(w)
            }
        };
        let min_calls = match self.min_calls {
            None => DEFAULT_MIN_CALLS,
            Some(_) if !spec.min_calls => {
                return Err(ApiError::invalid(
                    field("min_calls"),
                    format!("{} takes no min_calls", spec.name),
                ))
            }
            Some(n) if (1..=1_000_000).contains(&n) => n as u64,
            Some(_) => {
                return Err(ApiError::invalid(
                    field("min_calls"),
                    "expected an integer from 1 to 1000000",
                ))
            }
        };
        let pending_for = match &self.pending_for {
            None => Duration::ZERO,
            Some(text) => parse_duration(text)
                .filter(|d| *d <= Duration::days(30))
                .ok_or_else(|| {
                    ApiError::invalid(
                        field("for"),
                        "expected a duration such as 0m, 30m or 2h, at most 30d",
                    )
                })?,
        };
        let repeat = match &self.repeat {
            None => Duration::days(1),
            Some(text) => parse_duration(text)
                .filter(|d| (Duration::minutes(5)..=Duration::days(30)).contains(d))
                .ok_or_else(|| {
                    ApiError::invalid(field("repeat"), "expected a duration from 5m to 30d")
                })?,
        };
        let keep_firing_for = match &self.keep_firing_for {
            None => Duration::ZERO,
            Some(text) => parse_duration(text)
                .filter(|d| *d <= Duration::days(30))
                .ok_or_else(|| {
                    ApiError::invalid(
                        field("keep_firing_for"),
                        "expected a duration such as 0m or 6h, at most 30d",
                    )
                })?,
        };
        let severity = match &self.severity {
            None => Severity::Warning,
            Some(text) => Severity::parse(text).ok_or_else(|| {
                ApiError::invalid(field("severity"), "expected info, warning or critical")
            })?,
        };
        let labels = self.labels.clone().unwrap_or_default();
        labels_valid(&labels, &field("labels"))?;
        let scope = match &self.scope {
            None => Scope::All,
            Some(scope) => {
                let given = [
                    scope.plan.is_some(),
                    scope.tag.is_some(),
                    scope.accounts.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if given != 1 {
                    return Err(ApiError::invalid(
                        field("scope"),
                        "expected exactly one of plan, tag or accounts (leave scope out for all accounts)",
                    ));
                }
                if let Some(plan) = &scope.plan {
                    if !is_label(plan) {
                        return Err(ApiError::invalid(
                            field("scope.plan"),
                            "expected 1 to 40 lowercase letters, digits, - or _",
                        ));
                    }
                    Scope::Plan(plan.clone())
                } else if let Some(tag) = &scope.tag {
                    if !is_label(tag) {
                        return Err(ApiError::invalid(
                            field("scope.tag"),
                            "expected 1 to 40 lowercase letters, digits, - or _",
                        ));
                    }
                    Scope::Tag(tag.clone())
                } else {
                    let list = scope.accounts.clone().unwrap_or_default();
                    if list.is_empty() || list.len() > MAX_SCOPE_ACCOUNTS {
                        return Err(ApiError::invalid(
                            field("scope.accounts"),
                            "expected 1 to 100 account ids",
                        ));
                    }
                    let mut accounts = Vec::new();
                    for (j, id) in list.iter().enumerate() {
                        let at = field(&format!("scope.accounts[{j}]"));
                        let account = AccountId::parse(id)
                            .map_err(|e| ApiError::invalid(at.clone(), e.reason))?;
                        if !known.contains(account.as_str()) {
                            return Err(ApiError::invalid(
                                at,
                                "not an account of this tenant (register it, or send its events, first)",
                            ));
                        }
                        if !accounts.contains(&account) {
                            accounts.push(account);
                        }
                    }
                    Scope::Accounts(accounts)
                }
            }
        };
        Ok(Rule {
            id: self.id.clone(),
            kind,
            threshold,
            window,
            min_calls,
            pending_for,
            repeat,
            keep_firing_for,
            severity,
            labels,
            scope,
        })
    }

    /// The rule written back as the API shows it.
    pub fn of(rule: &Rule) -> RuleBody {
        let spec = rule.kind.spec();
        let (plan, tag, accounts) = match &rule.scope {
            Scope::All => (None, None, None),
            Scope::Plan(p) => (Some(p.clone()), None, None),
            Scope::Tag(t) => (None, Some(t.clone()), None),
            Scope::Accounts(a) => (None, None, Some(a.iter().map(|x| x.to_string()).collect())),
        };
        RuleBody {
            id: rule.id.clone(),
            kind: spec.name.to_owned(),
            threshold: rule.threshold,
            window: rule.window.map(format_duration),
            min_calls: spec.min_calls.then_some(rule.min_calls as i64),
            pending_for: Some(format_duration(rule.pending_for)),
            repeat: Some(format_duration(rule.repeat)),
            keep_firing_for: Some(format_duration(rule.keep_firing_for)),
            severity: Some(
                match rule.severity {
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                    Severity::Critical => "critical",
                }
                .to_owned(),
            ),
            labels: Some(rule.labels.clone()),
            scope: (plan.is_some() || tag.is_some() || accounts.is_some()).then_some(ScopeBody {
                plan,
                tag,
                accounts,
            }),
        }
    }
}

impl RulesBody {
    pub fn validate(&self, known: &HashSet<String>) -> Result<Vec<Rule>, ApiError> {
        if self.rules.len() > MAX_RULES {
            return Err(ApiError::invalid("rules", "at most 40 rules"));
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, body) in self.rules.iter().enumerate() {
            let rule = body.validate(&format!("rules[{i}]"), known)?;
            if rules.iter().any(|r| r.id == rule.id) {
                return Err(ApiError::invalid(
                    format!("rules[{i}].id"),
                    "must be unique among the rules",
                ));
            }
            rules.push(rule);
        }
        Ok(rules)
    }
}

/// `POST /v1/alerts/silences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    #[serde(default, deserialize_with = "crate::http::body::present")]
    pub account: Option<String>,
    #[serde(default, deserialize_with = "crate::http::body::present")]
    pub rule: Option<String>,
    #[serde(default, deserialize_with = "crate::http::body::present")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "crate::http::body::present")]
    pub starts_at: Option<String>,
    pub ends_at: String,
}

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "expected an RFC 3339 time such as 2026-12-01T09:00:00Z",
            )
        })
}

impl SilenceBody {
    pub fn validate(&self, id: String, now: OffsetDateTime) -> Result<Silence, ApiError> {
        if let Some(account) = &self.account {
            AccountId::parse(account).map_err(|e| ApiError::invalid("account", e.reason))?;
        }
        if let Some(rule) = &self.rule {
            if !is_label(rule) {
                return Err(ApiError::invalid(
                    "rule",
                    "expected a rule id (1 to 40 lowercase letters, digits, - or _)",
                ));
            }
        }
        let labels = self.labels.clone().unwrap_or_default();
        labels_valid(&labels, "labels")?;
        if self.account.is_none() && self.rule.is_none() && labels.is_empty() {
            return Err(ApiError::invalid(
                "account",
                "a silence needs at least one of account, rule or labels",
            ));
        }
        let starts_at = match &self.starts_at {
            None => now,
            Some(text) => parse_time("starts_at", text)?,
        };
        let ends_at = parse_time("ends_at", &self.ends_at)?;
        if ends_at <= starts_at.max(now) {
            return Err(ApiError::invalid(
                "ends_at",
                "must be after starts_at and after now",
            ));
        }
        if ends_at > now + MAX_SILENCE {
            return Err(ApiError::invalid("ends_at", "at most 90 days from now"));
        }
        Ok(Silence {
            id,
            account: self.account.clone(),
            rule: self.rule.clone(),
            labels,
            starts_at: starts_at.replace_nanosecond(0).unwrap_or(starts_at),
            ends_at: ends_at.replace_nanosecond(0).unwrap_or(ends_at),
        })
    }
}

/// `PUT /v1/alerts/webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    pub url: String,
    /// Issue a new signing secret (the old one stops working).
    #[serde(default, deserialize_with = "crate::http::body::present")]
    pub rotate_secret: Option<bool>,
}

impl WebhookBody {
    pub fn validate(&self, allow_loopback: bool) -> Result<(), ApiError> {
        if !acceptable_url(&self.url, allow_loopback) {
            return Err(ApiError::invalid(
                "url",
                "expected an https:// URL of at most 2048 characters, without credentials",
            ));
        }
        Ok(())
    }
}

/// The rules in force: the tenant's, or the defaults until it sets its own.
pub fn rules_in_force(settings: &StoredSettings) -> Result<(Vec<Rule>, bool), StoreError> {
    match &settings.rules {
        None => Ok((default_rules(), true)),
        Some(json) => {
            let bodies: Vec<RuleBody> =
                serde_json::from_str(json).map_err(|_| StoreError::corrupt("alert rules"))?;
            // Account lists were checked when stored; an account may be gone since.
            let everyone: HashSet<String> = bodies
                .iter()
                .filter_map(|b| b.scope.as_ref()?.accounts.clone())
                .flatten()
                .collect();
            let rules = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| b.validate(&format!("rules[{i}]"), &everyone))
                .collect::<Result<Vec<Rule>, ApiError>>()
                .map_err(|_| StoreError::corrupt("alert rules"))?;
            Ok((rules, false))
        }
    }
}

pub fn rules_json(rules: &[Rule]) -> String {
    let bodies: Vec<RuleBody> = rules.iter().map(RuleBody::of).collect();
    serde_json::to_string(&bodies).unwrap_or_else(|_| "[]".to_owned())
}

/// What one run did for one tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRun {
    pub accounts: usize,
    /// Accounts whose relationship has ended: not evaluated.
    pub ended: usize,
    /// Accounts whose alerts changed (a commit).
    pub committed: usize,
    /// Commits lost to a concurrent evaluation (read again).
    pub raced: usize,
    pub notifications: usize,
    pub delivered: usize,
    pub delivery_failures: usize,
    /// The run's budget ran out before every account was evaluated.
    pub incomplete: bool,
}

/// The evaluation's dependencies, built once per cold start.
pub struct Alerting {
    pub table: AlertsTable,
    pub rollups: AggregateTable,
    pub bus: AlertBus,
    pub webhooks: WebhookClient,
    pub secrets: WebhookSecrets,
}

/// Backoff before the next delivery attempt after `attempts` failed ones.
pub fn backoff(attempts: u32) -> Duration {
    match attempts {
        0 | 1 => Duration::minutes(1),
        2 => Duration::minutes(5),
        3 => Duration::minutes(15),
        4 => Duration::hours(1),
        5 => Duration::hours(4),
        _ => Duration::hours(12),
    }
}

/// The rules whose scope covers the account.
pub fn applicable_rules<'a>(entry: &AccountEntry, rules: &'a [Rule]) -> Vec<&'a Rule> {
    let (plan, tags) = match &entry.contract {
        Some(c) => (c.plan.as_deref(), c.tags.as_slice()),
        None => (None, &[][..]),
    };
    rules
        .iter()
        .filter(|r| r.scope.covers(&entry.account, plan, tags))
        .collect()
}

/// One evaluation of one account from its rollups: the whole decision, with no
/// I/O (the scheduled run and the replay of the demo both call it).
pub fn account_step(
    entry: &AccountEntry,
    rules: &[Rule],
    silences: &[Silence],
    prior: &AccountAlerts,
    days: &BTreeMap<time::Date, Rollup>,
    hours: &BTreeMap<HourBucket, Rollup>,
    now: OffsetDateTime,
) -> alert::Step {
    let applicable = applicable_rules(entry, rules);
    let retired: BTreeMap<String, Rule> = rules
        .iter()
        .filter(|r| !applicable.iter().any(|a| a.id == r.id))
        .map(|r| (r.id.clone(), r.clone()))
        .collect();
    let facts = Facts {
        now,
        registered: entry.contract.is_some(),
        monthly_quota: entry.contract.as_ref().and_then(|c| c.monthly_quota),
        open_tickets: entry.open_tickets,
        days,
        hours,
    };
    let readings: Vec<(&Rule, Reading)> = applicable.iter().map(|r| (*r, facts.read(r))).collect();
    alert::step(&entry.account, &readings, &retired, prior, silences, now)
}

/// Which days and hours an account's evaluation reads.
fn read_plan(
    rules: &[&Rule],
    now: OffsetDateTime,
) -> (String, String, Option<(HourBucket, HourBucket)>) {
    let today = rollup::day_of(now);
    let from = day_label(today - Duration::days(DAYS_READ - 1));
    let hours = rules
        .iter()
        .filter(|r| r.kind.reads_hours())
        .filter_map(|r| r.window)
        .max()
        .map(|w| {
            (
                HourBucket::of(now - w + Duration::hours(1)),
                HourBucket::of(now),
            )
        });
    (from, day_label(today), hours)
}

impl Alerting {
    /// Evaluates every account of `tenant` at `now`, then delivers what waits.
    pub async fn run_tenant(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        deadline: Instant,
    ) -> Result<TenantRun, StoreError> {
        let settings = self.table.settings(tenant, now).await?;
        let (rules, _) = rules_in_force(&settings)?;
        let entries = self.rollups.accounts(tenant).await?;
        let today = rollup::day_of(now);
        let mut run = TenantRun {
            accounts: entries.len(),
            ..TenantRun::default()
        };
        let watched: Vec<AccountEntry> = entries
            .into_iter()
            .filter(|e| {
                let ended = e
                    .contract
                    .as_ref()
                    .and_then(|c| c.relationship_end)
                    .is_some_and(|end| end < today);
                run.ended += usize::from(ended);
                !ended
            })
            .collect();
        // A run out of budget stops starting accounts; each run starts at
        // another place in the list, so no account waits behind the others.
        let mut watched = watched;
        if !watched.is_empty() {
            let slot = (now.unix_timestamp() / 300).unsigned_abs() as usize;
            let len = watched.len();
            watched.rotate_left(slot.wrapping_mul(7919) % len);
        }
        let ids: Vec<AccountId> = watched.iter().map(|e| e.account.clone()).collect();
        let mut states = self.table.states(tenant, &ids).await?;
        let outcomes: Vec<Result<Option<(bool, usize)>, StoreError>> = stream::iter(watched)
            .map(|entry| {
                let prior = states.remove(entry.account.as_str()).unwrap_or_default();
                let rules = &rules;
                let silences = &settings.silences;
                async move {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    self.evaluate_account(tenant, &entry, rules, silences, prior, now)
                        .await
                        .map(Some)
                }
            })
            .buffer_unordered(CONCURRENT_ACCOUNTS)
            .collect()
            .await;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(Some((committed, raced))) => {
                    run.committed += usize::from(committed);
                    run.raced += raced;
                }
                Ok(None) => run.incomplete = true,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let (notifications, delivered, failures) =
            self.deliver(tenant, &settings, now, deadline).await?;
        run.notifications = notifications;
        run.delivered = delivered;
        run.delivery_failures = failures;
        match first_error {
            Some(e) => Err(e),
            None => Ok(run),
        }
    }

    /// Reads one account's rollups, moves its alerts, commits if anything
    /// changed: (committed, races lost).
    async fn evaluate_account(
        &self,
        tenant: &TenantId,
        entry: &AccountEntry,
        rules: &[Rule],
        silences: &[Silence],
        mut prior: AccountAlerts,
        now: OffsetDateTime,
    ) -> Result<(bool, usize), StoreError> {
        let applicable = applicable_rules(entry, rules);
        if applicable.is_empty() && prior.alerts.is_empty() {
            return Ok((false, 0));
        }
        let (from, to, hour_range) = read_plan(&applicable, now);
        let days = self
            .rollups
            .rollups(tenant, &entry.account, Granularity::Day, &from, &to)
            .await?
            .into_iter()
            .filter_map(|(label, r)| rollup::parse_day(&label).map(|d| (d, r)))
            .collect();
        let hours: BTreeMap<HourBucket, Rollup> = match hour_range {
            Some((first, last)) => self
                .rollups
                .rollups(
                    tenant,
                    &entry.account,
                    Granularity::Hour,
                    &first.label(),
                    &last.label(),
                )
                .await?
                .into_iter()
                .filter_map(|(label, r)| HourBucket::parse(&label).map(|h| (h, r)))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut raced = 0;
        for _ in 0..COMMIT_TRIES {
            let step = account_step(entry, rules, silences, &prior, &days, &hours, now);
            if !step.changed && step.send.is_empty() && step.transitions.is_empty() {
                return Ok((false, raced));
            }
            let notification = (!step.send.is_empty()).then(|| {
                Notification::new(
                    tenant.as_str(),
                    &entry.account,
                    prior.version + 1,
                    step.send.clone(),
                    now,
                )
            });
            if self
                .table
                .commit(
                    tenant,
                    &entry.account,
                    prior.version,
                    &step,
                    notification.as_ref(),
                    now,
                )
                .await?
            {
                return Ok((true, raced));
            }
            raced += 1;
            prior = self
                .table
                .states(tenant, std::slice::from_ref(&entry.account))
                .await?
                .remove(entry.account.as_str())
                .unwrap_or_default();
        }
        Ok((false, raced))
    }

    /// Delivers the due notifications of the outbox: (handled, delivered, failed attempts).
    pub async fn deliver(
        &self,
        tenant: &TenantId,
        settings: &StoredSettings,
        now: OffsetDateTime,
        deadline: Instant,
    ) -> Result<(usize, usize, usize), StoreError> {
        let due = self.table.pending(tenant, now).await?;
        let mut claimed: Vec<Pending> = Vec::new();
        for pending in due {
            // Bounded: the rest waits for the next run (5 minutes later).
            if claimed.len() >= MAX_DELIVERIES_PER_RUN || Instant::now() >= deadline {
                break;
            }
            if self
                .table
                .claim(tenant, &pending, DELIVERY_LEASE, now)
                .await?
            {
                claimed.push(pending);
            }
        }
        if claimed.is_empty() {
            return Ok((0, 0, 0));
        }
        let to_bus: Vec<usize> = (0..claimed.len())
            .filter(|i| !claimed[*i].bus_done)
            .collect();
        let payloads: Vec<&str> = to_bus
            .iter()
            .map(|i| claimed[*i].payload.as_str())
            .collect();
        let mut bus_done: Vec<bool> = claimed.iter().map(|p| p.bus_done).collect();
        let mut errors: Vec<Option<String>> = vec![None; claimed.len()];
        for (i, result) in to_bus.iter().zip(self.bus.put(&payloads).await) {
            match result {
                Ok(()) => bus_done[*i] = true,
                Err(e) => {
                    tracing::warn!(error = %e, "alert bus refused a notification");
                    errors[*i] = Some("event bus unavailable".into());
                }
            }
        }
        let mut webhook_done: Vec<Option<bool>> = vec![None; claimed.len()];
        if let Some(webhook) = &settings.webhook {
            let secret = match self.secrets.open(tenant, &webhook.sealed_secret).await {
                Ok(bytes) => String::from_utf8(bytes).ok(),
                Err(e) => {
                    tracing::error!(error = %e, "webhook secret could not be opened");
                    None
                }
            };
            // One failing receiver is probed once per run, not once per notification.
            let mut receiver_failing = false;
            for (i, pending) in claimed.iter().enumerate() {
                if pending.webhook_done {
                    webhook_done[i] = Some(true);
                    continue;
                }
                let outcome = match (&secret, receiver_failing) {
                    (None, _) => Err(WebhookFailure::BadSecret),
                    (Some(_), true) => Err(WebhookFailure::Unreachable),
                    (Some(secret), false) => {
                        self.post_with_retry(&webhook.url, secret, pending).await
                    }
                };
                match outcome {
                    Ok(()) => webhook_done[i] = Some(true),
                    Err(failure) => {
                        receiver_failing = true;
                        webhook_done[i] = Some(false);
                        errors[i].get_or_insert(format!("webhook: {}", failure.describe()));
                    }
                }
            }
        }
        let (mut delivered, mut failures) = (0, 0);
        for (i, pending) in claimed.iter().enumerate() {
            let done = bus_done[i] && webhook_done[i] != Some(false);
            let retry_at = (!done && pending.attempts + 1 < MAX_DELIVERY_ATTEMPTS)
                .then(|| now + backoff(pending.attempts + 1));
            if done {
                delivered += 1;
            } else {
                failures += 1;
                if retry_at.is_none() {
                    tracing::error!(tenant = %tenant, attempts = pending.attempts + 1, "an alert notification was given up");
                }
            }
            let delivery = Delivery {
                bus_done: bus_done[i],
                webhook_done: webhook_done[i],
                last_error: errors[i].clone().filter(|_| !done),
                retry_at,
            };
            self.table
                .record_delivery(tenant, pending, &delivery, now)
                .await?;
        }
        Ok((claimed.len(), delivered, failures))
    }

    /// One POST, and one more after a short pause if the receiver answered an
    /// error or could not be reached (not after a timeout: it may have taken it).
    async fn post_with_retry(
        &self,
        url: &str,
        secret: &str,
        pending: &Pending,
    ) -> Result<(), WebhookFailure> {
        let id = notification_id(&pending.sk);
        let mut last = WebhookFailure::Unreachable;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            // The signature's time is the wall clock's: receivers check it against theirs.
            let timestamp = OffsetDateTime::now_utc().unix_timestamp();
            match self
                .webhooks
                .post(url, secret, &id, timestamp, &pending.payload)
                .await
            {
                Ok(()) => return Ok(()),
                Err(WebhookFailure::Timeout) => return Err(WebhookFailure::Timeout),
                Err(other) => last = other,
            }
        }
        Err(last)
    }
}

/// An alert of the history as the API shows it (with the line a person reads).
pub fn history_view(entry: &HistoryEntry) -> serde_json::Value {
    let kind = crate::domain::alert::Kind::parse(&entry.kind);
    let summary = kind.map(|kind| {
        describe(&NotifiedAlert {
            rule: entry.rule.clone(),
            kind,
            severity: crate::domain::alert::Severity::parse(&entry.severity)
                .unwrap_or(crate::domain::alert::Severity::Warning),
            status: Status::Firing,
            labels: entry.labels.clone(),
            value: entry.value,
            threshold: entry.threshold,
            window: None,
            started_at: entry.started_at,
            fired_at: entry.fired_at,
            resolved_at: entry.resolved_at,
        })
    });
    serde_json::json!({
        "account": entry.account,
        "rule": entry.rule,
        "kind": entry.kind,
        "severity": entry.severity,
        "state": match entry.state { Status::Firing => "firing", Status::Resolved => "resolved" },
        "started_at": rfc3339(entry.started_at),
        "fired_at": rfc3339(entry.fired_at),
        "resolved_at": entry.resolved_at.map(rfc3339),
        "value": entry.value,
        "threshold": entry.threshold,
        "labels": entry.labels,
        "notified": entry.notified,
        "summary": summary,
    })
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The notification id an outbox key ends with (`P#<created at>#<id>`): also
/// the webhook's `webhook-id`.
fn notification_id(outbox_sk: &str) -> String {
    outbox_sk.rsplit('#').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: serde_json::Value) -> RulesBody {
        serde_json::from_value(value).expect("shape")
    }

    #[test]
    fn defaults_round_trip_through_the_api_shape() {
        let json = rules_json(&default_rules());
        let settings = StoredSettings {
            rules: Some(json),
            ..StoredSettings::default()
        };
        let (rules, defaults) = rules_in_force(&settings).expect("valid");
        assert!(!defaults);
        assert_eq!(rules, default_rules());
    }

    #[test]
    fn each_bad_rule_names_its_field() {
        let known: HashSet<String> = ["acme".to_owned()].into();
        let cases = [
            (
                json!({"rules": [{"id": "x", "kind": "nope"}]}),
                "rules[0].kind",
            ),
            (
                json!({"rules": [{"id": "X Y", "kind": "quota", "threshold": 0.8}]}),
                "rules[0].id",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "quota"}]}),
                "rules[0].threshold",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "quota", "threshold": 11}]}),
                "rules[0].threshold",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "usage_drop", "threshold": -0.5, "window": "3d"}]}),
                "rules[0].threshold",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "usage_drop", "threshold": 0.5, "window": "-3d"}]}),
                "rules[0].window",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "usage_drop", "threshold": 0.5, "window": "36h"}]}),
                "rules[0].window",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "window": "1d"}]}),
                "rules[0].window",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "for": "31d"}]}),
                "rules[0].for",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "repeat": "1m"}]}),
                "rules[0].repeat",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "severity": "page"}]}),
                "rules[0].severity",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "scope": {"accounts": ["ghost"]}}]}),
                "rules[0].scope.accounts[0]",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "scope": {"plan": "a", "tag": "b"}}]}),
                "rules[0].scope",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed", "labels": {"owner": "jane@example.com"}}]}),
                "rules[0].labels.owner",
            ),
            (
                json!({"rules": [{"id": "x", "kind": "payment_failed"}, {"id": "x", "kind": "payment_failed"}]}),
                "rules[1].id",
            ),
        ];
        for (value, field) in cases {
            match body(value.clone()).validate(&known) {
                Err(ApiError::Invalid {
                    field: got,
                    expected,
                }) => {
                    assert_eq!(got, field, "{value}");
                    assert!(!expected.contains("jane"), "{expected}");
                }
                other => panic!("{value}: {other:?}"),
            }
        }
        let ok = body(json!({"rules": [{"id": "big-ones", "kind": "usage_drop", "threshold": 0.4, "window": "2d",
            "for": "6h", "severity": "critical", "labels": {"team": "cs-emea"}, "scope": {"accounts": ["acme"]}}]}))
        .validate(&known)
        .expect("valid");
        assert_eq!(ok[0].pending_for, Duration::hours(6));
        assert_eq!(
            ok[0].scope,
            Scope::Accounts(vec![AccountId::parse("acme").expect("id")])
        );
    }
}
