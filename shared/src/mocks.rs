//! In-memory ports and request builders: for unit tests and for benchmarks that
//! exclude storage. Always compiled (a few hundred lines the linker drops from the
//! Lambda binaries), so that no build switches a feature on `shared` and every
//! crate builds once per profile (docs/decisions/0009).

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::crypto::LookupKeys;
use crate::domain::retention::StoredItem;
use crate::domain::{AggregateDelta, RawEventRetention, StoredEvent, SubjectId, TenantId};
use crate::keys;
use crate::ports::{
    EventStore, Recorded, ResolvedSubject, StoreError, SubjectStore, TenantSettings,
};

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
        lookups: &[LookupKeys],
    ) -> Result<HashMap<String, ResolvedSubject>, StoreError> {
        let mut subjects = lock(&self.subjects);
        Ok(lookups
            .iter()
            .map(|lookup| {
                let subject = subjects
                    .entry(keys::subject_pk(tenant, &lookup.current))
                    .or_insert_with(SubjectId::random)
                    .clone();
                (lookup.current.clone(), ResolvedSubject::new(subject))
            })
            .collect())
    }
}

impl EventStore for MemoryStore {
    /// Under one lock: what the DynamoDB transaction guarantees (store and count together).
    async fn record_events(
        &self,
        tenant: &TenantId,
        events: &[StoredEvent],
        _retention: RawEventRetention,
        _now: OffsetDateTime,
    ) -> Vec<Recorded> {
        let mut stored = lock(&self.events);
        let mut aggregates = lock(&self.aggregates);
        events
            .iter()
            .map(|event| {
                let key = (
                    keys::account_pk(tenant, &event.account),
                    keys::event_sk(&event.id),
                );
                if stored.contains_key(&key) {
                    return Recorded::AlreadyStored;
                }
                stored.insert(key, event.clone());
                for delta in AggregateDelta::group([event]) {
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
                Recorded::Counted
            })
            .collect()
    }
}

impl TenantSettings for MemoryStore {
    async fn raw_event_retention(
        &self,
        _tenant: &TenantId,
    ) -> Result<RawEventRetention, StoreError> {
        Ok(RawEventRetention::default())
    }
}

/// Stores nothing, but encodes every event and aggregate update into its
/// DynamoDB item as the real adapter would: the CPU benchmark measures the
/// handler without any I/O.
#[derive(Default)]
pub struct EncodeOnlyStore;

impl SubjectStore for EncodeOnlyStore {
    async fn resolve_subjects(
        &self,
        _tenant: &TenantId,
        lookups: &[LookupKeys],
    ) -> Result<HashMap<String, ResolvedSubject>, StoreError> {
        Ok(lookups
            .iter()
            .map(|lookup| {
                (
                    lookup.current.clone(),
                    ResolvedSubject::new(SubjectId::random()),
                )
            })
            .collect())
    }
}

impl EventStore for EncodeOnlyStore {
    async fn record_events(
        &self,
        tenant: &TenantId,
        events: &[StoredEvent],
        retention: RawEventRetention,
        _now: OffsetDateTime,
    ) -> Vec<Recorded> {
        for event in events {
            let expires_at =
                crate::domain::retention::expires_at(StoredItem::RawEvent, event.time, retention);
            std::hint::black_box(crate::adapters::dynamo::events::event_item(
                tenant, event, expires_at,
            ));
        }
        for delta in AggregateDelta::group(events) {
            std::hint::black_box(delta.counters());
        }
        vec![Recorded::Counted; events.len()]
    }
}

impl TenantSettings for EncodeOnlyStore {
    async fn raw_event_retention(
        &self,
        _tenant: &TenantId,
    ) -> Result<RawEventRetention, StoreError> {
        Ok(RawEventRetention::default())
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
