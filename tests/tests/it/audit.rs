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
    let (pk, sk) = entry_key("deleted", 4);
    stack
        .dynamodb
        .delete_item()
        .table_name(stack.table("AuditTable"))
        .key("pk", pk)
        .key("sk", sk)
        .send()
        .await
        .expect("delete");
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
        &TenantId::parse("swapped").expect("tenant"),
        "operator",
        "test",
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
