//! DynamoDB adapter for tenants and keys, the audit trail, and usage reads.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::dynamo::{failed, n, s, table, DynamoStore, Item};
use crate::domain::access::{KeyRecord, Scope};
use crate::domain::audit::{AuditDraft, AuditEntry, AUDIT_RETENTION};
use crate::domain::{AccountId, HourBucket, TenantId};
use crate::keys;
use crate::ports::{AccessStore, AuditLog, HourlyUsage, Revocation, StoreError, UsageStore};

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn time_of(item: &Item, name: &str) -> Option<OffsetDateTime> {
    text(item, name).and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Failed {
        operation: "decode",
        detail: format!("stored {what} is malformed"),
    }
}

fn key_item(record: &KeyRecord) -> Item {
    let mut item = Item::new();
    item.insert(keys::PK.into(), s(keys::tenant_pk(&record.tenant)));
    item.insert(keys::SK.into(), s(keys::api_key_sk(&record.key_id)));
    item.insert("key_id".into(), s(&record.key_id));
    item.insert("name".into(), s(&record.name));
    item.insert(
        "scopes".into(),
        AttributeValue::L(record.scopes.iter().map(|sc| s(sc.as_str())).collect()),
    );
    item.insert("secret_hash".into(), s(&record.secret_hash));
    item.insert("created_at".into(), s(rfc3339(record.created_at)));
    if let Some(at) = record.expires_at {
        item.insert("valid_until".into(), s(rfc3339(at)));
    }
    item
}

fn key_record(tenant: &TenantId, item: &Item) -> Result<KeyRecord, StoreError> {
    let scopes = item
        .get("scopes")
        .and_then(|v| v.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_s().ok().and_then(|sc| Scope::parse(sc)))
                .collect()
        })
        .unwrap_or_default();
    Ok(KeyRecord {
        tenant: tenant.clone(),
        key_id: text(item, "key_id").ok_or_else(|| corrupt("key"))?,
        name: text(item, "name").unwrap_or_default(),
        scopes,
        secret_hash: text(item, "secret_hash").ok_or_else(|| corrupt("key"))?,
        created_at: time_of(item, "created_at").ok_or_else(|| corrupt("key"))?,
        expires_at: time_of(item, "valid_until"),
        revoked_at: time_of(item, "revoked_at"),
        last_used_hour: text(item, "last_used_hour"),
    })
}

fn audit_item(tenant: &TenantId, entry: &AuditEntry) -> Item {
    let mut item = Item::new();
    item.insert(keys::PK.into(), s(keys::audit_pk(tenant)));
    item.insert(keys::SK.into(), s(keys::audit_sk(entry.seq)));
    item.insert("time".into(), s(rfc3339(entry.time)));
    item.insert("actor".into(), s(&entry.actor));
    item.insert("action".into(), s(&entry.action));
    if let Some(target) = &entry.target {
        item.insert("target".into(), s(target));
    }
    item.insert("request_id".into(), s(&entry.request_id));
    item.insert("outcome".into(), s(&entry.outcome));
    item.insert("prev_hash".into(), s(&entry.prev_hash));
    item.insert("prev_time".into(), s(&entry.prev_time));
    item.insert("hash".into(), s(&entry.hash));
    item.insert(
        "expires_at".into(),
        n((entry.time + AUDIT_RETENTION).unix_timestamp()),
    );
    item
}

/// Reads an entry back as stored; the sequence comes from the key, so a moved entry shows.
fn audit_entry(item: &Item) -> Result<AuditEntry, StoreError> {
    let field = |name: &str| text(item, name).unwrap_or_default();
    Ok(AuditEntry {
        seq: text(item, keys::SK)
            .and_then(|sk| keys::audit_seq(&sk))
            .ok_or_else(|| corrupt("audit entry"))?,
        time: time_of(item, "time").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        actor: field("actor"),
        action: field("action"),
        target: text(item, "target"),
        request_id: field("request_id"),
        outcome: field("outcome"),
        prev_hash: field("prev_hash"),
        prev_time: field("prev_time"),
        hash: field("hash"),
    })
}

impl DynamoStore {
    async fn last_audit_entry(&self, tenant: &TenantId) -> Result<Option<AuditEntry>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(table(&self.tables.audit, "audit")?)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::audit_pk(tenant)))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed("Query", e))?;
        out.items().first().map(audit_entry).transpose()
    }
}

impl AccessStore for DynamoStore {
    async fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .item(keys::PK, s(keys::tenant_pk(tenant)))
            .item(keys::SK, s(keys::TENANT_SK))
            .item("name", s(name))
            .item("created_at", s(rfc3339(now)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(failed("PutItem", e)),
        }
    }

    async fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::TENANT_SK))
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| failed("GetItem", e))?;
        Ok(out.item.is_some())
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .set_item(Some(key_item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("PutItem", e))
    }

    async fn get_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::api_key_sk(key_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed("GetItem", e))?;
        out.item.map(|item| key_record(tenant, &item)).transpose()
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::tenant_pk(tenant)))
            .expression_attribute_values(":prefix", s(keys::KEY_SK_PREFIX));
        self.query_all(query)
            .await?
            .iter()
            .map(|item| key_record(tenant, item))
            .collect()
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Revocation, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::api_key_sk(key_id)))
            .update_expression("SET revoked_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Revocation::Revoked),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(match self.get_key(tenant, key_id).await? {
                    Some(_) => Revocation::AlreadyRevoked,
                    None => Revocation::NotFound,
                })
            }
            Err(e) => Err(failed("UpdateItem", e)),
        }
    }

    async fn record_key_use(
        &self,
        tenant: &TenantId,
        key_id: &str,
        hour: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(table(&self.tables.tenants, "tenants")?)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::api_key_sk(key_id)))
            .update_expression("SET last_used_hour = :hour")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(last_used_hour) OR last_used_hour <> :hour)")
            .expression_attribute_values(":hour", s(hour))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another request recorded this hour already.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(failed("UpdateItem", e)),
        }
    }
}

impl AuditLog for DynamoStore {
    /// Reads the chain's tail and appends after it; a concurrent append wins the
    /// conditional put, and this one retries on the new tail.
    async fn append(
        &self,
        tenant: &TenantId,
        draft: AuditDraft,
        now: OffsetDateTime,
    ) -> Result<AuditEntry, StoreError> {
        let audit_table = table(&self.tables.audit, "audit")?;
        let mut attempt = 1;
        loop {
            let previous = self.last_audit_entry(tenant).await?;
            // Never earlier than the tail, so the chain stays in time order.
            let at = previous.as_ref().map_or(now, |p| now.max(p.time));
            let entry = AuditEntry::next(tenant, previous.as_ref(), draft.clone(), at);
            let result = self
                .client
                .put_item()
                .table_name(audit_table)
                .set_item(Some(audit_item(tenant, &entry)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match result {
                Ok(_) => return Ok(entry),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) =>
                {
                    if attempt >= self.retry.max_attempts {
                        return Err(StoreError::Exhausted {
                            operation: "audit append",
                            attempts: attempt,
                        });
                    }
                    self.retry.sleep_before(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(failed("PutItem", e)),
            }
        }
    }

    async fn entries(
        &self,
        tenant: &TenantId,
        after_seq: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let audit_table = table(&self.tables.audit, "audit")?;
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(audit_table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(keys::audit_pk(tenant)))
                .expression_attribute_values(":after", s(keys::audit_sk(after_seq.unwrap_or(0))))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if let Some(limit) = limit {
                let left = limit.saturating_sub(entries.len()).max(1);
                query = query.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let out = query.send().await.map_err(|e| failed("Query", e))?;
            for item in out.items() {
                entries.push(audit_entry(item)?);
            }
            start = out.last_evaluated_key;
            let full = limit.is_some_and(|limit| entries.len() >= limit);
            if start.is_none() || full {
                entries.truncate(limit.unwrap_or(usize::MAX));
                return Ok(entries);
            }
        }
    }
}

impl UsageStore for DynamoStore {
    async fn hourly_usage(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: HourBucket,
        to: HourBucket,
    ) -> Result<Vec<HourlyUsage>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(table(&self.tables.aggregates, "aggregates")?)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(keys::account_pk(tenant, account)))
            .expression_attribute_values(":from", s(keys::aggregate_sk(from)))
            .expression_attribute_values(":to", s(keys::aggregate_sk(to)));
        self.query_all(query)
            .await?
            .iter()
            .map(|item| {
                let hour = text(item, keys::SK)
                    .and_then(|sk| sk.strip_prefix("H#").map(str::to_owned))
                    .ok_or_else(|| corrupt("aggregate"))?;
                let mut counters: Vec<(String, u64)> = item
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.clone(), value.as_n().ok()?.parse().ok()?))
                    })
                    .collect();
                counters.sort();
                Ok(HourlyUsage { hour, counters })
            })
            .collect()
    }
}
