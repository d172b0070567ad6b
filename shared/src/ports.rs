//! The storage ports the functions depend on, one per thing stored. Each has one
//! DynamoDB adapter (`adapters::dynamo::<thing>`); `mocks` implements the ingest
//! ports in memory for benchmarks and unit tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use thiserror::Error;

use time::OffsetDateTime;

use crate::domain::access::KeyRecord;
use crate::domain::audit::{AuditDraft, AuditEntry};
use crate::domain::{
    AccountId, AggregateDelta, EventId, HourBucket, StoredEvent, SubjectId, TenantId,
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

/// Indices (into the slice given) of the items that could not be written, with why.
pub type Failures = Vec<(usize, StoreError)>;

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

/// Stored events, keyed by account and id.
pub trait EventStore: Send + Sync {
    /// Which of these events are already stored.
    fn existing_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> impl Future<Output = Result<HashSet<EventRef>, StoreError>> + Send;

    fn put_events(
        &self,
        tenant: &TenantId,
        events: &[StoredEvent],
    ) -> impl Future<Output = Failures> + Send;

    /// Removes events (compensation when their aggregate could not be updated).
    fn delete_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> impl Future<Output = Failures> + Send;
}

/// Per account-hour counters.
pub trait AggregateStore: Send + Sync {
    /// Adds each delta to its account-hour aggregate.
    fn add_aggregates(
        &self,
        tenant: &TenantId,
        deltas: &[AggregateDelta],
    ) -> impl Future<Output = Failures> + Send;
}

/// Everything ingestion writes.
pub trait IngestStore: SubjectStore + EventStore + AggregateStore {}

impl<T: SubjectStore + EventStore + AggregateStore> IngestStore for T {}

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
