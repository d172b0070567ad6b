//! The privacy API (scope `privacy`): data subjects' contact fields, their
//! requests (GDPR Art. 15–21 and French post-mortem directives), and the
//! register of processing (Art. 30). Also the scheduled resume of requests
//! that did not finish within their API call (docs/decisions/0016).
//!
//! | route | does |
//! |---|---|
//! | `PUT /v1/subjects/{user}` | stores the person's e-mail and name, sealed (envelope encryption) |
//! | `POST /v1/privacy/requests` | receives a request and works on it (201 done, 202 still running) |
//! | `GET /v1/privacy/requests?state=&limit=&cursor=` | lists requests, newest first, overdue ones flagged |
//! | `GET /v1/privacy/requests/{request_id}` | one request, its receipt, and links to its bundle |
//! | `GET /v1/privacy/register` | the register of processing activities |
//!
//! Any other event (the EventBridge schedule, every 5 minutes, or
//! `{"tenant": "<id>"}`) resumes the open requests of every tenant (or one).

mod request;

use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::privacy::StoredRequest;
use vigil_shared::adapters::dynamo::{
    AuditTable, Dynamo, PrivacyTable, RightsTables, SubjectTable, TenantTable,
};
use vigil_shared::adapters::kms::{self, ContactKeys, LookupInitError};
use vigil_shared::adapters::s3::DataBucket;
use vigil_shared::app::audit::audit_read;
use vigil_shared::app::jobs::{job_tenants, TenantsError};
use vigil_shared::app::privacy::{Actor, Rights};
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::privacy::{check_user, is_request_id, RequestState};
use vigil_shared::function::Function;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::AuditLog;

pub use request::{RequestBody, SubjectBody};

pub const MAX_BODY_BYTES: usize = 8 * 1024;
pub const MAX_PAGE: usize = 100;
/// The register of processing activities, in the repository (docs/register-of-processing.json).
pub const REGISTER: &str = include_str!("../../../docs/register-of-processing.json");
/// Work done inside an API call before answering 202 (API Gateway waits 30 s at most).
pub const INLINE_BUDGET: Duration = Duration::from_secs(10);
/// Subjects whose restriction or objections changed this recently are passed
/// over again by each scheduled run (two runs' worth: one may fail).
pub const RECHECK_WINDOW: time::Duration = time::Duration::minutes(15);
/// A scheduled resume's budget, of the function's 60 s timeout.
pub const JOB_BUDGET: Duration = Duration::from_secs(45);

pub struct Deps {
    pub rights: Rights<AuditTable>,
    pub tenants: TenantTable,
    pub clock: fn() -> OffsetDateTime,
    pub inline_budget: Duration,
    pub job_budget: Duration,
}

#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lookup(#[from] LookupInitError),
}

impl Deps {
    /// Clients built once; the lookup secrets derived once (one KMS call a version).
    pub async fn connect(config: &Config) -> Result<Self, InitError> {
        let (db, sdk) = Dynamo::connect(config).await;
        let kms_client = aws_sdk_kms::Client::new(&sdk);
        let lookup = kms::lookup_from_config(&kms_client, config).await?;
        let contact_key = config.require(Setting::ContactKeyId)?;
        Ok(Self {
            rights: Rights {
                subjects: SubjectTable::new(&db, config)?,
                requests: PrivacyTable::new(&db, config)?,
                effects: RightsTables::new(&db, config)?,
                bucket: DataBucket::new(&sdk, config)?,
                contact_keys: ContactKeys::new(kms_client, contact_key),
                audit: AuditTable::new(&db, config)?,
                lookup: Some(lookup),
            },
            tenants: TenantTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
            inline_budget: INLINE_BUDGET,
            job_budget: JOB_BUDGET,
        })
    }
}

/// A scheduled resume: every tenant, or one.
#[derive(Debug, Default, Deserialize)]
pub struct ResumeRun {
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ResumeReport {
    pub tenants: usize,
    /// Open requests found and worked on.
    pub continued: usize,
    /// Still open after this run (out of time: the next run continues).
    pub still_open: usize,
    /// Subjects whose state changed within `RECHECK_WINDOW`, passed over again.
    pub rechecked: usize,
    pub failed: usize,
}

#[derive(Debug, Error)]
pub enum ResumeError {
    #[error("tenant: {0}")]
    BadTenant(&'static str),
    #[error("cannot list the tenants: {0}")]
    Tenants(String),
    #[error("{failed} of {tenants} tenants' requests could not be resumed (the next run retries)")]
    Incomplete { failed: usize, tenants: usize },
    #[error("the event is neither an API request nor a resume run: {0}")]
    BadEvent(String),
}

impl Function for Deps {
    type Event = Value;
    type Output = Value;
    type Error = ResumeError;

    async fn call(&self, event: Value) -> Result<Value, ResumeError> {
        if event.get("requestContext").is_some() {
            let request: ApiGatewayV2httpRequest =
                serde_json::from_value(event).map_err(|e| ResumeError::BadEvent(e.to_string()))?;
            let response = handle(&request, self).await;
            return serde_json::to_value(response)
                .map_err(|e| ResumeError::BadEvent(e.to_string()));
        }
        // A scheduled event carries EventBridge's fields: only `tenant` matters.
        let run: ResumeRun = serde_json::from_value(event).unwrap_or_default();
        let report = resume(self, run).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

pub async fn resume(deps: &Deps, run: ResumeRun) -> Result<ResumeReport, ResumeError> {
    let deadline = Instant::now() + deps.job_budget;
    let tenants = job_tenants(&deps.tenants, run.tenant.as_deref())
        .await
        .map_err(|e| match e {
            TenantsError::BadTenant(reason) => ResumeError::BadTenant(reason),
            TenantsError::List(e) => ResumeError::Tenants(e.to_string()),
        })?;
    let mut report = ResumeReport {
        tenants: tenants.len(),
        ..ResumeReport::default()
    };
    for tenant in &tenants {
        let actor = Actor {
            tenant,
            key_id: "privacy-resume",
            request_id: "scheduled",
        };
        let now = (deps.clock)();
        let resumed = deps.rights.resume(&actor, deadline, now).await;
        let rechecked = deps
            .rights
            .recheck(tenant, now - RECHECK_WINDOW, deadline, now)
            .await;
        match resumed.and_then(|r| rechecked.map(|c| (r, c))) {
            Ok(((continued, still_open), rechecked)) => {
                report.continued += continued;
                report.still_open += still_open;
                report.rechecked += rechecked;
            }
            Err(error) => {
                report.failed += 1;
                tracing::error!(tenant = %tenant, error = ?error.detail(), code = error.code(), "privacy requests not resumed");
            }
        }
    }
    tracing::info!(
        tenants = report.tenants,
        continued = report.continued,
        still_open = report.still_open,
        rechecked = report.rechecked,
        failed = report.failed,
        "privacy resume run"
    );
    if report.failed > 0 {
        return Err(ResumeError::Incomplete {
            failed: report.failed,
            tenants: report.tenants,
        });
    }
    Ok(report)
}

pub async fn handle(request: &ApiGatewayV2httpRequest, deps: &Deps) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("privacy", request);
    let outcome = match call.authorize(Scope::Privacy) {
        Ok(caller) => route(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

async fn route(call: &Call<'_>, caller: &Caller, deps: &Deps) -> Result<Reply, ApiError> {
    let now = (deps.clock)();
    let actor = Actor {
        tenant: &caller.tenant,
        key_id: &caller.key_id,
        request_id: &call.request_id,
    };
    match call.route.as_str() {
        "PUT /v1/subjects/{user}" => {
            let user = call.path("user");
            if !check_user(user) {
                return Err(ApiError::invalid(
                    "user",
                    "expected the tenant's user id (1 to 256 characters, no control characters)",
                ));
            }
            call.query(&[])?;
            let contact = call
                .json::<SubjectBody>(MAX_BODY_BYTES, "8 KiB")?
                .validate()?;
            let fields = contact.field_names();
            let (created, changed) = deps.rights.put_subject(&actor, user, contact, now).await?;
            Ok(Reply::json(
                if created { 201 } else { 200 },
                &json!({
                    "stored": true,
                    "created": created,
                    "fields": fields,
                    "fields_changed": changed,
                    "encryption": "AES-256-GCM under a KMS data key bound to the tenant and the subject",
                }),
            ))
        }
        "POST /v1/privacy/requests" => {
            call.query(&[])?;
            let spec = call
                .json::<RequestBody>(MAX_BODY_BYTES, "8 KiB")?
                .validate()?;
            let deadline = Instant::now() + deps.inline_budget;
            let stored = deps.rights.submit(&actor, spec, deadline, now).await?;
            let status = if stored.state.is_open() { 202 } else { 201 };
            Ok(Reply::json(
                status,
                &view(deps, &stored, (deps.clock)()).await?,
            ))
        }
        "GET /v1/privacy/requests" => list(call, &actor, deps, now).await,
        "GET /v1/privacy/requests/{request_id}" => {
            let id = call.path("request_id");
            if !is_request_id(id) {
                return Err(ApiError::invalid(
                    "request_id",
                    "expected a request id (pr_ and 20 hex digits)",
                ));
            }
            call.query(&[])?;
            let found = deps.rights.requests.get(actor.tenant, id).await?;
            let Some(found) = found else {
                return Err(ApiError::NotFound("no such request"));
            };
            deps.rights
                .audit
                .append(
                    actor.tenant,
                    vigil_shared::app::audit::draft(
                        actor.key_id,
                        "privacy.request.read",
                        Some(id),
                        actor.request_id,
                        "ok",
                    ),
                    now,
                )
                .await?;
            Ok(Reply::ok(&view(deps, &found, now).await?))
        }
        "GET /v1/privacy/register" => {
            call.query(&[])?;
            let register: Value = serde_json::from_str(REGISTER)
                .map_err(|_| ApiError::Internal("the register is not valid JSON".into()))?;
            Ok(Reply::ok(&register))
        }
        _ => Err(ApiError::NotFound("no such route")),
    }
}

async fn list(
    call: &Call<'_>,
    actor: &Actor<'_>,
    deps: &Deps,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let mut state = None;
    let mut limit = 50;
    let mut cursor = None;
    for (name, value) in call.query(&["state", "limit", "cursor"])? {
        match name {
            "state" => {
                state = Some(RequestState::parse(value).ok_or_else(|| {
                    ApiError::invalid(
                        "state",
                        "expected received, in_progress, completed or rejected",
                    )
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| ApiError::invalid("limit", "expected a number from 1 to 100"))?
            }
            _ => {
                if !is_request_id(value) {
                    return Err(ApiError::invalid(
                        "cursor",
                        "expected the next_cursor of a previous page",
                    ));
                }
                cursor = Some(value);
            }
        }
    }
    audit_read(
        &deps.rights.audit,
        actor.tenant,
        actor.key_id,
        "privacy.request.list",
        actor.request_id,
        now,
    )
    .await?;
    let page = deps
        .rights
        .requests
        .list(actor.tenant, state, limit, cursor, now)
        .await?;
    let mut requests = Vec::with_capacity(page.requests.len());
    for request in &page.requests {
        requests.push(summary(request, now));
    }
    let overdue = requests
        .iter()
        .filter(|r| r["overdue"] == json!(true))
        .count();
    Ok(Reply::ok(&json!({
        "requests": requests,
        "overdue": overdue,
        "next_cursor": page.next,
    })))
}

/// A request as listed: no receipt, no links.
fn summary(request: &StoredRequest, now: OffsetDateTime) -> Value {
    // `id`: the body's `request_id` is the API call's (added by the request path).
    let mut body = json!({
        "id": request.id,
        "type": request.kind.as_str(),
        "state": request.state.as_str(),
        "received_at": rfc3339(request.received_at),
        "due_at": rfc3339(request.due_at),
        "updated_at": rfc3339(request.updated_at),
        "overdue": request.state.is_open() && now > request.due_at,
        "events_done": request.events_done,
    });
    if let Some(fields) = body.as_object_mut() {
        if let Some(purpose) = request.purpose {
            fields.insert("purpose".into(), json!(purpose.as_str()));
        }
        if let Some(directive) = request.directive {
            fields.insert("directive".into(), json!(directive.as_str()));
        }
        if let Some(at) = request.completed_at {
            fields.insert("completed_at".into(), json!(rfc3339(at)));
        }
        if let Some(reason) = &request.reason {
            fields.insert("reason".into(), json!(reason));
        }
    }
    body
}

/// A request shown whole: its receipt and, while the bundle is kept, fresh links.
async fn view(
    deps: &Deps,
    request: &StoredRequest,
    now: OffsetDateTime,
) -> Result<Value, ApiError> {
    let mut body = summary(request, now);
    if let Some(fields) = body.as_object_mut() {
        if let Some(receipt) = &request.receipt {
            fields.insert("receipt".into(), json!(receipt));
        }
        if let Some((links, expires_at)) = deps.rights.links(request, now).await? {
            let files: Vec<Value> = links
                .into_iter()
                .map(|(name, url)| json!({"name": name, "url": url}))
                .collect();
            fields.insert(
                "download".into(),
                json!({"files": files, "expires_at": rfc3339(expires_at)}),
            );
        }
    }
    Ok(body)
}
