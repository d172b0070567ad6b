//! The HTTP API's Lambda authorizer (REQUEST type, simple responses).
//!
//! `Authorization: Bearer vk_<tenant>_<key id>_<secret>` is resolved with one
//! DynamoDB read (the key record) and a constant-time hash compare. The answer
//! says nothing about what was wrong; the log says why, by key id only. API
//! Gateway caches the answer on the header for the template's TTL, so a
//! revocation takes effect within that time. Last use is recorded at most once
//! per key per hour.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::{json, Value};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{Dynamo, TenantTable};
use vigil_shared::auth::{CONTEXT_KEY_ID, CONTEXT_SCOPES, CONTEXT_TENANT};
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::access::{KeyDenial, PresentedKey, Scope};
use vigil_shared::domain::HourBucket;
use vigil_shared::function::Function;
use vigil_shared::ports::{AccessStore, StoreError};

pub struct Deps<S> {
    pub store: S,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<TenantTable> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, _) = Dynamo::connect(config).await;
        Ok(Self {
            store: TenantTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
        })
    }
}

impl<S: AccessStore + 'static> Function for Deps<S> {
    type Event = ApiGatewayV2CustomAuthorizerV2Request;
    type Output = AuthorizerResponse;
    type Error = AuthorizerError;

    async fn call(&self, event: Self::Event) -> Result<AuthorizerResponse, AuthorizerError> {
        authorize(&event, self).await
    }
}

/// Storage failed: API Gateway answers 500 and the client may retry.
#[derive(Debug, Error)]
#[error("key lookup failed: {0}")]
pub struct AuthorizerError(#[from] StoreError);

pub type AuthorizerResponse = ApiGatewayV2CustomAuthorizerSimpleResponse<Value>;

fn deny() -> AuthorizerResponse {
    let mut response = AuthorizerResponse::default();
    response.is_authorized = false;
    response.context = json!({});
    response
}

fn presented_key(request: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<PresentedKey> {
    let header = request.headers.get("authorization")?.to_str().ok()?;
    PresentedKey::from_authorization(header)
}

pub async fn authorize<S: AccessStore>(
    request: &ApiGatewayV2CustomAuthorizerV2Request,
    deps: &Deps<S>,
) -> Result<AuthorizerResponse, AuthorizerError> {
    let request_id = request
        .request_context
        .request_id
        .clone()
        .unwrap_or_default();
    let Some(presented) = presented_key(request) else {
        tracing::info!(
            request_id,
            reason = KeyDenial::Malformed.as_str(),
            "key denied"
        );
        return Ok(deny());
    };
    let now = (deps.clock)();
    let record = deps
        .store
        .get_key(&presented.tenant, &presented.key_id)
        .await?;
    let verdict = match &record {
        None => Err(KeyDenial::Unknown),
        Some(record) => record.verify(&presented, now),
    };
    let (Some(record), Ok(())) = (record, verdict) else {
        let reason = verdict.err().map_or("", KeyDenial::as_str);
        tracing::info!(
            request_id,
            tenant = presented.tenant.as_str(),
            key_id = presented.key_id,
            reason,
            "key denied"
        );
        return Ok(deny());
    };
    let hour = HourBucket::of(now).label();
    if record.last_used_hour.as_deref() != Some(hour.as_str()) {
        if let Err(error) = deps
            .store
            .record_key_use(&record.tenant, &record.key_id, &hour)
            .await
        {
            tracing::warn!(request_id, key_id = record.key_id, error = %error, "last use not recorded");
        }
    }
    tracing::info!(
        request_id,
        tenant = record.tenant.as_str(),
        key_id = record.key_id,
        "key accepted"
    );
    let mut response = AuthorizerResponse::default();
    response.is_authorized = true;
    response.context = json!({
        CONTEXT_TENANT: record.tenant.as_str(),
        CONTEXT_KEY_ID: record.key_id,
        CONTEXT_SCOPES: Scope::join(&record.scopes),
    });
    Ok(response)
}
