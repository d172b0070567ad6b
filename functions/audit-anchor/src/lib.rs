//! The audit anchor job (an EventBridge schedule, every 5 minutes): writes each
//! tenant's audit chain head (sequence and hash) to the anchor bucket, where
//! Object Lock in compliance mode keeps it for 400 days and no role, this
//! function's included, can overwrite or delete it (docs/decisions/0013).
//!
//! Input: the scheduled event (anything), or `{"tenant": "<id>"}` for one
//! tenant. Idempotent: a head that is already anchored is left alone, so a run
//! repeated, or two at once, write each anchor once (at worst twice, identical).
//! A tenant that fails is retried by the next run; the invocation fails (Lambda
//! retries it, then the dead-letter queue) so the failure is seen.
//!
//! Cost and time: two requests a tenant (a Query for the head, a conditional
//! PutObject), 16 tenants at a time, in a random order. The run stops starting
//! new tenants once its time budget (45 s of the function's 60) is spent; the
//! ones left (`deferred`, logged) come first by chance in the next run, 5
//! minutes later. At about 20 ms a request that is some 20,000 tenants a run.

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{AuditTable, Dynamo, TenantTable};
use vigil_shared::adapters::s3::AnchorBucket;
use vigil_shared::app::audit::{anchor_head, Anchoring};
use vigil_shared::app::jobs::{job_tenants, TenantsError};
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::TenantId;
use vigil_shared::function::Function;
use vigil_shared::ports::StoreError;
use vigil_shared::telemetry;

pub struct Deps {
    pub tenants: TenantTable,
    pub audit: AuditTable,
    pub anchors: AnchorBucket,
    pub clock: fn() -> OffsetDateTime,
    /// No tenant is started after this much of a run.
    pub budget: std::time::Duration,
}

/// Tenants anchored at once.
pub const CONCURRENCY: usize = 16;
/// Of the function's 60 s timeout (template.yaml), with room for the last requests.
pub const BUDGET: std::time::Duration = std::time::Duration::from_secs(45);

impl Deps {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, sdk) = Dynamo::connect(config).await;
        Ok(Self {
            tenants: TenantTable::new(&db, config)?,
            audit: AuditTable::new(&db, config)?,
            anchors: AnchorBucket::new(&sdk, config)?,
            clock: OffsetDateTime::now_utc,
            budget: BUDGET,
        })
    }
}

/// What a run is asked to do: every tenant (a schedule's event), or one.
#[derive(Debug, Default, Deserialize)]
pub struct AnchorRun {
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    pub tenants: usize,
    pub anchored: usize,
    pub unchanged: usize,
    pub empty: usize,
    pub failed: usize,
    /// Not started within the time budget: the next run does them.
    pub deferred: usize,
}

#[derive(Debug, Error)]
pub enum AnchorError {
    #[error("tenant: {0}")]
    BadTenant(&'static str),
    #[error("cannot list the tenants: {0}")]
    Tenants(String),
    #[error("{failed} of {tenants} tenants could not be anchored (the next run retries them)")]
    Incomplete { failed: usize, tenants: usize },
}

impl Function for Deps {
    type Event = serde_json::Value;
    type Output = AnchorReport;
    type Error = AnchorError;

    async fn call(&self, event: serde_json::Value) -> Result<AnchorReport, AnchorError> {
        // A scheduled event carries EventBridge's fields: only `tenant` matters.
        let run: AnchorRun = serde_json::from_value(event).unwrap_or_default();
        run_job(self, run).await
    }
}

/// One tenant's head, unless the run's time budget is spent (None).
async fn anchor_one(
    deps: &Deps,
    tenant: TenantId,
    started: std::time::Instant,
) -> Option<Result<Anchoring, StoreError>> {
    if started.elapsed() >= deps.budget {
        return None;
    }
    let outcome = anchor_head(&deps.audit, &deps.anchors, &tenant, (deps.clock)()).await;
    if let Err(error) = &outcome {
        tracing::error!(tenant = %tenant, error = %error, "audit head not anchored");
    }
    Some(outcome)
}

pub async fn run_job(deps: &Deps, run: AnchorRun) -> Result<AnchorReport, AnchorError> {
    let started = std::time::Instant::now();
    let tenants = job_tenants(&deps.tenants, run.tenant.as_deref())
        .await
        .map_err(|e| match e {
            TenantsError::BadTenant(reason) => AnchorError::BadTenant(reason),
            TenantsError::List(e) => AnchorError::Tenants(e.to_string()),
        })?;
    let mut tenants = tenants;
    // A random order: what a run leaves undone, the next is likely to start with.
    tenants.sort_by_cached_key(|_| rand::random::<u64>());
    let mut report = AnchorReport {
        tenants: tenants.len(),
        ..AnchorReport::default()
    };
    let outcomes: Vec<Option<Result<Anchoring, StoreError>>> = stream::iter(tenants)
        .map(|tenant| anchor_one(deps, tenant, started))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Some(Ok(Anchoring::Anchored)) => report.anchored += 1,
            Some(Ok(Anchoring::Unchanged)) => report.unchanged += 1,
            Some(Ok(Anchoring::Empty)) => report.empty += 1,
            Some(Err(_)) => report.failed += 1,
            None => report.deferred += 1,
        }
    }
    tracing::info!(
        tenants = report.tenants,
        anchored = report.anchored,
        unchanged = report.unchanged,
        empty = report.empty,
        failed = report.failed,
        deferred = report.deferred,
        "audit anchoring done"
    );
    telemetry::emit_function_metrics(
        "audit-anchor",
        &[
            ("HeadsAnchored", report.anchored as f64, "Count"),
            ("AnchorFailures", report.failed as f64, "Count"),
            ("AnchorsDeferred", report.deferred as f64, "Count"),
            (
                "AnchorMillis",
                started.elapsed().as_millis() as f64,
                "Milliseconds",
            ),
        ],
    );
    if report.failed > 0 {
        return Err(AnchorError::Incomplete {
            failed: report.failed,
            tenants: report.tenants,
        });
    }
    Ok(report)
}
