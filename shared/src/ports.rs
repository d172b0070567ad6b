//! The storage ports the functions depend on, one per thing stored. Each has one
//! DynamoDB adapter (`adapters::dynamo::<thing>`); `mocks` implements the ingest
//! ports in memory for benchmarks and unit tests.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use thiserror::Error;

use time::OffsetDateTime;

use crate::crypto::LookupKeys;
use crate::domain::access::KeyRecord;
use crate::domain::account::AccountContract;
use crate::domain::audit::{Anchor, AuditDraft, AuditEntry};
use crate::domain::rollup::Rollup;
use crate::domain::subject::Purpose;
use crate::domain::{
    AccountId, EventId, HourBucket, RawEventRetention, StoredEvent, SubjectId, TenantId,
};

/// Whether trying again later can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, timeouts, the service's own 5xx.
    Retryable,
    /// Access denied, a malformed request, a missing table: a retry fails the same way.
    Permanent,
}

/// Storage failures. The detail is for logs; clients only learn whether to retry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{operation} failed ({kind:?}): {detail}")]
    Failed {
        operation: &'static str,
        kind: FailureKind,
        detail: String,
    },
    #[error("{operation}: still unprocessed after {attempts} attempts")]
    Exhausted {
        operation: &'static str,
        attempts: u32,
    },
}

impl StoreError {
    pub fn failed(operation: &'static str, kind: FailureKind, detail: impl Into<String>) -> Self {
        StoreError::Failed {
            operation,
            kind,
            detail: detail.into(),
        }
    }

    /// Stored data that cannot be read back: not something a retry fixes.
    pub fn corrupt(what: &str) -> Self {
        Self::failed(
            "decode",
            FailureKind::Permanent,
            format!("stored {what} is malformed"),
        )
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Failed { kind, .. } => *kind == FailureKind::Retryable,
            StoreError::Exhausted { .. } => true,
        }
    }
}

pub type EventRef = (AccountId, EventId);

/// A user's subject as ingestion needs it: the pseudonym, and the purposes its
/// events are withheld from (restriction, objections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSubject {
    pub subject: SubjectId,
    pub withheld: BTreeSet<Purpose>,
}

impl ResolvedSubject {
    pub fn new(subject: SubjectId) -> Self {
        Self {
            subject,
            withheld: BTreeSet::new(),
        }
    }
}

/// Data subjects: the one link from a user id's lookup key to its pseudonym.
pub trait SubjectStore: Send + Sync {
    /// The subject of each user (by its current lookup key), creating records for
    /// new ones. During a rotation a record found under the previous key is moved
    /// to the current one.
    fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[LookupKeys],
    ) -> impl Future<Output = Result<HashMap<String, ResolvedSubject>, StoreError>> + Send;
}

/// What became of one event handed to `EventStore::record_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored and counted by this call.
    Counted,
    /// A live event with its key was already stored: neither stored nor counted again.
    AlreadyStored,
    /// Neither stored nor counted: the client may resend it (if retryable).
    Failed(StoreError),
}

/// Stored events, keyed by account and id, and their account-hour aggregates.
/// A tenant's month of events, one shard and one page at a time: the export's
/// only read of events (the events table's `by_month` index in AWS).
pub trait MonthEvents: Send + Sync {
    /// Where the next page starts (opaque).
    type Cursor: Send;

    /// Live events of the shard, in time order, and the next page's cursor.
    #[allow(clippy::type_complexity)]
    fn month_page(
        &self,
        tenant: &TenantId,
        month: &str,
        shard: u32,
        start: Option<Self::Cursor>,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(Vec<StoredEvent>, Option<Self::Cursor>), StoreError>> + Send;
}

pub trait EventStore: Send + Sync {
    /// Stores each event unless a live one with its key is stored, and adds the
    /// stored ones to their account-hour aggregate in the same transaction: an
    /// event is counted exactly when it is stored, whatever runs concurrently.
    /// One result per event, in order.
    fn record_events(
        &self,
        tenant: &TenantId,
        events: &[StoredEvent],
        retention: RawEventRetention,
        now: OffsetDateTime,
    ) -> impl Future<Output = Vec<Recorded>> + Send;
}

/// Per-tenant settings ingestion needs.
pub trait TenantSettings: Send + Sync {
    /// The tenant's raw-event retention (the default unless it lowered it).
    fn raw_event_retention(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<RawEventRetention, StoreError>> + Send;
}

/// Everything ingestion reads and writes.
pub trait IngestStore: SubjectStore + EventStore + TenantSettings {}

impl<T: SubjectStore + EventStore + TenantSettings> IngestStore for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    AlreadyRevoked,
    NotFound,
}

/// Tenants and their API keys.
pub trait AccessStore: Send + Sync {
    /// Creates the tenant; false if it already exists.
    fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn tenant_exists(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a new key record (never overwrites one).
    fn put_key(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One read: the authorizer's only storage call on an uncached request.
    fn get_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    fn list_keys(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Revocation, StoreError>> + Send;

    /// Records the hour of last use, unless this hour is already recorded (at most one write per key per hour).
    fn record_key_use(
        &self,
        tenant: &TenantId,
        key_id: &str,
        hour: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The append-only, hash-chained audit trail.
pub trait AuditLog: Send + Sync {
    fn append(
        &self,
        tenant: &TenantId,
        draft: AuditDraft,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<AuditEntry, StoreError>> + Send;

    /// Entries in sequence order, after `after_seq`, at most `limit` (None: all).
    fn entries(
        &self,
        tenant: &TenantId,
        after_seq: Option<u64>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// The tenant's destruction records (docs/decisions/0019), oldest first,
    /// after the record id `after`, at most `limit`, as stored (JSON objects).
    fn destruction_records(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, StoreError>> + Send;

    /// The chain's newest entry.
    fn head(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<AuditEntry>, StoreError>> + Send;

    /// The sequence of the last anchor a verification proved (None: never verified).
    fn checkpoint(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    fn set_checkpoint(
        &self,
        tenant: &TenantId,
        seq: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where chain heads are anchored, out of the function roles' reach.
pub trait AnchorStore: Send + Sync {
    /// Anchors a head; false if this exact anchor already exists.
    fn anchor(
        &self,
        tenant: &TenantId,
        anchor: &Anchor,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The tenant's anchors at `from_seq` and after, in sequence order.
    fn anchors_from(
        &self,
        tenant: &TenantId,
        from_seq: u64,
    ) -> impl Future<Output = Result<Vec<Anchor>, StoreError>> + Send;
}

/// One account's hourly aggregates, read for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyUsage {
    pub hour: String,
    pub counters: Vec<(String, u64)>,
}

pub trait UsageStore: Send + Sync {
    fn hourly_usage(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: HourBucket,
        to: HourBucket,
    ) -> impl Future<Output = Result<Vec<HourlyUsage>, StoreError>> + Send;
}

/// An account as the directory knows it: registered (with its contract) or only
/// seen in events.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEntry {
    pub account: AccountId,
    /// None until the tenant registers the account.
    pub contract: Option<AccountContract>,
    /// Tickets opened less tickets solved or closed, never below 0.
    pub open_tickets: u64,
    pub registered_at: Option<String>,
    pub updated_at: Option<String>,
    /// The last day its monthly quota was lowered (a downgrade), if ever.
    pub quota_lowered_on: Option<time::Date>,
}

/// Which rollups to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

/// A support or billing event as the account page lists it (no subject).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    pub time: String,
    pub source: String,
    pub status: String,
    /// The ticket or invoice id the tenant gave.
    pub reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// What the dashboard reads: the account directory and the rollups.
pub trait DashboardStore: Send + Sync {
    /// Every account of the tenant, registered or seen, by id.
    fn accounts(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<AccountEntry>, StoreError>> + Send;

    fn account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> impl Future<Output = Result<Option<AccountEntry>, StoreError>> + Send;

    /// The account's rollups of one granularity whose labels lie from `from` to
    /// `to` (both included; labels as `rollup.rs` writes them), oldest first.
    fn rollups(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        granularity: Granularity,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<Vec<(String, Rollup)>, StoreError>> + Send;

    /// The account's latest support and billing events, newest first.
    fn recent_activity(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Activity>, StoreError>> + Send;
}

/// The alerts that fired on an account (the dashboard's account page).
pub trait AlertHistory: Send + Sync {
    /// Latest fired first, at most `limit`.
    fn account_alerts(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<crate::domain::alert::HistoryEntry>, StoreError>> + Send;
}

/// Where the tenant's account contracts are written.
pub trait AccountRegistry: Send + Sync {
    /// Registers or replaces the contract; true if the account was not registered before.
    fn register_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        contract: &AccountContract,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
