//! Runs the real local server as a process, drives it over HTTP with keys and
//! personal data, and searches everything it logged: no secret, no key hash, no
//! e-mail, user id or client IP may appear. `infra/test` builds the binary first.

use reqwest::Method;
use serde_json::json;
use vigil_shared::domain::TenantId;
use vigil_shared::ports::AccessStore;
use vigil_tests::process::LocalServer;

#[tokio::test]
async fn no_secret_key_hash_or_personal_data_reaches_the_logs() {
    let server = LocalServer::start("logs").await;
    let state_file = server.state_file.clone();
    // An admin key issued the way the operator CLI does it, from the state file.
    let admin = server.admin_key("acme").await;
    let config = vigil_ops::load_config(Some(&state_file)).expect("state file");
    let tables = vigil_ops::connect(&config).await.expect("tables");
    let call = |method: Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        server
            .request(method, path, key, body.map(|b| b.to_string()))
            .send()
    };

    let issued: serde_json::Value = call(
        Method::POST,
        "/v1/keys",
        &admin,
        Some(json!({"name": "ci", "scopes": ["ingest"]})),
    )
    .await
    .expect("issue")
    .json()
    .await
    .expect("json");
    let ingest_key = issued["key"].as_str().expect("secret").to_owned();
    let email = "marie.curie@example.org";
    let time = vigil_tests::hours_ago(1, 0);
    let events = json!({"events": [
        {"id": "p-1", "time": time, "source": "api_call", "account": "acme", "user": email, "email": email,
         "data": {"endpoint": format!("/v1/users/{email}"), "method": "GET", "status": 200, "latency_ms": 5, "client_ip": "198.51.100.23"}},
        {"id": "p-2", "time": time, "source": "product", "account": "acme", "user": "user-7781",
         "data": {"feature": format!("share with {email}")}}
    ]});
    let response = call(Method::POST, "/v1/events", &ingest_key, Some(events))
        .await
        .expect("ingest");
    assert_eq!(response.status().as_u16(), 200);
    let wrong = vigil_tests::tampered(&ingest_key);
    let response = call(
        Method::POST,
        "/v1/events",
        &wrong,
        Some(json!({"events": []})),
    )
    .await
    .expect("send");
    assert_eq!(response.status().as_u16(), 403);
    for path in [
        "/v1/keys",
        "/v1/audit",
        "/v1/audit/verify",
        "/v1/accounts/acme/usage",
    ] {
        let response = call(Method::GET, path, &admin, None).await.expect("send");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let hashes: Vec<String> = tables
        .keys
        .list_keys(&TenantId::parse("acme").expect("tenant"))
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.secret_hash)
        .collect();

    let metrics = std::fs::read_to_string(server.dir.join("metrics.jsonl")).unwrap_or_default();
    let logs = server.stop();
    assert!(
        logs.contains("batch ingested"),
        "the run was logged:\n{logs}"
    );
    // Locally: readable lines with a timestamp, and the EMF metrics in a file apart.
    let year = time::OffsetDateTime::now_utc().year().to_string();
    let request_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request done"))
        .collect();
    assert!(!request_lines.is_empty());
    assert!(
        request_lines
            .iter()
            .all(|l| l.trim_start().starts_with(&year)),
        "{request_lines:?}"
    );
    assert!(
        !logs.contains("\"_aws\""),
        "metrics are kept out of the log"
    );
    assert!(metrics.contains("EventsAccepted"), "{metrics}");
    assert!(logs.contains("key denied"), "the refused key was logged");
    let secrets = [&admin, &ingest_key, &wrong].map(|k| k[k.len() - 64..].to_owned());
    for (what, needle) in secrets
        .iter()
        .map(|s| ("a key secret", s.as_str()))
        .chain(hashes.iter().map(|h| ("a key hash", h.as_str())))
        .chain([
            ("an e-mail", email),
            ("a user id", "user-7781"),
            ("a client IP", "198.51.100.23"),
        ])
    {
        assert!(!logs.contains(needle), "{what} reached the logs");
    }
}
