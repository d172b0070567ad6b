//! `vigil-ops`, the operator CLI: create, suspend and resume tenants and set
//! their raw-event retention, issue, list and revoke keys, verify a tenant's
//! audit chain. It uses the same SDK configuration as the functions: AWS's
//! usual credential chain, or the local stack with `--local`.
//!
//! Every command that touches a tenant is on that tenant's audit trail, with
//! the caller's identity: `operator:<unique id>`, the AWS principal's unique
//! id from STS (`AIDA…` for a user, `AROA…` for a role), which the operator's
//! account resolves with IAM and CloudTrail and a tenant reading its trail
//! cannot (no names, no account id).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::purge::PurgeTables;
use vigil_shared::adapters::dynamo::{
    AuditTable, Dynamo, PrivacyTable, RightsTables, SubjectTable, TenantTable,
};
use vigil_shared::adapters::kms::ContactKeys;
use vigil_shared::adapters::s3::{AnchorBucket, DataBucket};
use vigil_shared::app::audit::{audit_read, draft, verify_trail};
use vigil_shared::app::keys::{issue_key, revoke_key, KeyRequest, KeyView};
use vigil_shared::app::privacy::{Actor, Rights};
use vigil_shared::app::purge::Purger;
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::audit::VerifyMode;
use vigil_shared::domain::{RawEventRetention, TenantId};
use vigil_shared::ports::{AccessStore, AuditLog, Revocation, StoreError};
use vigil_shared::stack_state::{read_event, StackState, StateError};

/// How the audit trail names CLI actions: `operator:<unique id>`.
pub const OPERATOR: &str = "operator";

#[derive(Debug, Parser)]
#[command(
    name = "vigil-ops",
    about = "Operate vigil: tenants, API keys, audit trail"
)]
pub struct Cli {
    /// Use the local stack (infra/run) instead of AWS.
    #[arg(long)]
    pub local: bool,
    /// The local stack's state file, written by infra/run.
    #[arg(long, default_value = ".local/stack.json")]
    pub state_file: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Data subjects: the lookup secret's rotation, the restore drill.
    Subjects {
        #[command(subcommand)]
        action: SubjectsAction,
    },
    /// Retention: what is due for deletion, and the destruction records.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Scheduled jobs (alert evaluation, export, purge): run one now.
    Job {
        #[command(subcommand)]
        action: JobAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobAction {
    /// Invokes a function of the local stack with an event (`--local` only;
    /// on AWS: `aws lambda invoke --function-name <stack>-<name>`).
    Invoke {
        /// The function's logical id in template.yaml.
        function: String,
        /// A JSON file holding the event ("-": standard input; default {}).
        #[arg(long)]
        event: Option<PathBuf>,
    },
    /// Exports (backfills, or with --rerun replaces) one tenant's month of the
    /// re-training dataset, a shard per invocation, with a progress bar
    /// (`--local` only; on AWS: `aws lambda invoke --function-name <stack>-export`
    /// with the same payload until its status is `complete`).
    Export {
        #[arg(long)]
        tenant: String,
        /// yyyy-mm (default: last month).
        #[arg(long)]
        month: Option<String>,
        /// Replace a complete dataset.
        #[arg(long)]
        rerun: bool,
    },
    /// Runs the retention purge now, a few pages per invocation, with a
    /// progress line, until nothing due is left (`--local` only; on AWS:
    /// `aws lambda invoke --function-name <stack>-purge`). With --dry-run,
    /// prints what one run would delete and deletes nothing.
    Purge {
        /// One tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Report what would be deleted; delete nothing, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time to purge as of (RFC 3339; default: now).
        #[arg(long)]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Lists what the purge will delete in the next days (30 by default):
    /// accounts 3 years past their relationship's end, tenants 3 years past
    /// their contract's end. Raw events, datasets and bundles expire daily by
    /// their own age and are not listed.
    Due {
        /// One tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Prints a tenant's destruction records (the purge's proof), oldest first.
    Records {
        #[arg(long)]
        tenant: String,
        /// The record id to continue after.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubjectsAction {
    /// Counts a tenant's subject records per lookup-secret version: a rotation
    /// is over (SubjectLookupPreviousVersion can be cleared) when only the
    /// current version is left.
    LookupVersions {
        #[arg(long)]
        tenant: String,
    },
    /// The restore drill: after restoring a table from a backup, erases again
    /// every subject whose suppression marker predates the restored record.
    ReapplyErasures {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Creates a tenant.
    Create {
        tenant: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Suspends a tenant: every one of its keys is refused (within 30 s, the
    /// authorizer's cache) until it is resumed. Nothing is deleted.
    Suspend { tenant: String },
    /// Resumes a suspended tenant.
    Resume { tenant: String },
    /// Sets how long the tenant's raw events are kept: 62 to 395 days (the
    /// default). New events follow within 5 minutes; the purge job applies it
    /// to stored ones.
    Retention {
        tenant: String,
        #[arg(long)]
        raw_event_days: i64,
    },
    /// Sets the last day of the tenant's contract with vigil (yyyy-mm-dd):
    /// everything of the tenant is purged 3 years after it. --reopen clears it.
    End {
        tenant: String,
        #[arg(long, conflicts_with = "reopen", required_unless_present = "reopen")]
        on: Option<String>,
        #[arg(long)]
        reopen: bool,
    },
    /// Opts the tenant out of the monthly re-training export (nothing of it is
    /// exported from the next run on), or back in with --opt-in.
    ModelTraining {
        tenant: String,
        #[arg(long, conflicts_with = "opt_in", required_unless_present = "opt_in")]
        opt_out: bool,
        #[arg(long)]
        opt_in: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Issues a key and prints it once.
    Issue {
        #[arg(long)]
        tenant: String,
        /// Comma-separated: ingest, read, privacy, admin.
        #[arg(long)]
        scopes: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Default 90 (admin keys 30), at most 365 (admin keys 90).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// Lists a tenant's keys (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revokes a key.
    Revoke {
        #[arg(long)]
        tenant: String,
        key_id: String,
        /// Also revoke the keys it issued, and those they issued.
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verifies a tenant's hash chain against its anchors, from the last
    /// verified anchor; exits 1 if it is broken.
    Verify {
        #[arg(long)]
        tenant: String,
        /// Every live entry against every anchor, not only what is new.
        #[arg(long)]
        full: bool,
    },
}

#[derive(Debug, Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the audit chain is broken")]
    BrokenChain,
    #[error("cannot tell who is calling (STS GetCallerIdentity): {0}")]
    Identity(String),
    #[error("{0} failed")]
    JobFailed(String),
    #[error("job invoke runs a function of the local stack: add --local (on AWS: aws lambda invoke --function-name <stack>-<name>)")]
    NotLocal,
}

/// Config from the environment, or from infra/run's state file with `--local`.
pub fn load_config(local: Option<&PathBuf>) -> Result<Config, OpsError> {
    match local {
        None => Ok(Config::from_env()),
        Some(path) => Ok(StackState::read(path)?.config()),
    }
}

/// What the CLI works on: tenants and keys, the audit trail and its anchors,
/// and who is calling.
pub struct Tables {
    pub keys: TenantTable,
    pub audit: AuditTable,
    /// Needed by `audit verify` only: the other commands run without it.
    pub anchors: Result<AnchorBucket, ConfigError>,
    /// `operator:<unique id>`, as the audit trail names this caller.
    pub operator: String,
    /// For the commands that need more (subjects).
    pub config: Config,
}

pub async fn connect(config: &Config) -> Result<Tables, OpsError> {
    let (db, sdk) = Dynamo::connect(config).await;
    let identity = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| OpsError::Identity(aws_sdk_sts::error::DisplayErrorContext(e).to_string()))?;
    Ok(Tables {
        keys: TenantTable::new(&db, config)?,
        audit: AuditTable::new(&db, config)?,
        anchors: AnchorBucket::new(&sdk, config),
        operator: operator_actor(identity.user_id().unwrap_or_default()),
        config: config.clone(),
    })
}

/// `operator:<unique id>`: the principal's unique id without the session name
/// (which may be a person's e-mail address).
pub fn operator_actor(user_id: &str) -> String {
    let unique = user_id.split(':').next().unwrap_or_default();
    if unique.is_empty() {
        format!("{OPERATOR}:unknown")
    } else {
        format!("{OPERATOR}:{unique}")
    }
}

fn tenant_id(value: &str) -> Result<TenantId, OpsError> {
    TenantId::parse(value).map_err(|e| OpsError::Invalid(format!("tenant: {}", e.reason)))
}

fn request_id() -> String {
    format!("ops-{:016x}", rand_id())
}

fn rand_id() -> u64 {
    // Nanoseconds are unique enough for a CLI invocation's request id.
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() % i128::from(u64::MAX))
        .unwrap_or(0)
}

/// Runs a job command: with `--local`, through the local stack's Invoke API.
pub async fn run_job(
    action: JobAction,
    local: Option<&PathBuf>,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let (function, event) = match action {
        JobAction::Invoke { function, event } => (function, event),
        JobAction::Export {
            tenant,
            month,
            rerun,
        } => {
            let state = StackState::read(local.ok_or(OpsError::NotLocal)?)?;
            return export_with_progress(&state, &tenant, month, rerun, out).await;
        }
        JobAction::Purge {
            tenant,
            dry_run,
            now,
        } => {
            let state = StackState::read(local.ok_or(OpsError::NotLocal)?)?;
            return purge_with_progress(&state, tenant, dry_run, now, out).await;
        }
    };
    let state = StackState::read(local.ok_or(OpsError::NotLocal)?)?;
    let event = read_event(event.as_deref()).map_err(OpsError::Invalid)?;
    let invocation = state.invoke(&function, &event).await?;
    writeln!(out, "{}", invocation.output)?;
    if invocation.succeeded() {
        Ok(())
    } else {
        Err(OpsError::JobFailed(function))
    }
}

/// Invokes the export a shard at a time until the month is complete, drawing
/// a progress bar on standard error; prints the last report.
async fn export_with_progress(
    state: &StackState,
    tenant: &str,
    month: Option<String>,
    rerun: bool,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let mut event = serde_json::json!({"tenant": tenant, "max_shards": 1, "rerun": rerun});
    if let Some(month) = month {
        event["month"] = month.into();
    }
    loop {
        let invocation = state.invoke("ExportFunction", &event).await?;
        if !invocation.succeeded() {
            writeln!(out, "{}", invocation.output)?;
            return Err(OpsError::JobFailed("ExportFunction".into()));
        }
        let output: serde_json::Value =
            serde_json::from_str(&invocation.output).unwrap_or_default();
        let report = &output["tenants"][0];
        let (done, total) = (
            report["shards_done"].as_u64().unwrap_or(0),
            report["shards"].as_u64().unwrap_or(16).max(1),
        );
        let width = 32;
        let filled = (done * width / total) as usize;
        eprint!(
            "\rexport {tenant} [{}{}] {done}/{total} shards",
            "#".repeat(filled),
            "-".repeat(width as usize - filled)
        );
        match report["status"].as_str() {
            Some("incomplete") => {
                // The next invocation continues the same run: no re-run.
                event["rerun"] = false.into();
            }
            Some("busy") => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
            _ => {
                eprintln!();
                writeln!(out, "{}", invocation.output)?;
                return Ok(());
            }
        }
    }
}

/// Pages of purge work per invocation of the CLI's purge: a progress step.
pub const PURGE_STEP_PAGES: u32 = 20;

/// Invokes the purge until a run reports `complete`, counting what it deleted
/// on standard error; prints every record. A dry run is one invocation (it
/// changes nothing, so a second would see the same).
async fn purge_with_progress(
    state: &StackState,
    tenant: Option<String>,
    dry_run: bool,
    now: Option<String>,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let mut event = serde_json::json!({"dry_run": dry_run});
    if let Some(tenant) = tenant {
        event["tenant"] = tenant.into();
    }
    if let Some(now) = now {
        event["now"] = now.into();
    }
    if !dry_run {
        event["max_pages"] = PURGE_STEP_PAGES.into();
    }
    let (mut items, mut versions, mut runs) = (0, 0, 0);
    let mut records = Vec::new();
    loop {
        let invocation = state.invoke("PurgeFunction", &event).await?;
        if !invocation.succeeded() {
            writeln!(out, "{}", invocation.output)?;
            return Err(OpsError::JobFailed("PurgeFunction".into()));
        }
        let output: serde_json::Value =
            serde_json::from_str(&invocation.output).unwrap_or_default();
        runs += 1;
        for tenant in output["tenants"].as_array().into_iter().flatten() {
            for record in tenant["records"].as_array().into_iter().flatten() {
                let counts = &record["counts"];
                items += counts["items"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>());
                versions += counts["versions"].as_u64().unwrap_or(0);
                records.push(record.clone());
            }
        }
        let busy = output["tenants"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["busy"] == true));
        if busy {
            // Another run (the schedule) holds a tenant: wait for it.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        eprint!("\rpurge: {runs} invocations, {verb} {items} items and {versions} object versions");
        if dry_run || output["complete"] == true {
            eprintln!();
            let summary = serde_json::json!({"dry_run": dry_run, "records": records});
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            )?;
            return Ok(());
        }
    }
}

/// The retention commands: what is due, and the proof of what was deleted.
async fn retention(
    action: RetentionAction,
    tables: &Tables,
    out: &mut impl Write,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    let operator = tables.operator.as_str();
    match action {
        RetentionAction::Due { tenant, days } => {
            if !(1..=366).contains(&days) {
                return Err(OpsError::Invalid("days: expected 1 to 366".into()));
            }
            let (db, sdk) = Dynamo::connect(&tables.config).await;
            let purger = Purger {
                tables: PurgeTables::new(&db, &tables.config)?,
                bucket: DataBucket::new(&sdk, &tables.config)?,
                audit: tables.audit.clone(),
            };
            let tenants = match tenant {
                Some(tenant) => vec![tenant_id(&tenant)?],
                None => tables.keys.tenants().await?,
            };
            let mut due = Vec::new();
            for tenant in &tenants {
                due.extend(purger.due(tenant, now, time::Duration::days(days)).await?);
            }
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&due).unwrap_or_default()
            )?;
        }
        RetentionAction::Records {
            tenant,
            after,
            limit,
        } => {
            let tenant = tenant_id(&tenant)?;
            if !(1..=1000).contains(&limit) {
                return Err(OpsError::Invalid("limit: expected 1 to 1000".into()));
            }
            let audit = &tables.audit;
            let request = request_id();
            audit_read(
                audit,
                &tenant,
                operator,
                "retention.records.read",
                &request,
                now,
            )
            .await?;
            let records = audit
                .destruction_records(&tenant, after.as_deref(), limit, now)
                .await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&records).unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// The subjects commands: they work on the stored records, never on user ids.
async fn subjects(
    action: SubjectsAction,
    tables: &Tables,
    out: &mut impl Write,
    now: OffsetDateTime,
) -> Result<(), OpsError> {
    let (db, sdk) = Dynamo::connect(&tables.config).await;
    let subjects = SubjectTable::new(&db, &tables.config)?;
    match action {
        SubjectsAction::LookupVersions { tenant } => {
            let tenant = tenant_id(&tenant)?;
            let request = request_id();
            let counts = subjects.versions(&tenant).await?;
            let entry = draft(
                &tables.operator,
                "subjects.lookup_versions",
                None,
                &request,
                "ok",
            );
            tables.audit.append(&tenant, entry, now).await?;
            let counts: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .map(|(version, count)| (format!("v{version}"), count.into()))
                .collect();
            writeln!(out, "{}", serde_json::Value::Object(counts))?;
        }
        SubjectsAction::ReapplyErasures { tenant } => {
            let tenant = tenant_id(&tenant)?;
            let rights = Rights {
                subjects,
                requests: PrivacyTable::new(&db, &tables.config)?,
                effects: RightsTables::new(&db, &tables.config)?,
                bucket: DataBucket::new(&sdk, &tables.config)?,
                contact_keys: ContactKeys::new(
                    aws_sdk_kms::Client::new(&sdk),
                    tables.config.get(Setting::ContactKeyId).unwrap_or_default(),
                ),
                audit: tables.audit.clone(),
                lookup: None,
            };
            let request = request_id();
            let actor = Actor {
                tenant: &tenant,
                key_id: &tables.operator,
                request_id: &request,
            };
            // No deadline that matters to a person at a terminal: an hour.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            let erased = rights
                .reapply_erasures(&actor, deadline, now)
                .await
                .map_err(|e| {
                    OpsError::Invalid(format!("{e} ({})", e.detail().unwrap_or_default()))
                })?;
            writeln!(out, "{{\"erased_again\": {erased}}}")?;
        }
    }
    Ok(())
}

/// Runs one command against the tables, writing what it prints to `out`.
pub async fn run(command: Command, tables: &Tables, out: &mut impl Write) -> Result<(), OpsError> {
    let (store, audit) = (&tables.keys, &tables.audit);
    let operator = tables.operator.as_str();
    let now = OffsetDateTime::now_utc();
    match command {
        Command::Tenant {
            action: TenantAction::Create { tenant, name },
        } => {
            let tenant = tenant_id(&tenant)?;
            let created = store.create_tenant(&tenant, &name, now).await?;
            let outcome = if created { "ok" } else { "exists" };
            let entry = draft(operator, "tenant.create", None, &request_id(), outcome);
            audit.append(&tenant, entry, now).await?;
            writeln!(
                out,
                "{}",
                if created {
                    format!("tenant {tenant} created")
                } else {
                    format!("tenant {tenant} already exists")
                }
            )?;
        }
        Command::Tenant {
            action: action @ (TenantAction::Suspend { .. } | TenantAction::Resume { .. }),
        } => {
            let (tenant, suspend) = match &action {
                TenantAction::Suspend { tenant } => (tenant_id(tenant)?, true),
                TenantAction::Resume { tenant } => (tenant_id(tenant)?, false),
                _ => unreachable!("matched above"),
            };
            let updated = store.set_suspended(&tenant, suspend, now).await?;
            let verb = if suspend {
                "tenant.suspend"
            } else {
                "tenant.resume"
            };
            let outcome = if updated { "ok" } else { "not_found" };
            audit
                .append(
                    &tenant,
                    draft(operator, verb, None, &request_id(), outcome),
                    now,
                )
                .await?;
            if !updated {
                return Err(OpsError::Invalid(format!("tenant {tenant} does not exist")));
            }
            let state = if suspend {
                "suspended: its keys are refused within 30 s"
            } else {
                "resumed"
            };
            writeln!(out, "tenant {tenant} {state}")?;
        }
        Command::Tenant {
            action:
                TenantAction::Retention {
                    tenant,
                    raw_event_days,
                },
        } => {
            let tenant = tenant_id(&tenant)?;
            let retention = RawEventRetention::days(raw_event_days).ok_or_else(|| {
                OpsError::Invalid(format!(
                    "raw-event-days: expected {} to {} days",
                    RawEventRetention::MIN_DAYS,
                    RawEventRetention::DEFAULT_DAYS
                ))
            })?;
            let request = request_id();
            let updated = store
                .set_raw_event_retention(&tenant, retention, now)
                .await?;
            let outcome = if updated { "ok" } else { "not_found" };
            let entry = draft(operator, "tenant.retention", None, &request, outcome);
            audit.append(&tenant, entry, now).await?;
            if !updated {
                return Err(OpsError::Invalid(format!(
                    "tenant {tenant} does not exist: create it first"
                )));
            }
            writeln!(
                out,
                "tenant {tenant}: raw events kept {} days",
                retention.as_days()
            )?;
        }
        Command::Tenant {
            action: TenantAction::ModelTraining {
                tenant, opt_out, ..
            },
        } => {
            let tenant = tenant_id(&tenant)?;
            let request = request_id();
            let updated = store
                .set_model_training_opt_out(&tenant, opt_out, now)
                .await?;
            let outcome = if updated { "ok" } else { "not_found" };
            let entry = draft(operator, "tenant.model_training", None, &request, outcome);
            audit.append(&tenant, entry, now).await?;
            if !updated {
                return Err(OpsError::Invalid(format!(
                    "tenant {tenant} does not exist: create it first"
                )));
            }
            let state = if opt_out {
                "opted out of"
            } else {
                "included in"
            };
            writeln!(out, "tenant {tenant}: {state} the re-training export")?;
        }
        Command::Key {
            action:
                KeyAction::Issue {
                    tenant,
                    scopes,
                    name,
                    expires_in_days,
                },
        } => {
            let tenant = tenant_id(&tenant)?;
            if !store.tenant_exists(&tenant).await? {
                return Err(OpsError::Invalid(format!(
                    "tenant {tenant} does not exist: create it first"
                )));
            }
            let request = KeyRequest {
                name,
                scopes: scopes.split(',').map(|s| s.trim().to_owned()).collect(),
                expires_in_days,
            };
            let spec = request
                .validate(now)
                .map_err(|e| OpsError::Invalid(e.to_string()))?;
            let issued =
                issue_key(store, audit, &tenant, operator, &request_id(), spec, now).await?;
            writeln!(out, "key id: {}", issued.record.key_id)?;
            writeln!(out, "key:    {}", issued.secret)?;
            writeln!(out, "(shown once: store it now)")?;
        }
        Command::Key {
            action: KeyAction::List { tenant },
        } => {
            let tenant = tenant_id(&tenant)?;
            audit_read(audit, &tenant, operator, "key.list", &request_id(), now).await?;
            let keys: Vec<KeyView> = store
                .list_keys(&tenant)
                .await?
                .iter()
                .map(|r| KeyView::of(r, now))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&keys).unwrap_or_default()
            )?;
        }
        Command::Key {
            action:
                KeyAction::Revoke {
                    tenant,
                    key_id,
                    cascade,
                },
        } => {
            let tenant = tenant_id(&tenant)?;
            let (outcome, also) = revoke_key(
                store,
                audit,
                &tenant,
                operator,
                &request_id(),
                &key_id,
                cascade,
                now,
            )
            .await?;
            match outcome {
                Revocation::Revoked => writeln!(out, "key {key_id} revoked")?,
                Revocation::AlreadyRevoked => writeln!(out, "key {key_id} was already revoked")?,
                Revocation::NotFound => {
                    return Err(OpsError::Invalid(format!(
                        "no key {key_id} for tenant {tenant}"
                    )))
                }
            }
            for other in also {
                writeln!(out, "key {other} revoked (issued by {key_id} or its keys)")?;
            }
        }
        Command::Audit {
            action: AuditAction::Verify { tenant, full },
        } => {
            let tenant = tenant_id(&tenant)?;
            let mode = if full {
                VerifyMode::Full
            } else {
                VerifyMode::Incremental
            };
            let anchors = tables
                .anchors
                .as_ref()
                .map_err(|e| OpsError::Config(e.clone()))?;
            let report =
                verify_trail(audit, anchors, &tenant, operator, &request_id(), mode, now).await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            )?;
            if !report.intact {
                return Err(OpsError::BrokenChain);
            }
        }
        Command::Subjects { action } => {
            subjects(action, tables, out, now).await?;
        }
        Command::Retention { action } => {
            retention(action, tables, out, now).await?;
        }
        Command::Tenant {
            action: TenantAction::End { tenant, on, .. },
        } => {
            let tenant = tenant_id(&tenant)?;
            let last_day = match on.as_deref() {
                Some(day) => {
                    Some(vigil_shared::domain::rollup::parse_day(day).ok_or_else(|| {
                        OpsError::Invalid("on: expected a date (yyyy-mm-dd)".into())
                    })?)
                }
                None => None,
            };
            let request = request_id();
            let updated = store.set_contract_end(&tenant, last_day, now).await?;
            let outcome = if updated { "ok" } else { "not_found" };
            let entry = draft(operator, "tenant.contract_end", None, &request, outcome);
            audit.append(&tenant, entry, now).await?;
            if !updated {
                return Err(OpsError::Invalid(format!("tenant {tenant} does not exist")));
            }
            match last_day {
                Some(day) => writeln!(
                    out,
                    "tenant {tenant}: contract ends {}; everything of it is purged from {}",
                    vigil_shared::domain::rollup::day_label(day),
                    vigil_shared::domain::retention::after_last_day(day)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                )?,
                None => writeln!(out, "tenant {tenant}: contract reopened; no purge due")?,
            }
        }
        Command::Job { action } => {
            // Needs no tables: main() routes it to run_job.
            return Err(OpsError::Invalid(format!("{action:?}: use run_job")));
        }
    }
    Ok(())
}
