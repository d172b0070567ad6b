//! API key use cases: issue and revoke, each on the audit trail.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::draft;
use crate::domain::access::{IssuedKey, KeyRecord, Scope};
use crate::domain::TenantId;
use crate::http::ApiError;
use crate::ports::{AccessStore, AuditLog, Revocation, StoreError};

/// Every key expires. Admin keys can do the most harm if leaked: they live shorter.
pub const DEFAULT_KEY_DAYS: i64 = 90;
pub const MAX_KEY_DAYS: i64 = 365;
pub const DEFAULT_ADMIN_KEY_DAYS: i64 = 30;
pub const MAX_ADMIN_KEY_DAYS: i64 = 90;

/// What a new key should be, as a client asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default, deserialize_with = "crate::http::body::whole_number")]
    pub expires_in_days: Option<i64>,
}

/// A validated key request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: OffsetDateTime,
}

impl KeyRequest {
    /// The validated spec, or the field that is wrong and what it should be.
    pub fn validate(&self, now: OffsetDateTime) -> Result<KeySpec, ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ApiError::invalid("name", "must be 1 to 64 characters"));
        }
        if self.scopes.is_empty() {
            return Err(ApiError::invalid(
                "scopes",
                "must name at least one of ingest, read, privacy, admin",
            ));
        }
        let mut scopes = Vec::new();
        for (i, scope) in self.scopes.iter().enumerate() {
            let scope = Scope::parse(scope).ok_or_else(|| {
                ApiError::invalid(
                    format!("scopes[{i}]"),
                    "must be one of ingest, read, privacy, admin",
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let (default, max, kind) = if scopes.contains(&Scope::Admin) {
            (
                DEFAULT_ADMIN_KEY_DAYS,
                MAX_ADMIN_KEY_DAYS,
                " for an admin key",
            )
        } else {
            (DEFAULT_KEY_DAYS, MAX_KEY_DAYS, "")
        };
        let days = self.expires_in_days.unwrap_or(default);
        if !(1..=max).contains(&days) {
            return Err(ApiError::invalid(
                "expires_in_days",
                format!("must be from 1 to {max}{kind}"),
            ));
        }
        let expires_at = now + time::Duration::days(days);
        Ok(KeySpec {
            name: name.to_owned(),
            scopes,
            expires_at,
        })
    }
}

impl KeySpec {
    /// A key issued by another never outlives it: a leaked key cannot mint
    /// keys that survive its own expiry.
    pub fn capped_by(mut self, issuer_expires_at: Option<OffsetDateTime>) -> Self {
        if let Some(limit) = issuer_expires_at {
            self.expires_at = self.expires_at.min(limit);
        }
        self
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// A key as listed: never its secret or hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<&'static str>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_hour: Option<String>,
    pub active: bool,
    pub issued_by: Option<String>,
}

impl KeyView {
    pub fn of(record: &KeyRecord, now: OffsetDateTime) -> Self {
        Self {
            key_id: record.key_id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            revoked_at: record.revoked_at.map(rfc3339),
            last_used_hour: record.last_used_hour.clone(),
            active: record.is_active(now),
            issued_by: record.issued_by.clone(),
        }
    }
}

/// Issues a key and audits it. The returned secret must be shown once and dropped.
pub async fn issue_key<K: AccessStore, A: AuditLog>(
    keys: &K,
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    spec: KeySpec,
    now: OffsetDateTime,
) -> Result<IssuedKey, StoreError> {
    let issued = IssuedKey::generate(
        tenant,
        &spec.name,
        spec.scopes,
        now,
        Some(spec.expires_at),
        actor,
    );
    keys.put_key(&issued.record).await?;
    let key_id = &issued.record.key_id;
    let entry = draft(actor, "key.issue", Some(key_id), request_id, "ok");
    if let Err(error) = audit.append(tenant, entry, now).await {
        // A key whose issue is not on the trail must not work: revoke it (its
        // secret is never shown either). Best effort: the error is what matters.
        if let Err(undo) = keys.revoke_key(tenant, key_id, now).await {
            tracing::error!(key_id, error = %undo, "unaudited key could not be revoked");
        }
        return Err(error);
    }
    Ok(issued)
}

/// Revokes a key and audits the outcome; with `cascade`, also every key it
/// issued, and the keys those issued (each revocation its own audit entry).
/// Returns the outcome for `key_id` and the other keys revoked now.
#[allow(clippy::too_many_arguments)]
pub async fn revoke_key<K: AccessStore, A: AuditLog>(
    keys: &K,
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    key_id: &str,
    cascade: bool,
    now: OffsetDateTime,
) -> Result<(Revocation, Vec<String>), StoreError> {
    let outcome = revoke_one(keys, audit, tenant, actor, request_id, key_id, now).await?;
    let mut also = Vec::new();
    if cascade && outcome != Revocation::NotFound {
        let all = keys.list_keys(tenant).await?;
        for descendant in issued_by_transitively(&all, key_id) {
            if revoke_one(keys, audit, tenant, actor, request_id, &descendant, now).await?
                == Revocation::Revoked
            {
                also.push(descendant);
            }
        }
    }
    Ok((outcome, also))
}

async fn revoke_one<K: AccessStore, A: AuditLog>(
    keys: &K,
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    key_id: &str,
    now: OffsetDateTime,
) -> Result<Revocation, StoreError> {
    let outcome = keys.revoke_key(tenant, key_id, now).await?;
    let label = match outcome {
        Revocation::Revoked => "ok",
        Revocation::AlreadyRevoked => "already_revoked",
        Revocation::NotFound => "not_found",
    };
    audit
        .append(
            tenant,
            draft(actor, "key.revoke", Some(key_id), request_id, label),
            now,
        )
        .await?;
    Ok(outcome)
}

/// The keys `root` issued, and those they issued, in breadth-first order (never `root`).
pub fn issued_by_transitively(all: &[KeyRecord], root: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut frontier = vec![root.to_owned()];
    while let Some(issuer) = frontier.pop() {
        for record in all {
            let child = &record.key_id;
            if record.issued_by.as_deref() == Some(issuer.as_str())
                && child != root
                && !found.contains(child)
            {
                found.push(child.clone());
                frontier.push(child.clone());
            }
        }
    }
    found
}

/// Creates the tenant if needed and issues it a key, as an operator does.
pub async fn bootstrap_key<K: AccessStore, A: AuditLog>(
    keys: &K,
    audit: &A,
    tenant: &TenantId,
    spec: KeySpec,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<IssuedKey, StoreError> {
    keys.create_tenant(tenant, "", now).await?;
    issue_key(keys, audit, tenant, "operator", request_id, spec, now).await
}
