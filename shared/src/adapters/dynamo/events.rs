//! Events table: one item per event, keyed by tenant, account and event id,
//! with an expiry from the retention module and the keys of two sparse indexes
//! (a subject's events, a tenant's month). Events are written only inside the
//! ingestion transaction (`ingest.rs`), never on their own.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use time::OffsetDateTime;

use super::codec::{is_live, key_of, n, num, s, text, time_of, timestamp, Item, EXPIRES_AT};
use super::{table_name, unbuildable, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::subject::Purpose;
use crate::domain::validate::{
    allowed, BILLING_STATUSES, HTTP_METHODS, TICKET_PRIORITIES, TICKET_STATUSES,
};
use crate::domain::{AccountId, EventData, EventId, Source, StoredEvent, SubjectId, TenantId};
use crate::keys;
use crate::ports::{EventRef, StoreError};

#[derive(Debug, Clone)]
pub struct EventTable {
    db: Dynamo,
    name: String,
}

impl EventTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::EventsTable)?,
        })
    }
}

fn event_key(tenant: &TenantId, (account, id): &EventRef) -> Item {
    HashMap::from([
        (keys::PK.to_owned(), s(keys::account_pk(tenant, account))),
        (keys::SK.to_owned(), s(keys::event_sk(id))),
    ])
}

/// The stored form of an event: allow-listed fields only, the subject as a
/// pseudonym (inside `subject_key`), its expiry, and the keys of the indexes it
/// belongs to.
pub fn event_item(
    tenant: &TenantId,
    event: &StoredEvent,
    expires_at: Option<OffsetDateTime>,
) -> Item {
    // Nothing the keys already say (account, hour, pseudonym): every attribute is
    // paid for in write units, in both indexes' storage and in CPU per event.
    let mut item = event_key(tenant, &(event.account.clone(), event.id.clone()));
    item.insert("source".into(), s(event.data.source().as_str()));
    item.insert("ts".into(), timestamp(event.time));
    item.insert(
        keys::MONTH_KEY.into(),
        s(keys::month_index_pk(tenant, &event.month(), &event.account)),
    );
    if let Some(subject) = &event.subject {
        item.insert(
            keys::SUBJECT_KEY.into(),
            s(keys::subject_index_pk(tenant, subject)),
        );
    }
    if let Some(at) = expires_at {
        item.insert(EXPIRES_AT.into(), n(at.unix_timestamp()));
    }
    if !event.withheld.is_empty() {
        item.insert(WITHHELD.into(), withheld_value(&event.withheld));
    }
    let mut data: Item = HashMap::new();
    match &event.data {
        EventData::ApiCall {
            endpoint,
            method,
            status,
            latency_ms,
            units,
        } => {
            data.insert("endpoint".into(), s(endpoint));
            data.insert("method".into(), s(*method));
            data.insert("status".into(), n(status));
            data.insert("latency_ms".into(), n(latency_ms));
            data.insert("units".into(), n(units));
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

/// The purposes an event is withheld from, sorted and comma-separated (a string,
/// not a set: conditions compare it exactly; docs/decisions/0016).
pub const WITHHELD: &str = "withheld";

pub(crate) fn withheld_text(purposes: &BTreeSet<Purpose>) -> String {
    purposes
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn withheld_value(purposes: &BTreeSet<Purpose>) -> AttributeValue {
    s(withheld_text(purposes))
}

/// A stored event read back: the event, and its expiry (epoch seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event: StoredEvent,
    pub expires_at: Option<i64>,
}

/// Reads an event item back (None: not an event of `tenant`, or malformed).
pub fn event_of(tenant: &TenantId, item: &Item) -> Option<EventRecord> {
    let (account, id) = event_ref(tenant, item).ok()?;
    let time = time_of(item, "ts")?;
    let data = item.get("data")?.as_m().ok()?;
    let field = |name: &str| text(data, name);
    let data = match Source::parse(&text(item, "source")?)? {
        Source::ApiCall => EventData::ApiCall {
            endpoint: field("endpoint")?,
            method: allowed(&HTTP_METHODS, &field("method")?)?,
            status: num(data, "status")?,
            latency_ms: num(data, "latency_ms")?,
            units: num(data, "units")?,
        },
        Source::Product => EventData::Product {
            feature: field("feature")?,
            action: field("action"),
        },
        Source::Marketing => EventData::Marketing {
            campaign: field("campaign")?,
            channel: field("channel")?,
        },
        Source::SupportTicket => EventData::SupportTicket {
            ticket_id: field("ticket_id")?,
            priority: allowed(&TICKET_PRIORITIES, &field("priority")?)?,
            status: allowed(&TICKET_STATUSES, &field("status")?)?,
        },
        Source::Billing => EventData::Billing {
            invoice_id: field("invoice_id")?,
            amount: data.get("amount")?.as_n().ok()?.clone(),
            currency: field("currency")?,
            status: allowed(&BILLING_STATUSES, &field("status")?)?,
        },
    };
    let subject = text(item, keys::SUBJECT_KEY).and_then(|k| {
        k.strip_prefix(&keys::tenant_prefix(tenant))?
            .strip_prefix("S#")
            .map(|s| SubjectId::from_stored(s.to_owned()))
    });
    let withheld = text(item, WITHHELD)
        .map(|ps| ps.split(',').filter_map(Purpose::parse).collect())
        .unwrap_or_default();
    Some(EventRecord {
        event: StoredEvent {
            id,
            time,
            account,
            subject,
            data,
            withheld,
        },
        expires_at: num(item, EXPIRES_AT),
    })
}

impl EventTable {
    /// A subject's live events, whole: the keys from the `by_subject` index, then
    /// the items (100 a request).
    pub async fn subject_event_records(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let refs = self.subject_events(tenant, subject, now).await?;
        let item_keys = refs.iter().map(|r| event_key(tenant, r)).collect();
        let mut records = Vec::with_capacity(refs.len());
        for item in self.db.batch_get(&self.name, item_keys, None).await? {
            if !is_live(&item, now) {
                continue;
            }
            records.push(event_of(tenant, &item).ok_or_else(|| StoreError::corrupt("event"))?);
        }
        records.sort_by(|a, b| (a.event.time, &a.event.id).cmp(&(b.event.time, &b.event.id)));
        Ok(records)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The item key of an event.
    pub(crate) fn key(&self, tenant: &TenantId, event: &StoredEvent) -> Item {
        event_key(tenant, &(event.account.clone(), event.id.clone()))
    }

    /// A put of a new event, refused (ConditionalCheckFailed) if a live event
    /// with its key is stored: the ingestion transaction's duplicate check.
    pub(crate) fn put_new(
        &self,
        tenant: &TenantId,
        event: &StoredEvent,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(event_item(tenant, event, expires_at)))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn query_index(
        &self,
        index: &str,
        key_attribute: &str,
        pk: String,
        now: OffsetDateTime,
    ) -> Result<Vec<Item>, StoreError> {
        let items = self
            .db
            .query_index(&self.name, index, key_attribute, pk)
            .await?;
        Ok(items
            .into_iter()
            .filter(|item| is_live(item, now))
            .collect())
    }

    /// A subject's live events, by the sparse `by_subject` index: the cost is
    /// what the person has, not what the table holds.
    pub async fn subject_events(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Vec<EventRef>, StoreError> {
        let pk = keys::subject_index_pk(tenant, subject);
        let items = self
            .query_index(keys::BY_SUBJECT, keys::SUBJECT_KEY, pk, now)
            .await?;
        items.iter().map(|item| event_ref(tenant, item)).collect()
    }

    /// A tenant's live events of a month (`yyyy-mm`), by the `by_month` index
    /// (one query per shard).
    pub async fn month_events(
        &self,
        tenant: &TenantId,
        month: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<EventRef>, StoreError> {
        let mut refs = Vec::new();
        for shard in 0..keys::MONTH_SHARDS {
            let pk = keys::month_shard_pk(tenant, month, shard);
            for item in self
                .query_index(keys::BY_MONTH, keys::MONTH_KEY, pk, now)
                .await?
            {
                refs.push(event_ref(tenant, &item)?);
            }
        }
        Ok(refs)
    }
}

/// Events per page of a month shard: the same read units as 1 MB pages, and
/// each answer stays quick (the emulator takes seconds over a 1 MB page, past
/// the SDK's attempt timeout); at ~300 bytes an event, about 3 × the requests.
pub const MONTH_PAGE: i32 = 1_000;

/// Where the next page of a month shard starts (opaque: the index's last key).
#[derive(Debug, Clone, PartialEq)]
pub struct MonthCursor(Item);

impl crate::ports::MonthEvents for EventTable {
    type Cursor = MonthCursor;

    /// One page (up to `MONTH_PAGE` events) of one shard of a tenant's month,
    /// in index order (time), live events only, whole: the export streams them
    /// page by page and never holds the month.
    async fn month_page(
        &self,
        tenant: &TenantId,
        month: &str,
        shard: u32,
        start: Option<MonthCursor>,
        now: OffsetDateTime,
    ) -> Result<(Vec<StoredEvent>, Option<MonthCursor>), StoreError> {
        let out = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .index_name(keys::BY_MONTH)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", keys::MONTH_KEY)
            .expression_attribute_values(":k", s(keys::month_shard_pk(tenant, month, shard)))
            .set_exclusive_start_key(start.map(|c| c.0))
            .limit(MONTH_PAGE)
            .send()
            .await
            .map_err(|e| super::failed("Query", e))?;
        let next = out.last_evaluated_key.map(MonthCursor);
        let mut events = Vec::with_capacity(out.items.as_ref().map_or(0, Vec::len));
        for item in out.items.unwrap_or_default() {
            if !is_live(&item, now) {
                continue;
            }
            let record = event_of(tenant, &item).ok_or_else(|| StoreError::corrupt("event"))?;
            events.push(record.event);
        }
        Ok((events, next))
    }
}

/// The account and id of a stored event, from its keys.
fn event_ref(tenant: &TenantId, item: &Item) -> Result<EventRef, StoreError> {
    let (Some(pk), Some(sk)) = key_of(item) else {
        return Err(StoreError::corrupt("event key"));
    };
    let account = keys::account_of_pk(tenant, pk).and_then(|a| AccountId::parse(a).ok());
    let id = keys::event_id_of_sk(sk).and_then(|id| EventId::parse(id).ok());
    match (account, id) {
        (Some(account), Some(id)) => Ok((account, id)),
        _ => Err(StoreError::corrupt("event key")),
    }
}
