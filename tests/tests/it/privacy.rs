//! Data subjects and their rights (docs/decisions/0016), through the API of the
//! local stack, with every effect read back from the emulator's tables and
//! bucket. Expected figures come from the events each test sends.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use vigil_local::Registry;
use vigil_shared::domain::access::Scope;
use vigil_tests::{hours_ago, n, s, Fault, Item, TestStack};

const TENANT: &str = "tenant-p";

/// One person's events: `calls` API calls on account `acme` (one an hour
/// back, the rest two hours back), a product event, a marketing touch, a
/// support ticket and a paid invoice.
fn events_of(user: &str, prefix: &str, calls: usize) -> Vec<Value> {
    let mut events: Vec<Value> = (0..calls)
        .map(|i| {
            let time = hours_ago(if i == 0 { 1 } else { 2 }, (i % 60) as u8);
            json!({"id": format!("{prefix}-call-{i}"), "time": time, "source": "api_call",
                   "account": "acme", "user": user,
                   "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 40, "units": 3}})
        })
        .collect();
    let t = hours_ago(2, 30);
    events.push(
        json!({"id": format!("{prefix}-product"), "time": t, "source": "product", "account": "acme",
        "user": user, "data": {"feature": "exports", "action": "run"}}),
    );
    events.push(
        json!({"id": format!("{prefix}-touch"), "time": t, "source": "marketing", "account": "acme",
        "user": user, "data": {"campaign": "spring", "channel": "email"}}),
    );
    events.push(json!({"id": format!("{prefix}-ticket"), "time": t, "source": "support_ticket", "account": "acme",
        "user": user, "data": {"ticket_id": format!("T-{prefix}"), "priority": "high", "status": "open"}}));
    events.push(json!({"id": format!("{prefix}-invoice"), "time": t, "source": "billing", "account": "acme",
        "user": user, "data": {"invoice_id": format!("INV-{prefix}"), "amount": 12.5, "currency": "EUR", "status": "paid"}}));
    events
}

struct Person {
    user: &'static str,
    email: &'static str,
    name: &'static str,
    calls: usize,
}

const ADA: Person = Person {
    user: "user-ada-7731",
    email: "ada.lovelace@example.org",
    name: "Ada Lovelace",
    calls: 5,
};
const BOB: Person = Person {
    user: "user-bob-1187",
    email: "bob.marley@example.net",
    name: "Bob Marley",
    calls: 3,
};

/// A stack with Ada's and Bob's events and contact fields, and a privacy key.
async fn seeded(stack: &TestStack) -> String {
    let key = stack.issue_key(TENANT, &[Scope::Privacy]).await;
    for (person, prefix) in [(&ADA, "ada"), (&BOB, "bob")] {
        let body = json!({"events": events_of(person.user, prefix, person.calls)});
        let (status, out) = stack.post_events(TENANT, &body).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["accepted"], person.calls + 4, "{out}");
        let (status, out) = stack
            .call(
                Method::PUT,
                &format!("/v1/subjects/{}", person.user),
                Some(&key),
                Some(&json!({"email": person.email, "name": person.name})),
            )
            .await;
        assert_eq!(status, 200, "an existing subject is updated: {out}");
        assert_eq!(out["fields_changed"], json!(["email", "name"]));
    }
    key
}

async fn request(stack: &TestStack, key: &str, body: Value) -> (u16, Value) {
    stack
        .call(Method::POST, "/v1/privacy/requests", Some(key), Some(&body))
        .await
}

/// A bundle file fetched through its presigned link, as JSON.
async fn download(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// `GET /v1/privacy/requests/{id}`.
async fn show(stack: &TestStack, key: &str, id: impl std::fmt::Display) -> (u16, Value) {
    stack
        .call(
            Method::GET,
            &format!("/v1/privacy/requests/{id}"),
            Some(key),
            None,
        )
        .await
}

async fn completed(stack: &TestStack, key: &str, body: Value) -> Value {
    let (status, out) = request(stack, key, body).await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["state"], "completed", "{out}");
    out
}

/// The dashboard's totals for `acme` (calls, units, active users).
async fn acme_totals(stack: &TestStack) -> Value {
    let key = stack.issue_key(TENANT, &[Scope::Read]).await;
    let (status, page) = stack
        .call(Method::GET, "/v1/accounts/acme", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["totals"].clone()
}

fn subject_pseudonym(stack_subjects: &[Item], email_absent_check: bool) -> Vec<(String, String)> {
    let _ = email_absent_check;
    stack_subjects
        .iter()
        .filter_map(|i| Some((s(i, "pk")?.to_owned(), s(i, "subject_id")?.to_owned())))
        .collect()
}

/// The events stored for a pseudonym.
fn events_of_subject<'a>(events: &'a [Item], pseudonym: &str) -> Vec<&'a Item> {
    events
        .iter()
        .filter(|e| s(e, "subject_key").is_some_and(|k| k.ends_with(&format!("#S#{pseudonym}"))))
        .collect()
}

/// Ada's pseudonym and lookup key, from her events' subject record.
async fn identity_of(stack: &TestStack, event_id: &str) -> (String, String) {
    let events = stack.scan("EventsTable").await;
    let event = events
        .iter()
        .find(|e| s(e, "sk") == Some(&format!("E#{event_id}")))
        .expect("event stored");
    let pseudonym = s(event, "subject_key")
        .and_then(|k| k.rsplit_once("#S#"))
        .map(|(_, p)| p.to_owned())
        .expect("pseudonym");
    let subjects = stack.scan("SubjectsTable").await;
    let (pk, _) = subject_pseudonym(&subjects, false)
        .into_iter()
        .find(|(_, p)| *p == pseudonym)
        .expect("subject record");
    let lookup = pk.rsplit_once("#U#").expect("lookup").1.to_owned();
    (pseudonym, lookup)
}

#[tokio::test]
async fn contact_fields_are_stored_only_sealed_in_the_subject_record() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    // A person handed over before any event of theirs: a new subject.
    let (status, out) = stack
        .call(
            Method::PUT,
            "/v1/subjects/user-new-1",
            Some(&key),
            Some(&json!({"email": "new.person@example.com"})),
        )
        .await;
    assert_eq!((status, &out["created"]), (201, &json!(true)), "{out}");
    let subjects = stack.scan("SubjectsTable").await;
    assert_eq!(subjects.len(), 3);
    for record in &subjects {
        let raw = format!("{record:?}");
        for secret in [ADA.email, ADA.name, BOB.email, "new.person@example.com"] {
            assert!(
                !raw.contains(secret),
                "a subject record holds a value in clear"
            );
        }
        assert!(record.contains_key("sealed_fields") && record.contains_key("sealed_key"));
    }
    // Nowhere else either: events, rollups, audit, requests.
    for table in [
        "EventsTable",
        "AggregatesTable",
        "AuditTable",
        "PrivacyTable",
        "TenantsTable",
    ] {
        let raw = format!("{:?}", stack.scan(table).await);
        for secret in [ADA.email, ADA.name, BOB.email, ADA.user] {
            assert!(!raw.contains(secret), "{table} holds a personal value");
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn access_and_portability_bundle_everything_behind_a_short_lived_link() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let (pseudonym, _) = identity_of(&stack, "ada-call-0").await;
    for kind in ["access", "portability"] {
        let out = completed(&stack, &key, json!({"type": kind, "subject": ADA.user})).await;
        let receipt = &out["receipt"];
        assert_eq!(receipt["type"], kind);
        // 5 calls, a product event, a touch, a ticket, an invoice.
        assert_eq!(receipt["outcome"]["events"], ADA.calls + 4);
        assert_eq!(receipt["outcome"]["objects"], 2);
        let raw_receipt = receipt.to_string();
        assert!(!raw_receipt.contains(ADA.email) && !raw_receipt.contains(ADA.user));
        assert!(
            !raw_receipt.contains(&pseudonym),
            "the receipt names no one"
        );
        let files = out["download"]["files"].as_array().expect("links");
        assert_eq!(files.len(), 2);
        for file in files {
            let url = file["url"].as_str().expect("url");
            let expires: u64 = url
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("X-Amz-Expires="))
                .and_then(|v| v.parse().ok())
                .expect("a presigned link");
            assert!(expires <= 86_400, "the link expires within a day");
            let body = reqwest::get(url)
                .await
                .expect("download")
                .bytes()
                .await
                .expect("bytes");
            let digest = receipt["outcome"]["digests"]
                .as_array()
                .and_then(|d| d.iter().find(|pair| pair[0] == file["name"]))
                .map(|pair| pair[1].as_str().unwrap_or_default().to_owned())
                .expect("digest of the file");
            assert_eq!(
                digest,
                sha256_hex(&body),
                "the receipt proves the bundle's content"
            );
            if file["name"] == "subject.json" {
                let bundle: Value = serde_json::from_slice(&body).expect("json bundle");
                assert_eq!(bundle["subject"]["contact"]["email"], ADA.email);
                assert_eq!(bundle["subject"]["contact"]["name"], ADA.name);
                assert_eq!(
                    bundle["events"].as_array().map(Vec::len),
                    Some(ADA.calls + 4)
                );
                assert!(bundle["requests"].as_array().is_some_and(|r| !r.is_empty()));
                let text = String::from_utf8_lossy(&body);
                assert!(
                    !text.contains(BOB.email) && !text.contains("bob-call"),
                    "only Ada's data"
                );
            } else {
                let csv = String::from_utf8_lossy(&body);
                assert_eq!(
                    csv.lines().count(),
                    1 + ADA.calls + 4,
                    "a header and a row per event"
                );
                assert!(csv.contains("ada-invoice") && !csv.contains("bob-"));
            }
        }
    }
    // The objects sit in the data bucket, encrypted with KMS.
    let s3 = stack.s3().await;
    let bucket = stack.table("DataBucket");
    let listing = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(listing.contents().len(), 4, "two requests, two files each");
    for object in listing.contents() {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(object.key().unwrap_or_default())
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        );
    }
    stack.shutdown().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn rectification_changes_the_fields_and_records_only_their_names() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let before = stack.scan("SubjectsTable").await;
    let out = completed(
        &stack,
        &key,
        json!({"type": "rectification", "subject": ADA.user,
               "fields": {"email": "ada@lovelace.example", "name": ADA.name}}),
    )
    .await;
    assert_eq!(
        out["receipt"]["outcome"]["fields_changed"],
        json!(["email"])
    );
    assert!(!out.to_string().contains("ada@lovelace.example"));
    let after = stack.scan("SubjectsTable").await;
    let sealed = |items: &[Item]| -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|i| {
                i.get("sealed_fields")?
                    .as_b()
                    .ok()
                    .map(|b| b.as_ref().to_vec())
            })
            .collect();
        all.sort();
        all
    };
    assert_ne!(
        sealed(&before),
        sealed(&after),
        "Ada's sealed fields were rewritten"
    );
    // The new value is what an access request now returns.
    let access = completed(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    let url = access["download"]["files"][0]["url"].as_str().expect("url");
    let bundle: Value = download(url).await;
    assert_eq!(
        bundle["subject"]["contact"]["email"],
        "ada@lovelace.example"
    );
    let audit = format!("{:?}", stack.scan("AuditTable").await);
    assert!(
        !audit.contains("lovelace"),
        "the audit trail names no value"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn restriction_takes_the_person_out_of_the_dashboard_until_lifted() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let all = (ADA.calls + BOB.calls) as u64;
    let totals = acme_totals(&stack).await;
    assert_eq!(totals["calls"], all);
    assert_eq!(totals["units"], 3 * all);
    assert_eq!(totals["active_users"], 2);
    let (pseudonym, _) = identity_of(&stack, "ada-call-0").await;

    let out = completed(
        &stack,
        &key,
        json!({"type": "restriction", "subject": ADA.user}),
    )
    .await;
    assert_eq!(out["receipt"]["outcome"]["events"], ADA.calls + 4);
    let totals = acme_totals(&stack).await;
    assert_eq!(totals["calls"], BOB.calls, "only Bob's calls are counted");
    assert_eq!(totals["units"], 3 * BOB.calls as u64);
    assert_eq!(totals["active_users"], 1);
    assert_eq!(stack.counted_calls().await, BOB.calls as u64);
    // Her data stays stored, marked withheld from every purpose.
    let events = stack.scan("EventsTable").await;
    let hers = events_of_subject(&events, &pseudonym);
    assert_eq!(hers.len(), ADA.calls + 4);
    assert!(hers
        .iter()
        .all(|e| s(e, "withheld") == Some("analytics,alerting,model_training")));
    // Her ticket and invoice left the account page.
    let activity = stack.rollups("X#").await;
    assert!(activity
        .iter()
        .all(|a| !s(a, "sk").unwrap_or("").contains("ada-")));
    // Ingestion keeps accepting her events, stored as restricted, not counted.
    let late = json!({"events": [{"id": "ada-late", "time": hours_ago(1, 59), "source": "api_call",
        "account": "acme", "user": ADA.user,
        "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 40, "units": 3}}]});
    let (status, _) = stack.post_events(TENANT, &late).await;
    assert_eq!(status, 200);
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    let events = stack.scan("EventsTable").await;
    let late_item = events
        .iter()
        .find(|e| s(e, "sk") == Some("E#ada-late"))
        .expect("stored");
    assert_eq!(
        s(late_item, "withheld"),
        Some("analytics,alerting,model_training")
    );

    let out = completed(
        &stack,
        &key,
        json!({"type": "restriction_lift", "subject": ADA.user}),
    )
    .await;
    assert_eq!(out["receipt"]["outcome"]["events"], ADA.calls + 5);
    let totals = acme_totals(&stack).await;
    assert_eq!(
        totals["calls"],
        all + 1,
        "her calls, the late one too, count again"
    );
    assert_eq!(totals["units"], 3 * (all + 1));
    assert_eq!(totals["active_users"], 2);
    assert_eq!(stack.counted_calls().await, all + 1);
    let activity = stack.rollups("X#").await;
    assert_eq!(
        activity
            .iter()
            .filter(|a| s(a, "sk").unwrap_or("").contains("ada-"))
            .count(),
        2
    );
    let events = stack.scan("EventsTable").await;
    assert!(events_of_subject(&events, &pseudonym)
        .iter()
        .all(|e| !e.contains_key("withheld")));
    stack.shutdown().await;
}

#[tokio::test]
async fn an_objection_excludes_the_person_from_that_purpose_only() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let all = (ADA.calls + BOB.calls) as u64;
    let (pseudonym, _) = identity_of(&stack, "ada-call-0").await;
    let out = completed(
        &stack,
        &key,
        json!({"type": "objection", "subject": ADA.user, "purpose": "alerting"}),
    )
    .await;
    assert_eq!(
        out["receipt"]["outcome"]["withheld_from"],
        json!(["alerting"])
    );
    assert_eq!(
        acme_totals(&stack).await["calls"],
        all,
        "analytics is not objected to"
    );
    let events = stack.scan("EventsTable").await;
    assert!(events_of_subject(&events, &pseudonym)
        .iter()
        .all(|e| s(e, "withheld") == Some("alerting")));

    completed(
        &stack,
        &key,
        json!({"type": "objection", "subject": ADA.user, "purpose": "analytics"}),
    )
    .await;
    let totals = acme_totals(&stack).await;
    assert_eq!(totals["calls"], BOB.calls);
    assert_eq!(totals["active_users"], 1);

    completed(
        &stack,
        &key,
        json!({"type": "objection_withdrawal", "subject": ADA.user, "purpose": "analytics"}),
    )
    .await;
    assert_eq!(acme_totals(&stack).await["calls"], all);
    let events = stack.scan("EventsTable").await;
    assert!(
        events_of_subject(&events, &pseudonym)
            .iter()
            .all(|e| s(e, "withheld") == Some("alerting")),
        "the alerting objection stays"
    );
    // The audit trail names requests, never the person.
    let (_, lookup) = identity_of(&stack, "ada-call-0").await;
    let audit = format!("{:?}", stack.scan("AuditTable").await);
    assert!(audit.contains("privacy.objection"));
    for trace in [ADA.user, pseudonym.as_str(), lookup.as_str()] {
        assert!(!audit.contains(trace), "the audit trail names the person");
    }
    // The subject's state is in the sparse index the jobs read.
    let subjects = stack.scan("SubjectsTable").await;
    let record = subjects
        .iter()
        .find(|r| s(r, "subject_id") == Some(pseudonym.as_str()))
        .expect("record");
    assert!(s(record, "state_key").is_some());
    stack.shutdown().await;
}

/// Every place a value could hide: each table's items and each object version.
async fn everything(stack: &TestStack) -> String {
    let mut all = String::new();
    for table in [
        "EventsTable",
        "AggregatesTable",
        "SubjectsTable",
        "TenantsTable",
        "AuditTable",
        "PrivacyTable",
    ] {
        all.push_str(&format!("{:?}", stack.scan(table).await));
    }
    for bucket in ["DataBucket", "AuditAnchorBucket", "AccessLogsBucket"] {
        for (key, bytes) in stack.bucket_contents(bucket).await {
            all.push_str(&key);
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

#[tokio::test]
async fn erasure_leaves_nothing_that_points_back_to_the_person() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let (ada_pseudonym, ada_lookup) = identity_of(&stack, "ada-call-0").await;
    let (bob_pseudonym, bob_lookup) = identity_of(&stack, "bob-call-0").await;
    // A bundle of hers sits in the bucket, and a restriction is on record.
    completed(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    completed(
        &stack,
        &key,
        json!({"type": "restriction", "subject": ADA.user}),
    )
    .await;
    let traces = |person: &Person, pseudonym: &str, lookup: &str| {
        vec![
            person.email.to_owned(),
            person.name.to_owned(),
            person.user.to_owned(),
            pseudonym.to_owned(),
            lookup.to_owned(),
        ]
    };
    let before = everything(&stack).await;
    // The scan can fail: before the erasure it finds her pseudonym and lookup key
    // in the tables and her e-mail and name in the bundle.
    for trace in traces(&ADA, &ada_pseudonym, &ada_lookup) {
        if trace != ADA.user {
            assert!(before.contains(&trace), "the scan finds what is there");
        }
    }

    let out = completed(
        &stack,
        &key,
        json!({"type": "erasure", "subject": ADA.user}),
    )
    .await;
    let outcome = &out["receipt"]["outcome"];
    assert_eq!(outcome["events"], ADA.calls + 4);
    assert_eq!(outcome["objects"], 2, "the access bundle's two files");
    assert_eq!(outcome["suppression_marker_kept"], true);

    let after = everything(&stack).await;
    for trace in traces(&ADA, &ada_pseudonym, &ada_lookup) {
        assert!(
            !after.contains(&trace),
            "a trace of the erased person remains"
        );
    }
    for trace in traces(&BOB, &bob_pseudonym, &bob_lookup) {
        if trace != BOB.user && trace != BOB.email && trace != BOB.name {
            assert!(
                after.contains(&trace),
                "the same scan finds Bob, who was not erased"
            );
        }
    }
    // Her events left the rollups (the restriction had already taken them out once).
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    assert_eq!(stack.counted_calls().await, BOB.calls as u64);
    // The suppression marker is a digest of her lookup key, not the key.
    let markers: Vec<Item> = stack
        .scan("PrivacyTable")
        .await
        .into_iter()
        .filter(|i| s(i, "sk").is_some_and(|sk| sk.starts_with("X#")))
        .collect();
    assert_eq!(markers.len(), 1);
    assert!(n(&markers[0], "expires_at").is_some());
    // A request about her now finds no subject; ingesting her again starts anew.
    let (status, _) = request(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    assert_eq!(status, 404);
    stack.shutdown().await;
}

#[tokio::test]
async fn post_mortem_directives_are_applied_when_the_death_is_reported() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let out = completed(
        &stack,
        &key,
        json!({"type": "post_mortem_directive", "subject": ADA.user, "directive": "hand_over",
               "recipient": {"name": "Byron Heir", "email": "heir@example.org"}}),
    )
    .await;
    assert_eq!(out["receipt"]["outcome"]["directive"], "hand_over");
    assert!(!out.to_string().contains("heir@example.org"));
    let (ada, _) = identity_of(&stack, "ada-call-0").await;
    let subjects = stack.scan("SubjectsTable").await;
    let record = subjects
        .iter()
        .find(|r| s(r, "subject_id") == Some(ada.as_str()))
        .expect("record");
    assert_eq!(s(record, "directive"), Some("hand_over"));
    assert!(
        !format!("{record:?}").contains("heir@example.org"),
        "the recipient is sealed"
    );
    let out = completed(
        &stack,
        &key,
        json!({"type": "death_notice", "subject": ADA.user}),
    )
    .await;
    assert_eq!(out["receipt"]["outcome"]["directive"], "hand_over");
    let url = out["download"]["files"][0]["url"]
        .as_str()
        .expect("a bundle for the heir");
    let bundle: Value = download(url).await;
    assert_eq!(
        bundle["subject"]["post_mortem_recipient"]["email"],
        "heir@example.org"
    );
    assert!(bundle["subject"]["deceased_at"].is_string());

    completed(
        &stack,
        &key,
        json!({"type": "post_mortem_directive", "subject": BOB.user, "directive": "erase"}),
    )
    .await;
    let out = completed(
        &stack,
        &key,
        json!({"type": "death_notice", "subject": BOB.user}),
    )
    .await;
    assert_eq!(out["receipt"]["outcome"]["directive"], "erase");
    assert_eq!(out["receipt"]["outcome"]["events"], BOB.calls + 4);
    let after = everything(&stack).await;
    assert!(!after.contains(BOB.email) && !after.contains(BOB.name));
    assert_eq!(acme_totals(&stack).await["calls"], ADA.calls);
    stack.shutdown().await;
}

#[tokio::test]
async fn requests_are_listed_with_due_dates_and_filtered_by_state() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    completed(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    let out = completed(
        &stack,
        &key,
        json!({"type": "restriction", "subject": BOB.user}),
    )
    .await;
    let received = time::OffsetDateTime::parse(
        out["received_at"].as_str().expect("received_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let due = time::OffsetDateTime::parse(
        out["due_at"].as_str().expect("due_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let days = (due - received).whole_days();
    assert!(
        (28..=31).contains(&days),
        "due one month after receipt: {days} days"
    );
    assert_eq!(out["overdue"], false);
    let (status, page) = stack
        .call(
            Method::GET,
            "/v1/privacy/requests?state=completed&limit=1",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["requests"].as_array().map(Vec::len), Some(1));
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, second) = stack
        .call(
            Method::GET,
            &format!("/v1/privacy/requests?state=completed&limit=1&cursor={cursor}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(second["requests"].as_array().map(Vec::len), Some(1));
    assert_ne!(second["requests"][0]["id"], page["requests"][0]["id"]);
    let (_, open) = stack
        .call(
            Method::GET,
            "/v1/privacy/requests?state=in_progress",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(open["requests"], json!([]));
    let id = out["id"].as_str().expect("id");
    let (status, shown) = show(&stack, &key, &id).await;
    assert_eq!(status, 200);
    assert_eq!(shown["receipt"], out["receipt"]);
    stack.shutdown().await;
}

/// A stack whose privacy function answers before doing any work (202): what a
/// request on a subject with many events does once its budget is spent.
async fn slow_stack() -> TestStack {
    let mut registry = Registry::standard();
    registry.register("vigil-privacy", |c| async move {
        let mut deps = vigil_privacy::Deps::connect(&c).await?;
        deps.inline_budget = Duration::ZERO;
        Ok::<_, vigil_privacy::InitError>(deps)
    });
    TestStack::start_with(&vigil_local::repo_template(), &registry).await
}

#[tokio::test]
async fn a_long_erasure_finishes_asynchronously_and_survives_an_interruption() {
    let stack = slow_stack().await;
    let key = seeded(&stack).await;
    let (status, out) = request(
        &stack,
        &key,
        json!({"type": "erasure", "subject": ADA.user}),
    )
    .await;
    assert_eq!(
        (status, out["state"].as_str()),
        (202, Some("in_progress")),
        "{out}"
    );
    let id = out["id"].as_str().expect("id").to_owned();
    // A second erasure of her while the first is open: refused, nothing added.
    let requests_before = stack.scan("PrivacyTable").await.len();
    let (status, conflict) = request(
        &stack,
        &key,
        json!({"type": "erasure", "subject": ADA.user}),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(stack.scan("PrivacyTable").await.len(), requests_before);

    // The first resume is interrupted: every transaction fails.
    stack
        .proxy
        .inject("TransactWriteItems", Fault::AccessDenied, None);
    let api = stack.local_api();
    let run = api
        .invoke("PrivacyFunction", json!({"tenant": TENANT}))
        .await;
    assert!(
        run.is_err(),
        "an interrupted run fails, so it is retried and seen"
    );
    stack.proxy.clear_faults();
    let (_, shown) = show(&stack, &key, &id).await;
    assert_eq!(shown["state"], "in_progress");
    assert_eq!(
        acme_totals(&stack).await["calls"],
        ADA.calls + BOB.calls,
        "nothing half-done"
    );

    // Two runs at once finish it: each event erased and subtracted once.
    let (a, b) = tokio::join!(
        api.invoke("PrivacyFunction", json!({"tenant": TENANT})),
        api.invoke("PrivacyFunction", json!({})),
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    let (_, shown) = show(&stack, &key, &id).await;
    assert_eq!(shown["state"], "completed", "{shown}");
    assert_eq!(shown["events_done"], ADA.calls + 4);
    assert_eq!(shown["receipt"]["outcome"]["events"], ADA.calls + 4);
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    assert_eq!(stack.counted_calls().await, BOB.calls as u64);
    // A third run finds nothing to do.
    let again = api.invoke("PrivacyFunction", json!({})).await.expect("run");
    assert_eq!(again["continued"], 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let other = stack.issue_key("tenant-other", &[Scope::Privacy]).await;
    let read = stack
        .issue_key(TENANT, &[Scope::Read, Scope::Admin, Scope::Ingest])
        .await;
    let before = (
        stack.scan("PrivacyTable").await.len(),
        stack.scan("SubjectsTable").await,
    );
    // (method, path, key, body, status, field named in the error)
    type Case<'a> = (
        Method,
        &'a str,
        Option<&'a str>,
        Option<Value>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "access", "subject": "nobody"})),
            404,
            "",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&other),
            Some(json!({"type": "access", "subject": ADA.user})),
            404,
            "",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&read),
            Some(json!({"type": "access", "subject": ADA.user})),
            403,
            "",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            None,
            Some(json!({"type": "access", "subject": ADA.user})),
            401,
            "",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "forget", "subject": ADA.user})),
            400,
            "type",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "access", "subject": 42})),
            400,
            "subject",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "access"})),
            400,
            "subject",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "access", "subject": ADA.user, "email": ADA.email})),
            400,
            "body",
        ),
        (
            Method::POST,
            "/v1/privacy/requests",
            Some(&key),
            Some(json!({"type": "objection", "subject": ADA.user})),
            400,
            "purpose",
        ),
        (
            Method::GET,
            "/v1/privacy/requests/not-an-id",
            Some(&key),
            None,
            400,
            "request_id",
        ),
        (
            Method::GET,
            "/v1/privacy/requests/pr_00000000000000000000",
            Some(&key),
            None,
            404,
            "",
        ),
        (
            Method::GET,
            "/v1/privacy/requests?state=done",
            Some(&key),
            None,
            400,
            "state",
        ),
        (
            Method::GET,
            "/v1/privacy/requests?limit=0",
            Some(&key),
            None,
            400,
            "limit",
        ),
        (
            Method::PUT,
            "/v1/subjects/u-1",
            Some(&key),
            Some(json!({"email": "not an address"})),
            400,
            "body.email",
        ),
        (
            Method::PUT,
            "/v1/subjects/u-1",
            Some(&key),
            Some(json!({})),
            400,
            "body",
        ),
        (
            Method::PUT,
            "/v1/subjects/u-1",
            Some(&key),
            Some(json!({"phone": "+33 6 12 34 56 78"})),
            400,
            "body",
        ),
    ];
    for (method, path, key, body, status, field) in cases {
        let (got, out) = stack.call(method.clone(), path, key, body.as_ref()).await;
        assert_eq!(got, status, "{method} {path}: {out}");
        if !field.is_empty() {
            assert_eq!(out["error"]["field"], field, "{path}: {out}");
        }
        let text = out.to_string();
        assert!(
            !text.contains(ADA.email) && !text.contains("+33"),
            "no value echoed"
        );
    }
    // Another tenant's request id: 404, as if it did not exist.
    let done = completed(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    let id = done["id"].as_str().expect("id");
    let (status, _) = stack
        .call(
            Method::GET,
            &format!("/v1/privacy/requests/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = stack
        .call(Method::GET, "/v1/privacy/requests", Some(&other), None)
        .await;
    assert_eq!(
        theirs["requests"],
        json!([]),
        "another tenant lists none of ours"
    );
    // Malformed JSON and an oversized body.
    let response = stack
        .http
        .post(format!("{}/v1/privacy/requests", stack.api))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let big = json!({"type": "access", "subject": "x".repeat(9000)});
    let (status, _) = request(&stack, &key, big).await;
    assert_eq!(status, 413);
    let after = (
        stack.scan("PrivacyTable").await.len(),
        stack.scan("SubjectsTable").await,
    );
    assert_eq!(
        before.0 + 1,
        after.0,
        "no request was stored but the one access"
    );
    assert_eq!(before.1.len(), after.1.len(), "no subject was created");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_rotation_reads_both_secret_versions_and_moves_records_on_sight() {
    use vigil_shared::adapters::dynamo::{Dynamo, SubjectTable};
    use vigil_shared::config::Setting;
    use vigil_shared::domain::TenantId;
    use vigil_shared::ports::SubjectStore;
    let stack = TestStack::start().await;
    seeded(&stack).await;
    let (ada, ada_v1) = identity_of(&stack, "ada-call-0").await;
    let (bob, _) = identity_of(&stack, "bob-call-0").await;
    assert!(ada_v1.starts_with("v1."), "lookup keys carry their version");
    // What the functions derive once SubjectLookupVersion is 2 and the previous 1.
    let (db, sdk) = Dynamo::connect(&stack.config).await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key_id = stack.config.get(Setting::SubjectLookupKeyId).expect("key");
    let rotating = vigil_shared::adapters::kms::derive_versioned_lookup(&kms, key_id, 2, Some(1))
        .await
        .expect("derive");
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let ada_keys = rotating.lookup_keys(&tenant, ADA.user);
    assert_eq!(ada_keys.previous.as_deref(), Some(ada_v1.as_str()));
    let subjects = SubjectTable::new(&db, &stack.config).expect("table");
    // Ingestion resolves Ada under the previous key and moves her record.
    let resolved = subjects
        .resolve_subjects(&tenant, std::slice::from_ref(&ada_keys))
        .await
        .expect("resolve");
    assert_eq!(
        resolved[&ada_keys.current].subject.as_str(),
        ada,
        "the same pseudonym"
    );
    let versions = subjects.versions(&tenant).await.expect("versions");
    assert_eq!(versions.get(&1), Some(&1), "Bob is still on version 1");
    assert_eq!(versions.get(&2), Some(&1), "Ada moved to version 2");
    let records = stack.scan("SubjectsTable").await;
    assert!(records
        .iter()
        .all(|r| !s(r, "pk").unwrap_or("").ends_with(&ada_v1)));
    let moved = records
        .iter()
        .find(|r| s(r, "subject_id") == Some(ada.as_str()))
        .expect("moved record");
    assert!(
        moved.contains_key("sealed_fields"),
        "everything moved with it"
    );
    // The privacy side finds Bob under the previous key, and moves him too.
    let bob_keys = rotating.lookup_keys(&tenant, BOB.user);
    let found = subjects
        .find(&tenant, &bob_keys)
        .await
        .expect("find")
        .expect("bob");
    assert_eq!(found.subject.as_str(), bob);
    assert_eq!(found.lookup, bob_keys.current);
    // The operator sees the rotation is over.
    let tables = vigil_ops::connect(&stack.config).await.expect("tables");
    let mut out = Vec::new();
    vigil_ops::run(
        vigil_ops::Command::Subjects {
            action: vigil_ops::SubjectsAction::LookupVersions {
                tenant: TENANT.into(),
            },
        },
        &tables,
        &mut out,
    )
    .await
    .expect("lookup-versions");
    let counts: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(counts, json!({"v2": 2}));
    stack.shutdown().await;
}

/// Every item of the tables a restore would bring back, to put back later.
async fn snapshot(stack: &TestStack, tables: &[&str]) -> Vec<(String, Vec<Item>)> {
    let mut out = Vec::new();
    for table in tables {
        out.push((stack.table(table), stack.scan(table).await));
    }
    out
}

/// Replaces each table's items with the snapshot's: a point-in-time restore.
async fn restore(stack: &TestStack, snapshot: Vec<(String, Vec<Item>)>, logical: &[&str]) {
    for ((name, items), table) in snapshot.into_iter().zip(logical) {
        for item in stack.scan(table).await {
            let key: Item = item
                .iter()
                .filter(|(k, _)| *k == "pk" || *k == "sk")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            stack
                .dynamodb
                .delete_item()
                .table_name(&name)
                .set_key(Some(key))
                .send()
                .await
                .expect("delete");
        }
        for item in items {
            stack
                .dynamodb
                .put_item()
                .table_name(&name)
                .set_item(Some(item))
                .send()
                .await
                .expect("put");
        }
    }
}

#[tokio::test]
async fn a_restore_drill_erases_again_what_was_erased_after_the_backup() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let (ada, ada_lookup) = identity_of(&stack, "ada-call-0").await;
    let data = ["EventsTable", "AggregatesTable", "SubjectsTable"];
    let backup = snapshot(&stack, &data).await;
    completed(
        &stack,
        &key,
        json!({"type": "erasure", "subject": ADA.user}),
    )
    .await;
    // The data tables are restored to before the erasure (the privacy table is not).
    restore(&stack, backup, &data).await;
    assert_eq!(acme_totals(&stack).await["calls"], ADA.calls + BOB.calls);
    let restored = format!("{:?}", stack.scan("SubjectsTable").await);
    assert!(restored.contains(&ada), "the backup brought her back");

    let tables = vigil_ops::connect(&stack.config).await.expect("tables");
    let mut out = Vec::new();
    let drill = || vigil_ops::Command::Subjects {
        action: vigil_ops::SubjectsAction::ReapplyErasures {
            tenant: TENANT.into(),
        },
    };
    vigil_ops::run(drill(), &tables, &mut out)
        .await
        .expect("drill");
    assert_eq!(
        serde_json::from_slice::<Value>(&out).expect("json"),
        json!({"erased_again": 1})
    );
    let mut all = String::new();
    for table in data {
        all.push_str(&format!("{:?}", stack.scan(table).await));
    }
    assert!(
        !all.contains(&ada) && !all.contains(&ada_lookup),
        "erased again"
    );
    assert_eq!(
        acme_totals(&stack).await["calls"],
        BOB.calls,
        "her events left the rollups once"
    );
    assert_eq!(stack.counted_calls().await, BOB.calls as u64);
    // Run twice: nothing more to do.
    let mut out = Vec::new();
    vigil_ops::run(drill(), &tables, &mut out)
        .await
        .expect("drill again");
    assert_eq!(
        serde_json::from_slice::<Value>(&out).expect("json"),
        json!({"erased_again": 0})
    );
    stack.shutdown().await;
}

async fn open_requests(stack: &TestStack, key: &str) -> Value {
    let (status, page) = stack
        .call(
            Method::GET,
            "/v1/privacy/requests?state=in_progress",
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page
}

/// Days added to the privacy function's clock (see `shifted_clock`).
static CLOCK_SHIFT_DAYS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn shifted_clock() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
        + time::Duration::days(CLOCK_SHIFT_DAYS.load(std::sync::atomic::Ordering::Relaxed))
}

#[tokio::test]
async fn an_open_request_past_its_due_date_is_flagged_overdue() {
    let mut registry = Registry::standard();
    registry.register("vigil-privacy", |c| async move {
        let mut deps = vigil_privacy::Deps::connect(&c).await?;
        deps.inline_budget = Duration::ZERO;
        deps.clock = shifted_clock;
        Ok::<_, vigil_privacy::InitError>(deps)
    });
    let stack = TestStack::start_with(&vigil_local::repo_template(), &registry).await;
    let key = seeded(&stack).await;
    let (status, open) = request(
        &stack,
        &key,
        json!({"type": "erasure", "subject": ADA.user}),
    )
    .await;
    assert_eq!(status, 202, "{open}");
    let page = open_requests(&stack, &key).await;
    assert_eq!(
        (
            page["overdue"].clone(),
            page["requests"][0]["overdue"].clone()
        ),
        (json!(0), json!(false))
    );
    // 32 days later, still open: past its due date (one month after receipt).
    CLOCK_SHIFT_DAYS.store(32, std::sync::atomic::Ordering::Relaxed);
    let page = open_requests(&stack, &key).await;
    CLOCK_SHIFT_DAYS.store(0, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(page["overdue"], 1);
    assert_eq!(page["requests"][0]["overdue"], true);
    assert_eq!(page["requests"][0]["id"], open["id"]);
    stack.shutdown().await;
}

#[tokio::test]
async fn storage_faults_never_lose_a_request() {
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    // The subject cannot be read: a 500, and nothing is stored.
    let before = stack.scan("PrivacyTable").await.len();
    stack.proxy.inject("GetItem", Fault::AccessDenied, Some(1));
    let (status, out) = request(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    assert_eq!(status, 500, "{out}");
    assert!(out["request_id"].is_string());
    assert_eq!(
        stack.scan("PrivacyTable").await.len(),
        before,
        "nothing stored"
    );
    // Throttled: the SDK's retries absorb it.
    stack.proxy.inject("GetItem", Fault::Throttle, Some(1));
    let (status, out) = request(
        &stack,
        &key,
        json!({"type": "restriction", "subject": BOB.user}),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    // The bundle cannot be written: the request is received and stays open (202).
    stack.proxy.inject("s3:PUT", Fault::ServerError, None);
    let (status, out) = request(&stack, &key, json!({"type": "access", "subject": ADA.user})).await;
    stack.proxy.clear_faults();
    assert_eq!(
        (status, out["state"].as_str()),
        (202, Some("in_progress")),
        "{out}"
    );
    let id = out["id"].as_str().expect("id").to_owned();
    // The scheduled resume finishes it.
    let run = stack
        .local_api()
        .invoke("PrivacyFunction", json!({}))
        .await
        .expect("resume");
    assert_eq!(run["still_open"], 0, "{run}");
    let (_, shown) = show(&stack, &key, &id).await;
    assert_eq!(shown["state"], "completed", "{shown}");
    assert_eq!(shown["download"]["files"].as_array().map(Vec::len), Some(2));
    stack.shutdown().await;
}

#[tokio::test]
async fn contact_fields_wait_for_kms_rather_than_fail_or_store_in_clear() {
    let stack = TestStack::start().await;
    let key = stack.issue_key(TENANT, &[Scope::Privacy]).await;
    // KMS keeps failing with a 5xx: 503 with Retry-After, nothing sealed.
    stack
        .proxy
        .inject("GenerateDataKey", Fault::ServerError, None);
    let response = stack
        .http
        .put(format!("{}/v1/subjects/{}", stack.api, ADA.user))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(json!({"email": ADA.email}).to_string())
        .send()
        .await
        .expect("send");
    stack.proxy.clear_faults();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let subjects = stack.scan("SubjectsTable").await;
    assert!(subjects.iter().all(|r| !r.contains_key("sealed_fields")));
    assert!(!format!("{subjects:?}").contains(ADA.email));
    // KMS back: the retry stores them.
    let (status, out) = stack
        .call(
            Method::PUT,
            &format!("/v1/subjects/{}", ADA.user),
            Some(&key),
            Some(&json!({"email": ADA.email})),
        )
        .await;
    assert_eq!(
        status, 200,
        "the subject was created by the first try: {out}"
    );
    assert_eq!(out["fields_changed"], json!(["email"]));
    stack.shutdown().await;
}

#[tokio::test]
async fn an_event_ingested_as_the_restriction_began_is_withheld_by_the_next_run() {
    use vigil_shared::adapters::dynamo::{Dynamo, IngestTables};
    use vigil_shared::domain::{AccountId, EventData, EventId, StoredEvent, SubjectId, TenantId};
    use vigil_shared::ports::EventStore;
    let stack = TestStack::start().await;
    let key = seeded(&stack).await;
    let (ada, _) = identity_of(&stack, "ada-call-0").await;
    completed(
        &stack,
        &key,
        json!({"type": "restriction", "subject": ADA.user}),
    )
    .await;
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    // Ingestion read her state just before the restriction and writes after it:
    // the event is stored counted, as the stale state said.
    let (db, _) = Dynamo::connect(&stack.config).await;
    let tables = IngestTables::new(&db, &stack.config).expect("tables");
    let now = time::OffsetDateTime::now_utc();
    let event = StoredEvent {
        id: EventId::parse("ada-racing").expect("id"),
        time: now - time::Duration::minutes(30),
        account: AccountId::parse("acme").expect("account"),
        subject: Some(SubjectId::from_stored(ada.clone())),
        data: EventData::ApiCall {
            endpoint: "/v1/pay".into(),
            method: "POST",
            status: 200,
            latency_ms: 40,
            units: 3,
        },
        withheld: Default::default(),
    };
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let recorded = tables
        .record_events(&tenant, &[event], Default::default(), now)
        .await;
    assert_eq!(recorded, vec![vigil_shared::ports::Recorded::Counted]);
    assert_eq!(
        acme_totals(&stack).await["calls"],
        BOB.calls + 1,
        "counted by mistake"
    );
    // The next scheduled run passes over subjects whose state just changed.
    let run = stack
        .local_api()
        .invoke("PrivacyFunction", json!({}))
        .await
        .expect("run");
    assert_eq!(run["rechecked"], 1, "{run}");
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    assert_eq!(stack.counted_calls().await, BOB.calls as u64);
    let events = stack.scan("EventsTable").await;
    let racing = events
        .iter()
        .find(|e| s(e, "sk") == Some("E#ada-racing"))
        .expect("stored");
    assert_eq!(
        s(racing, "withheld"),
        Some("analytics,alerting,model_training")
    );
    // A second run finds nothing to change.
    let again = stack
        .local_api()
        .invoke("PrivacyFunction", json!({}))
        .await
        .expect("run");
    assert_eq!(again["rechecked"], 1);
    assert_eq!(acme_totals(&stack).await["calls"], BOB.calls);
    stack.shutdown().await;
}
