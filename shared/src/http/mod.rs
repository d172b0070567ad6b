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
use serde_json::{json, Value};

use crate::auth::{self, Caller};
use crate::domain::access::Scope;
use crate::telemetry;

pub use body::{field_label, json_bytes, parse_json};
pub use error::ApiError;

/// A successful answer: status and JSON body (the request id is added to it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Set when a retry may succeed (e.g. ingest with every event failed).
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
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
        let (status, mut body, retry_after) = match &outcome {
            Ok(reply) => (reply.status, reply.body.clone(), reply.retry_after),
            Err(error) => (error.status(), error.body(), error.retry_after()),
        };
        let code = outcome.as_ref().err().map(ApiError::code);
        let detail = outcome.as_ref().err().and_then(ApiError::detail);
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
        if let Value::Object(map) = &mut body {
            map.insert("request_id".into(), json!(self.request_id));
        }
        response(status, &body, retry_after)
    }
}

/// The API Gateway response for a JSON body.
pub fn response(status: u16, body: &Value, retry_after: Option<u32>) -> ApiGatewayV2httpResponse {
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
    response.body = Some(Body::Text(body.to_string()));
    response
}
