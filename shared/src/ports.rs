//! The storage port the ingest handler depends on. `adapters::dynamo` implements it
//! on DynamoDB; `mocks` implements it in memory for benchmarks and unit tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use thiserror::Error;

use crate::domain::{AccountId, AggregateDelta, EventId, StoredEvent, SubjectId, TenantId};

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
