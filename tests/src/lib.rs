//! Test support: a private copy of the local stack per test, behind a fault proxy.
//!
//! Each `TestStack` provisions template.yaml's resources under its own stack name
//! in the shared emulator (started by `infra/test`), starts a fault proxy in front
//! of the emulator, and serves the API on a free port with the real handlers,
//! whose SDK clients go through the proxy. Assertions read the emulator directly.

pub mod alerts;
pub mod process;
pub mod proxy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use vigil_local::{
    provision_from, repo_template, start, LocalApi, Provisioned, Registry, RunningServer,
};
use vigil_shared::adapters::dynamo::{AuditTable, Dynamo, TenantTable};
use vigil_shared::app::keys::KeySpec;
use vigil_shared::config::Config;
use vigil_shared::domain::access::Scope;

pub use proxy::{Fault, FaultProxy};

pub type Item = HashMap<String, AttributeValue>;

/// Where `infra/test` started the emulator.
pub fn emulator_url() -> String {
    std::env::var("VIGIL_TEST_EMULATOR").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_EMULATOR is not set: run the tests with ./infra/test, which starts the emulator")
    })
}

pub struct TestStack {
    pub api: String,
    pub http: reqwest::Client,
    /// Straight to the emulator, for assertions (not through the proxy).
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub proxy: FaultProxy,
    pub stack: Provisioned,
    /// Every setting of this stack, straight to the emulator (as the operator CLI).
    pub config: Config,
    /// Keys and audit trail straight to the emulator (as the operator CLI),
    /// when the template has them.
    keys: Option<TenantTable>,
    audit: Option<AuditTable>,
    /// One ingest key per tenant, issued on first use.
    ingest_keys: Mutex<HashMap<String, String>>,
    server: Option<RunningServer>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(&repo_template(), &Registry::standard()).await
    }

    /// A stack from another template, hosting the functions `registry` knows.
    pub async fn start_with(template: &std::path::Path, registry: &Registry) -> Self {
        let emulator = emulator_url();
        // Short, lowercase and unique across test processes: bucket names allow no more.
        let stack_name = format!(
            "t{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let stack = provision_from(template, &emulator, &stack_name)
            .await
            .expect("provision the stack from the template");
        let proxy = FaultProxy::start(&emulator)
            .await
            .expect("start the fault proxy");
        let api = LocalApi::build(&stack, &proxy.url(), registry)
            .await
            .expect("build the handlers");
        let server = start(api, ([127, 0, 0, 1], 0).into())
            .await
            .expect("start the local API");
        let sdk = vigil_local::emulator_config(&emulator).await;
        let config = stack.config(&emulator);
        let (db, _) = Dynamo::connect(&config).await;
        let keys = TenantTable::new(&db, &config).ok();
        let audit = AuditTable::new(&db, &config).ok();
        proxy.reset_counts();
        Self {
            api: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            proxy,
            stack,
            config,
            keys,
            audit,
            ingest_keys: Mutex::new(HashMap::new()),
            server: Some(server),
        }
    }

    /// The tenants table, straight to the emulator.
    pub fn keys(&self) -> &TenantTable {
        self.keys.as_ref().expect("the template has a TenantsTable")
    }

    /// The audit table, straight to the emulator.
    pub fn audit(&self) -> &AuditTable {
        self.audit.as_ref().expect("the template has an AuditTable")
    }

    /// Issues a new key for `tenant` (creating the tenant if needed).
    /// The audit anchor bucket, straight to the emulator (as the operator CLI).
    pub async fn anchors(&self) -> vigil_shared::adapters::s3::AnchorBucket {
        let sdk = vigil_shared::aws::sdk_config(
            self.config.endpoint_url.as_deref(),
            self.config.region.as_deref(),
            vigil_shared::retry::RetryPolicy::default(),
        )
        .await;
        vigil_shared::adapters::s3::AnchorBucket::new(&sdk, &self.config).expect("anchor bucket")
    }

    pub async fn issue_key(&self, tenant: &str, scopes: &[Scope]) -> String {
        self.issue_key_with(tenant, scopes, None).await
    }

    /// Issues a key that expires at `expires_at`.
    pub async fn issue_key_with(
        &self,
        tenant: &str,
        scopes: &[Scope],
        expires_at: Option<time::OffsetDateTime>,
    ) -> String {
        let spec = KeySpec {
            name: if expires_at.is_some() {
                "test-expiring"
            } else {
                "test"
            }
            .into(),
            scopes: scopes.to_vec(),
            expires_at: expires_at
                // Longer than any key it issues, so that no cap shows in tests.
                .unwrap_or_else(|| time::OffsetDateTime::now_utc() + time::Duration::days(400)),
        };
        vigil_local::issue_key(&self.config, tenant, spec)
            .await
            .expect("issue a key")
    }

    /// The tenant's ingest key, issued once per stack.
    pub async fn ingest_key(&self, tenant: &str) -> String {
        let known = self
            .ingest_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned();
        if let Some(key) = known {
            return key;
        }
        let key = self.issue_key(tenant, &[Scope::Ingest]).await;
        self.ingest_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_owned(), key.clone());
        key
    }

    /// Sends a request with `key` as Bearer token (None: no Authorization header).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.api));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request reaches the local API");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn table(&self, logical_id: &str) -> String {
        self.stack
            .reference(logical_id)
            .unwrap_or_else(|| panic!("no resource {logical_id} in the stack"))
            .to_owned()
    }

    /// POSTs a raw body to /v1/events with `tenant`'s ingest key (None: no Authorization header).
    pub async fn post_raw(
        &self,
        tenant: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/events", self.api))
            .header("content-type", content_type)
            .body(body);
        if let Some(tenant) = tenant {
            let key = self.ingest_key(tenant).await;
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = request.send().await.expect("request reaches the local API");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("response is not JSON: {text}"));
        (status, body)
    }

    pub async fn post_events(&self, tenant: &str, body: &Value) -> (u16, Value) {
        self.post_raw(Some(tenant), "application/json", body.to_string())
            .await
    }

    /// Every item of a table, read from the emulator.
    pub async fn scan(&self, logical_id: &str) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(self.table(logical_id))
                // The emulator's scan costs about 2 ms per item: small pages
                // keep each request well inside the SDK's timeout.
                .limit(500)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// The rollups of one kind (`H#` hours, `D#` days, `M#` months), read from the emulator.
    pub async fn rollups(&self, sort_prefix: &str) -> Vec<Item> {
        self.scan("AggregatesTable")
            .await
            .into_iter()
            .filter(|i| s(i, "sk").is_some_and(|sk| sk.starts_with(sort_prefix)))
            .collect()
    }

    /// Calls counted in the hour rollups, after checking that the day and month
    /// rollups counted exactly as many (ingestion updates all three at once).
    pub async fn counted_calls(&self) -> u64 {
        let mut totals = Vec::new();
        for prefix in ["H#", "D#", "M#"] {
            let calls: u64 = self
                .rollups(prefix)
                .await
                .iter()
                .filter_map(|a| n(a, "calls"))
                .sum();
            totals.push(calls);
        }
        assert!(
            totals.iter().all(|t| *t == totals[0]),
            "hours, days and months count alike: {totals:?}"
        );
        totals[0]
    }

    /// An S3 client straight to the emulator (not through the proxy).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let (_, sdk) = Dynamo::connect(&self.config).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    }

    /// Every version of every object of a bucket, with its bytes: (key, bytes).
    pub async fn bucket_contents(&self, logical_id: &str) -> Vec<(String, Vec<u8>)> {
        let s3 = self.s3().await;
        let bucket = self.table(logical_id);
        let listing = s3
            .list_object_versions()
            .bucket(&bucket)
            .send()
            .await
            .expect("list versions");
        let mut out = Vec::new();
        for version in listing.versions() {
            let key = version.key().unwrap_or_default().to_owned();
            let object = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .set_version_id(version.version_id().map(str::to_owned))
                .send()
                .await
                .expect("get object version");
            let bytes = object.body.collect().await.expect("body").into_bytes();
            out.push((key, bytes.to_vec()));
        }
        out
    }

    /// The running local API (routes, functions, schedules).
    pub fn local_api(&self) -> std::sync::Arc<LocalApi> {
        self.server.as_ref().expect("running").api.clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos % 0xfffff)
}

/// A string attribute of an item.
pub fn s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A number attribute of an item.
pub fn n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// An RFC 3339 time `hours_ago` hours before now, on the given minute: always inside the accepted window.
pub fn hours_ago(hours: i64, minute: u8) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::hours(hours);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:00Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        minute
    )
}

/// An api_call event in the wire format.
pub fn api_call(id: &str, account: &str, time: &str, status: u16) -> Value {
    serde_json::json!({
        "id": id, "time": time, "source": "api_call", "account": account, "user": format!("user-{id}"),
        "data": {"endpoint": "/v1/pay", "method": "POST", "status": status, "latency_ms": 80, "units": 2}
    })
}

/// A batch of `count` api_call events for one account and hour.
pub fn batch(prefix: &str, count: usize, account: &str, time: &str) -> Value {
    let events: Vec<Value> = (0..count)
        .map(|i| api_call(&format!("{prefix}-{i}"), account, time, 200))
        .collect();
    serde_json::json!({ "events": events })
}

/// The key with its last secret digit changed: well-formed, but wrong.
pub fn tampered(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// This process's peak resident set so far (VmHWM), in KiB.
pub fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
