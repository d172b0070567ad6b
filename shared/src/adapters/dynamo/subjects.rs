//! Subjects table: one record per data subject, keyed by the HMAC lookup key of
//! the tenant's user id, holding the random pseudonym events carry and the
//! person's state (restriction, objections, erasure; docs/decisions/0010).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures_util::stream::{self, StreamExt};
use time::OffsetDateTime;

use super::codec::{key_of, now, s, text, time_of, timestamp, Item};
use super::{applied, failed, is_conditional_failure, table_name, Dynamo, CONCURRENT_WRITES};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::subject::{Purpose, SubjectState};
use crate::domain::{SubjectId, TenantId};
use crate::keys;
use crate::ports::{FailureKind, StoreError, SubjectStore};

#[derive(Debug, Clone)]
pub struct SubjectTable {
    db: Dynamo,
    name: String,
}

impl SubjectTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::SubjectsTable)?,
        })
    }

    /// Creates the subject record unless another request just did; returns the pseudonym that won.
    async fn create(&self, tenant: &TenantId, lookup: &str) -> Result<SubjectId, StoreError> {
        let subject = SubjectId::random();
        let result = self
            .db
            .client
            .put_item()
            .table_name(&self.name)
            .item(keys::PK, s(keys::subject_pk(tenant, lookup)))
            .item("subject_id", s(subject.as_str()))
            .item("created_at", now())
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(subject),
            Err(e) if is_conditional_failure(&e) => e
                .as_service_error()
                .and_then(|conflict| match conflict {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                })
                .and_then(|item| text(item, "subject_id"))
                .map(SubjectId::from_stored)
                .ok_or_else(|| {
                    StoreError::failed(
                        "PutItem",
                        FailureKind::Retryable,
                        "subject record exists but its pseudonym was not returned",
                    )
                }),
            Err(e) => Err(failed("PutItem", e)),
        }
    }
}

impl SubjectTable {
    /// Records what the person asked (restriction, objections, erasure). A subject
    /// whose state is not the default joins the sparse `by_state` index; back to
    /// the default, it leaves it. False if there is no such subject.
    pub async fn set_state(
        &self,
        tenant: &TenantId,
        lookup: &str,
        state: &SubjectState,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut set = vec!["restricted = :restricted", "state_updated_at = :now"];
        let mut remove = Vec::new();
        let mut update = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::subject_pk(tenant, lookup)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":restricted", AttributeValue::Bool(state.restricted))
            .expression_attribute_values(":now", timestamp(now));
        if state.objections.is_empty() {
            remove.push("objections");
        } else {
            set.push("objections = :objections");
            let purposes = state.objections.iter().map(|p| p.as_str().to_owned());
            update = update
                .expression_attribute_values(":objections", AttributeValue::Ss(purposes.collect()));
        }
        match state.erased_at {
            Some(at) => {
                set.push("erased_at = :erased");
                update = update.expression_attribute_values(":erased", timestamp(at));
            }
            None => remove.push("erased_at"),
        }
        if state.is_default() {
            remove.push(keys::STATE_KEY);
        } else {
            set.push("state_key = :state_key");
            update =
                update.expression_attribute_values(":state_key", s(keys::state_index_pk(tenant)));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        applied(
            "UpdateItem",
            update.update_expression(expression).send().await,
        )
    }

    /// The subject's state (None: no such subject).
    pub async fn state(
        &self,
        tenant: &TenantId,
        lookup: &str,
    ) -> Result<Option<SubjectState>, StoreError> {
        let key = Item::from([(keys::PK.to_owned(), s(keys::subject_pk(tenant, lookup)))]);
        let item = self.db.get(&self.name, key, None).await?;
        Ok(item.as_ref().map(subject_state))
    }

    /// Every subject of the tenant whose state is not the default, by pseudonym,
    /// in one query of the sparse `by_state` index: what alerts and the export
    /// leave out.
    pub async fn non_default_states(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(SubjectId, SubjectState)>, StoreError> {
        let pk = keys::state_index_pk(tenant);
        self.db
            .query_index(&self.name, keys::BY_STATE, keys::STATE_KEY, pk)
            .await?
            .iter()
            .map(|item| {
                let subject =
                    text(item, "subject_id").ok_or_else(|| StoreError::corrupt("subject"))?;
                Ok((SubjectId::from_stored(subject), subject_state(item)))
            })
            .collect()
    }
}

/// A subject's state as stored (absent attributes: the default).
fn subject_state(item: &Item) -> SubjectState {
    SubjectState {
        restricted: item
            .get("restricted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        objections: item
            .get("objections")
            .and_then(|v| v.as_ss().ok())
            .map(|purposes| purposes.iter().filter_map(|p| Purpose::parse(p)).collect())
            .unwrap_or_default(),
        erased_at: time_of(item, "erased_at"),
    }
}

impl SubjectStore for SubjectTable {
    async fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> Result<HashMap<String, SubjectId>, StoreError> {
        let by_pk: HashMap<String, &String> = lookups
            .iter()
            .map(|lookup| (keys::subject_pk(tenant, lookup), lookup))
            .collect();
        let item_keys = by_pk
            .keys()
            .map(|pk| HashMap::from([(keys::PK.to_owned(), s(pk))]))
            .collect();
        let mut resolved = HashMap::new();
        for item in self
            .db
            .batch_get(&self.name, item_keys, Some("pk, subject_id"))
            .await?
        {
            if let ((Some(pk), _), Some(subject)) = (key_of(&item), text(&item, "subject_id")) {
                if let Some(lookup) = by_pk.get(pk) {
                    resolved.insert((*lookup).clone(), SubjectId::from_stored(subject));
                }
            }
        }
        let missing: Vec<&String> = lookups
            .iter()
            .filter(|l| !resolved.contains_key(*l))
            .collect();
        // Futures are built eagerly: closures returning async blocks trip the Send check.
        let creations: Vec<_> = missing
            .iter()
            .map(|lookup| self.create(tenant, lookup))
            .collect();
        let created: Vec<Result<SubjectId, StoreError>> = stream::iter(creations)
            .buffered(CONCURRENT_WRITES)
            .collect()
            .await;
        for (lookup, outcome) in missing.into_iter().zip(created) {
            resolved.insert(lookup.clone(), outcome?);
        }
        Ok(resolved)
    }
}
