//! The local stack: creates the resources template.yaml declares in the emulator
//! (moto server), hosts the template's functions with their real handlers,
//! serves their routes, invokes them on demand and fires their schedules.
//!
//! - `template`: reads template.yaml and resolves its intrinsics.
//! - `provision`: creates keys, tables and buckets; reads functions, routes, schedules.
//! - `functions`: the registry of hostable functions (one line per function).
//! - `server`: the local API Gateway (routes, authorizer) and Lambda Invoke.
//! - `schedule`: timers for `rate(...)` schedules.

pub mod contract;
pub mod functions;
pub mod provision;
pub mod schedule;
pub mod server;
pub mod template;

use std::path::Path;

use aws_config::SdkConfig;
use thiserror::Error;
use vigil_shared::adapters::dynamo::{AuditTable, Dynamo, TenantTable};
use vigil_shared::app::keys::{bootstrap_key, KeySpec};
use vigil_shared::aws::sdk_config;
use vigil_shared::config::{Config, Setting};
use vigil_shared::domain::TenantId;
use vigil_shared::retry::RetryPolicy;

pub use functions::{InvokeError, Registry};
pub use provision::{provision, Provisioned};
pub use server::{bind, serve, start, LocalApi, RunningServer};
pub use template::Template;

/// The region the local stack uses.
pub const LOCAL_REGION: &str = "eu-west-3";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Provision(#[from] provision::ProvisionError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// SDK configuration for the emulator at `endpoint`.
pub async fn emulator_config(endpoint: &str) -> SdkConfig {
    sdk_config(Some(endpoint), Some(LOCAL_REGION), RetryPolicy::default()).await
}

/// Reads the template and creates its resources under `stack_name`.
pub async fn provision_from(
    template_path: &Path,
    emulator: &str,
    stack_name: &str,
) -> Result<Provisioned, LocalError> {
    let template = Template::load(template_path)?;
    let sdk = emulator_config(emulator).await;
    Ok(provision(&template, &sdk, stack_name).await?)
}

/// The repository's template.yaml, found from this crate's directory.
pub fn repo_template() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

impl Provisioned {
    /// Every setting, pointing at this stack's resources in `emulator`.
    pub fn config(&self, emulator: &str) -> Config {
        Config::from_lookup(|name| match name {
            "AWS_ENDPOINT_URL" => Some(emulator.to_owned()),
            "AWS_REGION" => Some(self.region.clone()),
            _ => Setting::ALL
                .into_iter()
                .find(|setting| setting.env_name() == name)
                .and_then(|setting| self.reference(setting.resource()))
                .map(str::to_owned),
        })
    }
}

/// Creates `tenant` if needed and issues it a key straight in the stack's tables,
/// as the operator CLI does; returns the secret.
pub async fn issue_key(
    config: &Config,
    tenant: &str,
    spec: KeySpec,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (db, _) = Dynamo::connect(config).await;
    let (keys, audit) = (
        TenantTable::new(&db, config)?,
        AuditTable::new(&db, config)?,
    );
    let now = time::OffsetDateTime::now_utc();
    let issued = bootstrap_key(
        &keys,
        &audit,
        &TenantId::parse(tenant)?,
        spec,
        "local-setup",
        now,
    )
    .await?;
    Ok(issued.secret)
}
