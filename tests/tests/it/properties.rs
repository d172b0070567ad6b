//! Property tests (proptest) of the parsers and the structures everything else
//! trusts: the envelope and event parsers never panic and never echo a value;
//! accepted events round-trip; minimisation lets no unlisted field and no
//! e-mail address through, whatever the nesting or encoding; keys start with
//! the tenant and never collide; the audit chain catches any single change,
//! deletion, swap or truncation; privacy requests fall due one calendar month
//! after receipt; suppression markers hide the lookup key. No emulator: these run in milliseconds each.

use proptest::prelude::*;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use vigil_shared::domain::audit::{verify_anchored, Anchor, AuditDraft, AuditEntry, VerifyMode};
use vigil_shared::domain::{validate_event, AccountId, EventData, EventId, Limits, TenantId};
use vigil_shared::keys;

const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON, nested up to 4 levels, with strings that look like what
/// clients send by mistake (e-mails, percent-encoding, phone numbers, unicode).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        secretish().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_@%.]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values that must never be echoed or stored: tagged with `Zq` so a search
/// for them in an answer cannot match anything the code writes itself.
fn secretish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}@example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%40example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%2540example.com")),
        // A phone number cannot carry the tag: `+33` is searched for instead.
        "[0-9]{9}".prop_map(|d| format!("+33{d}")),
        "[a-zA-Z0-9 ]{4,20}".prop_map(|s| format!("Zq{s}")),
    ]
}

/// An e-mail address, as is or percent-encoded once or twice.
fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}@example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%40example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%2540example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%40EXAMPLE.COM")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}%252540example.com")),
        "[a-z]{3,8}".prop_map(|u| format!("Zq{u}\u{FF20}example.com")),
    ]
}

/// A valid api_call event, with the parts a round trip must keep.
fn valid_event() -> impl Strategy<Value = (Value, String, String, u16, u64)> {
    (
        "[a-zA-Z0-9][a-zA-Z0-9_.:=-]{0,40}",
        "[a-z][a-z0-9-]{0,30}",
        prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
        100u16..600,
        0u64..3_600_000,
        0i64..(24 * 60),
        prop::sample::select(vec!["/v1/pay", "/v1/orders", "/health", "/v2/items/list"]),
    )
        .prop_map(|(id, account, method, status, latency, minutes_ago, endpoint)| {
            let time = NOW - time::Duration::minutes(minutes_ago);
            let event = json!({
                "id": id, "time": time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "source": "api_call", "account": account,
                "data": {"endpoint": endpoint, "method": method, "status": status, "latency_ms": latency}
            });
            (event, id, account, status, latency)
        })
}

/// A valid event of any source, and the text fields kept for it (where an
/// e-mail address could hide).
fn event_of_any_source() -> impl Strategy<Value = (Value, Vec<&'static str>)> {
    let data = prop_oneof![
        Just((
            "api_call",
            json!({"endpoint": "/v1/pay", "method": "GET", "status": 200, "latency_ms": 5}),
            vec!["endpoint", "user"]
        )),
        Just((
            "product",
            json!({"feature": "export", "action": "click"}),
            vec!["feature", "action", "user"]
        )),
        Just((
            "marketing",
            json!({"campaign": "spring", "channel": "email"}),
            vec!["campaign", "channel", "user"]
        )),
        Just((
            "support_ticket",
            json!({"ticket_id": "T-1", "priority": "low", "status": "open"}),
            vec!["ticket_id", "user"]
        )),
        Just((
            "billing",
            json!({"invoice_id": "INV-1", "amount": 12, "currency": "EUR", "status": "paid"}),
            vec!["invoice_id", "user"]
        )),
    ];
    ("[a-z0-9-]{1,20}", data).prop_map(|(id, (source, data, kept))| {
        let event = json!({"id": id, "time": "2026-11-29T11:00:00Z", "source": source, "account": "acme", "data": data});
        (event, kept)
    })
}

/// The data fields an event's source keeps.
fn listed_fields(data: &EventData) -> &'static [&'static str] {
    match data {
        EventData::ApiCall { .. } => &["endpoint", "method", "status", "latency_ms", "units"],
        EventData::Product { .. } => &["feature", "action"],
        EventData::Marketing { .. } => &["campaign", "channel"],
        EventData::SupportTicket { .. } => &["ticket_id", "priority", "status"],
        EventData::Billing { .. } => &["invoice_id", "amount", "currency", "status"],
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the body, the envelope parser answers (no panic), and its error never holds a value sent.
    #[test]
    fn the_envelope_parser_never_panics_or_echoes(body in any_json(), raw in "\\PC{0,200}") {
        for bytes in [body.to_string().into_bytes(), json!({"events": [body.clone()]}).to_string().into_bytes(), raw.into_bytes()] {
            if let Err(error) = vigil_ingest::request::parse_envelope(&bytes) {
                let text = format!("{error} {}", error.body());
                prop_assert!(!text.contains("Zq") && !text.contains("+33"), "{text}");
            }
        }
    }

    /// Any event-shaped value: validation answers, and a rejection names a field, never a value.
    #[test]
    fn the_validator_never_panics_or_echoes(
        data in any_json(),
        id in prop_oneof![any_json(), secretish().prop_map(Value::from)],
        account in prop_oneof![any_json(), secretish().prop_map(Value::from)],
        user in prop_oneof![any_json(), secretish().prop_map(Value::from)],
        source in prop::sample::select(vec!["api_call", "product", "marketing", "support_ticket", "billing", "Zqnope"]),
    ) {
        let event = json!({"id": id, "time": "2026-11-29T11:00:00Z", "source": source, "account": account, "user": user, "data": data});
        match validate_event(&event, NOW, &Limits::default()) {
            Err(rejection) => {
                let text = rejection.message();
                prop_assert!(!text.contains("Zq") && !text.contains("+33"), "{text}");
            }
            Ok(validated) => {
                for dropped in &validated.dropped {
                    prop_assert!(!dropped.contains("Zq") && !dropped.contains('@') && !dropped.contains("+33"), "{dropped}");
                }
            }
        }
    }

    /// A valid event comes out of validation with the same id, account, time and figures.
    #[test]
    fn accepted_events_round_trip((event, id, account, status, latency) in valid_event()) {
        let validated = validate_event(&event, NOW, &Limits::default());
        prop_assert!(validated.is_ok(), "{event}: {:?}", validated.err().map(|r| r.message()));
        let validated = validated.expect("checked");
        prop_assert_eq!(validated.event.id.as_str(), id.as_str());
        prop_assert_eq!(validated.event.account.as_str(), account.as_str());
        let time = event["time"].as_str().unwrap_or_default();
        prop_assert_eq!(validated.event.time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(), time);
        match validated.event.data {
            EventData::ApiCall { endpoint, method, status: s, latency_ms, units } => {
                prop_assert_eq!(endpoint.as_str(), event["data"]["endpoint"].as_str().unwrap_or_default());
                prop_assert_eq!(method, event["data"]["method"].as_str().unwrap_or_default());
                prop_assert_eq!((s, latency_ms, units), (status, latency, 1));
            }
            other => prop_assert!(false, "{other:?}"),
        }
        prop_assert!(validated.dropped.is_empty());
    }

    /// Unlisted fields at any depth are dropped; e-mails in any encoding never pass.
    #[test]
    fn minimisation_lets_no_unlisted_field_or_email_through(
        (event, kept) in event_of_any_source(),
        extra in prop::collection::btree_map("[a-z_]{1,10}", any_json(), 0..5),
        top in prop::collection::btree_map("[a-z_]{1,10}", any_json(), 0..3),
        email in email(),
        at in any::<prop::sample::Index>(),
        shape in 0u8..3,
    ) {
        let mut event = event;
        for (key, value) in &extra {
            event["data"][key] = value.clone();
        }
        for (key, value) in &top {
            event[key] = value.clone();
        }
        // An address inside a kept text field, alone or within text, must not survive.
        let mut with_email = event.clone();
        let field = kept[at.index(kept.len())];
        let text = match shape {
            0 => email.clone(),
            1 => format!("spring-{email}"),
            _ => format!("/v1/users/{email}/orders"),
        };
        match field {
            "user" => with_email["user"] = json!(text),
            other => with_email["data"][other] = json!(text),
        }
        for candidate in [&event, &with_email] {
            if let Ok(validated) = validate_event(candidate, NOW, &Limits::default()) {
                let stored = format!("{:?}", validated.event.data);
                prop_assert!(!stored.contains("Zq"), "{field}: {stored}");
                let mut decoded = stored.replace('\u{FF20}', "@");
                for _ in 0..4 {
                    decoded = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().to_string();
                }
                prop_assert!(!decoded.contains('@'), "{stored}");
                let listed = listed_fields(&validated.event.data);
                for key in extra.keys() {
                    prop_assert!(
                        listed.contains(&key.as_str()) || !stored.contains(&format!(" {key}: ")),
                        "{key} kept: {stored}"
                    );
                }
            }
        }
    }

    /// Every key starts with its tenant, and no two (tenant, account) or (tenant, event) pairs share one.
    #[test]
    fn keys_start_with_the_tenant_and_never_collide(
        t1 in "[a-z0-9][a-z0-9_-]{0,20}", t2 in "[a-z0-9][a-z0-9_-]{0,20}",
        a1 in "[a-zA-Z0-9._:+=-]{1,30}", a2 in "[a-zA-Z0-9._:+=-]{1,30}",
        e1 in "[a-zA-Z0-9._:/+=-]{1,30}",
    ) {
        let ids = (TenantId::parse(&t1), TenantId::parse(&t2), AccountId::parse(&a1), AccountId::parse(&a2), EventId::parse(&e1));
        if let (Ok(t1), Ok(t2), Ok(a1), Ok(a2), Ok(e1)) = ids {
            let prefix = keys::tenant_prefix(&t1);
            for key in [keys::account_pk(&t1, &a1), keys::audit_pk(&t1), keys::event_sk(&e1)] {
                prop_assert!(key.starts_with(&prefix) || key.starts_with("E#"), "{key}");
            }
            prop_assert!(keys::account_pk(&t1, &a1).starts_with(&prefix));
            let same = (t1.as_str() == t2.as_str(), a1.as_str() == a2.as_str());
            let collide = keys::account_pk(&t1, &a1) == keys::account_pk(&t2, &a2);
            prop_assert_eq!(collide, same == (true, true));
            prop_assert_eq!(keys::audit_pk(&t1) == keys::audit_pk(&t2), same.0);
            prop_assert_eq!(keys::tenant_pk(&t1) == keys::tenant_pk(&t2), same.0);
        }
    }

    /// Any single change, deletion, swap or truncation of an anchored chain is reported.
    #[test]
    fn the_audit_chain_detects_any_single_tampering(
        n in 3usize..12,
        at in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        kind in 0u8..5,
        text in "[a-z]{1,8}",
    ) {
        let tenant = TenantId::parse("prop").expect("tenant");
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let draft = AuditDraft { actor: "k1".into(), action: "key.issue".into(), target: Some(format!("key-{i}")), request_id: format!("r{i}"), outcome: "ok".into() };
            let next = AuditEntry::next(&tenant, entries.last(), draft, NOW + time::Duration::seconds(i as i64));
            entries.push(next);
        }
        let anchors = [Anchor::of(&entries[n - 1], NOW + time::Duration::minutes(1))];
        let clean = verify_anchored(&tenant, &entries, None, &anchors, VerifyMode::Full, NOW);
        prop_assert!(clean.intact, "{clean:?}");
        let i = at.index(n);
        let mut tampered = entries.clone();
        match kind {
            0 => match i % 5 {
                0 => tampered[i].actor.push_str(&text),
                1 => tampered[i].action = text.clone(),
                2 => tampered[i].target = None,
                3 => tampered[i].outcome.push_str(&text),
                _ => tampered[i].expires_at = tampered[i].expires_at.map(|e| e + 1),
            },
            1 => { tampered.remove(i); }
            2 => {
                let j = other.index(n);
                prop_assume!(i != j);
                tampered.swap(i, j);
            }
            3 => tampered.truncate(i.max(1).min(n - 1)),
            _ => {
                // A rewrite from i on, every hash recomputed: only the anchor can tell.
                // (Rewriting an outcome with the same text changes nothing to find.)
                prop_assume!(tampered[i].outcome != text);
                tampered[i].outcome = text.clone();
                for k in i..n {
                    if k > i { tampered[k].prev_hash = tampered[k - 1].hash.clone(); }
                    tampered[k].hash = tampered[k].compute_hash(&tenant);
                }
            }
        }
        let report = verify_anchored(&tenant, &tampered, None, &anchors, VerifyMode::Full, NOW);
        prop_assert!(!report.intact, "kind {kind} at {i} of {n} went unseen");
    }
}

/// Days in a month of the proleptic Gregorian calendar, computed apart from the
/// `time` crate the code uses.
fn days_in(year: i32, month: u8) -> u8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

proptest! {
    #![proptest_config(config())]

    /// Art. 12(3): due the same day of the next month at the same time, or the
    /// last day of that month when it is shorter; never before 28 days, never
    /// after 31.
    #[test]
    fn a_request_is_due_one_calendar_month_after_receipt(
        day in 0i64..60_000,
        second in 0i64..86_400,
    ) {
        use vigil_shared::domain::privacy::due_date;
        let received = datetime!(1970-01-01 0:00 UTC)
            + time::Duration::days(day)
            + time::Duration::seconds(second);
        let due = due_date(received);
        let (year, month) = match u8::from(received.month()) {
            12 => (received.year() + 1, 1),
            m => (received.year(), m + 1),
        };
        prop_assert_eq!((due.year(), u8::from(due.month())), (year, month));
        prop_assert_eq!(due.day(), received.day().min(days_in(year, month)));
        prop_assert_eq!(due.time(), received.time());
        prop_assert!((28..=31).contains(&(due - received).whole_days()));
    }

    /// A suppression marker never holds the lookup key it is made from, and a
    /// receipt's digest changes with its content.
    #[test]
    fn markers_hide_the_lookup_key_and_digests_follow_receipts(
        lookup in "v[1-9]\\.[0-9a-f]{64}",
        events in 0u64..1_000_000,
    ) {
        use vigil_shared::domain::privacy::{suppression_marker, Outcome, Receipt, RequestType};
        let outcome = Outcome { events: Some(events), ..Outcome::default() };
        let receipt = Receipt::new("pr_1", RequestType::Erasure, "a", "b", outcome, 1, "00");
        let marker = suppression_marker(&lookup);
        prop_assert!(!marker.contains(&lookup[3..]) && marker.len() == 64);
        let mut changed = receipt.clone();
        changed.outcome.events = Some(events + 1);
        prop_assert_ne!(changed.compute_digest(), receipt.digest);
    }
}
