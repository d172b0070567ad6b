//! `POST /v1/events`: validates, minimises and pseudonymises a batch of events,
//! stores each once, and adds them to per-account hourly aggregates.
//!
//! Exactly-once counting: an event is counted only by the request that stores
//! it, and in the same transaction (per account-hour, at most 99 events and the
//! aggregate's update), conditional on no live event with its key: two requests
//! carrying the same event at once count it once. See docs/decisions/0011.

pub mod request;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{Dynamo, IngestTables};
use vigil_shared::adapters::kms;
use vigil_shared::auth::Caller;
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::crypto::{LookupKeys, SubjectLookup};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::validate::event_id_hint;
use vigil_shared::domain::{validate_event, Limits, RawEventRetention, StoredEvent, TenantId};
use vigil_shared::function::Function;
use vigil_shared::http::error::RETRY_AFTER_SECONDS;
use vigil_shared::http::{ApiError, Call, Reply};
use vigil_shared::ports::{EventRef, IngestStore, Recorded, ResolvedSubject, StoreError};
use vigil_shared::telemetry;

pub use request::{MAX_BODY_BYTES, MAX_EVENTS};

/// Everything the handler needs, built once per cold start.
pub struct Deps<S> {
    pub store: S,
    pub subject_lookup: SubjectLookup,
    pub limits: Limits,
    pub clock: fn() -> OffsetDateTime,
    /// Print an EMF metrics line per request (off in benchmarks).
    pub emit_metrics: bool,
    pub retention: RetentionCache,
}

#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lookup(#[from] kms::LookupInitError),
}

impl Deps<IngestTables> {
    /// Builds the SDK clients and derives the subject lookup secret (one KMS call).
    pub async fn connect(config: &Config) -> Result<Self, InitError> {
        let (db, sdk) = Dynamo::connect(config).await;
        let store = IngestTables::new(&db, config)?;
        let subject_lookup =
            kms::lookup_from_config(&aws_sdk_kms::Client::new(&sdk), config).await?;
        Ok(Self {
            store,
            subject_lookup,
            limits: Limits::default(),
            clock: OffsetDateTime::now_utc,
            emit_metrics: true,
            retention: RetentionCache::default(),
        })
    }
}

impl<S: IngestStore + 'static> Function for Deps<S> {
    type Event = ApiGatewayV2httpRequest;
    type Output = ApiGatewayV2httpResponse;
    type Error = Infallible;

    async fn call(&self, event: ApiGatewayV2httpRequest) -> Result<Self::Output, Infallible> {
        Ok(handle(&event, self).await)
    }
}

/// Outcome of one event, in request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored and counted now.
    Accepted,
    /// Already stored (earlier in this batch or by an earlier request): not stored or counted again.
    Duplicate,
    /// Invalid: fix it, do not retry as is.
    Rejected,
    /// Valid but not stored (storage unavailable): retry it.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    pub index: usize,
    pub id: Option<String>,
    pub status: EventStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub failed: usize,
    /// Fields removed by minimisation, summed over the batch.
    pub dropped_fields: usize,
    pub results: Vec<EventResult>,
    /// Some storage failure was permanent: a resend will not help until it is fixed.
    #[serde(skip)]
    pub permanent_failure: bool,
}

const STORAGE_RETRY: &str = "storage unavailable: retry this event";
const STORAGE_BROKEN: &str = "storage error: a retry will not help; quote the request id";

/// The Lambda handler: API Gateway HTTP API (payload v2) in, response out.
pub async fn handle<S: IngestStore>(
    request: &ApiGatewayV2httpRequest,
    deps: &Deps<S>,
) -> ApiGatewayV2httpResponse {
    let mut call = Call::begin("ingest", request);
    let outcome = match call.authorize(Scope::Ingest) {
        Ok(caller) => ingest(&call, &caller, deps).await,
        Err(denied) => Err(denied),
    };
    call.finish(outcome)
}

/// The batch's reply: 200 with per-event results, unless nothing could be stored
/// because of storage (503 with `Retry-After`, or 500 if a retry cannot help).
fn reply(body: &IngestResponse) -> Reply {
    let nothing_stored = body.accepted == 0 && body.duplicates == 0;
    match (body.failed > 0 && nothing_stored, body.permanent_failure) {
        (false, _) => Reply::ok(body),
        (true, false) => Reply::json(503, body).retry_after(RETRY_AFTER_SECONDS),
        (true, true) => Reply::json(500, body),
    }
}

fn log_outcome(call: &Call, caller: &Caller, body: &IngestResponse, emit_metrics: bool) {
    tracing::info!(
        request_id = call.request_id,
        tenant = caller.tenant.as_str(),
        key_id = caller.key_id,
        accepted = body.accepted,
        duplicates = body.duplicates,
        rejected = body.rejected,
        failed = body.failed,
        dropped_fields = body.dropped_fields,
        "batch ingested"
    );
    if !emit_metrics {
        return;
    }
    telemetry::emit_function_metrics(
        "ingest",
        &[
            ("EventsAccepted", body.accepted as f64, "Count"),
            ("EventsDuplicate", body.duplicates as f64, "Count"),
            ("EventsRejected", body.rejected as f64, "Count"),
            ("EventsFailed", body.failed as f64, "Count"),
            ("FieldsDropped", body.dropped_fields as f64, "Count"),
        ],
    );
}

/// A valid, not-yet-stored event and where its result goes.
struct Pending {
    index: usize,
    event: StoredEvent,
}

async fn ingest<S: IngestStore>(
    call: &Call<'_>,
    caller: &Caller,
    deps: &Deps<S>,
) -> Result<Reply, ApiError> {
    let tenant = &caller.tenant;
    let elements = request::parse_envelope(&request::body_bytes(call.request)?)?;
    let now = (deps.clock)();
    let retention = deps.retention.get(tenant, &deps.store).await?;
    // An event older than the tenant's retention would be stored already expired.
    let limits = Limits {
        max_age: deps.limits.max_age.min(retention.duration().unsigned_abs()),
        ..deps.limits
    };

    let mut results: Vec<EventResult> = Vec::with_capacity(elements.len());
    let mut valid = Vec::with_capacity(elements.len());
    let mut seen: HashSet<EventRef> = HashSet::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let mut result = EventResult {
            index,
            id: event_id_hint(element),
            status: EventStatus::Rejected,
            error: None,
            dropped_fields: Vec::new(),
        };
        match validate_event(element, now, &limits) {
            Err(rejection) => result.error = Some(rejection.message()),
            Ok(validated) => {
                result.dropped_fields = validated.dropped;
                let key = (validated.event.account.clone(), validated.event.id.clone());
                if seen.insert(key) {
                    result.status = EventStatus::Accepted;
                    valid.push((index, validated.event));
                } else {
                    result.status = EventStatus::Duplicate;
                }
            }
        }
        results.push(result);
    }

    let pending = pseudonymise(tenant, valid, deps, &mut results).await;
    record(tenant, pending, retention, now, &deps.store, &mut results).await;

    let count = |status| results.iter().filter(|r| r.status == status).count();
    let permanent_failure = results
        .iter()
        .any(|r| r.error.as_deref() == Some(STORAGE_BROKEN));
    let body = IngestResponse {
        accepted: count(EventStatus::Accepted),
        duplicates: count(EventStatus::Duplicate),
        rejected: count(EventStatus::Rejected),
        failed: count(EventStatus::Failed),
        dropped_fields: results.iter().map(|r| r.dropped_fields.len()).sum(),
        results,
        permanent_failure,
    };
    log_outcome(call, caller, &body, deps.emit_metrics);
    Ok(reply(&body))
}

fn mark_failed(results: &mut [EventResult], index: usize, operation: &str, error: &StoreError) {
    tracing::warn!(operation, error = %error, retryable = error.is_retryable(), "storage failure");
    results[index].status = EventStatus::Failed;
    let message = if error.is_retryable() {
        STORAGE_RETRY
    } else {
        STORAGE_BROKEN
    };
    results[index].error = Some(message.to_owned());
}

/// Swaps each user id for its subject pseudonym; the user ids go no further.
async fn pseudonymise<S: IngestStore>(
    tenant: &TenantId,
    valid: Vec<(usize, vigil_shared::domain::Event)>,
    deps: &Deps<S>,
    results: &mut [EventResult],
) -> Vec<Pending> {
    // One HMAC per distinct user, not per event.
    let mut by_user: HashMap<&str, LookupKeys> = HashMap::new();
    let lookups: Vec<Option<String>> = valid
        .iter()
        .map(|(_, event)| {
            event.user.as_deref().map(|user| {
                by_user
                    .entry(user)
                    .or_insert_with(|| deps.subject_lookup.lookup_keys(tenant, user))
                    .current
                    .clone()
            })
        })
        .collect();
    let distinct: Vec<LookupKeys> = by_user.into_values().collect();
    let subjects: Result<HashMap<String, ResolvedSubject>, StoreError> = if distinct.is_empty() {
        Ok(HashMap::new())
    } else {
        deps.store.resolve_subjects(tenant, &distinct).await
    };
    let mut pending = Vec::with_capacity(valid.len());
    for ((index, event), lookup) in valid.into_iter().zip(lookups) {
        let subject = match (&lookup, &subjects) {
            (None, _) => None,
            (Some(lookup), Ok(subjects)) => match subjects.get(lookup) {
                Some(resolved) => Some(resolved.clone()),
                None => {
                    let error = StoreError::failed(
                        "resolve_subjects",
                        vigil_shared::ports::FailureKind::Retryable,
                        "pseudonym missing",
                    );
                    mark_failed(results, index, "resolve_subjects", &error);
                    continue;
                }
            },
            (Some(_), Err(error)) => {
                mark_failed(results, index, "resolve_subjects", error);
                continue;
            }
        };
        let withheld = subject
            .as_ref()
            .map(|r| r.withheld.clone())
            .unwrap_or_default();
        let mut event = StoredEvent::pseudonymised(event, subject.map(|r| r.subject));
        event.withheld = withheld;
        pending.push(Pending { index, event });
    }
    pending
}

/// Stores and counts the events together (one transaction per account-hour
/// chunk): each is counted exactly when it is stored, so a failure leaves nothing
/// to undo and a resend is always safe.
async fn record<S: IngestStore>(
    tenant: &TenantId,
    pending: Vec<Pending>,
    retention: RawEventRetention,
    now: OffsetDateTime,
    store: &S,
    results: &mut [EventResult],
) {
    if pending.is_empty() {
        return;
    }
    let (indices, events): (Vec<usize>, Vec<StoredEvent>) =
        pending.into_iter().map(|p| (p.index, p.event)).unzip();
    let outcomes = store.record_events(tenant, &events, retention, now).await;
    for (index, outcome) in indices.into_iter().zip(outcomes) {
        match outcome {
            Recorded::Counted => results[index].status = EventStatus::Accepted,
            Recorded::AlreadyStored => results[index].status = EventStatus::Duplicate,
            Recorded::Failed(error) => mark_failed(results, index, "record_events", &error),
        }
    }
}

/// Each tenant's raw-event retention, read once per tenant and kept 5 minutes
/// per warm container (docs/decisions/0010): a tenant that lowers it sees new
/// events follow within 5 minutes, at one read per tenant per 5 minutes.
#[derive(Default)]
pub struct RetentionCache {
    entries: Mutex<HashMap<TenantId, (RawEventRetention, Instant)>>,
}

const RETENTION_CACHE_TTL: Duration = Duration::from_secs(300);

impl RetentionCache {
    async fn get<S: IngestStore>(
        &self,
        tenant: &TenantId,
        store: &S,
    ) -> Result<RawEventRetention, StoreError> {
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < RETENTION_CACHE_TTL)
            .map(|(retention, _)| *retention);
        if let Some(retention) = cached {
            return Ok(retention);
        }
        let retention = store.raw_event_retention(tenant).await?;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), (retention, Instant::now()));
        Ok(retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::http::HeaderValue;
    use serde_json::{json, Value};
    use vigil_shared::mocks::MemoryStore;

    fn deps() -> Deps<MemoryStore> {
        Deps {
            store: MemoryStore::default(),
            subject_lookup: SubjectLookup::new([7; 32]),
            limits: Limits::default(),
            clock: || time::macros::datetime!(2026-11-01 12:00 UTC),
            emit_metrics: false,
            retention: RetentionCache::default(),
        }
    }

    fn post(body: &str) -> ApiGatewayV2httpRequest {
        vigil_shared::mocks::json_request_as("t1", "ingest", body.to_owned())
    }

    fn body_of(response: &ApiGatewayV2httpResponse) -> Value {
        match &response.body {
            Some(aws_lambda_events::encodings::Body::Text(text)) => {
                serde_json::from_str(text).expect("json")
            }
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[tokio::test]
    async fn stores_once_and_counts_once() {
        let deps = deps();
        let batch = json!({"events": [
            {"id": "e-1", "time": "2026-11-01T10:00:00Z", "source": "api_call", "account": "acme", "user": "u-42",
             "data": {"endpoint": "/v1/pay", "method": "POST", "status": 201, "latency_ms": 83, "units": 1}},
            {"id": "e-1", "time": "2026-11-01T10:00:00Z", "source": "api_call", "account": "acme", "user": "u-42",
             "data": {"endpoint": "/v1/pay", "method": "POST", "status": 201, "latency_ms": 83, "units": 1}},
            {"id": "e-2", "time": "2026-11-01T10:00:00Z", "source": "product", "account": "acme",
             "data": {"feature": 3}}
        ]})
        .to_string();
        let first = handle(&post(&batch), &deps).await;
        assert_eq!(first.status_code, 200);
        let body = body_of(&first);
        assert_eq!(
            (
                body["accepted"].as_u64(),
                body["duplicates"].as_u64(),
                body["rejected"].as_u64()
            ),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(
            body["results"][2]["error"],
            "data.feature: expected a string"
        );
        let again = body_of(&handle(&post(&batch), &deps).await);
        assert_eq!(
            (again["accepted"].as_u64(), again["duplicates"].as_u64()),
            (Some(0), Some(2))
        );
        assert_eq!(deps.store.events.lock().expect("lock").len(), 1);
        let aggregates = deps.store.aggregates.lock().expect("lock");
        let counters = aggregates.values().next().expect("one aggregate");
        assert!(counters.contains(&("calls".to_owned(), 1)));
    }

    #[tokio::test]
    async fn whole_request_errors_have_their_status() {
        let deps = deps();
        assert_eq!(handle(&post("{"), &deps).await.status_code, 400);
        let mut no_caller = post("{\"events\": []}");
        no_caller.request_context.authorizer = None;
        assert_eq!(handle(&no_caller, &deps).await.status_code, 401);
        let mut reader = post("{\"events\": []}");
        if let Some(authorizer) = reader.request_context.authorizer.as_mut() {
            authorizer.fields.insert("scopes".into(), json!("read"));
        }
        assert_eq!(handle(&reader, &deps).await.status_code, 403);
        let mut text = post("{}");
        text.headers
            .insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(handle(&text, &deps).await.status_code, 415);
        let big = format!("{{\"events\": [\"{}\"]}}", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(handle(&post(&big), &deps).await.status_code, 413);
    }
}
