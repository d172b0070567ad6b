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
use crate::crypto::LookupKeys;
use crate::domain::privacy::{withheld, Directive};
use crate::domain::subject::{Purpose, SubjectState};
use crate::domain::{SubjectId, TenantId};
use crate::keys;
use crate::ports::{FailureKind, ResolvedSubject, StoreError, SubjectStore};

/// What ingestion reads of a subject record: its pseudonym and state.
const RESOLVE_PROJECTION: &str = "pk, subject_id, restricted, objections, erased_at";

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
            // The `by_pseudonym` index: the purge finds the record from an event.
            .item(
                keys::SUBJECT_KEY,
                s(keys::subject_index_pk(tenant, &subject)),
            )
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

/// A subject record as the privacy function reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRecord {
    /// The lookup key it is stored under (current version after `find`).
    pub lookup: String,
    pub subject: SubjectId,
    pub created_at: Option<OffsetDateTime>,
    pub state: SubjectState,
    pub sealed: Option<SealedBlob>,
    pub directive: Option<Directive>,
    pub deceased_at: Option<OffsetDateTime>,
}

/// Contact fields sealed with AES-256-GCM, and the KMS-wrapped data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub wrapped_key: Vec<u8>,
}

fn blob(item: &Item, name: &str) -> Option<Vec<u8>> {
    item.get(name)?.as_b().ok().map(|b| b.as_ref().to_vec())
}

fn record_of(item: &Item) -> Option<SubjectRecord> {
    let (pk, _) = key_of(item);
    let lookup = pk?.rsplit_once("#U#")?.1.to_owned();
    let sealed = match (
        blob(item, "sealed_nonce"),
        blob(item, "sealed_fields"),
        blob(item, "sealed_key"),
    ) {
        (Some(nonce), Some(ciphertext), Some(wrapped_key)) => Some(SealedBlob {
            nonce,
            ciphertext,
            wrapped_key,
        }),
        _ => None,
    };
    Some(SubjectRecord {
        lookup,
        subject: SubjectId::from_stored(text(item, "subject_id")?),
        created_at: time_of(item, "created_at"),
        state: subject_state(item),
        sealed,
        directive: text(item, "directive").and_then(|d| Directive::parse(&d)),
        deceased_at: time_of(item, "deceased_at"),
    })
}

impl SubjectTable {
    /// The subject record of a user, by its current lookup key, or by the
    /// previous one during a rotation (then moved to the current key).
    pub async fn find(
        &self,
        tenant: &TenantId,
        lookup: &LookupKeys,
    ) -> Result<Option<SubjectRecord>, StoreError> {
        if let Some(found) = self.get_record(tenant, &lookup.current).await? {
            return Ok(Some(found));
        }
        let Some(previous) = &lookup.previous else {
            return Ok(None);
        };
        if self.get_record(tenant, previous).await?.is_none() {
            return Ok(None);
        }
        self.migrate(tenant, previous, &lookup.current).await?;
        self.get_record(tenant, &lookup.current).await
    }

    pub async fn get_record(
        &self,
        tenant: &TenantId,
        lookup: &str,
    ) -> Result<Option<SubjectRecord>, StoreError> {
        let key = Item::from([(keys::PK.to_owned(), s(keys::subject_pk(tenant, lookup)))]);
        match self.db.get(&self.name, key, None).await? {
            Some(item) => record_of(&item)
                .map(Some)
                .ok_or_else(|| StoreError::corrupt("subject")),
            None => Ok(None),
        }
    }

    /// The user's record, created if there is none yet (a tenant may hand
    /// over contact fields before any event); true if created.
    pub async fn ensure(
        &self,
        tenant: &TenantId,
        lookup: &LookupKeys,
    ) -> Result<(SubjectRecord, bool), StoreError> {
        if let Some(found) = self.find(tenant, lookup).await? {
            return Ok((found, false));
        }
        self.create(tenant, &lookup.current).await?;
        let record = self
            .get_record(tenant, &lookup.current)
            .await?
            .ok_or_else(|| StoreError::corrupt("subject"))?;
        Ok((record, true))
    }

    /// An update of an existing record (refused, not created, if there is none).
    fn update_existing(
        &self,
        tenant: &TenantId,
        lookup: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::subject_pk(tenant, lookup)))
            .condition_expression("attribute_exists(pk)")
    }

    /// Replaces the sealed fields (the record must exist).
    pub async fn put_sealed(
        &self,
        tenant: &TenantId,
        lookup: &str,
        sealed: &SealedBlob,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let bytes =
            |b: &Vec<u8>| AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b.clone()));
        let result = self
            .update_existing(tenant, lookup)
            .update_expression(
                "SET sealed_fields = :f, sealed_nonce = :n, sealed_key = :k, sealed_at = :now",
            )
            .expression_attribute_values(":f", bytes(&sealed.ciphertext))
            .expression_attribute_values(":n", bytes(&sealed.nonce))
            .expression_attribute_values(":k", bytes(&sealed.wrapped_key))
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }

    /// Records a post-mortem directive (the recipient, if any, is in the sealed fields).
    pub async fn set_directive(
        &self,
        tenant: &TenantId,
        lookup: &str,
        directive: Directive,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_existing(tenant, lookup)
            .update_expression("SET directive = :d, directive_at = :now")
            .expression_attribute_values(":d", s(directive.as_str()))
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }

    /// Records the death the tenant reported.
    pub async fn set_deceased(
        &self,
        tenant: &TenantId,
        lookup: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_existing(tenant, lookup)
            .update_expression("SET deceased_at = if_not_exists(deceased_at, :now)")
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }

    /// Deletes the record (the end of an erasure).
    pub async fn delete(&self, tenant: &TenantId, lookup: &str) -> Result<(), StoreError> {
        self.db
            .client
            .delete_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::subject_pk(tenant, lookup)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("DeleteItem", e))
    }

    /// Every record of the tenant: lookup key, pseudonym, creation time. A scan
    /// (filtered by the tenant's prefix): for the restore drill only.
    pub async fn all_records(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(String, SubjectId, Option<OffsetDateTime>)>, StoreError> {
        let prefix = keys::subject_pk(tenant, "");
        let mut out = Vec::new();
        // Paged as the tenants listing is (`access.rs`): the SDK's paginator.
        let mut pages = self
            .db
            .client
            .scan()
            .table_name(&self.name)
            .filter_expression("begins_with(pk, :p)")
            .projection_expression("pk, subject_id, created_at")
            .expression_attribute_values(":p", s(&prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("Scan", e))?;
            for item in page.items() {
                if let (Some(pk), Some(subject)) = (key_of(item).0, text(item, "subject_id")) {
                    if let Some(lookup) = pk.strip_prefix(&prefix) {
                        out.push((
                            lookup.to_owned(),
                            SubjectId::from_stored(subject),
                            time_of(item, "created_at"),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts the tenant's records per lookup version (rotation status).
    pub async fn versions(
        &self,
        tenant: &TenantId,
    ) -> Result<std::collections::BTreeMap<u32, u64>, StoreError> {
        let mut counts = std::collections::BTreeMap::new();
        for (lookup, _, _) in self.all_records(tenant).await? {
            let version = crate::crypto::lookup_version(&lookup).unwrap_or(0);
            *counts.entry(version).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Moves a record from its previous-version lookup key to the current one
    /// (a rotation, docs/decisions/0016): one transaction, a put of the copy that
    /// never overwrites and a delete of the original. If another request moved it
    /// first, nothing is done.
    pub async fn migrate(&self, tenant: &TenantId, old: &str, new: &str) -> Result<(), StoreError> {
        let old_key = Item::from([(keys::PK.to_owned(), s(keys::subject_pk(tenant, old)))]);
        let Some(mut item) = self.db.get(&self.name, old_key.clone(), None).await? else {
            return Ok(());
        };
        item.insert(keys::PK.into(), s(keys::subject_pk(tenant, new)));
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| super::unbuildable("TransactWriteItems", e))?;
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.name)
            .set_key(Some(old_key))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| super::unbuildable("TransactWriteItems", e))?;
        let actions = vec![
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(put)
                .build(),
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .delete(delete)
                .build(),
        ];
        let token = format!(
            "migrate-{}",
            &crate::domain::privacy::suppression_marker(old)[..32]
        );
        match self.db.transact(actions, token).await {
            Ok(()) | Err(super::Cancelled::Conditions(_)) => Ok(()),
            Err(super::Cancelled::Other(e) | super::Cancelled::Failed(e)) => Err(e),
        }
    }

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

impl SubjectTable {
    /// Subjects whose state is not the default and changed at `since` or
    /// later, by the sparse `by_state` index: what a re-check passes over again.
    pub async fn changed_since(
        &self,
        tenant: &TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<(SubjectId, SubjectState)>, StoreError> {
        let pk = keys::state_index_pk(tenant);
        let mut out = Vec::new();
        for item in self
            .db
            .query_index(&self.name, keys::BY_STATE, keys::STATE_KEY, pk)
            .await?
        {
            if time_of(&item, "state_updated_at").is_some_and(|at| at >= since) {
                let subject =
                    text(&item, "subject_id").ok_or_else(|| StoreError::corrupt("subject"))?;
                out.push((SubjectId::from_stored(subject), subject_state(&item)));
            }
        }
        Ok(out)
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
        lookups: &[LookupKeys],
    ) -> Result<HashMap<String, ResolvedSubject>, StoreError> {
        let mut wanted: HashMap<String, (&LookupKeys, bool)> = HashMap::new();
        for keys in lookups {
            wanted.insert(keys::subject_pk(tenant, &keys.current), (keys, true));
            if let Some(previous) = &keys.previous {
                wanted.insert(keys::subject_pk(tenant, previous), (keys, false));
            }
        }
        let item_keys = wanted
            .keys()
            .map(|pk| HashMap::from([(keys::PK.to_owned(), s(pk))]))
            .collect();
        let mut current = HashMap::new();
        let mut previous = HashMap::new();
        for item in self
            .db
            .batch_get(&self.name, item_keys, Some(RESOLVE_PROJECTION))
            .await?
        {
            let (Some(pk), _) = key_of(&item) else {
                continue;
            };
            let Some(subject) = text(&item, "subject_id") else {
                continue;
            };
            if let Some((keys, is_current)) = wanted.get(pk) {
                let resolved = ResolvedSubject {
                    subject: SubjectId::from_stored(subject),
                    withheld: withheld(&subject_state(&item)),
                };
                let into = if *is_current {
                    &mut current
                } else {
                    &mut previous
                };
                into.insert(keys.current.clone(), resolved);
            }
        }
        // Found only under the previous version: moved to the current key on sight.
        for keys in lookups {
            if current.contains_key(&keys.current) {
                continue;
            }
            if let (Some(old), Some(found)) = (&keys.previous, previous.remove(&keys.current)) {
                self.migrate(tenant, old, &keys.current).await?;
                current.insert(keys.current.clone(), found);
            }
        }
        let missing: Vec<&String> = lookups
            .iter()
            .map(|k| &k.current)
            .filter(|l| !current.contains_key(*l))
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
            current.insert(lookup.clone(), ResolvedSubject::new(outcome?));
        }
        Ok(current)
    }
}
