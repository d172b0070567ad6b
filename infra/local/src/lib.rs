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

/// A store on the stack's tenants and audit tables, straight to the emulator.
pub async fn access_store(
    stack: &Provisioned,
    emulator: &str,
) -> vigil_shared::adapters::dynamo::DynamoStore {
    use vigil_shared::adapters::dynamo::{DynamoStore, Tables};
    let sdk = emulator_config(emulator).await;
    let tables = Tables {
        tenants: stack.reference("TenantsTable").map(str::to_owned),
        audit: stack.reference("AuditTable").map(str::to_owned),
        ..Tables::default()
    };
    DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        tables,
        RetryPolicy::default(),
    )
}

/// Creates `tenant` if needed and issues it a key, as the operator CLI does; returns the secret.
pub async fn issue_local_key(
    store: &vigil_shared::adapters::dynamo::DynamoStore,
    tenant: &str,
    scopes: &[vigil_shared::domain::access::Scope],
    name: &str,
    expires_at: Option<time::OffsetDateTime>,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use vigil_shared::ports::AccessStore;
    let tenant = vigil_shared::domain::TenantId::parse(tenant)?;
    let now = time::OffsetDateTime::now_utc();
    store.create_tenant(&tenant, "local", now).await?;
    let issued = vigil_admin::issue_key(
        store,
        &tenant,
        "operator",
        "local-setup",
        (name.to_owned(), scopes.to_vec(), expires_at),
        now,
    )
    .await?;
    Ok(issued.secret)
}
