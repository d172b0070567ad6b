//! The local stack: creates the resources template.yaml declares in the emulator
//! (moto server) and serves the template's routes with the real handlers.

pub mod provision;
pub mod server;
pub mod template;

use std::path::Path;

use aws_config::SdkConfig;
use thiserror::Error;
use vigil_shared::aws::sdk_config;
use vigil_shared::retry::RetryPolicy;

pub use provision::{provision, Provisioned};
pub use server::{start, LocalApi, RunningServer};
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
