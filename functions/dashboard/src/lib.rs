//! The dashboard API (scope `read`).
//!
//! `GET /v1/accounts/{account}/usage?from=2026-11-01T00&to=2026-11-01T23` returns
//! the account's hourly aggregates (UTC hours, both ends included; default: the
//! last 24 hours; at most 31 days). Only the caller's tenant is ever queried: the
//! account id in the path is looked up under the tenant the key belongs to.

use std::collections::BTreeMap;
use std::convert::Infallible;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{AggregateTable, Dynamo};
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::{AccountId, HourBucket};
use vigil_shared::function::Function;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::UsageStore;

/// Longest range one request may ask for.
pub const MAX_HOURS: i64 = 31 * 24;

pub struct Deps<S> {
    pub store: S,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<AggregateTable> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, _) = Dynamo::connect(config).await;
        Ok(Self {
            store: AggregateTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
        })
    }
}

impl<S: UsageStore + 'static> Function for Deps<S> {
    type Event = ApiGatewayV2httpRequest;
    type Output = ApiGatewayV2httpResponse;
    type Error = Infallible;

    async fn call(&self, event: ApiGatewayV2httpRequest) -> Result<Self::Output, Infallible> {
        Ok(handle(&event, self).await)
    }
}

#[derive(Debug, Serialize)]
struct Usage<'a> {
    account: &'a str,
    from: String,
    to: String,
    hours: Vec<BTreeMap<String, serde_json::Value>>,
}

fn range(call: &Call<'_>, now: OffsetDateTime) -> Result<(HourBucket, HourBucket), ApiError> {
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

pub async fn handle<S: UsageStore>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<S>,
) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("dashboard", request);
    let outcome = match call.authorize(Scope::Read) {
        Ok(caller) => usage(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

async fn usage<S: UsageStore>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<S>,
) -> Result<Reply, ApiError> {
    let account = AccountId::parse(call.path("account"))
        .map_err(|_| ApiError::invalid("account", "expected an account id"))?;
    let (from, to) = range(call, (deps.clock)())?;
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
