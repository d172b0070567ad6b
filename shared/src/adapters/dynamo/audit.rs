//! Audit table: each tenant's append-only, hash-chained trail.

use time::OffsetDateTime;

use super::codec::{is_live, n, s, text, time_of, timestamp, Item, EXPIRES_AT};
use super::{applied, failed, table_name, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::audit::{AuditDraft, AuditEntry};
use crate::domain::purge::DestructionRecord;
use crate::domain::RawEventRetention;
use crate::domain::TenantId;
use crate::keys;
use crate::ports::{AuditLog, StoreError};

#[derive(Debug, Clone)]
pub struct AuditTable {
    db: Dynamo,
    name: String,
}

impl AuditTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::AuditTable)?,
        })
    }

    /// The chain's newest entry (its head), expired or not.
    pub async fn last_entry(&self, tenant: &TenantId) -> Result<Option<AuditEntry>, StoreError> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.name)
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

fn audit_item(tenant: &TenantId, entry: &AuditEntry) -> Item {
    let mut item = Item::new();
    item.insert(keys::PK.into(), s(keys::audit_pk(tenant)));
    item.insert(keys::SK.into(), s(keys::audit_sk(entry.seq)));
    item.insert("time".into(), timestamp(entry.time));
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
    if let Some(at) = entry.expires_at {
        item.insert(EXPIRES_AT.into(), n(at));
    }
    item
}

/// Every attribute an entry is stored with: the hash covers all but the keys and itself.
const ENTRY_ATTRIBUTES: [&str; 12] = [
    keys::PK,
    keys::SK,
    "time",
    "actor",
    "action",
    "target",
    "request_id",
    "outcome",
    "prev_hash",
    "prev_time",
    "hash",
    EXPIRES_AT,
];

/// Reads an entry back as stored; the sequence comes from the key, so a moved entry shows.
fn audit_entry(item: &Item) -> Result<AuditEntry, StoreError> {
    let field = |name: &str| text(item, name).unwrap_or_default();
    Ok(AuditEntry {
        seq: text(item, keys::SK)
            .and_then(|sk| keys::audit_seq(&sk))
            .ok_or_else(|| StoreError::corrupt("audit entry"))?,
        time: time_of(item, "time").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        actor: field("actor"),
        action: field("action"),
        target: text(item, "target"),
        request_id: field("request_id"),
        outcome: field("outcome"),
        prev_hash: field("prev_hash"),
        prev_time: field("prev_time"),
        expires_at: item
            .get(EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
        hash: field("hash"),
        foreign_attributes: item
            .keys()
            .any(|name| !ENTRY_ATTRIBUTES.contains(&name.as_str())),
    })
}

impl AuditLog for AuditTable {
    async fn destruction_records(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", s(keys::retention_records_pk(tenant)))
            .expression_attribute_values(
                ":after",
                s(keys::retention_record_sk(after.unwrap_or_default())),
            )
            .consistent_read(true);
        let items = self.db.query(query, Some(limit)).await?;
        Ok(items
            .iter()
            .filter(|item| is_live(item, now))
            .filter_map(|item| text(item, "record"))
            .filter_map(|body| serde_json::from_str(&body).ok())
            .collect())
    }
    /// Reads the chain's tail and appends after it; a concurrent append wins the
    /// conditional put, and this one retries on the new tail.
    async fn append(
        &self,
        tenant: &TenantId,
        draft: AuditDraft,
        now: OffsetDateTime,
    ) -> Result<AuditEntry, StoreError> {
        let mut attempt = 1;
        loop {
            let previous = self.last_entry(tenant).await?;
            // Never earlier than the tail, so the chain stays in time order.
            let at = previous.as_ref().map_or(now, |p| now.max(p.time));
            let entry = AuditEntry::next(tenant, previous.as_ref(), draft.clone(), at);
            let result = self
                .db
                .client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(audit_item(tenant, &entry)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            if applied("PutItem", result)? {
                return Ok(entry);
            }
            if attempt >= self.db.retry.contended_attempts {
                return Err(StoreError::Exhausted {
                    operation: "audit append",
                    attempts: attempt,
                });
            }
            self.db.retry.sleep_before(attempt).await;
            attempt += 1;
        }
    }

    async fn head(&self, tenant: &TenantId) -> Result<Option<AuditEntry>, StoreError> {
        self.last_entry(tenant).await
    }

    async fn checkpoint(&self, tenant: &TenantId) -> Result<Option<u64>, StoreError> {
        let key = [
            (keys::PK.to_owned(), s(keys::audit_checkpoint_pk(tenant))),
            (keys::SK.to_owned(), s(keys::AUDIT_CHECKPOINT_SK)),
        ];
        let item = self.db.get(&self.name, key.into(), None).await?;
        Ok(item
            .as_ref()
            .and_then(|item| item.get("seq"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// Only ever moves forward (a concurrent verification may have gone further).
    async fn set_checkpoint(&self, tenant: &TenantId, seq: u64) -> Result<(), StoreError> {
        let result = self
            .db
            .client
            .put_item()
            .table_name(&self.name)
            .item(keys::PK, s(keys::audit_checkpoint_pk(tenant)))
            .item(keys::SK, s(keys::AUDIT_CHECKPOINT_SK))
            .item("seq", n(seq))
            .condition_expression("attribute_not_exists(pk) OR seq < :seq")
            .expression_attribute_values(":seq", n(seq))
            .send()
            .await;
        applied("PutItem", result).map(|_| ())
    }

    async fn entries(
        &self,
        tenant: &TenantId,
        after_seq: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk > :after")
            .expression_attribute_values(":pk", s(keys::audit_pk(tenant)))
            .expression_attribute_values(":after", s(keys::audit_sk(after_seq.unwrap_or(0))))
            .consistent_read(true);
        let now = OffsetDateTime::now_utc();
        self.db
            .query(query, limit)
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .map(audit_entry)
            .collect()
    }
}

impl AuditTable {
    /// Stores a destruction record (docs/decisions/0019): not in the chain, beside
    /// it; the audit entry that names it is in the chain.
    pub async fn put_record(
        &self,
        tenant: &TenantId,
        record: &DestructionRecord,
    ) -> Result<(), StoreError> {
        use crate::domain::retention::{self, StoredItem};
        let expires = retention::expires_at(
            StoredItem::DestructionRecord,
            record.recorded_at,
            RawEventRetention::default(),
        )
        .map(|at| at.unix_timestamp())
        .unwrap_or_default();
        let body = serde_json::to_string(record).unwrap_or_default();
        self.db
            .client
            .put_item()
            .table_name(&self.name)
            .item(keys::PK, s(keys::retention_records_pk(tenant)))
            .item(keys::SK, s(keys::retention_record_sk(&record.record_id)))
            .item("record", s(body))
            .item(EXPIRES_AT, n(expires))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("PutItem", e))
    }
}
