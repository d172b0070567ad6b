//! The dashboard over real HTTP: account contracts, the accounts list and the
//! account page, checked against figures the test computes itself from the
//! events it sent (its own percentile, window and health arithmetic).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::TenantId;
use vigil_shared::ports::AuditLog;
use vigil_tests::{n, s, Fault, TestStack};

/// One event the test sends, with what the test needs to know of it.
#[derive(Clone)]
struct Sent {
    account: &'static str,
    day: Date,
    body: Value,
}

fn day_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn time_text(d: Date, hour: u8, minute: u8) -> String {
    format!("{}T{hour:02}:{minute:02}:00Z", day_text(d))
}

/// The window the test reads: the 7 days ending on the 3rd of last month, so
/// that it crosses a month boundary and lies wholly in the past.
fn test_window() -> (Date, Date) {
    let today = OffsetDateTime::now_utc().date();
    let this_month = today.replace_day(1).expect("day 1");
    let last_month = (this_month - Duration::days(1))
        .replace_day(1)
        .expect("day 1");
    let to = last_month + Duration::days(2);
    (to - Duration::days(6), to)
}

/// An api_call event: who, when, and what it measured.
#[allow(clippy::too_many_arguments)]
fn call(
    account: &'static str,
    id: String,
    day: Date,
    hour: u8,
    user: &str,
    status: u16,
    latency: u64,
    units: u64,
) -> Sent {
    Sent {
        account,
        day,
        body: json!({"id": id, "time": time_text(day, hour, 7), "source": "api_call", "account": account,
            "user": user, "data": {"endpoint": if status >= 500 { "/v1/refund" } else { "/v1/pay" },
            "method": "POST", "status": status, "latency_ms": latency, "units": units}}),
    }
}

fn other(
    account: &'static str,
    id: String,
    day: Date,
    hour: u8,
    source: &str,
    data: Value,
) -> Sent {
    Sent {
        account,
        day,
        body: json!({"id": id, "time": time_text(day, hour, 30), "source": source, "account": account, "data": data}),
    }
}

/// Two months of two stories, one single event, computed around the window.
fn scenario(from: Date, to: Date) -> Vec<Sent> {
    let mut out = Vec::new();
    let previous_from = from - Duration::days(7);
    for (i, day) in (0..14).map(|i| (i, previous_from + Duration::days(i))) {
        let current = day >= from;
        // grow: 2 calls a day before, 4 a day in the window; latency 40 ms, one slow call
        // a day; one 404 in the window (1 of 28: an error rate just over 2 %, so the
        // errors penalty is below its cap and its formula shows).
        for c in 0..(if current { 4 } else { 2 }) {
            let latency = if c == 0 { 700 } else { 40 };
            let status = if i == 7 && c == 1 { 404 } else { 200 };
            out.push(call(
                "grow",
                format!("g-{i}-{c}"),
                day,
                9 + c as u8,
                &format!("gu-{}", c % 3),
                status,
                latency,
                10,
            ));
        }
        // drop: 10 calls a day before, 3 in the window, one of them a 503.
        for c in 0..(if current { 3 } else { 10 }) {
            let status = if current && c == 0 { 503 } else { 200 };
            out.push(call(
                "drop",
                format!("d-{i}-{c}"),
                day,
                14,
                &format!("du-{c}"),
                status,
                120,
                1,
            ));
        }
    }
    // drop: a failed invoice in the window, 2 tickets opened and one solved.
    out.push(other(
        "drop",
        "d-bill".into(),
        to - Duration::days(1),
        8,
        "billing",
        json!({"invoice_id": "INV-9", "amount": 99.5, "currency": "EUR", "status": "failed"}),
    ));
    for (k, status) in ["open", "open", "open"].iter().enumerate() {
        out.push(other(
            "drop",
            format!("d-t{k}"),
            from + Duration::days(k as i64),
            10,
            "support_ticket",
            json!({"ticket_id": format!("T-{k}"), "priority": "high", "status": status}),
        ));
    }
    out.push(other(
        "drop",
        "d-t-solved".into(),
        to,
        11,
        "support_ticket",
        json!({"ticket_id": "T-0", "priority": "high", "status": "solved"}),
    ));
    // single: one call, unregistered.
    out.push(call("single", "s-1".into(), to, 12, "su-1", 404, 30, 3));
    out
}

/// The histogram bucket bound of a latency, as the contract states it.
fn bucket_bound(latency: u64) -> u64 {
    [50, 100, 250, 500, 1000, 2500]
        .into_iter()
        .find(|b| latency <= *b)
        .unwrap_or(2500)
}

fn percentile(latencies: &[u64], q: f64) -> Option<u64> {
    if latencies.is_empty() {
        return None;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(bucket_bound(sorted[rank - 1]))
}

/// What the test expects of one account's summary.
#[derive(Debug)]
struct Expected {
    calls: u64,
    previous_calls: u64,
    errors_4xx: u64,
    errors_5xx: u64,
    p50: Option<u64>,
    p95: Option<u64>,
    users: usize,
    units_month: u64,
    last_seen: Option<String>,
    billing: &'static str,
}

fn expected(sent: &[Sent], account: &str, from: Date, to: Date) -> Expected {
    let length = (to - from).whole_days() + 1;
    let previous = (from - Duration::days(length), from - Duration::days(1));
    let month_start = to.replace_day(1).expect("day 1");
    let mut e = Expected {
        calls: 0,
        previous_calls: 0,
        errors_4xx: 0,
        errors_5xx: 0,
        p50: None,
        p95: None,
        users: 0,
        units_month: 0,
        last_seen: None,
        billing: "unknown",
    };
    let mut latencies = Vec::new();
    let mut users = BTreeSet::new();
    let mut last_bill: Option<(Date, &str)> = None;
    for x in sent.iter().filter(|x| x.account == account) {
        let data = &x.body["data"];
        let is_call = x.body["source"] == "api_call";
        if is_call && (from..=to).contains(&x.day) {
            e.calls += 1;
            let status = data["status"].as_u64().expect("status");
            e.errors_4xx += u64::from((400..500).contains(&status));
            e.errors_5xx += u64::from(status >= 500);
            latencies.push(data["latency_ms"].as_u64().expect("latency"));
            users.insert(x.body["user"].as_str().expect("user").to_owned());
        }
        if is_call && (previous.0..=previous.1).contains(&x.day) {
            e.previous_calls += 1;
        }
        if is_call && (month_start..=to).contains(&x.day) {
            e.units_month += data["units"].as_u64().expect("units");
        }
        if is_call && x.day <= to && e.last_seen.as_ref().is_none_or(|d| *d < day_text(x.day)) {
            e.last_seen = Some(day_text(x.day));
        }
        if x.body["source"] == "billing" && last_bill.is_none_or(|(d, _)| d <= x.day) {
            last_bill = Some((
                x.day,
                if data["status"] == "failed" {
                    "failed"
                } else {
                    "paid"
                },
            ));
        }
    }
    e.p50 = percentile(&latencies, 0.5);
    e.p95 = percentile(&latencies, 0.95);
    e.users = users.len();
    e.billing = last_bill.map_or("unknown", |(_, b)| b);
    e
}

/// The health penalties the formula of docs/decisions/0015 gives, computed here.
fn penalties(e: &Expected, to: Date, quota: Option<u64>, open_tickets: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if e.calls == 0 {
        out.push(("silent".to_owned(), 35));
    } else if e
        .last_seen
        .as_deref()
        .is_some_and(|d| *d <= *day_text(to - Duration::days(7)))
    {
        out.push(("inactive".to_owned(), 20));
    }
    if e.previous_calls > 0 {
        let drop_pct =
            ((e.previous_calls as f64 - e.calls as f64) * 100.0 / e.previous_calls as f64).floor();
        if drop_pct >= 20.0 {
            out.push((
                "usage_drop".to_owned(),
                ((drop_pct / 2.0).floor() as u64).min(30),
            ));
        }
    }
    if e.calls > 0 {
        let over = (e.errors_4xx + e.errors_5xx) as f64 * 100.0 / e.calls as f64 - 2.0;
        if over > 0.0 {
            out.push(("errors".to_owned(), ((over * 2.0).ceil() as u64).min(20)));
        }
    }
    if e.p95.is_some_and(|p| p > 1000) {
        out.push(("latency".to_owned(), 10));
    }
    if let Some(q) = quota.filter(|q| *q > 0) {
        let share = e.units_month as f64 / q as f64;
        if share >= 1.0 {
            out.push(("quota".to_owned(), 10));
        } else if share >= 0.9 {
            out.push(("quota".to_owned(), 5));
        }
    }
    if e.billing == "failed" {
        out.push(("payment_failed".to_owned(), 30));
    }
    if open_tickets > 0 {
        out.push(("open_tickets".to_owned(), (open_tickets * 4).min(16)));
    }
    out
}

async fn register(stack: &TestStack, admin: &str, account: &str, body: Value) -> (u16, Value) {
    stack
        .call(
            Method::PUT,
            &format!("/v1/accounts/{account}"),
            Some(admin),
            Some(&body),
        )
        .await
}

async fn send(stack: &TestStack, tenant: &str, sent: &[Sent]) {
    for chunk in sent.chunks(200) {
        let events: Vec<Value> = chunk.iter().map(|x| x.body.clone()).collect();
        let (status, body) = stack
            .post_events(tenant, &json!({ "events": events }))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
}

fn check_summary(row: &Value, e: &Expected, quota: Option<u64>, open_tickets: u64, to: Date) {
    let s = &row["summary"];
    let who = row["account"].as_str().unwrap_or_default();
    assert_eq!(s["calls"], e.calls, "{who} calls");
    assert_eq!(
        s["previous_calls"], e.previous_calls,
        "{who} previous calls"
    );
    let trend = (e.previous_calls > 0)
        .then(|| (e.calls as f64 - e.previous_calls as f64) / e.previous_calls as f64);
    assert_eq!(s["trend"].as_f64(), trend, "{who} trend");
    assert_eq!(s["errors_4xx"], e.errors_4xx, "{who}");
    assert_eq!(s["errors_5xx"], e.errors_5xx, "{who}");
    let rate = (e.calls > 0).then(|| (e.errors_4xx + e.errors_5xx) as f64 / e.calls as f64);
    assert_eq!(s["error_rate"].as_f64(), rate, "{who} error rate");
    assert_eq!(s["latency_p50_ms"].as_u64(), e.p50, "{who} p50");
    assert_eq!(s["latency_p95_ms"].as_u64(), e.p95, "{who} p95");
    // A handful of users: the sketch's linear counting is exact or off by one.
    let users = s["active_users"].as_u64().expect("users") as i64;
    assert!(
        (users - e.users as i64).abs() <= 1,
        "{who} users {users} vs {}",
        e.users
    );
    assert_eq!(s["units_billing_month"], e.units_month, "{who} units");
    let share = quota
        .filter(|q| *q > 0)
        .map(|q| e.units_month as f64 / q as f64);
    assert_eq!(s["quota_share"].as_f64(), share, "{who} quota share");
    assert_eq!(
        s["last_seen"].as_str().map(str::to_owned),
        e.last_seen,
        "{who} last seen"
    );
    assert_eq!(s["billing_status"], e.billing, "{who} billing");
    assert_eq!(row["open_tickets"], open_tickets, "{who} tickets");
    let want = penalties(e, to, quota, open_tickets);
    let got: Vec<(String, u64)> = s["health"]["penalties"]
        .as_array()
        .expect("penalties")
        .iter()
        .map(|p| {
            (
                p["signal"].as_str().unwrap_or_default().to_owned(),
                p["points"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, want, "{who} penalties");
    let score = 100u64.saturating_sub(want.iter().map(|(_, p)| p).sum());
    assert_eq!(s["health"]["score"], score, "{who} score");
    let band = if score >= 75 {
        "green"
    } else if score >= 50 {
        "amber"
    } else {
        "red"
    };
    assert_eq!(s["health"]["band"], band, "{who} band");
    for p in s["health"]["penalties"].as_array().expect("penalties") {
        assert!(
            !p["reason"].as_str().unwrap_or_default().is_empty(),
            "{who}: a penalty says why"
        );
    }
}

#[tokio::test]
async fn summaries_series_and_pages_match_the_events_sent() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("dash", &[Scope::Admin]).await;
    let read = stack.issue_key("dash", &[Scope::Read]).await;
    let (from, to) = test_window();
    let contracts = [
        (
            "grow",
            json!({"name": "Grow Ltd", "plan": "growth", "monthly_quota": 30, "tags": ["eu", "key"]}),
        ),
        (
            "drop",
            json!({"name": "Drop SA", "plan": "starter", "monthly_quota": 1000, "relationship_start": "2024-01-01", "tags": ["eu"]}),
        ),
        (
            "empty",
            json!({"name": "Empty Inc", "plan": "starter", "monthly_quota": 100}),
        ),
    ];
    for (account, body) in &contracts {
        let (status, answer) = register(&stack, &admin, account, body.clone()).await;
        assert_eq!(status, 201, "{answer}");
    }
    let sent = scenario(from, to);
    send(&stack, "dash", &sent).await;

    let query = format!("/v1/accounts?from={}&to={}", day_text(from), day_text(to));
    let (status, list) = stack.call(Method::GET, &query, Some(&read), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 4);
    assert_eq!(
        list["window"],
        json!({"from": day_text(from), "to": day_text(to), "days": 7})
    );
    let rows = list["accounts"].as_array().expect("accounts");
    let row = |a: &str| {
        rows.iter()
            .find(|r| r["account"] == a)
            .cloned()
            .unwrap_or_else(|| panic!("{a} listed"))
    };
    let quota = |a: &str| {
        contracts
            .iter()
            .find(|(n, _)| *n == a)
            .and_then(|(_, b)| b["monthly_quota"].as_u64())
    };
    // grow: no tickets; drop: 3 opened, 1 solved; single: unregistered.
    for (account, tickets) in [("grow", 0), ("drop", 2), ("single", 0), ("empty", 0)] {
        let e = expected(&sent, account, from, to);
        check_summary(&row(account), &e, quota(account), tickets, to);
    }
    assert_eq!(row("single")["registered"], false);
    assert!(row("single").get("name").is_none());
    assert_eq!(row("grow")["registered"], true);
    assert_eq!(row("grow")["tags"], json!(["eu", "key"]));
    // Sparkline: calls per day of the window.
    let grow_days: Vec<u64> = (0..7).map(|_| 4).collect();
    assert_eq!(row("grow")["summary"]["sparkline"], json!(grow_days));
    // Worst health first by default, ties by id.
    let scores: Vec<u64> = rows
        .iter()
        .map(|r| r["summary"]["health"]["score"].as_u64().unwrap_or(0))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");

    // Pages of one, concatenated, are the whole list in the same order.
    let mut paged = Vec::new();
    let mut next = format!("{query}&limit=1");
    loop {
        let (status, page) = stack.call(Method::GET, &next, Some(&read), None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["accounts"].as_array().map(Vec::len), Some(1));
        paged.push(page["accounts"][0]["account"].clone());
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{query}&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    let all: Vec<Value> = rows.iter().map(|r| r["account"].clone()).collect();
    assert_eq!(paged, all);

    // Sorted by calls, both ways; filtered by band, plan and tag.
    let ids = |v: &Value| -> Vec<String> {
        v["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|r| r["account"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (_, by_calls) = stack
        .call(
            Method::GET,
            &format!("{query}&sort=calls"),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(ids(&by_calls), ["grow", "drop", "single", "empty"]);
    let (_, by_calls_asc) = stack
        .call(
            Method::GET,
            &format!("{query}&sort=calls&order=asc"),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(ids(&by_calls_asc), ["empty", "single", "drop", "grow"]);
    let (_, starter) = stack
        .call(
            Method::GET,
            &format!("{query}&plan=starter&sort=account"),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(ids(&starter), ["drop", "empty"]);
    let (_, key_tag) = stack
        .call(Method::GET, &format!("{query}&tag=key"), Some(&read), None)
        .await;
    assert_eq!(ids(&key_tag), ["grow"]);
    let (_, red) = stack
        .call(Method::GET, &format!("{query}&band=red"), Some(&read), None)
        .await;
    let red_ids = ids(&red);
    let want_red: Vec<String> = rows
        .iter()
        .filter(|r| r["summary"]["health"]["band"] == "red")
        .map(|r| r["account"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!red_ids.is_empty());
    assert_eq!(red_ids, want_red);

    // The account page: a dense day series, totals, errors by class, endpoints, recent events.
    let (status, page) = stack
        .call(
            Method::GET,
            &format!(
                "/v1/accounts/drop?from={}&to={}",
                day_text(from),
                day_text(to)
            ),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let series = page["series"].as_array().expect("series");
    assert_eq!(series.len(), 7);
    for (i, point) in series.iter().enumerate() {
        let day = from + Duration::days(i as i64);
        assert_eq!(point["bucket"], day_text(day));
        let calls: Vec<&Sent> = sent
            .iter()
            .filter(|x| x.account == "drop" && x.day == day && x.body["source"] == "api_call")
            .collect();
        assert_eq!(point["calls"], calls.len(), "{day}");
        let lat: Vec<u64> = calls
            .iter()
            .map(|x| x.body["data"]["latency_ms"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(
            point["latency_p95_ms"].as_u64(),
            percentile(&lat, 0.95),
            "{day}"
        );
        assert_eq!(
            point["errors_5xx"],
            calls
                .iter()
                .filter(|x| x.body["data"]["status"] == 503)
                .count()
        );
        assert_eq!(point["units"], calls.len(), "{day}: 1 unit each");
    }
    let e = expected(&sent, "drop", from, to);
    assert_eq!(page["totals"]["calls"], e.calls);
    assert_eq!(
        page["errors_by_class"],
        json!({"ok": e.calls - e.errors_5xx - e.errors_4xx, "client_4xx": e.errors_4xx, "server_5xx": e.errors_5xx})
    );
    assert_eq!(page["plan"], "starter");
    assert_eq!(page["relationship_start"], "2024-01-01");
    assert_eq!(page["alerts"], json!([]));
    // Top endpoints of the months the range touches: every call of drop in them.
    let month_of = |d: Date| (d.year(), d.month());
    let in_months = |x: &&Sent| {
        x.account == "drop"
            && x.body["source"] == "api_call"
            && month_of(x.day) >= month_of(from)
            && month_of(x.day) <= month_of(to)
    };
    let pay = sent
        .iter()
        .filter(in_months)
        .filter(|x| x.body["data"]["endpoint"] == "/v1/pay")
        .count();
    let refund = sent
        .iter()
        .filter(in_months)
        .filter(|x| x.body["data"]["endpoint"] == "/v1/refund")
        .count();
    assert_eq!(
        page["top_endpoints"]["endpoints"],
        json!([{"endpoint": "/v1/pay", "calls": pay}, {"endpoint": "/v1/refund", "calls": refund}])
    );
    // Recent support and billing events, newest first, without any subject.
    let recent = page["recent_events"].as_array().expect("recent");
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0]["reference"], "T-0");
    assert_eq!(recent[0]["status"], "solved");
    assert_eq!(recent[1]["reference"], "INV-9");
    assert_eq!(recent[1]["amount"], "99.5");
    let times: Vec<&str> = recent.iter().filter_map(|r| r["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert!(!page.to_string().contains("du-"), "no user id on the page");

    // An hour series over the same days: 168 dense hours whose calls add up.
    let (status, hours) = stack
        .call(
            Method::GET,
            &format!(
                "/v1/accounts/drop?from={}&to={}&granularity=hour",
                day_text(from),
                day_text(to)
            ),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(status, 200, "{hours}");
    let points = hours["series"].as_array().expect("series");
    assert_eq!(points.len(), 7 * 24);
    let total: u64 = points
        .iter()
        .map(|p| p["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, e.calls);
    let at_14: u64 = points
        .iter()
        .filter(|p| p["bucket"].as_str().is_some_and(|b| b.ends_with("T14")))
        .map(|p| p["calls"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(at_14, e.calls, "every drop call is at 14:07");

    // The empty account: registered, nothing sent, every figure zero.
    let (status, empty) = stack
        .call(
            Method::GET,
            &format!(
                "/v1/accounts/empty?from={}&to={}",
                day_text(from),
                day_text(to)
            ),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(status, 200, "{empty}");
    assert!(empty["series"]
        .as_array()
        .expect("series")
        .iter()
        .all(|p| p["calls"] == 0));
    assert_eq!(
        empty["summary"]["health"]["penalties"][0]["signal"],
        "silent"
    );
    assert_eq!(empty["recent_events"], json!([]));
    stack.shutdown().await;
}

#[tokio::test]
async fn contracts_are_validated_stored_and_audited() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("acct", &[Scope::Admin]).await;
    let read = stack.issue_key("acct", &[Scope::Read]).await;
    let body = json!({"name": "Acme Corp", "plan": "growth", "monthly_quota": 5000,
        "relationship_start": "2025-01-01", "relationship_end": "2026-06-30", "tags": ["eu", "eu"]});
    let (status, created) = register(&stack, &admin, "acme", body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tags"], json!(["eu"]));
    assert_eq!(created["relationship_end"], "2026-06-30");
    // Replacing it: 200, and fields left out are cleared.
    let (status, replaced) = register(
        &stack,
        &admin,
        "acme",
        json!({"name": "Acme Corp", "plan": "scale"}),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    let (status, page) = stack
        .call(Method::GET, "/v1/accounts/acme", Some(&read), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["plan"], "scale");
    assert_eq!(page["monthly_quota"], Value::Null);
    assert_eq!(page["relationship_end"], Value::Null);
    // The end date drives retention: end of its day + 3 years (and a leap day).
    register(&stack, &admin, "acme", body.clone()).await;
    let items = stack.scan("AggregatesTable").await;
    let entry = items
        .iter()
        .find(|i| s(i, "sk") == Some("A#acme"))
        .expect("directory entry");
    assert_eq!(s(entry, "pk"), Some("T#acct#ACCOUNTS"));
    let end = time::macros::datetime!(2026-07-01 00:00 UTC) + Duration::days(3 * 365 + 1);
    assert_eq!(n(entry, "expires_at"), Some(end.unix_timestamp() as u64));
    // Audited by account id, without the name.
    let entries = stack
        .audit()
        .entries(&TenantId::parse("acct").expect("tenant"), None, None)
        .await
        .expect("audit");
    let actions: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.action.starts_with("account."))
        .map(|e| (e.action.as_str(), e.target.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("account.register", Some("acme")),
            ("account.update", Some("acme")),
            ("account.update", Some("acme"))
        ]
    );
    assert!(!format!("{entries:?}").contains("Acme Corp"));

    // Bad bodies: a 400 naming the field, never the value, nothing stored.
    let before = stack.scan("AggregatesTable").await.len();
    let secret = "jane.doe@example.com";
    let cases = [
        (json!({"name": secret}), "name"),
        (json!({"plan": "growth"}), "name"),
        (json!({"name": "X", "plan": "Gold Plan"}), "plan"),
        (json!({"name": "X", "monthly_quota": -5}), "monthly_quota"),
        (
            json!({"name": "X", "monthly_quota": "lots"}),
            "monthly_quota",
        ),
        (
            json!({"name": "X", "relationship_start": "2026-02-30"}),
            "relationship_start",
        ),
        (
            json!({"name": "X", "relationship_start": "2026-03-01", "relationship_end": "2026-02-01"}),
            "relationship_end",
        ),
        (json!({"name": "X", "tags": ["ok", secret]}), "tags[1]"),
        (json!({"name": "X", "owner": secret}), "body"),
    ];
    for (bad, field) in cases {
        let (status, answer) = register(&stack, &admin, "other", bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {answer}");
        assert_eq!(answer["error"]["field"], field, "{bad} -> {answer}");
        assert!(!answer.to_string().contains(secret), "{answer}");
    }
    let raw = stack
        .http
        .put(format!("{}/v1/accounts/other", stack.api))
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body("{\"name\": ");
    let answer = raw.send().await.expect("sent");
    assert_eq!(answer.status().as_u16(), 400);
    let huge = json!({"name": "X", "plan": "p".repeat(20_000)});
    let (status, _) = register(&stack, &admin, "other", huge).await;
    assert_eq!(status, 413);
    let (status, _) = register(&stack, &read, "other", json!({"name": "X"})).await;
    assert_eq!(status, 403, "a read key cannot register");
    let (status, _) = stack
        .call(
            Method::PUT,
            "/v1/accounts/other",
            None,
            Some(&json!({"name": "X"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, answer) = register(&stack, &admin, &"a".repeat(200), json!({"name": "X"})).await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (400, json!("account"))
    );
    assert_eq!(
        stack.scan("AggregatesTable").await.len(),
        before,
        "nothing stored"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_ranges_and_parameters_and_other_tenants_are_refused() {
    let stack = TestStack::start().await;
    let read = stack.issue_key("t-a", &[Scope::Read]).await;
    let other_read = stack.issue_key("t-b", &[Scope::Read]).await;
    let today = OffsetDateTime::now_utc().date();
    send(
        &stack,
        "t-a",
        &[call(
            "acme",
            "e-1".into(),
            today - Duration::days(1),
            10,
            "u-1",
            200,
            20,
            1,
        )],
    )
    .await;
    let d = |n: i64| day_text(today - Duration::days(n));
    let tomorrow = day_text(today + Duration::days(1));
    let list_cases = [
        (format!("from={}&to={}", d(1), d(2)), "from"),
        (format!("to={tomorrow}"), "to"),
        (format!("from={}", d(90)), "from, to"),
        ("from=2026-02-30".to_owned(), "from"),
        ("from=yesterday".to_owned(), "from"),
        ("sort=mood".to_owned(), "sort"),
        ("order=up".to_owned(), "order"),
        ("band=blue".to_owned(), "band"),
        ("plan=Gold".to_owned(), "plan"),
        ("limit=0".to_owned(), "limit"),
        ("limit=101".to_owned(), "limit"),
        ("cursor=abc".to_owned(), "cursor"),
        ("tenant=t-b".to_owned(), "query parameter tenant"),
    ];
    for (query, field) in list_cases {
        let (status, answer) = stack
            .call(
                Method::GET,
                &format!("/v1/accounts?{query}"),
                Some(&read),
                None,
            )
            .await;
        assert_eq!(status, 400, "{query} -> {answer}");
        assert_eq!(answer["error"]["field"], field, "{query}");
    }
    // A cursor of another query is refused.
    let (_, first) = stack
        .call(
            Method::GET,
            "/v1/accounts?limit=1&sort=calls",
            Some(&read),
            None,
        )
        .await;
    assert!(first["next_cursor"].is_null(), "one account, one page");
    let (status, _) = stack
        .call(
            Method::GET,
            "/v1/accounts?limit=1&sort=calls",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let detail_cases = [
        ("granularity=week".to_owned(), "granularity"),
        (format!("granularity=hour&from={}", d(31)), "from, to"),
        (format!("from={}", d(366)), "from, to"),
        (format!("to={tomorrow}"), "to"),
    ];
    for (query, field) in detail_cases {
        let (status, answer) = stack
            .call(
                Method::GET,
                &format!("/v1/accounts/acme?{query}"),
                Some(&read),
                None,
            )
            .await;
        assert_eq!(status, 400, "{query} -> {answer}");
        assert_eq!(answer["error"]["field"], field, "{query}");
    }
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme", Some(&read), None)
        .await;
    assert_eq!(status, 200, "the account exists for its tenant");
    let (status, answer) = stack
        .call(Method::GET, "/v1/accounts/acme", Some(&other_read), None)
        .await;
    assert_eq!(status, 404, "another tenant's account: {answer}");
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/nobody", Some(&read), None)
        .await;
    assert_eq!(status, 404);
    let (_, others) = stack
        .call(Method::GET, "/v1/accounts", Some(&other_read), None)
        .await;
    assert_eq!(others["total"], 0);
    let (status, answer) = stack
        .call(
            Method::GET,
            &format!("/v1/accounts/{}", "x".repeat(200)),
            Some(&read),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (400, json!("account"))
    );
    let ingest = stack.ingest_key("t-a").await;
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts", Some(&ingest), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = stack.call(Method::GET, "/v1/accounts", None, None).await;
    assert_eq!(status, 401);
    stack.shutdown().await;
}

#[tokio::test]
async fn storage_faults_answer_503_and_a_failed_ingestion_counts_nothing_anywhere() {
    let stack = TestStack::start().await;
    let read = stack.issue_key("f", &[Scope::Read]).await;
    let today = OffsetDateTime::now_utc().date();
    send(
        &stack,
        "f",
        &[call("acme", "e-1".into(), today, 0, "u-1", 200, 20, 1)],
    )
    .await;
    let table = stack.table("AggregatesTable");
    for (operation, path) in [("Query", "/v1/accounts"), ("GetItem", "/v1/accounts/acme")] {
        stack
            .proxy
            .inject_on(operation, &table, Fault::Throttle, None);
        let (status, answer) = stack.call(Method::GET, path, Some(&read), None).await;
        stack.proxy.clear_faults();
        assert_eq!(status, 503, "{operation}: {answer}");
        assert_eq!(answer["error"]["code"], "unavailable");
    }
    // Every transaction fails: the events are reported failed and no rollup moved.
    let before = stack.scan("AggregatesTable").await;
    stack
        .proxy
        .inject("TransactWriteItems", Fault::ServerError, None);
    let events: Vec<Value> = (0..3)
        .map(|i| call("acme", format!("x-{i}"), today, 0, "u-2", 200, 20, 5).body)
        .collect();
    let (status, answer) = stack.post_events("f", &json!({"events": events})).await;
    stack.proxy.clear_faults();
    assert_eq!(status, 503, "{answer}");
    let after = stack.scan("AggregatesTable").await;
    let key = |i: &vigil_tests::Item| {
        (
            s(i, "pk").map(str::to_owned),
            s(i, "sk").map(str::to_owned),
            n(i, "calls"),
            n(i, "events"),
        )
    };
    let mut a: Vec<_> = before.iter().map(key).collect();
    let mut b: Vec<_> = after.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "no hour, day, month or directory counter moved");
    assert_eq!(
        after
            .iter()
            .filter(|i| s(i, "sk").is_some_and(|k| k.starts_with("D#")))
            .count(),
        1
    );
    let by_sk: BTreeMap<String, u64> = after
        .iter()
        .filter_map(|i| Some((s(i, "sk")?.to_owned(), n(i, "calls").unwrap_or(0))))
        .collect();
    assert_eq!(
        by_sk
            .iter()
            .filter(|(k, _)| k.starts_with("D#") || k.starts_with("M#") || k.starts_with("H#"))
            .map(|(_, c)| *c)
            .collect::<Vec<_>>(),
        [1, 1, 1]
    );
    stack.shutdown().await;
}
