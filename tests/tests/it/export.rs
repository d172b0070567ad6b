//! The monthly re-training export over the real stack: a month of events for
//! several tenants ingested through the API, the export run through the
//! function's handler, its files fetched from the bucket and read back with
//! pyarrow (`tests/export/check_export.py`), which recomputes every feature
//! from the generated events on its own. People left out (restriction,
//! objection to `model_training`, erasure) must change no byte; an interrupted
//! export must resume to exactly the dataset of an uninterrupted one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use vigil_shared::config::Setting;
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::export::ExportMonth;
use vigil_tests::{s, Fault, TestStack};

const A: &str = "export-a";
const B: &str = "export-b";
const OPTED_OUT: &str = "export-c";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// The month before the wall clock's (always within raw-event retention).
fn month() -> ExportMonth {
    ExportMonth::of(OffsetDateTime::now_utc()).previous()
}

/// One generated event: its wire form, kept for the independent check.
fn event(tenant: &str, i: usize, account: &str, user: Option<&str>) -> Value {
    // Distinct, increasing times across the month (7,919 s apart).
    let time = month().start() + Duration::seconds(i as i64 * 7_919 + 17);
    let id = format!("{tenant}-{i}");
    let endpoint = ["/v1/pay", "/v1/refunds/{id}", "/v1/customers"][(i / 3) % 3];
    let method = ["POST", "GET"][i % 2];
    let status = [200, 200, 201, 404, 500, 200][(i / 2) % 6];
    let priority = ["low", "normal", "high", "urgent"][(i / 10) % 4];
    let paid = ["paid", "failed"][(i / 10) % 2];
    let data = match i % 10 {
        0..=5 => json!({
            "endpoint": endpoint,
            "method": method,
            "status": status,
            "latency_ms": (i * 37) % 3_000,
            "units": i % 7 + 1,
        }),
        6 => json!({"feature": "reports", "action": "open"}),
        7 => json!({"campaign": "autumn", "channel": "email"}),
        8 => json!({"ticket_id": format!("T-{i}"), "priority": priority, "status": "open"}),
        _ => {
            json!({"invoice_id": format!("INV-{i}"), "amount": 12.5, "currency": "EUR", "status": paid})
        }
    };
    let source = match i % 10 {
        0..=5 => "api_call",
        6 => "product",
        7 => "marketing",
        8 => "support_ticket",
        _ => "billing",
    };
    let mut body = json!({"id": id, "time": rfc3339(time), "source": source, "account": account, "data": data});
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    body
}

/// The base population of a tenant: `count` events over its accounts and 5 users
/// (every 11th event has no user).
fn population(tenant: &str, accounts: &[&str], count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let user = format!("{tenant}-user-{}", i % 5);
            let user = (i % 11 != 0).then_some(user.as_str());
            event(tenant, i, accounts[i % accounts.len()], user)
        })
        .collect()
}

async fn ingest(stack: &TestStack, tenant: &str, events: &[Value]) {
    for chunk in events.chunks(200) {
        let (status, out) = stack.post_events(tenant, &json!({"events": chunk})).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["accepted"], chunk.len(), "{out}");
    }
}

/// The contracts the tests register (the checker reads the same values).
fn contracts() -> Vec<(&'static str, &'static str, Value)> {
    let ended = month().first_day() + Duration::days(19);
    vec![
        (
            A,
            "acme",
            json!({"name": "Acme", "plan": "pro", "monthly_quota": 10_000, "relationship_start": "2025-06-01"}),
        ),
        (
            A,
            "globex",
            json!({"name": "Globex", "relationship_start": "2025-09-15"}),
        ),
        (
            A,
            "initech",
            json!({"name": "Initech", "monthly_quota": 500, "relationship_start": "2024-01-10",
                               "relationship_end": ended.to_string()}),
        ),
        (
            A,
            "dormant",
            json!({"name": "Dormant", "monthly_quota": 100, "relationship_start": "2026-01-01"}),
        ),
        (
            B,
            "umbrella",
            json!({"name": "Umbrella", "monthly_quota": 2_000}),
        ),
    ]
}

struct Rig {
    stack: TestStack,
    now: OffsetDateTime,
    a_events: Vec<Value>,
    b_events: Vec<Value>,
}

impl Rig {
    /// Three tenants (one opted out) with their month of events and contracts.
    async fn start() -> Rig {
        let stack = TestStack::start().await;
        for tenant in [A, B, OPTED_OUT] {
            let admin = stack.issue_key(tenant, &[Scope::Admin]).await;
            if tenant == B {
                // Umbrella had a larger quota first: lowering it is a downgrade.
                let (status, out) = stack
                    .call(
                        Method::PUT,
                        "/v1/accounts/umbrella",
                        Some(&admin),
                        Some(&json!({"name": "Umbrella", "monthly_quota": 3_000})),
                    )
                    .await;
                assert_eq!(status, 201, "{out}");
            }
            for (_, account, body) in contracts().into_iter().filter(|c| c.0 == tenant) {
                let (status, out) = stack
                    .call(
                        Method::PUT,
                        &format!("/v1/accounts/{account}"),
                        Some(&admin),
                        Some(&body),
                    )
                    .await;
                assert!(status == 200 || status == 201, "{out}");
            }
        }
        let a_events = population(A, &["acme", "globex", "initech"], 240);
        let b_events = population(B, &["umbrella", "walk-in"], 90);
        let lowered = stack
            .scan("AggregatesTable")
            .await
            .into_iter()
            .filter(|i| s(i, "sk") == Some("A#umbrella"))
            .filter_map(|i| s(&i, "quota_lowered_on").map(str::to_owned))
            .collect::<Vec<_>>();
        assert_eq!(
            lowered,
            vec![OffsetDateTime::now_utc().date().to_string()],
            "the day the quota was lowered is kept for the outcome label"
        );
        ingest(&stack, A, &a_events).await;
        ingest(&stack, B, &b_events).await;
        ingest(&stack, OPTED_OUT, &population(OPTED_OUT, &["x"], 20)).await;
        let opted = stack
            .keys()
            .set_model_training_opt_out(
                &vigil_shared::domain::TenantId::parse(OPTED_OUT).expect("tenant"),
                true,
                OffsetDateTime::now_utc(),
            )
            .await
            .expect("opt out");
        assert!(opted);
        Rig {
            stack,
            now: OffsetDateTime::now_utc(),
            a_events,
            b_events,
        }
    }

    async fn export(&self, input: Value) -> Result<Value, String> {
        let mut input = input;
        input["month"] = json!(month().label());
        input["now"] = json!(rfc3339(self.now));
        self.stack
            .local_api()
            .invoke("ExportFunction", input)
            .await
            .map_err(|e| e.to_string())
    }

    async fn manifest(&self, tenant: &str) -> Option<Value> {
        let out = self
            .stack
            .s3()
            .await
            .get_object()
            .bucket(self.stack.table("DataBucket"))
            .key(format!(
                "exports/{tenant}/{}/manifest.json",
                month().label()
            ))
            .send()
            .await
            .ok()?;
        let bytes = out.body.collect().await.expect("body").into_bytes();
        Some(serde_json::from_slice(&bytes).expect("manifest is JSON"))
    }

    /// Downloads every file of the manifest (the version it names) into `dir`,
    /// checking each digest; (table/part → sha256).
    async fn download(&self, manifest: &Value, dir: &std::path::Path) -> BTreeMap<String, String> {
        let s3 = self.stack.s3().await;
        let mut digests = BTreeMap::new();
        for file in manifest["files"].as_array().expect("files") {
            let key = file["key"].as_str().expect("key");
            let out = s3
                .get_object()
                .bucket(self.stack.table("DataBucket"))
                .key(key)
                .set_version_id(file["version_id"].as_str().map(str::to_owned))
                .send()
                .await
                .expect("a listed file exists");
            assert_eq!(
                out.server_side_encryption().map(|e| e.as_str()),
                Some("aws:kms"),
                "{key} is encrypted with the KMS key"
            );
            let bytes = out.body.collect().await.expect("body").into_bytes();
            let sha = hex::encode(Sha256::digest(&bytes));
            assert_eq!(file["sha256"], sha, "{key}: the manifest's digest");
            assert_eq!(file["bytes"], bytes.len(), "{key}");
            let part = key.rsplit_once("/run-").expect("run prefix").1;
            let part = part.split_once('/').expect("table").1.to_owned();
            std::fs::create_dir_all(dir.join(part.rsplit_once('/').expect("dir").0)).expect("dir");
            std::fs::write(dir.join(&part), &bytes).expect("write");
            digests.insert(part, sha);
        }
        digests
    }

    /// The export's secret for `message`, derived as the function documents it
    /// (KMS HMAC of a fixed message), here with the SDK directly.
    async fn secret(&self, message: String) -> Vec<u8> {
        let (_, sdk) = vigil_shared::adapters::dynamo::Dynamo::connect(&self.stack.config).await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        kms.generate_mac()
            .key_id(
                self.stack
                    .config
                    .get(Setting::ExportPseudonymKeyId)
                    .expect("key"),
            )
            .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
            .message(aws_sdk_kms::primitives::Blob::new(message.into_bytes()))
            .send()
            .await
            .expect("GenerateMac")
            .mac
            .expect("mac")
            .into_inner()
    }

    /// What the checker needs to recompute the dataset: the events, contracts,
    /// and each account's and user's reference computed here.
    async fn expectations(&self, tenant: &str, events: &[Value]) -> Value {
        let account_secret = self
            .secret(format!("vigil/export/account/v1/{tenant}"))
            .await;
        let subject_secret = self
            .secret(format!(
                "vigil/export/subject/v1/{tenant}/{}",
                month().label()
            ))
            .await;
        let reference = |secret: &[u8], value: &str| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("key");
            mac.update(value.as_bytes());
            hex::encode(&mac.finalize().into_bytes()[..16])
        };
        // Each user's stored pseudonym, read from the events table.
        let mut pseudonym_of_event = BTreeMap::new();
        for item in self.stack.scan("EventsTable").await {
            if let (Some(sk), Some(key)) = (s(&item, "sk"), s(&item, "subject_key")) {
                let pseudonym = key.rsplit("#S#").next().expect("pseudonym").to_owned();
                pseudonym_of_event.insert(sk.trim_start_matches("E#").to_owned(), pseudonym);
            }
        }
        let mut accounts = BTreeMap::new();
        let mut subjects = BTreeMap::new();
        for e in events {
            let account = e["account"].as_str().expect("account");
            accounts.insert(account.to_owned(), reference(&account_secret, account));
            if let Some(user) = e["user"].as_str() {
                let pseudonym = &pseudonym_of_event[e["id"].as_str().expect("id")];
                subjects.insert(user.to_owned(), reference(&subject_secret, pseudonym));
            }
        }
        for (t, account, _) in contracts() {
            if t == tenant {
                accounts.insert(account.to_owned(), reference(&account_secret, account));
            }
        }
        let contracts: BTreeMap<&str, Value> = contracts()
            .into_iter()
            .filter(|c| c.0 == tenant)
            .map(|(_, a, c)| (a, c))
            .collect();
        json!({
            "tenant": tenant,
            "month": month().label(),
            "now": rfc3339(self.now),
            "events": events,
            "contracts": contracts,
            "account_refs": accounts,
            "subject_refs": subjects,
        })
    }
}

/// Runs the pyarrow checker on a downloaded dataset.
fn check_with_pyarrow(dir: &std::path::Path, expectations: &Value) {
    std::fs::write(dir.join("expected.json"), expectations.to_string()).expect("write");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("VIGIL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/export/check_export.py"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pyarrow check failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("checked"), "{report}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-export-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dataset_holds_the_features_of_the_generated_month_and_no_one_who_opted_out() {
    let rig = Rig::start().await;

    // 1. Everyone's month exported: every tenant at once, as the schedule does.
    let out = rig.export(json!({})).await.expect("export");
    let statuses: BTreeMap<&str, &str> = out["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([(A, "complete"), (B, "complete"), (OPTED_OUT, "opted_out")]),
        "{out}"
    );
    assert!(
        rig.manifest(OPTED_OUT).await.is_none(),
        "an opted-out tenant gets no dataset"
    );
    let objects = rig.stack.bucket_contents("DataBucket").await;
    assert!(
        !objects.iter().any(|(key, _)| key.contains(OPTED_OUT)),
        "nothing of the opted-out tenant is written"
    );
    let before = rig.manifest(A).await.expect("A's manifest");
    let dir_before = scratch("before");
    let digests_before = rig.download(&before, &dir_before).await;
    assert_eq!(digests_before.len(), 32, "16 shards × (events, features)");

    // 2. People who then restrict, object and are erased: their events (some
    //    on an account no one else uses) are ingested into the same month...
    let privacy = rig.stack.issue_key(A, &[Scope::Privacy]).await;
    let mut extra = Vec::new();
    for (n, user, account) in [
        (0, "restricted-person", "acme"),
        (1, "objecting-person", "globex"),
        (2, "erased-person", "acme"),
        (3, "objecting-person", "ghost-co"),
    ] {
        for k in 0..12 {
            // Times between the population's, so any leak would show in order too.
            let i = 1_000 + n * 100 + k;
            let mut e = event(A, i, account, Some(user));
            let time = month().start() + Duration::seconds((k * 20 + n) as i64 * 7_919 + 4_001);
            e["time"] = json!(rfc3339(time));
            extra.push(e);
        }
    }
    ingest(&rig.stack, A, &extra).await;
    // An export while they are in it (nothing asked yet): their rows are there.
    let out = rig
        .export(json!({"tenant": A, "rerun": true}))
        .await
        .expect("re-run");
    assert_eq!(out["tenants"][0]["status"], "complete", "{out}");
    let with_them = rig.manifest(A).await.expect("A's manifest");
    assert_eq!(
        with_them["rows"]["events"],
        rig.a_events.len() + extra.len()
    );
    assert_eq!(
        with_them["rows"]["features"], 5,
        "ghost-co appears: {with_them}"
    );
    let her_pseudonym = rig
        .stack
        .scan("EventsTable")
        .await
        .iter()
        .find(|i| s(i, "sk") == Some(&format!("E#{}", extra[24]["id"].as_str().expect("id"))))
        .and_then(|i| s(i, "subject_key").map(|k| k.rsplit("#S#").next().unwrap_or("").to_owned()))
        .expect("the erased person's pseudonym, before erasure");
    for body in [
        json!({"type": "restriction", "subject": "restricted-person"}),
        json!({"type": "objection", "subject": "objecting-person", "purpose": "model_training"}),
        json!({"type": "erasure", "subject": "erased-person"}),
    ] {
        let (status, out) = rig
            .stack
            .call(
                Method::POST,
                "/v1/privacy/requests",
                Some(&privacy),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["state"], "completed", "{out}");
    }
    // ...then the month is re-run: it replaces the dataset.
    let out = rig
        .export(json!({"tenant": A, "rerun": true}))
        .await
        .expect("re-run");
    assert_eq!(out["tenants"][0]["status"], "complete", "{out}");
    let after = rig.manifest(A).await.expect("A's manifest");
    assert_ne!(after["run_id"], before["run_id"], "a new run");
    let dir_after = scratch("after");
    let digests_after = rig.download(&after, &dir_after).await;
    // 3. They change no byte: the same files, digest for digest, as before they existed.
    assert_eq!(digests_after, digests_before);
    let excluded = &after["excluded"];
    assert_eq!(excluded["events"]["restricted"], 12, "{excluded}");
    assert_eq!(excluded["events"]["objected"], 24, "{excluded}");
    assert!(
        excluded["events"].get("erased").is_none(),
        "erased events are gone: {excluded}"
    );
    assert_eq!(excluded["subjects"]["restricted"], 1, "{excluded}");
    assert_eq!(excluded["subjects"]["objected"], 1, "{excluded}");
    // The erased person's record is gone with her events: nothing left to count.
    assert!(excluded["subjects"].get("erased").is_none(), "{excluded}");
    // The replaced run's files are deleted (their versions expire a day later).
    let s3 = rig.stack.s3().await;
    let current = s3
        .list_objects_v2()
        .bucket(rig.stack.table("DataBucket"))
        .prefix(format!("exports/{A}/{}/", month().label()))
        .send()
        .await
        .expect("list");
    let old_run = format!("run-{}/", before["run_id"].as_str().expect("run id"));
    assert!(
        !current
            .contents()
            .iter()
            .any(|o| o.key().unwrap_or("").contains(&old_run)),
        "the replaced run's files are no longer current"
    );
    assert_eq!(current.contents().len(), 33, "32 files and the manifest");

    // 4. What is in the files, recomputed from the generated events by pyarrow.
    let expected = rig.expectations(A, &rig.a_events).await;
    check_with_pyarrow(&dir_after, &expected);
    let b = rig.manifest(B).await.expect("B's manifest");
    let dir_b = scratch("b");
    rig.download(&b, &dir_b).await;
    check_with_pyarrow(&dir_b, &rig.expectations(B, &rig.b_events).await);
    assert_eq!(b["rows"]["events"], rig.b_events.len(), "{b}");
    assert_eq!(after["rows"]["events"], rig.a_events.len(), "{after}");
    assert_eq!(
        after["rows"]["features"], 4,
        "acme, globex, initech and dormant: {after}"
    );

    // 5. A run with the month complete changes nothing.
    let again = rig.export(json!({"tenant": A})).await.expect("export");
    assert_eq!(again["tenants"][0]["status"], "already_complete", "{again}");
    assert_eq!(rig.manifest(A).await.expect("manifest"), after);

    // Erasure after an export: the dataset written while she was in it holds
    // HMAC(month secret, her pseudonym); her pseudonym is now gone from every
    // table and object, so nothing vigil keeps can link those rows to her, and
    // that dataset's files are no longer current (gone after a day).
    for table in [
        "EventsTable",
        "SubjectsTable",
        "PrivacyTable",
        "AggregatesTable",
        "TenantsTable",
        "AuditTable",
        "AlertsTable",
    ] {
        for item in rig.stack.scan(table).await {
            assert!(
                !format!("{item:?}").contains(&her_pseudonym),
                "{table} still holds her pseudonym"
            );
        }
    }
    for (key, bytes) in rig.stack.bucket_contents("DataBucket").await {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&her_pseudonym),
            "{key} holds her pseudonym"
        );
    }
    let with_them_run = format!("run-{}/", with_them["run_id"].as_str().expect("run id"));
    assert!(
        !current
            .contents()
            .iter()
            .any(|o| o.key().unwrap_or("").contains(&with_them_run)),
        "the dataset she was in is no longer current"
    );
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_export_resumes_to_the_same_dataset_and_shows_nothing_before() {
    let rig = Rig::start().await;
    // Shard 5's events file fails to upload (every retry): the run stops there.
    rig.stack
        .proxy
        .inject_after("s3:PUT", 10, Fault::ServerError, None);
    let failed = rig.export(json!({"tenant": A})).await;
    assert!(
        failed.is_err(),
        "the invocation reports the failure: {failed:?}"
    );
    rig.stack.proxy.clear_faults();
    assert!(
        rig.manifest(A).await.is_none(),
        "no manifest exists before the dataset is complete"
    );
    let record = rig
        .stack
        .scan("TenantsTable")
        .await
        .into_iter()
        .find(|i| s(i, "sk") == Some(&format!("EXPORT#{}", month().label())))
        .expect("run record");
    assert_eq!(
        vigil_tests::n(&record, "next_shard"),
        Some(5),
        "checkpoint after 5 shards"
    );

    // The next invocation continues from the checkpoint (the lease was released).
    let out = rig.export(json!({"tenant": A})).await.expect("resume");
    assert_eq!(out["tenants"][0]["status"], "complete", "{out}");
    let resumed = rig.manifest(A).await.expect("manifest");
    assert_eq!(
        resumed["rows"]["events"],
        rig.a_events.len(),
        "no row lost or repeated"
    );
    let resumed_digests = rig.download(&resumed, &scratch("resumed")).await;

    // An uninterrupted run of the same month gives the same files.
    let out = rig
        .export(json!({"tenant": A, "rerun": true}))
        .await
        .expect("re-run");
    assert_eq!(out["tenants"][0]["status"], "complete", "{out}");
    let whole = rig.manifest(A).await.expect("manifest");
    assert_ne!(whole["run_id"], resumed["run_id"]);
    let whole_digests = rig.download(&whole, &scratch("whole")).await;
    assert_eq!(resumed_digests, whole_digests);

    // Two runs at once: one works, the other finds the month busy or done.
    let api = rig.stack.local_api();
    let input = json!({"tenant": B, "month": month().label(), "now": rfc3339(rig.now)});
    let (first, second) = tokio::join!(
        api.invoke("ExportFunction", input.clone()),
        api.invoke("ExportFunction", input.clone())
    );
    let mut statuses = vec![
        first.expect("first")["tenants"][0]["status"].clone(),
        second.expect("second")["tenants"][0]["status"].clone(),
    ];
    statuses.sort_by_key(|s| s.to_string());
    assert!(
        statuses == vec![json!("busy"), json!("complete")]
            || statuses == vec![json!("already_complete"), json!("complete")],
        "{statuses:?}"
    );
    let b = rig.manifest(B).await.expect("manifest");
    assert_eq!(b["rows"]["events"], rig.b_events.len());

    // A run record past its expiry is absent, though TTL has not deleted it
    // (the emulator never does): the month is exported again, not "complete".
    rig.stack
        .dynamodb
        .update_item()
        .table_name(rig.stack.table("TenantsTable"))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{B}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("EXPORT#{}", month().label())),
        )
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .expect("expire the run record");
    let out = rig.export(json!({"tenant": B})).await.expect("export");
    assert_eq!(out["tenants"][0]["status"], "complete", "{out}");
    assert_ne!(out["tenants"][0]["run_id"], b["run_id"], "{out}");
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_export_input_is_refused_naming_the_field() {
    let stack = TestStack::start().await;
    let api = stack.local_api();
    for (input, field) in [
        (json!({"month": "2026-13"}), "month"),
        (json!({"month": 202611}), "input"),
        (json!({"tenat": "export-a"}), "input"),
        (json!({"tenant": "no#such"}), "tenant"),
        (json!({"now": "yesterday"}), "now"),
        (json!({"month": "2999-01"}), "month"),
    ] {
        let error = api
            .invoke("ExportFunction", input.clone())
            .await
            .expect_err("refused");
        assert!(error.to_string().starts_with(field), "{input}: {error}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_object_goes_up_in_parts_and_a_failed_part_leaves_nothing() {
    let stack = TestStack::start().await;
    let mut config = stack.config.clone();
    config.endpoint_url = Some(stack.proxy.url());
    let (_, sdk) = vigil_shared::adapters::dynamo::Dynamo::connect(&config).await;
    let bucket = vigil_shared::adapters::s3::DataBucket::new(&sdk, &config).expect("bucket");
    let body: Vec<u8> = (0..11 * 1024 * 1024).map(|i| (i % 251) as u8).collect();

    // The second part fails on every attempt: an error, and no object.
    stack.proxy.reset_counts();
    stack
        .proxy
        .inject_after("s3:UploadPart", 1, Fault::ServerError, None);
    let mut upload = bucket.upload("exports/t/2026-11/big.bin");
    let mut failed = false;
    for chunk in body.chunks(1024 * 1024) {
        if upload.write(chunk).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the failed part is reported");
    upload.abort().await;
    stack.proxy.clear_faults();
    assert!(stack.bucket_contents("DataBucket").await.is_empty());

    stack.proxy.reset_counts();
    let mut upload = bucket.upload("exports/t/2026-11/big.bin");
    for chunk in body.chunks(1024 * 1024) {
        upload.write(chunk).await.expect("part");
    }
    let written = upload.complete().await.expect("complete");
    assert_eq!(written.sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(written.bytes, body.len() as u64);
    assert_eq!(
        stack.proxy.count("s3:UploadPart"),
        3,
        "11 MiB: 5 + 5 + 1 MiB"
    );
    assert_eq!(stack.proxy.count("s3:CompleteMultipartUpload"), 1);
    let stored = stack.bucket_contents("DataBucket").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, body);
    stack.shutdown().await;
}
