//! Alerts table (docs/decisions/0017): a tenant's rules, webhook and silences
//! (one partition, one query), each account's active alerts (versioned: an
//! evaluation commits only over the version it read), the history of alerts
//! that fired, and notifications with their outbox.
//!
//! A commit is one transaction: the account's new state (conditioned on the
//! version read), the history entries of what fired or resolved, and the
//! notification with its outbox entry. Two evaluations racing on an account
//! write it once; the loser reads again and finds nothing left to do.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::codec::{is_live, n, s, text, time_of, timestamp, Item, EXPIRES_AT};
use super::{applied, failed, table_name, unbuildable, Cancelled, Dynamo};
use crate::config::{Config, ConfigError, Setting};
use crate::domain::alert::{AccountAlerts, HistoryEntry, Notification, Silence, Status, Step};
use crate::domain::retention::{self, StoredItem};
use crate::domain::{AccountId, RawEventRetention, TenantId};
use crate::keys;
use crate::ports::StoreError;

#[derive(Debug, Clone)]
pub struct AlertsTable {
    db: Dynamo,
    name: String,
}

/// The tenant's webhook, its signing secret sealed by KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub secret_created_at: OffsetDateTime,
}

/// Everything of a tenant's alert configuration, read at once.
#[derive(Debug, Clone, Default)]
pub struct StoredSettings {
    /// The rules as stored (JSON), None until the tenant sets its own.
    pub rules: Option<String>,
    pub rules_updated_at: Option<OffsetDateTime>,
    pub webhook: Option<StoredWebhook>,
    /// Every silence still kept (active, future or ended lately).
    pub silences: Vec<Silence>,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub sk: String,
    pub notification_sk: String,
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub bus_done: bool,
    pub webhook_done: bool,
}

/// What one delivery attempt of a notification achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub bus_done: bool,
    /// None: no webhook configured.
    pub webhook_done: Option<bool>,
    /// Why the last attempt failed ("HTTP 500", "timeout", ...): no payload, no URL.
    pub last_error: Option<String>,
    /// When to try again (None: delivered, or given up).
    pub retry_at: Option<OffsetDateTime>,
}

/// A notification as listed, with its delivery record.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub payload: String,
    pub bus: String,
    pub webhook: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<OffsetDateTime>,
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn expiry(item: StoredItem, now: OffsetDateTime) -> Option<AttributeValue> {
    retention::expires_at(item, now, RawEventRetention::default()).map(|at| n(at.unix_timestamp()))
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn flag(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn epoch(at: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A transaction token from what is committed: the same commit, the same token.
fn token(parts: &str) -> String {
    hex::encode(&Sha256::digest(parts.as_bytes())[..16])
}

impl crate::ports::AlertHistory for AlertsTable {
    async fn account_alerts(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.account_history(tenant, account, limit, now).await
    }
}

impl AlertsTable {
    pub fn new(db: &Dynamo, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            db: db.clone(),
            name: table_name(config, Setting::AlertsTable)?,
        })
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .build()
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Rules, webhook and silences: one query.
    pub async fn settings(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<StoredSettings, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::alert_config_pk(tenant)))
            .consistent_read(true);
        let mut settings = StoredSettings::default();
        for item in self.db.query(query, None).await? {
            if !is_live(&item, now) {
                continue;
            }
            let sk = text(&item, keys::SK).unwrap_or_default();
            if sk == keys::ALERT_RULES_SK {
                settings.rules = text(&item, "rules");
                settings.rules_updated_at = time_of(&item, "updated_at");
            } else if sk == keys::WEBHOOK_SK {
                let sealed = item
                    .get("secret")
                    .and_then(|v| v.as_b().ok())
                    .map(|b| b.clone().into_inner());
                match (text(&item, "url"), sealed, time_of(&item, "created_at")) {
                    (Some(url), Some(sealed_secret), Some(created_at)) => {
                        settings.webhook = Some(StoredWebhook {
                            url,
                            sealed_secret,
                            created_at,
                            secret_created_at: time_of(&item, "secret_created_at")
                                .unwrap_or(created_at),
                        })
                    }
                    _ => return Err(StoreError::corrupt("webhook")),
                }
            } else if sk.starts_with(keys::SILENCE_SK_PREFIX) {
                let silence = text(&item, "silence")
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .ok_or_else(|| StoreError::corrupt("silence"))?;
                settings.silences.push(silence);
            }
        }
        settings
            .silences
            .sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
        Ok(settings)
    }

    pub async fn put_rules(
        &self,
        tenant: &TenantId,
        rules_json: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.db
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(
                key(
                    keys::alert_config_pk(tenant),
                    keys::ALERT_RULES_SK.to_owned(),
                )
                .into_iter()
                .chain([
                    ("rules".to_owned(), s(rules_json)),
                    ("updated_at".to_owned(), timestamp(now)),
                ])
                .collect(),
            ))
            .send()
            .await
            .map_err(|e| failed("PutItem", e))?;
        Ok(())
    }

    /// Sets the webhook; a new sealed secret replaces the old one only when
    /// given. True if there was none before.
    pub async fn put_webhook(
        &self,
        tenant: &TenantId,
        url: &str,
        sealed_secret: Option<Vec<u8>>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(
                keys::alert_config_pk(tenant),
                keys::WEBHOOK_SK.to_owned(),
            )))
            .expression_attribute_values(":url", s(url))
            .expression_attribute_values(":now", timestamp(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        match sealed_secret {
            Some(sealed) => {
                update = update
                    .update_expression("SET #u = :url, updated_at = :now, created_at = if_not_exists(created_at, :now), secret = :secret, secret_created_at = :now")
                    .expression_attribute_values(":secret", AttributeValue::B(Blob::new(sealed)));
            }
            // Without a new secret, only an existing webhook can change its URL.
            None => {
                update = update
                    .update_expression("SET #u = :url, updated_at = :now")
                    .condition_expression("attribute_exists(secret)");
            }
        }
        let out = update
            .expression_attribute_names("#u", "url")
            .send()
            .await
            .map_err(|e| failed("UpdateItem", e))?;
        Ok(out.attributes.is_none_or(|a| !a.contains_key("secret")))
    }

    /// True if there was one.
    pub async fn delete_webhook(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let out = self
            .db
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(
                keys::alert_config_pk(tenant),
                keys::WEBHOOK_SK.to_owned(),
            )))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| failed("DeleteItem", e))?;
        Ok(out.attributes.is_some())
    }

    pub async fn put_silence(
        &self,
        tenant: &TenantId,
        silence: &Silence,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(silence).map_err(|e| unbuildable("PutItem", e))?;
        let mut item = key(keys::alert_config_pk(tenant), keys::silence_sk(&silence.id));
        item.insert("silence".into(), s(json));
        item.insert("created_at".into(), timestamp(now));
        if let Some(at) = expiry(StoredItem::AlertSilence, now) {
            item.insert(EXPIRES_AT.into(), at);
        }
        self.db
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| failed("PutItem", e))?;
        Ok(())
    }

    /// Ends a silence now (kept, ended, until it expires); None if unknown.
    pub async fn end_silence(
        &self,
        tenant: &TenantId,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Silence>, StoreError> {
        let found = self
            .db
            .get(
                &self.name,
                key(keys::alert_config_pk(tenant), keys::silence_sk(id)),
                None,
            )
            .await?;
        let Some(item) = found.filter(|i| is_live(i, now)) else {
            return Ok(None);
        };
        let mut silence: Silence = text(&item, "silence")
            .and_then(|json| serde_json::from_str(&json).ok())
            .ok_or_else(|| StoreError::corrupt("silence"))?;
        if silence.ends_at > now {
            silence.ends_at = now.max(silence.starts_at);
        }
        let json = serde_json::to_string(&silence).map_err(|e| unbuildable("UpdateItem", e))?;
        self.db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(
                keys::alert_config_pk(tenant),
                keys::silence_sk(id),
            )))
            .update_expression("SET silence = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":s", s(json))
            .send()
            .await
            .map_err(|e| failed("UpdateItem", e))?;
        Ok(Some(silence))
    }

    /// The active alerts of these accounts (absent: none), 100 keys a request.
    pub async fn states(
        &self,
        tenant: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<String, AccountAlerts>, StoreError> {
        let item_keys = accounts
            .iter()
            .map(|a| key(keys::alert_state_pk(tenant), keys::alert_state_sk(a)))
            .collect();
        let mut out = HashMap::new();
        for item in self.db.batch_get(&self.name, item_keys, None).await? {
            let sk = text(&item, keys::SK).unwrap_or_default();
            let Some(account) = sk.strip_prefix("A#") else {
                continue;
            };
            let alerts = text(&item, "alerts")
                .and_then(|json| serde_json::from_str(&json).ok())
                .ok_or_else(|| StoreError::corrupt("alert state"))?;
            out.insert(
                account.to_owned(),
                AccountAlerts {
                    version: number(&item, "version").unwrap_or(0),
                    alerts,
                },
            );
        }
        Ok(out)
    }

    /// Writes an evaluation's step of one account, if its state is still at the
    /// version read: true if written by this call, false if another evaluation
    /// moved it first (read again).
    pub async fn commit(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        prior_version: u64,
        step: &Step,
        notification: Option<&Notification>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let version = prior_version + 1;
        let mut actions = Vec::new();
        let alerts = serde_json::to_string(&step.next.alerts)
            .map_err(|e| unbuildable("TransactWriteItems", e))?;
        let mut state = key(keys::alert_state_pk(tenant), keys::alert_state_sk(account));
        state.insert("alerts".into(), s(alerts));
        state.insert("version".into(), n(version));
        state.insert("updated_at".into(), timestamp(now));
        let condition = if prior_version == 0 {
            "attribute_not_exists(pk)".to_owned()
        } else {
            "version = :v".to_owned()
        };
        let mut put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(state))
            .condition_expression(condition);
        if prior_version > 0 {
            put = put.expression_attribute_values(":v", n(prior_version));
        }
        actions.push(
            TransactWriteItem::builder()
                .put(
                    put.build()
                        .map_err(|e| unbuildable("TransactWriteItems", e))?,
                )
                .build(),
        );
        for transition in &step.transitions {
            let alert = &transition.alert;
            let sk = keys::alert_history_sk(account, &rfc3339(alert.fired_at), &alert.rule);
            match alert.status {
                Status::Firing => {
                    let mut item = key(keys::alert_history_pk(tenant), sk);
                    item.insert("account".into(), s(account.as_str()));
                    item.insert("rule".into(), s(&alert.rule));
                    item.insert("kind".into(), s(alert.kind.as_str()));
                    item.insert("severity".into(), s(severity(alert)));
                    item.insert("state".into(), s("firing"));
                    item.insert("started_at".into(), timestamp(alert.started_at));
                    item.insert("fired_at".into(), timestamp(alert.fired_at));
                    item.insert("notified".into(), AttributeValue::Bool(transition.sent));
                    if let Some(v) = alert.value.filter(|v| v.is_finite()) {
                        item.insert("value".into(), n(v));
                    }
                    if let Some(t) = alert.threshold {
                        item.insert("threshold".into(), n(t));
                    }
                    if !alert.labels.is_empty() {
                        let labels = serde_json::to_string(&alert.labels)
                            .map_err(|e| unbuildable("TransactWriteItems", e))?;
                        item.insert("labels".into(), s(labels));
                    }
                    if let Some(at) = expiry(StoredItem::AlertHistory, now) {
                        item.insert(EXPIRES_AT.into(), at);
                    }
                    actions.push(self.put(item)?);
                }
                Status::Resolved => {
                    // Unconditional: an entry TTL already deleted (a year-long
                    // alert) leaves an orphan that reads skip, not a stuck commit.
                    let update = Update::builder()
                        .table_name(&self.name)
                        .set_key(Some(key(keys::alert_history_pk(tenant), sk)))
                        .update_expression("SET #s = :resolved, resolved_at = :now")
                        .expression_attribute_names("#s", "state")
                        .expression_attribute_values(":resolved", s("resolved"))
                        .expression_attribute_values(":now", timestamp(now));
                    actions.push(
                        TransactWriteItem::builder()
                            .update(
                                update
                                    .build()
                                    .map_err(|e| unbuildable("TransactWriteItems", e))?,
                            )
                            .build(),
                    );
                }
            }
        }
        if let Some(notification) = notification {
            let payload = serde_json::to_string(notification)
                .map_err(|e| unbuildable("TransactWriteItems", e))?;
            let created = rfc3339(notification.created_at);
            let notify_sk = keys::notification_sk(&created, &notification.id);
            let mut record = key(keys::notification_pk(tenant), notify_sk.clone());
            record.insert("id".into(), s(&notification.id));
            record.insert("account".into(), s(account.as_str()));
            record.insert("status".into(), s(status_name(notification.status)));
            record.insert("created_at".into(), s(&created));
            record.insert("payload".into(), s(&payload));
            record.insert("bus".into(), s("pending"));
            record.insert("webhook".into(), s("pending"));
            record.insert("attempts".into(), n(0));
            let expires = expiry(StoredItem::AlertNotification, now);
            if let Some(at) = &expires {
                record.insert(EXPIRES_AT.into(), at.clone());
            }
            actions.push(self.put(record)?);
            let mut outbox = key(
                keys::outbox_pk(tenant),
                keys::outbox_sk(&created, &notification.id),
            );
            outbox.insert("notification_sk".into(), s(notify_sk));
            outbox.insert("payload".into(), s(payload));
            outbox.insert("attempts".into(), n(0));
            outbox.insert("next_attempt_at".into(), n(now.unix_timestamp()));
            if let Some(at) = expires {
                outbox.insert(EXPIRES_AT.into(), at);
            }
            actions.push(self.put(outbox)?);
        }
        // Twins (the same state reached at the same `now`) share a token: the
        // second is answered as the first. Anything else conflicts on the version.
        let token = token(&format!(
            "alerts|{}|{tenant}|{account}|{version}|{}",
            self.name,
            rfc3339(now)
        ));
        match self.db.transact(actions, token).await {
            Ok(()) => Ok(true),
            Err(Cancelled::Conditions(_)) => Ok(false),
            Err(Cancelled::Other(e)) if e.is_retryable() => {
                tracing::warn!(error = %e, "alert commit not applied: read again");
                Ok(false)
            }
            Err(Cancelled::Other(e) | Cancelled::Failed(e)) => Err(e),
        }
    }

    /// The query of the alert history: every account's, or one's.
    fn history_query(
        &self,
        tenant: &TenantId,
        account: Option<&AccountId>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(keys::alert_history_pk(tenant)))
            .expression_attribute_values(":prefix", s(keys::alert_history_prefix(account)))
    }

    /// Alerts that fired, newest account-time order within an account, from
    /// `start` (an exclusive sort key) on; at most `limit` read.
    pub async fn history(
        &self,
        tenant: &TenantId,
        account: Option<&AccountId>,
        start: Option<String>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<(Vec<HistoryEntry>, Option<String>), StoreError> {
        let pk = keys::alert_history_pk(tenant);
        let query = self
            .history_query(tenant, account)
            .limit(i32::try_from(limit).unwrap_or(100));
        let (items, next) = self.db.page(query, &pk, start).await?;
        let entries = items
            .iter()
            .filter(|item| is_live(item, now))
            .filter_map(history_entry)
            .collect();
        Ok((entries, next))
    }

    /// Notifications waiting for delivery whose next attempt is due.
    pub async fn pending(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<Pending>, StoreError> {
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::outbox_pk(tenant)))
            .consistent_read(true);
        let mut out = Vec::new();
        for item in self.db.query(query, None).await? {
            let pending = Pending {
                sk: text(&item, keys::SK).unwrap_or_default(),
                notification_sk: text(&item, "notification_sk")
                    .ok_or_else(|| StoreError::corrupt("outbox entry"))?,
                payload: text(&item, "payload")
                    .ok_or_else(|| StoreError::corrupt("outbox entry"))?,
                attempts: number(&item, "attempts").unwrap_or(0),
                next_attempt_at: epoch(number(&item, "next_attempt_at").unwrap_or(0)),
                bus_done: flag(&item, "bus_done"),
                webhook_done: flag(&item, "webhook_done"),
            };
            let leased = number::<i64>(&item, "lease_until")
                .is_some_and(|until| until > now.unix_timestamp());
            if pending.next_attempt_at <= now && !leased {
                out.push(pending);
            }
        }
        Ok(out)
    }

    /// Takes a pending notification for `lease` (no other run delivers it
    /// meanwhile); false if another run holds it or it is gone.
    pub async fn claim(
        &self,
        tenant: &TenantId,
        pending: &Pending,
        lease: time::Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .db
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(keys::outbox_pk(tenant), pending.sk.clone())))
            .update_expression("SET lease_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND attempts = :attempts AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_values(":until", n((now + lease).unix_timestamp()))
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .expression_attribute_values(":attempts", n(pending.attempts))
            .send()
            .await;
        applied("UpdateItem", result)
    }

    /// Records an attempt: the notification's delivery record, and the outbox
    /// entry removed (delivered or given up) or kept for `retry_at`.
    pub async fn record_delivery(
        &self,
        tenant: &TenantId,
        pending: &Pending,
        delivery: &Delivery,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let attempts = pending.attempts + 1;
        let webhook = match delivery.webhook_done {
            None => "none",
            Some(true) => "sent",
            Some(false) if delivery.retry_at.is_some() => "pending",
            Some(false) => "failed",
        };
        let bus = match (delivery.bus_done, delivery.retry_at) {
            (true, _) => "sent",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let mut set =
            "SET bus = :bus, webhook = :webhook, attempts = :attempts, last_attempt_at = :now"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.name)
            .set_key(Some(key(
                keys::notification_pk(tenant),
                pending.notification_sk.clone(),
            )))
            .expression_attribute_values(":bus", s(bus))
            .expression_attribute_values(":webhook", s(webhook))
            .expression_attribute_values(":attempts", n(attempts))
            .expression_attribute_values(":now", timestamp(now));
        match &delivery.last_error {
            Some(error) => {
                set.push_str(", last_error = :error");
                update = update.expression_attribute_values(":error", s(error));
            }
            None => set.push_str(" REMOVE last_error"),
        }
        if delivery.retry_at.is_none() && delivery.last_error.is_none() {
            set = set.replace(
                "last_attempt_at = :now",
                "last_attempt_at = :now, delivered_at = :now",
            );
        }
        let record = TransactWriteItem::builder()
            .update(
                update
                    .update_expression(set)
                    .build()
                    .map_err(|e| unbuildable("TransactWriteItems", e))?,
            )
            .build();
        let outbox_key = key(keys::outbox_pk(tenant), pending.sk.clone());
        let outbox = match delivery.retry_at {
            None => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.name)
                        .set_key(Some(outbox_key))
                        .build()
                        .map_err(|e| unbuildable("TransactWriteItems", e))?,
                )
                .build(),
            Some(at) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.name)
                        .set_key(Some(outbox_key))
                        .update_expression("SET attempts = :attempts, next_attempt_at = :at, bus_done = :bus, webhook_done = :webhook REMOVE lease_until")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_values(":attempts", n(attempts))
                        .expression_attribute_values(":at", n(at.unix_timestamp()))
                        .expression_attribute_values(":bus", AttributeValue::Bool(delivery.bus_done))
                        .expression_attribute_values(
                            ":webhook",
                            AttributeValue::Bool(delivery.webhook_done.unwrap_or(true)),
                        )
                        .build()
                        .map_err(|e| unbuildable("TransactWriteItems", e))?,
                )
                .build(),
        };
        let token = token(&format!(
            "delivery|{}|{tenant}|{}|{attempts}|{}",
            self.name,
            pending.sk,
            rfc3339(now)
        ));
        match self.db.transact(vec![record, outbox], token).await {
            Ok(()) => Ok(()),
            Err(Cancelled::Conditions(_)) => Ok(()),
            Err(Cancelled::Other(e) | Cancelled::Failed(e)) => Err(e),
        }
    }

    /// One account's alerts, latest fired first.
    pub async fn account_history(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let query = self
            .history_query(tenant, Some(account))
            .scan_index_forward(false);
        Ok(self
            .db
            .query(query, Some(limit))
            .await?
            .iter()
            .filter(|item| is_live(item, now))
            .filter_map(history_entry)
            .collect())
    }

    /// Notifications, newest first, with their delivery record.
    pub async fn notifications(
        &self,
        tenant: &TenantId,
        start: Option<String>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<(Vec<NotificationRecord>, Option<String>), StoreError> {
        let pk = keys::notification_pk(tenant);
        let query = self
            .db
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk.clone()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(100));
        let (items, next) = self.db.page(query, &pk, start).await?;
        let records = items
            .into_iter()
            .filter(|item| is_live(item, now))
            .map(|item| NotificationRecord {
                payload: text(&item, "payload").unwrap_or_default(),
                bus: text(&item, "bus").unwrap_or_default(),
                webhook: text(&item, "webhook").unwrap_or_default(),
                attempts: number(&item, "attempts").unwrap_or(0),
                last_error: text(&item, "last_error"),
                delivered_at: time_of(&item, "delivered_at"),
            })
            .collect();
        Ok((records, next))
    }
}

fn severity(alert: &crate::domain::alert::NotifiedAlert) -> &'static str {
    match alert.severity {
        crate::domain::alert::Severity::Info => "info",
        crate::domain::alert::Severity::Warning => "warning",
        crate::domain::alert::Severity::Critical => "critical",
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
    }
}

fn history_entry(item: &Item) -> Option<HistoryEntry> {
    Some(HistoryEntry {
        account: text(item, "account")?,
        rule: text(item, "rule")?,
        kind: text(item, "kind")?,
        severity: text(item, "severity")?,
        state: if text(item, "state")? == "resolved" {
            Status::Resolved
        } else {
            Status::Firing
        },
        started_at: time_of(item, "started_at")?,
        fired_at: time_of(item, "fired_at")?,
        resolved_at: time_of(item, "resolved_at"),
        value: number(item, "value"),
        threshold: number(item, "threshold"),
        labels: text(item, "labels")
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        notified: flag(item, "notified"),
    })
}
