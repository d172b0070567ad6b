//! API key use cases: issue and revoke, each on the audit trail.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::draft;
use crate::domain::access::{IssuedKey, KeyRecord, Scope};
use crate::domain::TenantId;
use crate::http::ApiError;
use crate::ports::{AccessStore, AuditLog, Revocation, StoreError};

/// Longest validity a key may be given.
pub const MAX_KEY_DAYS: i64 = 730;

/// What a new key should be, as a client asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

/// A validated key request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<OffsetDateTime>,
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
        let expires_at = match self.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_KEY_DAYS).contains(&days) => {
                Some(now + time::Duration::days(days))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "expires_in_days",
                    format!("must be from 1 to {MAX_KEY_DAYS}"),
                ))
            }
        };
        Ok(KeySpec {
            name: name.to_owned(),
            scopes,
            expires_at,
        })
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
    let issued = IssuedKey::generate(tenant, &spec.name, spec.scopes, now, spec.expires_at);
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

/// Revokes a key and audits the outcome.
pub async fn revoke_key<K: AccessStore, A: AuditLog>(
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
