//! The dashboard: its read API (scope `read`) and its web page (no key: the page
//! asks for one and sends it with each API call).
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/accounts?from=&to=&sort=&order=&band=&plan=&tag=&limit=&cursor=` | every account with its summary and health over a window of days |
//! | `GET /v1/accounts/{account}?from=&to=&granularity=` | one account: contract, summary, day or hour series, top endpoints, recent support and billing events, its latest alerts |
//! | `GET /v1/accounts/{account}/usage?from=&to=` | raw hourly aggregates (at most 31 days) |
//! | `GET /dashboard`, `GET /dashboard/{asset}` | the web page and its assets (`web.rs`) |
//!
//! Everything is read from rollups (docs/decisions/0015): a request's cost grows
//! with the buckets shown, never with the events. Only the caller's tenant is
//! ever queried: ids in the path are looked up under the key's tenant.

mod accounts;
mod params;
pub mod web;

use std::collections::BTreeMap;
use std::convert::Infallible;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{AggregateTable, AlertsTable, Dynamo};
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::HourBucket;
use vigil_shared::function::Function;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::{AlertHistory, DashboardStore, UsageStore};

/// Longest range of raw hours one request may ask for.
pub const MAX_HOURS: i64 = 31 * 24;

pub struct Deps<S, A> {
    pub store: S,
    /// The alerts each account page shows.
    pub alerts: A,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<AggregateTable, AlertsTable> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, _) = Dynamo::connect(config).await;
        Ok(Self {
            store: AggregateTable::new(&db, config)?,
            alerts: AlertsTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
        })
    }
}

impl<S: UsageStore + DashboardStore + 'static, A: AlertHistory + 'static> Function for Deps<S, A> {
    type Event = ApiGatewayV2httpRequest;
    type Output = ApiGatewayV2httpResponse;
    type Error = Infallible;

    async fn call(&self, event: ApiGatewayV2httpRequest) -> Result<Self::Output, Infallible> {
        Ok(handle(&event, self).await)
    }
}

pub async fn handle<S: UsageStore + DashboardStore, A: AlertHistory>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<S, A>,
) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("dashboard", request);
    if web::is_web(&call) {
        return match web::asset(&call) {
            Ok(page) => page,
            Err(error) => call.finish(Err(error)),
        };
    }
    let outcome = match call.authorize(Scope::Read) {
        Ok(caller) => route(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

async fn route<S: UsageStore + DashboardStore, A: AlertHistory>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<S, A>,
) -> Result<Reply, ApiError> {
    let now = (deps.clock)();
    match call.route.as_str() {
        "GET /v1/accounts" => accounts::list(call, &caller.tenant, &deps.store, now).await,
        "GET /v1/accounts/{account}" => {
            accounts::detail(call, &caller.tenant, &deps.store, &deps.alerts, now).await
        }
        "GET /v1/accounts/{account}/usage" => usage(call, caller, deps, now).await,
        _ => Err(ApiError::NotFound("no such route")),
    }
}

#[derive(Debug, Serialize)]
struct Usage<'a> {
    account: &'a str,
    from: String,
    to: String,
    hours: Vec<BTreeMap<String, serde_json::Value>>,
}

fn hour_range(call: &Call<'_>, now: OffsetDateTime) -> Result<(HourBucket, HourBucket), ApiError> {
    let mut from = None;
    let mut to = None;
    for (name, value) in call.query(&["from", "to"])? {
        let hour = HourBucket::parse(value)
            .ok_or_else(|| ApiError::invalid(name, "expected an hour such as 2026-11-01T10"))?;
        if name == "from" {
            from = Some(hour);
        } else {
            to = Some(hour);
        }
    }
    let to = to.unwrap_or_else(|| HourBucket::of(now));
    let from = from.unwrap_or_else(|| HourBucket::of(to.start() - time::Duration::hours(23)));
    let span = from.hours_until(to);
    if span < 0 {
        return Err(ApiError::invalid("from", "must not be after to"));
    }
    if span >= MAX_HOURS {
        return Err(ApiError::invalid(
            "from, to",
            "the range may span at most 31 days",
        ));
    }
    Ok((from, to))
}

async fn usage<S: UsageStore, A>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<S, A>,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let account = params::account(call)?;
    let (from, to) = hour_range(call, now)?;
    let hours = deps
        .store
        .hourly_usage(&caller.tenant, &account, from, to)
        .await?
        .into_iter()
        .map(|usage| {
            let mut row: BTreeMap<String, serde_json::Value> = usage
                .counters
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            row.insert("hour".into(), usage.hour.into());
            row
        })
        .collect();
    Ok(Reply::ok(&Usage {
        account: account.as_str(),
        from: from.label(),
        to: to.label(),
        hours,
    }))
}
