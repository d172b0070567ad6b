//! The retention purge (docs/decisions/0019): deletes what the retention
//! module says has expired, tenant by tenant, and leaves a destruction record
//! for each unit of work, appended to the audit trail. Shared by the purge
//! function and the operator CLI (dry run, what is due).
//!
//! Per tenant, in this order:
//! 1. a tenant 3 years past its contract's end: everything (class `tenant`);
//! 2. accounts in `by_expiry` whose `purge_at` has come: past their expiry,
//!    everything of the account (class `account`); otherwise their rollups and
//!    alert state get the current expiry (the TTL backstop) or lose it (reopened);
//! 3. events past the tenant's raw-event retention, through `by_month`;
//! 4. export datasets and privacy bundles past their age, every version.
//!
//! What a run has deleted is gone, so the tables are the checkpoint: a run that
//! stops (budget, fault) leaves records of what it did, and the next continues.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::adapters::dynamo::codec::Item;
use crate::adapters::dynamo::purge::{DueAccount, KeyPage, PurgeTables};
use crate::adapters::dynamo::AuditTable;
use crate::adapters::s3::DataBucket;
use crate::app::audit::draft;
use crate::domain::purge::{
    month_start, months, raw_event_cutoff, record_id, Counts, DataClass, DestructionRecord,
};
use crate::domain::retention::{self, RawEventRetention};
use crate::domain::{AccountId, TenantId};
use crate::keys;
use crate::ports::{AuditLog, StoreError};

/// Time kept back from the deadline: a page of deletes and the records.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);
/// Who the destruction records and audit entries name.
pub const ACTOR: &str = "vigil-purge";

pub struct Purger {
    pub tables: PurgeTables,
    pub bucket: DataBucket,
    pub audit: AuditTable,
}

/// One run over one tenant.
#[derive(Debug, Clone)]
pub struct PurgeRequest {
    pub now: OffsetDateTime,
    pub dry_run: bool,
    pub run_id: String,
    pub started: OffsetDateTime,
}

/// How much a run may still do: a deadline, and optionally a number of pages
/// (the CLI's steps and the tests' interruptions).
#[derive(Debug)]
pub struct Budget {
    pub deadline: Instant,
    pub pages_left: Option<u32>,
}

impl Budget {
    /// Whether another page of work may start.
    fn has_room(&self) -> bool {
        Instant::now() + STOP_MARGIN <= self.deadline && self.pages_left != Some(0)
    }

    /// Counts a page that found something to delete (empty reads are free:
    /// they are how a run learns it is done).
    fn spend(&mut self) {
        if let Some(left) = &mut self.pages_left {
            *left = left.saturating_sub(1);
        }
    }
}

/// A run's lease on a tenant: longer than the function's 15 minutes, so a
/// live run never loses it; a crashed run's lease lapses by the next day's.
pub const LEASE: time::Duration = time::Duration::minutes(20);

/// What a run did (or, dry, would do) for one tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantPurge {
    pub tenant: String,
    /// Another run holds the tenant: this one did nothing there.
    pub busy: bool,
    /// Whether everything due was reached (false: the next run continues).
    pub complete: bool,
    pub records: Vec<DestructionRecord>,
    /// Rollups and alert states whose expiry was set or cleared (the backstop).
    pub stamped_items: u64,
}

/// A unit of destruction under way: its class, account and counts so far.
struct Unit {
    class: DataClass,
    account: Option<AccountId>,
    window_from: Option<OffsetDateTime>,
    window_to: OffsetDateTime,
    counts: Counts,
    /// Keys deleted so far in this unit (the orphan check must not see them).
    deleted: BTreeSet<(String, String)>,
}

impl Unit {
    fn new(class: DataClass, window_to: OffsetDateTime) -> Self {
        Unit {
            class,
            account: None,
            window_from: None,
            window_to,
            counts: Counts::default(),
            deleted: BTreeSet::new(),
        }
    }
}

/// How a step ended: finished, or out of budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Done,
    Stopped,
}

impl Purger {
    /// Purges one tenant as of `request.now`, under the tenant's lease (a
    /// dry run takes none: it changes nothing).
    pub async fn purge_tenant(
        &self,
        tenant: &TenantId,
        request: &PurgeRequest,
        budget: &mut Budget,
    ) -> Result<TenantPurge, StoreError> {
        if request.dry_run {
            return self.purge_leased(tenant, request, budget).await;
        }
        // Wall clock: the lease is between runs, whatever `now` they purge as of.
        let clock = OffsetDateTime::now_utc();
        let leased = self
            .tables
            .acquire_lease(tenant, &request.run_id, clock, clock + LEASE)
            .await?;
        if !leased {
            return Ok(TenantPurge {
                tenant: tenant.to_string(),
                busy: true,
                ..TenantPurge::default()
            });
        }
        let outcome = self.purge_leased(tenant, request, budget).await;
        let released = self.tables.release_lease(tenant, &request.run_id).await;
        let report = outcome?;
        released?;
        Ok(report)
    }

    async fn purge_leased(
        &self,
        tenant: &TenantId,
        request: &PurgeRequest,
        budget: &mut Budget,
    ) -> Result<TenantPurge, StoreError> {
        let mut report = TenantPurge {
            tenant: tenant.to_string(),
            ..TenantPurge::default()
        };
        let Some(settings) = self.tables.tenant_retention(tenant).await? else {
            report.complete = true;
            return Ok(report);
        };
        if let Some(end) = settings.contract_end {
            let expiry = retention::after_last_day(end);
            if expiry <= request.now {
                let mut unit = Unit::new(DataClass::Tenant, request.now);
                unit.window_from = Some(expiry);
                let step = self.offboard(tenant, request, budget, &mut unit).await;
                return self.close(tenant, request, unit, step, report).await;
            }
        }
        let mut stopped = false;
        // Accounts due (their expiry passed, or their items' expiry is stale).
        let mut start: Option<Item> = None;
        'accounts: loop {
            if !budget.has_room() {
                stopped = true;
                break;
            }
            let (due, next) = self
                .tables
                .due_accounts(tenant, request.now.unix_timestamp(), start)
                .await?;
            for (account, _) in due {
                let Some(entry) = self.tables.due_account(tenant, &account).await? else {
                    continue;
                };
                if entry.purge_at > request.now.unix_timestamp() {
                    continue;
                }
                let expired = entry
                    .expires_at
                    .is_some_and(|at| at <= request.now.unix_timestamp());
                if expired {
                    let mut unit = Unit::new(DataClass::Account, request.now);
                    unit.account = Some(account.clone());
                    unit.window_from = entry
                        .expires_at
                        .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
                    let step = self
                        .purge_account(tenant, &entry, request, budget, &mut unit)
                        .await;
                    report = self.record(tenant, request, unit, report).await?;
                    if step? == Step::Stopped {
                        stopped = true;
                        break 'accounts;
                    }
                } else if !request.dry_run {
                    match self.stamp(tenant, &entry, budget).await? {
                        (items, Step::Done) => report.stamped_items += items,
                        (items, Step::Stopped) => {
                            report.stamped_items += items;
                            stopped = true;
                            break 'accounts;
                        }
                    }
                }
            }
            match next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        if !stopped {
            let mut unit = Unit::new(
                DataClass::RawEvents,
                raw_event_cutoff(request.now, settings.raw_events),
            );
            let from = settings
                .events_purged_before
                .or(settings
                    .created_at
                    .map(|c| c - RawEventRetention::default().duration()))
                .unwrap_or(unit.window_to - RawEventRetention::default().duration());
            unit.window_from = Some(from);
            let step = self
                .purge_raw_events(tenant, from, request, budget, &mut unit)
                .await;
            // The month the cutoff is in is read again on the next runs (its
            // start only moves monthly: a run twice in a day writes nothing).
            let watermark = month_start(unit.window_to);
            report = self.record(tenant, request, unit, report).await?;
            match step? {
                Step::Done if !request.dry_run => {
                    self.tables
                        .set_events_purged_before(tenant, watermark)
                        .await?
                }
                Step::Done => {}
                Step::Stopped => stopped = true,
            }
        }
        for (class, prefix) in [
            (
                DataClass::ExportDatasets,
                keys::tenant_exports_prefix(tenant),
            ),
            (
                DataClass::PrivacyBundles,
                keys::tenant_bundles_prefix(tenant),
            ),
        ] {
            if stopped || !budget.has_room() {
                stopped = true;
                break;
            }
            let age = class.object_age().unwrap_or_default();
            let mut unit = Unit::new(class, request.now - age);
            let purged = self
                .bucket
                .purge_versions(&prefix, Some(unit.window_to), request.dry_run)
                .await?;
            if purged.versions > 0 {
                budget.spend();
            }
            unit.counts.objects = purged.objects;
            unit.counts.versions = purged.versions;
            report = self.record(tenant, request, unit, report).await?;
        }
        report.complete = !stopped;
        Ok(report)
    }

    /// Records a finished or interrupted unit, then passes its error on.
    async fn close(
        &self,
        tenant: &TenantId,
        request: &PurgeRequest,
        unit: Unit,
        step: Result<Step, StoreError>,
        report: TenantPurge,
    ) -> Result<TenantPurge, StoreError> {
        let mut report = self.record(tenant, request, unit, report).await?;
        report.complete = step? == Step::Done;
        Ok(report)
    }

    /// Writes the unit's destruction record (none if it deleted nothing; none
    /// stored on a dry run) and appends it to the audit trail.
    async fn record(
        &self,
        tenant: &TenantId,
        request: &PurgeRequest,
        unit: Unit,
        mut report: TenantPurge,
    ) -> Result<TenantPurge, StoreError> {
        if unit.counts.is_empty() {
            return Ok(report);
        }
        let record = DestructionRecord {
            record_id: record_id(
                request.started,
                &request.run_id,
                u32::try_from(report.records.len()).unwrap_or(u32::MAX),
            ),
            run_id: request.run_id.clone(),
            recorded_at: request.now,
            class: unit.class,
            policy: unit.class.policy(),
            account: unit.account.as_ref().map(|a| a.as_str().to_owned()),
            window_from: unit.window_from,
            window_to: unit.window_to,
            counts: unit.counts,
        };
        if !request.dry_run {
            self.audit.put_record(tenant, &record).await?;
            // A leaving tenant's trail is deleted with it; its record stays.
            if unit.class != DataClass::Tenant {
                let target = match &record.account {
                    Some(account) => format!("{}/{account}", unit.class.as_str()),
                    None => unit.class.as_str().to_owned(),
                };
                let outcome = format!(
                    "deleted {} items, {} objects ({} versions); record {}",
                    record.counts.total_items(),
                    record.counts.objects,
                    record.counts.versions,
                    record.record_id
                );
                let entry = draft(
                    ACTOR,
                    "retention.purge",
                    Some(&target),
                    &request.run_id,
                    &outcome,
                );
                self.audit.append(tenant, entry, request.now).await?;
            }
        }
        report.records.push(record);
        Ok(report)
    }

    /// Deletes (or counts) a partition page by page; every page's events are
    /// followed by their orphaned subjects.
    async fn drain(
        &self,
        table: &'static str,
        pk: &str,
        prefix: Option<&str>,
        request: &PurgeRequest,
        budget: &mut Budget,
        unit: &mut Unit,
    ) -> Result<Step, StoreError> {
        let mut start = None;
        loop {
            if !budget.has_room() {
                return Ok(Step::Stopped);
            }
            // Deleting, each page starts from the beginning: the last one is gone.
            let page = self
                .tables
                .partition_page(table, pk, prefix, start.take())
                .await?;
            let more = page.next.is_some();
            let next = page.next.clone();
            if !page.items.is_empty() {
                budget.spend();
            }
            // Whole partitions: the account's copies are in its aggregates partition.
            self.dispose(table, page, false, request, unit).await?;
            if !more {
                return Ok(Step::Done);
            }
            if request.dry_run {
                start = next;
            }
        }
    }

    /// Deletes a page's keys 25 at a time, each batch after the records of the
    /// people it leaves without any event (so a run stopped between the two
    /// leaves events to find again, never a record no event leads to), and
    /// counts each batch once it is deleted.
    async fn dispose(
        &self,
        table: &'static str,
        page: KeyPage,
        with_copies: bool,
        request: &PurgeRequest,
        unit: &mut Unit,
    ) -> Result<(), StoreError> {
        use crate::adapters::dynamo::codec::key_of;
        use crate::adapters::dynamo::MAX_BATCH_WRITE;
        for batch in page.items.chunks(MAX_BATCH_WRITE) {
            let mut people = BTreeSet::new();
            for item in batch {
                let (pk, sk) = key_of(&item.key);
                unit.deleted.insert((
                    pk.unwrap_or_default().to_owned(),
                    sk.unwrap_or_default().to_owned(),
                ));
                people.extend(item.subject_key.clone());
            }
            let mut orphans = 0;
            for subject_key in &people {
                if self
                    .tables
                    .has_other_events(subject_key, &unit.deleted)
                    .await?
                {
                    continue;
                }
                if self
                    .tables
                    .delete_orphan_subject(subject_key, request.dry_run)
                    .await?
                {
                    orphans += 1;
                }
            }
            unit.counts.add_items("SubjectsTable", orphans);
            if !request.dry_run {
                let keys = batch.iter().map(|i| i.key.clone()).collect();
                self.tables.delete(table, keys).await?;
            }
            unit.counts.add_items(table, batch.len() as u64);
            let copies: Vec<Item> = if with_copies {
                batch.iter().filter_map(|i| i.copy.clone()).collect()
            } else {
                Vec::new()
            };
            if !copies.is_empty() {
                let count = copies.len() as u64;
                if !request.dry_run {
                    self.tables.delete("AggregatesTable", copies).await?;
                }
                unit.counts.add_items("AggregatesTable", count);
            }
        }
        Ok(())
    }

    /// Everything of one account: events (and the people left without any),
    /// rollups and activity copies, alert history and state, then the directory
    /// entry, last, so an interrupted purge finds the account due again.
    async fn purge_account(
        &self,
        tenant: &TenantId,
        entry: &DueAccount,
        request: &PurgeRequest,
        budget: &mut Budget,
        unit: &mut Unit,
    ) -> Result<Step, StoreError> {
        let account = &entry.account;
        let account_pk = keys::account_pk(tenant, account);
        let history = keys::alert_history_prefix(Some(account));
        let parts: [(&'static str, String, Option<&str>); 3] = [
            ("EventsTable", account_pk.clone(), None),
            ("AggregatesTable", account_pk.clone(), None),
            (
                "AlertsTable",
                keys::alert_history_pk(tenant),
                Some(&history),
            ),
        ];
        for (table, pk, prefix) in &parts {
            if self
                .drain(table, pk, *prefix, request, budget, unit)
                .await?
                == Step::Stopped
            {
                return Ok(Step::Stopped);
            }
        }
        if !budget.has_room() {
            return Ok(Step::Stopped);
        }
        let state = (keys::alert_state_pk(tenant), keys::alert_state_sk(account));
        if self
            .tables
            .delete_one("AlertsTable", state, None, request.dry_run)
            .await?
        {
            unit.counts.add_items("AlertsTable", 1);
        }
        // Unless the contract changed since the run read it (then the next run decides).
        let entry_key = (keys::accounts_pk(tenant), keys::account_entry_sk(account));
        if self
            .tables
            .delete_one(
                "AggregatesTable",
                entry_key,
                Some(entry.purge_at),
                request.dry_run,
            )
            .await?
        {
            unit.counts.add_items("AggregatesTable", 1);
        }
        Ok(Step::Done)
    }

    /// Sets the account's expiry on its rollups and alert state (or takes it
    /// off: reopened), then records it on the entry. Not destruction: no record.
    async fn stamp(
        &self,
        tenant: &TenantId,
        entry: &DueAccount,
        budget: &mut Budget,
    ) -> Result<(u64, Step), StoreError> {
        let mut written = 0;
        let mut start = None;
        loop {
            if !budget.has_room() {
                return Ok((written, Step::Stopped));
            }
            let (count, next) = self
                .tables
                .stamp_page(tenant, &entry.account, entry.expires_at, start)
                .await?;
            if count > 0 {
                budget.spend();
            }
            written += count;
            match next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        self.tables.finish_stamp(tenant, entry).await?;
        Ok((written, Step::Done))
    }

    /// Events before the cutoff, month by month from `from`, 16 shards each.
    async fn purge_raw_events(
        &self,
        tenant: &TenantId,
        from: OffsetDateTime,
        request: &PurgeRequest,
        budget: &mut Budget,
        unit: &mut Unit,
    ) -> Result<Step, StoreError> {
        let cutoff = unit.window_to;
        if from >= cutoff {
            return Ok(Step::Done);
        }
        for month in months(month_start(from), cutoff) {
            for shard in 0..keys::MONTH_SHARDS {
                let mut start = None;
                loop {
                    if !budget.has_room() {
                        return Ok(Step::Stopped);
                    }
                    let page = self
                        .tables
                        .expired_events_page(tenant, &month, shard, cutoff, start)
                        .await?;
                    if !page.items.is_empty() {
                        budget.spend();
                    }
                    let next = page.next.clone();
                    self.dispose("EventsTable", page, true, request, unit)
                        .await?;
                    match next {
                        Some(next) => start = Some(next),
                        None => break,
                    }
                }
            }
        }
        Ok(Step::Done)
    }

    /// A tenant 3 years past its contract: every account's partitions, every
    /// subject, every other partition of the tenant (its record last: until it
    /// is gone, the tenant is due), every object and version in its folders.
    /// The anchors stay (Object Lock; hashes only) and so do the destruction
    /// records (the proof, until their own expiry).
    async fn offboard(
        &self,
        tenant: &TenantId,
        request: &PurgeRequest,
        budget: &mut Budget,
        unit: &mut Unit,
    ) -> Result<Step, StoreError> {
        for prefix in [
            keys::tenant_exports_prefix(tenant),
            keys::tenant_bundles_prefix(tenant),
        ] {
            if !budget.has_room() {
                return Ok(Step::Stopped);
            }
            let purged = self
                .bucket
                .purge_versions(&prefix, None, request.dry_run)
                .await?;
            if purged.versions > 0 {
                budget.spend();
            }
            unit.counts.objects += purged.objects;
            unit.counts.versions += purged.versions;
        }
        let accounts_pk = keys::accounts_pk(tenant);
        let mut start = None;
        loop {
            if !budget.has_room() {
                return Ok(Step::Stopped);
            }
            let page = self
                .tables
                .partition_page("AggregatesTable", &accounts_pk, None, start)
                .await?;
            for entry in &page.items {
                let account = crate::adapters::dynamo::codec::key_of(&entry.key)
                    .1
                    .and_then(keys::account_of_entry_sk)
                    .and_then(|a| AccountId::parse(a).ok())
                    .map(|a| keys::account_pk(tenant, &a));
                let Some(account_pk) = account else { continue };
                for table in ["EventsTable", "AggregatesTable"] {
                    if self
                        .drain(table, &account_pk, None, request, budget, unit)
                        .await?
                        == Step::Stopped
                    {
                        return Ok(Step::Stopped);
                    }
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        let mut start = None;
        loop {
            if !budget.has_room() {
                return Ok(Step::Stopped);
            }
            let page = self.tables.tenant_subjects_page(tenant, start).await?;
            let next = page.next.clone();
            let count = page.items.len() as u64;
            if count > 0 {
                budget.spend();
            }
            if !request.dry_run {
                let keys = page.items.into_iter().map(|i| i.key).collect();
                self.tables.delete("SubjectsTable", keys).await?;
            }
            unit.counts.add_items("SubjectsTable", count);
            match next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        for (table, pk) in keys::tenant_partitions(tenant) {
            if self.drain(table, &pk, None, request, budget, unit).await? == Step::Stopped {
                return Ok(Step::Stopped);
            }
        }
        Ok(Step::Done)
    }
}

/// An account whose data expires within `window` of `now`, as the operator's
/// listing shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DueItem {
    pub tenant: String,
    pub class: DataClass,
    pub account: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Purger {
    /// What is due for deletion between now and `now + window`: accounts past
    /// their relationship's 3 years, and the tenant itself.
    pub async fn due(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        window: time::Duration,
    ) -> Result<Vec<DueItem>, StoreError> {
        let until = now + window;
        let mut out = Vec::new();
        if let Some(end) = self
            .tables
            .tenant_retention(tenant)
            .await?
            .and_then(|s| s.contract_end)
        {
            let expiry = retention::after_last_day(end);
            if expiry <= until {
                out.push(DueItem {
                    tenant: tenant.to_string(),
                    class: DataClass::Tenant,
                    account: None,
                    expires_at: expiry,
                });
            }
        }
        // Accounts stamped with their expiry sit in the index at it; those not
        // stamped yet sit there earlier: their entry tells the expiry.
        let mut start = None;
        loop {
            let (page, next) = self
                .tables
                .due_accounts(tenant, until.unix_timestamp(), start)
                .await?;
            for (account, _) in page {
                let Some(entry) = self.tables.due_account(tenant, &account).await? else {
                    continue;
                };
                let expiry = entry
                    .expires_at
                    .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
                if let Some(expiry) = expiry.filter(|e| *e <= until) {
                    out.push(DueItem {
                        tenant: tenant.to_string(),
                        class: DataClass::Account,
                        account: Some(account.as_str().to_owned()),
                        expires_at: expiry,
                    });
                }
            }
            match next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        out.sort_by_key(|d| d.expires_at);
        Ok(out)
    }
}
