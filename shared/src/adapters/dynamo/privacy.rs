//! Privacy table: a tenant's data subject requests, the lock that keeps one
//! request of a type open per subject, and the suppression markers of erased
//! subjects (docs/decisions/0016). One partition per tenant (`keys::privacy_pk`).
//!
//! A request names its subject by pseudonym (`subject_ref`) and, while it is
//! open, by lookup key (`lookup`, to find the subject record again if it is
//! resumed). Completion removes the lookup key; an erasure removes both from
//! every request of the person. This table is never restored with the data
//! tables: its markers are what a restore re-applies.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::codec::{is_live, n, s, text, time_of, timestamp, Item, EXPIRES_AT};
use super::{applied, table_name, unbuildable, Cancelled, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::privacy::{Directive, Receipt, RequestState, RequestType};
use crate::domain::retention::{self, StoredItem};
use crate::domain::subject::Purpose;
use crate::domain::{RawEventRetention, SubjectId, TenantId};
use crate::keys;
use crate::ports::StoreError;

#[derive(Debug, Clone)]
pub struct PrivacyTable {
    db: Dynamo,
    name: String,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub id: String,
    pub kind: RequestType,
    pub state: RequestState,
    pub purpose: Option<Purpose>,
    pub directive: Option<Directive>,
    pub received_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    /// The subject's pseudonym (removed by an erasure).
    pub subject: Option<SubjectId>,
    /// The subject record's lookup key, while the request is open.
    pub lookup: Option<String>,
    /// Events handled so far (restriction, objection, erasure), exact.
    pub events_done: u64,
    pub receipt: Option<Receipt>,
    /// Bundle objects written (keys in the data bucket).
    pub bundle: Vec<String>,
}

impl StoredRequest {
    /// The sort key of the lock this request holds while open.
    pub fn lock_sk(&self) -> Option<String> {
        self.subject.as_ref().map(|subject| {
            keys::lock_sk(
                self.kind.as_str(),
                self.purpose.map(Purpose::as_str),
                subject,
            )
        })
    }
}

/// Why a request could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    Opened,
    /// A request of this type for this subject is still open.
    AlreadyOpen,
}

/// One page of requests, newest first, and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPage {
    pub requests: Vec<StoredRequest>,
    pub next: Option<String>,
}

fn request_item(tenant: &TenantId, request: &StoredRequest) -> Item {
    let mut item = Item::new();
    item.insert(keys::PK.into(), s(keys::privacy_pk(tenant)));
    item.insert(keys::SK.into(), s(keys::request_sk(&request.id)));
    item.insert("request_id".into(), s(&request.id));
    item.insert("type".into(), s(request.kind.as_str()));
    item.insert("state".into(), s(request.state.as_str()));
    item.insert("received_at".into(), timestamp(request.received_at));
    item.insert("due_at".into(), timestamp(request.due_at));
    item.insert("updated_at".into(), timestamp(request.updated_at));
    item.insert("events_done".into(), n(request.events_done));
    if let Some(purpose) = request.purpose {
        item.insert("purpose".into(), s(purpose.as_str()));
    }
    if let Some(directive) = request.directive {
        item.insert("directive".into(), s(directive.as_str()));
    }
    if let Some(subject) = &request.subject {
        item.insert("subject_ref".into(), s(subject.as_str()));
    }
    if let Some(lookup) = &request.lookup {
        item.insert("lookup".into(), s(lookup));
    }
    item
}

fn request_of(item: &Item) -> Result<StoredRequest, StoreError> {
    let corrupt = || StoreError::corrupt("privacy request");
    let kind = text(item, "type")
        .and_then(|t| RequestType::parse(&t))
        .ok_or_else(corrupt)?;
    let state = text(item, "state")
        .and_then(|t| RequestState::parse(&t))
        .ok_or_else(corrupt)?;
    Ok(StoredRequest {
        id: text(item, "request_id").ok_or_else(corrupt)?,
        kind,
        state,
        purpose: text(item, "purpose").and_then(|p| Purpose::parse(&p)),
        directive: text(item, "directive").and_then(|d| Directive::parse(&d)),
        received_at: time_of(item, "received_at").ok_or_else(corrupt)?,
        due_at: time_of(item, "due_at").ok_or_else(corrupt)?,
        updated_at: time_of(item, "updated_at").ok_or_else(corrupt)?,
        completed_at: time_of(item, "completed_at"),
        reason: text(item, "reason"),
        subject: text(item, "subject_ref").map(SubjectId::from_stored),
        lookup: text(item, "lookup"),
        events_done: item
            .get("events_done")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        receipt: text(item, "receipt").and_then(|r| serde_json::from_str(&r).ok()),
        bundle: item
            .get("bundle")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    })
}

fn request_key(tenant: &TenantId, id: &str) -> Item {
    Item::from([
        (keys::PK.to_owned(), s(keys::privacy_pk(tenant))),
        (keys::SK.to_owned(), s(keys::request_sk(id))),
    ])
}

impl PrivacyTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::PrivacyTable)?,
        })
    }

    /// Stores a new request and its lock in one transaction: refused if a
    /// request of the same type is open for the subject.
    pub async fn open(
        &self,
        tenant: &TenantId,
        request: &StoredRequest,
    ) -> Result<Opening, StoreError> {
        let build = |e| unbuildable("TransactWriteItems", e);
        let mut actions = Vec::with_capacity(2);
        if let Some(lock) = request.lock_sk() {
            let mut item = Item::new();
            item.insert(keys::PK.into(), s(keys::privacy_pk(tenant)));
            item.insert(keys::SK.into(), s(lock));
            item.insert("request_id".into(), s(&request.id));
            if let Some(subject) = &request.subject {
                item.insert("subject_ref".into(), s(subject.as_str()));
            }
            let put = Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(request_item(tenant, request)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;
        actions.push(TransactWriteItem::builder().put(put).build());
        match self
            .db
            .transact(actions, format!("open-{}", request.id))
            .await
        {
            Ok(()) => Ok(Opening::Opened),
            Err(Cancelled::Conditions(_)) => Ok(Opening::AlreadyOpen),
            Err(Cancelled::Other(e) | Cancelled::Failed(e)) => Err(e),
        }
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        self.db
            .get(&self.name, request_key(tenant, id), None)
            .await?
            .map(|item| request_of(&item))
            .transpose()
    }

    /// Requests newest first, `limit` a page, from `cursor` (a request id), of
    /// one state or all.
    pub async fn list(
        &self,
        tenant: &TenantId,
        state: Option<RequestState>,
        limit: usize,
        cursor: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<RequestPage, StoreError> {
        // Newest first, below the cursor (the page's last id) if there is one:
        // a key range, so the page starts right after the cursor.
        let upper = match cursor {
            Some(cursor) => keys::request_sk(cursor),
            None => format!("{}~", keys::REQUEST_SK_PREFIX),
        };
        let mut query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :r AND :upper")
            .expression_attribute_values(":pk", s(keys::privacy_pk(tenant)))
            .expression_attribute_values(":r", s(keys::REQUEST_SK_PREFIX))
            .expression_attribute_values(":upper", s(upper))
            .scan_index_forward(false);
        if let Some(state) = state {
            query = query
                .filter_expression("#state = :state")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":state", s(state.as_str()));
        }
        // One more than a page tells whether there is a next one.
        let items = self.db.query(query, Some(limit + 2)).await?;
        let mut requests = items
            .iter()
            .filter(|item| is_live(item, now))
            .filter(|item| cursor.is_none() || text(item, "request_id").as_deref() != cursor)
            .map(request_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = (requests.len() > limit).then(|| {
            requests.truncate(limit);
            requests.last().map(|r| r.id.clone())
        });
        Ok(RequestPage {
            requests,
            next: next.flatten(),
        })
    }

    /// A query of one kind of item of the tenant's partition (`R#`, `O#`, `X#`).
    fn kind_query(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :kind)")
            .expression_attribute_values(":pk", s(keys::privacy_pk(tenant)))
            .expression_attribute_values(":kind", s(prefix))
    }

    /// Every request a query returns.
    async fn requests(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        self.db
            .query(query, None)
            .await?
            .iter()
            .map(request_of)
            .collect()
    }

    /// Every request naming the subject (its pseudonym).
    pub async fn subject_requests(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let query = self
            .kind_query(tenant, keys::REQUEST_SK_PREFIX)
            .filter_expression("subject_ref = :subject")
            .expression_attribute_values(":subject", s(subject.as_str()));
        self.requests(query).await
    }

    /// Every open request of the tenant (what a resumed run continues).
    pub async fn open_requests(&self, tenant: &TenantId) -> Result<Vec<StoredRequest>, StoreError> {
        let query = self
            .kind_query(tenant, keys::REQUEST_SK_PREFIX)
            .filter_expression("#state IN (:received, :progress)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":received", s(RequestState::Received.as_str()))
            .expression_attribute_values(":progress", s(RequestState::InProgress.as_str()));
        self.requests(query).await
    }

    /// Received -> in progress (no-op if it already is).
    pub async fn start(
        &self,
        tenant: &TenantId,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(request_key(tenant, id)))
            .update_expression("SET #state = :progress, updated_at = :now")
            .condition_expression("#state IN (:received, :progress)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":received", s(RequestState::Received.as_str()))
            .expression_attribute_values(":progress", s(RequestState::InProgress.as_str()))
            .expression_attribute_values(":now", timestamp(now))
            .send()
            .await;
        applied("UpdateItem", result)
    }

    /// The update that adds `count` handled events to a request's progress,
    /// as an action of the transaction that handles them (so the count is exact).
    pub(crate) fn progress_action(
        &self,
        tenant: &TenantId,
        id: &str,
        count: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.name)
            .set_key(Some(request_key(tenant, id)))
            .update_expression("ADD events_done :n")
            .condition_expression("#state = :progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":n", n(count))
            .expression_attribute_values(":progress", s(RequestState::InProgress.as_str()))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records the bundle objects written for a request.
    pub async fn set_bundle(
        &self,
        tenant: &TenantId,
        id: &str,
        objects: &[String],
    ) -> Result<(), StoreError> {
        if objects.is_empty() {
            return Ok(());
        }
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(request_key(tenant, id)))
            .update_expression("ADD bundle :objects")
            .expression_attribute_values(":objects", AttributeValue::Ss(objects.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| super::failed("UpdateItem", e))
    }

    /// Completes or rejects an open request, in one transaction with the
    /// release of its lock: the lookup key goes; with `forget_subject` (an
    /// erasure) the pseudonym too. False if it was no longer open.
    pub async fn close(
        &self,
        tenant: &TenantId,
        request: &StoredRequest,
        outcome: Closing<'_>,
        forget_subject: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let build = |e| unbuildable("TransactWriteItems", e);
        let expires = retention::expires_at(
            StoredItem::PrivacyRequest,
            now,
            RawEventRetention::default(),
        )
        .map(|at| at.unix_timestamp());
        let mut update = Update::builder()
            .table_name(&self.name)
            .set_key(Some(request_key(tenant, &request.id)))
            .condition_expression("#state IN (:received, :progress)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":received", s(RequestState::Received.as_str()))
            .expression_attribute_values(":progress", s(RequestState::InProgress.as_str()))
            .expression_attribute_values(":now", timestamp(now));
        let mut set = vec!["updated_at = :now", "#state = :closed"];
        let mut remove = vec!["lookup"];
        if forget_subject {
            remove.push("subject_ref");
        }
        if let Some(at) = expires {
            set.push("expires_at = :expires");
            update = update.expression_attribute_values(":expires", n(at));
        }
        match outcome {
            Closing::Completed(receipt) => {
                set.push("completed_at = :now");
                set.push("receipt = :receipt");
                let receipt = serde_json::to_string(receipt).unwrap_or_default();
                update = update
                    .expression_attribute_values(":closed", s(RequestState::Completed.as_str()))
                    .expression_attribute_values(":receipt", s(receipt));
            }
            Closing::Rejected(reason) => {
                set.push("reason = :reason");
                update = update
                    .expression_attribute_values(":closed", s(RequestState::Rejected.as_str()))
                    .expression_attribute_values(":reason", s(reason));
            }
        }
        let update = update
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .build()
            .map_err(build)?;
        let mut actions = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(lock) = request.lock_sk() {
            let delete = Delete::builder()
                .table_name(&self.name)
                .key(keys::PK, s(keys::privacy_pk(tenant)))
                .key(keys::SK, s(lock))
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().delete(delete).build());
        }
        // Two runs may close it at once with different receipts: each its own token.
        let token = {
            use sha2::Digest as _;
            let closing = match outcome {
                Closing::Completed(receipt) => receipt.digest.clone(),
                Closing::Rejected(reason) => reason.to_owned(),
            };
            let digest = sha2::Sha256::digest(format!("{}\0{closing}", request.id));
            format!("close-{}", &hex::encode(digest)[..30])
        };
        match self.db.transact(actions, token).await {
            Ok(()) => Ok(true),
            Err(Cancelled::Conditions(_)) => Ok(false),
            Err(Cancelled::Other(e) | Cancelled::Failed(e)) => Err(e),
        }
    }

    /// Removes the subject's pseudonym and lookup key from every request and
    /// lock of the tenant but `keep` (the erasure's own, closed last).
    pub async fn forget_subject(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
        keep: &str,
    ) -> Result<(), StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk")
            .filter_expression("subject_ref = :subject")
            .expression_attribute_values(":pk", s(keys::privacy_pk(tenant)))
            .expression_attribute_values(":subject", s(subject.as_str()));
        for item in self.db.query(query, None).await? {
            let (Some(pk), Some(sk)) = super::codec::key_of(&item) else {
                continue;
            };
            let key = Item::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))]);
            if sk.starts_with(keys::LOCK_SK_PREFIX) {
                if text(&item, "request_id").as_deref() == Some(keep) {
                    continue;
                }
                self.db
                    .client
                    .delete_item()
                    .table_name(&self.name)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map_err(|e| super::failed("DeleteItem", e))?;
            } else if sk != keys::request_sk(keep) {
                self.db
                    .client
                    .update_item()
                    .table_name(&self.name)
                    .set_key(Some(key))
                    .update_expression("REMOVE subject_ref, lookup")
                    .send()
                    .await
                    .map_err(|e| super::failed("UpdateItem", e))?;
            }
        }
        Ok(())
    }

    /// Keeps the suppression marker of an erased subject (idempotent).
    pub async fn put_marker(
        &self,
        tenant: &TenantId,
        marker: &str,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut put = self
            .db
            .client
            .put_item()
            .table_name(&self.name)
            .item(keys::PK, s(keys::privacy_pk(tenant)))
            .item(keys::SK, s(keys::marker_sk(marker)))
            .item("erased_at", timestamp(now))
            .item("request_id", s(request_id));
        if let Some(at) = retention::expires_at(
            StoredItem::SuppressionMarker,
            now,
            RawEventRetention::default(),
        ) {
            put = put.item(EXPIRES_AT, n(at.unix_timestamp()));
        }
        put.send()
            .await
            .map(|_| ())
            .map_err(|e| super::failed("PutItem", e))
    }

    /// The tenant's live suppression markers: marker -> when the erasure happened.
    pub async fn markers(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        let query = self.kind_query(tenant, keys::MARKER_SK_PREFIX);
        Ok(self
            .db
            .query(query, None)
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .filter_map(|item| {
                let marker = super::codec::key_of(item)
                    .1?
                    .strip_prefix(keys::MARKER_SK_PREFIX)?
                    .to_owned();
                Some((marker, time_of(item, "erased_at")?))
            })
            .collect())
    }
}

/// How a request ends.
#[derive(Debug, Clone, Copy)]
pub enum Closing<'a> {
    Completed(&'a Receipt),
    Rejected(&'a str),
}
