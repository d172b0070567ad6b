//! The register of processing activities (docs/register-of-processing.json)
//! cannot drift from the code: a scenario that exercises every feature leaves
//! items in every table, and each attribute they hold must be in the register;
//! each attribute the register lists must be written somewhere in the code;
//! each kind of stored item and its retention in `retention.rs` must be in the
//! register with the same period, and the register lists no other; every
//! table and bucket of template.yaml is in the register and nothing else is.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::retention::{self, Rule, StoredItem};
use vigil_shared::domain::{RawEventRetention, TenantId};
use vigil_tests::{hours_ago, TestStack};

const TENANT: &str = "tenant-r";

fn register() -> Value {
    serde_json::from_str(vigil_privacy::REGISTER).expect("the register is JSON")
}

/// Every feature once: events of every source, an account contract, keys used
/// and revoked, the tenant's settings, a verified audit trail, subjects with
/// contact fields, every kind of request.
async fn scenario(stack: &TestStack) {
    let t = hours_ago(1, 5);
    let mut events = Vec::new();
    for (i, user) in ["reg-user-1", "reg-user-2"].iter().enumerate() {
        events.extend([
            json!({"id": format!("c{i}"), "time": t, "source": "api_call", "account": "acme", "user": user,
                   "data": {"endpoint": "/v1/pay", "method": "POST", "status": 500, "latency_ms": 3000, "units": 1}}),
            json!({"id": format!("p{i}"), "time": t, "source": "product", "account": "acme", "user": user,
                   "data": {"feature": "exports", "action": "run"}}),
            json!({"id": format!("m{i}"), "time": t, "source": "marketing", "account": "acme", "user": user,
                   "data": {"campaign": "spring", "channel": "email"}}),
            json!({"id": format!("s{i}"), "time": t, "source": "support_ticket", "account": "acme", "user": user,
                   "data": {"ticket_id": "T-1", "priority": "high", "status": "open"}}),
            json!({"id": format!("b{i}"), "time": t, "source": "billing", "account": "acme", "user": user,
                   "data": {"invoice_id": "I-1", "amount": 10, "currency": "EUR", "status": "failed"}}),
        ]);
    }
    let (status, out) = stack.post_events(TENANT, &json!({"events": events})).await;
    assert_eq!((status, &out["accepted"]), (200, &json!(10)), "{out}");
    let admin = stack.issue_key(TENANT, &[Scope::Admin]).await;
    let contract = json!({"name": "Acme", "plan": "growth", "monthly_quota": 100,
        "relationship_start": "2024-01-01", "relationship_end": "2030-01-01", "tags": ["eu"]});
    let (status, out) = stack
        .call(
            Method::PUT,
            "/v1/accounts/acme",
            Some(&admin),
            Some(&contract),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    let (status, issued) = stack
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "temp", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let id = issued["key_id"].as_str().expect("key id");
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Alerts: rules with labels, a silence, a webhook nobody answers (the
    // notification stays in the outbox), one evaluation that fires.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    let alert_calls = [
        (Method::PUT, "/v1/alerts/webhook", json!({"url": dead})),
        (
            Method::PUT,
            "/v1/alerts/rules",
            json!({"rules": [
            {"id": "payment", "kind": "payment_failed", "labels": {"team": "billing"}},
            {"id": "errors", "kind": "error_rate", "threshold": 0.1, "window": "24h", "min_calls": 1}]}),
        ),
        (
            Method::POST,
            "/v1/alerts/silences",
            json!({"rule": "errors", "labels": {"team": "billing"},
            "ends_at": (time::OffsetDateTime::now_utc() + time::Duration::days(1))
                .format(&time::format_description::well_known::Rfc3339).expect("time")}),
        ),
    ];
    for (method, path, body) in alert_calls {
        let (status, out) = stack.call(method, path, Some(&admin), Some(&body)).await;
        assert!(status == 200 || status == 201, "{path}: {out}");
    }
    let report = stack
        .local_api()
        .invoke("AlertsFunction", json!({"tenant": TENANT}))
        .await
        .expect("evaluate");
    assert_eq!(report["committed"], 1, "{report}");
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let now = time::OffsetDateTime::now_utc();
    let keys = stack.keys();
    keys.set_raw_event_retention(&tenant, RawEventRetention::days(90).expect("90"), now)
        .await
        .expect("retention");
    keys.set_suspended(&tenant, true, now)
        .await
        .expect("suspend");
    keys.set_suspended(&tenant, false, now)
        .await
        .expect("resume");
    stack
        .local_api()
        .invoke("AuditAnchorFunction", json!({}))
        .await
        .expect("anchor");
    let (status, out) = stack
        .call(Method::GET, "/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{out}");

    let privacy = stack.issue_key(TENANT, &[Scope::Privacy]).await;
    for user in ["reg-user-1", "reg-user-2"] {
        let (status, out) = stack
            .call(
                Method::PUT,
                &format!("/v1/subjects/{user}"),
                Some(&privacy),
                Some(&json!({"email": "someone@example.com", "name": "Some One"})),
            )
            .await;
        assert_eq!(status, 200, "{out}");
    }
    for body in [
        json!({"type": "post_mortem_directive", "subject": "reg-user-1", "directive": "hand_over",
               "recipient": {"email": "heir@example.com"}}),
        json!({"type": "objection", "subject": "reg-user-1", "purpose": "model_training"}),
        json!({"type": "restriction", "subject": "reg-user-1"}),
        json!({"type": "death_notice", "subject": "reg-user-1"}),
        json!({"type": "rectification", "subject": "reg-user-1", "fields": {"name": "Some Body"}}),
        json!({"type": "erasure", "subject": "reg-user-2"}),
    ] {
        let (status, out) = stack
            .call(
                Method::POST,
                "/v1/privacy/requests",
                Some(&privacy),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{body}: {out}");
    }
    // Last month's re-training export (its run record, files and manifest),
    // then the tenant opts out of it and back in.
    let report = stack
        .local_api()
        .invoke("ExportFunction", json!({"tenant": TENANT}))
        .await
        .expect("export");
    assert_eq!(report["tenants"][0]["status"], "complete", "{report}");
    let keys = stack.keys();
    for opted_out in [true, false] {
        keys.set_model_training_opt_out(&tenant, opted_out, now)
            .await
            .expect("opt-out");
    }
    // The retention purge: an account whose relationship ended long ago goes
    // (its destruction record stays), the others' rollups get their expiry,
    // the tenant's own contract has an end date.
    let old = json!({"events": [{"id": "gone-1", "time": t, "source": "api_call", "account": "gone",
        "user": "reg-user-3", "data": {"endpoint": "/v1/pay", "method": "GET", "status": 200,
        "latency_ms": 5, "units": 1}}]});
    let (status, out) = stack.post_events(TENANT, &old).await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = stack
        .call(
            Method::PUT,
            "/v1/accounts/gone",
            Some(&admin),
            Some(&json!({"name": "Gone", "relationship_end": "2020-01-01"})),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    let end = time::macros::date!(2031 - 12 - 31);
    keys.set_contract_end(&tenant, Some(end), now)
        .await
        .expect("contract end");
    let report = stack
        .local_api()
        .invoke("PurgeFunction", json!({"tenant": TENANT}))
        .await
        .expect("purge");
    assert_eq!(
        report["tenants"][0]["records"][0]["account"], "gone",
        "{report}"
    );
}

/// `name` matches a register entry: equal, or the entry's `<...>` part stands for any text.
fn listed(entries: &BTreeSet<String>, name: &str) -> bool {
    entries.iter().any(|entry| match entry.split_once('<') {
        Some((prefix, rest)) => {
            let suffix = rest.split_once('>').map_or("", |(_, s)| s);
            name.starts_with(prefix) && name.ends_with(suffix) && name.len() > prefix.len()
        }
        None => entry == name,
    })
}

fn register_attributes(register: &Value, table: &str) -> BTreeSet<String> {
    let items = register["stored_data"][table]["items"]
        .as_object()
        .unwrap_or_else(|| panic!("the register lists no items for {table}"));
    items
        .values()
        .flat_map(|item| item["attributes"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn every_stored_attribute_is_in_the_register_and_nothing_else_is() {
    let stack = TestStack::start().await;
    scenario(&stack).await;
    let register = register();
    let tables = [
        "EventsTable",
        "AggregatesTable",
        "SubjectsTable",
        "TenantsTable",
        "AuditTable",
        "PrivacyTable",
        "AlertsTable",
    ];
    let mut unlisted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for table in tables {
        let listed_here = register_attributes(&register, table);
        let mut seen = BTreeSet::new();
        for item in stack.scan(table).await {
            for (name, value) in &item {
                seen.insert(name.clone());
                // Nested maps (an event's data) list their fields as `data.<field>`.
                if let Ok(map) = value.as_m() {
                    seen.extend(map.keys().map(|k| format!("{name}.{k}")));
                }
            }
        }
        assert!(!seen.is_empty(), "the scenario wrote nothing to {table}");
        for name in seen {
            if !listed(&listed_here, &name) {
                unlisted.entry(table).or_default().insert(name);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "stored but not in the register: {unlisted:?}"
    );
    // Objects: every bundle file is a listed object of the data bucket.
    let objects: BTreeSet<String> = register["stored_data"]["DataBucket"]["objects"]
        .as_array()
        .expect("data bucket objects")
        .iter()
        .filter_map(|o| o["key"].as_str().map(str::to_owned))
        .collect();
    let contents = stack.bucket_contents("DataBucket").await;
    assert!(!contents.is_empty(), "the scenario wrote a bundle");
    for (key, _) in contents {
        // `<...>` stands for one path segment.
        let matches = |pattern: &String| {
            let (want, got): (Vec<&str>, Vec<&str>) =
                (pattern.split('/').collect(), key.split('/').collect());
            want.len() == got.len()
                && want
                    .iter()
                    .zip(&got)
                    .all(|(w, g)| listed(&BTreeSet::from([w.to_string()]), g) || w == g)
        };
        assert!(
            objects.iter().any(matches),
            "object {key} not in the register"
        );
    }
    stack.shutdown().await;
}

/// Every Rust source file of the workspace's code, as one text.
fn code() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut text = String::new();
    let mut stack = vec![root.join("shared/src"), root.join("functions")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).expect("source"));
            }
        }
    }
    text
}

/// Whether `word` occurs in `code` as a whole name (a string literal, a key, or
/// a name inside an update expression), not as part of a longer one.
fn mentions(code: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        before.is_none_or(|c| !is_name(c))
            && after.is_none_or(|c| !is_name(c) || word.ends_with('_'))
    })
}

#[test]
fn every_attribute_in_the_register_is_written_by_the_code() {
    let register = register();
    let code = code();
    let tables = register["stored_data"].as_object().expect("stored_data");
    let mut absent = Vec::new();
    for (table, spec) in tables {
        for item in spec["items"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            for attribute in item["attributes"].as_array().into_iter().flatten() {
                let name = attribute.as_str().unwrap_or_default();
                // The part before any `<...>` or `.` is what the code spells out.
                let word = name.split(['<', '.']).next().unwrap_or_default();
                let field = name.split_once('.').map(|(_, f)| f);
                let written = mentions(&code, word) && field.is_none_or(|f| mentions(&code, f));
                if !written {
                    absent.push(format!("{table}.{name}"));
                }
            }
        }
    }
    assert!(
        absent.is_empty(),
        "in the register but nowhere in the code: {absent:?}"
    );
}

#[test]
fn retention_periods_in_the_code_and_the_register_agree() {
    let register = register();
    let periods = register["retention"].as_object().expect("retention");
    let names: BTreeSet<&str> = StoredItem::ALL.iter().map(|i| i.register_name()).collect();
    let listed: BTreeSet<&str> = periods.keys().map(String::as_str).collect();
    assert_eq!(names, listed, "the same kinds of item in both");
    for item in StoredItem::ALL {
        let entry = &periods[item.register_name()];
        let days = |d: time::Duration| d.whole_days();
        match item.rule() {
            Rule::AfterWrite(keep) => {
                assert_eq!(entry["rule"], "after_write", "{item:?}");
                assert_eq!(entry["days"], days(keep), "{item:?}");
            }
            Rule::RawEventRetention => {
                assert_eq!(entry["rule"], "tenant_raw_event_retention");
                assert_eq!(entry["default_days"], RawEventRetention::DEFAULT_DAYS);
                assert_eq!(entry["min_days"], RawEventRetention::MIN_DAYS);
            }
            Rule::Relationship => {
                assert_eq!(entry["rule"], "relationship", "{item:?}");
                assert_eq!(
                    entry["days_after_relationship"],
                    days(retention::AFTER_RELATIONSHIP),
                    "{item:?}"
                );
            }
            Rule::Contract => {
                assert_eq!(entry["rule"], "contract", "{item:?}");
                assert_eq!(
                    entry["days_after_contract"],
                    days(retention::AFTER_RELATIONSHIP),
                    "{item:?}"
                );
            }
            Rule::UntilLastEvent => {
                assert_eq!(entry["rule"], "until_last_event", "{item:?}");
                assert_eq!(
                    entry["days_after_contract"],
                    days(retention::AFTER_RELATIONSHIP),
                    "{item:?}: a record holding a request stays until the tenant leaves"
                );
            }
        }
    }
    assert_eq!(
        register["backups"]["point_in_time_recovery_days"],
        retention::BACKUP_WINDOW.whole_days()
    );
    assert_eq!(
        register["backups"]["suppression_marker_days"],
        retention::SUPPRESSION_MARKER_RETENTION.whole_days()
    );
}

#[test]
fn every_table_and_bucket_of_the_template_is_in_the_register() {
    let template = std::fs::read_to_string(vigil_local::repo_template()).expect("template");
    let mut stores = BTreeSet::new();
    let mut current = None;
    for line in template.lines() {
        if let Some(id) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !id.starts_with(' ') {
                current = Some(id.to_owned());
            }
        }
        let kind = line.trim();
        if kind == "Type: AWS::DynamoDB::Table" || kind == "Type: AWS::S3::Bucket" {
            stores.extend(current.clone());
        }
    }
    let register = register();
    let listed: BTreeSet<String> = register["stored_data"]
        .as_object()
        .expect("stored_data")
        .keys()
        .cloned()
        .collect();
    assert_eq!(stores, listed);
}

#[test]
fn the_readme_summarises_the_register_as_it_is() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .expect("README");
    let register = register();
    for activity in register["activities"].as_array().expect("activities") {
        let id = activity["id"].as_str().unwrap_or_default();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap_or_else(|| panic!("no README row for activity {id}"));
        for field in ["purpose", "legal_basis"] {
            let value = activity[field].as_str().unwrap_or_default();
            assert!(row.contains(value), "README row {id}: {field} differs");
        }
    }
    for (item, rule) in register["retention"].as_object().expect("retention") {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {item} |")))
            .unwrap_or_else(|| panic!("no README row for {item}"));
        for days in ["days", "days_after_relationship", "default_days"] {
            if let Some(n) = rule[days].as_u64() {
                assert!(
                    row.contains(&n.to_string()),
                    "README row {item}: {days} differs"
                );
            }
        }
    }
}

#[test]
fn only_the_functions_that_need_them_may_use_the_lookup_contact_and_webhook_keys() {
    let template = std::fs::read_to_string(vigil_local::repo_template()).expect("template");
    // Each top-level resource's block of text.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in template.lines() {
        let top = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
            .and_then(|l| l.strip_suffix(':'));
        match top {
            Some(id) => blocks.push((id.to_owned(), String::new())),
            None => {
                if let Some((_, text)) = blocks.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    let using = |action: &str, resource: &str| -> BTreeSet<String> {
        blocks
            .iter()
            .filter(|(id, text)| {
                id.ends_with("Function") && text.contains(action) && text.contains(resource)
            })
            .map(|(id, _)| id.clone())
            .collect()
    };
    assert_eq!(
        using("kms:GenerateMac", "SubjectLookupKey.Arn"),
        BTreeSet::from(["IngestFunction".to_owned(), "PrivacyFunction".to_owned()])
    );
    assert_eq!(
        using("kms:GenerateDataKey", "SubjectContactKey.Arn"),
        BTreeSet::from(["PrivacyFunction".to_owned()])
    );
    // And the keys themselves refuse everyone else.
    let policy = |id: &str| {
        blocks
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    };
    let lookup = policy("SubjectLookupKey");
    assert!(lookup.contains("Effect: Deny") && lookup.contains("kms:GenerateMac"));
    assert!(lookup.contains("IngestFunctionRole*") && lookup.contains("PrivacyFunctionRole*"));
    let contact = policy("SubjectContactKey");
    assert!(contact.contains("Effect: Deny") && contact.contains("PrivacyFunctionRole*"));
    assert!(!contact.contains("IngestFunctionRole"));
    // The export's pseudonyms: derived by the export function alone.
    assert_eq!(
        using("kms:GenerateMac", "ExportPseudonymKey.Arn"),
        BTreeSet::from(["ExportFunction".to_owned()])
    );
    let export_key = policy("ExportPseudonymKey");
    assert!(export_key.contains("Effect: Deny") && export_key.contains("ExportFunctionRole*"));
    // Webhook signing secrets: sealed and opened by the alerts function alone.
    assert_eq!(
        using("kms:Decrypt", "WebhookSecretKey.Arn"),
        BTreeSet::from(["AlertsFunction".to_owned()])
    );
    let webhook = policy("WebhookSecretKey");
    assert!(webhook.contains("Effect: Deny") && webhook.contains("AlertsFunctionRole*"));
}
