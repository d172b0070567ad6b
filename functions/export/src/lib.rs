//! The monthly re-training export (docs/decisions/0018): a pseudonymised,
//! minimised Parquet dataset per tenant and month under
//! `exports/<tenant>/<yyyy-mm>/` in the data bucket, its manifest written last.
//!
//! Invoked by its EventBridge schedule (hourly on the 1st to 3rd of each month:
//! the first run exports the month before, the next ones continue what did not
//! fit or do nothing), or by the operator CLI with
//! `{"tenant": "<id>", "month": "yyyy-mm", "rerun": true, "now": "<RFC 3339>",
//! "max_shards": 1}` (every field optional: all tenants, the month before
//! `now`, no re-run, the clock, as many shards as the budget allows). The use case is `vigil_shared::app::export`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::exports::ExportRuns;
use vigil_shared::adapters::dynamo::{
    AggregateTable, Dynamo, EventTable, SubjectTable, TenantTable,
};
use vigil_shared::adapters::s3::DataBucket;
use vigil_shared::app::export::{ExportReport, ExportRequest, ExportStatus, Exporter};
use vigil_shared::app::jobs::{job_now, job_tenants, TenantsError};
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::export::ExportMonth;
use vigil_shared::function::{job_input, Function};
use vigil_shared::telemetry;

/// A run's budget, of the function's 900 s timeout.
pub const JOB_BUDGET: Duration = Duration::from_secs(840);

pub struct Deps {
    pub exporter: Exporter,
    pub tenants: TenantTable,
    pub clock: fn() -> OffsetDateTime,
    pub job_budget: Duration,
}

impl Deps {
    pub async fn connect(config: &Config) -> Result<Self, ConfigError> {
        let (db, sdk) = Dynamo::connect(config).await;
        Ok(Self {
            exporter: Exporter {
                events: EventTable::new(&db, config)?,
                subjects: SubjectTable::new(&db, config)?,
                directory: AggregateTable::new(&db, config)?,
                runs: ExportRuns::new(&db, config)?,
                tenants: TenantTable::new(&db, config)?,
                bucket: DataBucket::new(&sdk, config)?,
                kms: aws_sdk_kms::Client::new(&sdk),
                pseudonym_key_id: config.require(Setting::ExportPseudonymKeyId)?.to_owned(),
                code_version: concat!("vigil-export ", env!("CARGO_PKG_VERSION")).to_owned(),
            },
            tenants: TenantTable::new(&db, config)?,
            clock: OffsetDateTime::now_utc,
            job_budget: JOB_BUDGET,
        })
    }
}

/// The invocation's input. A scheduled event (it has `detail-type`) carries
/// EventBridge's own fields and is read as `{}`; any other input must hold only
/// these fields, so a misspelt one is refused rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportInput {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub month: Option<String>,
    #[serde(default)]
    pub now: Option<String>,
    #[serde(default)]
    pub rerun: bool,
    /// Stop after this many shards with a checkpoint (the CLI's progress steps).
    #[serde(default)]
    pub max_shards: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct InvocationReport {
    pub month: String,
    pub tenants: Vec<ExportReport>,
    /// Tenants not reached within the budget (the next invocation does them).
    pub not_reached: usize,
}

#[derive(Debug, Error)]
pub enum ExportJobError {
    #[error("{0}: {1}")]
    BadInput(&'static str, &'static str),
    #[error("cannot list the tenants: {0}")]
    Tenants(String),
    #[error(
        "the export of {failed} of {tenants} tenants failed (the next run continues it): {first}"
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
    type Error = ExportJobError;

    async fn call(&self, event: Value) -> Result<Value, ExportJobError> {
        let input: ExportInput = serde_json::from_value(job_input(event)).map_err(|_| {
            ExportJobError::BadInput("input", "expected tenant, month, now and rerun")
        })?;
        let report = Box::pin(export(self, input)).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}

pub async fn export(deps: &Deps, input: ExportInput) -> Result<InvocationReport, ExportJobError> {
    let started = Instant::now();
    let deadline = started + deps.job_budget;
    let now = job_now(input.now.as_deref(), deps.clock)
        .map_err(|_| ExportJobError::BadInput("now", "expected an RFC 3339 time"))?;
    let month = match &input.month {
        Some(label) => ExportMonth::parse(label)
            .ok_or(ExportJobError::BadInput("month", "expected yyyy-mm"))?,
        None => ExportMonth::of(now).previous(),
    };
    if month.end() > now {
        return Err(ExportJobError::BadInput("month", "must be over at `now`"));
    }
    let tenants = job_tenants(&deps.tenants, input.tenant.as_deref())
        .await
        .map_err(|e| match e {
            TenantsError::List(e) => ExportJobError::Tenants(e.to_string()),
            TenantsError::BadTenant(_) => {
                ExportJobError::BadInput("tenant", "expected a tenant id")
            }
        })?;
    let holder = format!("{:016x}", rand::random::<u64>());
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    let mut not_reached = 0;
    for tenant in &tenants {
        if Instant::now() + vigil_shared::app::export::SHARD_MARGIN > deadline {
            not_reached += 1;
            continue;
        }
        let request = ExportRequest {
            tenant: tenant.clone(),
            month,
            now,
            rerun: input.rerun,
            deadline,
            max_shards: input.max_shards,
            holder: holder.clone(),
        };
        match deps.exporter.run(&request).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, retryable = e.is_retryable(), "export failed");
                failures.push(e.to_string());
            }
        }
    }
    let count = |status| reports.iter().filter(|r| r.status == status).count() as f64;
    let rows: u64 = reports
        .iter()
        .filter(|r| r.status == ExportStatus::Complete)
        .map(|r| r.rows.values().sum::<u64>())
        .sum();
    tracing::info!(
        month = %month.label(),
        tenants = tenants.len(),
        complete = count(ExportStatus::Complete),
        incomplete = count(ExportStatus::Incomplete),
        busy = count(ExportStatus::Busy),
        failed = failures.len(),
        not_reached,
        rows,
        duration_ms = started.elapsed().as_millis() as u64,
        "export run"
    );
    telemetry::emit_function_metrics(
        "export",
        &[
            ("ExportsCompleted", count(ExportStatus::Complete), "Count"),
            (
                "ExportsIncomplete",
                count(ExportStatus::Incomplete) + not_reached as f64,
                "Count",
            ),
            ("ExportsFailed", failures.len() as f64, "Count"),
            ("ExportRows", rows as f64, "Count"),
            (
                "ExportDuration",
                started.elapsed().as_millis() as f64,
                "Milliseconds",
            ),
        ],
    );
    if let Some(first) = failures.first() {
        return Err(ExportJobError::Failed {
            failed: failures.len(),
            tenants: tenants.len(),
            first: first.clone(),
        });
    }
    Ok(InvocationReport {
        month: month.label(),
        tenants: reports,
        not_reached,
    })
}
