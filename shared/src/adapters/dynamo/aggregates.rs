//! Aggregates table: one item of counters per account-hour. Ingestion adds to
//! them; the dashboard reads ranges of hours.

use futures_util::stream::{self, StreamExt};

use super::codec::{n, now, s, text};
use super::{failed, table_name, Dynamo, CONCURRENT_WRITES};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::{AccountId, AggregateDelta, HourBucket, TenantId};
use crate::keys;
use crate::ports::{AggregateStore, Failures, HourlyUsage, StoreError, UsageStore};

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

    async fn add(&self, tenant: &TenantId, delta: &AggregateDelta) -> Result<(), StoreError> {
        let counters = delta.counters();
        let mut expression = String::from("SET updated_at = :now ADD ");
        let mut request = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::account_pk(tenant, &delta.account)))
            .key(keys::SK, s(keys::aggregate_sk(delta.hour)))
            .expression_attribute_values(":now", now());
        for (i, (name, amount)) in counters.iter().enumerate() {
            if i > 0 {
                expression.push_str(", ");
            }
            expression.push_str(&format!("#c{i} :c{i}"));
            request = request
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(amount));
        }
        request
            .update_expression(expression)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("UpdateItem", e))
    }
}

impl AggregateStore for AggregateTable {
    async fn add_aggregates(&self, tenant: &TenantId, deltas: &[AggregateDelta]) -> Failures {
        let updates: Vec<_> = deltas.iter().map(|delta| self.add(tenant, delta)).collect();
        let outcomes: Vec<Result<(), StoreError>> = stream::iter(updates)
            .buffered(CONCURRENT_WRITES)
            .collect()
            .await;
        outcomes
            .into_iter()
            .enumerate()
            .filter_map(|(i, outcome)| outcome.err().map(|e| (i, e)))
            .collect()
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
        self.db
            .query(query, None)
            .await?
            .iter()
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
