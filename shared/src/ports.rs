//! The storage ports the functions depend on, one per thing stored. Each has one
//! DynamoDB adapter (`adapters::dynamo::<thing>`); `mocks` implements the ingest
//! ports in memory for benchmarks and unit tests.

use std::collections::HashMap;
use std::future::Future;

use thiserror::Error;

use time::OffsetDateTime;

use crate::domain::access::KeyRecord;
use crate::domain::audit::{Anchor, AuditDraft, AuditEntry};
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

/// Data subjects: the one link from a user id's lookup key to its pseudonym.
pub trait SubjectStore: Send + Sync {
    /// The subject pseudonym for each lookup key, creating subject records for new ones.
    fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> impl Future<Output = Result<HashMap<String, SubjectId>, StoreError>> + Send;
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
