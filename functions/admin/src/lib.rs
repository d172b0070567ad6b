//! The admin API (scope `admin`): API keys and the audit trail.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/keys` | issues a key; the secret is in this response only |
//! | `GET /v1/keys` | lists the tenant's keys (never secrets or hashes) |
//! | `DELETE /v1/keys/{key_id}` | revokes a key |
//! | `GET /v1/audit?after=&limit=` | lists audit entries |
//! | `GET /v1/audit/verify` | verifies the hash chain |
//!
//! Every call appends an audit entry: reads before they return data (no unaudited
//! read), changes after they are made (the entry records the outcome).
//! `issue_key`, `revoke_key` and `verify_trail` are also what the operator CLI calls.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::DynamoStore;
use vigil_shared::api::{self, error_response, json_response, storage_unavailable};
use vigil_shared::auth::{self, Caller};
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::access::{IssuedKey, KeyRecord, Scope};
use vigil_shared::domain::audit::{verify_chain, AuditDraft, AuditEntry, ChainReport};
use vigil_shared::domain::TenantId;
use vigil_shared::ports::{AccessStore, AuditLog, Revocation, StoreError};

pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_KEY_DAYS: i64 = 730;
pub const MAX_AUDIT_PAGE: usize = 1000;

pub struct Deps<S> {
    pub store: S,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<DynamoStore> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (store, _) =
            DynamoStore::from_config(config, &[Setting::TenantsTable, Setting::AuditTable]).await?;
        Ok(Self {
            store,
            clock: OffsetDateTime::now_utc,
        })
    }
}

/// What a new key should be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

impl KeyRequest {
    /// The validated name, scopes and expiry, or a message naming the field.
    pub fn validate(
        &self,
        now: OffsetDateTime,
    ) -> Result<(String, Vec<Scope>, Option<OffsetDateTime>), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err("name: must be 1 to 64 characters".into());
        }
        if self.scopes.is_empty() {
            return Err("scopes: must name at least one of ingest, read, privacy, admin".into());
        }
        let scopes = Scope::parse_list(&self.scopes.join(" "))
            .ok_or("scopes: each must be one of ingest, read, privacy, admin")?;
        let expires_at = match self.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_KEY_DAYS).contains(&days) => {
                Some(now + time::Duration::days(days))
            }
            Some(_) => return Err(format!("expires_in_days: must be from 1 to {MAX_KEY_DAYS}")),
        };
        Ok((name.to_owned(), scopes, expires_at))
    }
}

/// A key as listed: never its secret or hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<&'static str>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_hour: Option<String>,
    pub active: bool,
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

impl KeyView {
    pub fn of(record: &KeyRecord, now: OffsetDateTime) -> Self {
        Self {
            key_id: record.key_id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            revoked_at: record.revoked_at.map(rfc3339),
            last_used_hour: record.last_used_hour.clone(),
            active: record.is_active(now),
        }
    }
}

fn draft(
    actor: &str,
    action: &str,
    target: Option<&str>,
    request_id: &str,
    outcome: &str,
) -> AuditDraft {
    AuditDraft {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        request_id: request_id.to_owned(),
        outcome: outcome.to_owned(),
    }
}

/// Issues a key and audits it. The returned secret must be shown once and dropped.
pub async fn issue_key<S: AccessStore + AuditLog>(
    store: &S,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    (name, scopes, expires_at): (String, Vec<Scope>, Option<OffsetDateTime>),
    now: OffsetDateTime,
) -> Result<IssuedKey, StoreError> {
    let issued = IssuedKey::generate(tenant, &name, scopes, now, expires_at);
    store.put_key(&issued.record).await?;
    let key_id = &issued.record.key_id;
    let entry = draft(actor, "key.issue", Some(key_id), request_id, "ok");
    if let Err(error) = store.append(tenant, entry, now).await {
        // A key whose issue is not on the trail must not work: revoke it (its
        // secret is never shown either). Best effort: the error is what matters.
        if let Err(undo) = store.revoke_key(tenant, key_id, now).await {
            tracing::error!(key_id, error = %undo, "unaudited key could not be revoked");
        }
        return Err(error);
    }
    Ok(issued)
}

/// Revokes a key and audits the outcome.
pub async fn revoke_key<S: AccessStore + AuditLog>(
    store: &S,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<Revocation, StoreError> {
    let outcome = store.revoke_key(tenant, key_id, now).await?;
    let label = match outcome {
        Revocation::Revoked => "ok",
        Revocation::AlreadyRevoked => "already_revoked",
        Revocation::NotFound => "not_found",
    };
    store
        .append(
            tenant,
            draft(actor, "key.revoke", Some(key_id), request_id, label),
            now,
        )
        .await?;
    Ok(outcome)
}

/// Verifies the tenant's whole chain, then audits that it was verified.
pub async fn verify_trail<S: AuditLog>(
    store: &S,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<ChainReport, StoreError> {
    let entries = store.entries(tenant, None, None).await?;
    let report = verify_chain(tenant, &entries, now);
    let outcome = if report.intact { "intact" } else { "broken" };
    store
        .append(
            tenant,
            draft(actor, "audit.verify", None, request_id, outcome),
            now,
        )
        .await?;
    Ok(report)
}

fn bad_request(request_id: &str, message: &str) -> ApiGatewayV2httpResponse {
    error_response(400, "invalid_request", message, request_id)
}

pub async fn handle<S: AccessStore + AuditLog>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<S>,
) -> ApiGatewayV2httpResponse {
    let request_id = auth::request_id(request);
    let caller = match auth::authorize(request, Scope::Admin) {
        Ok(caller) => caller,
        Err(denied) => return denied.response(&request_id),
    };
    let now = (deps.clock)();
    let route = request
        .request_context
        .route_key
        .as_deref()
        .unwrap_or_default();
    let response = match route {
        "POST /v1/keys" => post_key(request, &caller, deps, &request_id, now).await,
        "GET /v1/keys" => list_keys(&caller, deps, &request_id, now).await,
        "DELETE /v1/keys/{key_id}" => delete_key(request, &caller, deps, &request_id, now).await,
        "GET /v1/audit" => list_audit(request, &caller, deps, &request_id, now).await,
        "GET /v1/audit/verify" => match verify_trail(
            &deps.store,
            &caller.tenant,
            &caller.key_id,
            &request_id,
            now,
        )
        .await
        {
            Ok(report) => json_response(200, &report),
            Err(error) => storage_unavailable(&request_id, &error),
        },
        _ => error_response(404, "not_found", "no such route", &request_id),
    };
    tracing::info!(
        request_id,
        tenant = caller.tenant.as_str(),
        key_id = caller.key_id,
        route,
        status = response.status_code,
        "admin request"
    );
    response
}

async fn post_key<S: AccessStore + AuditLog>(
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    deps: &Deps<S>,
    request_id: &str,
    now: OffsetDateTime,
) -> ApiGatewayV2httpResponse {
    let body = match api::json_body(request, MAX_BODY_BYTES, "16 KiB")
        .and_then(|bytes| api::parse_json::<KeyRequest>(&bytes))
    {
        Ok(body) => body,
        Err(error) => return error.response(request_id),
    };
    let spec = match body.validate(now) {
        Ok(spec) => spec,
        Err(message) => return bad_request(request_id, &message),
    };
    match issue_key(
        &deps.store,
        &caller.tenant,
        &caller.key_id,
        request_id,
        spec,
        now,
    )
    .await
    {
        Ok(issued) => json_response(
            201,
            &json!({
                "key": issued.secret,
                "key_id": issued.record.key_id,
                "name": issued.record.name,
                "scopes": Scope::join(&issued.record.scopes).split(' ').collect::<Vec<_>>(),
                "expires_at": issued.record.expires_at.map(rfc3339),
                "request_id": request_id,
            }),
        ),
        Err(error) => storage_unavailable(request_id, &error),
    }
}

/// Audits a read before it happens: no data leaves without its entry.
async fn audit_read<S: AuditLog>(
    deps: &Deps<S>,
    caller: &Caller,
    action: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<AuditEntry, StoreError> {
    let entry = draft(&caller.key_id, action, None, request_id, "ok");
    deps.store.append(&caller.tenant, entry, now).await
}

async fn list_keys<S: AccessStore + AuditLog>(
    caller: &Caller,
    deps: &Deps<S>,
    request_id: &str,
    now: OffsetDateTime,
) -> ApiGatewayV2httpResponse {
    let listed = async {
        audit_read(deps, caller, "key.list", request_id, now).await?;
        deps.store.list_keys(&caller.tenant).await
    }
    .await;
    match listed {
        Ok(records) => {
            let keys: Vec<KeyView> = records.iter().map(|r| KeyView::of(r, now)).collect();
            json_response(200, &json!({ "keys": keys, "request_id": request_id }))
        }
        Err(error) => storage_unavailable(request_id, &error),
    }
}

async fn delete_key<S: AccessStore + AuditLog>(
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    deps: &Deps<S>,
    request_id: &str,
    now: OffsetDateTime,
) -> ApiGatewayV2httpResponse {
    let key_id = request
        .path_parameters
        .get("key_id")
        .map(String::as_str)
        .unwrap_or_default();
    if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return bad_request(request_id, "key_id: expected the id of a key");
    }
    match revoke_key(
        &deps.store,
        &caller.tenant,
        &caller.key_id,
        request_id,
        key_id,
        now,
    )
    .await
    {
        Ok(Revocation::Revoked) | Ok(Revocation::AlreadyRevoked) => json_response(
            200,
            &json!({"key_id": key_id, "revoked": true, "request_id": request_id}),
        ),
        Ok(Revocation::NotFound) => error_response(404, "not_found", "no such key", request_id),
        Err(error) => storage_unavailable(request_id, &error),
    }
}

#[derive(Debug, Serialize)]
struct AuditPage<'a> {
    entries: &'a [AuditEntry],
    next_after: Option<u64>,
    request_id: &'a str,
}

fn page_parameters(request: &ApiGatewayV2httpRequest) -> Result<(Option<u64>, usize), String> {
    let mut after = None;
    let mut limit = 100;
    for (name, value) in request.query_string_parameters.iter() {
        match name {
            "after" => {
                after = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| "after: expected a sequence number")?,
                )
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_AUDIT_PAGE).contains(l))
                    .ok_or(format!(
                        "limit: expected a number from 1 to {MAX_AUDIT_PAGE}"
                    ))?
            }
            other => {
                return Err(format!(
                    "unknown query parameter \"{}\"",
                    other.chars().take(32).collect::<String>()
                ))
            }
        }
    }
    Ok((after, limit))
}

async fn list_audit<S: AccessStore + AuditLog>(
    request: &ApiGatewayV2httpRequest,
    caller: &Caller,
    deps: &Deps<S>,
    request_id: &str,
    now: OffsetDateTime,
) -> ApiGatewayV2httpResponse {
    let (after, limit) = match page_parameters(request) {
        Ok(page) => page,
        Err(message) => return bad_request(request_id, &message),
    };
    let entries = async {
        let own = audit_read(deps, caller, "audit.read", request_id, now).await?;
        let entries = deps
            .store
            .entries(&caller.tenant, after, Some(limit))
            .await?;
        // This read's own entry is listed from the next page on.
        Ok::<_, StoreError>(
            entries
                .into_iter()
                .filter(|e| e.seq < own.seq)
                .collect::<Vec<_>>(),
        )
    }
    .await;
    match entries {
        Ok(entries) => {
            let next_after = (entries.len() == limit)
                .then(|| entries.last().map(|e| e.seq))
                .flatten();
            json_response(
                200,
                &AuditPage {
                    entries: &entries,
                    next_after,
                    request_id,
                },
            )
        }
        Err(error) => storage_unavailable(request_id, &error),
    }
}
