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

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{AuditTable, Dynamo, TenantTable};
use vigil_shared::adapters::s3::AnchorBucket;
use vigil_shared::app::audit::{anchor_head, Anchoring};
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::domain::TenantId;
use vigil_shared::function::Function;
use vigil_shared::telemetry;

pub struct Deps {
    pub tenants: TenantTable,
    pub audit: AuditTable,
    pub anchors: AnchorBucket,
    pub clock: fn() -> OffsetDateTime,
}

impl Deps {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, sdk) = Dynamo::connect(config).await;
        Ok(Self {
            tenants: TenantTable::new(&db, config)?,
            audit: AuditTable::new(&db, config)?,
            anchors: AnchorBucket::new(&sdk, config)?,
            clock: OffsetDateTime::now_utc,
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

pub async fn run_job(deps: &Deps, run: AnchorRun) -> Result<AnchorReport, AnchorError> {
    let started = std::time::Instant::now();
    let tenants = match run.tenant {
        Some(tenant) => {
            vec![TenantId::parse(&tenant).map_err(|e| AnchorError::BadTenant(e.reason))?]
        }
        None => deps
            .tenants
            .tenants()
            .await
            .map_err(|e| AnchorError::Tenants(e.to_string()))?,
    };
    let mut report = AnchorReport {
        tenants: tenants.len(),
        ..AnchorReport::default()
    };
    for tenant in &tenants {
        match anchor_head(&deps.audit, &deps.anchors, tenant, (deps.clock)()).await {
            Ok(Anchoring::Anchored) => report.anchored += 1,
            Ok(Anchoring::Unchanged) => report.unchanged += 1,
            Ok(Anchoring::Empty) => report.empty += 1,
            Err(error) => {
                report.failed += 1;
                tracing::error!(tenant = %tenant, error = %error, "audit head not anchored");
            }
        }
    }
    tracing::info!(
        tenants = report.tenants,
        anchored = report.anchored,
        unchanged = report.unchanged,
        empty = report.empty,
        failed = report.failed,
        "audit anchoring done"
    );
    let now_ms = i64::try_from((deps.clock)().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    telemetry::emit_metrics(&telemetry::emf_line(
        "vigil",
        &[("function", "audit-anchor")],
        &[
            ("HeadsAnchored", report.anchored as f64, "Count"),
            ("AnchorFailures", report.failed as f64, "Count"),
            (
                "AnchorMillis",
                started.elapsed().as_millis() as f64,
                "Milliseconds",
            ),
        ],
        now_ms,
    ));
    if report.failed > 0 {
        return Err(AnchorError::Incomplete {
            failed: report.failed,
            tenants: report.tenants,
        });
    }
    Ok(report)
}
