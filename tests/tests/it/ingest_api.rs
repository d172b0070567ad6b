//! POST /v1/events over real HTTP against the local stack: results, stored items, aggregates.

use serde_json::{json, Value};
use vigil_tests::{api_call, batch, hours_ago, n, s, TestStack};

fn statuses(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_source_is_stored_with_its_allow_listed_fields() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 5);
    let body = json!({"events": [
        api_call("e-api", "acme", &t, 201),
        {"id": "e-product", "time": t, "source": "product", "account": "acme", "user": "u-1",
         "data": {"feature": "export", "action": "click"}},
        {"id": "e-marketing", "time": t, "source": "marketing", "account": "acme",
         "data": {"campaign": "black-friday", "channel": "newsletter"}},
        {"id": "e-ticket", "time": t, "source": "support_ticket", "account": "acme",
         "data": {"ticket_id": "T-9", "priority": "high", "status": "open"}},
        {"id": "e-bill", "time": t, "source": "billing", "account": "acme",
         "data": {"invoice_id": "INV-7", "amount": 49.9, "currency": "EUR", "status": "failed"}},
    ]});
    let (status, response) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["accepted"], 5);
    assert_eq!(statuses(&response), ["accepted"; 5]);

    let events = stack.scan("EventsTable").await;
    assert_eq!(events.len(), 5);
    let bill = events
        .iter()
        .find(|i| s(i, "sk") == Some("E#e-bill"))
        .expect("billing event");
    assert_eq!(s(bill, "pk"), Some("T#tenant-a#A#acme"));
    let data = bill["data"].as_m().expect("data map");
    assert_eq!(data["amount"].as_n().expect("amount"), "49.9");
    assert_eq!(data["status"].as_s().expect("status"), "failed");
    let api = events
        .iter()
        .find(|i| s(i, "sk") == Some("E#e-api"))
        .expect("api event");
    assert!(s(api, "subject_key").is_some_and(|key| key.starts_with("T#tenant-a#S#s_")));
    assert!(!api.contains_key("user"));

    let aggregates = stack.rollups("H#").await;
    assert_eq!(aggregates.len(), 1);
    let hour = &aggregates[0];
    assert_eq!(n(hour, "events"), Some(5));
    assert_eq!(n(hour, "calls"), Some(1));
    assert_eq!(n(hour, "units"), Some(2));
    assert_eq!(n(hour, "failed_payments"), Some(1));
    assert_eq!(n(hour, "tickets_opened"), Some(1));
    for source in [
        "api_call",
        "product",
        "marketing",
        "support_ticket",
        "billing",
    ] {
        assert_eq!(n(hour, &format!("source_{source}")), Some(1), "{source}");
    }
    // Two users, two subject records.
    assert_eq!(stack.scan("SubjectsTable").await.len(), 2);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_resent_batch_is_stored_and_counted_once() {
    let stack = TestStack::start().await;
    let t = hours_ago(2, 0);
    let mut body = batch("dup", 30, "acme", &t);
    // The same event twice in one batch.
    body["events"]
        .as_array_mut()
        .expect("events")
        .push(api_call("dup-0", "acme", &t, 200));

    let (status, first) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(30), Some(1))
    );
    assert_eq!(first["results"][30]["status"], "duplicate");

    let (status, again) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(31))
    );

    // Across requests: a new batch overlapping the first one.
    let overlap = json!({"events": [api_call("dup-5", "acme", &t, 200), api_call("dup-new", "acme", &t, 500)]});
    let (_, third) = stack.post_events("tenant-a", &overlap).await;
    assert_eq!(statuses(&third), ["duplicate", "accepted"]);

    assert_eq!(stack.scan("EventsTable").await.len(), 31);
    let aggregates = stack.rollups("H#").await;
    assert_eq!(aggregates.len(), 1);
    assert_eq!(n(&aggregates[0], "calls"), Some(31));
    assert_eq!(n(&aggregates[0], "units"), Some(62));
    assert_eq!(n(&aggregates[0], "errors_5xx"), Some(1));
    assert_eq!(n(&aggregates[0], "latency_ms_sum"), Some(31 * 80));
    // One subject record per distinct user.
    assert_eq!(stack.scan("SubjectsTable").await.len(), 31);
    stack.shutdown().await;
}

#[tokio::test]
async fn aggregates_are_one_per_account_hour() {
    let stack = TestStack::start().await;
    let (h1, h2) = (hours_ago(3, 10), hours_ago(4, 10));
    let body = json!({"events": [
        api_call("a1", "acme", &h1, 200), api_call("a2", "acme", &h1, 404),
        api_call("a3", "acme", &h2, 200), api_call("b1", "globex", &h1, 503),
    ]});
    let (status, _) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.proxy.count("TransactWriteItems"),
        3,
        "one transaction (events and aggregate update) per account-hour"
    );
    let aggregates = stack.rollups("H#").await;
    assert_eq!(aggregates.len(), 3);
    let acme_h1 = aggregates
        .iter()
        .find(|a| {
            s(a, "pk") == Some("T#tenant-a#A#acme")
                && s(a, "sk") == Some(&format!("H#{}", &h1[..13]))
        })
        .expect("acme aggregate for the first hour");
    assert_eq!(
        (n(acme_h1, "calls"), n(acme_h1, "errors_4xx")),
        (Some(2), Some(1))
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn malformed_json_is_a_400_and_stores_nothing() {
    let stack = TestStack::start().await;
    let (status, body) = stack
        .post_raw(Some("tenant-a"), "application/json", "{\"events\": [")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_json");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("line 1"));
    let (status, body) = stack
        .post_raw(Some("tenant-a"), "application/json", vec![0xff_u8, 0xfe])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(stack.scan("EventsTable").await.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn wrong_types_are_named() {
    let stack = TestStack::start().await;
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": {"id": 1}}))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("events: expected an array"))
    );
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": ["e-1"]}))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("events[0]: expected an object"))
    );

    let t = hours_ago(1, 0);
    let mut bad_status = api_call("w-1", "acme", &t, 200);
    bad_status["data"]["status"] = json!("OK");
    let mut bad_id = api_call("w-2", "acme", &t, 200);
    bad_id["id"] = json!(42);
    let mut bad_time = api_call("w-3", "acme", &t, 200);
    bad_time["time"] = json!("yesterday");
    let good = api_call("w-4", "acme", &t, 200);
    let (status, body) = stack
        .post_events(
            "tenant-a",
            &json!({"events": [bad_status, bad_id, bad_time, good]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(&body),
        ["rejected", "rejected", "rejected", "accepted"]
    );
    assert_eq!(
        body["results"][0]["error"],
        "data.status: expected an integer from 100 to 599"
    );
    assert_eq!(body["results"][1]["error"], "id: expected a string");
    assert_eq!(body["results"][1]["id"], Value::Null);
    assert!(body["results"][2]["error"]
        .as_str()
        .expect("error")
        .starts_with("time: expected an RFC 3339"));
    assert_eq!(body["rejected"], 3);
    let events = stack.scan("EventsTable").await;
    assert_eq!(events.len(), 1, "only the valid event is stored");
    assert_eq!(n(&stack.rollups("H#").await[0], "calls"), Some(1));
    stack.shutdown().await;
}

#[tokio::test]
async fn missing_fields_are_named() {
    let stack = TestStack::start().await;
    let (status, body) = stack.post_events("tenant-a", &json!({})).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("events: is required"))
    );
    let (status, _) = stack.post_events("tenant-a", &json!({"events": []})).await;
    assert_eq!(status, 400);
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": [], "tenant": "other"}))
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("body: has an unknown field"));

    let t = hours_ago(1, 0);
    let mut no_account = api_call("m-1", "acme", &t, 200);
    no_account
        .as_object_mut()
        .expect("object")
        .remove("account");
    let mut no_endpoint = api_call("m-2", "acme", &t, 200);
    no_endpoint["data"]
        .as_object_mut()
        .expect("data")
        .remove("endpoint");
    let no_data = json!({"id": "m-3", "time": t, "source": "product", "account": "acme"});
    let (status, body) = stack
        .post_events(
            "tenant-a",
            &json!({"events": [no_account, no_endpoint, no_data]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["error"], "account: is required");
    assert_eq!(body["results"][1]["error"], "data.endpoint: is required");
    assert_eq!(body["results"][2]["error"], "data: is required");
    assert!(stack.scan("EventsTable").await.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_are_413_and_store_nothing() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let (status, body) = stack
        .post_events("tenant-a", &batch("big", 501, "acme", &t))
        .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_many_items");
    let mut huge = api_call("huge", "acme", &t, 200);
    huge["padding"] = json!("x".repeat(1024 * 1024));
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": [huge]}))
        .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "body_too_large");
    assert!(stack.scan("EventsTable").await.is_empty());
    assert_eq!(stack.proxy.count("TransactWriteItems"), 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_full_batch_of_500_is_accepted_in_transactions_of_at_most_100_actions() {
    let stack = TestStack::start().await;
    let (status, body) = stack
        .post_events("tenant-a", &batch("full", 500, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 500);
    // One account-hour: 99 events and the aggregate update per transaction
    // (AWS allows 100 actions; the emulator would take more).
    assert_eq!(stack.proxy.count("TransactWriteItems"), 6);
    assert_eq!(stack.proxy.count("BatchWriteItem"), 0);
    assert_eq!(stack.scan("EventsTable").await.len(), 500);
    let aggregates = stack.rollups("H#").await;
    assert_eq!(n(&aggregates[0], "calls"), Some(500));

    stack.proxy.reset_counts();
    let (_, body) = stack
        .post_events("tenant-a", &batch("odd", 100, "acme", &hours_ago(1, 0)))
        .await;
    assert_eq!(body["accepted"], 100);
    assert_eq!(
        stack.proxy.count("TransactWriteItems"),
        2,
        "100 events need two transactions of at most 99 and their update"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn other_content_types_are_415() {
    let stack = TestStack::start().await;
    let body = batch("ct", 1, "acme", &hours_ago(1, 0)).to_string();
    let (status, response) = stack
        .post_raw(Some("tenant-a"), "text/plain", body.clone())
        .await;
    assert_eq!(status, 415);
    assert_eq!(response["error"]["code"], "unsupported_media_type");
    let (status, _) = stack
        .post_raw(Some("tenant-a"), "application/json; charset=utf-8", body)
        .await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test]
async fn unknown_fields_are_dropped_and_counted() {
    let stack = TestStack::start().await;
    let mut event = api_call("u-1", "acme", &hours_ago(1, 0), 200);
    event["colour"] = json!("blue");
    event["data"]["plan"] = json!("gold");
    event["data"]["user_agent"] = json!("curl/8");
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": [event]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["dropped_fields"], 3);
    assert_eq!(
        body["results"][0]["dropped_fields"],
        json!(["colour", "data.plan", "data.user_agent"])
    );
    let events = stack.scan("EventsTable").await;
    let text = format!("{events:?}");
    for field in ["colour", "blue", "plan", "gold", "user_agent", "curl"] {
        assert!(!text.contains(field), "{field} was stored");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn direct_identifiers_are_never_stored() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let email = "jane.doe@example.com";
    let event = json!({
        "id": "pii-1", "time": t, "source": "api_call", "account": "acme", "user": email,
        "email": email, "name": "Jane Doe", "phone": "+33 6 12 34 56 78",
        "data": {"endpoint": format!("/v1/users/{email}/orders?token=s3cr3t"), "method": "GET",
                 "status": 200, "latency_ms": 12, "client_ip": "203.0.113.77", "full_name": "Jane Doe"}
    });
    let in_text = json!({"id": "pii-2", "time": t, "source": "product", "account": "acme",
                         "data": {"feature": format!("invite {email}")}});
    let (status, body) = stack
        .post_events("tenant-a", &json!({"events": [event, in_text]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(statuses(&body), ["accepted", "rejected"]);
    assert_eq!(
        body["results"][1]["error"],
        "data.feature: must not contain an e-mail address"
    );

    let mut everything = String::new();
    for table in ["EventsTable", "AggregatesTable", "SubjectsTable"] {
        everything.push_str(&format!("{:?}", stack.scan(table).await));
    }
    for secret in [email, "jane", "Jane Doe", "+33", "203.0.113", "s3cr3t"] {
        assert!(!everything.contains(secret), "{secret} was stored");
    }
    let stored = &stack.scan("EventsTable").await[0];
    let data = stored["data"].as_m().expect("data");
    assert_eq!(
        data["endpoint"].as_s().expect("endpoint"),
        "/v1/users/:id/orders"
    );
    // A client IP is dropped like any unlisted field: nothing reads it.
    assert!(!data.contains_key("client_ip") && !data.contains_key("client_network"));
    let dropped = body["results"][0]["dropped_fields"].to_string();
    assert!(dropped.contains("data.client_ip"), "{dropped}");
    // The response names what was dropped, never the values.
    assert!(!body.to_string().contains(email));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_request_without_a_valid_key_is_refused() {
    let stack = TestStack::start().await;
    let body = batch("auth", 1, "acme", &hours_ago(1, 0)).to_string();
    let (status, response) = stack.post_raw(None, "application/json", body.clone()).await;
    assert_eq!(
        (status, response["message"].as_str()),
        (401, Some("Unauthorized"))
    );
    let key = stack.ingest_key("tenant-a").await;
    for header in [
        "Bearer",
        "Bearer nope",
        "Basic abc",
        &key,
        &format!("Bearer {key}x"),
        &format!("Bearer {}", &key[..key.len() - 1]),
    ] {
        let response = stack
            .http
            .post(format!("{}/v1/events", stack.api))
            .header("content-type", "application/json")
            .header("authorization", header)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 403, "{header}");
        assert_eq!(
            response.text().await.expect("body"),
            r#"{"message":"Forbidden"}"#,
            "says nothing about why"
        );
    }
    assert!(stack.scan("EventsTable").await.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn tenants_never_touch_each_others_events() {
    let stack = TestStack::start().await;
    let body = batch("shared-id", 3, "acme", &hours_ago(1, 0));
    let (_, a) = stack.post_events("tenant-a", &body).await;
    assert_eq!(a["accepted"], 3);
    // Tenant B sends the same account and event ids: its own events, not duplicates of A's.
    let (_, b) = stack.post_events("tenant-b", &body).await;
    assert_eq!(b["accepted"], 3);
    let events = stack.scan("EventsTable").await;
    assert_eq!(events.len(), 6);
    assert_eq!(
        events
            .iter()
            .filter(|e| s(e, "pk") == Some("T#tenant-a#A#acme"))
            .count(),
        3
    );
    let aggregates = stack.rollups("H#").await;
    assert_eq!(aggregates.len(), 2);
    assert!(aggregates.iter().all(|a| n(a, "calls") == Some(3)));
    // Same user ids, different tenants: different subjects.
    assert_eq!(stack.scan("SubjectsTable").await.len(), 6);
    stack.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let stack = TestStack::start().await;
    let response = stack
        .http
        .get(format!("{}/v1/events", stack.api))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    let response = stack
        .http
        .post(format!("{}/v1/nothing", stack.api))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    stack.shutdown().await;
}

/// Minimisation at the door, over HTTP: identifiers in endpoints become `:id`,
/// percent-encoded e-mails are e-mails, ids that would put a person or an
/// unreadable path in a table key are refused, and an amount storage cannot
/// hold is rejected alone instead of failing its write batch.
#[tokio::test]
async fn what_could_identify_a_person_is_refused_or_templated_per_event() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let billing = |id: &str, amount: Value| {
        json!({"id": id, "time": t, "source": "billing", "account": "acme",
               "data": {"invoice_id": "INV-1", "amount": amount, "currency": "EUR", "status": "paid"}})
    };
    let mut templated = api_call("tpl-1", "acme", &t, 200);
    templated["user"] = json!("u-42");
    templated["data"]["endpoint"] = json!("/v1/users/u-42/orders/981?expand=items");
    let mut account_with_slash = api_call("slash-1", "acme/eu", &t, 200);
    account_with_slash["user"] = json!(null);
    let events = json!({"events": [
        billing("amount-ok", json!(120.5)),
        billing("amount-huge", json!(1e200)),
        templated,
        api_call("+33612345678", "acme", &t, 200),
        api_call("phone-account", "+33612345678", &t, 200),
        account_with_slash,
        {"id": "enc-1", "time": t, "source": "product", "account": "acme",
         "data": {"feature": "invite jane%40example.com"}},
    ]});
    let (status, body) = stack.post_events("tenant-a", &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        statuses(&body),
        ["accepted", "rejected", "accepted", "rejected", "rejected", "rejected", "rejected"]
    );
    let errors: Vec<&str> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["error"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        errors[1],
        "data.amount: expected a number from 0 to 1000000000000"
    );
    assert!(
        errors[3].starts_with("id: must not be a phone number"),
        "{}",
        errors[3]
    );
    assert!(
        errors[4].starts_with("account: must not be a phone number"),
        "{}",
        errors[4]
    );
    assert!(
        errors[5].starts_with("account: must not contain /"),
        "{}",
        errors[5]
    );
    assert_eq!(
        errors[6],
        "data.feature: must not contain an e-mail address"
    );
    assert!(!body.to_string().contains("33612345678"));

    let stored = stack.scan("EventsTable").await;
    assert_eq!(stored.len(), 2, "the huge amount failed nothing else");
    let api = stored
        .iter()
        .find(|item| s(item, "sk") == Some("E#tpl-1"))
        .expect("stored");
    let data = api["data"].as_m().expect("data");
    assert_eq!(
        data["endpoint"].as_s().expect("endpoint"),
        "/v1/users/:id/orders/:id"
    );
    stack.shutdown().await;
}
