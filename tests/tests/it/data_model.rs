//! The data model for retention and the rights (docs/decisions/0010): items
//! carry the expiry the retention module gives them, expired items read as
//! absent, a subject's and a month's events are found by index (no scan), and a
//! tenant can lower its raw-event retention.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::Method;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::adapters::dynamo::{Dynamo, EventTable, SubjectTable};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::subject::{Purpose, SubjectState};
use vigil_shared::domain::{SubjectId, TenantId};
use vigil_tests::{api_call, hours_ago, n, s, TestStack};

const DAY: i64 = 86_400;

fn epoch(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .expect("time")
        .unix_timestamp()
}

fn by_id(items: &[vigil_tests::Item]) -> HashMap<String, vigil_tests::Item> {
    items
        .iter()
        .map(|item| {
            let sk = s(item, "sk").expect("sk");
            (sk.trim_start_matches("E#").to_owned(), item.clone())
        })
        .collect()
}

#[tokio::test]
async fn items_carry_the_expiry_their_kind_gets() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let mut anonymous = api_call("anon", "acme", &t, 200);
    anonymous.as_object_mut().expect("object").remove("user");
    let body = json!({"events": [api_call("named", "acme", &t, 200), anonymous]});
    let (status, response) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200, "{response}");

    let events = by_id(&stack.scan("EventsTable").await);
    // Raw events: the event's own time + 395 days (the default retention).
    for id in ["named", "anon"] {
        assert_eq!(
            n(&events[id], "expires_at").map(|v| v as i64),
            Some(epoch(&t) + 395 * DAY),
            "{id}"
        );
        let month = &t[..7];
        let month_key = s(&events[id], "month_key").expect("month key");
        assert!(
            month_key.starts_with(&format!("T#tenant-a#M#{month}#")),
            "{month_key}"
        );
    }
    // The subject index holds only events that name a subject: its key carries
    // the pseudonym of the subject record, nothing else does.
    let subjects = stack.scan("SubjectsTable").await;
    let subject = s(&subjects[0], "subject_id").expect("pseudonym");
    assert_eq!(
        s(&events["named"], "subject_key"),
        Some(format!("T#tenant-a#S#{subject}").as_str())
    );
    for attribute in ["subject", "account", "hour", "user"] {
        assert!(!events["named"].contains_key(attribute), "{attribute}");
    }
    assert_eq!(s(&events["anon"], "subject_key"), None);
    // Kept for the relationship: no expiry until it ends.
    for table in ["AggregatesTable", "SubjectsTable"] {
        let items = stack.scan(table).await;
        assert!(!items.is_empty(), "{table}");
        assert!(
            items.iter().all(|i| !i.contains_key("expires_at")),
            "{table}"
        );
    }
    // Audit entries: one year after they are written.
    let audit = stack.scan("AuditTable").await;
    assert!(!audit.is_empty());
    for entry in &audit {
        let written = epoch(s(entry, "time").expect("time"));
        assert_eq!(
            n(entry, "expires_at").map(|v| v as i64),
            Some(written + 365 * DAY)
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn expired_items_read_as_absent() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let key = stack.issue_key("tenant-a", &[Scope::Read]).await;
    // An event TTL has not deleted yet, under the key of a new one.
    let yesterday = OffsetDateTime::now_utc().unix_timestamp() - DAY;
    stack
        .dynamodb
        .put_item()
        .table_name(stack.table("EventsTable"))
        .item("pk", AttributeValue::S("T#tenant-a#A#acme".into()))
        .item("sk", AttributeValue::S("E#again".into()))
        .item("expires_at", AttributeValue::N(yesterday.to_string()))
        .send()
        .await
        .expect("put an expired event");
    // And an expired aggregate of an hour of another account.
    let hour = &t[..13];
    stack
        .dynamodb
        .put_item()
        .table_name(stack.table("AggregatesTable"))
        .item("pk", AttributeValue::S("T#tenant-a#A#globex".into()))
        .item("sk", AttributeValue::S(format!("H#{hour}")))
        .item("calls", AttributeValue::N("5".into()))
        .item("expires_at", AttributeValue::N(yesterday.to_string()))
        .send()
        .await
        .expect("put an expired aggregate");

    let body = json!({"events": [api_call("again", "acme", &t, 200)]});
    let (status, response) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["results"][0]["status"], "accepted", "{response}");
    let events = by_id(&stack.scan("EventsTable").await);
    assert_eq!(
        n(&events["again"], "expires_at").map(|v| v as i64),
        Some(epoch(&t) + 395 * DAY),
        "stored anew, with its own expiry"
    );

    let (status, usage) = stack
        .call(
            Method::GET,
            &format!("/v1/accounts/globex/usage?from={hour}&to={hour}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage["hours"],
        json!([]),
        "the expired aggregate is not shown"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_subjects_and_a_months_events_are_found_by_index_without_a_scan() {
    let stack = TestStack::start().await;
    let now = OffsetDateTime::now_utc();
    let this_month = hours_ago(1, 0);
    // 40 days ago is always in an earlier month.
    let earlier = hours_ago(40 * 24, 0);
    let event = |id: &str, user: Option<&str>, time: &str| {
        let mut e = api_call(id, "acme", time, 200);
        match user {
            Some(user) => e["user"] = json!(user),
            None => {
                e.as_object_mut().expect("object").remove("user");
            }
        }
        e
    };
    let body = json!({"events": [
        event("a1", Some("alice"), &this_month), event("a2", Some("alice"), &this_month),
        event("a3", Some("alice"), &earlier), event("b1", Some("bob"), &this_month),
        event("x1", None, &this_month),
    ]});
    let (status, response) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["accepted"], 5, "{response}");
    // Another tenant's events of the same month and user id stay out.
    let other = json!({"events": [event("a1", Some("alice"), &this_month)]});
    stack.post_events("tenant-b", &other).await;

    let of_tenant_a: Vec<vigil_tests::Item> = stack
        .scan("EventsTable")
        .await
        .into_iter()
        .filter(|item| s(item, "pk") == Some("T#tenant-a#A#acme"))
        .collect();
    let events = by_id(&of_tenant_a);
    let alice = SubjectId::from_stored(
        s(&events["a1"], "subject_key")
            .and_then(|key| key.strip_prefix("T#tenant-a#S#"))
            .expect("pseudonym")
            .to_owned(),
    );

    // Through the proxy, to see which operations are used.
    let (db, _) = Dynamo::connect(&stack.stack.config(&stack.proxy.url())).await;
    let table = EventTable::new(&db, &stack.config).expect("events table");
    let tenant = TenantId::parse("tenant-a").expect("tenant");
    stack.proxy.reset_counts();
    let ids = |refs: Vec<vigil_shared::ports::EventRef>| -> BTreeSet<String> {
        refs.into_iter()
            .map(|(_, id)| id.as_str().to_owned())
            .collect()
    };
    let of_alice = table
        .subject_events(&tenant, &alice, now)
        .await
        .expect("subject's events");
    assert_eq!(
        ids(of_alice),
        BTreeSet::from(["a1".into(), "a2".into(), "a3".into()])
    );
    let month = table
        .month_events(&tenant, &this_month[..7], now)
        .await
        .expect("month's events");
    assert_eq!(
        ids(month),
        BTreeSet::from(["a1".into(), "a2".into(), "b1".into(), "x1".into()])
    );
    assert_eq!(stack.proxy.count("Scan"), 0);
    assert_eq!(
        stack.proxy.count("Query"),
        1 + 16,
        "one per subject, one per month shard"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_tenant_can_lower_its_raw_event_retention() {
    let stack = TestStack::start().await;
    stack.ingest_key("tenant-a").await;
    let config = stack.config.clone();
    let tables = vigil_ops::connect(&config).await.expect("tables");
    let retention = |days: i64| vigil_ops::Command::Tenant {
        action: vigil_ops::TenantAction::Retention {
            tenant: "tenant-a".into(),
            raw_event_days: days,
        },
    };
    let mut out = Vec::new();
    let refused = vigil_ops::run(retention(400), &tables, &mut out).await;
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("raw-event-days: expected 62 to 395 days".into())
    );
    vigil_ops::run(retention(62), &tables, &mut out)
        .await
        .expect("lowered");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "tenant tenant-a: raw events kept 62 days\n"
    );

    let recent = hours_ago(1, 0);
    let too_old = hours_ago(70 * 24, 0);
    let body = json!({"events": [api_call("new", "acme", &recent, 200), api_call("old", "acme", &too_old, 200)]});
    let (status, response) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["results"][0]["status"], "accepted");
    assert_eq!(response["results"][1]["status"], "rejected");
    assert_eq!(
        response["results"][1]["error"],
        "time: is older than the retention period"
    );
    let events = by_id(&stack.scan("EventsTable").await);
    assert_eq!(
        n(&events["new"], "expires_at").map(|v| v as i64),
        Some(epoch(&recent) + 62 * DAY)
    );
    let audit = stack.scan("AuditTable").await;
    assert!(audit
        .iter()
        .any(|e| s(e, "action") == Some("tenant.retention") && s(e, "outcome") == Some("ok")));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_subject_record_holds_the_persons_state_and_the_state_index_finds_it() {
    let stack = TestStack::start().await;
    let t = hours_ago(1, 0);
    let body = json!({"events": [api_call("c1", "acme", &t, 200)]});
    let (status, _) = stack.post_events("tenant-a", &body).await;
    assert_eq!(status, 200);
    let subjects = stack.scan("SubjectsTable").await;
    assert_eq!(subjects.len(), 1);
    let lookup = s(&subjects[0], "pk")
        .and_then(|pk| pk.strip_prefix("T#tenant-a#U#"))
        .expect("lookup key")
        .to_owned();
    let pseudonym = s(&subjects[0], "subject_id").expect("pseudonym").to_owned();

    let (db, _) = Dynamo::connect(&stack.config).await;
    let table = SubjectTable::new(&db, &stack.config).expect("subjects table");
    let tenant = TenantId::parse("tenant-a").expect("tenant");
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        table.state(&tenant, &lookup).await.expect("read"),
        Some(SubjectState::default())
    );
    assert!(table
        .non_default_states(&tenant)
        .await
        .expect("index")
        .is_empty());

    let asked = SubjectState {
        restricted: true,
        objections: BTreeSet::from([Purpose::ModelTraining, Purpose::Alerting]),
        erased_at: None,
    };
    assert!(table
        .set_state(&tenant, &lookup, &asked, now)
        .await
        .expect("set"));
    assert_eq!(
        table.state(&tenant, &lookup).await.expect("read"),
        Some(asked.clone())
    );
    let listed = table.non_default_states(&tenant).await.expect("index");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0.as_str(), pseudonym);
    assert_eq!(listed[0].1, asked);
    // Another tenant's index partition is empty.
    let other = TenantId::parse("tenant-b").expect("tenant");
    assert!(table
        .non_default_states(&other)
        .await
        .expect("index")
        .is_empty());

    // Lifted: back to the default, out of the index, no stale attributes.
    assert!(table
        .set_state(&tenant, &lookup, &SubjectState::default(), now)
        .await
        .expect("lift"));
    assert!(table
        .non_default_states(&tenant)
        .await
        .expect("index")
        .is_empty());
    let record = &stack.scan("SubjectsTable").await[0];
    assert!(!record.contains_key("state_key") && !record.contains_key("objections"));
    assert!(!table
        .set_state(&tenant, "no-such-lookup", &asked, now)
        .await
        .expect("unknown subject"));
    stack.shutdown().await;
}
