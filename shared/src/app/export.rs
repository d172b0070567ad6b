//! The monthly re-training export (docs/decisions/0018): one tenant's month,
//! streamed shard by shard from the `by_month` index into Parquet files in the
//! data bucket, people who restricted processing, objected to `model_training`
//! or were erased left out before anything is computed, a manifest written
//! last. A run holds a lease on its record and checkpoints after each shard;
//! an interrupted run is continued by the next invocation, a re-run replaces
//! the month's dataset whole.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::adapters::dynamo::exports::{ExportRun, ExportRuns, Progress, RunState};
use crate::adapters::dynamo::{AggregateTable, EventTable, SubjectTable, TenantTable};
use crate::adapters::kms::derive_export_pseudonyms;
use crate::adapters::parquet::{
    events_batch, events_schema, features_batch, features_schema, ParquetObject, BATCH_ROWS,
};
use crate::adapters::s3::DataBucket;
use crate::crypto::CryptoError;
use crate::domain::account::AccountContract;
use crate::domain::export::{
    in_relationship, AccountMonth, DatasetFile, EventRow, Excluded, Exclusion, ExportMonth,
    FeatureRow, Manifest, PseudonymNote, Pseudonyms, TimeRange, SCHEMA_VERSION,
};
use crate::domain::{AccountId, SubjectId, TenantId};
use crate::keys;
use crate::ports::{DashboardStore, MonthEvents, StoreError};

/// A run's claim on its month lasts the function's timeout (15 min) and a
/// minute: a holder that died is taken over after that.
pub const LEASE: Duration = Duration::from_secs(16 * 60);
/// A shard is not started with less than this left of the budget.
pub const SHARD_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no such tenant")]
    NoSuchTenant,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl ExportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ExportError::Store(e) => e.is_retryable(),
            ExportError::Crypto(_) => true,
            ExportError::NoSuchTenant => false,
        }
    }
}

/// What to export, and how long this invocation may work.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub tenant: TenantId,
    pub month: ExportMonth,
    /// The time the dataset is built at: what is live, which outcomes are known.
    pub now: OffsetDateTime,
    /// Replace a complete dataset (a run in progress is continued instead).
    pub rerun: bool,
    pub deadline: Instant,
    /// Stop (with a checkpoint) after this many shards: the CLI's progress steps.
    pub max_shards: Option<u32>,
    /// This invocation (the lease holder).
    pub holder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// The dataset is complete (this invocation finished it).
    Complete,
    /// A complete dataset was already there; nothing was done.
    AlreadyComplete,
    /// Stopped at the budget with a checkpoint: the next invocation continues.
    Incomplete,
    /// Another invocation holds the month.
    Busy,
    /// The tenant opted out: nothing is exported.
    OptedOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    pub tenant: String,
    pub month: String,
    pub status: ExportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub shards_done: u32,
    pub shards: u32,
    pub rows: BTreeMap<String, u64>,
    pub excluded: Excluded,
}

/// The use case, over the month's events (`EventTable` in AWS; the benchmark
/// also feeds it generated pages).
pub struct Exporter<E: MonthEvents = EventTable> {
    pub events: E,
    pub subjects: SubjectTable,
    pub directory: AggregateTable,
    pub runs: ExportRuns,
    pub tenants: TenantTable,
    pub bucket: DataBucket,
    pub kms: aws_sdk_kms::Client,
    pub pseudonym_key_id: String,
    pub code_version: String,
}

/// What a run reads once and every shard uses.
struct RunContext {
    tenant: TenantId,
    month: ExportMonth,
    now: OffsetDateTime,
    run_id: String,
    pseudonyms: Pseudonyms,
    left_out: HashMap<SubjectId, Exclusion>,
    /// Registered accounts: contract and the last day the quota was lowered.
    accounts: HashMap<AccountId, (AccountContract, Option<time::Date>)>,
}

fn new_run_id(now: OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:08x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        rand::random::<u32>()
    )
}

fn lease_until() -> i64 {
    (OffsetDateTime::now_utc() + LEASE).unix_timestamp()
}

fn rows_of(files: &[DatasetFile]) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::from([("events".to_owned(), 0), ("features".to_owned(), 0)]);
    for file in files {
        *rows.entry(file.table.clone()).or_default() += file.rows;
    }
    rows
}

impl<E: MonthEvents> Exporter<E> {
    /// Exports (or continues exporting) one tenant's month.
    pub async fn run(&self, request: &ExportRequest) -> Result<ExportReport, ExportError> {
        let tenant = &request.tenant;
        let label = request.month.label();
        let report = |status, run: Option<&ExportRun>| ExportReport {
            tenant: tenant.to_string(),
            month: label.clone(),
            status,
            run_id: run.map(|r| r.run_id.clone()),
            shards_done: run.map_or(0, |r| r.next_shard),
            shards: keys::MONTH_SHARDS,
            rows: run.map(|r| rows_of(&r.progress.files)).unwrap_or_default(),
            excluded: run.map(|r| r.progress.excluded.clone()).unwrap_or_default(),
        };
        match self.tenants.model_training_opt_out(tenant).await? {
            None => return Err(ExportError::NoSuchTenant),
            Some(true) => return Ok(report(ExportStatus::OptedOut, None)),
            Some(false) => {}
        }
        let wall = OffsetDateTime::now_utc();
        let existing = self.runs.get(tenant, &label).await?;
        let fresh = |replaces: Option<String>| ExportRun {
            run_id: new_run_id(wall),
            state: RunState::Running,
            next_shard: 0,
            holder: request.holder.clone(),
            lease_until: lease_until(),
            started_at: wall,
            progress: Progress {
                replaces,
                ..Progress::default()
            },
        };
        let mut run = match existing {
            None => {
                let run = fresh(None);
                if !self.runs.start(tenant, &label, &run, None, wall).await? {
                    return Ok(report(ExportStatus::Busy, None));
                }
                run
            }
            Some(done) if done.state == RunState::Complete => {
                if !request.rerun {
                    return Ok(report(ExportStatus::AlreadyComplete, Some(&done)));
                }
                let run = fresh(Some(done.run_id.clone()));
                if !self
                    .runs
                    .start(tenant, &label, &run, Some(&done.run_id), wall)
                    .await?
                {
                    return Ok(report(ExportStatus::Busy, Some(&done)));
                }
                run
            }
            Some(mut running) => {
                let until = lease_until();
                if running.lease_until >= wall.unix_timestamp()
                    || !self
                        .runs
                        .take_over(
                            tenant,
                            &label,
                            &running.run_id,
                            &request.holder,
                            until,
                            wall,
                        )
                        .await?
                {
                    return Ok(report(ExportStatus::Busy, Some(&running)));
                }
                running.holder = request.holder.clone();
                running.lease_until = until;
                running
            }
        };
        let outcome = self.continue_run(request, &mut run).await;
        match outcome {
            Ok(status) => Ok(report(status, Some(&run))),
            Err(e) => {
                // Hand the month back at once: the next invocation continues.
                if let Err(release) = self.runs.release(tenant, &label, &run).await {
                    tracing::warn!(error = %release, "export lease not released: it expires on its own");
                }
                Err(e)
            }
        }
    }

    async fn continue_run(
        &self,
        request: &ExportRequest,
        run: &mut ExportRun,
    ) -> Result<ExportStatus, ExportError> {
        let tenant = &request.tenant;
        let label = request.month.label();
        let context = self.context(request, &run.run_id).await?;
        let mut slowest = Duration::ZERO;
        let mut done = 0;
        while run.next_shard < keys::MONTH_SHARDS {
            let step_over = request.max_shards.is_some_and(|max| done >= max);
            if step_over || Instant::now() + slowest + SHARD_MARGIN > request.deadline {
                self.runs.release(tenant, &label, run).await?;
                return Ok(ExportStatus::Incomplete);
            }
            let started = Instant::now();
            let shard = run.next_shard;
            let (files, excluded) = self.export_shard(&context, shard).await?;
            run.progress
                .files
                .retain(|f| !files.iter().any(|n| n.key == f.key));
            run.progress.files.extend(files);
            run.progress.excluded.add(&excluded);
            run.lease_until = lease_until();
            if !self
                .runs
                .commit_shard(tenant, &label, run, shard, OffsetDateTime::now_utc())
                .await?
            {
                return Ok(ExportStatus::Busy);
            }
            run.next_shard += 1;
            done += 1;
            slowest = slowest.max(started.elapsed());
        }
        // Every shard is written: the manifest makes the dataset visible.
        let mut excluded = run.progress.excluded.clone();
        for reason in context.left_out.values() {
            *excluded.subjects.entry(*reason).or_default() += 1;
        }
        run.progress.excluded = excluded;
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            tenant: tenant.to_string(),
            month: label.clone(),
            run_id: run.run_id.clone(),
            code_version: self.code_version.clone(),
            time_range: TimeRange {
                from: rfc3339(request.month.start()),
                to: rfc3339(request.month.end()),
            },
            created_at: rfc3339(OffsetDateTime::now_utc()),
            files: run.progress.files.clone(),
            rows: rows_of(&run.progress.files),
            excluded: run.progress.excluded.clone(),
            pseudonyms: PseudonymNote::default(),
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.bucket
            .put(
                &keys::export_manifest_key(tenant, &label),
                "application/json",
                body,
            )
            .await?;
        if !self
            .runs
            .complete(tenant, &label, run, OffsetDateTime::now_utc())
            .await?
        {
            return Ok(ExportStatus::Busy);
        }
        run.state = RunState::Complete;
        if let Some(old) = &run.progress.replaces {
            // The replaced run's files: delete markers now, gone a day later.
            self.bucket
                .delete_current(&keys::export_run_prefix(tenant, &label, old))
                .await?;
        }
        Ok(ExportStatus::Complete)
    }

    /// The pseudonyms, who is left out, and the account directory.
    async fn context(
        &self,
        request: &ExportRequest,
        run_id: &str,
    ) -> Result<RunContext, ExportError> {
        let pseudonyms = derive_export_pseudonyms(
            &self.kms,
            &self.pseudonym_key_id,
            &request.tenant,
            request.month,
        )
        .await?;
        let left_out = self
            .subjects
            .non_default_states(&request.tenant)
            .await?
            .into_iter()
            .filter_map(|(subject, state)| Exclusion::of_subject(&state).map(|r| (subject, r)))
            .collect();
        let accounts = self
            .directory
            .accounts(&request.tenant)
            .await?
            .into_iter()
            .filter_map(|entry| {
                let lowered = entry.quota_lowered_on;
                entry.contract.map(|c| (entry.account, (c, lowered)))
            })
            .collect();
        Ok(RunContext {
            tenant: request.tenant.clone(),
            month: request.month,
            now: request.now,
            run_id: run_id.to_owned(),
            pseudonyms,
            left_out,
            accounts,
        })
    }

    /// One shard: its events file, then its accounts' features file.
    async fn export_shard(
        &self,
        context: &RunContext,
        shard: u32,
    ) -> Result<(Vec<DatasetFile>, Excluded), ExportError> {
        let label = context.month.label();
        let events_key =
            keys::export_file_key(&context.tenant, &label, &context.run_id, "events", shard);
        let mut file = ParquetObject::create(self.bucket.upload(&events_key), events_schema())?;
        let mut accounts: HashMap<AccountId, AccountMonth> = context
            .accounts
            .iter()
            .filter(|(account, (contract, _))| {
                keys::month_shard(account) == shard && in_relationship(contract, context.month)
            })
            .map(|(account, _)| (account.clone(), AccountMonth::default()))
            .collect();
        let mut excluded = Excluded::default();
        let streamed = self
            .stream_shard(context, shard, &mut file, &mut accounts, &mut excluded)
            .await;
        if let Err(e) = streamed {
            file.abort().await;
            return Err(e);
        }
        let (events, event_rows) = file.finish().await?;
        let mut features: Vec<FeatureRow> = accounts
            .iter()
            .map(|(account, month)| {
                let registered = context.accounts.get(account);
                month.features(
                    context.month,
                    context.pseudonyms.account(account),
                    registered.map(|(contract, _)| contract),
                    registered.and_then(|(_, lowered)| *lowered),
                    context.now,
                )
            })
            .collect();
        // By reference: the order says nothing about the accounts' ids.
        features.sort_by(|a, b| a.account_ref.cmp(&b.account_ref));
        let features_key =
            keys::export_file_key(&context.tenant, &label, &context.run_id, "features", shard);
        let mut file = ParquetObject::create(self.bucket.upload(&features_key), features_schema())?;
        for chunk in features.chunks(BATCH_ROWS) {
            if let Err(e) = file.write(&features_batch(chunk)?).await {
                file.abort().await;
                return Err(e.into());
            }
        }
        let (features_written, feature_rows) = file.finish().await?;
        let listed = |table: &str, written: crate::adapters::s3::WrittenObject, rows| DatasetFile {
            table: table.to_owned(),
            key: written.key,
            version_id: written.version_id,
            sha256: written.sha256,
            bytes: written.bytes,
            rows,
        };
        Ok((
            vec![
                listed("events", events, event_rows),
                listed("features", features_written, feature_rows),
            ],
            excluded,
        ))
    }

    /// Streams a shard's events page by page into the events file and the
    /// accounts' accumulators; left-out events only counted.
    async fn stream_shard(
        &self,
        context: &RunContext,
        shard: u32,
        file: &mut ParquetObject,
        accounts: &mut HashMap<AccountId, AccountMonth>,
        excluded: &mut Excluded,
    ) -> Result<(), ExportError> {
        let label = context.month.label();
        let mut rows: Vec<EventRow> = Vec::with_capacity(BATCH_ROWS);
        let mut cursor = None;
        loop {
            let (events, next) = self
                .events
                .month_page(&context.tenant, &label, shard, cursor, context.now)
                .await?;
            for event in &events {
                if let Some(reason) = Exclusion::of_event(event, &context.left_out) {
                    *excluded.events.entry(reason).or_default() += 1;
                    continue;
                }
                accounts
                    .entry(event.account.clone())
                    .or_default()
                    .add(event, context.month);
                rows.push(EventRow::of(event, &context.pseudonyms));
                if rows.len() == BATCH_ROWS {
                    file.write(&events_batch(&rows)?).await?;
                    rows.clear();
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if !rows.is_empty() {
            file.write(&events_batch(&rows)?).await?;
        }
        Ok(())
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}
