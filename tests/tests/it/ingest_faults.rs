//! Storage faults injected by a proxy between the SDK and the emulator:
//! every event is stored and counted exactly once, or reported as failed.

use serde_json::Value;
use vigil_tests::{batch, hours_ago, Fault, TestStack};

fn count_status(body: &Value, status: &str) -> usize {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == status)
        .count()
}

#[tokio::test]
async fn throttled_transactions_are_retried() {
    let stack = TestStack::start().await;
    stack
        .proxy
        .inject("TransactWriteItems", Fault::Throttle, Some(2));
    let (status, body) = stack
        .post_events("t", &batch("thr", 60, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 60);
    assert_eq!(stack.proxy.injected(), 2);
    assert_eq!(
        stack.proxy.count("TransactWriteItems"),
        1 + 2,
        "one transaction plus 2 throttled attempts"
    );
    assert_eq!(stack.scan("EventsTable").await.len(), 60);
    assert_eq!(stack.counted_calls().await, 60);
    stack.shutdown().await;
}

#[tokio::test]
async fn transactions_cancelled_by_a_conflict_are_retried() {
    let stack = TestStack::start().await;
    stack
        .proxy
        .inject("TransactWriteItems", Fault::TransactionConflict, Some(3));
    let (status, body) = stack
        .post_events("t", &batch("conf", 40, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 40);
    assert_eq!(stack.proxy.count("TransactWriteItems"), 1 + 3);
    assert_eq!(stack.scan("EventsTable").await.len(), 40);
    assert_eq!(stack.counted_calls().await, 40);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_lost_transaction_response_does_not_double_count() {
    let stack = TestStack::start().await;
    // Applied by the emulator, then answered with a 500: the SDK sends the same
    // transaction again (same token), which is answered as done, on AWS and in
    // the emulator (infra/local/emulator.py): accepted, and counted once.
    stack
        .proxy
        .inject("TransactWriteItems", Fault::ForwardThenFail, Some(1));
    let (status, body) = stack
        .post_events("t", &batch("lost", 10, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count_status(&body, "accepted"), 10, "{body}");
    assert_eq!(stack.scan("EventsTable").await.len(), 10);
    assert_eq!(stack.counted_calls().await, 10);
    stack.shutdown().await;
}

#[tokio::test]
async fn writes_that_keep_failing_are_reported_and_recovered_by_a_resend() {
    let stack = TestStack::start().await;
    let events = batch("down", 30, "acme", &hours_ago(1, 0));
    stack
        .proxy
        .inject("TransactWriteItems", Fault::ServerError, None);
    let (status, body) = stack.post_events("t", &events).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failed"], 30);
    assert_eq!(
        body["results"][0]["error"],
        "storage unavailable: retry this event"
    );
    assert!(stack.scan("EventsTable").await.is_empty());
    assert!(
        stack.scan("AggregatesTable").await.is_empty(),
        "nothing counted"
    );

    stack.proxy.clear_faults();
    let (status, body) = stack.post_events("t", &events).await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 30);
    assert_eq!(stack.counted_calls().await, 30);
    stack.shutdown().await;
}

#[tokio::test]
async fn conflicts_that_never_clear_fail_the_events_and_store_nothing() {
    let stack = TestStack::start().await;
    let events = batch("hot", 20, "acme", &hours_ago(1, 0));
    stack
        .proxy
        .inject("TransactWriteItems", Fault::TransactionConflict, None);
    let (status, body) = stack.post_events("t", &events).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(count_status(&body, "failed"), 20);
    assert_eq!(
        stack.proxy.count("TransactWriteItems"),
        10,
        "the contended budget"
    );
    assert!(stack.scan("EventsTable").await.is_empty());
    assert!(stack.scan("AggregatesTable").await.is_empty());

    stack.proxy.clear_faults();
    let (_, body) = stack.post_events("t", &events).await;
    assert_eq!(body["accepted"], 20);
    assert_eq!(stack.scan("EventsTable").await.len(), 20);
    assert_eq!(stack.counted_calls().await, 20);
    stack.shutdown().await;
}

#[tokio::test]
async fn an_aggregate_that_cannot_be_updated_leaves_its_events_unstored() {
    // The update and the puts are one transaction: no event is ever stored
    // uncounted (the "aggregate drift" of the earlier design cannot happen).
    let stack = TestStack::start().await;
    let events = batch("agg", 12, "acme", &hours_ago(1, 0));
    stack
        .proxy
        .inject("TransactWriteItems", Fault::Invalid, None);
    let (status, body) = stack.post_events("t", &events).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["failed"], 12);
    assert!(stack.scan("EventsTable").await.is_empty());
    assert!(stack.scan("AggregatesTable").await.is_empty());

    stack.proxy.clear_faults();
    let (_, body) = stack.post_events("t", &events).await;
    assert_eq!(body["accepted"], 12);
    assert_eq!(stack.scan("EventsTable").await.len(), 12);
    assert_eq!(stack.counted_calls().await, 12);
    stack.shutdown().await;
}

#[tokio::test]
async fn unprocessed_keys_of_a_subject_lookup_are_retried() {
    let stack = TestStack::start().await;
    let (_, first) = stack
        .post_events("t", &batch("keys", 8, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(first["accepted"], 8);
    stack.proxy.reset_counts();
    stack.proxy.inject_on(
        "BatchGetItem",
        &stack.table("SubjectsTable"),
        Fault::Unprocessed,
        Some(4),
    );
    // The same users, new events: their subjects are read, not created again.
    let mut more = batch("keys", 8, "acme", &hours_ago(1, 0));
    for (i, event) in more["events"]
        .as_array_mut()
        .expect("events")
        .iter_mut()
        .enumerate()
    {
        event["id"] = Value::from(format!("more-{i}"));
    }
    let (status, again) = stack.post_events("t", &more).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["accepted"], 8, "unprocessed keys were read again");
    assert!(stack.proxy.injected() >= 1);
    assert_eq!(stack.proxy.count("PutItem"), 0, "no subject created twice");
    assert_eq!(stack.counted_calls().await, 16);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_failed_subject_creation_fails_only_events_with_a_user() {
    let stack = TestStack::start().await;
    stack.proxy.inject("PutItem", Fault::ServerError, None);
    let t = hours_ago(1, 0);
    let mut anonymous = vigil_tests::api_call("anon", "acme", &t, 200);
    anonymous.as_object_mut().expect("object").remove("user");
    let with_user = vigil_tests::api_call("named", "acme", &t, 200);
    let (status, body) = stack
        .post_events("t", &serde_json::json!({"events": [anonymous, with_user]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["status"], "failed");
    assert_eq!(stack.scan("EventsTable").await.len(), 1);
    assert!(stack.scan("SubjectsTable").await.is_empty());
    stack.shutdown().await;
}
