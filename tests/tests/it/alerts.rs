//! Alerts over the real stack: events generated and ingested through the API,
//! the evaluation invoked with an explicit `now` (tests drive time), and every
//! notification observed where a tenant would see it: on an SQS queue that an
//! EventBridge rule subscribes to the alert bus, and on a webhook receiver that
//! checks each signature. Expected alerts come from the scenarios' own numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, Weekday};
use vigil_local::{repo_template, Registry};
use vigil_shared::domain::access::Scope;
use vigil_tests::alerts::{BusQueue, WebhookReceiver};
use vigil_tests::{Fault, TestStack};

const TENANT: &str = "alerting";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

fn at(day: Date, hour: u8, minute: u8) -> OffsetDateTime {
    day.with_hms(hour, minute, 0).expect("time").assume_utc()
}

struct Rig {
    stack: TestStack,
    admin: String,
    read: String,
    queue: BusQueue,
    hook: WebhookReceiver,
}

impl Rig {
    /// A stack whose webhook client gives up after 1 s, a queue on its bus,
    /// and a webhook receiver registered with its signing secret.
    async fn start() -> Rig {
        let mut registry = Registry::standard();
        registry.register("vigil-alerts", |c| async move {
            vigil_alerts::Deps::connect_with(&c, StdDuration::from_secs(1)).await
        });
        let stack = TestStack::start_with(&repo_template(), &registry).await;
        let admin = stack.issue_key(TENANT, &[Scope::Admin]).await;
        let read = stack.issue_key(TENANT, &[Scope::Read]).await;
        let queue = BusQueue::subscribe(&stack).await;
        let hook = WebhookReceiver::start().await;
        let rig = Rig {
            stack,
            admin,
            read,
            queue,
            hook,
        };
        let (status, body) = rig
            .admin(
                Method::PUT,
                "/v1/alerts/webhook",
                &json!({"url": rig.hook.url()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        rig.hook
            .set_secret(body["secret"].as_str().expect("secret shown once"));
        rig
    }

    async fn admin(&self, method: Method, path: &str, body: &Value) -> (u16, Value) {
        self.stack
            .call(method, path, Some(&self.admin), Some(body))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.stack
            .call(Method::GET, path, Some(&self.read), None)
            .await
    }

    async fn send(&self, events: Vec<Value>) {
        for chunk in events.chunks(500) {
            let (status, body) = self
                .stack
                .post_events(TENANT, &json!({"events": chunk}))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body["accepted"].as_u64(),
                Some(chunk.len() as u64),
                "{body}"
            );
        }
    }

    async fn contract(&self, account: &str, body: Value) {
        let (status, answer) = self
            .admin(Method::PUT, &format!("/v1/accounts/{account}"), &body)
            .await;
        assert!(status == 201 || status == 200, "{answer}");
    }

    async fn rules(&self, rules: Value) {
        let (status, body) = self
            .admin(Method::PUT, "/v1/alerts/rules", &json!({"rules": rules}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn evaluate(&self, now: OffsetDateTime) -> Value {
        self.stack
            .local_api()
            .invoke(
                "AlertsFunction",
                json!({"now": rfc3339(now), "tenant": TENANT}),
            )
            .await
            .expect("the evaluation runs")
    }

    /// The notifications that reached the queue since the last call.
    async fn notifications(&self) -> Vec<Value> {
        self.queue
            .drain()
            .await
            .into_iter()
            .map(|envelope| {
                assert_eq!(envelope["source"], "vigil.alerts");
                assert_eq!(envelope["detail-type"], "Vigil Alert Notification");
                envelope["detail"].clone()
            })
            .collect()
    }

    async fn firing(&self) -> BTreeSet<(String, String)> {
        let (status, body) = self.get("/v1/alerts?state=firing&limit=100").await;
        assert_eq!(status, 200, "{body}");
        body["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| (text(&a["account"]), text(&a["rule"])))
            .collect()
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A counter for unique event ids.
struct Events {
    next: u32,
    out: Vec<Value>,
}

impl Events {
    fn new() -> Self {
        Self {
            next: 0,
            out: Vec::new(),
        }
    }

    /// Unique across every batch of the test process.
    fn id(&mut self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("e{}", self.next)
    }

    fn calls(
        &mut self,
        account: &str,
        time: OffsetDateTime,
        count: u32,
        status_500: u32,
        latency: u64,
        units: u64,
    ) {
        for i in 0..count {
            let id = self.id();
            let status = if i < status_500 { 500 } else { 200 };
            self.out.push(json!({"id": id, "time": rfc3339(time + Duration::seconds(i64::from(i))),
                "source": "api_call", "account": account, "user": format!("u-{account}-{}", i % 3),
                "data": {"endpoint": "/v1/pay", "method": "POST", "status": status, "latency_ms": latency, "units": units}}));
        }
    }

    fn billing(&mut self, account: &str, time: OffsetDateTime, status: &str) {
        let id = self.id();
        self.out.push(json!({"id": id, "time": rfc3339(time), "source": "billing", "account": account,
            "data": {"invoice_id": format!("INV-{id}"), "amount": 99, "currency": "EUR", "status": status}}));
    }

    fn ticket(&mut self, account: &str, time: OffsetDateTime) {
        let id = self.id();
        self.out.push(
            json!({"id": id, "time": rfc3339(time), "source": "support_ticket", "account": account,
            "data": {"ticket_id": format!("T-{id}"), "priority": "normal", "status": "open"}}),
        );
    }

    /// Weekdays 20 calls, weekends 2, at 10:00 on each day from `from` to `to`.
    fn weekly(&mut self, account: &str, from: Date, to: Date, failing_per_day: u32) {
        let mut day = from;
        while day <= to {
            let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
            let (count, failing) = if weekend {
                (2, 0)
            } else {
                (20, failing_per_day)
            };
            self.calls(account, at(day, 10, 0), count, failing, 80, 2);
            day += Duration::days(1);
        }
    }
}

/// The latest Monday at least two days before today: `now` is its 06:00.
fn last_monday() -> Date {
    let mut day = OffsetDateTime::now_utc().date() - Duration::days(2);
    while day.weekday() != Weekday::Monday {
        day -= Duration::days(1);
    }
    day
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_rule_kind_fires_when_it_should_and_stays_quiet_otherwise() {
    let rig = Rig::start().await;
    let monday = last_monday();
    let now = at(monday, 6, 0);
    let d = |back: i64| monday - Duration::days(back);
    let mut e = Events::new();
    // The control: weekdays busy, weekends quiet (a weekend dip is no drop), a
    // few calls this morning, one old ticket, its invoices paid.
    e.weekly("steady", d(35), d(1), 0);
    e.calls("steady", at(monday, 1, 0), 5, 0, 80, 2);
    e.ticket("steady", at(d(20), 11, 0));
    e.billing("steady", at(d(2), 9, 0), "paid");
    // Friday to Sunday at a tenth of the usual: 2 calls where 24 were usual.
    e.weekly("dropping", d(35), d(4), 0);
    e.calls("dropping", at(d(3), 10, 0), 2, 0, 80, 2);
    // Sunday ten times the usual Sunday.
    e.weekly("spiking", d(35), d(2), 0);
    e.calls("spiking", at(d(1), 10, 0), 20, 0, 80, 2);
    // 850 units this morning of a 1,000 quota.
    e.calls("quota", at(monday, 2, 0), 17, 0, 80, 50);
    // 100 units a day for the last 7 days: the month will end over its quota.
    for back in 1..=7 {
        e.calls("pacing", at(d(back), 10, 0), 10, 0, 80, 10);
    }
    // Sunday: 30 % failing; and a slow account (3 s calls).
    e.calls("erroring", at(d(1), 12, 0), 20, 6, 80, 2);
    e.calls("slow", at(d(1), 12, 0), 20, 0, 3000, 2);
    // Active until 10 days ago.
    e.weekly("idle", d(35), d(10), 0);
    // Failed payment two days ago, 5 tickets open, 10 % of weekday calls failing.
    e.weekly("unpaid", d(35), d(1), 2);
    e.billing("unpaid", at(d(2), 9, 0), "failed");
    for i in 0..5 {
        e.ticket("unpaid", at(d(20), 11, i));
    }
    // Three tickets in the last three days.
    for back in 1..=3 {
        e.ticket("complaining", at(d(back), 15, 0));
    }
    // A relationship that ended last week: excluded whatever its payments.
    e.billing("ended", at(d(2), 9, 0), "failed");
    rig.send(e.out).await;

    // The pacing account's quota, from the test's own projection: the month so
    // far plus the last 7 days' pace (100 a day) until the month's end.
    let month_start = monday.replace_day(1).expect("day 1");
    let used: i64 = (1..=7).filter(|b| d(*b) >= month_start).count() as i64 * 100;
    let next_month = (month_start + Duration::days(32))
        .replace_day(1)
        .expect("day 1");
    let remaining = (next_month - monday).whole_days() as f64 - 6.0 / 24.0;
    let projected = used as f64 + 100.0 * remaining;
    let pacing_quota = (projected / 1.25).floor() as i64;
    rig.contract("quota", json!({"name": "Quota Co", "monthly_quota": 1000}))
        .await;
    rig.contract(
        "pacing",
        json!({"name": "Pacing Co", "monthly_quota": pacing_quota}),
    )
    .await;
    rig.contract(
        "steady",
        json!({"name": "Steady Co", "monthly_quota": 100000}),
    )
    .await;
    let ended = day_text(d(7));
    rig.contract(
        "ended",
        json!({"name": "Former Co", "relationship_end": ended}),
    )
    .await;

    let scoped = |id: &str, kind: &str, extra: Value, account: &str| {
        let mut rule = json!({"id": id, "kind": kind, "for": "0m", "scope": {"accounts": [account, "steady"]}});
        if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
            rule.extend(extra.clone());
        }
        rule
    };
    let mut payment = scoped("payment", "payment_failed", json!({}), "unpaid");
    payment["scope"]["accounts"] = json!(["unpaid", "steady", "ended"]);
    let rules = vec![
        scoped(
            "drop",
            "usage_drop",
            json!({"threshold": 0.5, "window": "3d"}),
            "dropping",
        ),
        scoped(
            "spike",
            "usage_spike",
            json!({"threshold": 3, "window": "1d", "min_calls": 1}),
            "spiking",
        ),
        scoped("quota-80", "quota", json!({"threshold": 0.8}), "quota"),
        scoped("quota-100", "quota", json!({"threshold": 1.0}), "quota"),
        scoped(
            "forecast",
            "quota_forecast",
            json!({"threshold": 1.0}),
            "pacing",
        ),
        scoped(
            "errors",
            "error_rate",
            json!({"threshold": 0.1, "window": "48h", "min_calls": 5}),
            "erroring",
        ),
        scoped(
            "latency",
            "latency_p95",
            json!({"threshold": 1000, "window": "48h", "min_calls": 5}),
            "slow",
        ),
        scoped("inactivity", "inactivity", json!({"window": "7d"}), "idle"),
        payment,
        scoped(
            "tickets",
            "ticket_surge",
            json!({"threshold": 3, "window": "7d"}),
            "complaining",
        ),
        scoped("health", "health_below", json!({"threshold": 50}), "unpaid"),
    ];
    rig.rules(Value::Array(rules)).await;

    let report = rig.evaluate(now).await;
    assert_eq!(report["ended"], 1, "{report}");
    let expected: BTreeSet<(String, String)> = [
        ("dropping", "drop"),
        ("spiking", "spike"),
        ("quota", "quota-80"),
        ("pacing", "forecast"),
        ("erroring", "errors"),
        ("slow", "latency"),
        ("idle", "inactivity"),
        ("unpaid", "payment"),
        ("unpaid", "health"),
        ("complaining", "tickets"),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(rig.firing().await, expected);

    // One notification per account; the unpaid account's two alerts together.
    let sent = rig.notifications().await;
    let by_account: BTreeMap<String, Vec<String>> = sent
        .iter()
        .map(|n| {
            let mut rules: Vec<String> = n["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .map(|a| text(&a["rule"]))
                .collect();
            rules.sort();
            (text(&n["account"]), rules)
        })
        .collect();
    assert_eq!(sent.len(), 9, "{by_account:?}");
    assert_eq!(by_account["unpaid"], vec!["health", "payment"]);
    // The figures the test expects: 22 of 24 usual calls lost; 10× a Sunday;
    // 85 % of the quota; 30 % failing; the histogram's open bucket (2,500 ms).
    let value = |account: &str, rule: &str| -> f64 {
        sent.iter()
            .filter(|n| n["account"] == account)
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["rule"] == rule)
            .and_then(|a| a["value"].as_f64())
            .expect("a value")
    };
    assert!((value("dropping", "drop") - 22.0 / 24.0).abs() < 1e-9);
    assert!((value("spiking", "spike") - 10.0).abs() < 1e-9);
    assert!((value("quota", "quota-80") - 0.85).abs() < 1e-9);
    assert!((value("erroring", "errors") - 0.3).abs() < 1e-9);
    assert_eq!(value("slow", "latency"), 2500.0);
    assert_eq!(value("idle", "inactivity"), 10.0);
    assert_eq!(value("complaining", "tickets"), 3.0);
    // Unpaid: failed payment 30, 5 open tickets 16 (capped), weekday errors
    // 10 % of 20 → 2 per point above 2 % → 16 (rate over the 30 days computed below).
    let (calls, failed) = {
        let (mut calls, mut failed) = (0u32, 0u32);
        let mut day = monday - Duration::days(29);
        while day <= monday {
            if day <= d(1) {
                let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
                calls += if weekend { 2 } else { 20 };
                failed += if weekend { 0 } else { 2 };
            }
            day += Duration::days(1);
        }
        (calls, failed)
    };
    let errors_points = ((f64::from(failed) / f64::from(calls) * 100.0 - 2.0) * 2.0)
        .ceil()
        .min(20.0);
    assert_eq!(
        value("unpaid", "health"),
        100.0 - 30.0 - 16.0 - errors_points
    );
    for n in &sent {
        let text = n.to_string();
        assert!(
            !text.contains("Steady Co") && !text.contains("u-"),
            "no names, no users: {text}"
        );
    }
    // The webhook got the same notifications, each signed.
    let hooked = rig.hook.received();
    assert_eq!(hooked.len(), 9);
    assert!(hooked.iter().all(|r| r.signature_valid));
    let ids: BTreeSet<String> = sent.iter().map(|n| text(&n["id"])).collect();
    assert_eq!(
        hooked.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>(),
        ids
    );
    rig.stack.shutdown().await;
}

fn day_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn for_delays_firing_repeats_wait_their_interval_and_a_resolve_is_sent_once() {
    let rig = Rig::start().await;
    let active = OffsetDateTime::now_utc().date() - Duration::days(20);
    let mut e = Events::new();
    e.calls("acme", at(active, 10, 0), 3, 0, 80, 2);
    rig.send(e.out).await;
    rig.rules(json!([{"id": "idle", "kind": "inactivity", "window": "7d", "for": "2h", "repeat": "6h", "severity": "critical", "labels": {"team": "cs"}}]))
        .await;
    let t1 = at(active + Duration::days(7), 0, 30);
    let mut statuses = Vec::new();
    for (now, sends) in [
        (t1, 0),                      // the condition holds: pending
        (t1 + Duration::hours(1), 0), // still within `for`
        (t1 + Duration::hours(2), 1), // fires
        (t1 + Duration::hours(3), 0), // repeat not due
        (t1 + Duration::hours(8), 1), // repeat after 6 h
    ] {
        rig.evaluate(now).await;
        let sent = rig.notifications().await;
        assert_eq!(sent.len(), sends, "at {now}: {sent:?}");
        statuses.extend(sent.iter().map(|n| text(&n["status"])));
    }
    // Activity again that day: resolved, once.
    let mut e = Events::new();
    e.calls("acme", at(active + Duration::days(7), 12, 0), 1, 0, 80, 2);
    rig.send(e.out).await;
    let t6 = at(active + Duration::days(7), 13, 0);
    rig.evaluate(t6).await;
    let resolved = rig.notifications().await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["alerts"][0]["status"], "resolved");
    assert_eq!(resolved[0]["alerts"][0]["labels"]["team"], "cs");
    statuses.push(text(&resolved[0]["status"]));
    rig.evaluate(t6 + Duration::hours(7)).await;
    assert!(
        rig.notifications().await.is_empty(),
        "nothing after the resolve"
    );
    assert_eq!(statuses, vec!["firing", "firing", "resolved"]);

    // The history: one alert, fired after its `for`, resolved.
    let (status, body) = rig.get("/v1/alerts?account=acme&rule=idle").await;
    assert_eq!(status, 200, "{body}");
    let alerts = body["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{body}");
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(alerts[0]["started_at"], rfc3339(t1));
    assert_eq!(alerts[0]["fired_at"], rfc3339(t1 + Duration::hours(2)));
    assert_eq!(alerts[0]["resolved_at"], rfc3339(t6));
    let (_, none) = rig.get("/v1/alerts?state=firing").await;
    assert_eq!(none["alerts"], json!([]));
    let (_, later) = rig
        .get(&format!(
            "/v1/alerts?from={}",
            rfc3339(t6 + Duration::hours(1)).replace('+', "%2B")
        ))
        .await;
    assert_eq!(later["alerts"], json!([]), "resolved before `from`");
    // The webhook got the same three, signed.
    let hooked = rig.hook.received();
    assert_eq!(hooked.len(), 3);
    assert!(hooked.iter().all(|r| r.signature_valid));
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silences_mute_notifications_without_losing_state() {
    let rig = Rig::start().await;
    let wall = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole second");
    let mut e = Events::new();
    e.billing("acme", wall - Duration::days(1), "failed");
    e.billing("globex", wall - Duration::days(1), "failed");
    rig.send(e.out).await;
    rig.rules(json!([{"id": "payment", "kind": "payment_failed", "labels": {"team": "billing"}}]))
        .await;
    let (status, silence) = rig
        .admin(
            Method::POST,
            "/v1/alerts/silences",
            &json!({"account": "acme", "ends_at": rfc3339(wall + Duration::hours(2))}),
        )
        .await;
    assert_eq!(status, 201, "{silence}");
    // Evaluated one hour ahead: acme is muted, globex is not.
    rig.evaluate(wall + Duration::hours(1)).await;
    let sent = rig.notifications().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["account"], "globex");
    let (_, firing) = rig.get("/v1/alerts?account=acme&state=firing").await;
    assert_eq!(
        firing["alerts"][0]["notified"], false,
        "fired, silenced: {firing}"
    );
    rig.evaluate(wall + Duration::minutes(90)).await;
    assert!(rig.notifications().await.is_empty());
    // The silence over: acme's alert is sent, with the time it fired.
    rig.evaluate(wall + Duration::hours(3)).await;
    let sent = rig.notifications().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["account"], "acme");
    assert_eq!(
        sent[0]["alerts"][0]["fired_at"],
        rfc3339(wall + Duration::hours(1))
    );
    // A label silence, ended early by DELETE.
    let (status, by_label) = rig
        .admin(
            Method::POST,
            "/v1/alerts/silences",
            &json!({"labels": {"team": "billing"}, "ends_at": rfc3339(wall + Duration::days(30))}),
        )
        .await;
    assert_eq!(status, 201);
    rig.evaluate(wall + Duration::days(2)).await;
    assert!(
        rig.notifications().await.is_empty(),
        "repeats muted by label"
    );
    let id = text(&by_label["id"]);
    let (status, ended) = rig
        .stack
        .call(
            Method::DELETE,
            &format!("/v1/alerts/silences/{id}"),
            Some(&rig.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    rig.evaluate(wall + Duration::days(2) + Duration::minutes(5))
        .await;
    assert_eq!(
        rig.notifications().await.len(),
        2,
        "both repeat once the silence ended"
    );
    let (_, listed) = rig.get("/v1/alerts/silences").await;
    assert_eq!(listed["silences"].as_array().map(Vec::len), Some(2));
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluations_back_to_back_and_concurrent_send_each_notification_once() {
    let rig = Rig::start().await;
    let wall = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole second");
    let mut e = Events::new();
    let accounts = ["a1", "a2", "a3", "a4", "a5"];
    for account in accounts {
        e.billing(account, wall - Duration::days(1), "failed");
    }
    rig.send(e.out).await;
    rig.rules(json!([{"id": "payment", "kind": "payment_failed"}]))
        .await;
    let now = wall + Duration::minutes(1);
    // Twice at once a second apart (both read the same state: one commit per
    // account wins, the other reads again), then at once at the same `now`,
    // then back to back.
    let (a, b) = tokio::join!(rig.evaluate(now), rig.evaluate(now + Duration::seconds(1)));
    let (c, d) = tokio::join!(
        rig.evaluate(now + Duration::seconds(2)),
        rig.evaluate(now + Duration::seconds(2))
    );
    rig.evaluate(now + Duration::seconds(3)).await;
    rig.evaluate(now + Duration::seconds(3)).await;
    let committed: u64 = [&a, &b, &c, &d]
        .iter()
        .map(|r| r["committed"].as_u64().unwrap_or(0))
        .sum();
    assert!(committed >= 5, "{a} {b}");
    let sent = rig.notifications().await;
    let accounts_sent: Vec<String> = sent.iter().map(|n| text(&n["account"])).collect();
    assert_eq!(sent.len(), 5, "{accounts_sent:?}");
    assert_eq!(accounts_sent.iter().collect::<BTreeSet<_>>().len(), 5);
    let by_id = rig.hook.deliveries_by_id();
    assert_eq!(by_id.len(), 5);
    assert!(by_id.values().all(|n| *n == 1), "{by_id:?}");
    assert!(rig.hook.received().iter().all(|r| r.signature_valid));
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_slow_or_absent_webhook_is_retried_and_nothing_is_lost_or_doubled() {
    let rig = Rig::start().await;
    let wall = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole second");
    let mut e = Events::new();
    e.billing("acme", wall - Duration::days(1), "failed");
    rig.send(e.out).await;
    rig.rules(json!([{"id": "payment", "kind": "payment_failed"}]))
        .await;

    // 500 twice (the run's two tries): the bus has it, the webhook waits.
    rig.hook.fail_next(2);
    let t = wall + Duration::minutes(1);
    let report = rig.evaluate(t).await;
    assert_eq!(report["delivery_failures"], 1, "{report}");
    assert_eq!(rig.notifications().await.len(), 1);
    assert!(rig.hook.received().is_empty());
    let (_, listed) = rig.get("/v1/alerts/notifications").await;
    let delivery = &listed["notifications"][0]["delivery"];
    assert_eq!(delivery["bus"], "sent", "{listed}");
    assert_eq!(delivery["webhook"], "pending");
    assert_eq!(delivery["last_error"], "webhook: HTTP 500");
    assert_eq!(delivery["attempts"], 1);
    // Not yet due (1 minute of backoff), then due: delivered, the bus not again.
    rig.evaluate(t + Duration::seconds(30)).await;
    assert!(rig.hook.received().is_empty());
    rig.evaluate(t + Duration::seconds(61)).await;
    assert_eq!(rig.hook.received().len(), 1);
    assert!(rig.notifications().await.is_empty(), "the bus got it once");
    let (_, listed) = rig.get("/v1/alerts/notifications").await;
    assert_eq!(
        listed["notifications"][0]["delivery"]["webhook"], "sent",
        "{listed}"
    );
    assert!(listed["notifications"][0]["delivery"]["delivered_at"].is_string());

    // A receiver too slow to answer: it took it, the client gave up, the retry
    // brings the same id (a receiver drops ids it has seen).
    let mut e = Events::new();
    e.billing("globex", wall - Duration::days(1), "failed");
    rig.send(e.out).await;
    rig.hook.slow_next(1);
    let t2 = t + Duration::minutes(5);
    rig.evaluate(t2).await;
    let (_, listed) = rig.get("/v1/alerts/notifications").await;
    assert_eq!(
        listed["notifications"][0]["delivery"]["last_error"], "webhook: timeout",
        "{listed}"
    );
    rig.evaluate(t2 + Duration::seconds(61)).await;
    let by_id = rig.hook.deliveries_by_id();
    assert_eq!(by_id.len(), 2, "{by_id:?}");
    let bus_ids: BTreeSet<String> = rig
        .notifications()
        .await
        .iter()
        .map(|n| text(&n["id"]))
        .collect();
    assert_eq!(bus_ids.len(), 1, "globex once on the bus");
    assert!(by_id.keys().any(|id| bus_ids.contains(id)));
    assert!(rig.hook.received().iter().all(|r| r.signature_valid));

    // No receiver at all: recorded as unreachable, kept for the next attempt.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/gone", closed.local_addr().expect("addr"));
    drop(closed);
    let (status, _) = rig
        .admin(Method::PUT, "/v1/alerts/webhook", &json!({"url": dead}))
        .await;
    assert_eq!(status, 200);
    let mut e = Events::new();
    e.billing("initech", wall - Duration::days(1), "failed");
    rig.send(e.out).await;
    rig.evaluate(t2 + Duration::minutes(10)).await;
    let (_, listed) = rig.get("/v1/alerts/notifications?limit=1").await;
    let delivery = &listed["notifications"][0]["delivery"];
    assert_eq!(delivery["last_error"], "webhook: unreachable", "{listed}");
    assert_eq!(delivery["webhook"], "pending");
    assert!(listed["next_cursor"].is_string());
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_rules_silences_and_webhooks_get_clear_errors_and_change_nothing() {
    let rig = Rig::start().await;
    let mut e = Events::new();
    e.calls(
        "acme",
        OffsetDateTime::now_utc() - Duration::hours(1),
        1,
        0,
        80,
        2,
    );
    rig.send(e.out).await;
    let (status, defaults) = rig.get("/v1/alerts/rules").await;
    assert_eq!(status, 200);
    assert_eq!(defaults["defaults"], true);
    assert!(defaults["rules"].as_array().is_some_and(|r| r.len() >= 10));
    let cases = [
        (
            json!({"rules": [{"id": "x", "kind": "sentiment"}]}),
            "rules[0].kind",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "usage_drop", "threshold": 0.5, "window": "-2d"}]}),
            "rules[0].window",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "usage_drop", "threshold": 1.5, "window": "2d"}]}),
            "rules[0].threshold",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "health_below", "threshold": 0}]}),
            "rules[0].threshold",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "error_rate", "threshold": 0.1, "window": "0h"}]}),
            "rules[0].window",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "payment_failed", "scope": {"accounts": ["acme", "ghost-co"]}}]}),
            "rules[0].scope.accounts[1]",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "payment_failed", "for": "soon"}]}),
            "rules[0].for",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "payment_failed", "colour": "red"}]}),
            "rules[0]",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "quota", "threshold": "high"}]}),
            "rules[0].threshold",
        ),
        (
            json!({"rules": [{"id": "x", "kind": "quota", "threshold": null}]}),
            "rules[0].threshold",
        ),
        (json!({"rule": []}), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = rig.admin(Method::PUT, "/v1/alerts/rules", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        assert!(
            !answer.to_string().contains("ghost-co") && !answer.to_string().contains("sentiment"),
            "no value echoed: {answer}"
        );
    }
    let raw = |body: &'static str| {
        rig.stack
            .http
            .put(format!("{}/v1/alerts/rules", rig.stack.api))
            .header("authorization", format!("Bearer {}", rig.admin))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        raw("{\"rules\": [").await.expect("send").status().as_u16(),
        400
    );
    let big = format!("{{\"rules\": [], \"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let answer = rig
        .stack
        .http
        .put(format!("{}/v1/alerts/rules", rig.stack.api))
        .header("authorization", format!("Bearer {}", rig.admin))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status().as_u16(), 413);
    // Reading keys cannot change rules; no key at all is 401.
    let (status, _) = rig
        .stack
        .call(
            Method::PUT,
            "/v1/alerts/rules",
            Some(&rig.read),
            Some(&json!({"rules": []})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = rig.stack.call(Method::GET, "/v1/alerts", None, None).await;
    assert_eq!(status, 401);
    let (_, still) = rig.get("/v1/alerts/rules").await;
    assert_eq!(still["defaults"], true, "nothing stored");

    // Silences and webhooks.
    let in_a_day = rfc3339(OffsetDateTime::now_utc() + Duration::days(1));
    for (body, field) in [
        (json!({"ends_at": in_a_day}), "account"),
        (json!({"account": "acme", "ends_at": "tomorrow"}), "ends_at"),
        (
            json!({"account": "acme", "ends_at": rfc3339(OffsetDateTime::now_utc() - Duration::hours(1))}),
            "ends_at",
        ),
        (
            json!({"account": "acme", "ends_at": rfc3339(OffsetDateTime::now_utc() + Duration::days(91))}),
            "ends_at",
        ),
        (json!({"rule": "Not A Rule", "ends_at": in_a_day}), "rule"),
    ] {
        let (status, answer) = rig.admin(Method::POST, "/v1/alerts/silences", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    for url in [
        "http://hooks.example.com/x",
        "ftp://example.com",
        "https://user:pw@example.com/x",
    ] {
        let (status, answer) = rig
            .admin(Method::PUT, "/v1/alerts/webhook", &json!({"url": url}))
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        assert_eq!(answer["error"]["field"], "url");
        assert!(!answer.to_string().contains("example.com"));
    }
    // Another tenant's silence is not found; a malformed id is a 400.
    let (_, made) = rig
        .admin(
            Method::POST,
            "/v1/alerts/silences",
            &json!({"account": "acme", "ends_at": in_a_day}),
        )
        .await;
    let other = rig.stack.issue_key("someone-else", &[Scope::Admin]).await;
    let id = text(&made["id"]);
    let (status, _) = rig
        .stack
        .call(
            Method::DELETE,
            &format!("/v1/alerts/silences/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = rig
        .stack
        .call(
            Method::DELETE,
            "/v1/alerts/silences/nope",
            Some(&rig.admin),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = rig
        .stack
        .call(Method::GET, "/v1/alerts/webhook", Some(&other), None)
        .await;
    assert_eq!(status, 403, "an admin key does not read");
    for query in [
        "state=open",
        "limit=0",
        "from=yesterday",
        "cursor=zzz",
        "account=a/b",
        "colour=red",
    ] {
        let (status, answer) = rig.get(&format!("/v1/alerts?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    rig.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_and_bus_faults_delay_notifications_but_never_lose_or_double_them() {
    let rig = Rig::start().await;
    let wall = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole second");
    let mut e = Events::new();
    for account in ["acme", "globex", "initech"] {
        e.billing(account, wall - Duration::days(1), "failed");
    }
    rig.send(e.out).await;
    rig.rules(
        json!([{"id": "payment", "kind": "payment_failed", "scope": {"accounts": ["acme"]}}]),
    )
    .await;
    let t = wall + Duration::minutes(1);

    // Commits failing past the SDK's retries: the run fails (Lambda retries it,
    // then the dead-letter queue), nothing is written or sent.
    rig.stack
        .proxy
        .inject("TransactWriteItems", Fault::ServerError, None);
    let failed = rig
        .stack
        .local_api()
        .invoke(
            "AlertsFunction",
            json!({"now": rfc3339(t), "tenant": TENANT}),
        )
        .await;
    assert!(failed.is_err(), "the run reports its failure: {failed:?}");
    rig.stack.proxy.clear_faults();
    assert!(rig.notifications().await.is_empty());
    let (_, none) = rig.get("/v1/alerts").await;
    assert_eq!(none["alerts"], json!([]));
    // The next run does it, once.
    rig.evaluate(t + Duration::minutes(5)).await;
    assert_eq!(rig.notifications().await.len(), 1);

    // A commit applied whose answer is lost: the SDK's retry carries the same
    // token and is answered as the first; one alert, one notification.
    rig.rules(json!([{"id": "payment", "kind": "payment_failed", "scope": {"accounts": ["acme", "globex"]}}])).await;
    rig.stack
        .proxy
        .inject("TransactWriteItems", Fault::ForwardThenFail, Some(1));
    rig.evaluate(t + Duration::minutes(10)).await;
    rig.stack.proxy.clear_faults();
    let sent = rig.notifications().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["account"], "globex");

    // The bus down: the webhook has it, the bus gets it on a later run, once.
    rig.rules(json!([{"id": "payment", "kind": "payment_failed"}]))
        .await;
    rig.stack
        .proxy
        .inject("PutEvents", Fault::ServerError, None);
    let report = rig.evaluate(t + Duration::minutes(15)).await;
    rig.stack.proxy.clear_faults();
    assert_eq!(report["delivery_failures"], 1, "{report}");
    assert!(rig.notifications().await.is_empty());
    let (_, listed) = rig.get("/v1/alerts/notifications?limit=1").await;
    let delivery = &listed["notifications"][0]["delivery"];
    assert_eq!(delivery["bus"], "pending", "{listed}");
    assert_eq!(delivery["webhook"], "sent");
    assert_eq!(delivery["last_error"], "event bus unavailable");
    rig.evaluate(t + Duration::minutes(17)).await;
    let sent = rig.notifications().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["account"], "initech");
    // A run interrupted between its commit and its delivery (the outbox claim
    // fails): the notification waits in the outbox; the next run sends it once.
    let mut e = Events::new();
    e.billing("umbrella", wall - Duration::days(1), "failed");
    rig.send(e.out).await;
    let alerts_table = rig.stack.table("AlertsTable");
    rig.stack
        .proxy
        .inject_on("UpdateItem", &alerts_table, Fault::AccessDenied, None);
    let interrupted = rig
        .stack
        .local_api()
        .invoke(
            "AlertsFunction",
            json!({"now": rfc3339(t + Duration::minutes(20)), "tenant": TENANT}),
        )
        .await;
    rig.stack.proxy.clear_faults();
    assert!(interrupted.is_err(), "{interrupted:?}");
    assert!(rig.notifications().await.is_empty());
    let (_, firing) = rig.get("/v1/alerts?account=umbrella").await;
    assert_eq!(
        firing["alerts"][0]["state"], "firing",
        "committed before the failure: {firing}"
    );
    rig.evaluate(t + Duration::minutes(25)).await;
    let sent = rig.notifications().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["account"], "umbrella");
    let by_id = rig.hook.deliveries_by_id();
    assert_eq!(by_id.len(), 4);
    assert!(
        by_id.values().all(|n| *n == 1),
        "the webhook was not sent again: {by_id:?}"
    );
    rig.stack.shutdown().await;
}
