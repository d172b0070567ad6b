//! The audit trail's hash chain: untouched it verifies; an entry changed, deleted
//! or swapped directly in the emulator is reported at its position.

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::Method;
use serde_json::{json, Value};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::TenantId;
use vigil_shared::keys;
use vigil_shared::ports::AccessStore;
use vigil_tests::{Item, TestStack};

/// Issues `n` keys through the API (one `key.issue` entry each) and returns the admin key.
async fn trail(stack: &TestStack, tenant: &str, n: usize) -> String {
    let admin = stack.issue_key(tenant, &[Scope::Admin]).await;
    for i in 0..n {
        let body = json!({"name": format!("k{i}"), "scopes": ["read"]});
        let (status, _) = stack
            .call(Method::POST, "/v1/keys", Some(&admin), Some(&body))
            .await;
        assert_eq!(status, 201);
    }
    admin
}

async fn verify(stack: &TestStack, admin: &str) -> Value {
    let (status, report) = stack
        .call(Method::GET, "/v1/audit/verify", Some(admin), None)
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

fn findings(report: &Value) -> Vec<(u64, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["seq"].as_u64().unwrap_or(0),
                f["problem"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn entry_key(tenant: &str, seq: u64) -> (AttributeValue, AttributeValue) {
    let tenant = TenantId::parse(tenant).expect("tenant");
    (
        AttributeValue::S(keys::audit_pk(&tenant)),
        AttributeValue::S(keys::audit_sk(seq)),
    )
}

async fn get_entry(stack: &TestStack, tenant: &str, seq: u64) -> Item {
    let (pk, sk) = entry_key(tenant, seq);
    stack
        .dynamodb
        .get_item()
        .table_name(stack.table("AuditTable"))
        .key("pk", pk)
        .key("sk", sk)
        .send()
        .await
        .expect("get")
        .item
        .expect("entry exists")
}

async fn put_entry(stack: &TestStack, mut item: Item, tenant: &str, seq: u64) {
    let (pk, sk) = entry_key(tenant, seq);
    item.insert("pk".into(), pk);
    item.insert("sk".into(), sk);
    stack
        .dynamodb
        .put_item()
        .table_name(stack.table("AuditTable"))
        .set_item(Some(item))
        .send()
        .await
        .expect("put");
}

async fn delete_entry(stack: &TestStack, tenant: &str, seq: u64) {
    let (pk, sk) = entry_key(tenant, seq);
    stack
        .dynamodb
        .delete_item()
        .table_name(stack.table("AuditTable"))
        .key("pk", pk)
        .key("sk", sk)
        .send()
        .await
        .expect("delete");
}

#[tokio::test]
async fn an_untouched_chain_verifies() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "intact", 5).await;
    let report = verify(&stack, &admin).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(
        (report["first_seq"].as_u64(), report["last_seq"].as_u64()),
        (Some(1), Some(6))
    );
    // The verification itself is audited, and the chain still holds.
    let again = verify(&stack, &admin).await;
    assert_eq!(
        (again["intact"].as_bool(), again["last_seq"].as_u64()),
        (Some(true), Some(7))
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_changed_entry_is_reported_at_its_position() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "changed", 5).await;
    let (pk, sk) = entry_key("changed", 3);
    stack
        .dynamodb
        .update_item()
        .table_name(stack.table("AuditTable"))
        .key("pk", pk)
        .key("sk", sk)
        .update_expression("SET outcome = :o")
        .expression_attribute_values(":o", AttributeValue::S("denied".into()))
        .send()
        .await
        .expect("tamper");
    let report = verify(&stack, &admin).await;
    assert_eq!(report["intact"], false);
    assert_eq!(findings(&report), [(3, "changed".to_owned())]);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_deleted_entry_is_reported_where_the_gap_is() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "deleted", 5).await;
    delete_entry(&stack, "deleted", 4).await;
    let report = verify(&stack, &admin).await;
    assert_eq!(
        findings(&report),
        [(5, "missing".to_owned()), (5, "broken_link".to_owned())]
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn swapped_entries_are_reported_at_both_positions() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "swapped", 5).await;
    let (third, fourth) = (
        get_entry(&stack, "swapped", 3).await,
        get_entry(&stack, "swapped", 4).await,
    );
    put_entry(&stack, fourth, "swapped", 3).await;
    put_entry(&stack, third, "swapped", 4).await;
    let report = verify(&stack, &admin).await;
    let found = findings(&report);
    assert!(found.contains(&(3, "changed".to_owned())), "{found:?}");
    assert!(found.contains(&(4, "changed".to_owned())), "{found:?}");
    assert!(
        found.iter().all(|(seq, _)| (3..=5).contains(seq)),
        "{found:?}"
    );
    // The operator CLI's verification agrees.
    let cli = vigil_shared::app::audit::verify_trail(
        stack.audit(),
        &stack.anchors().await,
        &TenantId::parse("swapped").expect("tenant"),
        "operator",
        "test",
        vigil_shared::domain::audit::VerifyMode::Full,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("verify");
    assert!(!cli.intact);
    stack.shutdown().await;
}

#[tokio::test]
async fn audit_entries_hold_no_secret_or_key_hash() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "quiet", 0).await;
    let mut secrets = vec![admin.clone()];
    for i in 0..3 {
        let body = json!({"name": format!("k{i}"), "scopes": ["ingest"]});
        let (_, issued) = stack
            .call(Method::POST, "/v1/keys", Some(&admin), Some(&body))
            .await;
        secrets.push(issued["key"].as_str().expect("secret").to_owned());
    }
    let (status, _) = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let hashes: Vec<String> = stack
        .keys()
        .list_keys(&TenantId::parse("quiet").expect("tenant"))
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.secret_hash)
        .collect();
    assert_eq!(hashes.len(), 4);
    let trail = format!("{:?}", stack.scan("AuditTable").await);
    let listed = stack
        .call(Method::GET, "/v1/audit", Some(&admin), None)
        .await
        .1
        .to_string();
    let keys_listed = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await
        .1
        .to_string();
    for secret in secrets
        .iter()
        .map(|s| &s[s.len() - 64..])
        .chain(hashes.iter().map(String::as_str))
    {
        assert!(
            !trail.contains(secret),
            "a secret or hash is in the audit table"
        );
        assert!(
            !listed.contains(secret),
            "a secret or hash is in the audit listing"
        );
        assert!(
            !keys_listed.contains(secret),
            "a secret or hash is in the key listing"
        );
    }
    stack.shutdown().await;
}

/// Runs the anchor job of the stack, as its schedule would.
async fn anchor(stack: &TestStack) -> Value {
    let invocation =
        vigil_shared::stack_state::invoke(&stack.api, "AuditAnchorFunction", &json!({}))
            .await
            .expect("invoke");
    assert!(invocation.succeeded(), "{invocation:?}");
    serde_json::from_str(&invocation.output).expect("json")
}

async fn anchors(stack: &TestStack, tenant: &str) -> Vec<vigil_shared::domain::audit::Anchor> {
    use vigil_shared::ports::AnchorStore;
    stack
        .anchors()
        .await
        .anchors_from(&TenantId::parse(tenant).expect("tenant"), 0)
        .await
        .expect("anchors")
}

async fn stored_entries(
    stack: &TestStack,
    tenant: &str,
) -> Vec<vigil_shared::domain::audit::AuditEntry> {
    use vigil_shared::ports::AuditLog;
    stack
        .audit()
        .entries(&TenantId::parse(tenant).expect("tenant"), None, None)
        .await
        .expect("entries")
}

#[tokio::test]
async fn anchoring_is_idempotent_and_an_anchor_cannot_be_deleted() {
    let stack = TestStack::start().await;
    trail(&stack, "anchored", 2).await;
    let head = stored_entries(&stack, "anchored")
        .await
        .last()
        .cloned()
        .expect("head");
    let first = anchor(&stack).await;
    assert_eq!(
        (first["anchored"].as_u64(), first["failed"].as_u64()),
        (Some(1), Some(0))
    );
    let again = anchor(&stack).await;
    assert_eq!(
        (again["anchored"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(1))
    );
    let listed = anchors(&stack, "anchored").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].seq, listed[0].hash.as_str()),
        (head.seq, head.hash.as_str())
    );

    // Object Lock (compliance mode): the anchored version cannot be deleted.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .endpoint_url(vigil_tests::emulator_url())
            .region(aws_sdk_s3::config::Region::new("eu-west-3"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "x", "x", None, None, "t",
            ))
            .force_path_style(true)
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build(),
    );
    let bucket = stack
        .stack
        .reference("AuditAnchorBucket")
        .expect("bucket")
        .to_owned();
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("versions");
    let version = &versions.versions()[0];
    let deleted = s3
        .delete_object()
        .bucket(&bucket)
        .key(version.key().unwrap_or_default())
        .version_id(version.version_id().unwrap_or_default())
        .send()
        .await;
    assert!(deleted.is_err(), "a locked anchor was deleted");
    assert_eq!(anchors(&stack, "anchored").await.len(), 1);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_rewritten_chain_with_recomputed_hashes_is_caught_by_its_anchor() {
    let stack = TestStack::start().await;
    let tenant = TenantId::parse("rewritten").expect("tenant");
    let admin = trail(&stack, "rewritten", 5).await;
    anchor(&stack).await;
    let anchored = anchors(&stack, "rewritten").await[0].clone();

    // Someone holding a function's role (PutItem on the audit table) changes
    // entry 3's outcome and recomputes every hash after it, as the code would.
    let mut entries = stored_entries(&stack, "rewritten").await;
    entries[2].outcome = "denied".into();
    for i in 2..entries.len() {
        if i > 2 {
            entries[i].prev_hash = entries[i - 1].hash.clone();
        }
        entries[i].hash = entries[i].compute_hash(&tenant);
        let mut item = get_entry(&stack, "rewritten", entries[i].seq).await;
        item.insert(
            "outcome".into(),
            AttributeValue::S(entries[i].outcome.clone()),
        );
        item.insert(
            "prev_hash".into(),
            AttributeValue::S(entries[i].prev_hash.clone()),
        );
        item.insert("hash".into(), AttributeValue::S(entries[i].hash.clone()));
        put_entry(&stack, item, "rewritten", entries[i].seq).await;
    }
    // The chain alone is consistent again: only the anchor can tell.
    let rewritten = stored_entries(&stack, "rewritten").await;
    let alone = vigil_shared::domain::audit::verify_chain(
        &tenant,
        &rewritten,
        time::OffsetDateTime::now_utc(),
    );
    assert!(alone.intact, "{alone:?}");

    let report = verify(&stack, &admin).await;
    assert_eq!(report["intact"], false);
    assert_eq!(
        findings(&report),
        [(anchored.seq, "anchor_mismatch".to_owned())]
    );
    assert_eq!(report["anchor"]["seq"].as_u64(), Some(anchored.seq));
    stack.shutdown().await;
}

#[tokio::test]
async fn deleting_the_newest_entries_is_caught_by_the_anchor() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "truncated", 4).await;
    anchor(&stack).await;
    let head = anchors(&stack, "truncated").await[0].seq;
    for seq in [head - 1, head] {
        delete_entry(&stack, "truncated", seq).await;
    }
    let report = verify(&stack, &admin).await;
    assert_eq!(report["intact"], false);
    assert_eq!(findings(&report), [(head, "truncated".to_owned())]);
    assert_eq!(report["last_seq"].as_u64(), Some(head - 2));
    stack.shutdown().await;
}

#[tokio::test]
async fn verification_continues_from_the_last_verified_anchor() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "incremental", 3).await;
    anchor(&stack).await;
    let first = verify(&stack, &admin).await;
    assert_eq!(
        (first["intact"].as_bool(), first["verified_from"].as_u64()),
        (Some(true), None)
    );
    let checkpoint = first["anchor"]["seq"].as_u64().expect("anchored");

    trail_more(&stack, &admin, 3).await;
    anchor(&stack).await;
    let second = verify(&stack, &admin).await;
    assert_eq!(second["intact"], true, "{second}");
    assert_eq!(second["mode"], "incremental");
    assert_eq!(second["verified_from"].as_u64(), Some(checkpoint));
    // It read from the checkpoint on, not the whole trail.
    let total = stored_entries(&stack, "incremental").await.len() as u64;
    let read = second["entries"].as_u64().expect("entries");
    assert_eq!(second["first_seq"].as_u64(), Some(checkpoint));
    assert!(read < total - 1, "read {read} of {total}");

    // A change before the checkpoint is found by a full verification.
    let mut early = get_entry(&stack, "incremental", 2).await;
    early.insert("outcome".into(), AttributeValue::S("denied".into()));
    put_entry(&stack, early, "incremental", 2).await;
    let (status, full) = stack
        .call(
            Method::GET,
            "/v1/audit/verify?full=true",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(full["mode"], "full");
    assert!(
        findings(&full).contains(&(2, "changed".to_owned())),
        "{full}"
    );
    stack.shutdown().await;
}

async fn trail_more(stack: &TestStack, admin: &str, n: usize) {
    for i in 0..n {
        let body = json!({"name": format!("more{i}"), "scopes": ["read"]});
        let (status, _) = stack
            .call(Method::POST, "/v1/keys", Some(admin), Some(&body))
            .await;
        assert_eq!(status, 201);
    }
}

#[tokio::test]
async fn an_attribute_added_to_an_entry_is_a_change() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "extended", 2).await;
    let mut item = get_entry(&stack, "extended", 2).await;
    item.insert("note".into(), AttributeValue::S("added later".into()));
    put_entry(&stack, item, "extended", 2).await;
    let mut expiry = get_entry(&stack, "extended", 1).await;
    expiry.insert("expires_at".into(), AttributeValue::N("4102444800".into()));
    put_entry(&stack, expiry, "extended", 1).await;
    let report = verify(&stack, &admin).await;
    assert_eq!(
        findings(&report),
        [(1, "changed".to_owned()), (2, "changed".to_owned())]
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_anchoring_run_is_completed_by_the_next_and_concurrent_runs_agree() {
    let stack = TestStack::start().await;
    for tenant in ["first", "second", "third"] {
        trail(&stack, tenant, 1).await;
    }
    // The first tenant's head cannot be read: the run anchors the others and fails.
    stack.proxy.inject_on(
        "Query",
        &stack.table("AuditTable"),
        vigil_tests::Fault::AccessDenied,
        Some(1),
    );
    let invocation =
        vigil_shared::stack_state::invoke(&stack.api, "AuditAnchorFunction", &json!({}))
            .await
            .expect("invoke");
    assert!(
        !invocation.succeeded(),
        "a failed tenant fails the run: {invocation:?}"
    );
    assert!(
        invocation.output.contains("1 of 3 tenants"),
        "{}",
        invocation.output
    );
    let anchored: usize = [
        anchors(&stack, "first").await.len(),
        anchors(&stack, "second").await.len(),
        anchors(&stack, "third").await.len(),
    ]
    .iter()
    .sum();
    assert_eq!(anchored, 2);

    // Two runs at once: together they anchor the missing head, once.
    let (a, b) = tokio::join!(anchor(&stack), anchor(&stack));
    assert_eq!(
        a["anchored"].as_u64().unwrap_or(0) + b["anchored"].as_u64().unwrap_or(0),
        1,
        "{a} {b}"
    );
    for tenant in ["first", "second", "third"] {
        assert_eq!(anchors(&stack, tenant).await.len(), 1, "{tenant}");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn anchor_storage_faults_fail_loudly_and_lose_nothing() {
    let stack = TestStack::start().await;
    let admin = trail(&stack, "s3faults", 2).await;

    // The anchor bucket refuses the write: the run fails, nothing is anchored.
    stack
        .proxy
        .inject("s3:PUT", vigil_tests::Fault::AccessDenied, Some(1));
    let failed = vigil_shared::stack_state::invoke(&stack.api, "AuditAnchorFunction", &json!({}))
        .await
        .expect("invoke");
    assert!(!failed.succeeded(), "{failed:?}");
    assert!(anchors(&stack, "s3faults").await.is_empty());
    // The next run anchors the head.
    assert_eq!(anchor(&stack).await["anchored"], 1);

    // Listing the anchors keeps failing (the SDK's retries included): verify
    // answers 503 with Retry-After, reports nothing, moves no checkpoint.
    stack
        .proxy
        .inject("s3:GET", vigil_tests::Fault::ServerError, None);
    let response = stack
        .http
        .get(format!("{}/v1/audit/verify", stack.api))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("verify");
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    stack.proxy.clear_faults();
    let report = verify(&stack, &admin).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(
        report["verified_from"],
        Value::Null,
        "no earlier verification counted"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_run_out_of_time_defers_tenants_to_the_next_run() {
    let stack = TestStack::start().await;
    for tenant in ["late-a", "late-b", "late-c"] {
        trail(&stack, tenant, 1).await;
    }
    let mut deps = vigil_audit_anchor::Deps::connect(&stack.config)
        .await
        .expect("deps");
    deps.budget = std::time::Duration::ZERO;
    let spent = vigil_audit_anchor::run_job(&deps, Default::default())
        .await
        .expect("a deferral is not a failure");
    assert_eq!((spent.tenants, spent.deferred, spent.anchored), (3, 3, 0));
    deps.budget = vigil_audit_anchor::BUDGET;
    let next = vigil_audit_anchor::run_job(&deps, Default::default())
        .await
        .expect("run");
    assert_eq!((next.anchored, next.deferred), (3, 0));
    stack.shutdown().await;
}
