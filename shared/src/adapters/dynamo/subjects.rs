//! Subjects table: one record per data subject, keyed by the HMAC lookup key of
//! the tenant's user id, holding the random pseudonym events carry.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use futures_util::stream::{self, StreamExt};

use super::codec::{key_of, now, s, text};
use super::{failed, is_conditional_failure, table_name, Dynamo, CONCURRENT_WRITES};
use crate::config::{Config, ConfigError, Setting};
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
            .batch_get(&self.name, item_keys, "pk, subject_id")
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
