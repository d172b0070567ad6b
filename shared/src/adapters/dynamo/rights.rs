//! What the rights do to a subject's events (docs/decisions/0016), written
//! like ingestion writes them: one transaction per account-hour chunk, so the
//! dashboard's rollups move exactly with the events.
//!
//! - Withholding (restriction, objection) changes each event's `withheld`
//!   purposes; an event withheld from analytics leaves its rollups (counters
//!   subtracted, its sketch element deleted, its account-page copy removed), and
//!   comes back when the person lifts it.
//! - Erasure deletes each event, its copy, and takes it out of its rollups.
//!
//! Every event's write is conditional on what was read (its `withheld` value,
//! or its existence), and the request's `events_done` moves in the same
//! transaction: two runs at once, or a run resumed after an interruption,
//! never count an event twice. A cancelled chunk is re-read and recomputed.

use std::collections::BTreeSet;
use std::time::Instant;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::aggregates::Change;
use super::codec::Item;
use super::events::{withheld_value, EventRecord, WITHHELD};
use super::{unbuildable, AggregateTable, Cancelled, Dynamo, EventTable, PrivacyTable};
use crate::config::{Config, ConfigError};
use crate::domain::subject::Purpose;
use crate::domain::{AggregateDelta, StoredEvent, SubjectId, TenantId};
use crate::ports::StoreError;

/// Events per transaction: each needs its own write and may need its copy's,
/// plus four rollup updates and the request's progress (2 x 47 + 5 = 99).
pub const EVENTS_PER_CHUNK: usize = 47;
/// Whose work a pass is: a request's (the events it handles count in its
/// progress, in the same transactions) or a re-check after a state change
/// (no request to count for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work<'a> {
    Request(&'a str),
    Recheck,
}

impl Work<'_> {
    /// What names this work in transaction tokens.
    fn label(&self) -> &str {
        match self {
            Work::Request(id) => id,
            Work::Recheck => "recheck",
        }
    }
}

/// Re-reads after cancelled chunks before giving up (another run is at work).
const MAX_ROUNDS: u32 = 8;

#[derive(Debug, Clone)]
pub struct RightsTables {
    pub events: EventTable,
    pub aggregates: AggregateTable,
    pub privacy: PrivacyTable,
    db: Dynamo,
}

/// Where a pass over a subject's events stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every event is as asked.
    Done,
    /// The time budget ran out: the next run continues (nothing is half-done).
    OutOfTime,
}

enum Target<'a> {
    Withhold(&'a BTreeSet<Purpose>),
    Erase,
}

impl RightsTables {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            events: EventTable::new(db, config)?,
            aggregates: AggregateTable::new(db, config)?,
            privacy: PrivacyTable::new(db, config)?,
            db: db.clone(),
        })
    }

    /// Sets every event of the subject to be withheld from `purposes` (and from
    /// nothing else), moving the rollups with them.
    pub async fn withhold(
        &self,
        tenant: &TenantId,
        work: Work<'_>,
        subject: &SubjectId,
        purposes: &BTreeSet<Purpose>,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<Pass, StoreError> {
        self.pass(
            tenant,
            work,
            subject,
            Target::Withhold(purposes),
            deadline,
            now,
        )
        .await
    }

    /// Deletes every event of the subject and takes them out of the rollups.
    pub async fn erase_events(
        &self,
        tenant: &TenantId,
        request_id: &str,
        subject: &SubjectId,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<Pass, StoreError> {
        self.pass(
            tenant,
            Work::Request(request_id),
            subject,
            Target::Erase,
            deadline,
            now,
        )
        .await
    }

    async fn pass(
        &self,
        tenant: &TenantId,
        work: Work<'_>,
        subject: &SubjectId,
        target: Target<'_>,
        deadline: Instant,
        now: OffsetDateTime,
    ) -> Result<Pass, StoreError> {
        let mut round = 0;
        'reread: loop {
            round += 1;
            let records = self
                .events
                .subject_event_records(tenant, subject, now)
                .await?;
            let todo: Vec<&EventRecord> = records
                .iter()
                .filter(|r| match &target {
                    Target::Withhold(purposes) => r.event.withheld != **purposes,
                    Target::Erase => true,
                })
                .collect();
            if todo.is_empty() {
                return Ok(Pass::Done);
            }
            for chunk in chunks(&todo) {
                if Instant::now() >= deadline {
                    return Ok(Pass::OutOfTime);
                }
                let actions = self.actions(tenant, work, &chunk, &target, now)?;
                let token = chunk_token(work.label(), &chunk, &target);
                match self.db.transact(actions, token).await {
                    Ok(()) => {}
                    // Changed by another run meanwhile: read again.
                    Err(Cancelled::Conditions(_)) if round < MAX_ROUNDS => continue 'reread,
                    Err(Cancelled::Other(e)) if e.is_retryable() && round < MAX_ROUNDS => {
                        self.db.retry.sleep_before(round).await;
                        continue 'reread;
                    }
                    Err(Cancelled::Conditions(_)) => {
                        return Err(StoreError::Exhausted {
                            operation: "TransactWriteItems",
                            attempts: round,
                        })
                    }
                    Err(Cancelled::Other(e) | Cancelled::Failed(e)) => return Err(e),
                }
            }
            // Every chunk applied as read: nothing left (no second read to confirm).
            return Ok(Pass::Done);
        }
    }

    fn actions(
        &self,
        tenant: &TenantId,
        work: Work<'_>,
        chunk: &[&EventRecord],
        target: &Target<'_>,
        now: OffsetDateTime,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e| unbuildable("TransactWriteItems", e);
        let mut actions = Vec::with_capacity(chunk.len() * 2 + 5);
        let mut leaving: Vec<StoredEvent> = Vec::new();
        let mut returning: Vec<StoredEvent> = Vec::new();
        for record in chunk {
            let event = &record.event;
            let key: Item = self.events.key(tenant, event);
            match target {
                Target::Erase => {
                    let delete = Delete::builder()
                        .table_name(self.events.name())
                        .set_key(Some(key))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .map_err(build)?;
                    actions.push(TransactWriteItem::builder().delete(delete).build());
                    if event.counted() {
                        leaving.push(event.clone());
                    }
                }
                Target::Withhold(purposes) => {
                    let mut update = Update::builder()
                        .table_name(self.events.name())
                        .set_key(Some(key))
                        .expression_attribute_names("#w", WITHHELD);
                    update = if event.withheld.is_empty() {
                        update.condition_expression(
                            "attribute_exists(pk) AND attribute_not_exists(#w)",
                        )
                    } else {
                        update
                            .condition_expression("#w = :old")
                            .expression_attribute_values(":old", withheld_value(&event.withheld))
                    };
                    update = if purposes.is_empty() {
                        update.update_expression("REMOVE #w")
                    } else {
                        update
                            .update_expression("SET #w = :new")
                            .expression_attribute_values(":new", withheld_value(purposes))
                    };
                    actions.push(
                        TransactWriteItem::builder()
                            .update(update.build().map_err(build)?)
                            .build(),
                    );
                    let mut after = event.clone();
                    after.withheld = (*purposes).clone();
                    match (event.counted(), after.counted()) {
                        (true, false) => leaving.push(event.clone()),
                        (false, true) => returning.push(after),
                        _ => {}
                    }
                }
            }
        }
        for event in &leaving {
            actions.extend(self.aggregates.activity_delete_action(tenant, event)?);
        }
        for (event, record) in returning.iter().filter_map(|e| {
            chunk
                .iter()
                .find(|r| r.event.id == e.id && r.event.account == e.account)
                .map(|r| (e, r))
        }) {
            let expires = record
                .expires_at
                .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
            actions.extend(self.aggregates.activity_action(tenant, event, expires)?);
        }
        for delta in AggregateDelta::group(leaving.iter()) {
            actions.extend(
                self.aggregates
                    .change_actions(tenant, &delta, Change::Remove, now)?,
            );
        }
        for delta in AggregateDelta::group(returning.iter()) {
            actions.extend(
                self.aggregates
                    .change_actions(tenant, &delta, Change::Add, now)?,
            );
        }
        if let Work::Request(id) = work {
            actions.push(
                self.privacy
                    .progress_action(tenant, id, chunk.len() as u64)?,
            );
        }
        Ok(actions)
    }
}

/// The events to change, by account-hour (one rollup set per transaction), at
/// most `EVENTS_PER_CHUNK` a chunk.
fn chunks<'a>(todo: &[&'a EventRecord]) -> Vec<Vec<&'a EventRecord>> {
    let mut sorted: Vec<&EventRecord> = todo.to_vec();
    sorted.sort_by(|a, b| {
        (&a.event.account, a.event.hour(), &a.event.id).cmp(&(
            &b.event.account,
            b.event.hour(),
            &b.event.id,
        ))
    });
    let mut out: Vec<Vec<&EventRecord>> = Vec::new();
    for record in sorted {
        let fits = out.last().is_some_and(|chunk| {
            chunk.len() < EVENTS_PER_CHUNK
                && chunk[0].event.account == record.event.account
                && chunk[0].event.hour() == record.event.hour()
        });
        match out.last_mut() {
            Some(chunk) if fits => chunk.push(record),
            _ => out.push(vec![record]),
        }
    }
    out
}

/// Names the chunk's content: the SDK's retries of it are idempotent, a
/// different chunk never reuses a token.
fn chunk_token(label: &str, chunk: &[&EventRecord], target: &Target<'_>) -> String {
    let mut hash = Sha256::new();
    hash.update(label.as_bytes());
    match target {
        Target::Erase => hash.update(b"\0erase"),
        Target::Withhold(p) => {
            hash.update(b"\0withhold:");
            hash.update(super::events::withheld_text(p).as_bytes());
        }
    }
    for record in chunk {
        hash.update(b"\0");
        hash.update(record.event.account.as_str().as_bytes());
        hash.update(b"/");
        hash.update(record.event.id.as_str().as_bytes());
        hash.update(b"=");
        hash.update(super::events::withheld_text(&record.event.withheld).as_bytes());
    }
    // ClientRequestToken: at most 36 characters.
    hex::encode(hash.finalize())[..36].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, EventData, EventId};

    fn record(account: &str, id: usize, hour: i64) -> EventRecord {
        EventRecord {
            event: StoredEvent {
                id: EventId::parse(&format!("e-{id}")).expect("id"),
                time: time::macros::datetime!(2026-11-01 00:00 UTC) + time::Duration::hours(hour),
                account: AccountId::parse(account).expect("account"),
                subject: None,
                data: EventData::Product {
                    feature: "f".into(),
                    action: None,
                },
                withheld: BTreeSet::new(),
            },
            expires_at: None,
        }
    }

    #[test]
    fn chunks_hold_one_account_hour_within_the_transaction_limit() {
        let records: Vec<EventRecord> = (0..120)
            .map(|i| record(if i % 2 == 0 { "a" } else { "b" }, i, (i % 3) as i64))
            .collect();
        let refs: Vec<&EventRecord> = records.iter().collect();
        let chunks = chunks(&refs);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 120);
        for chunk in &chunks {
            assert!(chunk.len() <= EVENTS_PER_CHUNK);
            assert!(chunk.len() * 2 + 5 <= super::super::MAX_TRANSACT_ACTIONS);
            assert!(chunk
                .iter()
                .all(|r| r.event.account == chunk[0].event.account
                    && r.event.hour() == chunk[0].event.hour()));
        }
        let token = chunk_token("pr_1", &chunks[0], &Target::Erase);
        assert_eq!(token.len(), 36);
        assert_ne!(token, chunk_token("pr_2", &chunks[0], &Target::Erase));
    }
}
