//! What alert tests observe deliveries with: an SQS queue subscribed to the
//! stack's alert bus by an EventBridge rule in the emulator (as a tenant would
//! route notifications), and a webhook receiver on loopback that checks every
//! signature as the README tells receivers to, and can be told to fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use vigil_shared::crypto::webhook_signature;

use crate::TestStack;

/// An SQS queue receiving every event of the stack's alert bus.
pub struct BusQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl BusQueue {
    pub async fn subscribe(stack: &TestStack) -> BusQueue {
        let sdk = vigil_local::emulator_config(&crate::emulator_url()).await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let bus = stack.table("AlertBus");
        let name = format!("{bus}-observer");
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue arn");
        events
            .put_rule()
            .name(&name)
            .event_bus_name(&bus)
            .event_pattern(
                r#"{"source": ["vigil.alerts"], "detail-type": ["Vigil Alert Notification"]}"#,
            )
            .send()
            .await
            .expect("put rule");
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("observer")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        BusQueue { sqs, url }
    }

    /// Every event waiting (received and deleted): the EventBridge envelopes.
    pub async fn drain(&self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let answer = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = answer.messages.unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for message in messages {
                let body = message.body.unwrap_or_default();
                out.push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                if let Some(handle) = message.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub signature_valid: bool,
    pub body: Value,
}

#[derive(Default)]
struct Behaviour {
    /// Answer 500 to this many requests.
    fail: AtomicU32,
    /// Take this many requests, then answer only after `slow_for`.
    slow: AtomicU32,
}

/// A webhook receiver on loopback.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    secret: Arc<Mutex<String>>,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Behaviour>,
}

/// How long a slow answer takes (the tests' webhook timeout is shorter).
pub const SLOW_ANSWER: Duration = Duration::from_secs(3);

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let secret = Arc::new(Mutex::new(String::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Behaviour::default());
        let (s, r, b) = (secret.clone(), received.clone(), behaviour.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, r, b) = (s.clone(), r.clone(), b.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (s, r, b) = (s.clone(), r.clone(), b.clone());
                        async move { Ok::<_, hyper::Error>(answer(request, &s, &r, &b).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookReceiver {
            addr,
            secret,
            received,
            behaviour,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/vigil", self.addr)
    }

    pub fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = secret.to_owned();
    }

    pub fn fail_next(&self, count: u32) {
        self.behaviour.fail.store(count, Ordering::SeqCst);
    }

    pub fn slow_next(&self, count: u32) {
        self.behaviour.slow.store(count, Ordering::SeqCst);
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What a receiver that drops ids it has seen (as the README says) processed:
    /// id -> times it was delivered.
    pub fn deliveries_by_id(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.received() {
            *out.entry(r.id).or_insert(0) += 1;
        }
        out
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn answer(
    request: Request<Incoming>,
    secret: &Mutex<String>,
    received: &Mutex<Vec<Received>>,
    behaviour: &Behaviour,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp").parse::<i64>().unwrap_or(0),
        header("webhook-signature"),
    );
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = |code: StatusCode| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    if take(&behaviour.fail) {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let key = secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // As a receiver must: recompute the signature over id, timestamp and the raw
    // body, and refuse a timestamp outside the 5-minute replay window.
    let fresh = (time::OffsetDateTime::now_utc().unix_timestamp() - timestamp).abs() <= 300;
    let expected = webhook_signature(&key, &id, timestamp, &body);
    let signature_valid = fresh && expected.is_some_and(|e| signature.split(' ').any(|s| s == e));
    received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            id,
            timestamp,
            signature_valid,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
    if !signature_valid {
        return status(StatusCode::UNAUTHORIZED);
    }
    if take(&behaviour.slow) {
        tokio::time::sleep(SLOW_ANSWER).await;
    }
    status(StatusCode::NO_CONTENT)
}
