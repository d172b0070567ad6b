//! The local HTTP API: the template's routes, each served by the real handler of
//! its function, with API Gateway HTTP API (payload format 2.0) events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerV2Request, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body as LambdaBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vigil_authorizer::AuthorizerResponse;
use vigil_shared::adapters::dynamo::DynamoStore;
use vigil_shared::config::Config;

use crate::provision::{LocalAuthorizer, LocalFunction, Provisioned, Route};

/// API Gateway's payload limit: larger requests never reach a function.
pub const API_GATEWAY_MAX_PAYLOAD: usize = 10 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("function {function}: {detail}")]
    Init { function: String, detail: String },
    #[error("function {function}: no local handler for binary {binary}")]
    UnknownBinary { function: String, binary: String },
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A function's handler with its dependencies, built once like a cold start.
pub enum Handler {
    Ingest(vigil_ingest::Deps<DynamoStore>),
    Admin(vigil_admin::Deps<DynamoStore>),
    Dashboard(vigil_dashboard::Deps<DynamoStore>),
    Authorizer(vigil_authorizer::Deps<DynamoStore>),
}

fn init_error(function: &LocalFunction, error: impl std::fmt::Display) -> ServeError {
    ServeError::Init {
        function: function.logical_id.clone(),
        detail: error.to_string(),
    }
}

impl Handler {
    /// Builds the handler from the function's template environment; `endpoint` is
    /// where its SDK clients send requests (the emulator, or a proxy in front of it).
    pub async fn build(
        function: &LocalFunction,
        endpoint: &str,
        region: &str,
    ) -> Result<Self, ServeError> {
        let mut env = function.environment.clone();
        env.insert("AWS_ENDPOINT_URL".into(), endpoint.to_owned());
        env.insert("AWS_REGION".into(), region.to_owned());
        let config = Config::from_lookup(|name| env.get(name).cloned());
        let init = |e: &dyn std::fmt::Display| init_error(function, e);
        match function.binary.as_str() {
            "vigil-ingest" => vigil_ingest::Deps::connect(&config)
                .await
                .map(Handler::Ingest)
                .map_err(|e| init(&e)),
            "vigil-admin" => vigil_admin::Deps::connect(&config)
                .await
                .map(Handler::Admin)
                .map_err(|e| init(&e)),
            "vigil-dashboard" => vigil_dashboard::Deps::connect(&config)
                .await
                .map(Handler::Dashboard)
                .map_err(|e| init(&e)),
            "vigil-authorizer" => vigil_authorizer::Deps::connect(&config)
                .await
                .map(Handler::Authorizer)
                .map_err(|e| init(&e)),
            other => Err(ServeError::UnknownBinary {
                function: function.logical_id.clone(),
                binary: other.to_owned(),
            }),
        }
    }

    async fn call(&self, request: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        match self {
            Handler::Ingest(deps) => vigil_ingest::handle(request, deps).await,
            Handler::Admin(deps) => vigil_admin::handle(request, deps).await,
            Handler::Dashboard(deps) => vigil_dashboard::handle(request, deps).await,
            Handler::Authorizer(_) => plain_response(404, "Not Found"),
        }
    }

    /// Runs the authorizer; Err when the function fails (API Gateway answers 500).
    async fn authorize(
        &self,
        request: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> Result<AuthorizerResponse, ()> {
        match self {
            Handler::Authorizer(deps) => {
                vigil_authorizer::authorize(request, deps)
                    .await
                    .map_err(|error| {
                        tracing::warn!(error = %error, "authorizer failed");
                    })
            }
            _ => Err(()),
        }
    }
}

/// The emulated authorizer: its function, identity headers and decision cache.
struct Gate {
    handler: Arc<Handler>,
    config: LocalAuthorizer,
    /// Identity -> (when decided, context if allowed), like API Gateway's cache.
    cache: Mutex<HashMap<String, (Instant, Option<serde_json::Value>)>>,
}

/// Routes and their handlers, behind the authorizer.
pub struct LocalApi {
    routes: Vec<(Route, Arc<Handler>)>,
    gate: Option<Gate>,
}

impl LocalApi {
    pub async fn build(stack: &Provisioned, endpoint: &str) -> Result<Self, ServeError> {
        let mut routes = Vec::new();
        let mut gate = None;
        for function in &stack.functions {
            let handler = Arc::new(Handler::build(function, endpoint, &stack.region).await?);
            if let Some(config) = stack
                .authorizer
                .as_ref()
                .filter(|a| a.function_logical_id == function.logical_id)
            {
                gate = Some(Gate {
                    handler: handler.clone(),
                    config: config.clone(),
                    cache: Mutex::new(HashMap::new()),
                });
            }
            for route in &function.routes {
                routes.push((route.clone(), handler.clone()));
            }
        }
        Ok(Self { routes, gate })
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(route, _)| route)
    }

    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Route, &Handler, HashMap<String, String>)> {
        self.routes.iter().find_map(|(route, handler)| {
            if route.method != method && route.method != "ANY" {
                return None;
            }
            match_path(&route.path, path).map(|params| (route, handler.as_ref(), params))
        })
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let Some((route, handler, params)) = self.find(&method, &path) else {
            return plain(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
        };
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, API_GATEWAY_MAX_PAYLOAD).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"message": "Request Entity Too Large"}),
                )
            }
        };
        let mut event = api_gateway_event(&parts, &body, route, params, peer);
        if route.authorized {
            if let Some(gate) = &self.gate {
                match gate.check(&event).await {
                    Ok(context) => {
                        event["requestContext"]["authorizer"] = json!({ "lambda": context })
                    }
                    Err(denied) => return denied,
                }
            }
        }
        let event: ApiGatewayV2httpRequest = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(_) => return plain(StatusCode::BAD_REQUEST, json!({"message": "Bad Request"})),
        };
        into_http(handler.call(&event).await)
    }
}

impl Gate {
    /// API Gateway's steps: 401 without identity, else the (cached) decision: 403 or the context.
    async fn check(
        &self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, Response<Full<Bytes>>> {
        let identity: Vec<String> = self
            .config
            .identity_headers
            .iter()
            .filter_map(|name| {
                event["headers"][name]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            })
            .collect();
        if identity.len() != self.config.identity_headers.len() {
            return Err(plain(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Unauthorized"}),
            ));
        }
        let cache_key = identity.join("\n");
        let ttl = Duration::from_secs(self.config.cache_seconds);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, context)| context.clone());
        let context = match cached {
            Some(context) => context,
            None => {
                let mut request = event.clone();
                request["type"] = json!("REQUEST");
                request["identitySource"] = json!(identity);
                request["routeArn"] = json!(format!(
                    "arn:aws:execute-api:local:{}:local/$default/{}",
                    crate::provision::LOCAL_ACCOUNT_ID,
                    event["routeKey"]
                        .as_str()
                        .unwrap_or_default()
                        .replace(' ', "")
                ));
                let Ok(request) =
                    serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(request)
                else {
                    return Err(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"message": "Internal Server Error"}),
                    ));
                };
                let Ok(decision) = self.handler.authorize(&request).await else {
                    return Err(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"message": "Internal Server Error"}),
                    ));
                };
                let context = decision.is_authorized.then_some(decision.context);
                if ttl > Duration::ZERO {
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(cache_key, (Instant::now(), context.clone()));
                }
                context
            }
        };
        context.ok_or_else(|| plain(StatusCode::FORBIDDEN, json!({"message": "Forbidden"})))
    }
}

fn plain_response(status: u16, message: &str) -> ApiGatewayV2httpResponse {
    vigil_shared::api::json_response(status, &json!({ "message": message }))
}

fn match_path(template: &str, path: &str) -> Option<HashMap<String, String>> {
    let wanted: Vec<&str> = template.trim_matches('/').split('/').collect();
    let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
    if wanted.len() != actual.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (w, a) in wanted.iter().zip(&actual) {
        if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            params.insert(name.to_owned(), (*a).to_owned());
        } else if w != a {
            return None;
        }
    }
    Some(params)
}

fn plain(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn is_text(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("json")
        || mime.ends_with("xml")
        || mime == "application/x-www-form-urlencoded"
}

/// The event API Gateway would send, as JSON, so it goes through the same deserialiser.
fn api_gateway_event(
    parts: &http::request::Parts,
    body: &Bytes,
    route: &Route,
    params: HashMap<String, String>,
    peer: SocketAddr,
) -> serde_json::Value {
    use base64::Engine;
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) if is_text(&content_type) => (text.to_owned(), false),
        _ => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let request_id = format!("{:032x}", rand::random::<u128>());
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{} {}", route.method, route.path),
        "rawPath": parts.uri.path(),
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": crate::provision::LOCAL_ACCOUNT_ID,
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or_default(),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": format!("{} {}", route.method, route.path),
            "stage": "$default",
            "time": "",
            "timeEpoch": i64::try_from(now.as_millis()).unwrap_or(0),
        },
        "isBase64Encoded": base64,
    });
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if let Some(query) = parts.uri.query() {
        let pairs: HashMap<&str, &str> = query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .collect();
        event["queryStringParameters"] = json!(pairs);
    }
    event
}

fn into_http(response: ApiGatewayV2httpResponse) -> Response<Full<Bytes>> {
    use base64::Engine;
    let body = match response.body {
        Some(LambdaBody::Text(text)) if response.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        }
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut out = Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = u16::try_from(response.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    *out.headers_mut() = response.headers;
    out
}

/// A server running in the background until dropped or shut down.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(api: LocalApi, listen: SocketAddr) -> Result<RunningServer, ServeError> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let api = Arc::new(api);
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let api = api.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let api = api.clone();
                            async move { Ok::<_, Infallible>(api.dispatch(request, peer).await) }
                        });
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                _ = &mut rx => break,
            }
        }
    });
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_parameters() {
        assert_eq!(match_path("/v1/events", "/v1/events"), Some(HashMap::new()));
        assert_eq!(match_path("/v1/events", "/v1/event"), None);
        let params = match_path("/v1/accounts/{account}", "/v1/accounts/acme").expect("match");
        assert_eq!(params["account"], "acme");
    }
}
