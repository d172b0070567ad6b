//! Storage faults on the key, audit and usage paths: clear 5xx, nothing half-done.

use reqwest::Method;
use serde_json::json;
use vigil_shared::domain::access::Scope;
use vigil_tests::{Fault, TestStack};

#[tokio::test]
async fn a_throttled_audit_append_is_retried() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("t", &[Scope::Admin]).await;
    stack.proxy.inject("PutItem", Fault::Throttle, Some(2));
    let (status, body) = stack
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "a", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(stack.proxy.injected(), 2);
    let (_, report) = stack
        .call(Method::GET, "/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
    stack.shutdown().await;
}

#[tokio::test]
async fn an_unaudited_key_is_revoked_and_never_shown() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("t", &[Scope::Admin]).await;
    let audit_table = stack.table("AuditTable");
    // Reading the chain's tail fails: the issue cannot be audited.
    stack.proxy.inject("Query", Fault::ServerError, None);
    let (status, body) = stack
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "ghost", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.get("key").is_none() && !body.to_string().contains("vk_"));
    assert!(stack.proxy.count_on("Query", &audit_table) > 0);
    stack.proxy.clear_faults();
    let (_, keys) = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await;
    let ghost = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "ghost")
        .cloned()
        .expect("the stored record");
    assert_eq!(ghost["active"], false, "{ghost}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_read_that_cannot_be_audited_returns_nothing() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("t", &[Scope::Admin]).await;
    stack.proxy.inject("PutItem", Fault::ServerError, None);
    for path in ["/v1/keys", "/v1/audit"] {
        let (status, body) = stack.call(Method::GET, path, Some(&admin), None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["message"], "storage unavailable: retry later");
        assert!(body.get("keys").is_none() && body.get("entries").is_none());
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn concurrent_admin_calls_keep_one_unbroken_chain() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("t", &[Scope::Admin]).await;
    let calls = (0..8).map(|_| stack.call(Method::GET, "/v1/keys", Some(&admin), None));
    // All in flight at once: appends race for the same tail and must retry.
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let (_, report) = stack
        .call(Method::GET, "/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(
        report["last_seq"], 9,
        "the issue, 8 listings, one entry each"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn usage_reads_fail_clearly_when_storage_does() {
    let stack = TestStack::start().await;
    let reader = stack.issue_key("t", &[Scope::Read]).await;
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme/usage", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
    stack.proxy.inject("Query", Fault::Throttle, None);
    let response = stack
        .http
        .get(format!("{}/v1/accounts/acme/usage", stack.api))
        .header("authorization", format!("Bearer {reader}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_failed_last_use_write_does_not_block_the_request() {
    let stack = TestStack::start().await;
    let reader = stack.issue_key("t", &[Scope::Read]).await;
    stack.proxy.inject("UpdateItem", Fault::ServerError, None);
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme/usage", Some(&reader), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        stack
            .proxy
            .count_on("UpdateItem", &stack.table("TenantsTable"))
            > 0
    );
    stack.shutdown().await;
}
