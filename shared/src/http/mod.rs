//! The one request path of every HTTP function.
//!
//! A handler opens a [`Call`] (request id, route key, cold start), asks it for
//! the caller with the scope the route needs, runs its use case, and gives the
//! outcome back to [`Call::finish`], which builds the response and writes the
//! one outcome log line. A handler never builds an error response by hand:
//!
//! ```ignore
//! let mut call = Call::begin("dashboard", request);
//! let outcome = match call.authorize(Scope::Read) {
//!     Ok(caller) => route(&call, &caller, deps).await,
//!     Err(denied) => Err(denied),
//! };
//! call.finish(outcome)
//! ```

pub mod body;
pub mod error;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::auth::{self, Caller};
use crate::domain::access::Scope;
use crate::telemetry;

pub use body::{field_label, json_bytes, parse_json};
pub use error::ApiError;

/// A successful answer: status and JSON body (the request id is added to it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// Serialised once, here: a 500-result ingest answer is not worth a `Value` tree.
    pub body: String,
    /// Set when a retry may succeed (e.g. ingest with every event failed).
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()),
            retry_after: None,
        }
    }

    pub fn ok(body: &impl Serialize) -> Self {
        Self::json(200, body)
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

/// One HTTP request on its way through a function.
pub struct Call<'a> {
    pub request: &'a ApiGatewayV2httpRequest,
    pub request_id: String,
    /// `METHOD /path/{param}`, as API Gateway routed it.
    pub route: String,
    function: &'static str,
    cold_start: bool,
    caller: Option<Caller>,
}

impl<'a> Call<'a> {
    pub fn begin(function: &'static str, request: &'a ApiGatewayV2httpRequest) -> Self {
        Self {
            request,
            request_id: auth::request_id(request),
            route: request
                .request_context
                .route_key
                .clone()
                .unwrap_or_default(),
            function,
            cold_start: telemetry::take_cold_start(),
            caller: None,
        }
    }

    /// The caller the authorizer resolved, if its key holds `scope`.
    pub fn authorize(&mut self, scope: Scope) -> Result<Caller, ApiError> {
        let caller = auth::authorize(self.request, scope)?;
        self.caller = Some(caller.clone());
        Ok(caller)
    }

    /// A path parameter as API Gateway decoded it ("" if absent).
    pub fn path(&self, name: &str) -> &str {
        self.request
            .path_parameters
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Query parameters, each of them one of `allowed`.
    pub fn query(&self, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
        body::query(self.request, allowed)
    }

    /// The one query parameter `name`, a boolean flag (`true` or `false`;
    /// absent: false). Any other parameter is refused, naming it.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        let mut set = false;
        for (_, value) in self.query(&[name])? {
            set = match value {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::invalid(name, "expected true or false")),
            };
        }
        Ok(set)
    }

    /// The body as `T`, at most `max_bytes` (`limit_label` says it in words).
    pub fn json<T: DeserializeOwned>(
        &self,
        max_bytes: usize,
        limit_label: &'static str,
    ) -> Result<T, ApiError> {
        parse_json(&json_bytes(self.request, max_bytes, limit_label)?)
    }

    /// The response, and the request's one outcome log line.
    pub fn finish(self, outcome: Result<Reply, ApiError>) -> ApiGatewayV2httpResponse {
        let tenant = self.caller.as_ref().map(|c| c.tenant.as_str().to_owned());
        let key_id = self.caller.as_ref().map(|c| c.key_id.clone());
        let code = outcome.as_ref().err().map(ApiError::code);
        let detail = outcome.as_ref().err().and_then(ApiError::detail);
        let (status, body, retry_after) = match outcome {
            Ok(reply) => (reply.status, reply.body, reply.retry_after),
            Err(error) => (
                error.status(),
                error.body().to_string(),
                error.retry_after(),
            ),
        };
        tracing::info!(
            function = self.function,
            request_id = self.request_id,
            route = self.route,
            tenant,
            key_id,
            cold_start = self.cold_start,
            status,
            code,
            "request done"
        );
        if let Some(detail) = detail {
            // What the client was not told, for whoever reads the log.
            tracing::warn!(
                request_id = self.request_id,
                status,
                detail,
                "request failed"
            );
        }
        response(status, with_request_id(body, &self.request_id), retry_after)
    }
}

/// Adds `"request_id"` as the first member of a JSON object body.
fn with_request_id(body: String, request_id: &str) -> String {
    let Some(members) = body.strip_prefix('{') else {
        return body;
    };
    let id = Value::from(request_id);
    let separator = if members.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"request_id\":{id}{separator}{members}")
}

/// The API Gateway response for a JSON body.
pub fn response(status: u16, body: String, retry_after: Option<u32>) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = retry_after {
        response
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.body = Some(Body::Text(body));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_goes_into_object_bodies() {
        let with = |body: &str| with_request_id(body.to_owned(), "r-1");
        assert_eq!(with("{}"), r#"{"request_id":"r-1"}"#);
        assert_eq!(with(r#"{"a":1}"#), r#"{"request_id":"r-1","a":1}"#);
        assert_eq!(with("[1]"), "[1]");
        let parsed: Value = serde_json::from_str(&with(r#"{"a":{"b":[]}}"#)).expect("json");
        assert_eq!(parsed["request_id"], "r-1");
        assert_eq!(parsed["a"]["b"], serde_json::json!([]));
    }
}
