//! DynamoDB: one adapter per port, each in its own module and each built with
//! the table names it needs (a missing setting fails at cold start, naming it),
//! over the helpers here: one retry loop for partial batches, one pagination
//! loop, one conditional-failure check, one error classification.
//!
//! AWS limits are enforced here because the emulator does not: at most 100 keys
//! per BatchGetItem and 100 actions per TransactWriteItems. Request-level
//! throttling and 5xx are retried by the SDK; unprocessed keys and cancelled
//! transactions are retried here; all back off with the one `RetryPolicy`. What
//! still fails is reported per item, never dropped.

pub mod access;
pub mod aggregates;
pub mod alerts;
pub mod audit;
pub mod codec;
pub mod events;
pub mod exports;
pub mod ingest;
pub mod privacy;
pub mod purge;
pub mod rights;
pub mod subjects;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, KeysAndAttributes, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use crate::config::{Config, ConfigError, Setting};
use crate::ports::{FailureKind, StoreError};
use crate::retry::RetryPolicy;
use codec::Item;

pub use access::TenantTable;
pub use aggregates::AggregateTable;
pub use alerts::AlertsTable;
pub use audit::AuditTable;
pub use events::EventTable;
pub use ingest::IngestTables;
pub use privacy::PrivacyTable;
pub use rights::RightsTables;
pub use subjects::SubjectTable;

/// AWS's TransactWriteItems limit (actions per transaction).
pub const MAX_TRANSACT_ACTIONS: usize = 100;
/// AWS's BatchGetItem limit.
pub const MAX_BATCH_GET: usize = 100;
/// AWS's BatchWriteItem limit (the emulator takes more; AWS refuses the request).
pub const MAX_BATCH_WRITE: usize = 25;
/// Conditional writes in flight at once for one request.
pub(crate) const CONCURRENT_WRITES: usize = 8;

/// The client and the retry policy every adapter shares.
#[derive(Debug, Clone)]
pub struct Dynamo {
    pub(crate) client: Client,
    pub(crate) retry: RetryPolicy,
}

/// Error codes a retry can clear.
const RETRYABLE_CODES: [&str; 7] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// A failed SDK call as a `StoreError`, classified retryable or permanent.
pub(crate) fn failed<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let kind = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Retryable
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if RETRYABLE_CODES.contains(&code) || service.raw().status().as_u16() >= 500 {
                FailureKind::Retryable
            } else {
                FailureKind::Permanent
            }
        }
        _ => FailureKind::Permanent,
    };
    StoreError::failed(operation, kind, DisplayErrorContext(error).to_string())
}

/// A request that could not even be built: a bug, not a retry.
pub(crate) fn unbuildable(operation: &'static str, error: impl std::error::Error) -> StoreError {
    StoreError::failed(
        operation,
        FailureKind::Permanent,
        DisplayErrorContext(error).to_string(),
    )
}

/// True when a conditional write was refused because its condition did not hold.
pub(crate) fn is_conditional_failure<E: ProvideErrorMetadata>(
    error: &SdkError<E, HttpResponse>,
) -> bool {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// A conditional write's outcome: `Ok(true)` applied, `Ok(false)` condition failed.
pub(crate) fn applied<T, E>(
    operation: &'static str,
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_conditional_failure(&error) => Ok(false),
        Err(error) => Err(failed(operation, error)),
    }
}

/// The configured name of a table.
pub(crate) fn table_name(config: &Config, setting: Setting) -> Result<String, ConfigError> {
    config.require(setting).map(str::to_owned)
}

impl Dynamo {
    /// The client for `config`'s endpoint and region, with the one retry policy;
    /// also returns the SDK config other clients (KMS, S3) are made from.
    pub async fn connect(config: &Config) -> (Self, SdkConfig) {
        let retry = RetryPolicy::default();
        let sdk = crate::aws::sdk_config(
            config.endpoint_url.as_deref(),
            config.region.as_deref(),
            retry,
        )
        .await;
        (Self::new(Client::new(&sdk), retry), sdk)
    }

    pub fn new(client: Client, retry: RetryPolicy) -> Self {
        Self { client, retry }
    }

    /// Every item a query returns, page after page, up to `limit` items (None: all).
    pub(crate) async fn query(
        &self,
        query: QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut page = query.clone().set_exclusive_start_key(start);
            if let Some(limit) = limit {
                let left = limit.saturating_sub(items.len()).max(1);
                page = page.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let out = page.send().await.map_err(|e| failed("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            let full = limit.is_some_and(|limit| items.len() >= limit);
            if start.is_none() || full {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
        }
    }

    /// One page of a query of partition `pk`, from after sort key `start`:
    /// its items and the sort key to continue from (None: the last page).
    pub(crate) async fn page(
        &self,
        query: QueryFluentBuilder,
        pk: &str,
        start: Option<String>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let start = start.map(|sk| {
            Item::from([
                (crate::keys::PK.to_owned(), AttributeValue::S(pk.to_owned())),
                (crate::keys::SK.to_owned(), AttributeValue::S(sk)),
            ])
        });
        let out = query
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| failed("Query", e))?;
        let next = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| k.get(crate::keys::SK))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((out.items.unwrap_or_default(), next))
    }

    /// One item by key, strongly consistent, only the attributes named (None: all).
    pub(crate) async fn get(
        &self,
        table: &str,
        key: Item,
        projection: Option<&str>,
    ) -> Result<Option<Item>, StoreError> {
        self.client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| failed("GetItem", e))
    }

    /// Every item of one partition of a global secondary index.
    pub(crate) async fn query_index(
        &self,
        table: &str,
        index: &str,
        key_attribute: &str,
        pk: String,
    ) -> Result<Vec<Item>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("#k = :pk")
            .expression_attribute_names("#k", key_attribute)
            .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(pk));
        self.query(query, None).await
    }

    /// Reads items by key, 100 keys a request, retrying unprocessed keys.
    pub(crate) async fn batch_get(
        &self,
        table: &str,
        item_keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in item_keys.chunks(MAX_BATCH_GET) {
            let mut pending = chunk.to_vec();
            let mut attempt = 1;
            loop {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .set_projection_expression(projection.map(str::to_owned))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| unbuildable("BatchGetItem", e))?;
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

    /// Deletes items by key, 25 keys a request, retrying unprocessed keys. Deleting
    /// an absent item succeeds, so a repeat is harmless.
    pub(crate) async fn batch_delete(
        &self,
        table: &str,
        item_keys: Vec<Item>,
    ) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        for chunk in item_keys.chunks(MAX_BATCH_WRITE) {
            let mut pending = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| unbuildable("BatchWriteItem", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 1;
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(|e| failed("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt >= self.retry.max_attempts {
                    return Err(StoreError::Exhausted {
                        operation: "BatchWriteItem",
                        attempts: attempt,
                    });
                }
                self.retry.sleep_before(attempt).await;
                attempt += 1;
            }
        }
        Ok(())
    }

    /// Runs one TransactWriteItems (at most `MAX_TRANSACT_ACTIONS` actions). The
    /// token makes the SDK's own retries of it idempotent (a response lost after
    /// the transaction applied is answered as a success, not applied twice).
    pub(crate) async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        token: String,
    ) -> Result<(), Cancelled> {
        debug_assert!(actions.len() <= MAX_TRANSACT_ACTIONS);
        let error = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .client_request_token(token)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let reasons = match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                cancelled.cancellation_reasons().to_vec()
            }
            // The same token with other parameters: another run (or request)
            // sent this transaction's twin first. Read again and retry.
            Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                return Err(Cancelled::Other(StoreError::failed(
                    "TransactWriteItems",
                    FailureKind::Retryable,
                    "the same transaction token is in use by another request",
                )))
            }
            _ => return Err(Cancelled::Failed(failed("TransactWriteItems", error))),
        };
        let code = |r: &CancellationReason| r.code().unwrap_or("None").to_owned();
        let conditions: Vec<bool> = reasons
            .iter()
            .map(|r| code(r) == "ConditionalCheckFailed")
            .collect();
        if conditions.contains(&true) {
            return Err(Cancelled::Conditions(conditions));
        }
        let codes: Vec<String> = reasons.iter().map(code).collect();
        let retryable = codes.iter().all(|c| {
            matches!(
                c.as_str(),
                "None"
                    | "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
            )
        });
        let detail = format!("transaction cancelled: {}", codes.join(", "));
        let kind = if retryable {
            FailureKind::Retryable
        } else {
            FailureKind::Permanent
        };
        Err(Cancelled::Other(StoreError::failed(
            "TransactWriteItems",
            kind,
            detail,
        )))
    }
}

/// Why a transaction did not apply.
#[derive(Debug)]
pub(crate) enum Cancelled {
    /// These actions' conditions failed (per action, in order); nothing applied.
    Conditions(Vec<bool>),
    /// Cancelled for another reason (conflict, throttling: retryable); nothing applied.
    Other(StoreError),
    /// The call itself failed (after the SDK's retries).
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[tokio::test]
    async fn an_adapter_names_its_missing_setting_when_built() {
        let config = Config::from_lookup(|name| {
            HashMap::from([
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("VIGIL_EVENTS_TABLE", "events"),
            ])
            .get(name)
            .map(|v| v.to_string())
        });
        let (db, _) = Dynamo::connect(&config).await;
        assert!(EventTable::new(&db, &config).is_ok());
        let missing = IngestTables::new(&db, &config).expect_err("subjects table missing");
        assert_eq!(
            missing.to_string(),
            "environment variable VIGIL_SUBJECTS_TABLE is not set"
        );
    }
}
