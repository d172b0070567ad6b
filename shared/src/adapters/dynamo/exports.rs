//! Export run records (docs/decisions/0018): one item per tenant and month in
//! the tenant's partition of the tenants table (`EXPORT#<yyyy-mm>`), holding
//! the run in progress or done, its lease and its checkpoint (the shards done,
//! their files and counts). Every change is conditional on the holder and the
//! step it saw, so two runs at once cannot both commit a shard.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::codec::{is_live, n, s, text, timestamp, Item, EXPIRES_AT};
use super::{applied, table_name, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::export::{DatasetFile, Excluded};
use crate::domain::retention::{self, RawEventRetention, StoredItem};
use crate::domain::TenantId;
use crate::keys;
use crate::ports::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Complete,
}

/// What a run has done so far: its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub files: Vec<DatasetFile>,
    pub excluded: Excluded,
    /// The run whose dataset this one replaces (its files go once this one is complete).
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportRun {
    pub run_id: String,
    pub state: RunState,
    /// Shards done: the next one to export.
    pub next_shard: u32,
    /// The invocation working on it, and until when (epoch seconds).
    pub holder: String,
    pub lease_until: i64,
    pub started_at: OffsetDateTime,
    pub progress: Progress,
}

#[derive(Debug, Clone)]
pub struct ExportRuns {
    db: Dynamo,
    name: String,
}

fn key(tenant: &TenantId, month: &str) -> Item {
    Item::from([
        (keys::PK.to_owned(), s(keys::tenant_pk(tenant))),
        (keys::SK.to_owned(), s(keys::export_run_sk(month))),
    ])
}

fn progress_value(progress: &Progress) -> AttributeValue {
    s(serde_json::to_string(progress).unwrap_or_default())
}

impl ExportRuns {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::TenantsTable)?,
        })
    }

    /// An update of the month's run record.
    fn update(&self, tenant: &TenantId, month: &str) -> UpdateItemFluentBuilder {
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(tenant, month)))
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        month: &str,
    ) -> Result<Option<ExportRun>, StoreError> {
        let Some(item) = self.db.get(&self.name, key(tenant, month), None).await? else {
            return Ok(None);
        };
        // Past its expiry it is absent, whether or not TTL has deleted it yet.
        if !is_live(&item, OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        let corrupt = || StoreError::corrupt("export run");
        let number = |name: &str| -> Option<i64> { item.get(name)?.as_n().ok()?.parse().ok() };
        Ok(Some(ExportRun {
            run_id: text(&item, "run_id").ok_or_else(corrupt)?,
            state: match text(&item, "state").as_deref() {
                Some("running") => RunState::Running,
                Some("complete") => RunState::Complete,
                _ => return Err(corrupt()),
            },
            next_shard: number("next_shard").ok_or_else(corrupt)? as u32,
            holder: text(&item, "holder").unwrap_or_default(),
            lease_until: number("lease_until").unwrap_or(0),
            started_at: super::codec::time_of(&item, "started_at").ok_or_else(corrupt)?,
            progress: text(&item, "progress")
                .and_then(|p| serde_json::from_str(&p).ok())
                .ok_or_else(corrupt)?,
        }))
    }

    /// Starts `run` (shard 0): if there is no record yet (`replacing` None), or
    /// over the record of run `replacing` once it is complete or its lease has
    /// passed. False: someone else got there first.
    pub async fn start(
        &self,
        tenant: &TenantId,
        month: &str,
        run: &ExportRun,
        replacing: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut item = key(tenant, month);
        item.insert("run_id".into(), s(&run.run_id));
        item.insert("state".into(), s("running"));
        item.insert("next_shard".into(), n(run.next_shard));
        item.insert("holder".into(), s(&run.holder));
        item.insert("lease_until".into(), n(run.lease_until));
        item.insert("started_at".into(), timestamp(run.started_at));
        item.insert("updated_at".into(), timestamp(now));
        item.insert("progress".into(), progress_value(&run.progress));
        let expires =
            retention::expires_at(StoredItem::ExportRun, now, RawEventRetention::default());
        if let Some(at) = expires {
            item.insert(EXPIRES_AT.into(), n(at.unix_timestamp()));
        }
        let put = self
            .db
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item));
        let put = match replacing {
            None => put
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now.unix_timestamp())),
            Some(old) => put
                .condition_expression(
                    "run_id = :old AND (#state = :complete OR lease_until < :now)",
                )
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":old", s(old))
                .expression_attribute_values(":complete", s("complete"))
                .expression_attribute_values(":now", n(now.unix_timestamp())),
        };
        applied("PutItem", put.send().await)
    }

    /// Takes over a running run whose lease has passed (its holder stopped).
    pub async fn take_over(
        &self,
        tenant: &TenantId,
        month: &str,
        run_id: &str,
        holder: &str,
        lease_until: i64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = self
            .update(tenant, month)
            .update_expression("SET holder = :holder, lease_until = :until, updated_at = :at")
            .condition_expression("run_id = :id AND #state = :running AND lease_until < :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":at", timestamp(now))
            .expression_attribute_values(":id", s(run_id))
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":now", n(now.unix_timestamp()));
        applied("UpdateItem", update.send().await)
    }

    /// Records shard `done` (and what it wrote) if this holder still holds the
    /// run at that step; extends the lease. False: the run was taken over.
    pub async fn commit_shard(
        &self,
        tenant: &TenantId,
        month: &str,
        run: &ExportRun,
        done: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = self
            .update(tenant, month)
            .update_expression(
                "SET next_shard = :next, progress = :progress, lease_until = :until, updated_at = :at",
            )
            .condition_expression("run_id = :id AND holder = :holder AND next_shard = :done")
            .expression_attribute_values(":next", n(done + 1))
            .expression_attribute_values(":progress", progress_value(&run.progress))
            .expression_attribute_values(":until", n(run.lease_until))
            .expression_attribute_values(":at", timestamp(now))
            .expression_attribute_values(":id", s(&run.run_id))
            .expression_attribute_values(":holder", s(&run.holder))
            .expression_attribute_values(":done", n(done));
        applied("UpdateItem", update.send().await)
    }

    /// Marks the run complete (its manifest is written).
    pub async fn complete(
        &self,
        tenant: &TenantId,
        month: &str,
        run: &ExportRun,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = self
            .update(tenant, month)
            .update_expression(
                "SET #state = :complete, completed_at = :at, updated_at = :at, lease_until = :zero",
            )
            .condition_expression("run_id = :id AND holder = :holder")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":complete", s("complete"))
            .expression_attribute_values(":at", timestamp(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":id", s(&run.run_id))
            .expression_attribute_values(":holder", s(&run.holder));
        applied("UpdateItem", update.send().await)
    }

    /// Gives the lease back (the run stopped at its budget or on an error), so
    /// the next invocation continues at once.
    pub async fn release(
        &self,
        tenant: &TenantId,
        month: &str,
        run: &ExportRun,
    ) -> Result<bool, StoreError> {
        let update = self
            .update(tenant, month)
            .update_expression("SET lease_until = :zero")
            .condition_expression("run_id = :id AND holder = :holder")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":id", s(&run.run_id))
            .expression_attribute_values(":holder", s(&run.holder));
        applied("UpdateItem", update.send().await)
    }
}
