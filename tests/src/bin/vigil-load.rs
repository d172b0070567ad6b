//! `vigil-load`: a bounded load test of the local ingestion route, run from its
//! own process by `./infra/load` (a benchmark, not a pass/fail test).
//!
//! For a fixed duration, `--concurrency` clients each send batches of
//! `--batch` new events (unique ids, over `--accounts` accounts, within the
//! last hour) to `POST /v1/events`, then resend a sample of what was accepted.
//! It prints events per second and p50/p99 latency, then checks in the
//! emulator that nothing was lost or counted twice: every event (each sent
//! once) was answered `accepted`, the tenant's stored events equal them, and
//! the hourly aggregates sum to exactly them. (An SDK retry of a transaction
//! whose answer was late is answered from its idempotency token, on AWS and in
//! the local emulator alike, so it is `accepted` too.)
//! Exits 1 on a 5xx, an unanswered request, or a loss or double count.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::stack_state::StackState;

struct Args {
    state_file: PathBuf,
    key: String,
    tenant: String,
    duration: Duration,
    concurrency: usize,
    batch: usize,
    accounts: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        state_file: ".local/stack.json".into(),
        key: String::new(),
        tenant: String::new(),
        duration: Duration::from_secs(20),
        concurrency: 8,
        batch: 50,
        accounts: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag}: a value is expected"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: expected a number"))
        };
        match flag.as_str() {
            "--state-file" => args.state_file = value()?.into(),
            "--key" => args.key = value()?,
            "--tenant" => args.tenant = value()?,
            "--duration" => args.duration = Duration::from_secs(number(value()?)?),
            "--concurrency" => args.concurrency = number(value()?)? as usize,
            "--batch" => args.batch = number(value()?)? as usize,
            "--accounts" => args.accounts = number(value()?)?.max(1) as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.key.is_empty() || args.tenant.is_empty() {
        return Err("--key and --tenant are required".into());
    }
    Ok(args)
}

#[derive(Default)]
struct Tally {
    requests: usize,
    latencies_us: Vec<u64>,
    accepted: usize,
    duplicates: usize,
    other: usize,
    server_errors: usize,
    unanswered: usize,
    accepted_batches: Vec<Value>,
}

fn batch(worker: usize, round: usize, size: usize, accounts: usize, now: OffsetDateTime) -> Value {
    let events: Vec<Value> = (0..size)
        .map(|i| {
            let time = now - time::Duration::minutes(((round * size + i) % 50) as i64);
            json!({
                "id": format!("w{worker}-r{round}-e{i}"),
                "time": time.format(&Rfc3339).unwrap_or_default(),
                "source": "api_call",
                // A batch per account, as a tenant's gateway would flush them.
                "account": format!("load-{}", (worker * 7 + round) % accounts),
                "user": format!("user-{}", i % 10),
                "data": {"endpoint": "/v1/pay", "method": "POST", "status": 200 + (i % 3) as u16 * 100, "latency_ms": 20 + i as u64, "units": 1}
            })
        })
        .collect();
    json!({ "events": events })
}

async fn client(
    http: reqwest::Client,
    url: String,
    key: String,
    worker: usize,
    args: Arc<Args>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let now = OffsetDateTime::now_utc();
    let mut round = 0;
    while Instant::now() < until {
        let body = batch(worker, round, args.batch, args.accounts, now);
        round += 1;
        let started = Instant::now();
        let sent = http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        tally.requests += 1;
        let Ok(response) = sent else {
            tally.unanswered += 1;
            continue;
        };
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        if status >= 500 {
            tally.server_errors += 1;
            continue;
        }
        let count = |name: &str| answer[name].as_u64().unwrap_or(0) as usize;
        tally.accepted += count("accepted");
        tally.duplicates += count("duplicates");
        tally.other += count("rejected") + count("failed");
        if round % 10 == 1 {
            tally.accepted_batches.push(body);
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

async fn scan_count(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    prefix: &str,
    sort_prefix: &str,
    counter: Option<&str>,
) -> (usize, u64) {
    let (mut items, mut sum) = (0, 0);
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :p) AND begins_with(sk, :s)")
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
            .expression_attribute_values(":s", AttributeValue::S(sort_prefix.to_owned()))
            .limit(500)
            .set_exclusive_start_key(start)
            .send()
            .await;
        let Ok(out) = out else { return (usize::MAX, 0) };
        for item in out.items() {
            items += 1;
            if let Some(AttributeValue::N(n)) = counter.and_then(|c| item.get(c)) {
                sum += n.parse::<u64>().unwrap_or(0);
            }
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return (items, sum);
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => Arc::new(args),
        Err(error) => {
            eprintln!("vigil-load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let state = match StackState::read(&args.state_file) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("vigil-load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{}/v1/events", state.api_url);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    println!(
        "load: {} clients x batches of {} events for {} s against {url}",
        args.concurrency,
        args.batch,
        args.duration.as_secs()
    );
    let started = Instant::now();
    let until = started + args.duration;
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            tokio::spawn(client(
                http.clone(),
                url.clone(),
                args.key.clone(),
                w,
                args.clone(),
                until,
            ))
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let Ok(t) = worker.await else { continue };
        total.requests += t.requests;
        total.latencies_us.extend(t.latencies_us);
        total.accepted += t.accepted;
        total.duplicates += t.duplicates;
        total.other += t.other;
        total.server_errors += t.server_errors;
        total.unanswered += t.unanswered;
        total.accepted_batches.extend(t.accepted_batches);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    println!(
        "requests {} ({} unanswered, {} 5xx); events accepted {} ({:.0} events/s, {:.1} requests/s); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total.requests,
        total.unanswered,
        total.server_errors,
        total.accepted,
        total.accepted as f64 / elapsed,
        total.requests as f64 / elapsed,
        percentile(&total.latencies_us, 0.5),
        percentile(&total.latencies_us, 0.99),
        percentile(&total.latencies_us, 1.0),
    );

    // A resend of a sample: every event must come back as a duplicate.
    let mut resent = 0;
    let mut resend_duplicates = 0;
    for body in &total.accepted_batches {
        let Ok(response) = http
            .post(&url)
            .bearer_auth(&args.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
        else {
            continue;
        };
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        resent += body["events"].as_array().map_or(0, Vec::len);
        resend_duplicates += answer["duplicates"].as_u64().unwrap_or(0) as usize;
    }

    let sdk = vigil_shared::aws::sdk_config(
        Some(&state.emulator),
        Some(&state.region),
        vigil_shared::retry::RetryPolicy::default(),
    )
    .await;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let table = |id: &str| state.resources.get(id).cloned().unwrap_or_default();
    let prefix = format!("T#{}#A#", args.tenant);
    let (stored, _) = scan_count(&db, &table("EventsTable"), &prefix, "E#", None).await;
    let (hours, counted) = scan_count(
        &db,
        &table("AggregatesTable"),
        &prefix,
        "H#",
        Some("events"),
    )
    .await;
    let (_, counted_days) = scan_count(
        &db,
        &table("AggregatesTable"),
        &prefix,
        "D#",
        Some("events"),
    )
    .await;
    let (_, counted_months) = scan_count(
        &db,
        &table("AggregatesTable"),
        &prefix,
        "M#",
        Some("events"),
    )
    .await;
    println!(
        "check: accepted {} · stored {} · counted in {} hourly aggregates {} (days {}, months {}) · resent {} → {} duplicates",
        total.accepted, stored, hours, counted, counted_days, counted_months, resent, resend_duplicates
    );
    let mut problems: HashMap<&str, String> = HashMap::new();
    if total.server_errors > 0 || total.unanswered > 0 {
        problems.insert(
            "answers",
            format!(
                "{} 5xx, {} unanswered",
                total.server_errors, total.unanswered
            ),
        );
    }
    if stored != total.accepted {
        problems.insert(
            "lost or extra",
            format!("{} stored for {} accepted", stored, total.accepted),
        );
    }
    if counted_days != counted || counted_months != counted {
        problems.insert(
            "rollups",
            format!("hours {counted}, days {counted_days}, months {counted_months}"),
        );
    }
    if counted != total.accepted as u64 {
        problems.insert(
            "counted",
            format!("{} counted for {} accepted", counted, total.accepted),
        );
    }
    if resend_duplicates != resent || total.duplicates > 0 || total.other > 0 {
        problems.insert(
            "duplicates",
            format!(
                "resend {resend_duplicates}/{resent} duplicates; {} events sent once answered duplicate, {} rejected or failed",
                total.duplicates, total.other
            ),
        );
    }
    if problems.is_empty() {
        println!("ok: every request answered, no 5xx, nothing lost, nothing counted twice");
        ExitCode::SUCCESS
    } else {
        for (what, detail) in problems {
            eprintln!("vigil-load: {what}: {detail}");
        }
        ExitCode::FAILURE
    }
}
