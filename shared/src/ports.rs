//! The storage port the ingest handler depends on. `adapters::dynamo` implements it
//! on DynamoDB; `mocks` implements it in memory for benchmarks and unit tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use thiserror::Error;

use time::OffsetDateTime;

use crate::domain::access::KeyRecord;
use crate::domain::audit::{AuditDraft, AuditEntry};
use crate::domain::{
    AccountId, AggregateDelta, EventId, HourBucket, StoredEvent, SubjectId, TenantId,
};

/// Storage failures. The detail is for logs; clients only learn that a retry is needed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{operation} failed: {detail}")]
    Failed {
        operation: &'static str,
        detail: String,
    },
    #[error("{operation}: items still unprocessed after {attempts} attempts")]
    Exhausted {
        operation: &'static str,
        attempts: u32,
    },
}

/// Indices (into the slice given) of the items that could not be written, with why.
pub type Failures = Vec<(usize, StoreError)>;

pub type EventRef = (AccountId, EventId);

pub trait IngestStore: Send + Sync {
    /// The subject pseudonym for each lookup key, creating subject records for new ones.
    fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> impl Future<Output = Result<HashMap<String, SubjectId>, StoreError>> + Send;

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

    /// Adds each delta to its account-hour aggregate.
    fn add_aggregates(
        &self,
        tenant: &TenantId,
        deltas: &[AggregateDelta],
    ) -> impl Future<Output = Failures> + Send;

    /// Removes events (compensation when their aggregate could not be updated).
    fn delete_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> impl Future<Output = Failures> + Send;
}

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
