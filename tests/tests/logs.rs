//! Runs the real local server as a process, drives it over HTTP with keys and
//! personal data, and searches everything it logged: no secret, no key hash, no
//! e-mail, user id or client IP may appear. `infra/test` builds the binary first.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use vigil_shared::domain::access::Scope;
use vigil_shared::domain::TenantId;
use vigil_shared::ports::AccessStore;

fn local_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/logs-<hash> -> target/<profile>/vigil-local
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("vigil-local"))
        .expect("target directory");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with ./infra/test, which builds it",
        binary.display()
    );
    binary
}

/// Kills the server if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn no_secret_key_hash_or_personal_data_reaches_the_logs() {
    let emulator = vigil_tests::emulator_url();
    let port = free_port();
    let stack_name = format!("logs{}", std::process::id());
    let state_file = std::env::temp_dir().join(format!("{stack_name}.json"));
    let _ = std::fs::remove_file(&state_file);
    // Files, not pipes: nothing has to drain them while the server runs.
    let log_path = std::env::temp_dir().join(format!("{stack_name}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = KillOnDrop(
        Command::new(local_server_binary())
            .args([
                "--emulator",
                &emulator,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--stack",
                &stack_name,
            ])
            .arg("--template")
            .arg(vigil_local::repo_template())
            .arg("--state-file")
            .arg(&state_file)
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start vigil-local"),
    );
    let started = Instant::now();
    while !state_file.exists() {
        if let Ok(Some(status)) = child.0.try_wait() {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("vigil-local exited with {status}: {output}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "vigil-local did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An admin key issued the way the operator CLI does it, from the state file.
    let config = vigil_ops::load_config(Some(&state_file)).expect("state file");
    let store = vigil_ops::connect(&config).await.expect("store");
    let admin = vigil_local::issue_local_key(&store, "acme", &Scope::ALL, "logs", None)
        .await
        .expect("key");
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}");
    let call = |method: Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut request = http
            .request(method, format!("{api}{path}"))
            .header("authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request.send()
    };

    let issued: serde_json::Value = call(
        Method::POST,
        "/v1/keys",
        &admin,
        Some(json!({"name": "ci", "scopes": ["ingest"]})),
    )
    .await
    .expect("issue")
    .json()
    .await
    .expect("json");
    let ingest_key = issued["key"].as_str().expect("secret").to_owned();
    let email = "marie.curie@example.org";
    let time = vigil_tests::hours_ago(1, 0);
    let events = json!({"events": [
        {"id": "p-1", "time": time, "source": "api_call", "account": "acme", "user": email, "email": email,
         "data": {"endpoint": format!("/v1/users/{email}"), "method": "GET", "status": 200, "latency_ms": 5, "client_ip": "198.51.100.23"}},
        {"id": "p-2", "time": time, "source": "product", "account": "acme", "user": "user-7781",
         "data": {"feature": format!("share with {email}")}}
    ]});
    let response = call(Method::POST, "/v1/events", &ingest_key, Some(events))
        .await
        .expect("ingest");
    assert_eq!(response.status().as_u16(), 200);
    let wrong = vigil_tests::tampered(&ingest_key);
    let response = call(
        Method::POST,
        "/v1/events",
        &wrong,
        Some(json!({"events": []})),
    )
    .await
    .expect("send");
    assert_eq!(response.status().as_u16(), 403);
    for path in [
        "/v1/keys",
        "/v1/audit",
        "/v1/audit/verify",
        "/v1/accounts/acme/usage",
    ] {
        let response = call(Method::GET, path, &admin, None).await.expect("send");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let hashes: Vec<String> = store
        .list_keys(&TenantId::parse("acme").expect("tenant"))
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.secret_hash)
        .collect();

    child.0.kill().expect("stop vigil-local");
    child.0.wait().expect("stopped");
    let logs = std::fs::read_to_string(&log_path).expect("logs");
    let _ = std::fs::remove_file(&state_file);
    let _ = std::fs::remove_file(&log_path);
    assert!(
        logs.contains("batch ingested"),
        "the run was logged:\n{logs}"
    );
    assert!(logs.contains("key denied"), "the refused key was logged");
    let secrets = [&admin, &ingest_key, &wrong].map(|k| k[k.len() - 64..].to_owned());
    for (what, needle) in secrets
        .iter()
        .map(|s| ("a key secret", s.as_str()))
        .chain(hashes.iter().map(|h| ("a key hash", h.as_str())))
        .chain([
            ("an e-mail", email),
            ("a user id", "user-7781"),
            ("a client IP", "198.51.100.23"),
        ])
    {
        assert!(!logs.contains(needle), "{what} reached the logs");
    }
}
