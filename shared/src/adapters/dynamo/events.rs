//! Events table: one item per event, keyed by tenant, account and event id.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::codec::{key_of, n, s, timestamp, Item};
use super::{table_name, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::{EventData, StoredEvent, TenantId};
use crate::keys;
use crate::ports::{EventRef, EventStore, Failures, StoreError};

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

/// The stored form of an event: allow-listed fields only, the subject as a pseudonym.
pub fn event_item(tenant: &TenantId, event: &StoredEvent) -> Item {
    let mut item = event_key(tenant, &(event.account.clone(), event.id.clone()));
    item.insert("account".into(), s(event.account.as_str()));
    item.insert("source".into(), s(event.data.source().as_str()));
    item.insert("ts".into(), timestamp(event.time));
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

impl EventStore for EventTable {
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
        let found = self.db.batch_get(&self.name, item_keys, "pk, sk").await?;
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
        self.db.write_all(&self.name, requests).await
    }

    async fn delete_events(&self, tenant: &TenantId, events: &[EventRef]) -> Failures {
        let requests = events.iter().map(|event| {
            DeleteRequest::builder()
                .set_key(Some(event_key(tenant, event)))
                .build()
                .map(|delete| WriteRequest::builder().delete_request(delete).build())
        });
        self.db.write_all(&self.name, requests).await
    }
}
