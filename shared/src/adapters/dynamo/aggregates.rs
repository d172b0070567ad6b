//! Aggregates table: one item of counters per account-hour. Ingestion adds to
//! them inside the transaction that stores the events (`ingest.rs`); the
//! dashboard reads ranges of hours.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use time::OffsetDateTime;

use super::codec::{is_live, n, s, text, timestamp};
use super::{table_name, unbuildable, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::{AccountId, AggregateDelta, HourBucket, TenantId};
use crate::keys;
use crate::ports::{HourlyUsage, StoreError, UsageStore};

#[derive(Debug, Clone)]
pub struct AggregateTable {
    db: Dynamo,
    name: String,
}

impl AggregateTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::AggregatesTable)?,
        })
    }

    /// The update adding `delta` to its account-hour aggregate, as one action of
    /// the ingestion transaction that stores the delta's events.
    pub(crate) fn add_action(
        &self,
        tenant: &TenantId,
        delta: &AggregateDelta,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let counters = delta.counters();
        let mut expression = String::from("SET updated_at = :now ADD ");
        let mut update = Update::builder()
            .table_name(&self.name)
            .key(keys::PK, s(keys::account_pk(tenant, &delta.account)))
            .key(keys::SK, s(keys::aggregate_sk(delta.hour)))
            .expression_attribute_values(":now", timestamp(now));
        for (i, (name, amount)) in counters.iter().enumerate() {
            if i > 0 {
                expression.push_str(", ");
            }
            expression.push_str(&format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(amount));
        }
        let update = update
            .update_expression(expression)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

impl UsageStore for AggregateTable {
    async fn hourly_usage(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: HourBucket,
        to: HourBucket,
    ) -> Result<Vec<HourlyUsage>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(keys::account_pk(tenant, account)))
            .expression_attribute_values(":from", s(keys::aggregate_sk(from)))
            .expression_attribute_values(":to", s(keys::aggregate_sk(to)));
        let now = OffsetDateTime::now_utc();
        self.db
            .query(query, None)
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .map(|item| {
                let hour = text(item, keys::SK)
                    .and_then(|sk| keys::aggregate_hour(&sk).map(str::to_owned))
                    .ok_or_else(|| StoreError::corrupt("aggregate"))?;
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
