//! What the retention purge reads and deletes (docs/decisions/0019), one
//! method per step; the order, the budget and the proof are the use case's
//! (`app::purge`).
//!
//! Everything is found by key or index, never by scanning a table, except a
//! leaving tenant's subjects (a prefix scan, once in the tenant's life). Items
//! are deleted 25 keys a BatchWriteItem. A partition is deleted by reading its
//! first page again until it is empty: a consistent read of what is left is
//! the checkpoint, so an interrupted purge continues where it stopped and
//! counts nothing twice.

use std::collections::BTreeSet;

use time::{Date, OffsetDateTime};

use super::codec::{date_of, key_of, n, num, s, text, time_of, timestamp, Item, EXPIRES_AT};
use super::{applied, failed, table_name, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::{AccountId, RawEventRetention, TenantId};
use crate::keys;
use crate::ports::StoreError;

/// Keys read per page before they are deleted (a Query page is 1 MB at most;
/// keys are small, so this is what bounds a page).
pub const PAGE_KEYS: i32 = 1000;

/// The tables the purge works on, by the template's logical id.
#[derive(Debug, Clone)]
pub struct PurgeTables {
    db: Dynamo,
    events: String,
    aggregates: String,
    subjects: String,
    tenants: String,
    audit: String,
    privacy: String,
    alerts: String,
}

/// An account whose directory entry is in `by_expiry`, as its entry reads now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAccount {
    pub account: AccountId,
    /// When the purge must act (as the entry holds it: the condition of what it writes).
    pub purge_at: i64,
    /// When its data expires (None: the relationship was reopened).
    pub expires_at: Option<i64>,
    /// The expiry its items carry (None: none).
    pub stamped: Option<i64>,
}

/// What the purge needs of a tenant's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRetention {
    pub raw_events: RawEventRetention,
    pub contract_end: Option<Date>,
    /// Events before this instant are already purged (None: never purged).
    pub events_purged_before: Option<OffsetDateTime>,
    pub created_at: Option<OffsetDateTime>,
}

/// One item read for deletion: its key, the pseudonym it names (events), and
/// the key of its activity copy (support and billing events).
#[derive(Debug, Clone)]
pub struct Doomed {
    pub key: Item,
    pub subject_key: Option<String>,
    pub copy: Option<Item>,
}

/// One page of items read for deletion.
#[derive(Debug, Default)]
pub struct KeyPage {
    pub items: Vec<Doomed>,
    /// Where to continue (None: the last page).
    pub next: Option<Item>,
}

fn key(pk: String, sk: String) -> Item {
    Item::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn only_key(item: &Item, with_sk: bool) -> Item {
    item.iter()
        .filter(|(name, _)| *name == keys::PK || (with_sk && *name == keys::SK))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl PurgeTables {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            events: table_name(config, Setting::EventsTable)?,
            aggregates: table_name(config, Setting::AggregatesTable)?,
            subjects: table_name(config, Setting::SubjectsTable)?,
            tenants: table_name(config, Setting::TenantsTable)?,
            audit: table_name(config, Setting::AuditTable)?,
            privacy: table_name(config, Setting::PrivacyTable)?,
            alerts: table_name(config, Setting::AlertsTable)?,
        })
    }

    /// The configured name of a table by its logical id.
    fn table(&self, logical: &str) -> &str {
        match logical {
            "EventsTable" => &self.events,
            "AggregatesTable" => &self.aggregates,
            "SubjectsTable" => &self.subjects,
            "TenantsTable" => &self.tenants,
            "AuditTable" => &self.audit,
            "PrivacyTable" => &self.privacy,
            _ => &self.alerts,
        }
    }

    // ------------------------------------------------------------ tenants

    pub async fn tenant_retention(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantRetention>, StoreError> {
        let item = self
            .db
            .get(
                &self.tenants,
                key(keys::tenant_pk(tenant), keys::TENANT_SK.to_owned()),
                Some("raw_event_days, contract_end, events_purged_before, created_at"),
            )
            .await?;
        Ok(item.map(|item| TenantRetention {
            raw_events: num::<i64>(&item, "raw_event_days")
                .and_then(RawEventRetention::days)
                .unwrap_or_default(),
            contract_end: date_of(&item, "contract_end"),
            events_purged_before: time_of(&item, "events_purged_before"),
            created_at: time_of(&item, "created_at"),
        }))
    }

    /// Moves the tenant's raw-event watermark forward (never back).
    pub async fn set_events_purged_before(
        &self,
        tenant: &TenantId,
        before: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .db
            .client
            .update_item()
            .table_name(&self.tenants)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::TENANT_SK))
            .update_expression("SET events_purged_before = :at")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(events_purged_before) OR events_purged_before < :at)",
            )
            .expression_attribute_values(":at", timestamp(before))
            .send()
            .await;
        applied("UpdateItem", result).map(|_| ())
    }

    /// Takes the tenant's purge lease for `holder` until `until`, unless
    /// another run holds it (false): two runs never work on one tenant at once.
    pub async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .db
            .client
            .put_item()
            .table_name(&self.tenants)
            .item(keys::PK, s(keys::tenant_pk(tenant)))
            .item(keys::SK, s(keys::PURGE_LEASE_SK))
            .item("holder", s(holder))
            .item("lease_until", n(until.unix_timestamp()))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now")
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .send()
            .await;
        applied("PutItem", result)
    }

    /// Gives the lease back (if this run still holds it).
    pub async fn release_lease(&self, tenant: &TenantId, holder: &str) -> Result<(), StoreError> {
        let result = self
            .db
            .client
            .delete_item()
            .table_name(&self.tenants)
            .key(keys::PK, s(keys::tenant_pk(tenant)))
            .key(keys::SK, s(keys::PURGE_LEASE_SK))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        applied("DeleteItem", result).map(|_| ())
    }

    // ------------------------------------------------------------ accounts

    /// Accounts of `tenant` the purge must act on by `until` (epoch seconds),
    /// from the `by_expiry` index: one page from `start`.
    pub async fn due_accounts(
        &self,
        tenant: &TenantId,
        until: i64,
        start: Option<Item>,
    ) -> Result<(Vec<(AccountId, i64)>, Option<Item>), StoreError> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.aggregates)
            .index_name(keys::BY_EXPIRY)
            .key_condition_expression("#k = :pk AND #at <= :until")
            .expression_attribute_names("#k", keys::EXPIRY_KEY)
            .expression_attribute_names("#at", keys::PURGE_AT)
            .expression_attribute_values(":pk", s(keys::expiry_index_pk(tenant)))
            .expression_attribute_values(":until", n(until))
            .set_exclusive_start_key(start)
            .limit(PAGE_KEYS)
            .send()
            .await
            .map_err(|e| failed("Query", e))?;
        let mut due = Vec::new();
        for item in out.items() {
            let account = key_of(item)
                .1
                .and_then(keys::account_of_entry_sk)
                .and_then(|a| AccountId::parse(a).ok())
                .ok_or_else(|| StoreError::corrupt("directory entry"))?;
            due.push((account, num(item, keys::PURGE_AT).unwrap_or(0)));
        }
        Ok((due, out.last_evaluated_key))
    }

    /// The account's directory entry as it is now (the index lags).
    pub async fn due_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Option<DueAccount>, StoreError> {
        let item = self
            .db
            .get(
                &self.aggregates,
                key(keys::accounts_pk(tenant), keys::account_entry_sk(account)),
                Some("purge_at, expires_at, stamped_expiry"),
            )
            .await?;
        Ok(item.and_then(|item| {
            Some(DueAccount {
                account: account.clone(),
                purge_at: num(&item, keys::PURGE_AT)?,
                expires_at: num(&item, EXPIRES_AT),
                stamped: num(&item, "stamped_expiry"),
            })
        }))
    }

    /// One page of the rollups and alert state that carry the account's expiry
    /// as a backstop (activity copies and events expire sooner by their own).
    pub async fn stamp_page(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        expires_at: Option<i64>,
        start: Option<Item>,
    ) -> Result<(u64, Option<Item>), StoreError> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.aggregates)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::account_pk(tenant, account)))
            .projection_expression("pk, sk, expires_at")
            .consistent_read(true)
            .set_exclusive_start_key(start.clone())
            .limit(PAGE_KEYS)
            .send()
            .await
            .map_err(|e| failed("Query", e))?;
        let mut targets: Vec<(String, Item)> = out
            .items()
            .iter()
            .filter(|item| {
                let sk = key_of(item).1.unwrap_or_default();
                !sk.starts_with(keys::ACTIVITY_SK_PREFIX)
                    && num::<i64>(item, EXPIRES_AT) != expires_at
            })
            .map(|item| (self.aggregates.clone(), only_key(item, true)))
            .collect();
        if start.is_none() {
            let state = key(keys::alert_state_pk(tenant), keys::alert_state_sk(account));
            targets.push((self.alerts.clone(), state));
        }
        let mut written = 0;
        for (table, item_key) in targets {
            let update = self
                .db
                .client
                .update_item()
                .table_name(table)
                .set_key(Some(item_key))
                .condition_expression("attribute_exists(pk)");
            let update = match expires_at {
                Some(at) => update
                    .update_expression("SET expires_at = :at")
                    .expression_attribute_values(":at", n(at)),
                None => update.update_expression("REMOVE expires_at"),
            };
            if applied("UpdateItem", update.send().await)? {
                written += 1;
            }
        }
        Ok((written, out.last_evaluated_key))
    }

    /// Records that the account's items carry `stamped` and when the purge acts
    /// next (None: never: the entry leaves the index), unless the contract
    /// changed meanwhile (false: the next run starts over).
    pub async fn finish_stamp(
        &self,
        tenant: &TenantId,
        due: &DueAccount,
    ) -> Result<bool, StoreError> {
        let update = self
            .db
            .client
            .update_item()
            .table_name(&self.aggregates)
            .key(keys::PK, s(keys::accounts_pk(tenant)))
            .key(keys::SK, s(keys::account_entry_sk(&due.account)))
            .condition_expression("#at = :seen")
            .expression_attribute_names("#at", keys::PURGE_AT)
            .expression_attribute_values(":seen", n(due.purge_at));
        let update = match due.expires_at {
            Some(at) => update
                .update_expression("SET stamped_expiry = :at, #at = :at")
                .expression_attribute_values(":at", n(at)),
            None => update
                .update_expression("REMOVE stamped_expiry, #at, #k")
                .expression_attribute_names("#k", keys::EXPIRY_KEY),
        };
        applied("UpdateItem", update.send().await)
    }

    /// One page of a partition's keys (optionally those whose sort key starts
    /// with `prefix`), from the start: what an earlier page deleted is gone.
    pub async fn partition_page(
        &self,
        table: &'static str,
        pk: &str,
        prefix: Option<&str>,
        start: Option<Item>,
    ) -> Result<KeyPage, StoreError> {
        let has_sk = table != "SubjectsTable";
        let query = self
            .db
            .client
            .query()
            .table_name(self.table(table))
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .limit(PAGE_KEYS)
            .set_exclusive_start_key(start);
        let query = match prefix {
            Some(prefix) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("pk = :pk"),
        };
        let query = if table == "EventsTable" {
            query.projection_expression("pk, sk, subject_key, #src, ts")
        } else if has_sk {
            query.projection_expression("pk, sk")
        } else {
            query.projection_expression("pk")
        };
        let query = if table == "EventsTable" {
            query.expression_attribute_names("#src", "source")
        } else {
            query
        };
        let out = query.send().await.map_err(|e| failed("Query", e))?;
        Ok(key_page(
            out.items.unwrap_or_default(),
            has_sk,
            out.last_evaluated_key,
        ))
    }

    /// One page of a tenant's events of `month` in `shard` whose time is before
    /// `cutoff` (the by_month index: events sort by time in it).
    pub async fn expired_events_page(
        &self,
        tenant: &TenantId,
        month: &str,
        shard: u32,
        cutoff: OffsetDateTime,
        start: Option<Item>,
    ) -> Result<KeyPage, StoreError> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.events)
            .index_name(keys::BY_MONTH)
            .key_condition_expression("#m = :pk AND ts < :cutoff")
            .expression_attribute_names("#m", keys::MONTH_KEY)
            .expression_attribute_names("#src", "source")
            .expression_attribute_values(":pk", s(keys::month_shard_pk(tenant, month, shard)))
            .expression_attribute_values(":cutoff", timestamp(cutoff))
            .projection_expression("pk, sk, subject_key, #src, ts")
            .set_exclusive_start_key(start)
            .limit(PAGE_KEYS)
            .send()
            .await
            .map_err(|e| failed("Query", e))?;
        Ok(key_page(
            out.items.unwrap_or_default(),
            true,
            out.last_evaluated_key,
        ))
    }

    /// Deletes one item (only if its `purge_at` is still `purge_at`, when
    /// given); with `dry_run`, tells whether it is there. True if it was.
    pub async fn delete_one(
        &self,
        table: &'static str,
        (pk, sk): (String, String),
        purge_at: Option<i64>,
        dry_run: bool,
    ) -> Result<bool, StoreError> {
        if dry_run {
            let item = self
                .db
                .get(self.table(table), key(pk, sk), Some("pk"))
                .await?;
            return Ok(item.is_some());
        }
        let delete = self
            .db
            .client
            .delete_item()
            .table_name(self.table(table))
            .set_key(Some(key(pk, sk)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        let delete = match purge_at {
            Some(at) => delete
                .condition_expression("#at = :seen")
                .expression_attribute_names("#at", keys::PURGE_AT)
                .expression_attribute_values(":seen", n(at)),
            None => delete,
        };
        match delete.send().await {
            Ok(out) => Ok(out.attributes.is_some_and(|a| !a.is_empty())),
            Err(e) if super::is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(failed("DeleteItem", e)),
        }
    }

    pub async fn delete(
        &self,
        table: &'static str,
        item_keys: Vec<Item>,
    ) -> Result<(), StoreError> {
        self.db.batch_delete(self.table(table), item_keys).await
    }

    // ------------------------------------------------------------ subjects

    /// Whether the person still has an event outside `deleted` (by_subject).
    pub async fn has_other_events(
        &self,
        subject_key: &str,
        deleted: &BTreeSet<(String, String)>,
    ) -> Result<bool, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.events)
            .index_name(keys::BY_SUBJECT)
            .key_condition_expression("#k = :pk")
            .expression_attribute_names("#k", keys::SUBJECT_KEY)
            .expression_attribute_values(":pk", s(subject_key));
        for item in self.db.query(query, None).await? {
            if let (Some(pk), Some(sk)) = key_of(&item) {
                if !deleted.contains(&(pk.to_owned(), sk.to_owned())) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Deletes the record of the person with this pseudonym unless it holds what
    /// they asked (a state, a directive, a death notice). True if deleted.
    pub async fn delete_orphan_subject(
        &self,
        subject_key: &str,
        dry_run: bool,
    ) -> Result<bool, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.subjects)
            .index_name(keys::BY_PSEUDONYM)
            .key_condition_expression("#k = :pk")
            .expression_attribute_names("#k", keys::SUBJECT_KEY)
            .expression_attribute_values(":pk", s(subject_key));
        let mut deleted = false;
        for item in self.db.query(query, None).await? {
            let Some(pk) = key_of(&item).0 else { continue };
            let keep = "attribute_not_exists(state_key) AND attribute_not_exists(directive) AND attribute_not_exists(deceased_at)";
            if dry_run {
                let record = self
                    .db
                    .get(
                        &self.subjects,
                        only_key(&item, false),
                        Some("pk, state_key, directive, deceased_at"),
                    )
                    .await?;
                deleted |= record.is_some_and(|r| r.len() == 1);
                continue;
            }
            let result = self
                .db
                .client
                .delete_item()
                .table_name(&self.subjects)
                .key(keys::PK, s(pk))
                .condition_expression(format!("attribute_exists(pk) AND {keep}"))
                .send()
                .await;
            deleted |= applied("DeleteItem", result)?;
        }
        Ok(deleted)
    }

    /// One page of a leaving tenant's subject records (a prefix scan: the
    /// table's key is the lookup, and this happens once in a tenant's life).
    pub async fn tenant_subjects_page(
        &self,
        tenant: &TenantId,
        start: Option<Item>,
    ) -> Result<KeyPage, StoreError> {
        let out = self
            .db
            .client
            .scan()
            .table_name(&self.subjects)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", s(keys::subject_pk(tenant, "")))
            .projection_expression("pk")
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| failed("Scan", e))?;
        Ok(key_page(
            out.items.unwrap_or_default(),
            false,
            out.last_evaluated_key,
        ))
    }
}

/// The keys of a page, with the pseudonyms and activity copies its events name.
fn key_page(items: Vec<Item>, has_sk: bool, next: Option<Item>) -> KeyPage {
    KeyPage {
        items: items
            .iter()
            .map(|item| Doomed {
                key: only_key(item, has_sk),
                subject_key: text(item, keys::SUBJECT_KEY),
                copy: activity_copy(item),
            })
            .collect(),
        next,
    }
}

/// The aggregates key of a support or billing event's copy on its account page.
fn activity_copy(item: &Item) -> Option<Item> {
    let source = text(item, "source")?;
    if source != "support_ticket" && source != "billing" {
        return None;
    }
    let (pk, sk) = key_of(item);
    let id = crate::domain::EventId::parse(keys::event_id_of_sk(sk?)?).ok()?;
    let time = time_of(item, "ts")?;
    Some(key(pk?.to_owned(), keys::activity_sk(time, &id)))
}
