//! DynamoDB adapter for the ingest port.
//!
//! AWS limits are enforced here because the emulator does not: at most 25 items
//! per BatchWriteItem and 100 keys per BatchGetItem. Request-level throttling and
//! 5xx are retried by the SDK; unprocessed items are retried here; both back off
//! with the one `RetryPolicy`. What still fails is reported per item, never dropped.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest,
    ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use futures_util::stream::{self, StreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use crate::config::{Config, ConfigError, Setting};
use crate::domain::{AggregateDelta, EventData, StoredEvent, SubjectId, TenantId};
use crate::keys;
use crate::ports::{EventRef, Failures, IngestStore, StoreError};
use crate::retry::RetryPolicy;

/// AWS's BatchWriteItem limit.
pub const MAX_BATCH_WRITE: usize = 25;
/// AWS's BatchGetItem limit.
pub const MAX_BATCH_GET: usize = 100;
/// Aggregate and subject updates in flight at once for one request.
const CONCURRENT_UPDATES: usize = 8;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// Table names; a function's config holds only the tables it may use.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub events: Option<String>,
    pub aggregates: Option<String>,
    pub subjects: Option<String>,
    pub tenants: Option<String>,
    pub audit: Option<String>,
}

impl Tables {
    pub fn from_config(config: &Config) -> Self {
        let name = |setting| config.get(setting).map(str::to_owned);
        Self {
            events: name(Setting::EventsTable),
            aggregates: name(Setting::AggregatesTable),
            subjects: name(Setting::SubjectsTable),
            tenants: name(Setting::TenantsTable),
            audit: name(Setting::AuditTable),
        }
    }
}

/// The configured name of a table, or a storage error naming what is missing.
pub(crate) fn table<'a>(
    name: &'a Option<String>,
    which: &'static str,
) -> Result<&'a str, StoreError> {
    name.as_deref().ok_or(StoreError::Failed {
        operation: "configuration",
        detail: format!("no {which} table configured"),
    })
}

#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) tables: Tables,
    pub(crate) retry: RetryPolicy,
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn failed(operation: &'static str, error: impl std::error::Error) -> StoreError {
    StoreError::Failed {
        operation,
        detail: DisplayErrorContext(error).to_string(),
    }
}

fn key_of(item: &Item) -> (Option<&str>, Option<&str>) {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    (text(keys::PK), text(keys::SK))
}

fn write_request_key(request: &WriteRequest) -> (Option<String>, Option<String>) {
    let item = request
        .put_request()
        .map(PutRequest::item)
        .or_else(|| request.delete_request().map(DeleteRequest::key));
    match item.map(key_of) {
        Some((pk, sk)) => (pk.map(str::to_owned), sk.map(str::to_owned)),
        None => (None, None),
    }
}

impl DynamoStore {
    /// Checks that `required` settings are present, then builds the store (and the
    /// SDK config other clients are made from) with the one retry policy.
    pub async fn from_config(
        config: &Config,
        required: &[Setting],
    ) -> Result<(Self, SdkConfig), ConfigError> {
        config.require_all(required)?;
        let retry = RetryPolicy::default();
        let sdk = crate::aws::sdk_config(
            config.endpoint_url.as_deref(),
            config.region.as_deref(),
            retry,
        )
        .await;
        let store = Self::new(Client::new(&sdk), Tables::from_config(config), retry);
        Ok((store, sdk))
    }

    /// Every item a query returns, page after page.
    pub(crate) async fn query_all(
        &self,
        query: QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| failed("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    pub fn new(client: Client, tables: Tables, retry: RetryPolicy) -> Self {
        Self {
            client,
            tables,
            retry,
        }
    }

    /// Reads items by key, 100 keys a request, retrying unprocessed keys.
    async fn batch_get(
        &self,
        table: &str,
        item_keys: Vec<Item>,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in item_keys.chunks(MAX_BATCH_GET) {
            let mut pending = chunk.to_vec();
            let mut attempt = 1;
            loop {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .projection_expression(projection)
                    .consistent_read(true)
                    .build()
                    .map_err(|e| failed("BatchGetItem", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| failed("BatchGetItem", e))?;
                if let Some(items) = out.responses.and_then(|mut r| r.remove(table)) {
                    found.extend(items);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt >= self.retry.max_attempts {
                    return Err(StoreError::Exhausted {
                        operation: "BatchGetItem",
                        attempts: attempt,
                    });
                }
                self.retry.sleep_before(attempt).await;
                attempt += 1;
            }
        }
        Ok(found)
    }

    /// Writes requests 25 at a time, retrying unprocessed items; returns those that failed.
    async fn batch_write(&self, table: &str, requests: Vec<WriteRequest>) -> Failures {
        let mut failures = Failures::new();
        let indexed: Vec<(usize, WriteRequest)> = requests.into_iter().enumerate().collect();
        for chunk in indexed.chunks(MAX_BATCH_WRITE) {
            let mut pending: Vec<(usize, WriteRequest)> = chunk.to_vec();
            let mut attempt = 1;
            loop {
                let batch: Vec<WriteRequest> = pending.iter().map(|(_, r)| r.clone()).collect();
                let out = match self
                    .client
                    .batch_write_item()
                    .request_items(table, batch)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        let error = failed("BatchWriteItem", e);
                        failures.extend(pending.iter().map(|(i, _)| (*i, error.clone())));
                        break;
                    }
                };
                let unprocessed: HashSet<(Option<String>, Option<String>)> = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default()
                    .iter()
                    .map(write_request_key)
                    .collect();
                pending.retain(|(_, r)| unprocessed.contains(&write_request_key(r)));
                if pending.is_empty() {
                    break;
                }
                if attempt >= self.retry.max_attempts {
                    let error = StoreError::Exhausted {
                        operation: "BatchWriteItem",
                        attempts: attempt,
                    };
                    failures.extend(pending.iter().map(|(i, _)| (*i, error.clone())));
                    break;
                }
                self.retry.sleep_before(attempt).await;
                attempt += 1;
            }
        }
        failures
    }

    /// Writes built requests; if one cannot be built, nothing is sent and all fail.
    async fn write_all(
        &self,
        name: &Option<String>,
        which: &'static str,
        requests: impl ExactSizeIterator<Item = Result<WriteRequest, BuildError>>,
    ) -> Failures {
        let count = requests.len();
        let built = requests
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed("BatchWriteItem", e))
            .and_then(|requests| Ok((table(name, which)?, requests)));
        match built {
            Ok((table, requests)) => self.batch_write(table, requests).await,
            Err(error) => (0..count).map(|i| (i, error.clone())).collect(),
        }
    }

    async fn add_aggregate(
        &self,
        tenant: &TenantId,
        delta: &AggregateDelta,
    ) -> Result<(), StoreError> {
        let counters = delta.counters();
        let mut expression = String::from("SET updated_at = :now ADD ");
        let mut request = self
            .client
            .update_item()
            .table_name(table(&self.tables.aggregates, "aggregates")?)
            .key(keys::PK, s(keys::account_pk(tenant, &delta.account)))
            .key(keys::SK, s(keys::aggregate_sk(delta.hour)))
            .expression_attribute_values(":now", s(now_rfc3339()));
        for (i, (name, amount)) in counters.iter().enumerate() {
            if i > 0 {
                expression.push_str(", ");
            }
            expression.push_str(&format!("#c{i} :c{i}"));
            request = request
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(amount));
        }
        request
            .update_expression(expression)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("UpdateItem", e))
    }

    /// Creates the subject record unless another request just did; returns the pseudonym that won.
    async fn create_subject(
        &self,
        tenant: &TenantId,
        lookup: &str,
    ) -> Result<Option<SubjectId>, StoreError> {
        let subject = SubjectId::random();
        let result = self
            .client
            .put_item()
            .table_name(table(&self.tables.subjects, "subjects")?)
            .item(keys::PK, s(keys::subject_pk(tenant, lookup)))
            .item("subject_id", s(subject.as_str()))
            .item("created_at", s(now_rfc3339()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(subject)),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(conflict)) => Ok(conflict
                    .item()
                    .and_then(|item| item.get("subject_id"))
                    .and_then(|v| v.as_s().ok())
                    .map(|id| SubjectId::from_stored(id.clone()))),
                _ => Err(failed("PutItem", e)),
            },
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn event_key(tenant: &TenantId, (account, id): &EventRef) -> Item {
    HashMap::from([
        (keys::PK.to_owned(), s(keys::account_pk(tenant, account))),
        (keys::SK.to_owned(), s(keys::event_sk(id))),
    ])
}

/// The stored form of an event: allow-listed fields only, the subject as a pseudonym.
pub fn event_item(tenant: &TenantId, event: &StoredEvent) -> Item {
    let mut item = event_key(tenant, &(event.account.clone(), event.id.clone()));
    item.insert("account".into(), s(event.account.as_str()));
    item.insert("source".into(), s(event.data.source().as_str()));
    item.insert(
        "ts".into(),
        s(event.time.format(&Rfc3339).unwrap_or_default()),
    );
    item.insert("hour".into(), s(event.hour().label()));
    if let Some(subject) = &event.subject {
        item.insert("subject".into(), s(subject.as_str()));
    }
    let mut data: Item = HashMap::new();
    match &event.data {
        EventData::ApiCall {
            endpoint,
            method,
            status,
            latency_ms,
            units,
            client_network,
        } => {
            data.insert("endpoint".into(), s(endpoint));
            data.insert("method".into(), s(*method));
            data.insert("status".into(), n(status));
            data.insert("latency_ms".into(), n(latency_ms));
            data.insert("units".into(), n(units));
            if let Some(network) = client_network {
                data.insert("client_network".into(), s(network));
            }
        }
        EventData::Product { feature, action } => {
            data.insert("feature".into(), s(feature));
            if let Some(action) = action {
                data.insert("action".into(), s(action));
            }
        }
        EventData::Marketing { campaign, channel } => {
            data.insert("campaign".into(), s(campaign));
            data.insert("channel".into(), s(channel));
        }
        EventData::SupportTicket {
            ticket_id,
            priority,
            status,
        } => {
            data.insert("ticket_id".into(), s(ticket_id));
            data.insert("priority".into(), s(*priority));
            data.insert("status".into(), s(*status));
        }
        EventData::Billing {
            invoice_id,
            amount,
            currency,
            status,
        } => {
            data.insert("invoice_id".into(), s(invoice_id));
            data.insert("amount".into(), n(amount));
            data.insert("currency".into(), s(currency));
            data.insert("status".into(), s(*status));
        }
    }
    item.insert("data".into(), AttributeValue::M(data));
    item
}

impl IngestStore for DynamoStore {
    async fn resolve_subjects(
        &self,
        tenant: &TenantId,
        lookups: &[String],
    ) -> Result<HashMap<String, SubjectId>, StoreError> {
        let by_pk: HashMap<String, &String> = lookups
            .iter()
            .map(|lookup| (keys::subject_pk(tenant, lookup), lookup))
            .collect();
        let item_keys = by_pk
            .keys()
            .map(|pk| HashMap::from([(keys::PK.to_owned(), s(pk))]))
            .collect();
        let mut resolved = HashMap::new();
        for item in self
            .batch_get(
                table(&self.tables.subjects, "subjects")?,
                item_keys,
                "pk, subject_id",
            )
            .await?
        {
            if let ((Some(pk), _), Some(Ok(subject))) =
                (key_of(&item), item.get("subject_id").map(|v| v.as_s()))
            {
                if let Some(lookup) = by_pk.get(pk) {
                    resolved.insert((*lookup).clone(), SubjectId::from_stored(subject.clone()));
                }
            }
        }
        let missing: Vec<&String> = lookups
            .iter()
            .filter(|l| !resolved.contains_key(*l))
            .collect();
        // Futures are built eagerly: closures returning async blocks trip the Send check.
        let creations: Vec<_> = missing
            .iter()
            .map(|lookup| self.create_subject(tenant, lookup))
            .collect();
        let created: Vec<Result<Option<SubjectId>, StoreError>> = stream::iter(creations)
            .buffered(CONCURRENT_UPDATES)
            .collect()
            .await;
        for (lookup, outcome) in missing.into_iter().zip(created) {
            match outcome? {
                Some(subject) => {
                    resolved.insert(lookup.clone(), subject);
                }
                None => {
                    return Err(StoreError::Failed {
                        operation: "PutItem",
                        detail: "subject record exists but its pseudonym was not returned".into(),
                    })
                }
            }
        }
        Ok(resolved)
    }

    async fn existing_events(
        &self,
        tenant: &TenantId,
        events: &[EventRef],
    ) -> Result<HashSet<EventRef>, StoreError> {
        let by_key: HashMap<(String, String), &EventRef> = events
            .iter()
            .map(|event| {
                (
                    (keys::account_pk(tenant, &event.0), keys::event_sk(&event.1)),
                    event,
                )
            })
            .collect();
        let item_keys = events.iter().map(|e| event_key(tenant, e)).collect();
        let found = self
            .batch_get(table(&self.tables.events, "events")?, item_keys, "pk, sk")
            .await?;
        Ok(found
            .iter()
            .filter_map(|item| match key_of(item) {
                (Some(pk), Some(sk)) => by_key
                    .get(&(pk.to_owned(), sk.to_owned()))
                    .map(|e| (*e).clone()),
                _ => None,
            })
            .collect())
    }

    async fn put_events(&self, tenant: &TenantId, events: &[StoredEvent]) -> Failures {
        let requests = events.iter().map(|event| {
            PutRequest::builder()
                .set_item(Some(event_item(tenant, event)))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
        });
        self.write_all(&self.tables.events, "events", requests)
            .await
    }

    async fn add_aggregates(&self, tenant: &TenantId, deltas: &[AggregateDelta]) -> Failures {
        let updates: Vec<_> = deltas
            .iter()
            .map(|delta| self.add_aggregate(tenant, delta))
            .collect();
        let outcomes: Vec<Result<(), StoreError>> = stream::iter(updates)
            .buffered(CONCURRENT_UPDATES)
            .collect()
            .await;
        outcomes
            .into_iter()
            .enumerate()
            .filter_map(|(i, outcome)| outcome.err().map(|e| (i, e)))
            .collect()
    }

    async fn delete_events(&self, tenant: &TenantId, events: &[EventRef]) -> Failures {
        let requests = events.iter().map(|event| {
            DeleteRequest::builder()
                .set_key(Some(event_key(tenant, event)))
                .build()
                .map(|delete| WriteRequest::builder().delete_request(delete).build())
        });
        self.write_all(&self.tables.events, "events", requests)
            .await
    }
}
