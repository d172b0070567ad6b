//! Aggregates table: the rollups of each account (hour, day and month items of
//! counters and active-user sketches), a copy of its support and billing events,
//! and the tenant's account directory (docs/decisions/0015). Ingestion adds to
//! them inside the transaction that stores the events (`ingest.rs`); the
//! dashboard reads them; the admin API writes contracts into the directory.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::codec::{date_of, is_live, n, s, text, timestamp, Item, EXPIRES_AT};
use super::{failed, table_name, unbuildable, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::account::AccountContract;
use crate::domain::retention;
use crate::domain::rollup::{day_label, Rollup};
use crate::domain::sketch::ActiveUsers;
use crate::domain::{AccountId, AggregateDelta, EventData, HourBucket, StoredEvent, TenantId};
use crate::keys;
use crate::ports::{
    AccountEntry, AccountRegistry, Activity, DashboardStore, Granularity, HourlyUsage, StoreError,
    UsageStore,
};

/// Whether a rollup change adds events or takes them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

/// The number-set attribute holding a rollup's active-user sketch.
const USERS: &str = "users";
/// Attributes of a rollup item that are not counters.
const NOT_COUNTERS: [&str; 2] = [EXPIRES_AT, "updated_at"];

/// Directory entries read per Query.
const DIRECTORY_PAGE: i32 = 2000;

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

    /// The updates adding `delta` (one account-hour) to its hour, day and month
    /// rollups and to the account's directory entry, as actions of the ingestion
    /// transaction that stores the delta's events.
    pub(crate) fn add_actions(
        &self,
        tenant: &TenantId,
        delta: &AggregateDelta,
        now: OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        self.change_actions(tenant, delta, Change::Add, now)
    }

    /// The updates adding `delta` to, or taking it out of, its rollups: a
    /// restriction, an objection to analytics or an erasure takes the person's
    /// events out; lifting it puts them back (docs/decisions/0016).
    pub(crate) fn change_actions(
        &self,
        tenant: &TenantId,
        delta: &AggregateDelta,
        change: Change,
        now: OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let pk = keys::account_pk(tenant, &delta.account);
        let day = delta.hour.start().date();
        let sign = |counters: Vec<(String, u64)>| -> Vec<(String, i64)> {
            counters
                .into_iter()
                .map(|(name, amount)| {
                    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
                    (
                        name,
                        if change == Change::Add {
                            amount
                        } else {
                            -amount
                        },
                    )
                })
                .collect()
        };
        let counters = sign(delta.counters());
        let mut actions = vec![
            self.add(
                &pk,
                keys::aggregate_sk(delta.hour),
                &counters,
                &delta.users,
                change,
                now,
            )?,
            self.add(&pk, keys::day_sk(day), &counters, &delta.users, change, now)?,
            self.add(
                &pk,
                keys::month_sk(day),
                &sign(delta.month_counters()),
                &delta.users,
                change,
                now,
            )?,
        ];
        let factor = if change == Change::Add { 1 } else { -1 };
        let directory = [
            ("events".to_owned(), factor * delta.events as i64),
            (
                "open_tickets".to_owned(),
                factor * delta.open_tickets_change(),
            ),
        ];
        actions.push(self.add(
            &keys::accounts_pk(tenant),
            keys::account_entry_sk(&delta.account),
            &directory,
            &BTreeSet::new(),
            change,
            now,
        )?);
        Ok(actions)
    }

    /// One `SET updated_at ADD counters, users` update (`DELETE users` when
    /// taking out: the person's sketch elements leave the set).
    fn add<T: std::fmt::Display>(
        &self,
        pk: &str,
        sk: String,
        counters: &[(String, T)],
        users: &BTreeSet<u64>,
        change: Change,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut expression = String::from("SET updated_at = :now");
        let mut update = Update::builder()
            .table_name(&self.name)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk))
            .expression_attribute_values(":now", timestamp(now));
        let mut terms = Vec::with_capacity(counters.len() + 1);
        for (i, (name, amount)) in counters.iter().enumerate() {
            terms.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(amount));
        }
        let mut removed = None;
        if !users.is_empty() {
            // `users` is a DynamoDB reserved word: always through a placeholder.
            let term = "#users :users".to_owned();
            if change == Change::Add {
                terms.push(term);
            } else {
                removed = Some(term);
            }
            update = update
                .expression_attribute_names("#users", USERS)
                .expression_attribute_values(
                    ":users",
                    AttributeValue::Ns(users.iter().map(u64::to_string).collect()),
                );
        }
        if !terms.is_empty() {
            expression.push_str(" ADD ");
            expression.push_str(&terms.join(", "));
        }
        if let Some(term) = removed {
            expression.push_str(" DELETE ");
            expression.push_str(&term);
        }
        let update = update
            .update_expression(expression)
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The copy of a support or billing event kept for the account page (None
    /// for other sources), expiring with the raw event.
    pub(crate) fn activity_action(
        &self,
        tenant: &TenantId,
        event: &StoredEvent,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        let Some(mut item) = activity_fields(event) else {
            return Ok(None);
        };
        item.insert(keys::PK.into(), s(keys::account_pk(tenant, &event.account)));
        item.insert(keys::SK.into(), s(keys::activity_sk(event.time, &event.id)));
        item.insert("ts".into(), timestamp(event.time));
        if let Some(at) = expires_at {
            item.insert(EXPIRES_AT.into(), n(at.unix_timestamp()));
        }
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(Some(TransactWriteItem::builder().put(put).build()))
    }

    /// Deletes the account-page copy of a support or billing event (None for
    /// other sources): the event is withheld from analytics or erased.
    pub(crate) fn activity_delete_action(
        &self,
        tenant: &TenantId,
        event: &StoredEvent,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        if activity_fields(event).is_none() {
            return Ok(None);
        }
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.name)
            .key(keys::PK, s(keys::account_pk(tenant, &event.account)))
            .key(keys::SK, s(keys::activity_sk(event.time, &event.id)))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(Some(TransactWriteItem::builder().delete(delete).build()))
    }
}

/// Whether an event is copied for the account page.
pub fn has_activity_copy(event: &StoredEvent) -> bool {
    event.counted()
        && matches!(
            event.data,
            EventData::SupportTicket { .. } | EventData::Billing { .. }
        )
}

fn activity_fields(event: &StoredEvent) -> Option<Item> {
    let mut item = Item::new();
    item.insert("source".into(), s(event.data.source().as_str()));
    match &event.data {
        EventData::SupportTicket {
            ticket_id,
            priority,
            status,
        } => {
            item.insert("reference".into(), s(ticket_id));
            item.insert("priority".into(), s(*priority));
            item.insert("status".into(), s(*status));
        }
        EventData::Billing {
            invoice_id,
            amount,
            currency,
            status,
        } => {
            item.insert("reference".into(), s(invoice_id));
            item.insert("amount".into(), AttributeValue::N(amount.clone()));
            item.insert("currency".into(), s(currency));
            item.insert("status".into(), s(*status));
        }
        _ => return None,
    }
    Some(item)
}

/// A rollup item's counters and sketch.
fn rollup_of(item: &Item) -> Rollup {
    let counters = item
        .iter()
        .filter(|(name, _)| !NOT_COUNTERS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.clone(), value.as_n().ok()?.parse().ok()?)))
        .collect();
    let users = item
        .get(USERS)
        .and_then(|v| v.as_ns().ok())
        .map(|set| ActiveUsers::from_elements(set.iter().filter_map(|e| e.parse().ok())))
        .unwrap_or_default();
    Rollup { counters, users }
}

/// A directory item as an entry.
fn entry_of(item: &Item) -> Result<AccountEntry, StoreError> {
    let account = text(item, keys::SK)
        .and_then(|sk| keys::account_of_entry_sk(&sk).map(str::to_owned))
        .and_then(|a| AccountId::parse(&a).ok())
        .ok_or_else(|| StoreError::corrupt("account entry"))?;
    let registered = item
        .get("registered")
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false);
    let contract = registered.then(|| AccountContract {
        name: text(item, "name").unwrap_or_default(),
        plan: text(item, "plan"),
        monthly_quota: item
            .get("monthly_quota")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
        relationship_start: date_of(item, "relationship_start"),
        relationship_end: date_of(item, "relationship_end"),
        tags: item
            .get("tags")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|t| t.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
    });
    let quota_lowered_on = date_of(item, "quota_lowered_on");
    let open_tickets = item
        .get("open_tickets")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0) as u64;
    Ok(AccountEntry {
        account,
        contract,
        open_tickets,
        registered_at: text(item, "registered_at"),
        updated_at: text(item, "updated_at"),
        quota_lowered_on,
    })
}

impl UsageStore for AggregateTable {
    async fn hourly_usage(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: HourBucket,
        to: HourBucket,
    ) -> Result<Vec<HourlyUsage>, StoreError> {
        let hours = self
            .rollups(
                tenant,
                account,
                Granularity::Hour,
                &from.label(),
                &to.label(),
            )
            .await?;
        Ok(hours
            .into_iter()
            .map(|(hour, rollup)| HourlyUsage {
                hour,
                counters: rollup.counters.into_iter().collect(),
            })
            .collect())
    }
}

impl DashboardStore for AggregateTable {
    async fn accounts(&self, tenant: &TenantId) -> Result<Vec<AccountEntry>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::accounts_pk(tenant)))
            // Pages of 2,000 entries (about 600 KB) rather than 1 MB: the same
            // read units, and each answer stays quick (the emulator takes seconds
            // over a 1 MB page, past the SDK's attempt timeout).
            .limit(DIRECTORY_PAGE);
        let now = OffsetDateTime::now_utc();
        self.db
            .query(query, None)
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .map(entry_of)
            .collect()
    }

    async fn account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Option<AccountEntry>, StoreError> {
        let key = Item::from([
            (keys::PK.to_owned(), s(keys::accounts_pk(tenant))),
            (keys::SK.to_owned(), s(keys::account_entry_sk(account))),
        ]);
        let now = OffsetDateTime::now_utc();
        match self.db.get(&self.name, key, None).await? {
            Some(item) if is_live(&item, now) => entry_of(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn rollups(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        granularity: Granularity,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Rollup)>, StoreError> {
        let prefix = match granularity {
            Granularity::Hour => "H#",
            Granularity::Day => keys::DAY_SK_PREFIX,
            Granularity::Month => keys::MONTH_SK_PREFIX,
        };
        // Summaries tolerate a read that misses the last instant's writes.
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(keys::account_pk(tenant, account)))
            .expression_attribute_values(":from", s(format!("{prefix}{from}")))
            .expression_attribute_values(":to", s(format!("{prefix}{to}")));
        let now = OffsetDateTime::now_utc();
        self.db
            .query(query, None)
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .map(|item| {
                let label = text(item, keys::SK)
                    .and_then(|sk| sk.strip_prefix(prefix).map(str::to_owned))
                    .ok_or_else(|| StoreError::corrupt("rollup"))?;
                Ok((label, rollup_of(item)))
            })
            .collect()
    }

    async fn recent_activity(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
    ) -> Result<Vec<Activity>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :x)")
            .expression_attribute_values(":pk", s(keys::account_pk(tenant, account)))
            .expression_attribute_values(":x", s(keys::ACTIVITY_SK_PREFIX))
            .scan_index_forward(false);
        let now = OffsetDateTime::now_utc();
        Ok(self
            .db
            .query(query, Some(limit))
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .map(|item| Activity {
                time: text(item, "ts").unwrap_or_default(),
                source: text(item, "source").unwrap_or_default(),
                status: text(item, "status").unwrap_or_default(),
                reference: text(item, "reference").unwrap_or_default(),
                priority: text(item, "priority"),
                amount: item.get("amount").and_then(|v| v.as_n().ok()).cloned(),
                currency: text(item, "currency"),
            })
            .collect())
    }
}

impl AccountRegistry for AggregateTable {
    async fn register_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        contract: &AccountContract,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // Every attribute through a placeholder (`name` is a reserved word).
        let mut set = vec![
            "#name = :name",
            "#registered = :true",
            "#registered_at = if_not_exists(#registered_at, :now)",
            "#updated_at = :now",
            "#tags = :tags",
        ];
        let mut remove = Vec::new();
        let mut update = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .key(keys::PK, s(keys::accounts_pk(tenant)))
            .key(keys::SK, s(keys::account_entry_sk(account)))
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#registered", "registered")
            .expression_attribute_names("#registered_at", "registered_at")
            .expression_attribute_names("#updated_at", "updated_at")
            .expression_attribute_names("#tags", "tags")
            .expression_attribute_values(":name", s(&contract.name))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":now", timestamp(now))
            .expression_attribute_values(
                ":tags",
                AttributeValue::L(contract.tags.iter().map(s).collect()),
            )
            .return_values(ReturnValue::AllOld);
        // An end date puts the entry in `by_expiry` for the purge to act on now:
        // stamp the account's items with the expiry, or delete them if it passed.
        let expiry_key = contract
            .relationship_end
            .map(|_| s(keys::expiry_index_pk(tenant)));
        let purge_at = contract.relationship_end.map(|_| n(now.unix_timestamp()));
        let optional: [(&str, Option<AttributeValue>); 7] = [
            ("plan", contract.plan.as_ref().map(s)),
            ("monthly_quota", contract.monthly_quota.map(n)),
            (
                "relationship_start",
                contract.relationship_start.map(|d| s(day_label(d))),
            ),
            (
                "relationship_end",
                contract.relationship_end.map(|d| s(day_label(d))),
            ),
            // Kept until 3 years after the end of the relationship's last day.
            (
                EXPIRES_AT,
                contract
                    .relationship_end
                    .map(|end| n(retention::after_last_day(end).unix_timestamp())),
            ),
            (keys::EXPIRY_KEY, expiry_key),
            (keys::PURGE_AT, purge_at),
        ];
        let mut placeholders = Vec::new();
        for (i, (name, value)) in optional.into_iter().enumerate() {
            update = update.expression_attribute_names(format!("#o{i}"), name);
            match value {
                Some(value) => {
                    placeholders.push(format!("#o{i} = :o{i}"));
                    update = update.expression_attribute_values(format!(":o{i}"), value);
                }
                None => remove.push(format!("#o{i}")),
            }
        }
        set.extend(placeholders.iter().map(String::as_str));
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let out = update
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| failed("UpdateItem", e))?;
        let old = out.attributes.unwrap_or_default();
        let was_registered = old
            .get("registered")
            .is_some_and(|v| *v == AttributeValue::Bool(true));
        // A lower quota than before is a downgrade: its day is kept for the
        // export's outcome label (docs/decisions/0018).
        let old_quota: Option<u64> = old
            .get("monthly_quota")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        if let (Some(before), Some(now_quota)) = (old_quota, contract.monthly_quota) {
            if now_quota < before {
                self.db
                    .client
                    .update_item()
                    .table_name(&self.name)
                    .key(keys::PK, s(keys::accounts_pk(tenant)))
                    .key(keys::SK, s(keys::account_entry_sk(account)))
                    .update_expression("SET quota_lowered_on = :day")
                    .expression_attribute_values(":day", s(day_label(now.date())))
                    .send()
                    .await
                    .map_err(|e| failed("UpdateItem", e))?;
            }
        }
        // Reopened while its items carry the old expiry: back in the index, so
        // the purge takes the expiry off them (docs/decisions/0019).
        if contract.relationship_end.is_none() && old.contains_key("stamped_expiry") {
            let result = self
                .db
                .client
                .update_item()
                .table_name(&self.name)
                .key(keys::PK, s(keys::accounts_pk(tenant)))
                .key(keys::SK, s(keys::account_entry_sk(account)))
                .update_expression("SET #k = :k, #at = :now")
                .condition_expression("attribute_not_exists(relationship_end)")
                .expression_attribute_names("#k", keys::EXPIRY_KEY)
                .expression_attribute_names("#at", keys::PURGE_AT)
                .expression_attribute_values(":k", s(keys::expiry_index_pk(tenant)))
                .expression_attribute_values(":now", n(now.unix_timestamp()))
                .send()
                .await;
            super::applied("UpdateItem", result)?;
        }
        Ok(!was_registered)
    }
}
