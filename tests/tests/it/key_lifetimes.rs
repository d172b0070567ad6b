//! Keys with a lifetime: a default and a maximum expiry (shorter for admin
//! keys), the issuer recorded, revocation that can cascade to what a key
//! issued, tenant suspension, and an operator CLI whose every command is
//! audited with the caller's identity.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::TenantId;
use vigil_shared::ports::AuditLog;
use vigil_tests::TestStack;

async fn issue(stack: &TestStack, with: &str, body: Value) -> (u16, Value) {
    stack
        .call(Method::POST, "/v1/keys", Some(with), Some(&body))
        .await
}

fn days_from_now(answer: &Value) -> i64 {
    let at = OffsetDateTime::parse(answer["expires_at"].as_str().expect("expires_at"), &Rfc3339)
        .expect("rfc3339");
    ((at - OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0).round() as i64
}

fn key_id_of(key: &str) -> String {
    key.rsplit('_').nth(1).expect("key id").to_owned()
}

#[tokio::test]
async fn keys_expire_by_default_and_admin_keys_live_shorter() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("lifetimes", &[Scope::Admin]).await;
    let cases = [
        (json!({"name": "r", "scopes": ["read"]}), 201, Some(90)),
        (
            json!({"name": "r", "scopes": ["read"], "expires_in_days": null}),
            201,
            Some(90),
        ),
        (
            json!({"name": "r", "scopes": ["read"], "expires_in_days": 365}),
            201,
            Some(365),
        ),
        (
            json!({"name": "r", "scopes": ["read"], "expires_in_days": 7.0}),
            201,
            Some(7),
        ),
        (
            json!({"name": "r", "scopes": ["read"], "expires_in_days": 366}),
            400,
            None,
        ),
        (
            json!({"name": "r", "scopes": ["read"], "expires_in_days": 7.5}),
            400,
            None,
        ),
        (json!({"name": "a", "scopes": ["admin"]}), 201, Some(30)),
        (
            json!({"name": "a", "scopes": ["read", "admin"], "expires_in_days": 90}),
            201,
            Some(90),
        ),
        (
            json!({"name": "a", "scopes": ["admin"], "expires_in_days": 91}),
            400,
            None,
        ),
    ];
    for (body, status, days) in cases {
        let (got, answer) = issue(&stack, &admin, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        match days {
            Some(days) => {
                assert_eq!(days_from_now(&answer), days, "{body}");
                assert_eq!(answer["issued_by"], key_id_of(&admin).as_str());
            }
            None => {
                assert_eq!(answer["error"]["field"], "expires_in_days", "{answer}");
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                let max = if body["scopes"].to_string().contains("admin") {
                    90
                } else {
                    365
                };
                let fractional = body["expires_in_days"]
                    .as_f64()
                    .is_some_and(|d| d.fract() != 0.0);
                let expected = if fractional {
                    "expected an integer".to_owned()
                } else {
                    format!("from 1 to {max}")
                };
                assert!(message.contains(&expected), "{message}");
            }
        }
    }
    let (_, listed) = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await;
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1 + 6);
    assert!(keys.iter().all(|k| k["expires_at"].is_string()), "{listed}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_key_never_outlives_the_key_that_issued_it() {
    let stack = TestStack::start().await;
    let issuer_expiry = OffsetDateTime::now_utc() + time::Duration::days(3);
    let admin = stack
        .issue_key_with("capped", &[Scope::Admin], Some(issuer_expiry))
        .await;
    let (status, child) = issue(&stack, &admin, json!({"name": "c", "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(days_from_now(&child), 3, "{child}");
    let at = OffsetDateTime::parse(child["expires_at"].as_str().unwrap_or_default(), &Rfc3339)
        .expect("rfc3339");
    assert!(at <= issuer_expiry, "{child}");
    // Shorter than the issuer: as asked.
    let (_, short) = issue(
        &stack,
        &admin,
        json!({"name": "s", "scopes": ["read"], "expires_in_days": 1}),
    )
    .await;
    assert_eq!(days_from_now(&short), 1, "{short}");
    stack.shutdown().await;
}

#[tokio::test]
async fn revoking_with_cascade_revokes_what_the_key_issued() {
    let stack = TestStack::start().await;
    let root = stack.issue_key("cascade", &[Scope::Admin]).await;
    let (_, b) = issue(&stack, &root, json!({"name": "b", "scopes": ["admin"]})).await;
    let b_key = b["key"].as_str().expect("key").to_owned();
    let (_, c) = issue(&stack, &b_key, json!({"name": "c", "scopes": ["read"]})).await;
    let (_, d) = issue(&stack, &b_key, json!({"name": "d", "scopes": ["admin"]})).await;
    let d_key = d["key"].as_str().expect("key").to_owned();
    let (_, e) = issue(&stack, &d_key, json!({"name": "e", "scopes": ["ingest"]})).await;
    let (_, f) = issue(&stack, &root, json!({"name": "f", "scopes": ["read"]})).await;
    let id = |v: &Value| v["key_id"].as_str().expect("key_id").to_owned();

    // Without cascade: only the key itself.
    let (status, plain) = stack
        .call(
            Method::DELETE,
            &format!("/v1/keys/{}", id(&e)),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["also_revoked"], json!([]));

    let (status, answer) = stack
        .call(
            Method::DELETE,
            &format!("/v1/keys/{}?cascade=true", id(&b)),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let also: BTreeSet<String> = answer["also_revoked"]
        .as_array()
        .expect("also_revoked")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    // e was revoked already: it is not revoked "now".
    assert_eq!(also, BTreeSet::from([id(&c), id(&d)]));

    let (_, listed) = stack.call(Method::GET, "/v1/keys", Some(&root), None).await;
    let active: BTreeSet<String> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["active"] == true)
        .filter_map(|k| k["key_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(active, BTreeSet::from([key_id_of(&root), id(&f)]));
    // A revoked key of the cascade no longer works (never used: not cached).
    let (status, _) = stack
        .call(
            Method::GET,
            "/v1/accounts/acme/usage",
            c["key"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 403);
    // Each revocation is on the trail.
    let entries = stack
        .audit()
        .entries(&TenantId::parse("cascade").expect("tenant"), None, None)
        .await
        .expect("entries");
    let revoked: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.action == "key.revoke" && e.outcome == "ok")
        .filter_map(|e| e.target.clone())
        .collect();
    assert_eq!(revoked, BTreeSet::from([id(&b), id(&c), id(&d), id(&e)]));
    stack.shutdown().await;
}

async fn ops(stack: &TestStack, command: vigil_ops::Command) -> Result<String, String> {
    let tables = vigil_ops::connect(&stack.config).await.expect("tables");
    let mut out = Vec::new();
    vigil_ops::run(command, &tables, &mut out)
        .await
        .map(|()| String::from_utf8_lossy(&out).into_owned())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_suspended_tenants_keys_are_refused_until_it_is_resumed() {
    use vigil_ops::{Command, TenantAction};
    let stack = TestStack::start().await;
    let before = stack.issue_key("paused", &[Scope::Read]).await;
    let other = stack.issue_key("running", &[Scope::Read]).await;
    let suspend = || Command::Tenant {
        action: TenantAction::Suspend {
            tenant: "paused".into(),
        },
    };
    let out = ops(&stack, suspend()).await.expect("suspended");
    assert!(out.contains("suspended"), "{out}");
    let during = stack.issue_key("paused", &[Scope::Read]).await;
    for key in [&before, &during] {
        let (status, body) = stack
            .call(Method::GET, "/v1/accounts/acme/usage", Some(key), None)
            .await;
        assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    }
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme/usage", Some(&other), None)
        .await;
    assert_eq!(status, 200, "another tenant is untouched");

    ops(
        &stack,
        Command::Tenant {
            action: TenantAction::Resume {
                tenant: "paused".into(),
            },
        },
    )
    .await
    .expect("resumed");
    let after = stack.issue_key("paused", &[Scope::Read]).await;
    let (status, _) = stack
        .call(Method::GET, "/v1/accounts/acme/usage", Some(&after), None)
        .await;
    assert_eq!(status, 200);
    let missing = ops(
        &stack,
        Command::Tenant {
            action: TenantAction::Suspend {
                tenant: "nobody".into(),
            },
        },
    )
    .await;
    assert_eq!(missing, Err("tenant nobody does not exist".into()));
    stack.shutdown().await;
}

#[tokio::test]
async fn every_operator_command_is_audited_with_the_callers_identity() {
    use vigil_ops::{AuditAction, Command, KeyAction, TenantAction};
    let stack = TestStack::start().await;
    let tenant = || "operated".to_owned();
    ops(
        &stack,
        Command::Tenant {
            action: TenantAction::Create {
                tenant: tenant(),
                name: "Operated".into(),
            },
        },
    )
    .await
    .expect("create");
    let issued = ops(
        &stack,
        Command::Key {
            action: KeyAction::Issue {
                tenant: tenant(),
                scopes: "read".into(),
                name: "cli".into(),
                expires_in_days: None,
            },
        },
    )
    .await
    .expect("issue");
    let key_id = issued
        .lines()
        .find_map(|l| l.strip_prefix("key id: "))
        .expect("key id")
        .to_owned();
    let commands = [
        Command::Key {
            action: KeyAction::List { tenant: tenant() },
        },
        Command::Key {
            action: KeyAction::Revoke {
                tenant: tenant(),
                key_id: key_id.clone(),
                cascade: false,
            },
        },
        Command::Tenant {
            action: TenantAction::Retention {
                tenant: tenant(),
                raw_event_days: 90,
            },
        },
        Command::Tenant {
            action: TenantAction::Suspend { tenant: tenant() },
        },
        Command::Tenant {
            action: TenantAction::Resume { tenant: tenant() },
        },
        Command::Audit {
            action: AuditAction::Verify {
                tenant: tenant(),
                full: false,
            },
        },
    ];
    for command in commands {
        ops(&stack, command).await.expect("command");
    }
    let entries = stack
        .audit()
        .entries(&TenantId::parse("operated").expect("tenant"), None, None)
        .await
        .expect("entries");
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "key.issue",
            "key.list",
            "key.revoke",
            "tenant.retention",
            "tenant.suspend",
            "tenant.resume",
            "audit.verify"
        ]
    );
    // The principal's unique id from STS: the same for every command, no name, no account.
    let actor = &entries[0].actor;
    let id = actor.strip_prefix("operator:").expect("operator:<id>");
    assert!(!id.is_empty() && id != "unknown", "{actor}");
    assert!(
        !actor.contains("arn:") && !actor.contains('@') && !actor.contains('/'),
        "{actor}"
    );
    assert!(entries.iter().all(|e| &e.actor == actor), "{entries:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn new_parameters_with_bad_values_get_a_clear_error_naming_them() {
    let stack = TestStack::start().await;
    let admin = stack.issue_key("params", &[Scope::Admin]).await;
    let cases = [
        (Method::GET, "/v1/audit/verify?full=yes".to_owned(), "full"),
        (
            Method::GET,
            "/v1/audit/verify?fast=true".to_owned(),
            "query parameter fast",
        ),
        (
            Method::DELETE,
            format!("/v1/keys/{}?cascade=1", key_id_of(&admin)),
            "cascade",
        ),
        (
            Method::DELETE,
            "/v1/keys/ABCDEF0123456789".to_owned(),
            "key_id",
        ),
        (Method::DELETE, "/v1/keys/0123".to_owned(), "key_id"),
    ];
    for (method, path, field) in cases {
        let (status, body) = stack.call(method.clone(), &path, Some(&admin), None).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(!body.to_string().contains("yes"), "{body}");
    }
    // Nothing was revoked by the refused calls: the admin key still works.
    let (status, _) = stack
        .call(Method::GET, "/v1/keys", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_cli_needs_the_anchor_bucket_only_to_verify() {
    use vigil_ops::{AuditAction, Command, TenantAction};
    let stack = TestStack::start().await;
    let config = vigil_shared::config::Config::from_lookup(|name| match name {
        "VIGIL_AUDIT_ANCHOR_BUCKET" => None,
        "AWS_ENDPOINT_URL" => stack.config.endpoint_url.clone(),
        "AWS_REGION" => stack.config.region.clone(),
        other => vigil_shared::config::Setting::ALL
            .into_iter()
            .find(|s| s.env_name() == other)
            .and_then(|s| stack.config.get(s).map(str::to_owned)),
    });
    let tables = vigil_ops::connect(&config).await.expect("tables");
    let mut out = Vec::new();
    vigil_ops::run(
        Command::Tenant {
            action: TenantAction::Create {
                tenant: "nobucket".into(),
                name: String::new(),
            },
        },
        &tables,
        &mut out,
    )
    .await
    .expect("create without the bucket");
    let verify = vigil_ops::run(
        Command::Audit {
            action: AuditAction::Verify {
                tenant: "nobucket".into(),
                full: false,
            },
        },
        &tables,
        &mut out,
    )
    .await;
    assert_eq!(
        verify.map_err(|e| e.to_string()),
        Err("environment variable VIGIL_AUDIT_ANCHOR_BUCKET is not set".into())
    );
    stack.shutdown().await;
}
