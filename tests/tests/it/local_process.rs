//! `./infra/run` as a person runs it (minus the build, which `infra/test` did):
//! a second start on the same ports fails at once naming the port and leaves the
//! first stack's state and log untouched; a percent-encoded path parameter
//! reaches its handler decoded; `vigil-local invoke` (and `vigil-ops job invoke`)
//! run a function of the running stack; SIGTERM leaves no process and no bound
//! port behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use vigil_shared::domain::access::Scope;
use vigil_tests::process::{binary, free_port, port_is_free, profile_dir, Running};

fn run_command(api_port: u16, emulator_port: u16, state_dir: &Path) -> Command {
    let script = vigil_local::repo_template()
        .parent()
        .expect("repository")
        .join("infra/run");
    let target = profile_dir()
        .parent()
        .expect("target directory")
        .to_path_buf();
    let mut command = Command::new("bash");
    command
        .arg(script)
        .env("VIGIL_PORT", api_port.to_string())
        .env("VIGIL_EMULATOR_PORT", emulator_port.to_string())
        .env("VIGIL_STATE_DIR", state_dir)
        .env("VIGIL_SKIP_BUILD", "1")
        .env("CARGO_TARGET_DIR", target);
    command
}

/// Processes whose command line mentions `needle` (children included).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

#[tokio::test]
async fn the_run_command_refuses_busy_ports_and_cleans_up_on_sigterm() {
    let (api_port, emulator_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("run-{}-{api_port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let state_file = dir.join("stack.json");
    let emulator_log = dir.join("moto.log");

    let mut first = Running::spawn(
        run_command(api_port, emulator_port, &dir),
        dir.join("first.log"),
    );
    first
        .wait_for_file(&state_file, Duration::from_secs(90))
        .await;
    let state_before = std::fs::read_to_string(&state_file).expect("state");
    let log_before = std::fs::read_to_string(&emulator_log).expect("emulator log");

    // A second start on the same ports, with the same state directory.
    let mut second = Running::spawn(
        run_command(api_port, emulator_port, &dir),
        std::env::temp_dir().join(format!("second-{api_port}.log")),
    );
    let status = second
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the second start fails at once");
    assert!(!status.success());
    let said = second.output();
    assert!(
        said.contains(&format!("port {api_port} (VIGIL_PORT) is already in use")),
        "{said}"
    );
    assert!(!said.contains("Exception"), "nothing was attempted: {said}");
    assert_eq!(
        std::fs::read_to_string(&state_file).expect("state"),
        state_before
    );
    assert_eq!(
        std::fs::read_to_string(&emulator_log).expect("log"),
        log_before
    );

    // A percent-encoded path parameter reaches the handler decoded.
    let state = vigil_shared::stack_state::StackState::read(&state_file).expect("state");
    let spec = vigil_shared::app::keys::KeySpec {
        name: "process".into(),
        scopes: vec![Scope::Ingest, Scope::Read],
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(1),
    };
    let key = vigil_local::issue_key(&state.config(), "decode", spec)
        .await
        .expect("key");
    let http = reqwest::Client::new();
    let events = json!({"events": [vigil_tests::api_call("p-1", "acme-corp", &vigil_tests::hours_ago(1, 0), 200)]});
    let ingested = http
        .post(format!("{}/v1/events", state.api_url))
        .bearer_auth(&key)
        .json(&events)
        .send()
        .await
        .expect("ingest");
    assert_eq!(ingested.status().as_u16(), 200);
    let usage: serde_json::Value = http
        .get(format!("{}/v1/accounts/acme%2Dcorp/usage", state.api_url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(usage["account"], "acme-corp", "{usage}");
    assert_eq!(usage["hours"][0]["calls"], 1, "{usage}");

    // Any function of the running stack can be invoked with an event.
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        r#"{"version": "2.0", "type": "REQUEST", "routeKey": "GET /v1/keys", "headers": {}, "requestContext": {"requestId": "r-1",
            "http": {"method": "GET", "path": "/v1/keys", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}}}"#,
    )
    .expect("event file");
    let invoked = Command::new(binary("vigil-local"))
        .args(["invoke", "AuthorizerFunction", "--event"])
        .arg(&event)
        .arg("--state-file")
        .arg(&state_file)
        .output()
        .expect("vigil-local invoke");
    let output = String::from_utf8_lossy(&invoked.stdout);
    assert!(
        invoked.status.success(),
        "{output} {}",
        String::from_utf8_lossy(&invoked.stderr)
    );
    assert!(output.contains("\"isAuthorized\":false"), "{output}");
    // The operator CLI's job commands go the same way.
    let job = Command::new(binary("vigil-ops"))
        .arg("--local")
        .arg("--state-file")
        .arg(&state_file)
        .args(["job", "invoke", "AuthorizerFunction", "--event"])
        .arg(&event)
        .output()
        .expect("vigil-ops job invoke");
    let output = String::from_utf8_lossy(&job.stdout);
    assert!(
        job.status.success(),
        "{output} {}",
        String::from_utf8_lossy(&job.stderr)
    );
    assert!(output.contains("\"isAuthorized\":false"), "{output}");

    // SIGTERM to the run command: every child stops and both ports are released.
    let pid = first.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = first
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("infra/run stops on SIGTERM");
    assert!(!status.success(), "{}", first.output());
    let mut left = Vec::new();
    for _ in 0..50 {
        left = processes_mentioning(&format!("127.0.0.1:{api_port}"));
        left.extend(processes_mentioning(&format!("-p {emulator_port}")));
        if left.is_empty() && port_is_free(api_port) && port_is_free(emulator_port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(port_is_free(api_port), "the API port is still bound");
    assert!(
        port_is_free(emulator_port),
        "the emulator port is still bound"
    );
    assert!(
        !state_file.exists(),
        "the state of a stopped stack is removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
