//! The retention purge over the real stack (docs/decisions/0019): data
//! ingested through the API, contracts set through the accounts API, the purge
//! run through its function with time driven by its input, and every table and
//! the bucket scanned straight from the emulator (which never expires anything
//! itself, so what is gone was deleted by the purge).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};
use vigil_shared::domain::access::Scope;
use vigil_shared::ports::AuditLog as _;
use vigil_tests::{s, Fault, TestStack};

const TABLES: [&str; 7] = [
    "EventsTable",
    "AggregatesTable",
    "SubjectsTable",
    "TenantsTable",
    "AuditTable",
    "PrivacyTable",
    "AlertsTable",
];

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// The last day of a relationship that ended `days` days before today's
/// midnight (it ends when its last day is over).
fn ended_days_ago(days: i64) -> String {
    day(today() - Duration::days(days + 1))
}

/// Three years, as the privacy policy counts them here (1,096 days).
const THREE_YEARS: i64 = 3 * 365 + 1;

fn api_event(id: &str, account: &str, user: &str, hours_ago: i64) -> Value {
    let t = OffsetDateTime::now_utc() - Duration::hours(hours_ago);
    json!({"id": id, "time": rfc3339(t.replace_nanosecond(0).expect("ns")), "source": "api_call",
           "account": account, "user": user,
           "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 80, "units": 1}})
}

fn ticket(id: &str, account: &str, hours_ago: i64) -> Value {
    let t = OffsetDateTime::now_utc() - Duration::hours(hours_ago);
    json!({"id": id, "time": rfc3339(t.replace_nanosecond(0).expect("ns")), "source": "support_ticket",
           "account": account, "data": {"ticket_id": "T-1", "priority": "high", "status": "open"}})
}

/// Every item of every table, as text, for "nothing changed" comparisons.
async fn snapshot(stack: &TestStack) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let items = stack.scan(table).await;
        let mut texts = BTreeSet::new();
        for item in items {
            let sorted: BTreeMap<_, _> = item.iter().map(|(k, v)| (k, canon(v))).collect();
            texts.insert(format!("{sorted:?}"));
        }
        out.insert(table, texts);
    }
    out
}

/// The key of every item of every table.
async fn item_keys(stack: &TestStack) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for table in TABLES {
        for item in stack.scan(table).await {
            let (pk, sk) = (s(&item, "pk").unwrap_or(""), s(&item, "sk").unwrap_or(""));
            out.insert((table.to_owned(), pk.to_owned(), sk.to_owned()));
        }
    }
    out
}

/// A value as text, maps with their keys in order (a HashMap's are not).
fn canon(value: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    match value.as_m() {
        Ok(map) => {
            let sorted: BTreeMap<_, _> = map.iter().map(|(k, v)| (k, canon(v))).collect();
            format!("M{sorted:?}")
        }
        Err(_) => format!("{value:?}"),
    }
}

/// What differs between two snapshots (items only in one of them), by table.
fn changes(
    before: &BTreeMap<&'static str, BTreeSet<String>>,
    after: &BTreeMap<&'static str, BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        for item in before[table].symmetric_difference(&after[table]) {
            let side = if before[table].contains(item) {
                "-"
            } else {
                "+"
            };
            out.push(format!("{table} {side} {}", &item[..item.len().min(300)]));
        }
    }
    out
}

/// Items of a table whose key names `needle` (an account partition, entry or history).
async fn items_naming(stack: &TestStack, table: &str, needles: &[String]) -> usize {
    stack
        .scan(table)
        .await
        .iter()
        .filter(|item| {
            let (pk, sk) = (s(item, "pk").unwrap_or(""), s(item, "sk").unwrap_or(""));
            needles.iter().any(|n| pk.contains(n) || sk.contains(n))
        })
        .count()
}

fn account_needles(tenant: &str, account: &str) -> Vec<String> {
    vec![
        format!("T#{tenant}#A#{account}"),
        format!("A#{account}"),
        format!("F#{account}#"),
    ]
}

/// An account's items in the events and aggregates tables (its partitions
/// and its directory entry), counted from the emulator.
async fn account_items(stack: &TestStack, account: &str) -> u64 {
    let needles = account_needles(T, account);
    let mut count = 0;
    for table in ["EventsTable", "AggregatesTable"] {
        count += items_naming(stack, table, &needles).await as u64;
    }
    count
}

/// What the account records say was deleted from the events and aggregates tables.
fn recorded_account_items(records: &[Value]) -> u64 {
    records
        .iter()
        .filter(|r| r["class"] == "account")
        .flat_map(item_counts)
        .filter(|(table, _)| table == "EventsTable" || table == "AggregatesTable")
        .map(|(_, count)| count)
        .sum()
}

/// The pseudonyms of an account's events, read from the events table.
async fn pseudonyms_of(stack: &TestStack, tenant: &str, account: &str) -> BTreeSet<String> {
    let pk = format!("T#{tenant}#A#{account}");
    stack
        .scan("EventsTable")
        .await
        .iter()
        .filter(|i| s(i, "pk") == Some(pk.as_str()))
        .filter_map(|i| s(i, "subject_key").map(|k| k.rsplit('#').next().unwrap_or("").to_owned()))
        .collect()
}

async fn subject_ids(stack: &TestStack) -> BTreeSet<String> {
    stack
        .scan("SubjectsTable")
        .await
        .iter()
        .filter_map(|i| s(i, "subject_id").map(str::to_owned))
        .collect()
}

async fn put_account(stack: &TestStack, key: &str, account: &str, end: Option<&str>) {
    let mut body = json!({"name": account, "plan": "growth", "monthly_quota": 1000,
                          "relationship_start": "2020-01-01"});
    if let Some(end) = end {
        body["relationship_end"] = end.into();
    }
    let (status, out) = stack
        .call(
            Method::PUT,
            &format!("/v1/accounts/{account}"),
            Some(key),
            Some(&body),
        )
        .await;
    assert!(status == 200 || status == 201, "{out}");
}

/// An alert state and a fired alert of an account, as the alert evaluation
/// writes them (keys from keys.rs): the purge must reach these tables too.
async fn seed_alert_items(stack: &TestStack, tenant: &str, account: &str) {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    for (pk, sk) in [
        (format!("T#{tenant}#ALERTSTATE"), format!("A#{account}")),
        (
            format!("T#{tenant}#ALERTS"),
            format!("F#{account}#2026-11-30T10:00:00Z#errors"),
        ),
    ] {
        stack
            .dynamodb
            .put_item()
            .table_name(stack.table("AlertsTable"))
            .item("pk", S(pk))
            .item("sk", S(sk))
            .send()
            .await
            .expect("seed alert item");
    }
}

async fn purge(stack: &TestStack, input: Value) -> Value {
    stack
        .local_api()
        .invoke("PurgeFunction", input)
        .await
        .expect("purge run")
}

async fn records(stack: &TestStack, key: &str) -> Vec<Value> {
    let (status, out) = stack
        .call(Method::GET, "/v1/retention/records", Some(key), None)
        .await;
    assert_eq!(status, 200, "{out}");
    out["records"].as_array().cloned().unwrap_or_default()
}

fn item_counts(record: &Value) -> BTreeMap<String, u64> {
    record["counts"]["items"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

const T: &str = "purge-a";

#[tokio::test]
async fn an_account_three_years_and_a_day_past_its_end_is_gone_and_nothing_else_is() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    // "gone" ended 3 years and a day ago; "kept" a day short of 3 years ago;
    // "active" has no end; "reopened" ended long ago but was reopened.
    let mut events = Vec::new();
    for (i, account) in ["gone", "kept", "active", "reopened"].iter().enumerate() {
        for j in 0..6 {
            events.push(api_event(
                &format!("{account}-{j}"),
                account,
                &format!("user-{account}-{}", j % 2),
                (i * 7 + j) as i64 + 1,
            ));
        }
        events.push(ticket(&format!("{account}-t"), account, 3));
    }
    // A person on both "gone" and "active": their record stays.
    events.push(api_event("shared-1", "gone", "user-shared", 2));
    events.push(api_event("shared-2", "active", "user-shared", 2));
    let (status, out) = stack.post_events(T, &json!({"events": events})).await;
    assert_eq!(status, 200, "{out}");
    for account in ["gone", "kept"] {
        seed_alert_items(&stack, T, account).await;
    }
    let gone_people = pseudonyms_of(&stack, T, "gone").await;
    let active_people = pseudonyms_of(&stack, T, "active").await;
    let shared: BTreeSet<_> = gone_people.intersection(&active_people).cloned().collect();
    assert_eq!((gone_people.len(), shared.len()), (3, 1));

    put_account(
        &stack,
        &admin,
        "gone",
        Some(&ended_days_ago(THREE_YEARS + 1)),
    )
    .await;
    put_account(
        &stack,
        &admin,
        "kept",
        Some(&ended_days_ago(THREE_YEARS - 1)),
    )
    .await;
    put_account(&stack, &admin, "active", None).await;
    put_account(
        &stack,
        &admin,
        "reopened",
        Some(&ended_days_ago(THREE_YEARS + 30)),
    )
    .await;
    put_account(&stack, &admin, "reopened", None).await;

    // What "gone" holds, counted from the tables on their own.
    let needles = account_needles(T, "gone");
    let mut expected = BTreeMap::new();
    for table in ["EventsTable", "AggregatesTable", "AlertsTable"] {
        expected.insert(
            table.to_owned(),
            items_naming(&stack, table, &needles).await as u64,
        );
    }
    expected.insert("SubjectsTable".to_owned(), 2);
    assert!(
        expected["EventsTable"] == 8 && expected["AggregatesTable"] > 3,
        "{expected:?}"
    );
    let others: BTreeMap<&str, usize> = {
        let mut m = BTreeMap::new();
        for account in ["kept", "active", "reopened"] {
            let mut n = 0;
            for table in ["EventsTable", "AggregatesTable", "AlertsTable"] {
                n += items_naming(&stack, table, &account_needles(T, account)).await;
            }
            m.insert(account, n);
        }
        m
    };

    // A dry run reports exactly this and changes nothing.
    let before = snapshot(&stack).await;
    let dry = purge(&stack, json!({"tenant": T, "dry_run": true})).await;
    let changed = changes(&before, &snapshot(&stack).await);
    assert!(changed.is_empty(), "a dry run changed: {changed:#?}");
    let dry_records = dry["tenants"][0]["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let dry_account: Vec<_> = dry_records
        .iter()
        .filter(|r| r["class"] == "account")
        .collect();
    assert_eq!(dry_account.len(), 1, "{dry}");
    assert_eq!(item_counts(dry_account[0]), expected, "{dry}");
    assert!(
        records(&stack, &admin).await.is_empty(),
        "a dry run stores no record"
    );

    let report = purge(&stack, json!({"tenant": T})).await;
    assert_eq!(report["complete"], true, "{report}");

    // Gone from every table, scanned straight from the emulator.
    for table in ["EventsTable", "AggregatesTable", "AlertsTable"] {
        assert_eq!(items_naming(&stack, table, &needles).await, 0, "{table}");
    }
    let people = subject_ids(&stack).await;
    for person in &gone_people {
        assert_eq!(people.contains(person), shared.contains(person), "{person}");
    }
    // The others keep every item.
    for (account, count) in &others {
        let mut n = 0;
        for table in ["EventsTable", "AggregatesTable", "AlertsTable"] {
            n += items_naming(&stack, table, &account_needles(T, account)).await;
        }
        assert_eq!(n, *count, "{account} lost items");
    }
    // The proof: one account record with exactly what was deleted, on the
    // tenant's API and in its audit trail.
    let stored = records(&stack, &admin).await;
    let account_records: Vec<_> = stored.iter().filter(|r| r["class"] == "account").collect();
    assert_eq!(account_records.len(), 1, "{stored:?}");
    let record = account_records[0];
    assert_eq!(item_counts(record), expected);
    assert_eq!(record["account"], "gone");
    assert_eq!(record["policy"], "relationship_end + 1096 days");
    assert_eq!(record["run_id"], report["run_id"]);
    // Another tenant's admin sees none of them.
    let other = stack.issue_key("purge-other", &[Scope::Admin]).await;
    assert!(records(&stack, &other).await.is_empty());
    let trail = stack
        .audit()
        .entries(
            &vigil_shared::domain::TenantId::parse(T).expect("tenant"),
            None,
            None,
        )
        .await
        .expect("trail");
    assert!(trail.iter().any(|e| e.action == "retention.purge"
        && e.target.as_deref() == Some("account/gone")
        && e.outcome
            .contains(record["record_id"].as_str().unwrap_or("?"))));

    // The backstop: "kept"'s rollups and alert state now carry its expiry.
    let kept_expiry = (today() - Duration::days(THREE_YEARS - 1))
        .midnight()
        .assume_utc()
        + Duration::days(THREE_YEARS);
    let stamped: Vec<_> = stack
        .scan("AggregatesTable")
        .await
        .into_iter()
        .filter(|i| s(i, "pk") == Some(&format!("T#{T}#A#kept")))
        .filter(|i| !s(i, "sk").unwrap_or("").starts_with("X#"))
        .collect();
    assert!(!stamped.is_empty());
    for item in &stamped {
        assert_eq!(
            vigil_tests::n(item, "expires_at"),
            Some(kept_expiry.unix_timestamp() as u64),
            "{item:?}"
        );
    }

    // Twice: the second run changes nothing and records nothing.
    let before = snapshot(&stack).await;
    let again = purge(&stack, json!({"tenant": T})).await;
    assert_eq!(again["complete"], true);
    let changed = changes(&before, &snapshot(&stack).await);
    assert!(changed.is_empty(), "a second run changed: {changed:#?}");
    assert_eq!(again["tenants"][0]["records"], json!([]), "{again}");

    // Reopening "kept" takes the expiry off its items again.
    put_account(&stack, &admin, "kept", None).await;
    purge(&stack, json!({"tenant": T})).await;
    for item in stack.scan("AggregatesTable").await {
        if s(&item, "pk") == Some(&format!("T#{T}#A#kept"))
            && !s(&item, "sk").unwrap_or("").starts_with("X#")
        {
            assert_eq!(item.get("expires_at"), None, "{item:?}");
        }
    }
    let entry = stack
        .scan("AggregatesTable")
        .await
        .into_iter()
        .find(|i| s(i, "pk") == Some(&format!("T#{T}#ACCOUNTS")) && s(i, "sk") == Some("A#kept"))
        .expect("kept's entry");
    assert_eq!(entry.get("expiry_key"), None, "out of the expiry index");
    stack.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_purge_resumes_and_deletes_exactly_what_was_due() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    let mut events = Vec::new();
    for account in ["big", "small", "stays"] {
        for j in 0..30 {
            events.push(api_event(
                &format!("{account}-{j}"),
                account,
                &format!("u-{account}-{}", j % 5),
                j + 1,
            ));
        }
    }
    let (status, out) = stack.post_events(T, &json!({"events": events})).await;
    assert_eq!(status, 200, "{out}");
    let long_ago = ended_days_ago(THREE_YEARS + 10);
    put_account(&stack, &admin, "big", Some(&long_ago)).await;
    put_account(&stack, &admin, "small", Some(&long_ago)).await;
    put_account(&stack, &admin, "stays", None).await;
    let due = account_items(&stack, "big").await + account_items(&stack, "small").await;
    let stays_before = account_items(&stack, "stays").await;
    let people_before = subject_ids(&stack).await.len();

    // A fault the retries cannot clear: the run fails, having recorded what it did.
    stack
        .proxy
        .inject_after("BatchWriteItem", 1, Fault::ServerError, Some(50));
    let failed = stack
        .local_api()
        .invoke("PurgeFunction", json!({"tenant": T}))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    stack.proxy.clear_faults();
    let partial = items_naming(&stack, "EventsTable", &account_needles(T, "big")).await
        + items_naming(&stack, "EventsTable", &account_needles(T, "small")).await;
    assert!(
        partial > 0 && partial < 60,
        "part deleted: {partial} events left"
    );

    // Then pages at a time until done: several invocations.
    let mut runs = 0;
    loop {
        runs += 1;
        let report = purge(&stack, json!({"tenant": T, "max_pages": 1})).await;
        if report["complete"] == true {
            break;
        }
        assert!(runs < 50, "never completes");
    }
    assert!(runs > 3, "{runs} invocations");
    for account in ["big", "small"] {
        assert_eq!(account_items(&stack, account).await, 0, "{account}");
    }
    assert_eq!(
        account_items(&stack, "stays").await,
        stays_before,
        "nothing extra deleted"
    );
    // Every person was on one of the two accounts, 5 each: 10 records gone.
    assert_eq!(subject_ids(&stack).await.len(), people_before - 10);
    // The records add up to what was there: nothing counted twice or missed.
    let stored = records(&stack, &admin).await;
    assert_eq!(recorded_account_items(&stored), due, "{stored:?}");
    let subjects: u64 = stored
        .iter()
        .map(|r| item_counts(r).get("SubjectsTable").copied().unwrap_or(0))
        .sum();
    assert_eq!(subjects, 10);
    stack.shutdown().await;
}

#[tokio::test]
async fn events_past_the_tenants_raw_event_retention_go_and_newer_ones_stay() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    // 70 days old and 10 days old; a person seen only in the old ones.
    let events = json!({"events": [
        api_event("old-1", "acme", "only-old", 70 * 24),
        api_event("old-2", "acme", "both", 70 * 24 + 1),
        ticket("old-t", "acme", 70 * 24 + 2),
        api_event("new-1", "acme", "both", 10 * 24),
        ticket("new-t", "acme", 10 * 24 + 1),
    ]});
    let (status, out) = stack.post_events(T, &events).await;
    assert_eq!(status, 200, "{out}");
    let people_before = subject_ids(&stack).await;
    let tenant = vigil_shared::domain::TenantId::parse(T).expect("tenant");
    stack
        .keys()
        .set_raw_event_retention(
            &tenant,
            vigil_shared::domain::RawEventRetention::days(62).expect("62"),
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("lower retention");
    let report = purge(&stack, json!({"tenant": T})).await;
    assert_eq!(report["complete"], true, "{report}");
    let ids: BTreeSet<String> = stack
        .scan("EventsTable")
        .await
        .iter()
        .filter_map(|i| s(i, "sk").map(str::to_owned))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["E#new-1".to_owned(), "E#new-t".to_owned()])
    );
    let copies: Vec<String> = stack
        .scan("AggregatesTable")
        .await
        .iter()
        .filter_map(|i| {
            s(i, "sk")
                .filter(|sk| sk.starts_with("X#"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(copies.len(), 1, "the old ticket's copy went: {copies:?}");
    assert!(copies[0].ends_with("#new-t"));
    assert_eq!(subject_ids(&stack).await.len(), people_before.len() - 1);
    let stored = records(&stack, &admin).await;
    let raw: Vec<_> = stored
        .iter()
        .filter(|r| r["class"] == "raw_events")
        .collect();
    assert_eq!(raw.len(), 1, "{stored:?}");
    assert_eq!(
        item_counts(raw[0]),
        BTreeMap::from([
            ("AggregatesTable".to_owned(), 1),
            ("EventsTable".to_owned(), 3),
            ("SubjectsTable".to_owned(), 1)
        ])
    );
    // The rollups stay: they are kept for the relationship.
    assert!(!stack.rollups("H#").await.is_empty());
    let before = snapshot(&stack).await;
    purge(&stack, json!({"tenant": T})).await;
    let changed = changes(&before, &snapshot(&stack).await);
    assert!(changed.is_empty(), "a second run changed: {changed:#?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_tenant_three_years_past_its_contract_is_purged_entirely_and_no_other() {
    let stack = TestStack::start().await;
    let (leaving, staying) = ("purge-leaving", "purge-staying");
    let mut keys = BTreeMap::new();
    for tenant in [leaving, staying] {
        let admin = stack.issue_key(tenant, &[Scope::Admin]).await;
        let events = json!({"events": [
            api_event("e1", "acme", "someone", 5),
            ticket("t1", "acme", 4),
        ]});
        let (status, out) = stack.post_events(tenant, &events).await;
        assert_eq!(status, 200, "{out}");
        put_account(&stack, &admin, "acme", None).await;
        seed_alert_items(&stack, tenant, "acme").await;
        // An access bundle in the data bucket (every version must go).
        let privacy = stack.issue_key(tenant, &[Scope::Privacy]).await;
        let (status, out) = stack
            .call(
                Method::POST,
                "/v1/privacy/requests",
                Some(&privacy),
                Some(&json!({"type": "access", "subject": "someone"})),
            )
            .await;
        assert_eq!(status, 201, "{out}");
        keys.insert(tenant, admin);
    }
    // An export's files, as the export writes them (two versions of one).
    let s3 = stack.s3().await;
    let bucket = stack.table("DataBucket");
    for tenant in [leaving, staying] {
        for body in ["v1", "v2"] {
            s3.put_object()
                .bucket(&bucket)
                .key(format!("exports/{tenant}/2026-10/manifest.json"))
                .body(body.as_bytes().to_vec().into())
                .send()
                .await
                .expect("put");
        }
    }
    let tenant = vigil_shared::domain::TenantId::parse(leaving).expect("tenant");
    let now = OffsetDateTime::now_utc();
    // Reopened before the purge: nothing happens.
    let last = today() - Duration::days(THREE_YEARS + 2);
    stack
        .keys()
        .set_contract_end(&tenant, Some(last), now)
        .await
        .expect("end");
    stack
        .keys()
        .set_contract_end(&tenant, None, now)
        .await
        .expect("reopen");
    let before = item_keys(&stack).await;
    purge(&stack, json!({})).await;
    let lost: Vec<_> = before
        .difference(&item_keys(&stack).await)
        .cloned()
        .collect();
    assert!(lost.is_empty(), "lost {lost:?}");

    stack
        .keys()
        .set_contract_end(&tenant, Some(last), now)
        .await
        .expect("end");
    let listed = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let leaving_versions = listed
        .versions()
        .iter()
        .filter(|v| v.key().is_some_and(|k| k.contains(leaving)))
        .count() as u64;
    assert!(leaving_versions >= 3, "two dataset versions and a bundle");
    let staying_before: BTreeMap<_, _> = snapshot(&stack)
        .await
        .into_iter()
        .map(|(t, items)| (t, items.into_iter().filter(|i| i.contains(staying)).count()))
        .collect();
    let report = purge(&stack, json!({})).await;
    assert_eq!(report["complete"], true, "{report}");
    // Nothing of the leaving tenant in any table but its destruction records.
    for table in TABLES {
        let left: Vec<_> = stack
            .scan(table)
            .await
            .into_iter()
            .filter(|i| s(i, "pk").is_some_and(|pk| pk.starts_with(&format!("T#{leaving}"))))
            .filter(|i| s(i, "pk") != Some(&format!("T#{leaving}#RETENTION")))
            .collect();
        assert!(left.is_empty(), "{table}: {left:?}");
    }
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys_left: Vec<&str> = versions
        .versions()
        .iter()
        .filter_map(|v| v.key())
        .chain(versions.delete_markers().iter().filter_map(|m| m.key()))
        .collect();
    assert!(
        keys_left.iter().all(|k| !k.contains(leaving)),
        "{keys_left:?}"
    );
    assert!(
        keys_left.iter().any(|k| k.contains(staying)),
        "the other tenant keeps its objects"
    );
    let staying_after: BTreeMap<_, _> = snapshot(&stack)
        .await
        .into_iter()
        .map(|(t, items)| (t, items.into_iter().filter(|i| i.contains(staying)).count()))
        .collect();
    // The staying tenant only gains its own purge's nothing: unchanged.
    assert_eq!(staying_after, staying_before);
    // The record survives its tenant (read straight: no key is left to call the API).
    let records = stack
        .audit()
        .destruction_records(&tenant, None, 100, OffsetDateTime::now_utc())
        .await
        .expect("records");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["class"], "tenant");
    assert!(item_counts(&records[0])["EventsTable"] == 2);
    assert_eq!(records[0]["counts"]["versions"], leaving_versions);
    stack.shutdown().await;
}

#[tokio::test]
async fn datasets_and_bundles_go_by_age_with_every_version() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    let s3 = stack.s3().await;
    let bucket = stack.table("DataBucket");
    for (key, body) in [
        (format!("exports/{T}/2026-10/manifest.json"), "v1"),
        (format!("exports/{T}/2026-10/manifest.json"), "v2"),
        (format!("privacy/{T}/r1/bundle.json"), "b"),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("put");
    }
    let count = |prefix: String| {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        async move {
            let out = s3
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list");
            out.versions().len() + out.delete_markers().len()
        }
    };
    let now = OffsetDateTime::now_utc();
    // 6 days on: nothing is old enough.
    purge(
        &stack,
        json!({"tenant": T, "now": rfc3339(now + Duration::days(6))}),
    )
    .await;
    assert_eq!(count(format!("exports/{T}/")).await, 2);
    assert_eq!(count(format!("privacy/{T}/")).await, 1);
    // 8 days on: the bundle (7 days) goes, the dataset (395 days) stays.
    purge(
        &stack,
        json!({"tenant": T, "now": rfc3339(now + Duration::days(8))}),
    )
    .await;
    assert_eq!(count(format!("privacy/{T}/")).await, 0);
    assert_eq!(count(format!("exports/{T}/")).await, 2);
    // 396 days on: both versions of the dataset go; first, S3 refuses every
    // DeleteObjects: the run fails, nothing is deleted or recorded, the next run does it.
    let later = json!({"tenant": T, "now": rfc3339(now + Duration::days(396))});
    stack.proxy.inject("s3:POST", Fault::ServerError, Some(50));
    let failed = stack
        .local_api()
        .invoke("PurgeFunction", later.clone())
        .await;
    assert!(failed.is_err(), "{failed:?}");
    stack.proxy.clear_faults();
    assert_eq!(count(format!("exports/{T}/")).await, 2);
    purge(&stack, later).await;
    assert_eq!(count(format!("exports/{T}/")).await, 0);
    let stored = records(&stack, &admin).await;
    let classes: Vec<(&str, u64)> = stored
        .iter()
        .filter(|r| r["class"] != "raw_events")
        .map(|r| {
            (
                r["class"].as_str().unwrap_or(""),
                r["counts"]["versions"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(classes, [("privacy_bundles", 1), ("export_datasets", 2)]);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_operator_sees_what_is_due_in_the_next_30_days() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    let (status, out) = stack
        .post_events(
            T,
            &json!({"events": [api_event("e", "soon", "u", 1), api_event("f", "later", "u", 1)]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    // "soon" expires in 10 days, "later" in 40.
    put_account(
        &stack,
        &admin,
        "soon",
        Some(&ended_days_ago(THREE_YEARS - 10)),
    )
    .await;
    put_account(
        &stack,
        &admin,
        "later",
        Some(&ended_days_ago(THREE_YEARS - 40)),
    )
    .await;
    // A daily run stamps both (they are not due), and the listing still finds them.
    purge(&stack, json!({"tenant": T})).await;
    let tables = vigil_ops::connect(&stack.config).await.expect("tables");
    let mut out = Vec::new();
    vigil_ops::run(
        vigil_ops::Command::Retention {
            action: vigil_ops::RetentionAction::Due {
                tenant: Some(T.into()),
                days: 30,
            },
        },
        &tables,
        &mut out,
    )
    .await
    .expect("due");
    let due: Value = serde_json::from_slice(&out).expect("json");
    let accounts: Vec<&str> = due
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["account"].as_str())
        .collect();
    assert_eq!(accounts, ["soon"], "{due}");
    let soon = (today() - Duration::days(THREE_YEARS - 10))
        .midnight()
        .assume_utc()
        + Duration::days(THREE_YEARS);
    assert_eq!(due[0]["expires_at"], rfc3339(soon));
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let stack = TestStack::start().await;
    for (input, field) in [
        (json!({"dryrun": true}), "input"),
        (json!({"dry_run": "yes"}), "input"),
        (json!({"now": "yesterday"}), "now"),
        (json!({"tenant": "no#tenant"}), "tenant"),
        (json!({"max_pages": 0}), "max_pages"),
    ] {
        let error = stack
            .local_api()
            .invoke("PurgeFunction", input.clone())
            .await
            .expect_err("refused");
        assert!(
            error.to_string().starts_with(&format!("{field}:")),
            "{input}: {error}"
        );
    }
    // A scheduled event stands for `{}`.
    let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let report = purge(&stack, scheduled).await;
    assert_eq!(report["dry_run"], false);

    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    let read = stack.issue_key(T, &[Scope::Read]).await;
    let other = stack.issue_key("purge-other", &[Scope::Admin]).await;
    for (path, key, status, field) in [
        ("/v1/retention/records?limit=0", &admin, 400, Some("limit")),
        ("/v1/retention/records?limit=x", &admin, 400, Some("limit")),
        (
            "/v1/retention/records?after=%00",
            &admin,
            400,
            Some("after"),
        ),
        (
            "/v1/retention/records?colour=red",
            &admin,
            400,
            Some("colour"),
        ),
        ("/v1/retention/records", &read, 403, None),
        ("/v1/retention/records", &other, 200, None),
    ] {
        let (got, out) = stack.call(Method::GET, path, Some(key), None).await;
        assert_eq!(got, status, "{path}: {out}");
        if let Some(field) = field {
            assert!(out.to_string().contains(field), "{path}: {out}");
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn two_runs_at_once_delete_and_record_everything_once() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key(T, &[Scope::Admin]).await;
    let events: Vec<Value> = (0..40)
        .map(|j| {
            api_event(
                &format!("c-{j}"),
                &format!("acct-{}", j % 4),
                "someone",
                j + 1,
            )
        })
        .collect();
    let (status, out) = stack.post_events(T, &json!({"events": events})).await;
    assert_eq!(status, 200, "{out}");
    let mut due = 0;
    for a in 0..4 {
        let account = format!("acct-{a}");
        put_account(
            &stack,
            &admin,
            &account,
            Some(&ended_days_ago(THREE_YEARS + 5)),
        )
        .await;
        due += account_items(&stack, &account).await;
    }
    let api = stack.local_api();
    let (first, second) = tokio::join!(
        api.invoke("PurgeFunction", json!({"tenant": T})),
        api.invoke("PurgeFunction", json!({"tenant": T})),
    );
    let (first, second) = (first.expect("first"), second.expect("second"));
    let busy = [&first, &second]
        .iter()
        .filter(|r| r["tenants"][0]["busy"] == true)
        .count();
    // Both may finish one after the other; never both at once on the tenant.
    assert!(busy <= 1, "{first} {second}");
    // Whatever the interleaving, a later run finds nothing left.
    let last = purge(&stack, json!({"tenant": T})).await;
    assert_eq!(last["tenants"][0]["records"], json!([]), "{last}");
    for a in 0..4 {
        assert_eq!(account_items(&stack, &format!("acct-{a}")).await, 0);
    }
    let stored = records(&stack, &admin).await;
    assert_eq!(
        recorded_account_items(&stored),
        due,
        "every item counted once"
    );
    // No lease is left behind.
    let leases = stack
        .scan("TenantsTable")
        .await
        .into_iter()
        .filter(|i| s(i, "sk") == Some("PURGE"))
        .count();
    assert_eq!(leases, 0);
    stack.shutdown().await;
}
