//! The local stack as a process: `vigil-local serve` (or `infra/run`) started
//! with its output in a file, stopped when the test ends even if it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>`, found from the test binary (`target/<profile>/deps/it-<hash>`),
/// so that `CARGO_TARGET_DIR` is honoured.
pub fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .expect("test binary path")
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target directory")
}

/// A binary of the workspace, built by `infra/test` before the tests run.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with ./infra/test, which builds it",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// True when nothing listens on the loopback port.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A child process whose stdout and stderr go to a file; killed on drop.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    /// Starts `command` with its output in `log`.
    pub fn spawn(mut command: Command, log: PathBuf) -> Self {
        // Files, not pipes: nothing has to drain them while the process runs.
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start the process");
        Self { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `path` exists; panics with the output if the process exits first.
    pub async fn wait_for_file(&mut self, path: &Path, within: Duration) {
        let started = Instant::now();
        while !path.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited with {status} before {}: {}",
                    path.display(),
                    self.output()
                );
            }
            assert!(
                started.elapsed() < within,
                "{} did not appear within {within:?}: {}",
                path.display(),
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit by itself, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if started.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil-local serve` on a free port, against the test emulator, with its
/// state file and log in a fresh temporary directory.
pub struct LocalServer {
    pub process: Running,
    pub port: u16,
    pub dir: PathBuf,
    pub state_file: PathBuf,
}

impl LocalServer {
    pub async fn start(name: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("{name}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let state_file = dir.join("stack.json");
        let mut command = Command::new(binary("vigil-local"));
        command
            .args(["serve", "--emulator", &crate::emulator_url()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--stack", &format!("{name}{}", std::process::id())])
            .arg("--template")
            .arg(vigil_local::repo_template())
            .arg("--state-file")
            .arg(&state_file)
            .env_remove("RUST_LOG");
        let mut process = Running::spawn(command, dir.join("output.log"));
        process
            .wait_for_file(&state_file, Duration::from_secs(60))
            .await;
        Self {
            process,
            port,
            dir,
            state_file,
        }
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request to this server with `key` as Bearer token and, if given, a JSON body.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<String>,
    ) -> reqwest::RequestBuilder {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api()))
            .header("authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request
    }

    /// A key with every scope for `tenant`, issued as the operator CLI does,
    /// from the state file.
    pub async fn admin_key(&self, tenant: &str) -> String {
        let config = vigil_shared::stack_state::StackState::read(&self.state_file)
            .expect("state file")
            .config();
        let spec = vigil_shared::app::keys::KeySpec {
            name: "process".into(),
            scopes: vigil_shared::domain::access::Scope::ALL.to_vec(),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        };
        vigil_local::issue_key(&config, tenant, spec)
            .await
            .expect("issue a key")
    }

    /// Stops the server and returns everything it logged (metrics file apart).
    pub fn stop(mut self) -> String {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let output = self.process.output();
        let _ = std::fs::remove_dir_all(&self.dir);
        output
    }
}
