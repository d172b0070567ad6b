//! Audit-trail use cases: record what an actor did, anchor a tenant's chain
//! head, verify the chain against its anchors.

use time::OffsetDateTime;

use crate::domain::audit::{
    verify_anchored, Anchor, AuditDraft, AuditEntry, ChainReport, VerifyMode,
};
use crate::domain::TenantId;
use crate::ports::{AnchorStore, AuditLog, StoreError};

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

/// Verifies the tenant's chain against its anchors, then audits that it was
/// verified. Incremental: from the last anchor an earlier verification proved,
/// so the cost follows what was appended since; `Full` reads every live entry.
pub async fn verify_trail<A: AuditLog, S: AnchorStore>(
    audit: &A,
    anchors: &S,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    mode: VerifyMode,
    now: OffsetDateTime,
) -> Result<ChainReport, StoreError> {
    let checkpoint = match mode {
        VerifyMode::Incremental => audit.checkpoint(tenant).await?,
        VerifyMode::Full => None,
    };
    let listed = anchors
        .anchors_from(tenant, checkpoint.unwrap_or(0))
        .await?;
    // The anchor read back from the bucket, never the checkpoint's word for it.
    let start = checkpoint.and_then(|seq| listed.iter().find(|a| a.seq == seq).cloned());
    let entries = audit
        .entries(tenant, start.as_ref().map(|a| a.seq - 1), None)
        .await?;
    let report = verify_anchored(tenant, &entries, start.as_ref(), &listed, mode, now);
    let outcome = if report.intact { "intact" } else { "broken" };
    audit
        .append(
            tenant,
            draft(actor, "audit.verify", None, request_id, outcome),
            now,
        )
        .await?;
    if let Some(verified) = report.verified_anchor(&listed) {
        if checkpoint.is_none_or(|seq| verified.seq > seq) {
            audit.set_checkpoint(tenant, verified.seq).await?;
        }
    }
    Ok(report)
}

/// What one anchoring pass did for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    /// The head was anchored now.
    Anchored,
    /// The head was anchored before: nothing appended since.
    Unchanged,
    /// The tenant has no entry yet.
    Empty,
}

/// Anchors the tenant's chain head (idempotent: an anchored head is left as is).
pub async fn anchor_head<A: AuditLog, S: AnchorStore>(
    audit: &A,
    anchors: &S,
    tenant: &TenantId,
    now: OffsetDateTime,
) -> Result<Anchoring, StoreError> {
    let Some(head) = audit.head(tenant).await? else {
        return Ok(Anchoring::Empty);
    };
    if anchors.anchor(tenant, &Anchor::of(&head, now)).await? {
        Ok(Anchoring::Anchored)
    } else {
        Ok(Anchoring::Unchanged)
    }
}
