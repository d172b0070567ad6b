//! Tenants table: tenant records and their API keys (a key's secret only as a hash).

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::codec::{n, s, text, time_of, timestamp, Item};
use super::{applied, failed, table_name, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::access::{KeyRecord, Scope};
use crate::domain::{RawEventRetention, TenantId};
use crate::keys;
use crate::ports::{AccessStore, Revocation, StoreError, TenantSettings};

#[derive(Debug, Clone)]
pub struct TenantTable {
    db: Dynamo,
    name: String,
}

impl TenantTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::TenantsTable)?,
        })
    }

    /// An update of an existing tenant's record (the condition: it exists).
    fn update_tenant(&self, tenant: &TenantId) -> UpdateItemFluentBuilder {
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::TENANT_SK))
            .condition_expression("attribute_exists(pk)")
    }

    /// An update of one key's record.
    fn update_key(&self, tenant: &TenantId, key_id: &str) -> UpdateItemFluentBuilder {
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::api_key_sk(key_id)))
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
    item.insert("created_at".into(), timestamp(record.created_at));
    if let Some(at) = record.expires_at {
        item.insert("valid_until".into(), timestamp(at));
    }
    if let Some(issuer) = &record.issued_by {
        item.insert("issued_by".into(), s(issuer));
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
    let corrupt = || StoreError::corrupt("key");
    Ok(KeyRecord {
        tenant: tenant.clone(),
        key_id: text(item, "key_id").ok_or_else(corrupt)?,
        name: text(item, "name").unwrap_or_default(),
        scopes,
        secret_hash: text(item, "secret_hash").ok_or_else(corrupt)?,
        created_at: time_of(item, "created_at").ok_or_else(corrupt)?,
        expires_at: time_of(item, "valid_until"),
        revoked_at: time_of(item, "revoked_at"),
        last_used_hour: text(item, "last_used_hour"),
        issued_by: text(item, "issued_by"),
        tenant_suspended: false,
    })
}

impl TenantTable {
    /// Suspends (every key of the tenant is refused) or resumes a tenant; false if no such tenant.
    pub async fn set_suspended(
        &self,
        tenant: &TenantId,
        suspended: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = self.update_tenant(tenant);
        let update = if suspended {
            update
                .update_expression("SET suspended_at = if_not_exists(suspended_at, :now)")
                .expression_attribute_values(":now", timestamp(now))
        } else {
            update.update_expression("REMOVE suspended_at")
        };
        applied("UpdateItem", update.send().await)
    }

    /// Every tenant, for the jobs that visit them all. A Scan: the table holds
    /// tenants and their keys only, a few items per tenant.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut tenants = Vec::new();
        let mut pages = self
            .db
            .client
            .scan()
            .table_name(&self.name)
            .filter_expression("sk = :tenant")
            .expression_attribute_values(":tenant", s(keys::TENANT_SK))
            .projection_expression("pk")
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("Scan", e))?;
            for item in page.items() {
                let tenant = text(item, keys::PK)
                    .and_then(|pk| keys::tenant_of_pk(&pk).map(str::to_owned))
                    .and_then(|t| TenantId::parse(&t).ok())
                    .ok_or_else(|| StoreError::corrupt("tenant"))?;
                tenants.push(tenant);
            }
        }
        Ok(tenants)
    }

    /// The tenant's record, only the attributes named (None: no such tenant).
    async fn tenant_record(
        &self,
        tenant: &TenantId,
        projection: &str,
    ) -> Result<Option<Item>, StoreError> {
        let key = Item::from([
            (keys::PK.to_owned(), s(keys::tenant_pk(tenant))),
            (keys::SK.to_owned(), s(keys::TENANT_SK)),
        ]);
        self.db.get(&self.name, key, Some(projection)).await
    }

    /// Lowers (or restores) the tenant's raw-event retention; false if no such tenant.
    pub async fn set_raw_event_retention(
        &self,
        tenant: &TenantId,
        retention: RawEventRetention,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_tenant(tenant)
            .update_expression("SET raw_event_days = :days, updated_at = :now")
            .expression_attribute_values(":days", n(retention.as_days()))
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }
}

impl TenantTable {
    /// Whether the tenant opted out of the re-training export (none of its
    /// data is exported; docs/decisions/0018). None: no such tenant.
    pub async fn model_training_opt_out(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<bool>, StoreError> {
        Ok(self
            .tenant_record(tenant, "pk, model_training_opt_out")
            .await?
            .map(|item| {
                item.get("model_training_opt_out")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false)
            }))
    }

    /// Opts the tenant out of (or back into) the re-training export; false if no such tenant.
    pub async fn set_model_training_opt_out(
        &self,
        tenant: &TenantId,
        opted_out: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .update_tenant(tenant)
            .update_expression("SET model_training_opt_out = :out, updated_at = :now")
            .expression_attribute_values(
                ":out",
                aws_sdk_dynamodb::types::AttributeValue::Bool(opted_out),
            )
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }
}

impl TenantTable {
    /// Sets (or, with None, clears: the tenant stays) the last day of the
    /// tenant's contract with vigil: everything of the tenant is purged 3 years
    /// after it (docs/decisions/0019). False if no such tenant.
    pub async fn set_contract_end(
        &self,
        tenant: &TenantId,
        last_day: Option<time::Date>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = self
            .update_tenant(tenant)
            .expression_attribute_values(":now", timestamp(now));
        let update = match last_day {
            Some(day) => update
                .update_expression("SET contract_end = :end, updated_at = :now")
                .expression_attribute_values(":end", s(crate::domain::rollup::day_label(day))),
            None => update.update_expression("SET updated_at = :now REMOVE contract_end"),
        };
        applied("UpdateItem", update.send().await)
    }
}

impl TenantSettings for TenantTable {
    async fn raw_event_retention(
        &self,
        tenant: &TenantId,
    ) -> Result<RawEventRetention, StoreError> {
        let days = self
            .tenant_record(tenant, "raw_event_days")
            .await?
            .as_ref()
            .and_then(|item| item.get("raw_event_days"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        match days {
            None => Ok(RawEventRetention::default()),
            Some(days) => {
                RawEventRetention::days(days).ok_or_else(|| StoreError::corrupt("tenant retention"))
            }
        }
    }
}

impl AccessStore for TenantTable {
    async fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .db
            .client
            .put_item()
            .table_name(&self.name)
            .item(keys::PK, s(keys::tenant_pk(tenant)))
            .item(keys::SK, s(keys::TENANT_SK))
            .item("name", s(name))
            .item("created_at", timestamp(now))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        applied("PutItem", result)
    }

    async fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(self.tenant_record(tenant, "pk").await?.is_some())
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.db
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(key_item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("PutItem", e))
    }

    /// The key and its tenant's record in one BatchGetItem: a suspended tenant's
    /// keys are refused at no extra round trip.
    async fn get_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let item_key = |sk: String| {
            Item::from([
                (keys::PK.to_owned(), s(keys::tenant_pk(tenant))),
                (keys::SK.to_owned(), s(sk)),
            ])
        };
        let items = self
            .db
            .batch_get(
                &self.name,
                vec![
                    item_key(keys::api_key_sk(key_id)),
                    item_key(keys::TENANT_SK.to_owned()),
                ],
                None,
            )
            .await?;
        let is = |item: &&Item, sk: &str| text(item, keys::SK).as_deref() == Some(sk);
        let suspended = items
            .iter()
            .find(|item| is(item, keys::TENANT_SK))
            .is_some_and(|item| item.contains_key("suspended_at"));
        let key_sk = keys::api_key_sk(key_id);
        items
            .iter()
            .find(|item| is(item, &key_sk))
            .map(|item| {
                key_record(tenant, item).map(|mut record| {
                    record.tenant_suspended = suspended;
                    record
                })
            })
            .transpose()
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::tenant_pk(tenant)))
            .expression_attribute_values(":prefix", s(keys::KEY_SK_PREFIX));
        self.db
            .query(query, None)
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
            .update_key(tenant, key_id)
            .update_expression("SET revoked_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        if applied("UpdateItem", result)? {
            return Ok(Revocation::Revoked);
        }
        Ok(match self.get_key(tenant, key_id).await? {
            Some(_) => Revocation::AlreadyRevoked,
            None => Revocation::NotFound,
        })
    }

    async fn record_key_use(
        &self,
        tenant: &TenantId,
        key_id: &str,
        hour: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .update_key(tenant, key_id)
            .update_expression("SET last_used_hour = :hour")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(last_used_hour) OR last_used_hour <> :hour)",
            )
            .expression_attribute_values(":hour", s(hour))
            .send()
            .await;
        // A failed condition means another request recorded this hour already.
        applied("UpdateItem", result).map(|_| ())
    }
}
