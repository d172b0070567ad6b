//! `GET /v1/accounts` and `GET /v1/accounts/{account}`: summaries, health and
//! series, computed from day, hour and month rollups (docs/decisions/0015).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};
use vigil_shared::app::accounts::is_label;
use vigil_shared::app::alerts::history_view;
use vigil_shared::domain::account::{Band, Summary, Window};
use vigil_shared::domain::rollup::{self, day_label, month_label, Rollup};
use vigil_shared::domain::{HourBucket, TenantId};
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::{AccountEntry, AlertHistory, DashboardStore, Granularity};

use crate::params;

/// The list's window: 30 days by default, at most 90.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;
pub const MAX_WINDOW_DAYS: i64 = 90;
/// The account page: a day series of at most 366 days, an hour series of at most 31.
pub const MAX_DAY_SERIES: i64 = 366;
pub const MAX_HOUR_SERIES_DAYS: i64 = 31;
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;
/// Accounts whose rollups are read at once.
const CONCURRENT_READS: usize = 16;
const TOP_ENDPOINTS: usize = 10;
const RECENT_EVENTS: usize = 20;
/// The account's latest alerts on its page (the full history: `GET /v1/alerts`).
const RECENT_ALERTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Health,
    Account,
    Calls,
    ErrorRate,
    Trend,
    QuotaShare,
    ActiveUsers,
    LastSeen,
}

const SORT_KEYS: [(&str, SortKey); 8] = [
    ("health", SortKey::Health),
    ("account", SortKey::Account),
    ("calls", SortKey::Calls),
    ("error_rate", SortKey::ErrorRate),
    ("trend", SortKey::Trend),
    ("quota_share", SortKey::QuotaShare),
    ("active_users", SortKey::ActiveUsers),
    ("last_seen", SortKey::LastSeen),
];

/// One account as listed and shown.
#[derive(Debug, Serialize)]
struct AccountView<'a> {
    account: &'a str,
    registered: bool,
    #[serde(flatten)]
    contract: Value,
    open_tickets: u64,
}

fn view(entry: &AccountEntry) -> AccountView<'_> {
    let contract = match &entry.contract {
        Some(c) => serde_json::to_value(c.view()).unwrap_or_default(),
        None => json!({}),
    };
    AccountView {
        account: entry.account.as_str(),
        registered: entry.contract.is_some(),
        contract,
        open_tickets: entry.open_tickets,
    }
}

/// The summary of one account over `window`, from one query of its day rollups.
async fn summarise<S: DashboardStore>(
    store: &S,
    tenant: &TenantId,
    entry: &AccountEntry,
    window: Window,
) -> Result<Summary, ApiError> {
    let days = day_rollups(store, tenant, entry, window.read_from(), window.to).await?;
    Ok(summary_of(entry, window, &days))
}

fn summary_of(entry: &AccountEntry, window: Window, days: &BTreeMap<Date, Rollup>) -> Summary {
    let quota = entry.contract.as_ref().and_then(|c| c.monthly_quota);
    Summary::of(window, days, quota, entry.open_tickets)
}

async fn day_rollups<S: DashboardStore>(
    store: &S,
    tenant: &TenantId,
    entry: &AccountEntry,
    from: Date,
    to: Date,
) -> Result<BTreeMap<Date, Rollup>, ApiError> {
    let rows = store
        .rollups(
            tenant,
            &entry.account,
            Granularity::Day,
            &day_label(from),
            &day_label(to),
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(label, r)| rollup::parse_day(&label).map(|d| (d, r)))
        .collect())
}

/// None last in either order.
fn by_option<T: PartialOrd>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if descending {
                o.reverse()
            } else {
                o
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

pub async fn list<S: DashboardStore>(
    call: &Call<'_>,
    tenant: &TenantId,
    store: &S,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let names = [
        "from", "to", "sort", "order", "band", "plan", "tag", "limit", "cursor",
    ];
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in call.query(&names)? {
        given.insert(name, value);
    }
    let window = params::window(
        given.get("from").copied(),
        given.get("to").copied(),
        rollup::day_of(now),
        DEFAULT_WINDOW_DAYS,
        MAX_WINDOW_DAYS,
    )?;
    let sort = match given.get("sort") {
        None => SortKey::Health,
        Some(v) => SORT_KEYS
            .iter()
            .find(|(name, _)| name == v)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                ApiError::invalid(
                    "sort",
                    "expected one of health, account, calls, error_rate, trend, quota_share, active_users, last_seen",
                )
            })?,
    };
    let descending = match given.get("order").copied() {
        None => !matches!(sort, SortKey::Health | SortKey::Account),
        Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::invalid("order", "expected asc or desc")),
    };
    let band = given
        .get("band")
        .map(|v| {
            Band::parse(v).ok_or_else(|| ApiError::invalid("band", "expected green, amber or red"))
        })
        .transpose()?;
    for name in ["plan", "tag"] {
        if given.get(name).is_some_and(|v| !is_label(v)) {
            return Err(ApiError::invalid(
                name,
                "expected 1 to 40 lowercase letters, digits, - or _",
            ));
        }
    }
    let limit = given
        .get("limit")
        .map(|v| params::bounded("limit", v, 1, MAX_PAGE))
        .transpose()?
        .unwrap_or(DEFAULT_PAGE);
    let fingerprint = format!(
        "{}|{}|{:?}|{descending}|{:?}|{:?}|{:?}",
        day_label(window.from),
        day_label(window.to),
        sort,
        band,
        given.get("plan"),
        given.get("tag")
    );
    let offset = given
        .get("cursor")
        .map(|c| params::offset_of(c, &fingerprint))
        .transpose()?
        .unwrap_or(0);

    // Contract filters first: they need no rollup.
    let plan = given.get("plan").copied();
    let tag = given.get("tag").copied();
    let entries: Vec<AccountEntry> = store
        .accounts(tenant)
        .await?
        .into_iter()
        .filter(|e| {
            let c = e.contract.as_ref();
            plan.is_none_or(|p| c.and_then(|c| c.plan.as_deref()) == Some(p))
                && tag.is_none_or(|t| c.is_some_and(|c| c.tags.iter().any(|x| x == t)))
        })
        .collect();
    let mut rows: Vec<(AccountEntry, Summary)> = stream::iter(entries)
        .map(|entry| async move {
            let summary = summarise(store, tenant, &entry, window).await?;
            Ok::<_, ApiError>((entry, summary))
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    if let Some(band) = band {
        rows.retain(|(_, s)| s.health.band == band);
    }
    rows.sort_by(|(ea, a), (eb, b)| {
        let primary = match sort {
            SortKey::Account => Ordering::Equal,
            SortKey::Health => by_option(Some(a.health.score), Some(b.health.score), descending),
            SortKey::Calls => by_option(Some(a.calls), Some(b.calls), descending),
            SortKey::ErrorRate => by_option(a.error_rate, b.error_rate, descending),
            SortKey::Trend => by_option(a.trend, b.trend, descending),
            SortKey::QuotaShare => by_option(a.quota_share, b.quota_share, descending),
            SortKey::ActiveUsers => {
                by_option(Some(a.active_users), Some(b.active_users), descending)
            }
            SortKey::LastSeen => by_option(a.last_seen.as_ref(), b.last_seen.as_ref(), descending),
        };
        let by_id = ea.account.cmp(&eb.account);
        let by_id = if sort == SortKey::Account && descending {
            by_id.reverse()
        } else {
            by_id
        };
        primary.then(by_id)
    });
    let total = rows.len();
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(entry, summary)| {
            let mut row = serde_json::to_value(view(entry)).unwrap_or_default();
            row["summary"] = serde_json::to_value(summary).unwrap_or_default();
            row
        })
        .collect();
    let next = offset + page.len();
    let next_cursor = (next < total).then(|| params::cursor(next, &fingerprint));
    Ok(Reply::ok(&json!({
        "window": window_json(window),
        "total": total,
        "accounts": page,
        "next_cursor": next_cursor,
    })))
}

fn window_json(window: Window) -> Value {
    json!({"from": day_label(window.from), "to": day_label(window.to), "days": window.days()})
}

/// One bucket of a series.
fn point(bucket: String, r: Option<&Rollup>) -> Value {
    let empty = Rollup::default();
    let r = r.unwrap_or(&empty);
    json!({
        "bucket": bucket,
        "calls": r.calls(),
        "errors_4xx": r.get("errors_4xx"),
        "errors_5xx": r.get("errors_5xx"),
        "error_rate": r.error_rate(),
        "latency_p50_ms": r.latency_percentile(0.50),
        "latency_p95_ms": r.latency_percentile(0.95),
        "units": r.get("units"),
        "active_users": r.users.estimate(),
        "events": r.get("events"),
    })
}

pub async fn detail<S: DashboardStore, A: AlertHistory>(
    call: &Call<'_>,
    tenant: &TenantId,
    store: &S,
    alerts: &A,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let account = params::account(call)?;
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in call.query(&["from", "to", "granularity"])? {
        given.insert(name, value);
    }
    let hourly = match given.get("granularity").copied() {
        None | Some("day") => false,
        Some("hour") => true,
        Some(_) => return Err(ApiError::invalid("granularity", "expected day or hour")),
    };
    let (default_days, max_days) = if hourly {
        (1, MAX_HOUR_SERIES_DAYS)
    } else {
        (DEFAULT_WINDOW_DAYS, MAX_DAY_SERIES)
    };
    let range = params::window(
        given.get("from").copied(),
        given.get("to").copied(),
        rollup::day_of(now),
        default_days,
        max_days,
    )?;
    let Some(entry) = store.account(tenant, &account).await? else {
        return Err(ApiError::NotFound("no such account"));
    };
    // The 30-day summary ending `to`, and a day series, from one read of days.
    let summary_window = Window {
        from: range.to - Duration::days(DEFAULT_WINDOW_DAYS - 1),
        to: range.to,
    };
    let first_day = if hourly {
        summary_window.read_from()
    } else {
        summary_window.read_from().min(range.from)
    };
    let days = day_rollups(store, tenant, &entry, first_day, range.to).await?;
    let summary = summary_of(&entry, summary_window, &days);
    let (series, totals) = if hourly {
        let from = HourBucket::of(range.from.midnight().assume_utc());
        let to = HourBucket::of(range.to.midnight().assume_utc() + Duration::hours(23));
        let hours: BTreeMap<String, Rollup> = store
            .rollups(
                tenant,
                &account,
                Granularity::Hour,
                &from.label(),
                &to.label(),
            )
            .await?
            .into_iter()
            .collect();
        let series = (0..=from.hours_until(to))
            .map(|h| HourBucket::of(from.start() + Duration::hours(h)).label())
            .map(|label| point(label.clone(), hours.get(&label)))
            .collect::<Vec<_>>();
        (series, Rollup::merged(hours.values()))
    } else {
        let series = rollup::days(range.from, range.to)
            .map(|d| point(day_label(d), days.get(&d)))
            .collect::<Vec<_>>();
        (
            series,
            Rollup::merged(days.range(range.from..=range.to).map(|(_, r)| r)),
        )
    };
    let months = store
        .rollups(
            tenant,
            &account,
            Granularity::Month,
            &month_label(range.from),
            &month_label(range.to),
        )
        .await?;
    let month_total = Rollup::merged(months.iter().map(|(_, r)| r));
    let top_endpoints: Vec<Value> = month_total
        .endpoints()
        .into_iter()
        .take(TOP_ENDPOINTS)
        .map(|(endpoint, calls)| json!({"endpoint": endpoint, "calls": calls}))
        .collect();
    let recent = store
        .recent_activity(tenant, &account, RECENT_EVENTS)
        .await?;
    let fired: Vec<Value> = alerts
        .account_alerts(tenant, &account, RECENT_ALERTS, now)
        .await?
        .iter()
        .map(history_view)
        .collect();
    let (calls, e4, e5) = (
        totals.calls(),
        totals.get("errors_4xx"),
        totals.get("errors_5xx"),
    );
    let mut body = serde_json::to_value(view(&entry)).unwrap_or_default();
    let extra = json!({
        "window": {
            "from": day_label(range.from),
            "to": day_label(range.to),
            "granularity": if hourly { "hour" } else { "day" },
        },
        "summary_window": window_json(summary_window),
        "summary": summary,
        "totals": {
            "calls": calls,
            "errors_4xx": e4,
            "errors_5xx": e5,
            "error_rate": totals.error_rate(),
            "units": totals.get("units"),
            "active_users": totals.users.estimate(),
        },
        "errors_by_class": {"ok": calls.saturating_sub(e4 + e5), "client_4xx": e4, "server_5xx": e5},
        "series": series,
        "top_endpoints": {
            "months": {"from": month_label(range.from), "to": month_label(range.to)},
            "endpoints": top_endpoints,
        },
        "recent_events": recent,
        "alerts": fired,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    Ok(Reply::ok(&body))
}
