//! What every scheduled job reads from its input the same way: the time it
//! runs as of (`now`, RFC 3339; default the clock) and the tenants it visits
//! (one named, or every tenant). Each job maps the errors to its own type.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::adapters::dynamo::TenantTable;
use crate::domain::TenantId;
use crate::ports::StoreError;

/// `now` is not an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("now: expected an RFC 3339 time")]
pub struct BadNow;

#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// Why the tenant id is not one (never the value sent).
    #[error("tenant: {0}")]
    BadTenant(&'static str),
    #[error("cannot list the tenants: {0}")]
    List(StoreError),
}

/// The job's `now`: the input's, or the clock's.
pub fn job_now(
    text: Option<&str>,
    clock: fn() -> OffsetDateTime,
) -> Result<OffsetDateTime, BadNow> {
    match text {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).map_err(|_| BadNow),
        None => Ok(clock()),
    }
}

/// The tenant named, or every tenant.
pub async fn job_tenants(
    tenants: &TenantTable,
    one: Option<&str>,
) -> Result<Vec<TenantId>, TenantsError> {
    match one {
        Some(tenant) => Ok(vec![
            TenantId::parse(tenant).map_err(|e| TenantsError::BadTenant(e.reason))?
        ]),
        None => tenants.tenants().await.map_err(TenantsError::List),
    }
}
