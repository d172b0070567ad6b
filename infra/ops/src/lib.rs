//! `vigil-ops`, the operator CLI: create tenants, issue, list and revoke keys,
//! verify a tenant's audit chain. It uses the same SDK configuration as the
//! functions: AWS's usual credential chain, or the local stack with `--local`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use thiserror::Error;
use time::OffsetDateTime;
use vigil_admin::{issue_key, revoke_key, verify_trail, KeyRequest, KeyView};
use vigil_shared::adapters::dynamo::DynamoStore;
use vigil_shared::config::{Config, ConfigError, Setting};
use vigil_shared::domain::TenantId;
use vigil_shared::ports::{AccessStore, Revocation, StoreError};

/// Who the audit trail names for CLI actions.
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
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Creates a tenant.
    Create {
        tenant: String,
        #[arg(long, default_value = "")]
        name: String,
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
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verifies a tenant's hash chain; exits 1 if it is broken.
    Verify {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the local stack state {path}: {detail}")]
    State { path: String, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the audit chain is broken")]
    BrokenChain,
}

/// Config from the environment, or from infra/run's state file with `--local`.
pub fn load_config(local: Option<&PathBuf>) -> Result<Config, OpsError> {
    let Some(path) = local else {
        return Ok(Config::from_env());
    };
    let state_error = |detail: String| OpsError::State {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| state_error(e.to_string()))?;
    let state: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| state_error(e.to_string()))?;
    let resource = |id: &str| state["resources"][id].as_str().map(str::to_owned);
    let vars: HashMap<&str, Option<String>> = HashMap::from([
        (Setting::TenantsTable.env_name(), resource("TenantsTable")),
        (Setting::AuditTable.env_name(), resource("AuditTable")),
        (
            "AWS_ENDPOINT_URL",
            state["emulator"].as_str().map(str::to_owned),
        ),
        ("AWS_REGION", state["region"].as_str().map(str::to_owned)),
    ]);
    Ok(Config::from_lookup(|name| {
        vars.get(name).cloned().flatten()
    }))
}

pub async fn connect(config: &Config) -> Result<DynamoStore, OpsError> {
    let (store, _) =
        DynamoStore::from_config(config, &[Setting::TenantsTable, Setting::AuditTable]).await?;
    Ok(store)
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

/// Runs one command against `store`, writing what it prints to `out`.
pub async fn run(
    command: Command,
    store: &DynamoStore,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let now = OffsetDateTime::now_utc();
    match command {
        Command::Tenant {
            action: TenantAction::Create { tenant, name },
        } => {
            let tenant = tenant_id(&tenant)?;
            let created = store.create_tenant(&tenant, &name, now).await?;
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
            let spec = request.validate(now).map_err(OpsError::Invalid)?;
            let issued = issue_key(store, &tenant, OPERATOR, &request_id(), spec, now).await?;
            writeln!(out, "key id: {}", issued.record.key_id)?;
            writeln!(out, "key:    {}", issued.secret)?;
            writeln!(out, "(shown once: store it now)")?;
        }
        Command::Key {
            action: KeyAction::List { tenant },
        } => {
            let tenant = tenant_id(&tenant)?;
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
            action: KeyAction::Revoke { tenant, key_id },
        } => {
            let tenant = tenant_id(&tenant)?;
            match revoke_key(store, &tenant, OPERATOR, &request_id(), &key_id, now).await? {
                Revocation::Revoked => writeln!(out, "key {key_id} revoked")?,
                Revocation::AlreadyRevoked => writeln!(out, "key {key_id} was already revoked")?,
                Revocation::NotFound => {
                    return Err(OpsError::Invalid(format!(
                        "no key {key_id} for tenant {tenant}"
                    )))
                }
            }
        }
        Command::Audit {
            action: AuditAction::Verify { tenant },
        } => {
            let tenant = tenant_id(&tenant)?;
            let report = verify_trail(store, &tenant, OPERATOR, &request_id(), now).await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            )?;
            if !report.intact {
                return Err(OpsError::BrokenChain);
            }
        }
    }
    Ok(())
}
