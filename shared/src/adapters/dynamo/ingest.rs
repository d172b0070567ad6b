//! What ingestion writes, as one `IngestStore`: subjects, tenant settings, and
//! the events with their aggregates, written together.
//!
//! Exact counting (docs/decisions/0011, 0015): the new events of one account-hour,
//! the copies of its support and billing events, and the updates of that
//! account's hour, day and month rollups and directory entry go in one
//! TransactWriteItems (at most 100 actions). An account's chunks run one after
//! another (they update the same day, month and directory items). Each event's put is conditional on no live
//! event with its key, so of two requests carrying the same event at the same
//! moment exactly one stores and counts it; the other's transaction is cancelled,
//! names the event as a duplicate and is retried without it. Nothing is ever
//! stored uncounted or counted unstored, so nothing needs undoing.

use std::collections::{BTreeMap, HashMap};

use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::aggregates::has_activity_copy;
use super::{
    AggregateTable, Cancelled, Dynamo, EventTable, SubjectTable, TenantTable, CONCURRENT_WRITES,
    MAX_TRANSACT_ACTIONS,
};
use crate::config::{Config, ConfigError};
use crate::crypto::LookupKeys;
use crate::domain::retention::{self, StoredItem};
use crate::domain::TenantId;
use crate::domain::{AccountId, AggregateDelta, HourBucket, RawEventRetention, StoredEvent};
use crate::ports::{
    EventStore, FailureKind, Recorded, ResolvedSubject, StoreError, SubjectStore, TenantSettings,
};

/// Rollup updates in each transaction: hour, day, month, directory entry.
pub const ROLLUP_UPDATES: usize = 4;
/// Event puts (and their copies) per transaction: the limit less the updates.
pub const EVENT_ACTIONS_PER_TRANSACTION: usize = MAX_TRANSACT_ACTIONS - ROLLUP_UPDATES;

#[derive(Debug, Clone)]
pub struct IngestTables {
    pub events: EventTable,
    pub subjects: SubjectTable,
    pub aggregates: AggregateTable,
    pub tenants: TenantTable,
    db: Dynamo,
}

impl IngestTables {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            events: EventTable::new(db, config)?,
            subjects: SubjectTable::new(db, config)?,
            aggregates: AggregateTable::new(db, config)?,
            tenants: TenantTable::new(db, config)?,
            db: db.clone(),
        })
    }

    /// Records one chunk of one account-hour (at most `EVENT_ACTIONS_PER_TRANSACTION` actions).
    async fn record_chunk(
        &self,
        tenant: &TenantId,
        chunk: Vec<(usize, &StoredEvent)>,
        retention: RawEventRetention,
        now: OffsetDateTime,
    ) -> Vec<(usize, Recorded)> {
        let mut done = Vec::with_capacity(chunk.len());
        let mut pending = chunk;
        let mut attempt = 1;
        let failure = loop {
            if pending.is_empty() {
                return done;
            }
            let actions = match self.actions(tenant, &pending, retention, now) {
                Ok(actions) => actions,
                Err(error) => break error,
            };
            // A new token per attempt of ours: the SDK's own retries of this attempt
            // reuse it (idempotent), a retry after a cancellation must not.
            let token = transaction_token(tenant, &pending, now, attempt);
            match self.db.transact(actions, token).await {
                Ok(()) => {
                    done.extend(pending.iter().map(|(i, _)| (*i, Recorded::Counted)));
                    return done;
                }
                // Already stored (by an earlier or a concurrent request): drop them and
                // try the rest at once; each round removes at least one event.
                Err(Cancelled::Conditions(failed)) => {
                    let mut kept = Vec::with_capacity(pending.len());
                    for (position, entry) in pending.into_iter().enumerate() {
                        if failed.get(position).copied().unwrap_or(false) {
                            done.push((entry.0, Recorded::AlreadyStored));
                        } else {
                            kept.push(entry);
                        }
                    }
                    pending = kept;
                }
                Err(Cancelled::Other(error)) if error.is_retryable() => {
                    if attempt >= self.db.retry.contended_attempts {
                        break StoreError::Exhausted {
                            operation: "TransactWriteItems",
                            attempts: attempt,
                        };
                    }
                    tracing::debug!(attempt, error = %error, "transaction contended; retrying");
                    self.db.retry.sleep_before(attempt).await;
                    attempt += 1;
                }
                Err(Cancelled::Other(error) | Cancelled::Failed(error)) => break error,
            }
        };
        done.extend(
            pending
                .iter()
                .map(|(i, _)| (*i, Recorded::Failed(failure.clone()))),
        );
        done
    }

    /// The chunk's conditional puts and copies, then its rollups' updates.
    fn actions(
        &self,
        tenant: &TenantId,
        pending: &[(usize, &StoredEvent)],
        retention: RawEventRetention,
        now: OffsetDateTime,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        let mut actions = Vec::with_capacity(pending.len() + 1);
        for (_, event) in pending {
            let expires_at = retention::expires_at(StoredItem::RawEvent, event.time, retention);
            actions.push(self.events.put_new(tenant, event, expires_at, now)?);
        }
        // Copies after the events, so a cancellation's reasons index the events.
        for (_, event) in pending.iter().filter(|(_, e)| e.counted()) {
            let expires_at = retention::expires_at(StoredItem::RawEvent, event.time, retention);
            actions.extend(self.aggregates.activity_action(tenant, event, expires_at)?);
        }
        let delta = AggregateDelta::group(pending.iter().map(|(_, e)| *e));
        for delta in &delta {
            actions.extend(self.aggregates.add_actions(tenant, delta, now)?);
        }
        Ok(actions)
    }
}

/// Events of one transaction, with their positions in the batch.
pub type Chunk<'a> = Vec<(usize, &'a StoredEvent)>;

/// The chunks of a batch, per account: each chunk is of one account-hour and
/// holds at most `EVENT_ACTIONS_PER_TRANSACTION` actions (an event, plus its
/// copy for a support or billing event). Chunks of one account update the same
/// day, month and directory items, so they are run one after another (together
/// they would conflict with each other).
pub fn account_chunks(events: &[StoredEvent]) -> Vec<Vec<Chunk<'_>>> {
    let mut groups: BTreeMap<AccountId, BTreeMap<HourBucket, Chunk<'_>>> = BTreeMap::new();
    for (i, event) in events.iter().enumerate() {
        groups
            .entry(event.account.clone())
            .or_default()
            .entry(event.hour())
            .or_default()
            .push((i, event));
    }
    groups
        .into_values()
        .map(|hours| {
            let mut chunks = Vec::new();
            for group in hours.into_values() {
                let mut chunk = Vec::new();
                let mut cost = 0;
                for entry in group {
                    let actions = 1 + usize::from(has_activity_copy(entry.1));
                    if cost + actions > EVENT_ACTIONS_PER_TRANSACTION {
                        chunks.push(std::mem::take(&mut chunk));
                        cost = 0;
                    }
                    cost += actions;
                    chunk.push(entry);
                }
                chunks.push(chunk);
            }
            chunks
        })
        .collect()
}

/// Idempotency token of one attempt (at most 36 characters): the SDK's retries of
/// the attempt send the same token; another request, another attempt, or the same
/// chunk less its duplicates gets another.
fn transaction_token(
    tenant: &TenantId,
    pending: &[(usize, &StoredEvent)],
    now: OffsetDateTime,
    attempt: u32,
) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant.as_str());
    hash.update(now.unix_timestamp_nanos().to_be_bytes());
    hash.update(attempt.to_be_bytes());
    for (_, event) in pending {
        hash.update(event.account.as_str());
        hash.update([0]);
        hash.update(event.id.as_str());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl EventStore for IngestTables {
    async fn record_events(
        &self,
        tenant: &TenantId,
        events: &[StoredEvent],
        retention: RawEventRetention,
        now: OffsetDateTime,
    ) -> Vec<Recorded> {
        let groups = account_chunks(events);
        // Futures are built eagerly: closures returning async blocks trip the Send check.
        let jobs: Vec<_> = groups
            .into_iter()
            .map(|chunks| async move {
                let mut out = Vec::new();
                for chunk in chunks {
                    out.extend(self.record_chunk(tenant, chunk, retention, now).await);
                }
                out
            })
            .collect();
        let outcomes: Vec<Vec<(usize, Recorded)>> = stream::iter(jobs)
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut results: Vec<Option<Recorded>> = vec![None; events.len()];
        for (i, outcome) in outcomes.into_iter().flatten() {
            results[i] = Some(outcome);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Recorded::Failed(StoreError::failed(
                        "record_events",
                        FailureKind::Permanent,
                        "event not handed to any transaction",
                    ))
                })
            })
            .collect()
    }
}

impl SubjectStore for IngestTables {
    async fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[LookupKeys],
    ) -> Result<HashMap<String, ResolvedSubject>, StoreError> {
        self.subjects.resolve_subjects(tenant, lookups).await
    }
}

impl TenantSettings for IngestTables {
    async fn raw_event_retention(
        &self,
        tenant: &TenantId,
    ) -> Result<RawEventRetention, StoreError> {
        self.tenants.raw_event_retention(tenant).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventId};

    fn event(account: &str, id: usize, hour: u8) -> StoredEvent {
        StoredEvent {
            id: EventId::parse(&format!("e-{id}")).expect("id"),
            time: time::macros::datetime!(2026-11-01 00:00 UTC)
                + time::Duration::hours(hour.into()),
            account: AccountId::parse(account).expect("account"),
            subject: None,
            data: EventData::Product {
                feature: "search".into(),
                action: None,
            },
            withheld: Default::default(),
        }
    }

    fn ticket(account: &str, id: usize, hour: u8) -> StoredEvent {
        let mut e = event(account, id, hour);
        e.data = EventData::SupportTicket {
            ticket_id: "T-1".into(),
            priority: "high",
            status: "open",
        };
        e
    }

    #[test]
    fn transactions_respect_the_100_action_limit_with_copies_and_updates() {
        // 250 events of one account-hour, 3 of another hour, 1 of another account,
        // and 60 tickets (2 actions each) in a third hour of the first account.
        let mut events: Vec<StoredEvent> = (0..250).map(|i| event("acme", i, 1)).collect();
        events.extend((250..253).map(|i| event("acme", i, 2)));
        events.push(event("globex", 253, 1));
        events.extend((254..314).map(|i| ticket("acme", i, 3)));
        let groups = account_chunks(&events);
        let sizes: Vec<Vec<usize>> = groups
            .iter()
            .map(|chunks| chunks.iter().map(Vec::len).collect())
            .collect();
        // 96 event actions per chunk: 96 plain events, or 48 tickets with their copies.
        assert_eq!(sizes, vec![vec![96, 96, 58, 3, 48, 12], vec![1]]);
        // Every event is in exactly one chunk, and a chunk with its updates fits.
        let mut seen: Vec<usize> = groups.iter().flatten().flatten().map(|(i, _)| *i).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..314).collect::<Vec<_>>());
        for chunk in groups.iter().flatten() {
            let actions: usize = chunk
                .iter()
                .map(|(_, e)| 1 + usize::from(has_activity_copy(e)))
                .sum();
            assert!(actions + ROLLUP_UPDATES <= MAX_TRANSACT_ACTIONS);
            assert!(chunk.iter().all(|(_, e)| e.hour() == chunk[0].1.hour()));
        }
    }

    #[test]
    fn a_token_names_the_content_and_fits_the_limit() {
        let tenant = TenantId::parse("t1").expect("tenant");
        let events: Vec<StoredEvent> = (0..3).map(|i| event("acme", i, 1)).collect();
        let all: Vec<(usize, &StoredEvent)> = events.iter().enumerate().collect();
        let now = time::macros::datetime!(2026-11-29 12:00 UTC);
        let token = transaction_token(&tenant, &all, now, 1);
        assert_eq!(token.len(), 32);
        assert_eq!(token, transaction_token(&tenant, &all, now, 1));
        assert_ne!(token, transaction_token(&tenant, &all[1..], now, 1));
        assert_ne!(
            token,
            transaction_token(&tenant, &all, now + time::Duration::milliseconds(1), 1)
        );
        assert_ne!(token, transaction_token(&tenant, &all, now, 2));
    }
}
