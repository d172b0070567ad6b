//! One export run, in its own process, for the benchmark: configured from the
//! environment exactly as the Lambda is (`VIGIL_*`, `AWS_ENDPOINT_URL`), with
//! an hour's budget (the emulator is slow), its input as the first argument.
//! With `--generated N` as second argument, the month's N events are generated
//! page by page in this process instead of read from the `by_month` index (the
//! emulator scans the whole table for every index page: a 1,000,000-event
//! month would take hours there); everything else (KMS, S3, the run record) is
//! the emulator's. Prints the report, then one line of what the process used:
//! `{"peak_rss_kib": .., "peak_rss_before_export_kib": .., "cpu_ms": .., "wall_ms": ..}`.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use vigil_shared::app::export::{ExportRequest, Exporter};
use vigil_shared::config::Config;
use vigil_shared::domain::export::ExportMonth;
use vigil_shared::domain::{AccountId, EventData, EventId, StoredEvent, SubjectId, TenantId};
use vigil_shared::keys;
use vigil_shared::ports::{MonthEvents, StoreError};

/// Accounts and users of a generated month (as the benchmark seeds them).
const ACCOUNTS: usize = 200;
const USERS: usize = 2_000;
const PAGE: usize = 1_000;

/// `events` API calls over the month, spread over the accounts; each shard's
/// share generated a page at a time, never held whole.
struct Generated {
    events: usize,
    month: ExportMonth,
    by_shard: Vec<Vec<AccountId>>,
}

impl Generated {
    fn new(events: usize, month: ExportMonth) -> Self {
        let mut by_shard = vec![Vec::new(); keys::MONTH_SHARDS as usize];
        for a in 0..ACCOUNTS {
            let account = AccountId::parse(&format!("acct-{a:03}")).expect("account");
            by_shard[keys::month_shard(&account) as usize].push(account);
        }
        Self {
            events,
            month,
            by_shard,
        }
    }
}

impl MonthEvents for Generated {
    type Cursor = usize;

    async fn month_page(
        &self,
        _tenant: &TenantId,
        _month: &str,
        shard: u32,
        start: Option<usize>,
        _now: OffsetDateTime,
    ) -> Result<(Vec<StoredEvent>, Option<usize>), StoreError> {
        let accounts = &self.by_shard[shard as usize];
        let total = self.events * accounts.len() / ACCOUNTS;
        let from = start.unwrap_or(0);
        let to = (from + PAGE).min(total);
        let span = (self.month.end() - self.month.start()).whole_microseconds() as i64;
        let events = (from..to)
            .map(|j| StoredEvent {
                id: EventId::parse(&format!("s{shard}-{j}")).expect("id"),
                time: self.month.start()
                    + time::Duration::microseconds(j as i64 * (span / total.max(1) as i64)),
                account: accounts[j % accounts.len()].clone(),
                subject: Some(SubjectId::from_stored(format!(
                    "p{:04}",
                    (j * 7 + shard as usize) % USERS
                ))),
                data: EventData::ApiCall {
                    endpoint: ["/v1/pay", "/v1/refunds/{id}", "/v1/customers"][j % 3].to_owned(),
                    method: "POST",
                    status: [200, 200, 201, 404, 500][j % 5],
                    latency_ms: (j as u64 * 37) % 3_000,
                    units: j as u64 % 7 + 1,
                },
                withheld: Default::default(),
            })
            .collect();
        Ok((events, (to < total).then_some(to)))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let input: serde_json::Value = args
        .get(1)
        .map(|a| serde_json::from_str(a).expect("the input is JSON"))
        .unwrap_or_default();
    let generated: Option<usize> = match args.get(2).map(String::as_str) {
        Some("--generated") => Some(
            args.get(3)
                .and_then(|n| n.parse().ok())
                .expect("--generated N"),
        ),
        _ => None,
    };
    let mut deps = vigil_export::Deps::connect(&Config::from_env())
        .await
        .expect("configured");
    deps.job_budget = Duration::from_secs(3600);
    // The process's peak before the export (runtime, SDK clients, TLS): what
    // the export adds is the difference.
    let before_kib = vigil_tests::peak_memory_kib().unwrap_or(0);
    let started = Instant::now();
    let report = match generated {
        None => {
            let input = serde_json::from_value(input).expect("an export input");
            serde_json::to_value(
                vigil_export::export(&deps, input)
                    .await
                    .expect("the export runs"),
            )
            .expect("report")
        }
        Some(events) => {
            let month = ExportMonth::parse(input["month"].as_str().expect("month")).expect("month");
            let Exporter {
                subjects,
                directory,
                runs,
                tenants,
                bucket,
                kms,
                pseudonym_key_id,
                code_version,
                ..
            } = deps.exporter;
            let exporter = Exporter {
                events: Generated::new(events, month),
                subjects,
                directory,
                runs,
                tenants,
                bucket,
                kms,
                pseudonym_key_id,
                code_version,
            };
            let request = ExportRequest {
                tenant: TenantId::parse(input["tenant"].as_str().expect("tenant")).expect("tenant"),
                month,
                now: OffsetDateTime::now_utc(),
                rerun: true,
                deadline: Instant::now() + Duration::from_secs(3600),
                max_shards: None,
                holder: "bench".into(),
            };
            let report = exporter.run(&request).await.expect("the export runs");
            serde_json::json!({"tenants": [report]})
        }
    };
    let wall = started.elapsed();
    println!("{}", serde_json::to_string(&report).expect("report"));
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    println!(
        "{}",
        serde_json::json!({
            "peak_rss_kib": usage.ru_maxrss,
            "peak_rss_before_export_kib": before_kib,
            "cpu_ms": ms(usage.ru_utime) + ms(usage.ru_stime),
            "wall_ms": wall.as_millis() as u64,
        })
    );
}
