//! The alert bus: notifications as EventBridge events (`source` `vigil.alerts`,
//! `detail-type` `Vigil Alert Notification`, the notification as `detail`), for
//! tenants to route with rules to Slack, e-mail, SNS or anything else.
//! PutEvents takes 10 entries a request; each entry succeeds or fails alone.

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use crate::config::{Config, ConfigError, Setting};
use crate::domain::alert::{DETAIL_TYPE, EVENT_SOURCE};
use crate::ports::{FailureKind, StoreError};

/// PutEvents' limit of entries per request.
pub const MAX_ENTRIES: usize = 10;

#[derive(Debug, Clone)]
pub struct AlertBus {
    client: Client,
    bus: String,
}

impl AlertBus {
    pub fn new(sdk: &SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            client: Client::new(sdk),
            bus: config.require(Setting::AlertBus)?.to_owned(),
        })
    }

    /// Puts each payload (a notification's JSON) as one event; per payload,
    /// whether the bus took it. A failed request fails every entry of it.
    pub async fn put(&self, payloads: &[&str]) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(payloads.len());
        for chunk in payloads.chunks(MAX_ENTRIES) {
            let entries: Vec<PutEventsRequestEntry> = chunk
                .iter()
                .map(|detail| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(DETAIL_TYPE)
                        .detail(*detail)
                        .build()
                })
                .collect();
            match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let answers = out.entries();
                    for i in 0..chunk.len() {
                        let failed = answers.get(i).is_none_or(|e| e.error_code().is_some());
                        results.push(if failed {
                            Err(StoreError::failed(
                                "PutEvents",
                                FailureKind::Retryable,
                                answers
                                    .get(i)
                                    .and_then(|e| e.error_code())
                                    .unwrap_or("no answer for the entry")
                                    .to_owned(),
                            ))
                        } else {
                            Ok(())
                        });
                    }
                }
                Err(error) => {
                    let error = super::dynamo::failed("PutEvents", error);
                    results.extend(chunk.iter().map(|_| Err(error.clone())));
                }
            }
        }
        results
    }
}
