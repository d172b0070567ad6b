//! The admin API (scope `admin`): API keys, account contracts and the audit trail.
//!
//! | route | does |
//! |---|---|
//! | `PUT /v1/accounts/{account}` | registers or replaces an account's contract (201 new, 200 replaced) |
//! | `POST /v1/keys` | issues a key; the secret is in this response only |
//! | `GET /v1/keys` | lists the tenant's keys (never secrets or hashes) |
//! | `DELETE /v1/keys/{key_id}?cascade=` | revokes a key (and, with cascade, the keys it issued) |
//! | `GET /v1/audit?after=&limit=` | lists audit entries |
//! | `GET /v1/audit/verify?full=` | verifies the hash chain against its anchors |
//! | `GET /v1/retention/records?after=&limit=` | lists the retention purge's destruction records |
//!
//! Every call appends an audit entry: reads before they return data (no unaudited
//! read), changes after they are made (the entry records the outcome). The use
//! cases live in `vigil_shared::app`, shared with the operator CLI.

use std::convert::Infallible;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{AggregateTable, AuditTable, Dynamo, TenantTable};
use vigil_shared::adapters::s3::AnchorBucket;
use vigil_shared::app::accounts::{register_account, AccountRequest};
use vigil_shared::app::audit::{audit_read, verify_trail};
use vigil_shared::app::keys::{issue_key, revoke_key, KeyRequest, KeyView};
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::audit::{AuditEntry, VerifyMode};
use vigil_shared::domain::AccountId;
use vigil_shared::function::Function;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::{AccessStore, AccountRegistry, AnchorStore, AuditLog, Revocation};

pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_AUDIT_PAGE: usize = 1000;

pub struct Deps<K, A, S, R> {
    pub keys: K,
    /// The account directory (contracts).
    pub accounts: R,
    pub audit: A,
    /// The audit anchors (read only: this function cannot write them).
    pub anchors: S,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps<TenantTable, AuditTable, AnchorBucket, AggregateTable> {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, sdk) = Dynamo::connect(config).await;
        Ok(Self {
            keys: TenantTable::new(&db, config)?,
            accounts: AggregateTable::new(&db, config)?,
            audit: AuditTable::new(&db, config)?,
            anchors: AnchorBucket::new(&sdk, config)?,
            clock: OffsetDateTime::now_utc,
        })
    }
}

impl<K, A, S, R> Function for Deps<K, A, S, R>
where
    K: AccessStore + 'static,
    A: AuditLog + 'static,
    S: AnchorStore + 'static,
    R: AccountRegistry + 'static,
{
    type Event = ApiGatewayV2httpRequest;
    type Output = ApiGatewayV2httpResponse;
    type Error = Infallible;

    async fn call(&self, event: ApiGatewayV2httpRequest) -> Result<Self::Output, Infallible> {
        Ok(handle(&event, self).await)
    }
}

pub async fn handle<K: AccessStore, A: AuditLog, S: AnchorStore, R: AccountRegistry>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<K, A, S, R>,
) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("admin", request);
    let outcome = match call.authorize(Scope::Admin) {
        Ok(caller) => route(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

async fn route<K: AccessStore, A: AuditLog, S: AnchorStore, R: AccountRegistry>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<K, A, S, R>,
) -> Result<Reply, ApiError> {
    let now = (deps.clock)();
    let (tenant, actor, request_id) = (&caller.tenant, caller.key_id.as_str(), &call.request_id);
    match call.route.as_str() {
        "POST /v1/keys" => {
            let spec = call
                .json::<KeyRequest>(MAX_BODY_BYTES, "16 KiB")?
                .validate(now)?;
            let issuer = deps.keys.get_key(tenant, actor).await?;
            let spec = spec.capped_by(issuer.and_then(|k| k.expires_at));
            let issued = issue_key(
                &deps.keys,
                &deps.audit,
                tenant,
                actor,
                request_id,
                spec,
                now,
            )
            .await?;
            Ok(Reply::json(
                201,
                &json!({
                    "key": issued.secret,
                    "key_id": issued.record.key_id,
                    "name": issued.record.name,
                    "scopes": issued.record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "expires_at": KeyView::of(&issued.record, now).expires_at,
                    "issued_by": issued.record.issued_by,
                }),
            ))
        }
        "GET /v1/keys" => {
            call.query(&[])?;
            audit_read(&deps.audit, tenant, actor, "key.list", request_id, now).await?;
            let records = deps.keys.list_keys(tenant).await?;
            let keys: Vec<KeyView> = records.iter().map(|r| KeyView::of(r, now)).collect();
            Ok(Reply::ok(&json!({ "keys": keys })))
        }
        "DELETE /v1/keys/{key_id}" => {
            let key_id = call.path("key_id");
            let well_formed = key_id.len() == 16
                && key_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !well_formed {
                return Err(ApiError::invalid(
                    "key_id",
                    "expected the id of a key (16 hex digits)",
                ));
            }
            let cascade = call.flag("cascade")?;
            let (outcome, also_revoked) = revoke_key(
                &deps.keys,
                &deps.audit,
                tenant,
                actor,
                request_id,
                key_id,
                cascade,
                now,
            )
            .await?;
            match outcome {
                Revocation::Revoked | Revocation::AlreadyRevoked => Ok(Reply::ok(&json!({
                    "key_id": key_id,
                    "revoked": true,
                    "also_revoked": also_revoked,
                }))),
                Revocation::NotFound => Err(ApiError::NotFound("no such key")),
            }
        }
        "PUT /v1/accounts/{account}" => {
            let account = AccountId::parse(call.path("account"))
                .map_err(|_| ApiError::invalid("account", "expected an account id"))?;
            call.query(&[])?;
            let contract = call
                .json::<AccountRequest>(MAX_BODY_BYTES, "16 KiB")?
                .validate()?;
            let created = register_account(
                &deps.accounts,
                &deps.audit,
                tenant,
                actor,
                request_id,
                &account,
                &contract,
                now,
            )
            .await?;
            let mut body = json!({"account": account.as_str(), "registered": true});
            if let (Some(body), Ok(serde_json::Value::Object(fields))) =
                (body.as_object_mut(), serde_json::to_value(contract.view()))
            {
                body.extend(fields);
            }
            Ok(Reply::json(if created { 201 } else { 200 }, &body))
        }
        "GET /v1/audit" => list_audit(call, caller, deps, now).await,
        "GET /v1/retention/records" => list_destruction_records(call, caller, deps, now).await,
        "GET /v1/audit/verify" => {
            let mode = if call.flag("full")? {
                VerifyMode::Full
            } else {
                VerifyMode::Incremental
            };
            let report = verify_trail(
                &deps.audit,
                &deps.anchors,
                tenant,
                actor,
                request_id,
                mode,
                now,
            )
            .await?;
            Ok(Reply::ok(&report))
        }
        _ => Err(ApiError::NotFound("no such route")),
    }
}

#[derive(Debug, Serialize)]
struct AuditPage<'a> {
    entries: &'a [AuditEntry],
    next_after: Option<u64>,
}

fn page_parameters(call: &Call<'_>) -> Result<(Option<u64>, usize), ApiError> {
    let mut after = None;
    let mut limit = 100;
    for (name, value) in call.query(&["after", "limit"])? {
        match name {
            "after" => {
                after = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| ApiError::invalid("after", "expected a sequence number"))?,
                )
            }
            _ => limit = limit_parameter(value)?,
        }
    }
    Ok((after, limit))
}

async fn list_audit<K: AccessStore, A: AuditLog, S: AnchorStore, R>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<K, A, S, R>,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let (after, limit) = page_parameters(call)?;
    let tenant = &caller.tenant;
    let own = audit_read(
        &deps.audit,
        tenant,
        &caller.key_id,
        "audit.read",
        &call.request_id,
        now,
    )
    .await?;
    let entries: Vec<AuditEntry> = deps
        .audit
        .entries(tenant, after, Some(limit))
        .await?
        .into_iter()
        // This read's own entry is listed from the next page on.
        .filter(|e| e.seq < own.seq)
        .collect();
    let next_after = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Reply::ok(&AuditPage {
        entries: &entries,
        next_after,
    }))
}

/// A page size: 1 to `MAX_AUDIT_PAGE`.
fn limit_parameter(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|l| (1..=MAX_AUDIT_PAGE).contains(l))
        .ok_or_else(|| {
            ApiError::invalid(
                "limit",
                format!("expected a number from 1 to {MAX_AUDIT_PAGE}"),
            )
        })
}

/// A record id as the purge writes it (`<RFC 3339>#<run id>#<seq>`): the
/// characters it can hold, and no more than it can be long.
fn record_id_parameter(value: &str) -> Result<&str, ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '+' | '.' | '#');
    if !value.is_empty() && value.len() <= 80 && value.chars().all(allowed) {
        Ok(value)
    } else {
        Err(ApiError::invalid("after", "expected a record id"))
    }
}

#[derive(Debug, Serialize)]
struct RecordPage {
    records: Vec<serde_json::Value>,
    next_after: Option<String>,
}

/// The purge's destruction records of the caller's tenant (proof of what was
/// deleted, when, under which policy); the read is audited first.
async fn list_destruction_records<K: AccessStore, A: AuditLog, S: AnchorStore, R>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<K, A, S, R>,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let mut after = None;
    let mut limit = 100;
    for (name, value) in call.query(&["after", "limit"])? {
        match name {
            "after" => after = Some(record_id_parameter(value)?),
            _ => limit = limit_parameter(value)?,
        }
    }
    audit_read(
        &deps.audit,
        &caller.tenant,
        &caller.key_id,
        "retention.records.read",
        &call.request_id,
        now,
    )
    .await?;
    let records = deps
        .audit
        .destruction_records(&caller.tenant, after, limit, now)
        .await?;
    let next_after = (records.len() == limit)
        .then(|| {
            records
                .last()
                .and_then(|r| r["record_id"].as_str())
                .map(str::to_owned)
        })
        .flatten();
    Ok(Reply::ok(&RecordPage {
        records,
        next_after,
    }))
}
