//! The dashboard API (scope `read`).
//!
//! `GET /v1/accounts/{account}/usage?from=2026-11-01T00&to=2026-11-01T23` returns
//! the account's hourly aggregates (UTC hours, both ends included; default: the
//! last 24 hours; at most 31 days). Only the caller's tenant is ever queried: the
//! account id in the path is looked up under the tenant the key belongs to.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::DynamoStore;
use vigil_shared::api::{error_response, json_response, storage_unavailable};
use vigil_shared::auth;
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::{AccountId, HourBucket};
use vigil_shared::ports::UsageStore;

/// Longest range one request may ask for.
pub const MAX_HOURS: i64 = 31 * 24;

pub struct Deps<S> {
    pub store: S,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<DynamoStore> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (store, _) = DynamoStore::from_config(config, &[Setting::AggregatesTable]).await?;
        Ok(Self {
            store,
            clock: OffsetDateTime::now_utc,
        })
    }
}

#[derive(Debug, Serialize)]
struct Usage<'a> {
    account: &'a str,
    from: String,
    to: String,
    hours: Vec<BTreeMap<String, serde_json::Value>>,
    request_id: &'a str,
}

fn range(
    request: &ApiGatewayV2httpRequest,
    now: OffsetDateTime,
) -> Result<(HourBucket, HourBucket), String> {
    let mut from = None;
    let mut to = None;
    for (name, value) in request.query_string_parameters.iter() {
        let hour = || {
            HourBucket::parse(value)
                .ok_or(format!("{name}: expected an hour such as 2026-11-01T10"))
        };
        match name {
            "from" => from = Some(hour()?),
            "to" => to = Some(hour()?),
            other => {
                return Err(format!(
                    "unknown query parameter \"{}\"",
                    other.chars().take(32).collect::<String>()
                ))
            }
        }
    }
    let to = to.unwrap_or_else(|| HourBucket::of(now));
    let from = from.unwrap_or_else(|| HourBucket::of(to.start() - time::Duration::hours(23)));
    let span = from.hours_until(to);
    if span < 0 {
        return Err("from: must not be after to".into());
    }
    if span >= MAX_HOURS {
        return Err("from, to: the range may span at most 31 days".into());
    }
    Ok((from, to))
}

pub async fn handle<S: UsageStore>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<S>,
) -> ApiGatewayV2httpResponse {
    let request_id = auth::request_id(request);
    let caller = match auth::authorize(request, Scope::Read) {
        Ok(caller) => caller,
        Err(denied) => return denied.response(&request_id),
    };
    let account = request
        .path_parameters
        .get("account")
        .map(String::as_str)
        .unwrap_or_default();
    let Ok(account_id) = AccountId::parse(account) else {
        return error_response(
            400,
            "invalid_request",
            "account: expected an account id",
            &request_id,
        );
    };
    let (from, to) = match range(request, (deps.clock)()) {
        Ok(range) => range,
        Err(message) => return error_response(400, "invalid_request", &message, &request_id),
    };
    match deps
        .store
        .hourly_usage(&caller.tenant, &account_id, from, to)
        .await
    {
        Ok(hours) => {
            let hours = hours
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
            tracing::info!(
                request_id,
                tenant = caller.tenant.as_str(),
                key_id = caller.key_id,
                "usage read"
            );
            json_response(
                200,
                &Usage {
                    account,
                    from: from.label(),
                    to: to.label(),
                    hours,
                    request_id: &request_id,
                },
            )
        }
        Err(error) => storage_unavailable(&request_id, &error),
    }
}
