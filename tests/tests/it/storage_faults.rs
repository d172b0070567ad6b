//! Storage errors are classified, through faults injected at the proxy: what a
//! retry can fix (throttling, 5xx, timeouts) is a 503 with `Retry-After`; what it
//! cannot (access denied, a malformed request) is a 500 with the request id, sent
//! once, with the detail in the log only.

use serde_json::Value;
use vigil_shared::domain::access::Scope;
use vigil_tests::{batch, hours_ago, Fault, TestStack};

async fn get(stack: &TestStack, path: &str, key: &str) -> (u16, Option<String>, Value) {
    let response = stack
        .http
        .get(format!("{}{path}", stack.api))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry_after, response.json().await.expect("json"))
}

#[tokio::test]
async fn throttling_is_retryable_and_access_denied_is_not() {
    let stack = TestStack::start().await;
    let reader = stack.issue_key("faults", &[Scope::Read]).await;
    let path = "/v1/accounts/acme/usage";

    stack.proxy.inject("Query", Fault::Throttle, None);
    let (status, retry_after, body) = get(&stack, path, &reader).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let throttled = stack.proxy.count("Query");
    assert!(
        throttled > 1,
        "the SDK retried the throttled read ({throttled})"
    );
    stack.proxy.clear_faults();
    stack.proxy.reset_counts();

    stack.proxy.inject("Query", Fault::AccessDenied, None);
    let (status, retry_after, body) = get(&stack, path, &reader).await;
    assert_eq!((status, retry_after), (500, None), "{body}");
    assert_eq!(body["error"]["code"], "internal");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    let text = body.to_string();
    assert!(
        !text.contains("AccessDenied") && !text.contains("authorized"),
        "{text}"
    );
    assert_eq!(
        stack.proxy.count("Query"),
        1,
        "a permanent error is not retried"
    );
    stack.proxy.clear_faults();

    let (status, _, _) = get(&stack, path, &reader).await;
    assert_eq!(status, 200, "it works again once the fault is gone");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_rejected_audit_append_fails_the_admin_call_with_500() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("faults", &[Scope::Admin]).await;
    stack.proxy.inject("PutItem", Fault::Invalid, None);
    let (status, retry_after, body) = get(&stack, "/v1/keys", &admin).await;
    assert_eq!((status, retry_after), (500, None), "{body}");
    assert!(
        body.get("keys").is_none(),
        "nothing listed without its audit entry"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn ingest_tells_retryable_from_permanent_storage_failures() {
    let stack = TestStack::start().await;
    let time = hours_ago(1, 0);
    stack.proxy.inject_on(
        "BatchGetItem",
        &stack.table("SubjectsTable"),
        Fault::AccessDenied,
        None,
    );
    let (status, body) = stack
        .post_events("faults", &batch("denied", 5, "acme", &time))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["failed"], 5);
    let error = body["results"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("a retry will not help"), "{error}");
    assert!(!body.to_string().contains("AccessDenied"), "{body}");
    assert!(stack.scan("EventsTable").await.is_empty());
    stack.proxy.clear_faults();

    stack.proxy.inject_on(
        "BatchGetItem",
        &stack.table("SubjectsTable"),
        Fault::ServerError,
        None,
    );
    let response = stack
        .http
        .post(format!("{}/v1/events", stack.api))
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", stack.ingest_key("faults").await),
        )
        .body(batch("down", 5, "acme", &time).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: Value = response.json().await.expect("json");
    let error = body["results"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("retry this event"), "{error}");
    stack.shutdown().await;
}
