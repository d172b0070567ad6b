//! No request value is ever echoed: personal data sent in every wrong place of
//! every route (body fields, keys, types, the path, the query) is absent from
//! every response and from everything the local stack logged. Errors name the
//! field and what was expected instead.

use reqwest::Method;
use serde_json::{json, Value};
use vigil_shared::domain::access::Scope;
use vigil_tests::process::LocalServer;

const EMAIL: &str = "marie.curie@example.org";
const NAME: &str = "Marie Sklodowska";
const PHONE: &str = "+33 6 12 34 56 78";
const IP: &str = "198.51.100.23";
const PII: [&str; 4] = [EMAIL, NAME, PHONE, IP];

/// A valid api_call event, then `change` applied to it.
fn event(change: impl FnOnce(&mut Value)) -> Value {
    let mut event = json!({
        "id": "e-1", "time": vigil_tests::hours_ago(1, 0), "source": "api_call", "account": "acme",
        "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 5}
    });
    change(&mut event);
    event
}

/// Ingest bodies with personal data where it does not belong.
fn ingest_bodies() -> Vec<String> {
    let mut events: Vec<Value> = vec![
        event(|e| e["id"] = json!(EMAIL)),
        event(|e| e["id"] = json!([NAME])),
        event(|e| e["time"] = json!(EMAIL)),
        event(|e| e["source"] = json!(NAME)),
        event(|e| e["account"] = json!(EMAIL)),
        event(|e| e["account"] = json!({"name": NAME})),
        event(|e| e["user"] = json!({"email": EMAIL})),
        event(|e| e["user"] = json!(NAME.repeat(20))),
        event(|e| e["data"] = json!(EMAIL)),
        event(|e| e["data"]["endpoint"] = json!({ EMAIL: NAME })),
        event(|e| e["data"]["method"] = json!(NAME)),
        event(|e| e["data"]["status"] = json!(PHONE)),
        event(|e| e["data"]["latency_ms"] = json!(IP)),
        event(|e| e["data"]["units"] = json!(EMAIL)),
        event(|e| e["data"]["client_ip"] = json!(NAME)),
        event(|e| e["data"][EMAIL] = json!(NAME)),
        event(|e| e[NAME] = json!(PHONE)),
        event(|e| e[IP] = json!(1)),
        event(|e| {
            e["source"] = json!("product");
            e["data"] = json!({"feature": format!("share with {EMAIL}")});
        }),
        event(|e| {
            e["source"] = json!("product");
            e["data"] = json!({"feature": [EMAIL]});
        }),
        event(|e| {
            e["source"] = json!("support_ticket");
            e["data"] = json!({"ticket_id": "t-1", "priority": NAME, "status": "open"});
        }),
        event(|e| {
            e["source"] = json!("billing");
            e["data"] =
                json!({"invoice_id": "i-1", "amount": EMAIL, "currency": NAME, "status": PHONE});
        }),
        event(|e| {
            e["source"] = json!("marketing");
            e["data"] = json!({"campaign": {"to": EMAIL}, "channel": "mail"});
        }),
    ];
    for (i, e) in events.iter_mut().enumerate() {
        if e["id"] == "e-1" {
            e["id"] = json!(format!("e-{i}"));
        }
    }
    vec![
        json!({ "events": events }).to_string(),
        json!({ EMAIL: [], "events": [event(|_| {})] }).to_string(),
        json!({ "events": EMAIL }).to_string(),
        json!({ "events": [NAME] }).to_string(),
        json!([EMAIL]).to_string(),
        json!(EMAIL).to_string(),
        format!("{{\"events\": [\"{EMAIL}\""),
        format!("{{\"events\": []}} \"{EMAIL}\""),
    ]
}

fn key_bodies() -> Vec<String> {
    [
        json!({"name": "x", "scopes": EMAIL}),
        json!({"name": [NAME], "scopes": ["read"]}),
        json!({"name": {"email": EMAIL}, "scopes": ["read"]}),
        json!({"name": "x", "scopes": [EMAIL]}),
        json!({"name": "x", "scopes": [["read", NAME]]}),
        json!({"name": "x", "scopes": ["read"], "expires_in_days": PHONE}),
        json!({"name": "x", "scopes": ["read"], "expires_in_days": {"ip": IP}}),
        json!({"name": "x", "scopes": ["read"], EMAIL: 1}),
        json!({"name": "x", "scopes": ["read"], "note": NAME}),
        json!({ NAME: "x" }),
        json!([EMAIL]),
        json!(EMAIL),
    ]
    .iter()
    .map(Value::to_string)
    .chain([format!("{{\"name\": \"{EMAIL}"), format!("{{}} {NAME}")])
    .collect()
}

fn assert_no_pii(what: &str, text: &str) {
    for pii in PII {
        assert!(!text.contains(pii), "{what} echoes {pii:?}: {text}");
    }
}

#[tokio::test]
async fn personal_data_in_every_wrong_place_is_never_echoed_or_logged() {
    let server = LocalServer::start("echo").await;
    let key = server.admin_key("acme").await;
    let send = |method: Method, path: &str, body: Option<String>| {
        server.request(method, path, &key, body).send()
    };
    let mut answers = Vec::new();
    for body in ingest_bodies() {
        let response = send(Method::POST, "/v1/events", Some(body.clone()))
            .await
            .expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert!(
            status == 200 || status == 400,
            "{status} for {body}: {text}"
        );
        assert_no_pii(&format!("POST /v1/events {body}"), &text);
        answers.push(text);
    }
    // The first batch: personal data as values is rejected per event, each
    // naming its field; as unknown keys it is dropped (and not named).
    let first: Value = serde_json::from_str(&answers[0]).expect("json");
    assert_eq!(first["rejected"], 19, "{first}");
    assert_eq!(first["accepted"], 4, "{first}");
    for result in first["results"].as_array().expect("results") {
        if result["status"] == "rejected" {
            let error = result["error"].as_str().expect("error");
            assert!(error.contains(": "), "names a field: {error}");
        }
    }
    for body in key_bodies() {
        let response = send(Method::POST, "/v1/keys", Some(body.clone()))
            .await
            .expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 400, "{body}: {text}");
        let parsed: Value = serde_json::from_str(&text).expect("json");
        assert!(parsed["error"]["message"].is_string(), "{text}");
        assert_no_pii(&format!("POST /v1/keys {body}"), &text);
    }
    let email = "marie.curie%40example.org";
    let name = "Marie%20Sklodowska";
    for (method, path) in [
        (Method::GET, format!("/v1/keys?{email}=1")),
        (Method::GET, format!("/v1/keys?q={name}")),
        (Method::DELETE, format!("/v1/keys/{email}")),
        (Method::DELETE, format!("/v1/keys/{name}")),
        (Method::GET, format!("/v1/audit?after={email}")),
        (Method::GET, format!("/v1/audit?limit={name}")),
        (Method::GET, format!("/v1/audit?{name}=3")),
        (Method::GET, format!("/v1/audit/verify?{email}")),
        (Method::GET, format!("/v1/accounts/{email}/usage")),
        (Method::GET, format!("/v1/accounts/{name}/usage")),
        (Method::GET, format!("/v1/accounts/acme/usage?from={email}")),
        (Method::GET, format!("/v1/accounts/acme/usage?to={name}")),
        (Method::GET, format!("/v1/accounts/acme/usage?{email}=x")),
    ] {
        let response = send(method.clone(), &path, None).await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 400, "{method} {path}: {text}");
        assert_no_pii(&format!("{method} {path}"), &text);
    }
    let logs = server.stop();
    assert!(
        logs.contains("request done"),
        "the requests were logged:\n{logs}"
    );
    assert_no_pii("the log", &logs);
}

#[tokio::test]
async fn validation_errors_have_one_shape() {
    let stack = vigil_tests::TestStack::start().await;
    let admin = stack.issue_key("shape", &[Scope::Admin, Scope::Read]).await;
    let (status, keys) = stack
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "x", "scopes": ["read", "root"]})),
        )
        .await;
    let (status_usage, usage) = stack
        .call(
            Method::GET,
            "/v1/accounts/acme/usage?from=soon",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, status_usage), (400, 400));
    for (body, field) in [(&keys, "scopes[1]"), (&usage, "from")] {
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("{field}: "))));
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    stack.shutdown().await;
}
