//! Audit-trail use cases: record what an actor did, verify a tenant's chain.

use time::OffsetDateTime;

use crate::domain::audit::{verify_chain, AuditDraft, AuditEntry, ChainReport};
use crate::domain::TenantId;
use crate::ports::{AuditLog, StoreError};

/// Who did what to which target, in which request, with which outcome.
pub fn draft(
    actor: &str,
    action: &str,
    target: Option<&str>,
    request_id: &str,
    outcome: &str,
) -> AuditDraft {
    AuditDraft {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        request_id: request_id.to_owned(),
        outcome: outcome.to_owned(),
    }
}

/// Audits a read before it happens: no data leaves without its entry.
pub async fn audit_read<A: AuditLog>(
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    action: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<AuditEntry, StoreError> {
    audit
        .append(tenant, draft(actor, action, None, request_id, "ok"), now)
        .await
}

/// Verifies the tenant's whole chain, then audits that it was verified.
pub async fn verify_trail<A: AuditLog>(
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<ChainReport, StoreError> {
    let entries = audit.entries(tenant, None, None).await?;
    let report = verify_chain(tenant, &entries, now);
    let outcome = if report.intact { "intact" } else { "broken" };
    audit
        .append(
            tenant,
            draft(actor, "audit.verify", None, request_id, outcome),
            now,
        )
        .await?;
    Ok(report)
}
