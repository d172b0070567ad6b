//! The retention purge (docs/decisions/0019): every day, deletes for every
//! tenant what the retention module says has expired, and leaves a destruction
//! record of each unit of work, appended to the tenant's audit trail and
//! readable at `GET /v1/retention/records`.
//!
//! Invoked by its EventBridge schedule (daily at 03:00 UTC), or by the operator
//! CLI with `{"tenant": "<id>", "now": "<RFC 3339>", "dry_run": true,
//! "max_pages": 10}` (every field optional: all tenants, the clock, deleting,
//! as many pages as the budget allows). A dry run deletes nothing and stores
//! nothing: it returns the records a run would write. The use case is
//! `vigil_shared::app::purge`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::purge::PurgeTables;
use vigil_shared::adapters::dynamo::{AuditTable, Dynamo, TenantTable};
use vigil_shared::adapters::s3::DataBucket;
use vigil_shared::app::jobs::{job_now, job_tenants, TenantsError};
use vigil_shared::app::purge::{Budget, PurgeRequest, Purger, TenantPurge};
use vigil_shared::config::{Config, ConfigError};
use vigil_shared::function::{job_input, Function};
use vigil_shared::telemetry;

/// A run's budget, of the function's 900 s timeout.
pub const JOB_BUDGET: Duration = Duration::from_secs(840);

pub struct Deps {
    pub purger: Purger,
    pub tenants: TenantTable,
    pub clock: fn() -> OffsetDateTime,
    pub job_budget: Duration,
}

impl Deps {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, sdk) = Dynamo::connect(config).await;
        Ok(Self {
            purger: Purger {
                tables: PurgeTables::new(&db, config)?,
                bucket: DataBucket::new(&sdk, config)?,
                audit: AuditTable::new(&db, config)?,
            },
            tenants: TenantTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
            job_budget: JOB_BUDGET,
        })
    }
}

/// The invocation's input. A scheduled event (it has `detail-type`) carries
/// EventBridge's own fields and is read as `{}`; any other input must hold only
/// these fields, so a misspelt one (`dryrun`) is refused rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeInput {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Stop after this many pages of work (the CLI's steps; a test's interruption).
    #[serde(default)]
    pub max_pages: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct PurgeReport {
    pub run_id: String,
    pub dry_run: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// Everything due was reached (false: the next run continues).
    pub complete: bool,
    pub tenants: Vec<TenantPurge>,
    /// Tenants not reached within the budget.
    pub not_reached: usize,
}

#[derive(Debug, Error)]
pub enum PurgeJobError {
    #[error("{0}: {1}")]
    BadInput(&'static str, &'static str),
    #[error("cannot list the tenants: {0}")]
    Tenants(String),
    #[error(
        "the purge of {failed} of {tenants} tenants failed (the next run continues it): {first}"
    )]
    Failed {
        failed: usize,
        tenants: usize,
        first: String,
    },
}

impl Function for Deps {
    type Event = Value;
    type Output = Value;
    type Error = PurgeJobError;

    async fn call(&self, event: Value) -> Result<Value, PurgeJobError> {
        let input: PurgeInput = serde_json::from_value(job_input(event)).map_err(|_| {
            PurgeJobError::BadInput("input", "expected tenant, now, dry_run and max_pages")
        })?;
        let report = Box::pin(purge(self, input)).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

pub async fn purge(deps: &Deps, input: PurgeInput) -> Result<PurgeReport, PurgeJobError> {
    let started = Instant::now();
    let now = job_now(input.now.as_deref(), deps.clock)
        .map_err(|_| PurgeJobError::BadInput("now", "expected an RFC 3339 time"))?;
    if input.max_pages == Some(0) {
        return Err(PurgeJobError::BadInput("max_pages", "expected at least 1"));
    }
    let tenants = job_tenants(&deps.tenants, input.tenant.as_deref())
        .await
        .map_err(|e| match e {
            TenantsError::List(e) => PurgeJobError::Tenants(e.to_string()),
            TenantsError::BadTenant(_) => PurgeJobError::BadInput("tenant", "expected a tenant id"),
        })?;
    let request = PurgeRequest {
        now,
        dry_run: input.dry_run,
        run_id: format!("{:016x}", rand::random::<u64>()),
        started: (deps.clock)(),
    };
    let mut budget = Budget {
        deadline: started + deps.job_budget,
        pages_left: input.max_pages,
    };
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    let mut not_reached = 0;
    for tenant in &tenants {
        if reports.iter().any(|r: &TenantPurge| !r.complete && !r.busy) {
            not_reached += 1;
            continue;
        }
        match deps
            .purger
            .purge_tenant(tenant, &request, &mut budget)
            .await
        {
            Ok(report) => reports.push(report),
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, retryable = e.is_retryable(), "purge failed");
                failures.push(e.to_string());
            }
        }
    }
    let complete = failures.is_empty() && not_reached == 0 && reports.iter().all(|r| r.complete);
    let records: Vec<_> = reports.iter().flat_map(|r| &r.records).collect();
    let items: u64 = records.iter().map(|r| r.counts.total_items()).sum();
    let versions: u64 = records.iter().map(|r| r.counts.versions).sum();
    let stamped: u64 = reports.iter().map(|r| r.stamped_items).sum();
    tracing::info!(
        run_id = %request.run_id,
        dry_run = request.dry_run,
        tenants = tenants.len(),
        complete,
        failed = failures.len(),
        not_reached,
        records = records.len(),
        items,
        versions,
        stamped,
        duration_ms = started.elapsed().as_millis() as u64,
        "purge run"
    );
    if !request.dry_run {
        telemetry::emit_function_metrics(
            "purge",
            &[
                ("PurgedItems", items as f64, "Count"),
                ("PurgedObjectVersions", versions as f64, "Count"),
                ("StampedItems", stamped as f64, "Count"),
                ("DestructionRecords", records.len() as f64, "Count"),
                ("PurgeIncomplete", f64::from(u8::from(!complete)), "Count"),
                ("PurgeFailed", failures.len() as f64, "Count"),
                (
                    "PurgeDuration",
                    started.elapsed().as_millis() as f64,
                    "Milliseconds",
                ),
            ],
        );
    }
    if let Some(first) = failures.first() {
        return Err(PurgeJobError::Failed {
            failed: failures.len(),
            tenants: tenants.len(),
            first: first.clone(),
        });
    }
    Ok(PurgeReport {
        run_id: request.run_id,
        dry_run: request.dry_run,
        now,
        complete,
        tenants: reports,
        not_reached,
    })
}
