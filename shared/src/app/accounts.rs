//! Account contracts: validated from the request, written to the directory, and
//! audited by account id only (docs/decisions/0015).

use serde::Deserialize;
use time::OffsetDateTime;

use super::audit::draft;
use crate::domain::account::AccountContract;
use crate::domain::rollup::parse_day;
use crate::domain::{AccountId, TenantId};
use crate::http::ApiError;
use crate::ports::{AccountRegistry, AuditLog, StoreError};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_LABEL_CHARS: usize = 40;
/// A bound that keeps quotas exact as JSON numbers and DynamoDB numbers.
pub const MAX_QUOTA: i64 = 1_000_000_000_000_000;

/// `PUT /v1/accounts/{account}`: the whole contract (absent fields are cleared).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    pub name: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default, deserialize_with = "crate::http::body::whole_number")]
    pub monthly_quota: Option<i64>,
    #[serde(default)]
    pub relationship_start: Option<String>,
    #[serde(default)]
    pub relationship_end: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Plans and tags: lowercase letters, digits, `-` and `_`, 1 to 40 characters.
pub fn is_label(value: &str) -> bool {
    (1..=MAX_LABEL_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

const LABEL_RULE: &str = "expected 1 to 40 lowercase letters, digits, - or _";

impl AccountRequest {
    /// The contract, or the field that is wrong and what it should be.
    pub fn validate(&self) -> Result<AccountContract, ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "name",
                "must not hold control characters",
            ));
        }
        // The business's name, never a person's address: the dashboard shows it.
        if name.contains('@') || name.contains('＠') {
            return Err(ApiError::invalid(
                "name",
                "must be a business name, not an e-mail address",
            ));
        }
        if let Some(plan) = &self.plan {
            if !is_label(plan) {
                return Err(ApiError::invalid("plan", LABEL_RULE));
            }
        }
        let monthly_quota = match self.monthly_quota {
            None => None,
            Some(q) if (0..=MAX_QUOTA).contains(&q) => Some(q as u64),
            Some(_) => {
                return Err(ApiError::invalid(
                    "monthly_quota",
                    "expected an integer from 0 to 10^15",
                ))
            }
        };
        let day = |field: &'static str, value: &Option<String>| match value {
            None => Ok(None),
            Some(text) => parse_day(text)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(field, "expected a date such as 2026-11-01")),
        };
        let relationship_start = day("relationship_start", &self.relationship_start)?;
        let relationship_end = day("relationship_end", &self.relationship_end)?;
        if let (Some(start), Some(end)) = (relationship_start, relationship_end) {
            if end < start {
                return Err(ApiError::invalid(
                    "relationship_end",
                    "must not be before relationship_start",
                ));
            }
        }
        let mut tags: Vec<String> = Vec::new();
        let given = self.tags.as_deref().unwrap_or_default();
        if given.len() > MAX_TAGS {
            return Err(ApiError::invalid("tags", "at most 20 tags"));
        }
        for (i, tag) in given.iter().enumerate() {
            if !is_label(tag) {
                return Err(ApiError::invalid(format!("tags[{i}]"), LABEL_RULE));
            }
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        Ok(AccountContract {
            name: name.to_owned(),
            plan: self.plan.clone(),
            monthly_quota,
            relationship_start,
            relationship_end,
            tags,
        })
    }
}

/// Registers or replaces an account's contract, then audits it (by account id);
/// true if the account was not registered before.
#[allow(clippy::too_many_arguments)]
pub async fn register_account<R: AccountRegistry, A: AuditLog>(
    registry: &R,
    audit: &A,
    tenant: &TenantId,
    actor: &str,
    request_id: &str,
    account: &AccountId,
    contract: &AccountContract,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let created = registry
        .register_account(tenant, account, contract, now)
        .await?;
    let action = if created {
        "account.register"
    } else {
        "account.update"
    };
    audit
        .append(
            tenant,
            draft(actor, action, Some(account.as_str()), request_id, "ok"),
            now,
        )
        .await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> AccountRequest {
        serde_json::from_value(value).expect("shape")
    }

    #[test]
    fn a_full_contract_validates() {
        let contract = request(json!({"name": " Acme Corp ", "plan": "growth", "monthly_quota": 1000,
            "relationship_start": "2025-01-01", "relationship_end": "2026-12-31", "tags": ["eu", "eu", "key"]}))
        .validate()
        .expect("valid");
        assert_eq!(contract.name, "Acme Corp");
        assert_eq!(contract.tags, vec!["eu", "key"]);
        assert_eq!(contract.monthly_quota, Some(1000));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"name": ""}), "name"),
            (json!({"name": "jane@example.com"}), "name"),
            (json!({"name": "x", "plan": "Gold Plan"}), "plan"),
            (json!({"name": "x", "monthly_quota": -1}), "monthly_quota"),
            (
                json!({"name": "x", "relationship_start": "2026-02-30"}),
                "relationship_start",
            ),
            (
                json!({"name": "x", "relationship_start": "2026-02-02", "relationship_end": "2026-02-01"}),
                "relationship_end",
            ),
            (json!({"name": "x", "tags": ["ok", "NO"]}), "tags[1]"),
        ];
        for (body, field) in cases {
            match request(body.clone()).validate() {
                Err(ApiError::Invalid { field: got, .. }) => assert_eq!(got, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
