//! Consumption alerts (docs/decisions/0017): the API of rules, silences, the
//! webhook and the alert history, and the scheduled evaluation that fires,
//! repeats and resolves alerts and delivers their notifications.
//!
//! | route | scope | does |
//! |---|---|---|
//! | `GET /v1/alerts?state=&account=&rule=&from=&to=&limit=&cursor=` | read | alerts that fired, by account then time |
//! | `GET /v1/alerts/rules` | read | the rules in force (the defaults until the tenant sets its own) |
//! | `PUT /v1/alerts/rules` | admin | replaces the whole rule set |
//! | `GET /v1/alerts/silences` | read | silences, active or not yet expired |
//! | `POST /v1/alerts/silences` | admin | mutes matching alerts until a time |
//! | `DELETE /v1/alerts/silences/{silence_id}` | admin | ends a silence now |
//! | `GET /v1/alerts/webhook` | read | the webhook (never its secret) |
//! | `PUT /v1/alerts/webhook` | admin | sets the webhook; a new signing secret is shown once |
//! | `DELETE /v1/alerts/webhook` | admin | removes the webhook |
//! | `GET /v1/alerts/notifications?limit=&cursor=` | read | notifications sent, newest first, with their delivery |
//!
//! Any other event (the EventBridge schedule, every 5 minutes, or
//! `{"now": "<RFC 3339>", "tenant": "<id>"}`) evaluates every tenant (or one)
//! at `now` (default: the clock).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::adapters::bus::AlertBus;
use vigil_shared::adapters::dynamo::alerts::AlertsTable;
use vigil_shared::adapters::dynamo::{AggregateTable, AuditTable, Dynamo, TenantTable};
use vigil_shared::adapters::kms::WebhookSecrets;
use vigil_shared::adapters::webhook::WebhookClient;
use vigil_shared::app::alerts::{
    history_view, rules_in_force, rules_json, Alerting, RuleBody, RulesBody, SilenceBody,
    TenantRun, WebhookBody,
};
use vigil_shared::app::audit::draft;
use vigil_shared::app::jobs::{job_now, job_tenants, TenantsError};
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::crypto::{new_webhook_secret, CryptoError};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::alert::Status;
use vigil_shared::domain::{AccountId, TenantId};
use vigil_shared::function::Function;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::{AuditLog, DashboardStore, FailureKind, StoreError};
use vigil_shared::telemetry;

pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_PAGE: usize = 100;
/// A scheduled run's budget, of the function's 300 s timeout.
pub const JOB_BUDGET: Duration = Duration::from_secs(240);
/// A webhook receiver gets this long to answer.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Query pages one history request reads at most (a page may then hold fewer
/// than `limit` alerts: follow `next_cursor`).
const HISTORY_PAGES: usize = 10;

pub struct Deps {
    pub alerting: Alerting,
    pub tenants: TenantTable,
    pub audit: AuditTable,
    pub clock: fn() -> OffsetDateTime,
    pub job_budget: Duration,
    pub allow_loopback_webhooks: bool,
}

#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the system's root certificates could not be loaded: {0}")]
    Certificates(#[from] std::io::Error),
}

impl Deps {
    pub async fn connect(config: &Config) -> Result<Self, InitError> {
        Self::connect_with(config, WEBHOOK_TIMEOUT).await
    }

    /// As `connect`, with another webhook timeout (tests).
    pub async fn connect_with(
        config: &Config,
        webhook_timeout: Duration,
    ) -> Result<Self, InitError> {
        let (db, sdk) = Dynamo::connect(config).await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        Ok(Self {
            alerting: Alerting {
                table: AlertsTable::new(&db, config)?,
                rollups: AggregateTable::new(&db, config)?,
                bus: AlertBus::new(&sdk, config)?,
                webhooks: WebhookClient::new(webhook_timeout)?,
                secrets: WebhookSecrets::new(kms, config.require(Setting::WebhookKeyId)?),
            },
            tenants: TenantTable::new(&db, config)?,
            audit: AuditTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
            job_budget: JOB_BUDGET,
            allow_loopback_webhooks: config.get(Setting::WebhookAllowLoopback) == Some("true"),
        })
    }
}

/// A scheduled evaluation: at `now` (default: the clock), every tenant or one.
#[derive(Debug, Default, Deserialize)]
pub struct EvaluationRun {
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationReport {
    pub now: String,
    pub tenants: usize,
    #[serde(flatten)]
    pub totals: TenantRun,
    pub failed_tenants: usize,
}

#[derive(Debug, Error)]
pub enum EvaluationError {
    #[error("{0}: {1}")]
    BadInput(&'static str, &'static str),
    #[error("cannot list the tenants: {0}")]
    Tenants(String),
    #[error("{failed} of {tenants} tenants could not be evaluated (the next run retries)")]
    Incomplete { failed: usize, tenants: usize },
    #[error("the event is neither an API request nor an evaluation run: {0}")]
    BadEvent(String),
}

impl Function for Deps {
    type Event = Value;
    type Output = Value;
    type Error = EvaluationError;

    async fn call(&self, event: Value) -> Result<Value, EvaluationError> {
        if event.get("requestContext").is_some() {
            let request: ApiGatewayV2httpRequest = serde_json::from_value(event)
                .map_err(|e| EvaluationError::BadEvent(e.to_string()))?;
            // Boxed: the route table's future is deep enough to overflow the
            // compiler's layout query depth inside `lambda_main!`.
            let response = Box::pin(handle(&request, self)).await;
            return serde_json::to_value(response)
                .map_err(|e| EvaluationError::BadEvent(e.to_string()));
        }
        // A scheduled event carries EventBridge's fields: only `now` and `tenant` matter.
        let run: EvaluationRun = serde_json::from_value(event).unwrap_or_default();
        let report = Box::pin(evaluate(self, run)).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

pub async fn evaluate(
    deps: &Deps,
    run: EvaluationRun,
) -> Result<EvaluationReport, EvaluationError> {
    let started = Instant::now();
    let deadline = started + deps.job_budget;
    let now = job_now(run.now.as_deref(), deps.clock)
        .map_err(|_| EvaluationError::BadInput("now", "expected an RFC 3339 time"))?;
    // Whole seconds: history keys sort by their time as text.
    let now = now.to_offset(time::UtcOffset::UTC);
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let tenants = job_tenants(&deps.tenants, run.tenant.as_deref())
        .await
        .map_err(|e| match e {
            TenantsError::List(e) => EvaluationError::Tenants(e.to_string()),
            TenantsError::BadTenant(_) => {
                EvaluationError::BadInput("tenant", "expected a tenant id")
            }
        })?;
    let mut report = EvaluationReport {
        now: rfc3339(now),
        tenants: tenants.len(),
        ..EvaluationReport::default()
    };
    for tenant in &tenants {
        match deps.alerting.run_tenant(tenant, now, deadline).await {
            Ok(run) => {
                let t = &mut report.totals;
                t.accounts += run.accounts;
                t.ended += run.ended;
                t.committed += run.committed;
                t.raced += run.raced;
                t.notifications += run.notifications;
                t.delivered += run.delivered;
                t.delivery_failures += run.delivery_failures;
                t.incomplete |= run.incomplete;
            }
            Err(error) => {
                report.failed_tenants += 1;
                tracing::error!(tenant = %tenant, error = %error, "alerts not evaluated");
            }
        }
    }
    let t = &report.totals;
    tracing::info!(
        now = %report.now,
        tenants = report.tenants,
        accounts = t.accounts,
        committed = t.committed,
        raced = t.raced,
        notifications = t.notifications,
        delivered = t.delivered,
        delivery_failures = t.delivery_failures,
        incomplete = t.incomplete,
        failed_tenants = report.failed_tenants,
        "alert evaluation run"
    );
    telemetry::emit_function_metrics(
        "alerts",
        &[
            ("AccountsEvaluated", t.accounts as f64, "Count"),
            ("AlertCommits", t.committed as f64, "Count"),
            ("NotificationsDelivered", t.delivered as f64, "Count"),
            ("DeliveryFailures", t.delivery_failures as f64, "Count"),
            (
                "EvaluationMilliseconds",
                started.elapsed().as_millis() as f64,
                "Milliseconds",
            ),
        ],
    );
    if report.failed_tenants > 0 {
        return Err(EvaluationError::Incomplete {
            failed: report.failed_tenants,
            tenants: report.tenants,
        });
    }
    Ok(report)
}

pub async fn handle(request: &ApiGatewayV2httpRequest, deps: &Deps) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("alerts", request);
    // Reading needs `read`; changing needs `admin`.
    let scope = if call.route.starts_with("GET ") {
        Scope::Read
    } else {
        Scope::Admin
    };
    let outcome = match call.authorize(scope) {
        Ok(caller) => route(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

fn crypto_error(error: CryptoError) -> ApiError {
    match error {
        CryptoError::DataKeyUnavailable(detail) => {
            ApiError::Unavailable(StoreError::failed("KMS", FailureKind::Retryable, detail))
        }
        other => ApiError::Internal(other.to_string()),
    }
}

async fn audit(
    deps: &Deps,
    caller: &Caller,
    call: &Call<'_>,
    action: &str,
    target: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    deps.audit
        .append(
            &caller.tenant,
            draft(&caller.key_id, action, target, &call.request_id, "ok"),
            now,
        )
        .await?;
    Ok(())
}

async fn route(call: &Call<'_>, caller: &Caller, deps: &Deps) -> Result<Reply, ApiError> {
    let now = (deps.clock)();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let tenant = &caller.tenant;
    let table = &deps.alerting.table;
    match call.route.as_str() {
        "GET /v1/alerts" => history(call, tenant, deps, now).await,
        "GET /v1/alerts/rules" => {
            call.query(&[])?;
            let settings = table.settings(tenant, now).await?;
            let (rules, defaults) = rules_in_force(&settings)?;
            let bodies: Vec<RuleBody> = rules.iter().map(RuleBody::of).collect();
            Ok(Reply::ok(&json!({
                "rules": bodies,
                "defaults": defaults,
                "updated_at": settings.rules_updated_at.map(rfc3339),
            })))
        }
        "PUT /v1/alerts/rules" => {
            call.query(&[])?;
            let body: RulesBody = call.json(MAX_BODY_BYTES, "64 KiB")?;
            let known: HashSet<String> = deps
                .alerting
                .rollups
                .accounts(tenant)
                .await?
                .into_iter()
                .map(|e| e.account.to_string())
                .collect();
            let rules = body.validate(&known)?;
            table.put_rules(tenant, &rules_json(&rules), now).await?;
            audit(deps, caller, call, "alerts.rules.put", None, now).await?;
            let bodies: Vec<RuleBody> = rules.iter().map(RuleBody::of).collect();
            Ok(Reply::ok(
                &json!({"rules": bodies, "defaults": false, "updated_at": rfc3339(now)}),
            ))
        }
        "GET /v1/alerts/silences" => {
            call.query(&[])?;
            let settings = table.settings(tenant, now).await?;
            let silences: Vec<Value> = settings
                .silences
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["active"] = json!(s.is_active(now));
                    v
                })
                .collect();
            Ok(Reply::ok(&json!({"silences": silences})))
        }
        "POST /v1/alerts/silences" => {
            call.query(&[])?;
            let body: SilenceBody = call.json(MAX_BODY_BYTES, "64 KiB")?;
            let id = format!("sil_{:020x}", rand::random::<u128>() >> 48);
            let silence = body.validate(id, now)?;
            table.put_silence(tenant, &silence, now).await?;
            audit(
                deps,
                caller,
                call,
                "alerts.silence.create",
                Some(&silence.id),
                now,
            )
            .await?;
            let mut view = serde_json::to_value(&silence).unwrap_or_default();
            view["active"] = json!(silence.is_active(now));
            Ok(Reply::json(201, &view))
        }
        "DELETE /v1/alerts/silences/{silence_id}" => {
            call.query(&[])?;
            let id = call.path("silence_id");
            if !is_silence_id(id) {
                return Err(ApiError::invalid(
                    "silence_id",
                    "expected a silence id (sil_ and 20 hex digits)",
                ));
            }
            let Some(silence) = table.end_silence(tenant, id, now).await? else {
                return Err(ApiError::NotFound("no such silence"));
            };
            audit(deps, caller, call, "alerts.silence.end", Some(id), now).await?;
            let mut view = serde_json::to_value(&silence).unwrap_or_default();
            view["active"] = json!(false);
            Ok(Reply::ok(&view))
        }
        "GET /v1/alerts/webhook" => {
            call.query(&[])?;
            let settings = table.settings(tenant, now).await?;
            let Some(webhook) = settings.webhook else {
                return Err(ApiError::NotFound("no webhook is set"));
            };
            Ok(Reply::ok(&json!({
                "url": webhook.url,
                "created_at": rfc3339(webhook.created_at),
                "secret_created_at": rfc3339(webhook.secret_created_at),
            })))
        }
        "PUT /v1/alerts/webhook" => {
            call.query(&[])?;
            let body: WebhookBody = call.json(MAX_BODY_BYTES, "64 KiB")?;
            body.validate(deps.allow_loopback_webhooks)?;
            let existing = table.settings(tenant, now).await?.webhook;
            let new_secret =
                (existing.is_none() || body.rotate_secret == Some(true)).then(new_webhook_secret);
            let sealed = match &new_secret {
                Some(secret) => Some(
                    deps.alerting
                        .secrets
                        .seal(tenant, secret.as_bytes())
                        .await
                        .map_err(crypto_error)?,
                ),
                None => None,
            };
            let created = table.put_webhook(tenant, &body.url, sealed, now).await?;
            audit(deps, caller, call, "alerts.webhook.put", None, now).await?;
            let mut answer = json!({"url": body.url, "created": created});
            if let Some(secret) = new_secret {
                answer["secret"] = json!(secret);
                answer["note"] = json!("the signing secret is shown once: store it now");
            }
            Ok(Reply::json(if created { 201 } else { 200 }, &answer))
        }
        "DELETE /v1/alerts/webhook" => {
            call.query(&[])?;
            if !table.delete_webhook(tenant).await? {
                return Err(ApiError::NotFound("no webhook is set"));
            }
            audit(deps, caller, call, "alerts.webhook.delete", None, now).await?;
            Ok(Reply::ok(&json!({"deleted": true})))
        }
        "GET /v1/alerts/notifications" => notifications(call, tenant, deps, now).await,
        _ => Err(ApiError::NotFound("no such route")),
    }
}

pub fn is_silence_id(id: &str) -> bool {
    id.len() == 24
        && id.starts_with("sil_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn limit_of(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|l| (1..=MAX_PAGE).contains(l))
        .ok_or_else(|| ApiError::invalid("limit", "expected a number from 1 to 100"))
}

fn encode_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

/// A cursor back to the sort key it was made from; it must lie under `prefix`.
fn decode_cursor(cursor: &str, prefix: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|sk| sk.starts_with(prefix) && sk.len() <= 512)
        .ok_or_else(|| ApiError::invalid("cursor", "expected the next_cursor of a previous page"))
}

async fn history(
    call: &Call<'_>,
    tenant: &TenantId,
    deps: &Deps,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let (mut state, mut account, mut rule, mut from, mut to, mut limit, mut cursor) =
        (None, None, None, None, None, 50, None);
    for (name, value) in
        call.query(&["state", "account", "rule", "from", "to", "limit", "cursor"])?
    {
        match name {
            "state" => {
                state = Some(match value {
                    "firing" => Status::Firing,
                    "resolved" => Status::Resolved,
                    _ => return Err(ApiError::invalid("state", "expected firing or resolved")),
                })
            }
            "account" => {
                account = Some(
                    AccountId::parse(value).map_err(|e| ApiError::invalid("account", e.reason))?,
                )
            }
            "rule" => {
                if !vigil_shared::app::accounts::is_label(value) {
                    return Err(ApiError::invalid(
                        "rule",
                        "expected a rule id (1 to 40 lowercase letters, digits, - or _)",
                    ));
                }
                rule = Some(value)
            }
            "from" | "to" => {
                let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                    ApiError::invalid(
                        name,
                        "expected an RFC 3339 time such as 2026-12-01T09:00:00Z",
                    )
                })?;
                if name == "from" {
                    from = Some(at)
                } else {
                    to = Some(at)
                }
            }
            "limit" => limit = limit_of(value)?,
            _ => cursor = Some(value),
        }
    }
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(ApiError::invalid("to", "must not be before from"));
        }
    }
    let prefix = vigil_shared::keys::alert_history_prefix(account.as_ref());
    let mut start = cursor.map(|c| decode_cursor(c, &prefix)).transpose()?;
    let mut alerts = Vec::new();
    let mut next = None;
    for _ in 0..HISTORY_PAGES {
        let (entries, after) = deps
            .alerting
            .table
            .history(
                tenant,
                account.as_ref(),
                start.clone(),
                limit - alerts.len(),
                now,
            )
            .await?;
        alerts.extend(
            entries
                .iter()
                .filter(|e| {
                    state.is_none_or(|s| s == e.state)
                        && rule.is_none_or(|r| r == e.rule)
                        && to.is_none_or(|t| e.fired_at <= t)
                        && from.is_none_or(|f| e.resolved_at.is_none_or(|r| r >= f))
                })
                .map(history_view),
        );
        next = after.clone();
        if after.is_none() || alerts.len() >= limit {
            break;
        }
        start = after;
    }
    Ok(Reply::ok(&json!({
        "alerts": alerts,
        "next_cursor": next.map(|sk| encode_cursor(&sk)),
    })))
}

async fn notifications(
    call: &Call<'_>,
    tenant: &TenantId,
    deps: &Deps,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    let (mut limit, mut cursor) = (20, None);
    for (name, value) in call.query(&["limit", "cursor"])? {
        match name {
            "limit" => limit = limit_of(value)?,
            _ => cursor = Some(decode_cursor(value, "N#")?),
        }
    }
    let (records, next) = deps
        .alerting
        .table
        .notifications(tenant, cursor, limit, now)
        .await?;
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "notification": serde_json::from_str::<Value>(&r.payload).unwrap_or(Value::Null),
                "delivery": {
                    "bus": r.bus,
                    "webhook": r.webhook,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "delivered_at": r.delivered_at.map(rfc3339),
                },
            })
        })
        .collect();
    Ok(Reply::ok(&json!({
        "notifications": items,
        "next_cursor": next.map(|sk| encode_cursor(&sk)),
    })))
}
