//! The local stack's state file (`.local/stack.json`): what `infra/run` started
//! and where, written by `vigil-local` once the stack is up and read by the
//! operator CLI (`--local`) and `vigil-local invoke`; and the one client of the
//! stack's Lambda Invoke API, which both use to run a function with an event.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{Config, Setting};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackState {
    /// The local API, e.g. `http://127.0.0.1:3000`.
    pub api_url: String,
    /// The emulator's endpoint.
    pub emulator: String,
    pub region: String,
    pub stack: String,
    /// Logical id in template.yaml -> its local name (table name, key id, ...).
    pub resources: BTreeMap<String, String>,
    /// `METHOD /path` of each route.
    pub routes: Vec<String>,
    /// Logical ids of the functions that can be invoked.
    pub functions: Vec<String>,
    /// `Function: expression` of each schedule.
    pub schedules: Vec<String>,
}

/// What a function invoked through the local stack answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub status: u16,
    /// Lambda's `X-Amz-Function-Error`: the handler failed.
    pub function_error: bool,
    pub output: String,
}

impl Invocation {
    pub fn succeeded(&self) -> bool {
        self.status == 200 && !self.function_error
    }
}

/// The path of Lambda's Invoke API for `function`.
pub fn invoke_path(function: &str) -> String {
    format!("/2015-03-31/functions/{function}/invocations")
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot read the local stack state {path}: {detail} (is ./infra/run running?)")]
    Read { path: String, detail: String },
    #[error("cannot write the local stack state {path}: {detail}")]
    Write { path: String, detail: String },
    #[error("cannot reach the local stack at {url}: {detail}")]
    Unreachable { url: String, detail: String },
}

impl StackState {
    pub fn read(path: &Path) -> Result<Self, StateError> {
        let error = |detail: String| StateError::Read {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| error(e.to_string()))
    }

    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let error = |detail: String| StateError::Write {
            path: path.display().to_string(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| error(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| error(e.to_string()))
    }

    /// Invokes `function` (its logical id) of the running stack with `event`.
    pub async fn invoke(
        &self,
        function: &str,
        event: &serde_json::Value,
    ) -> Result<Invocation, StateError> {
        invoke(&self.api_url, function, event).await
    }

    /// Every setting, pointing at this stack's resources in the emulator.
    pub fn config(&self) -> Config {
        Config::from_lookup(|name| match name {
            "AWS_ENDPOINT_URL" => Some(self.emulator.clone()),
            "AWS_REGION" => Some(self.region.clone()),
            _ => Setting::ALL
                .into_iter()
                .find(|setting| setting.env_name() == name)
                .and_then(|setting| self.resources.get(setting.resource()).cloned()),
        })
    }
}

/// An event from a JSON file ("-": standard input; None: `{}`).
pub fn read_event(path: Option<&Path>) -> Result<serde_json::Value, String> {
    let Some(path) = path else {
        return Ok(serde_json::json!({}));
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("the event is not JSON: {e}"))
}

/// Invokes `function` through the Invoke API of the local stack at `api_url`.
pub async fn invoke(
    api_url: &str,
    function: &str,
    event: &serde_json::Value,
) -> Result<Invocation, StateError> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let url = format!("{api_url}{}", invoke_path(function));
    let unreachable = |detail: String| StateError::Unreachable {
        url: url.clone(),
        detail,
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = aws_lambda_events::http::Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(event.to_string())))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let function_error = response.headers().contains_key("x-amz-function-error");
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    Ok(Invocation {
        status,
        function_error,
        output: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_stack_resources() {
        let state = StackState {
            api_url: "http://127.0.0.1:3000".into(),
            emulator: "http://127.0.0.1:4566".into(),
            region: "eu-west-3".into(),
            stack: "s".into(),
            resources: BTreeMap::from([("TenantsTable".to_owned(), "s-TenantsTable".to_owned())]),
            routes: vec![],
            functions: vec![],
            schedules: vec![],
        };
        let config = state.config();
        assert_eq!(config.get(Setting::TenantsTable), Some("s-TenantsTable"));
        assert_eq!(config.get(Setting::AuditTable), None);
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
    }
}
