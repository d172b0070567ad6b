//! Per 1,000 ingested events: AWS requests counted by the fault proxy (no faults
//! injected), write units computed from the items sent, and the ingest
//! function's CPU on the real path (handler + SDK against the emulator), next to
//! the floors and to the design before exact counting (docs/decisions/0011);
//! then the dashboard's reads (requests and read units of the accounts list for
//! 100 and 1,000 accounts over 30 days, and of one account's 90-day series)
//! against the items they must read at least (docs/decisions/0015).
//! Needs the emulator: `./infra/bench` (or `./infra/test`, which runs it once).

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde_json::{json, Value};
use vigil_tests::{hours_ago, TestStack};

/// The design before exact counting (commit aad0cb6, this benchmark, release,
/// glibc malloc), kept for comparison: median of 7 runs with this proxy, which
/// keeps the SDK's connections open (61.6 us with the earlier proxy, which passed
/// on the emulator's connection close and made every request reconnect).
const BEFORE_REQUESTS: usize = 74;
const BEFORE_WRITE_UNITS: u64 = 1020;
const BEFORE_CPU_US_PER_EVENT: f64 = 85.0;

const EVENTS: usize = 1000;
const PER_REQUEST: usize = 500;
const ACCOUNTS: usize = 10;
const USERS: usize = 200;

/// The audit anchor job over 20 tenants: requests against the floor (one
/// tenants listing, then per tenant a read of its head and a conditional write).
async fn anchoring_cost(stack: &TestStack) {
    const TENANTS: usize = 20;
    for t in 0..TENANTS {
        stack
            .issue_key(
                &format!("anchor-{t}"),
                &[vigil_shared::domain::access::Scope::Read],
            )
            .await;
    }
    let run = || async {
        let invocation =
            vigil_shared::stack_state::invoke(&stack.api, "AuditAnchorFunction", &json!({}))
                .await
                .expect("invoke");
        assert!(invocation.succeeded(), "{invocation:?}");
    };
    run().await; // anchors the tenants the benchmark made so far
    stack.proxy.reset_counts();
    run().await;
    let counts = stack.proxy.counts_except(&[]);
    let (scans, queries, puts) = (
        counts.get("Scan").copied().unwrap_or(0),
        counts.get("Query").copied().unwrap_or(0),
        counts.get("s3:PUT").copied().unwrap_or(0),
    );
    let tenants = queries; // every tenant with a trail, this benchmark's and the ones above
    println!(
        "\naudit anchoring, a run with nothing new over {tenants} tenants: {scans} Scan, {queries} Query, {puts} conditional PutObject (floor: 1 + {tenants} + {tenants})"
    );
    assert!(tenants > TENANTS);
    assert_eq!((scans, puts), (1, tenants));
}

/// What the rights cost for a person with 200 events over 4 account-hours:
/// requests per operation next to the floor of the work on the events (one
/// query of the subject's index, a BatchGetItem per 100 events, a transaction
/// per account-hour chunk of at most 47 events).
async fn privacy_costs(stack: &TestStack) {
    const TENANT: &str = "bench-privacy";
    const PER_HOUR: usize = 50;
    const HOURS: usize = 4;
    let events: Vec<Value> = (0..PER_HOUR * HOURS)
        .map(|i| {
            json!({"id": format!("pv-{i}"), "time": vigil_tests::hours_ago(1 + (i / PER_HOUR) as i64, (i % 60) as u8),
                   "source": "api_call", "account": "acme", "user": "bench-person",
                   "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 40, "units": 1}})
        })
        .collect();
    let (status, _) = stack.post_events(TENANT, &json!({"events": events})).await;
    assert_eq!(status, 200);
    let key = stack
        .issue_key(TENANT, &[vigil_shared::domain::access::Scope::Privacy])
        .await;
    let events = PER_HOUR * HOURS;
    let per_hour_chunks =
        PER_HOUR.div_ceil(vigil_shared::adapters::dynamo::rights::EVENTS_PER_CHUNK);
    let floor_tx = HOURS * per_hour_chunks;
    let floor_gets = events.div_ceil(100);
    println!("
privacy requests, one person with {events} events over {HOURS} account-hours (floor for the events: 1 Query, {floor_gets} BatchGetItem, {floor_tx} TransactWriteItems)");
    for kind in ["restriction", "restriction_lift", "access", "erasure"] {
        // The authorizer's cache is warm after the first call: warm it first.
        stack
            .call(
                reqwest::Method::GET,
                "/v1/privacy/requests?limit=1",
                Some(&key),
                None,
            )
            .await;
        stack.proxy.reset_counts();
        let (status, out) = stack
            .call(
                reqwest::Method::POST,
                "/v1/privacy/requests",
                Some(&key),
                Some(&json!({"type": kind, "subject": "bench-person"})),
            )
            .await;
        assert_eq!(status, 201, "{out}");
        let counts = stack.proxy.counts_except(&[]);
        let total: usize = counts.values().sum();
        let line: Vec<String> = counts.iter().map(|(op, n)| format!("{n} {op}")).collect();
        println!("  {kind:<17} {total:>3} requests: {}", line.join(", "));
        let tx = counts.get("TransactWriteItems").copied().unwrap_or(0);
        if kind != "access" {
            // The events' transactions, plus the request's open and close.
            assert_eq!(tx, floor_tx + 2, "{kind}: a transaction per chunk");
        }
        assert_eq!(
            counts.get("BatchGetItem").copied().unwrap_or(0),
            floor_gets,
            "{kind}"
        );
    }
}

/// Seeds `accounts` registered accounts of `tenant`, each with a day rollup for
/// every one of the `days` days ending `to` (counters and a 40-user sketch, as
/// ingestion writes them), straight into the emulator with BatchWriteItem.
/// Returns the bytes of the day items (for the read floor).
async fn seed_rollups(
    stack: &TestStack,
    tenant: &str,
    accounts: usize,
    days: i64,
    to: time::Date,
) -> u64 {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    use vigil_shared::domain::{AccountId, SubjectId, TenantId};
    use vigil_shared::keys;
    let table = stack.table("AggregatesTable");
    let tenant = TenantId::parse(tenant).expect("tenant");
    let text = |v: &str| AttributeValue::S(v.to_owned());
    let num = |v: u64| AttributeValue::N(v.to_string());
    let mut items = Vec::new();
    let mut day_bytes = 0;
    for a in 0..accounts {
        let account = AccountId::parse(&format!("acct-{a:04}")).expect("account");
        items.push(std::collections::HashMap::from([
            (keys::PK.to_owned(), text(&keys::accounts_pk(&tenant))),
            (keys::SK.to_owned(), text(&keys::account_entry_sk(&account))),
            ("registered".to_owned(), AttributeValue::Bool(true)),
            ("name".to_owned(), text(&format!("Customer {a}"))),
            ("plan".to_owned(), text("growth")),
            ("monthly_quota".to_owned(), num(100_000)),
            ("events".to_owned(), num(1_000)),
        ]));
        for d in 0..days {
            let day = to - time::Duration::days(d);
            let calls = 100 + (a as u64 * 7 + d as u64) % 50;
            let users: Vec<String> = (0..40)
                .map(|u| {
                    vigil_shared::domain::sketch::element(&SubjectId::from_stored(format!(
                        "s{a}-{u}"
                    )))
                    .to_string()
                })
                .collect();
            let mut item = std::collections::HashMap::from([
                (
                    keys::PK.to_owned(),
                    text(&keys::account_pk(&tenant, &account)),
                ),
                (keys::SK.to_owned(), text(&keys::day_sk(day))),
                ("updated_at".to_owned(), text("2026-11-29T10:00:00Z")),
                ("users".to_owned(), AttributeValue::Ns(users)),
            ]);
            for (name, value) in [
                ("events", calls + 3),
                ("calls", calls),
                ("errors_4xx", calls / 20),
                ("errors_5xx", calls / 50),
                ("latency_ms_sum", calls * 80),
                ("latency_count", calls),
                ("units", calls * 2),
                ("source_api_call", calls),
                ("source_product", 3),
                ("latency_le_50", calls / 2),
                ("latency_le_100", calls / 3),
                ("latency_le_250", calls - calls / 2 - calls / 3),
            ] {
                item.insert(name.to_owned(), num(value));
            }
            let json: serde_json::Map<String, Value> = item
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        AttributeValue::S(s) => json!({"S": s}),
                        AttributeValue::N(n) => json!({"N": n}),
                        AttributeValue::Ns(ns) => json!({"NS": ns}),
                        _ => json!({"BOOL": true}),
                    };
                    (k.clone(), value)
                })
                .collect();
            day_bytes += vigil_tests::proxy::item_size(&json);
            items.push(item);
        }
    }
    let writes: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("put"),
                )
                .build()
        })
        .collect();
    write_all(stack, &table, writes).await;
    day_bytes
}

/// Seeds items straight into the emulator: BatchWriteItem of 25 (AWS's limit),
/// 8 at once, unprocessed items sent again.
async fn write_all(
    stack: &TestStack,
    table: &str,
    writes: Vec<aws_sdk_dynamodb::types::WriteRequest>,
) {
    let chunks: Vec<Vec<_>> = writes.chunks(25).map(<[_]>::to_vec).collect();
    drop(writes);
    futures_util::stream::iter(chunks)
        .for_each_concurrent(8, |chunk| {
            let (db, table) = (stack.dynamodb.clone(), table.to_owned());
            async move {
                let mut pending = chunk;
                while !pending.is_empty() {
                    let out = db
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await
                        .expect("seed items");
                    pending = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&table))
                        .unwrap_or_default();
                }
            }
        })
        .await;
}

/// Reads `path` with `key` and returns the answer, with the proxy's counts
/// covering that one request: the authorizer's cache is warmed first by a
/// cheap call (a 404 read of one directory entry), whose reads are not the
/// dashboard's.
async fn measured_read(stack: &TestStack, key: &str, path: &str) -> Value {
    let (status, _) = stack
        .call(reqwest::Method::GET, "/v1/accounts/none", Some(key), None)
        .await;
    assert_eq!(status, 404);
    stack.proxy.reset_counts();
    let (status, body) = stack
        .call(reqwest::Method::GET, path, Some(key), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The dashboard's reads against the items they must read at least.
async fn dashboard_reads(stack: &TestStack) {
    let tenants = stack.table("TenantsTable");
    let to = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let day = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    // A 30-day summary reads its window and the one before (the billing month lies inside).
    const READ_DAYS: i64 = 60;
    println!("
dashboard reads (day rollups of {READ_DAYS} days and 40 users each, seeded; eventually consistent reads):");
    // The 1,000-account list costs minutes in a debug build (the SDK's JSON parsing
    // of 61,000 items): `./infra/test` runs this file as a test and checks 100;
    // `./infra/bench` (release) prints both.
    let sizes: &[usize] = if cfg!(debug_assertions) {
        &[100]
    } else {
        &[100, 1000]
    };
    if cfg!(debug_assertions) {
        println!(
            "  (debug build: the 1,000-account list is measured by ./infra/bench, in release)"
        );
    }
    for &accounts in sizes {
        let tenant = format!("dash{accounts}");
        let day_bytes = seed_rollups(
            stack,
            &tenant,
            accounts,
            if accounts == 100 { 90 } else { READ_DAYS },
            to,
        )
        .await;
        let read = stack
            .issue_key(&tenant, &[vigil_shared::domain::access::Scope::Read])
            .await;
        let path = format!(
            "/v1/accounts?from={}&to={}&sort=health&limit=100",
            day(to - time::Duration::days(29)),
            day(to)
        );
        let body = measured_read(stack, &read, &path).await;
        assert_eq!(body["total"], accounts);
        let counts: BTreeMap<String, usize> = stack
            .proxy
            .counts_except(&[tenants.as_str()])
            .into_iter()
            .collect();
        let sent = counts.get("Query").copied().unwrap_or(0);
        let queries = stack.proxy.answered("Query");
        let units = stack.proxy.read_units();
        let seeded_days = if accounts == 100 {
            90
        } else {
            READ_DAYS as u64
        };
        let item_bytes = day_bytes / (seeded_days * accounts as u64); // one day item
        let floor_items = accounts as u64 * READ_DAYS as u64 + accounts as u64;
        let packed = (accounts as u64 * READ_DAYS as u64 * item_bytes).div_ceil(4096) as f64 / 2.0;
        let per_account =
            (READ_DAYS as u64 * item_bytes).div_ceil(4096) as f64 / 2.0 * accounts as f64;
        // The emulator serialises requests: under 16 concurrent reads an answer can
        // come after the SDK's 5 s attempt timeout, and the SDK sends it again.
        let retried = sent - queries;
        println!(
            "  list of {accounts} accounts, 30 days, sorted by health: {queries} Query answered \
             ({retried} more sent and retried by the SDK: the emulator's late answers), {units} read units; \
             floor {floor_items} items ({accounts} x {READ_DAYS} days + {accounts} directory entries): \
             {packed} read units for the day items packed into 4 KB, {per_account} with one query per account \
             (day item {item_bytes} B; hourly items read: 0)"
        );
        // One query per account, and the directory (a second page past 1 MB would show here).
        assert!(
            (accounts + 1..=accounts + 2).contains(&queries),
            "one query per account and the directory: {queries}"
        );
        assert_eq!(counts.get("GetItem"), None);
        assert!(units >= packed, "no read below the floor");
    }
    // One account's 90-day daily series with its page.
    let read = stack
        .issue_key("dash100", &[vigil_shared::domain::access::Scope::Read])
        .await;
    let path = format!(
        "/v1/accounts/acct-0001?from={}&to={}",
        day(to - time::Duration::days(89)),
        day(to)
    );
    let body = measured_read(stack, &read, &path).await;
    assert_eq!(body["series"].as_array().map(Vec::len), Some(90));
    let counts: BTreeMap<String, usize> = stack
        .proxy
        .counts_except(&[tenants.as_str()])
        .into_iter()
        .collect();
    println!(
        "  one account, 90-day daily series and its page: {} GetItem + {} Query, {} read units; floor 90 day items \
         (and the directory entry): 3 requests (entry, days, months) + 1 for recent events + 1 for its alerts",
        counts.get("GetItem").copied().unwrap_or(0),
        counts.get("Query").copied().unwrap_or(0),
        stack.proxy.read_units()
    );
    assert_eq!(counts.get("GetItem").copied(), Some(1));
    assert_eq!(
        counts.get("Query").copied(),
        Some(4),
        "days, months, recent events, alerts"
    );
}

/// One scheduled alert evaluation of a tenant with the default rules, against
/// its lower bound: the settings (1 Query), the directory (1 Query a MB),
/// the alert states (1 BatchGetItem per 100 accounts), each account's day
/// rollups and hour rollups (2 Query: the rules read 60 days and 48 hours),
/// the outbox (1 Query). Rules cost nothing more: they are evaluated in memory.
async fn alert_evaluation_costs(stack: &TestStack) {
    let tenants = stack.table("TenantsTable");
    println!("\nalert evaluation (default rules, nothing firing: the common run; eventually consistent rollup reads):");
    // The dashboard's tenants (60 or 90 days of day rollups each); 10,000
    // accounts in release only, with 7 days each (the request count does not
    // depend on the items an account has; read units are given per account).
    let mut sizes: Vec<(String, usize, i64)> = vec![("dash100".into(), 100, 90)];
    if !cfg!(debug_assertions) {
        sizes.push(("dash1000".into(), 1000, 60));
        let to = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
        seed_rollups(stack, "alerts10000", 10_000, 7, to).await;
        sizes.push(("alerts10000".into(), 10_000, 7));
    } else {
        println!(
            "  (debug build: 1,000 and 10,000 accounts are measured by ./infra/bench, in release)"
        );
    }
    for (tenant, accounts, days) in sizes {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("now");
        stack.proxy.reset_counts();
        let started = std::time::Instant::now();
        let report = stack
            .local_api()
            .invoke("AlertsFunction", json!({"tenant": tenant, "now": now}))
            .await
            .expect("the evaluation runs");
        let wall = started.elapsed();
        assert_eq!(report["accounts"], accounts, "{report}");
        assert_eq!(report["incomplete"], false, "{report}");
        let counts: BTreeMap<String, usize> = stack
            .proxy
            .counts_except(&[tenants.as_str()])
            .into_iter()
            .collect();
        let total: usize = counts.values().sum();
        let floor = 1 + accounts.div_ceil(2000) + accounts.div_ceil(100) + 2 * accounts + 1;
        let units = stack.proxy.read_units();
        println!(
            "  {accounts:>6} accounts ({days} days of rollups each): {total} requests sent {counts:?} ({} Query answered: the rest are the SDK's retries of late answers), floor {floor}; \
             {units} read units ({:.2} per account); wall time against the emulator {:.1} s ({:.1} ms per account)",
            stack.proxy.answered("Query"),
            units / accounts as f64,
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1000.0 / accounts as f64
        );
        // The directory takes one Query per 2,000 entries (and one empty page
        // when they fill the last). Answered, not sent: the SDK sends again an
        // answer the emulator gave too late.
        let queries = stack.proxy.answered("Query");
        assert!(
            (2 * accounts + 3..=2 * accounts + 3 + accounts / 2000).contains(&queries),
            "2 per account + settings, directory pages, outbox: {queries}"
        );
        assert_eq!(
            counts.get("BatchGetItem").copied(),
            Some(accounts.div_ceil(100))
        );
        assert_eq!(
            counts.get("TransactWriteItems"),
            None,
            "nothing changed, nothing written"
        );
    }
}

/// The monthly export of one tenant with `events` events over 200 accounts and
/// 2,000 users: seeded straight into the events table, then exported by the
/// real function in its own process (`vigil-export-run`), through the proxy.
/// Prints rows per second, the process's peak RSS and CPU, and every request
/// next to the floor computed here from the seeded shards.
async fn export_cost(stack: &TestStack, events: usize, generated: bool) -> (u64, f64) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    use vigil_shared::adapters::dynamo::events::event_item;
    use vigil_shared::domain::export::ExportMonth;
    use vigil_shared::domain::{AccountId, EventData, EventId, StoredEvent, SubjectId, TenantId};
    const ACCOUNTS_: usize = 200;
    const USERS_: usize = 2_000;
    let tenant_name = format!("export{events}{}", if generated { "g" } else { "" });
    let tenant = TenantId::parse(&tenant_name).expect("tenant");
    stack
        .issue_key(&tenant_name, &[vigil_shared::domain::access::Scope::Read])
        .await;
    let month = ExportMonth::of(time::OffsetDateTime::now_utc()).previous();
    let seconds = (month.end() - month.start()).whole_seconds();
    let table = stack.table("EventsTable");
    // Shards as the key schema documents them (FNV-1a of the account, mod 16),
    // computed here for the floor.
    let shard_of = |account: &str| {
        account.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }) % 16
    };
    let mut per_shard = [0usize; 16];
    let seed_started = std::time::Instant::now();
    if generated {
        // The same accounts' shares, generated in the export's process.
        for a in 0..ACCOUNTS_ {
            let n = events / ACCOUNTS_ + usize::from(a < events % ACCOUNTS_);
            per_shard[shard_of(&format!("acct-{a:03}")) as usize] += n;
        }
    } else {
        let writes = (0..events).map(|i| {
            let account = format!("acct-{:03}", i % ACCOUNTS_);
            per_shard[shard_of(&account) as usize] += 1;
            let event = StoredEvent {
                id: EventId::parse(&format!("e{i}")).expect("id"),
                time: month.start() + time::Duration::seconds((i as i64 * 7_919) % seconds),
                account: AccountId::parse(&account).expect("account"),
                subject: Some(SubjectId::from_stored(format!("p{:04}", i % USERS_))),
                data: EventData::ApiCall {
                    endpoint: ["/v1/pay", "/v1/refunds/{id}", "/v1/customers"][i % 3].to_owned(),
                    method: "POST",
                    status: [200, 200, 201, 404, 500][i % 5],
                    latency_ms: (i as u64 * 37) % 3_000,
                    units: i as u64 % 7 + 1,
                },
                withheld: Default::default(),
            };
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(event_item(&tenant, &event, None)))
                        .build()
                        .expect("put"),
                )
                .build()
        });
        write_all(stack, &table, writes.collect()).await;
    }
    let seeded_in = seed_started.elapsed();

    // The export, in a process of its own (its peak RSS is the export's alone).
    stack.proxy.reset_counts();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vigil-export-run"));
    for setting in vigil_shared::config::Setting::ALL {
        if let Some(value) = stack.config.get(setting) {
            command.env(setting.env_name(), value);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", stack.proxy.url())
        .env(
            "AWS_REGION",
            stack.config.region.clone().unwrap_or_default(),
        )
        .env("RUST_LOG", "warn")
        .arg(json!({"tenant": tenant_name, "month": month.label()}).to_string());
    if generated {
        command.arg("--generated").arg(events.to_string());
    }
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run vigil-export-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "export run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its stdout also carries the EMF metrics line, as in Lambda.
    let line = |key: &str| -> Value {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get(key).is_some())
            .unwrap_or_else(|| panic!("no {key} line in {stdout}"))
    };
    let (report, usage) = (line("tenants"), line("peak_rss_kib"));
    assert_eq!(report["tenants"][0]["status"], "complete", "{report}");
    if !generated {
        assert_eq!(report["tenants"][0]["rows"]["events"], events, "{report}");
    }
    let counts: BTreeMap<String, usize> = stack.proxy.counts_except(&[]).into_iter().collect();
    // Floors: a page per 1,000 events of each shard (at least one, which may come
    // back empty), the state index and the directory once, 2 derivations.
    let query_floor: usize = if generated {
        2
    } else {
        per_shard
            .iter()
            .map(|n| n.div_ceil(1_000).max(1))
            .sum::<usize>()
            + 2
    };
    let queries = stack.proxy.answered("Query");
    let wall_ms = usage["wall_ms"].as_f64().unwrap_or(1.0);
    let rss_mib = usage["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0;
    let before_mib = usage["peak_rss_before_export_kib"].as_f64().unwrap_or(0.0) / 1024.0;
    let cpu_ms = usage["cpu_ms"].as_f64().unwrap_or(0.0);
    let source = if generated {
        "generated in process"
    } else {
        "read from the index"
    };
    println!(
        "  {events:>8} events ({source}, seeded in {:.0} s): {:.0} rows/s, peak RSS {rss_mib:.1} MiB ({before_mib:.1} before the export began), \
         CPU {cpu_ms:.0} ms ({:.1} us per event); Query {queries} answered (floor {query_floor}, \
         +1 per shard whose last page is exactly full), GenerateMac {}, PutObject {} (32 files + manifest), \
         UploadPart {}, run record GetItem {} / PutItem {} / UpdateItem {}; all requests {counts:?}",
        seeded_in.as_secs_f64(),
        events as f64 * 1000.0 / wall_ms,
        cpu_ms * 1000.0 / events as f64,
        counts.get("GenerateMac").copied().unwrap_or(0),
        counts.get("s3:PUT").copied().unwrap_or(0),
        counts.get("s3:UploadPart").copied().unwrap_or(0),
        counts.get("GetItem").copied().unwrap_or(0),
        counts.get("PutItem").copied().unwrap_or(0),
        counts.get("UpdateItem").copied().unwrap_or(0),
    );
    assert_eq!(counts.get("GenerateMac").copied(), Some(2));
    assert_eq!(counts.get("s3:PUT").copied(), Some(33));
    assert!(
        (query_floor..=query_floor + 16).contains(&queries),
        "{queries} queries, floor {query_floor}"
    );
    let _ = per_shard;
    (
        usage["peak_rss_kib"].as_u64().unwrap_or(0),
        events as f64 * 1000.0 / wall_ms,
    )
}

/// The export at growing sizes. Read from the `by_month` index: 10,000 events.
/// The emulator scans and sorts the whole table for every index page: at
/// 100,000 events one page takes longer than the SDK's 20 s operation timeout
/// (measured), and a 1,000,000-event month would take hours. So memory and CPU
/// from 10,000 to 1,000,000 events are measured with the month's pages
/// generated in the export's process (KMS, S3 and the run record still the
/// emulator's). Peak memory must not grow with the month.
async fn export_costs(stack: &TestStack) {
    println!("\nmonthly export (one tenant's month, 200 accounts, 2,000 users, api_call events):");
    let release = !cfg!(debug_assertions);
    let indexed = vec![10_000];
    let mut generated = vec![10_000, 100_000];
    if release {
        generated.push(1_000_000);
    } else {
        println!(
            "  (debug build: the release figures, to 1,000,000 events, come from ./infra/bench)"
        );
    }
    for events in indexed {
        export_cost(stack, events, false).await;
    }
    let mut peaks = Vec::new();
    for events in generated {
        peaks.push((events, export_cost(stack, events, true).await.0));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
        let growth_mib = (last.1 as f64 - first.1 as f64) / 1024.0;
        println!(
            "  peak RSS from {} to {} events: {growth_mib:+.1} MiB",
            first.0, last.0
        );
        assert!(
            growth_mib < 16.0,
            "memory grows with the month: {growth_mib:.1} MiB"
        );
    }
}

/// One account partition of `PER_ACCOUNT` events (small api_call items, as
/// ingestion writes them, without a subject), for the purge's benchmark.
fn purge_seed_events(
    tenant: &str,
    account: usize,
    per_account: usize,
) -> Vec<aws_sdk_dynamodb::types::WriteRequest> {
    use aws_sdk_dynamodb::types::{AttributeValue::S, PutRequest, WriteRequest};
    (0..per_account)
        .map(|e| {
            let item = std::collections::HashMap::from([
                (
                    "pk".to_owned(),
                    S(format!("T#{tenant}#A#acct-{account:06}")),
                ),
                ("sk".to_owned(), S(format!("E#ev-{account:06}-{e:04}"))),
                ("source".to_owned(), S("api_call".into())),
                ("ts".to_owned(), S("2026-11-20T10:00:00Z".into())),
            ]);
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("put"),
                )
                .build()
        })
        .collect()
}

/// The retention purge of one tenant whose events table holds `items` events
/// over accounts of 100 events, of which `expired` accounts' relationship
/// ended more than 3 years ago: requests and write units against the floor
/// ceil(expired items / 25) BatchWriteItem plus the index pages (by_expiry,
/// and the 16 by_month queries of the raw-event sweep).
async fn purge_cost(
    stack: &TestStack,
    tenant: &str,
    items: usize,
    expired_accounts: usize,
) -> (usize, u64) {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    const PER_ACCOUNT: usize = 100;
    let accounts = items / PER_ACCOUNT;
    stack
        .issue_key(tenant, &[vigil_shared::domain::access::Scope::Read])
        .await;
    let events: Vec<WriteRequest> = (0..accounts)
        .flat_map(|a| purge_seed_events(tenant, a, PER_ACCOUNT))
        .collect();
    write_all(stack, &stack.table("EventsTable"), events).await;
    // Directory entries; the expired ones in by_expiry, as the accounts API leaves them.
    let long_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 86_400;
    let entries: Vec<WriteRequest> = (0..accounts)
        .map(|a| {
            let mut item = std::collections::HashMap::from([
                (
                    "pk".to_owned(),
                    AttributeValue::S(format!("T#{tenant}#ACCOUNTS")),
                ),
                ("sk".to_owned(), AttributeValue::S(format!("A#acct-{a:06}"))),
                (
                    "events".to_owned(),
                    AttributeValue::N(PER_ACCOUNT.to_string()),
                ),
            ]);
            if a < expired_accounts {
                item.insert(
                    "expiry_key".into(),
                    AttributeValue::S(format!("T#{tenant}#EXPIRY")),
                );
                item.insert("purge_at".into(), AttributeValue::N(long_ago.to_string()));
                item.insert("expires_at".into(), AttributeValue::N(long_ago.to_string()));
                item.insert(
                    "relationship_end".into(),
                    AttributeValue::S("2023-01-01".into()),
                );
            }
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("put"),
                )
                .build()
        })
        .collect();
    write_all(stack, &stack.table("AggregatesTable"), entries).await;
    let tenants = stack.table("TenantsTable");
    stack.proxy.reset_counts();
    let started = std::time::Instant::now();
    let report = stack
        .local_api()
        .invoke("PurgeFunction", json!({"tenant": tenant}))
        .await
        .expect("the purge runs");
    let wall = started.elapsed();
    assert_eq!(report["complete"], true, "{report}");
    let deleted: u64 = report["tenants"][0]["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            r["counts"]["items"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
        })
        .sum();
    let expired_items = expired_accounts * (PER_ACCOUNT + 1);
    assert_eq!(deleted, expired_items as u64, "{report}");
    let counts: BTreeMap<String, usize> = stack
        .proxy
        .counts_except(&[tenants.as_str()])
        .into_iter()
        .collect();
    let total: usize = counts.values().sum();
    let batches = counts.get("BatchWriteItem").copied().unwrap_or(0);
    let deletes = batches + counts.get("DeleteItem").copied().unwrap_or(0);
    // Index pages: by_expiry (1,000 keys a page), the raw-event sweep's 16
    // by_month shards, and one version listing each of datasets and bundles.
    let index_pages = expired_accounts / 1000 + 1 + 16 + 2;
    let floor = expired_items.div_ceil(25) + index_pages;
    let units = stack.proxy.write_units();
    // Besides the deletes: per account a destruction record and its audit
    // entry; the raw-event watermark, the lease taken and given back.
    let bookkeeping = 2 * expired_accounts + 1 + 2;
    println!(
        "  {items:>7} items, {expired_items:>5} expired ({expired_accounts} accounts, 100 events and a directory entry each): \
         {total} requests {counts:?} (tenants table apart: tenant record, lease, watermark); \
         {deletes} delete requests against ceil({expired_items}/25) = {}; floor {floor} requests with {index_pages} index pages and listings; \
         {} write units = {expired_items} deleted items + {expired_accounts} alert-state deletes (none there) + {bookkeeping} bookkeeping \
         (index deletes not seen by the proxy); wall {:.1} s against the emulator",
        expired_items.div_ceil(25),
        units.table,
        wall.as_secs_f64()
    );
    // Per account: its events in whole batches, the entry and the alert state
    // by key; reads: one consistent GetItem and three partition queries.
    assert_eq!(batches, expired_accounts * PER_ACCOUNT.div_ceil(25));
    assert_eq!(
        units.table,
        (expired_items + expired_accounts + bookkeeping) as u64,
        "every item once"
    );
    // Answered, not sent: the SDK sends again an answer the emulator gave late.
    assert_eq!(
        stack.proxy.answered("Query"),
        index_pages - 2 + 4 * expired_accounts,
        "by_expiry, 16 by_month; per account 3 partitions and the audit chain's head"
    );
    (total, units.table)
}

/// The purge at growing table sizes with 1 % expired, and a larger table with
/// as much expired as a smaller one: the cost follows what expired.
async fn purge_costs(stack: &TestStack) {
    println!("\nretention purge (accounts past relationship + 3 years; events without subjects):");
    let (small, _) = purge_cost(stack, "purge10k", 10_000, 1).await;
    if cfg!(debug_assertions) {
        println!("  (debug build: 100,000 items are measured by ./infra/bench, in release)");
        return;
    }
    let (large_same, _) = purge_cost(stack, "purge100k1", 100_000, 1).await;
    let (large, _) = purge_cost(stack, "purge100k", 100_000, 10).await;
    assert_eq!(
        small, large_same,
        "the same expired items cost the same in a table 10 times larger"
    );
    println!(
        "  scaling: 10x the table with the same expired items: {small} -> {large_same} requests; \
         10x the expired: {large} requests (wall time grows with the table only because the emulator \
         scans it for every index query). 1,000,000 items with 1 % expired (10,100 items over 100 accounts \
         of 100 events) extrapolate to 400 BatchWriteItem + 100 x 9 per account (entry and alert state by key, \
         a consistent read of the entry, 3 partition queries, the record and its audit entry with the chain's \
         head) + 19 index pages and listings = 1,319 requests, against the floor ceil(10,100 / 25) + 19 = 423"
    );
}

/// Request r holds hour r (clients flush in time order): 10 accounts x 2 hours in all.
fn requests(prefix: &str) -> Vec<Value> {
    (0..EVENTS / PER_REQUEST)
        .map(|r| {
            let time = hours_ago(2 - r as i64, 30);
            let events: Vec<Value> = (0..PER_REQUEST)
                .map(|i| {
                    let k = r * PER_REQUEST + i;
                    json!({"id": format!("{prefix}-{k}"), "time": time, "source": "api_call",
                           "account": format!("account-{}", k % ACCOUNTS), "user": format!("user-{}", k % USERS),
                           "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200, "latency_ms": 50, "units": 1}})
                })
                .collect();
            json!({ "events": events })
        })
        .collect()
}

async fn send_all(stack: &TestStack, batches: &[Value]) -> (u64, u64) {
    let (mut accepted, mut duplicates) = (0, 0);
    for body in batches {
        let (status, response) = stack.post_events("bench", body).await;
        assert_eq!(status, 200, "{response}");
        accepted += response["accepted"].as_u64().unwrap_or(0);
        duplicates += response["duplicates"].as_u64().unwrap_or(0);
    }
    (accepted, duplicates)
}

fn print_counts(title: &str, counts: &BTreeMap<String, usize>) -> usize {
    println!("\n{title}");
    for (operation, count) in counts {
        println!("  {operation:<16} {count:>5}");
    }
    let total = counts.values().sum();
    println!("  {:<16} {total:>5}", "total");
    total
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> std::time::Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    std::time::Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

const CPU_ROUNDS: usize = 5;

/// The function's CPU per event on the real path: the ingest handler with its real
/// SDK clients (through the proxy to the emulator), on a thread of its own with a
/// single-threaded runtime, so that the SDK's connection tasks run there too and
/// nothing else does. The users are known (steady state).
fn handler_cpu_per_event(stack: &TestStack) -> std::time::Duration {
    let config = stack.stack.config(&stack.proxy.url());
    let batches: Vec<Vec<Value>> = (0..=CPU_ROUNDS)
        .map(|round| requests(&format!("cpu{round}")))
        .collect();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let mut deps = runtime
                    .block_on(vigil_ingest::Deps::connect(&config))
                    .expect("ingest dependencies");
                deps.emit_metrics = false;
                let to_request = |body: &Value| {
                    vigil_shared::mocks::json_request_as("bench", "ingest", body.to_string())
                };
                let (warm_up, measured) = batches.split_first().expect("batches");
                for body in warm_up {
                    let response = runtime.block_on(vigil_ingest::handle(&to_request(body), &deps));
                    assert_eq!(response.status_code, 200);
                }
                let requests: Vec<_> = measured.iter().flatten().map(to_request).collect();
                let start = thread_cpu();
                for request in &requests {
                    let response = runtime.block_on(vigil_ingest::handle(request, &deps));
                    assert_eq!(response.status_code, 200);
                }
                (thread_cpu() - start) / (CPU_ROUNDS * EVENTS) as u32
            })
            .join()
            .expect("cpu thread")
    })
}

#[tokio::main]
async fn main() {
    if std::env::var("VIGIL_TEST_EMULATOR").is_err() {
        eprintln!("aws_requests: VIGIL_TEST_EMULATOR is not set; run ./infra/bench");
        std::process::exit(2);
    }
    // The emulator answers a rollup query in tens of milliseconds where DynamoDB
    // takes a few: the alert evaluation gets an hour here instead of its 240 s
    // (the requests it sends are what this counts).
    let mut registry = vigil_local::Registry::standard();
    registry.register("vigil-alerts", |c| async move {
        vigil_alerts::Deps::connect(&c).await.map(|mut deps| {
            deps.job_budget = std::time::Duration::from_secs(3600);
            deps
        })
    });
    let stack = TestStack::start_with(&vigil_local::repo_template(), &registry).await;
    if std::env::var("VIGIL_BENCH_ONLY").as_deref() == Ok("export") {
        export_costs(&stack).await;
        stack.shutdown().await;
        return;
    }
    if std::env::var("VIGIL_BENCH_ONLY").as_deref() == Ok("purge") {
        purge_costs(&stack).await;
        stack.shutdown().await;
        return;
    }
    if std::env::var("VIGIL_BENCH_ONLY").as_deref() == Ok("alerts") {
        // The alert evaluation alone (its tenants seeded as the dashboard's are).
        let to = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
        seed_rollups(&stack, "dash100", 100, 90, to).await;
        if !cfg!(debug_assertions) {
            seed_rollups(&stack, "dash1000", 1000, 60, to).await;
        }
        alert_evaluation_costs(&stack).await;
        stack.shutdown().await;
        return;
    }
    let tenants = stack.table("TenantsTable");
    // The authorizer's reads and writes are reported on their own, below.
    let ingest_counts = |stack: &TestStack| -> BTreeMap<String, usize> {
        stack
            .proxy
            .counts_except(&[tenants.as_str()])
            .into_iter()
            .collect()
    };
    let account_hours = ACCOUNTS * (EVENTS / PER_REQUEST);
    let per_account_hour = EVENTS / account_hours;
    // Floors, computed from the workload alone: every event written once, every
    // account-hour's aggregate updated once per request that brings it events.
    let transactions_floor = account_hours
        * per_account_hour
            .div_ceil(vigil_shared::adapters::dynamo::ingest::EVENT_ACTIONS_PER_TRANSACTION);
    let batch_floor = EVENTS.div_ceil(25) + 4 * account_hours;
    // Event + 2 index items, and 4 updates (hour, day, month, directory entry) per account-hour.
    let units_floor = EVENTS + 2 * EVENTS + 4 * account_hours;
    println!("{EVENTS} api_call events, {PER_REQUEST} per request, {ACCOUNTS} accounts, {USERS} users, {account_hours} account-hours");
    println!(
        "floors: exact design {transactions_floor} TransactWriteItems (96 events + 4 rollup updates each); \
         non-exact batch writes {batch_floor} requests ({} BatchWriteItem + 4 x {account_hours} UpdateItem); \
         write units {units_floor} without transactions (1 per event, 1 per index item, 1 per update)",
        EVENTS.div_ceil(25)
    );
    let events_table = stack.table("EventsTable");
    stack.proxy.set_indexes(
        &events_table,
        vec![
            vec!["subject_key".into(), "ts".into()],
            vec!["month_key".into(), "ts".into()],
        ],
    );

    let batches = requests("first");
    let (accepted, _) = send_all(&stack, &batches).await;
    assert_eq!(accepted, EVENTS as u64);
    let first = ingest_counts(&stack);
    let first_total = print_counts("first sight (every user new):", &first);

    stack.proxy.reset_counts();
    let (accepted, _) = send_all(&stack, &requests("second")).await;
    assert_eq!(accepted, EVENTS as u64);
    let steady = ingest_counts(&stack);
    let steady_total = print_counts("steady state (users known):", &steady);
    let units = stack.proxy.write_units();
    println!(
        "  write units      {:>5} (table {}, indexes {}: events x2 in a transaction)",
        units.total(),
        units.table,
        units.indexes
    );

    stack.proxy.reset_counts();
    let (_, duplicates) = send_all(&stack, &batches).await;
    assert_eq!(duplicates, EVENTS as u64);
    let resend = ingest_counts(&stack);
    let resend_total = print_counts(
        "resend of the first 1,000 (all duplicates: each transaction cancelled):",
        &resend,
    );

    println!(
        "\nper 1,000 events: transactions {} (floor {transactions_floor}); all requests: first sight {first_total}, steady {steady_total}, resend {resend_total}; write units {} (floor without transactions {units_floor})",
        steady.get("TransactWriteItems").copied().unwrap_or(0),
        units.total()
    );
    println!(
        "today's design before this change (BatchGetItem check + BatchWriteItem + UpdateItem, \
         not exact under concurrency; measured at commit aad0cb6, release): steady {BEFORE_REQUESTS} \
         requests, {BEFORE_WRITE_UNITS} write units (no indexes), {BEFORE_CPU_US_PER_EVENT} us CPU per event"
    );
    assert_eq!(
        steady.get("TransactWriteItems").copied(),
        Some(transactions_floor)
    );
    assert_eq!(steady.get("BatchWriteItem"), None);
    assert_eq!(
        steady.get("UpdateItem"),
        None,
        "aggregates are updated in the transactions"
    );
    // 2 units per event put and per update (4 per account-hour) in a transaction; 1 per index item.
    assert_eq!(
        units.table,
        2 * EVENTS as u64 + 2 * 4 * account_hours as u64
    );
    assert_eq!(units.indexes, 2 * EVENTS as u64);
    assert_eq!(
        resend.get("TransactWriteItems").copied(),
        Some(transactions_floor),
        "a resend costs one cancelled transaction per chunk"
    );
    assert_eq!(stack.proxy.write_units().total(), 0, "and writes nothing");

    // Authorizer: one GetItem per uncached request, at most one UpdateItem per key per hour.
    stack.proxy.reset_counts();
    const KEYS: usize = 5;
    for k in 0..KEYS {
        let key = stack
            .issue_key("bench", &[vigil_shared::domain::access::Scope::Read])
            .await;
        for _ in 0..3 {
            let (status, _) = stack
                .call(
                    reqwest::Method::GET,
                    "/v1/accounts/account-0/usage",
                    Some(&key),
                    None,
                )
                .await;
            assert_eq!(status, 200, "key {k}");
        }
    }
    let (reads, writes) = (
        stack.proxy.count_on("BatchGetItem", &tenants),
        stack.proxy.count_on("UpdateItem", &tenants),
    );
    println!("\nauthorizer: {KEYS} keys x 3 requests: {reads} BatchGetItem (key and tenant record, one per uncached request), {writes} UpdateItem (last use, once per key per hour)");
    assert_eq!(reads, KEYS);
    assert_eq!(writes, KEYS);

    let calls = stack.counted_calls().await;
    assert_eq!(calls, 2 * EVENTS as u64, "counted once each");
    let cpu = handler_cpu_per_event(&stack);
    let micros = cpu.as_nanos() as f64 / 1000.0;
    let comparison = if cfg!(debug_assertions) {
        "a debug build: compare the release figure of ./infra/bench".to_owned()
    } else {
        format!(
            "{:.1}x less than before ({BEFORE_CPU_US_PER_EVENT} us)",
            BEFORE_CPU_US_PER_EVENT / micros
        )
    };
    println!(
        "\nfunction CPU on the real path (handler + SDK): {micros:.1} us per event, {micros:.0} ms per 1,000 events; {comparison}"
    );

    anchoring_cost(&stack).await;
    dashboard_reads(&stack).await;
    alert_evaluation_costs(&stack).await;
    privacy_costs(&stack).await;
    export_costs(&stack).await;
    purge_costs(&stack).await;

    if let Some(kib) = vigil_tests::peak_memory_kib() {
        println!(
            "peak RSS of this process (test client + local API + SDK): {} MiB",
            kib / 1024
        );
    }
    stack.shutdown().await;
}
