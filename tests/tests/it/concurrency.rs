//! Exact counts under concurrency: clients whose requests time out resend while
//! the first attempt is still writing. Eight clients send the same batch at
//! once, round after round, through a proxy that slows every request and
//! throttles or conflicts some transactions: each event is stored once and
//! counted once, and exactly one client is told it was accepted.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use vigil_tests::{hours_ago, n, s, Fault, TestStack};

const CLIENTS: usize = 8;
const ROUNDS: usize = 20;
const EVENTS: usize = 200;

/// Round r's batch: one account, its events spread over two hours, 50 users.
fn round_batch(round: usize) -> (Value, HashMap<String, u64>) {
    let hours = [hours_ago(2, 10), hours_ago(1, 10)];
    let mut per_hour: HashMap<String, u64> = HashMap::new();
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let time = &hours[i % 2];
            *per_hour.entry(time[..13].to_owned()).or_default() += 1;
            json!({"id": format!("r{round}-e{i}"), "time": time, "source": "api_call",
                   "account": "hot", "user": format!("user-{}", i % 50),
                   "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200,
                            "latency_ms": 10, "units": 1}})
        })
        .collect();
    (json!({ "events": events }), per_hour)
}

#[tokio::test]
async fn eight_clients_resending_the_same_batch_count_each_event_once() {
    let stack = TestStack::start().await;
    // One key for all eight clients, issued before they start.
    stack.ingest_key("hot-tenant").await;
    stack.proxy.set_latency(Duration::from_millis(15));
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut transactions_floor = 0;
    for round in 0..ROUNDS {
        let (body, per_hour) = round_batch(round);
        for (hour, count) in &per_hour {
            *expected.entry(hour.clone()).or_default() += count;
            transactions_floor += count.div_ceil(99) as usize;
        }
        stack
            .proxy
            .inject("TransactWriteItems", Fault::Throttle, Some(3));
        stack
            .proxy
            .inject("TransactWriteItems", Fault::TransactionConflict, Some(3));
        let sends = (0..CLIENTS).map(|_| stack.post_events("hot-tenant", &body));
        let responses = futures_util::future::join_all(sends).await;
        stack.proxy.clear_faults();
        let mut accepted = 0;
        for (status, response) in &responses {
            assert_eq!(*status, 200, "round {round}: {response}");
            assert_eq!(response["failed"], 0, "round {round}: {response}");
            let (a, d) = (
                response["accepted"].as_u64().unwrap_or(0),
                response["duplicates"].as_u64().unwrap_or(0),
            );
            assert_eq!(a + d, EVENTS as u64, "round {round}: {response}");
            accepted += a;
        }
        assert_eq!(
            accepted, EVENTS as u64,
            "round {round}: each event accepted by exactly one client"
        );
    }

    let events = stack.scan("EventsTable").await;
    assert_eq!(events.len(), ROUNDS * EVENTS, "every event stored once");
    let aggregates = stack.rollups("H#").await;
    assert_eq!(aggregates.len(), expected.len());
    for aggregate in &aggregates {
        let hour = s(aggregate, "sk")
            .and_then(|sk| sk.strip_prefix("H#"))
            .expect("aggregate hour");
        assert_eq!(
            n(aggregate, "calls"),
            expected.get(hour).copied(),
            "hour {hour}: the aggregate equals its distinct events"
        );
    }
    assert_eq!(
        stack.scan("SubjectsTable").await.len(),
        50,
        "one subject per user"
    );
    let sent = stack.proxy.count("TransactWriteItems");
    println!(
        "{CLIENTS} clients x {ROUNDS} rounds x {EVENTS} events: {sent} transactions sent, \
         floor {transactions_floor} (each event written once), {} faults injected",
        stack.proxy.injected()
    );
    stack.shutdown().await;
}
