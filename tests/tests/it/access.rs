//! Keys, scopes and tenant isolation over HTTP, through the authorizer.

use reqwest::Method;
use serde_json::{json, Value};
use vigil_shared::domain::access::Scope;
use vigil_tests::{api_call, batch, hours_ago, TestStack};

/// Every route, a body it accepts, and the scope it needs.
fn routes() -> Vec<(Method, &'static str, Option<Value>, Scope)> {
    vec![
        (
            Method::POST,
            "/v1/events",
            Some(batch("m", 1, "acme", &hours_ago(1, 0))),
            Scope::Ingest,
        ),
        (Method::GET, "/v1/accounts/acme/usage", None, Scope::Read),
        (
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "x", "scopes": ["read"]})),
            Scope::Admin,
        ),
        (Method::GET, "/v1/keys", None, Scope::Admin),
        (
            Method::DELETE,
            "/v1/keys/0123456789abcdef",
            None,
            Scope::Admin,
        ),
        (Method::GET, "/v1/audit", None, Scope::Admin),
        (Method::GET, "/v1/audit/verify", None, Scope::Admin),
    ]
}

#[tokio::test]
async fn every_route_needs_a_key_with_its_scope() {
    let stack = TestStack::start().await;
    let mut keys = Vec::new();
    for scope in Scope::ALL {
        keys.push((scope, stack.issue_key("tenant-a", &[scope]).await));
    }
    for (method, path, body, needed) in routes() {
        let (status, _) = stack.call(method.clone(), path, None, body.as_ref()).await;
        assert_eq!(status, 401, "{method} {path} without a key");
        for (scope, key) in &keys {
            let (status, response) = stack
                .call(method.clone(), path, Some(key), body.as_ref())
                .await;
            if *scope == needed {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} with {scope}: {status} {response}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} with {scope}: {response}");
                assert_eq!(
                    response["error"]["message"],
                    format!("this key lacks the {needed} scope")
                );
            }
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn expired_revoked_and_malformed_keys_are_refused_alike() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("tenant-a", &[Scope::Admin]).await;
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let expired = stack
        .issue_key_with("tenant-a", &[Scope::Admin], Some(past))
        .await;
    let (status, issued) = stack
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "soon revoked", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let revoked = issued["key"].as_str().expect("secret").to_owned();
    let key_id = issued["key_id"].as_str().expect("id").to_owned();
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/keys/{key_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);

    let tampered = vigil_tests::tampered(&admin);
    let other_tenant = admin.replacen("vk_tenant-a_", "vk_tenant-b_", 1);
    for key in [
        expired.as_str(),
        revoked.as_str(),
        tampered.as_str(),
        other_tenant.as_str(),
        "vk_",
        "not-a-key",
    ] {
        let (status, body) = stack.call(Method::GET, "/v1/keys", Some(key), None).await;
        assert_eq!(
            (status, body),
            (403, json!({"message": "Forbidden"})),
            "{key}"
        );
    }
    let listed = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await
        .1;
    let entry = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(entry["active"], false);
    assert!(entry["revoked_at"].is_string());
    // The admin key was used this hour: its last use is recorded.
    let me = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "test")
        .cloned()
        .expect("admin key");
    assert_eq!(me["last_used_hour"].as_str().map(str::len), Some(13));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_key_never_reaches_another_tenants_data() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    // Tenant B has account globex with 2 calls and an admin key.
    let (status, _) = stack
        .post_events("tenant-b", &json!({"events": [api_call("b1", "globex", &t, 200), api_call("b2", "globex", &t, 200)]}))
        .await;
    assert_eq!(status, 200);
    let b_admin = stack
        .issue_key("tenant-b", &[Scope::Admin, Scope::Read])
        .await;
    let b_key_id = b_admin.rsplit('_').nth(1).expect("key id").to_owned();
    let a = stack
        .issue_key("tenant-a", &[Scope::Read, Scope::Admin, Scope::Ingest])
        .await;

    // Reading B's account id with A's key returns nothing of B's.
    let (status, usage) = stack
        .call(Method::GET, "/v1/accounts/globex/usage", Some(&a), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(usage["hours"], json!([]));
    // Revoking B's key id with A's key finds nothing, and B's key still works.
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/keys/{b_key_id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = stack
        .call(Method::GET, "/v1/keys", Some(&b_admin), None)
        .await;
    assert_eq!(status, 200);
    // A's keys and audit trail do not show B's.
    let keys = stack.call(Method::GET, "/v1/keys", Some(&a), None).await.1;
    assert!(!keys.to_string().contains(&b_key_id));
    // A's trail records A's own failed attempt, and nothing of B's.
    let audit = stack.call(Method::GET, "/v1/audit", Some(&a), None).await.1;
    let mentions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["target"] == b_key_id.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        mentions,
        [("key.revoke".to_owned(), "not_found".to_owned())]
    );
    // Ingesting into "globex" with A's key writes under A, and B's figures do not move.
    let (status, _) = stack
        .call(
            Method::POST,
            "/v1/events",
            Some(&a),
            Some(&json!({"events": [api_call("b1", "globex", &t, 500)]})),
        )
        .await;
    assert_eq!(status, 200);
    let b_usage = stack
        .call(
            Method::GET,
            "/v1/accounts/globex/usage",
            Some(&b_admin),
            None,
        )
        .await
        .1;
    assert_eq!(b_usage["hours"][0]["calls"], 2);
    assert_eq!(b_usage["hours"][0].get("errors_5xx"), None);
    let a_usage = stack
        .call(Method::GET, "/v1/accounts/globex/usage", Some(&a), None)
        .await
        .1;
    assert_eq!(a_usage["hours"][0]["errors_5xx"], 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn key_requests_with_bad_input_get_a_clear_error_and_issue_nothing() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("tenant-a", &[Scope::Admin]).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"name": "x", "scopes": "admin"}),
            400,
            "scopes: expected an array",
        ),
        (json!({"scopes": ["read"]}), 400, "name: is required"),
        (
            json!({"name": "x", "scopes": ["read"], "owner": "bob"}),
            400,
            "body: has an unknown field",
        ),
        (
            json!({"name": "x", "scopes": ["root"]}),
            400,
            "scopes[0]: must be one of",
        ),
        (json!({"name": "x", "scopes": []}), 400, "scopes: must name"),
        (
            json!({"name": "", "scopes": ["read"]}),
            400,
            "name: must be 1 to 64",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}),
            400,
            "expires_in_days",
        ),
        (
            json!({"name": "x".repeat(20_000), "scopes": ["read"]}),
            413,
            "larger than 16 KiB",
        ),
    ];
    for (body, status, message) in cases {
        let (got, response) = stack
            .call(Method::POST, "/v1/keys", Some(&admin), Some(&body))
            .await;
        assert_eq!(got, status, "{response}");
        let text = response["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{text} should contain {message}");
    }
    let raw = stack
        .http
        .post(format!("{}/v1/keys", stack.api))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status().as_u16(), 400);
    let raw = stack
        .http
        .post(format!("{}/v1/keys", stack.api))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status().as_u16(), 415);
    let keys = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await
        .1;
    assert_eq!(
        keys["keys"].as_array().map(Vec::len),
        Some(1),
        "only the admin key exists"
    );

    for (path, message) in [
        ("/v1/audit?limit=0", "limit"),
        ("/v1/audit?after=x", "after"),
        (
            "/v1/audit?color=red",
            "query parameter color: only after, limit",
        ),
        ("/v1/keys/not-hex!", "key_id"),
    ] {
        let method = if path.starts_with("/v1/keys") {
            Method::DELETE
        } else {
            Method::GET
        };
        let (status, response) = stack.call(method, path, Some(&admin), None).await;
        assert_eq!(status, 400, "{path}: {response}");
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{response}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn usage_requests_with_bad_input_get_a_clear_error() {
    let stack = TestStack::start().await;
    let reader = stack.issue_key("tenant-a", &[Scope::Read]).await;
    for (path, message) in [
        (
            "/v1/accounts/acme/usage?from=yesterday",
            "from: expected an hour",
        ),
        (
            "/v1/accounts/acme/usage?from=2026-01-01T00&to=2026-03-01T00",
            "at most 31 days",
        ),
        (
            "/v1/accounts/acme/usage?from=2026-03-01T00&to=2026-01-01T00",
            "must not be after",
        ),
        (
            "/v1/accounts/acme/usage?account=other",
            "query parameter account: only from, to are accepted",
        ),
        ("/v1/accounts/a%23b/usage", "account"),
    ] {
        let (status, response) = stack.call(Method::GET, path, Some(&reader), None).await;
        assert_eq!(status, 400, "{path}: {response}");
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{path}: {response}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn the_authorizer_reads_once_per_uncached_request_and_fails_closed() {
    let stack = TestStack::start().await;
    let tenants = stack.table("TenantsTable");
    let key = stack.issue_key("tenant-a", &[Scope::Read]).await;
    for _ in 0..4 {
        let (status, _) = stack
            .call(Method::GET, "/v1/accounts/acme/usage", Some(&key), None)
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        stack.proxy.count_on("BatchGetItem", &tenants),
        1,
        "one read, then the cache"
    );
    assert_eq!(
        stack.proxy.count_on("UpdateItem", &tenants),
        1,
        "last use once per hour"
    );

    // Storage down: the authorizer fails, API Gateway answers 500, nothing is let through.
    stack
        .proxy
        .inject("BatchGetItem", vigil_tests::Fault::ServerError, None);
    let fresh = stack.issue_key("tenant-a", &[Scope::Read]).await;
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme/usage", Some(&fresh), None)
        .await;
    assert_eq!(status, 500);
    stack.shutdown().await;
}
