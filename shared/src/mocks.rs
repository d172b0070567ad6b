//! In-memory ports and request builders: for unit tests and for benchmarks that
//! exclude storage. Always compiled (a few hundred lines the linker drops from the
//! Lambda binaries), so that no build switches a feature on `shared` and every
//! crate builds once per profile (docs/decisions/0009).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::domain::{AggregateDelta, StoredEvent, SubjectId, TenantId};
use crate::keys;
use crate::ports::{AggregateStore, EventRef, EventStore, Failures, StoreError, SubjectStore};

/// (pk, sk) of an item.
pub type ItemKey = (String, String);
/// Counter name and total.
pub type Counters = Vec<(String, u64)>;

#[derive(Default)]
pub struct MemoryStore {
    pub subjects: Mutex<HashMap<String, SubjectId>>,
    pub events: Mutex<HashMap<ItemKey, StoredEvent>>,
    pub aggregates: Mutex<HashMap<ItemKey, Counters>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SubjectStore for MemoryStore {
    async fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> Result<HashMap<String, SubjectId>, StoreError> {
        let mut subjects = lock(&self.subjects);
        Ok(lookups
            .iter()
            .map(|lookup| {
                let subject = subjects
                    .entry(keys::subject_pk(tenant, lookup))
                    .or_insert_with(SubjectId::random)
                    .clone();
                (lookup.clone(), subject)
            })
            .collect())
    }
}

impl EventStore for MemoryStore {
    async fn existing_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> Result<HashSet<EventRef>, StoreError> {
        let stored = lock(&self.events);
        Ok(events
            .iter()
            .filter(|(account, id)| {
                stored.contains_key(&(keys::account_pk(tenant, account), keys::event_sk(id)))
            })
            .cloned()
            .collect())
    }

    async fn put_events(&self, tenant: &TenantId, events: &[StoredEvent]) -> Failures {
        let mut stored = lock(&self.events);
        for event in events {
            stored.insert(
                (
                    keys::account_pk(tenant, &event.account),
                    keys::event_sk(&event.id),
                ),
                event.clone(),
            );
        }
        Failures::new()
    }

    async fn delete_events(&self, tenant: &TenantId, events: &[EventRef]) -> Failures {
        let mut stored = lock(&self.events);
        for (account, id) in events {
            stored.remove(&(keys::account_pk(tenant, account), keys::event_sk(id)));
        }
        Failures::new()
    }
}

/// Stores nothing, but encodes every event into its DynamoDB item as the real
/// adapter would: the CPU benchmark measures the handler without any I/O.
#[derive(Default)]
pub struct EncodeOnlyStore;

impl SubjectStore for EncodeOnlyStore {
    async fn resolve_subjects(
        &self,
        _tenant: &TenantId,
        lookups: &[String],
    ) -> Result<HashMap<String, SubjectId>, StoreError> {
        Ok(lookups
            .iter()
            .map(|lookup| (lookup.clone(), SubjectId::random()))
            .collect())
    }
}

impl AggregateStore for EncodeOnlyStore {
    async fn add_aggregates(&self, _tenant: &TenantId, deltas: &[AggregateDelta]) -> Failures {
        for delta in deltas {
            std::hint::black_box(delta.counters());
        }
        Failures::new()
    }
}

impl AggregateStore for MemoryStore {
    async fn add_aggregates(&self, tenant: &TenantId, deltas: &[AggregateDelta]) -> Failures {
        let mut aggregates = lock(&self.aggregates);
        for delta in deltas {
            let counters = aggregates
                .entry((
                    keys::account_pk(tenant, &delta.account),
                    keys::aggregate_sk(delta.hour),
                ))
                .or_default();
            for (name, amount) in delta.counters() {
                match counters.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, total)) => *total += amount,
                    None => counters.push((name, amount)),
                }
            }
        }
        Failures::new()
    }
}

impl EventStore for EncodeOnlyStore {
    async fn existing_events(
        &self,
        _tenant: &TenantId,
        _events: &[EventRef],
    ) -> Result<HashSet<EventRef>, StoreError> {
        Ok(HashSet::new())
    }

    async fn put_events(&self, tenant: &TenantId, events: &[StoredEvent]) -> Failures {
        for event in events {
            std::hint::black_box(crate::adapters::dynamo::events::event_item(tenant, event));
        }
        Failures::new()
    }

    async fn delete_events(&self, _tenant: &TenantId, _events: &[EventRef]) -> Failures {
        Failures::new()
    }
}

/// A JSON POST as the authorizer would pass it on for `tenant` with `scopes`
/// ("ingest read"): what unit tests and benchmarks feed the handlers.
pub fn json_request_as(
    tenant: &str,
    scopes: &str,
    body: String,
) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
    use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayV2httpRequest};
    use aws_lambda_events::http::HeaderValue;
    let mut request = ApiGatewayV2httpRequest::default();
    request
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    for (name, value) in [
        (crate::auth::CONTEXT_TENANT, tenant),
        (crate::auth::CONTEXT_KEY_ID, "test-key"),
        (crate::auth::CONTEXT_SCOPES, scopes),
    ] {
        authorizer.fields.insert(name.to_owned(), value.into());
    }
    request.request_context.authorizer = Some(authorizer);
    request.body = Some(body);
    request
}
