//! The local HTTP API: the template's routes, each served by the real handler of
//! its function with API Gateway HTTP API (payload 2.0) events, behind the
//! emulated authorizer. It also takes Lambda's Invoke call
//! (`POST /2015-03-31/functions/{Function}/invocations`, local only) so any
//! function, scheduled jobs included, can be run with a given event, and it can
//! fire the template's `rate(...)` schedules on a timer.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vigil_shared::config::Config;

use crate::contract;
use crate::functions::{Invoke, InvokeError, Registry};
use crate::provision::{LocalAuthorizer, LocalFunction, LocalSchedule, Provisioned, Route};

/// API Gateway's payload limit: larger requests never reach a function.
pub const API_GATEWAY_MAX_PAYLOAD: usize = 10 * 1024 * 1024;
/// Lambda's synchronous invocation payload limit.
pub const LAMBDA_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// The path prefix of Lambda's Invoke API (`stack_state::invoke_path`).
const INVOKE_PREFIX: &str = "/2015-03-31/functions/";

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("function {function}: {detail}")]
    Init { function: String, detail: String },
    #[error("function {function}: no local handler for binary {binary} (register it in infra/local/src/functions.rs)")]
    UnknownBinary { function: String, binary: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Builds a function from its template environment; `endpoint` is where its SDK
/// clients send requests (the emulator, or a proxy in front of it).
async fn build_function(
    function: &LocalFunction,
    registry: &Registry,
    endpoint: &str,
    region: &str,
) -> Result<Arc<dyn Invoke>, ServeError> {
    let mut env = function.environment.clone();
    env.insert("AWS_ENDPOINT_URL".into(), endpoint.to_owned());
    env.insert("AWS_REGION".into(), region.to_owned());
    let config = Config::from_lookup(|name| env.get(name).cloned());
    match registry.build(&function.binary, config).await {
        Some(Ok(built)) => Ok(built),
        Some(Err(detail)) => Err(ServeError::Init {
            function: function.logical_id.clone(),
            detail,
        }),
        None => Err(ServeError::UnknownBinary {
            function: function.logical_id.clone(),
            binary: function.binary.clone(),
        }),
    }
}

/// The emulated authorizer: its function, identity headers and decision cache.
struct Gate {
    function: Arc<dyn Invoke>,
    config: LocalAuthorizer,
    /// Identity -> (when decided, context if allowed), like API Gateway's cache.
    cache: Mutex<HashMap<String, (Instant, Option<Value>)>>,
}

/// A schedule and the function it invokes.
#[derive(Debug, Clone)]
pub struct ScheduleEntry {
    pub function: String,
    pub schedule: LocalSchedule,
}

/// Routes, functions and schedules of one stack, behind the authorizer.
pub struct LocalApi {
    /// Most specific first, as API Gateway matches them.
    routes: Vec<(Route, Arc<dyn Invoke>)>,
    functions: BTreeMap<String, Arc<dyn Invoke>>,
    pub schedules: Vec<ScheduleEntry>,
    gate: Option<Gate>,
    region: String,
}

impl LocalApi {
    /// Builds every function of the stack (a cold start each) from `registry`.
    pub async fn build(
        stack: &Provisioned,
        endpoint: &str,
        registry: &Registry,
    ) -> Result<Self, ServeError> {
        let mut routes = Vec::new();
        let mut functions = BTreeMap::new();
        let mut schedules = Vec::new();
        let mut gate = None;
        for function in &stack.functions {
            let built = build_function(function, registry, endpoint, &stack.region).await?;
            if let Some(config) = stack
                .authorizer
                .as_ref()
                .filter(|a| a.function_logical_id == function.logical_id)
            {
                gate = Some(Gate {
                    function: built.clone(),
                    config: config.clone(),
                    cache: Mutex::new(HashMap::new()),
                });
            }
            for route in &function.routes {
                routes.push((route.clone(), built.clone()));
            }
            for schedule in &function.schedules {
                schedules.push(ScheduleEntry {
                    function: function.logical_id.clone(),
                    schedule: schedule.clone(),
                });
            }
            functions.insert(function.logical_id.clone(), built);
        }
        routes.sort_by_key(|(route, _)| specificity(route));
        Ok(Self {
            routes,
            functions,
            schedules,
            gate,
            region: stack.region.clone(),
        })
    }

    /// Routes in the order they are matched.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(route, _)| route)
    }

    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Invokes a function by its logical id, as Lambda's Invoke does.
    pub async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        let handler = self
            .functions
            .get(function)
            .ok_or_else(|| InvokeError::NoSuchFunction(function.to_owned()))?;
        handler.invoke(event).await
    }

    /// What a schedule sends its function at `now`.
    pub fn scheduled_event(&self, entry: &ScheduleEntry, now: time::OffsetDateTime) -> Value {
        if let Some(input) = &entry.schedule.input {
            return input.clone();
        }
        if entry.schedule.kind == "ScheduleV2" {
            return json!({});
        }
        let time = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        json!({
            "version": "0",
            "id": format!("{:032x}", rand::random::<u128>()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": crate::provision::LOCAL_ACCOUNT_ID,
            "time": time,
            "region": self.region,
            "resources": [format!(
                "arn:aws:events:{}:{}:rule/{}-{}",
                self.region,
                crate::provision::LOCAL_ACCOUNT_ID,
                entry.function,
                entry.schedule.name
            )],
            "detail": {},
        })
    }

    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Route, &dyn Invoke, HashMap<String, String>)> {
        self.routes.iter().find_map(|(route, function)| {
            if route.method != method && route.method != "ANY" {
                return None;
            }
            match_path(&route.path, path).map(|params| (route, function.as_ref(), params))
        })
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        if let Some(function) = request
            .uri()
            .path()
            .strip_prefix(INVOKE_PREFIX)
            .and_then(|rest| rest.strip_suffix("/invocations"))
            .map(str::to_owned)
        {
            return self.lambda_invoke(request, &function).await;
        }
        let method = request.method().as_str().to_owned();
        // API Gateway decodes the path (`%2F` included) before it matches routes.
        let path = percent_decode_str(request.uri().path())
            .decode_utf8_lossy()
            .into_owned();
        if method == "GET" {
            if let Some(contract) = contract_response(&path) {
                return contract;
            }
        }
        let Some((route, function, params)) = self.find(&method, &path) else {
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
        match function.invoke(event).await {
            Ok(output) => match serde_json::from_value::<ApiGatewayV2httpResponse>(output) {
                Ok(response) => into_http(response),
                Err(_) => internal_error(),
            },
            Err(error) => {
                tracing::warn!(route = %route.path, error = %error, "function failed");
                internal_error()
            }
        }
    }

    /// Lambda's Invoke API: 200 with the output, or 200 with
    /// `X-Amz-Function-Error: Unhandled` and the error, as Lambda answers.
    async fn lambda_invoke(
        &self,
        request: Request<Incoming>,
        function: &str,
    ) -> Response<Full<Bytes>> {
        if request.method() != hyper::Method::POST {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"message": "use POST"}),
            );
        }
        let body = match Limited::new(request.into_body(), LAMBDA_MAX_PAYLOAD)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"Type": "User", "message": "RequestTooLargeException"}),
                )
            }
        };
        let event: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(event) => event,
                Err(_) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        json!({"Type": "User", "message": "InvalidRequestContentException: the event is not JSON"}),
                    )
                }
            }
        };
        let started = Instant::now();
        let outcome = self.invoke(function, event).await;
        tracing::info!(
            function,
            ok = outcome.is_ok(),
            duration_ms = started.elapsed().as_millis() as u64,
            "invoked"
        );
        match outcome {
            Ok(output) => plain(StatusCode::OK, output),
            Err(InvokeError::NoSuchFunction(_)) => plain(
                StatusCode::NOT_FOUND,
                json!({"Type": "User", "message": format!("ResourceNotFoundException: no function {function}")}),
            ),
            Err(error) => {
                let mut response = plain(
                    StatusCode::OK,
                    json!({"errorType": "Unhandled", "errorMessage": error.to_string()}),
                );
                response.headers_mut().insert(
                    "x-amz-function-error",
                    http::HeaderValue::from_static("Unhandled"),
                );
                response
            }
        }
    }
}

/// API Gateway's order: per segment, a literal beats `{param}` beats `{greedy+}`;
/// then a route's own method beats `ANY`.
fn specificity(route: &Route) -> (Vec<u8>, bool) {
    let ranks = route
        .path
        .trim_matches('/')
        .split('/')
        .map(|segment| match segment {
            s if s.starts_with('{') && s.ends_with("+}") => 2,
            s if s.starts_with('{') => 1,
            _ => 0,
        })
        .collect();
    (ranks, route.method == "ANY")
}

fn internal_error() -> Response<Full<Bytes>> {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"message": "Internal Server Error"}),
    )
}

impl Gate {
    /// API Gateway's steps: 401 without identity, else the (cached) decision: 403 or the context.
    async fn check(&self, event: &Value) -> Result<Value, Response<Full<Bytes>>> {
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
                let decision = match self.function.invoke(request).await {
                    Ok(decision) => decision,
                    Err(error) => {
                        tracing::warn!(error = %error, "authorizer failed");
                        return Err(internal_error());
                    }
                };
                let context =
                    (decision["isAuthorized"] == json!(true)).then(|| decision["context"].clone());
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

/// Matches a decoded path against a route template; the parameters are decoded.
fn match_path(template: &str, path: &str) -> Option<HashMap<String, String>> {
    let wanted: Vec<&str> = template.trim_matches('/').split('/').collect();
    let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut params = HashMap::new();
    for (i, w) in wanted.iter().enumerate() {
        if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix("+}")) {
            // Greedy: the rest of the path, at least one segment.
            let rest = actual.get(i..).filter(|rest| !rest.is_empty())?;
            params.insert(name.to_owned(), rest.join("/"));
            return Some(params);
        }
        let a = actual.get(i)?;
        if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            if a.is_empty() {
                return None;
            }
            params.insert(name.to_owned(), (*a).to_owned());
        } else if w != a {
            return None;
        }
    }
    (wanted.len() == actual.len()).then_some(params)
}

/// The API's contract (no key needed), as YAML or JSON.
fn contract_response(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/openapi.yaml" => (contract::OPENAPI_YAML.to_owned(), "application/yaml"),
        "/openapi.json" => match contract::as_json() {
            Ok(json) => (json.to_string(), "application/json"),
            Err(error) => {
                tracing::error!(error, "the contract does not parse");
                return Some(internal_error());
            }
        },
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    Some(response)
}

fn plain(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
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

fn decoded(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The event API Gateway would send, as JSON, so it goes through the same deserialiser.
fn api_gateway_event(
    parts: &http::request::Parts,
    body: &Bytes,
    route: &Route,
    params: HashMap<String, String>,
    peer: SocketAddr,
) -> Value {
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
    let route_key = format!("{} {}", route.method, route.path);
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
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
            "routeKey": route_key,
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
    if let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) {
        // Decoded, repeated names joined with commas, as API Gateway does.
        let mut pairs: BTreeMap<String, String> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decoded(value);
            pairs
                .entry(decoded(name))
                .and_modify(|existing| {
                    existing.push(',');
                    existing.push_str(&value);
                })
                .or_insert(value);
        }
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
    pub api: Arc<LocalApi>,
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

/// Binds `addr` (the error names it), without serving yet.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// Serves `api` on a bound listener until shut down.
pub fn serve(api: LocalApi, listener: TcpListener) -> Result<RunningServer, ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })?;
    let api = Arc::new(api);
    let shared = api.clone();
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let api = shared.clone();
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
        api,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Binds `addr` and serves `api` on it.
pub async fn start(api: LocalApi, addr: SocketAddr) -> Result<RunningServer, ServeError> {
    serve(api, bind(addr).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            authorized: true,
        }
    }

    #[test]
    fn paths_match_with_parameters() {
        assert_eq!(match_path("/v1/events", "/v1/events"), Some(HashMap::new()));
        assert_eq!(match_path("/v1/events", "/v1/event"), None);
        let params = match_path("/v1/accounts/{account}", "/v1/accounts/acme").expect("match");
        assert_eq!(params["account"], "acme");
        assert_eq!(
            match_path("/v1/accounts/{account}/usage", "/v1/accounts//usage"),
            None
        );
        let greedy = match_path("/files/{path+}", "/files/a/b").expect("greedy");
        assert_eq!(greedy["path"], "a/b");
        assert_eq!(match_path("/files/{path+}", "/files"), None);
    }

    #[test]
    fn the_most_specific_route_comes_first() {
        let mut routes = [
            route("ANY", "/v1/{proxy+}"),
            route("GET", "/v1/audit/{id}"),
            route("ANY", "/v1/audit/verify"),
            route("GET", "/v1/audit/verify"),
        ];
        routes.sort_by_key(specificity);
        let order: Vec<String> = routes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            order,
            [
                "GET /v1/audit/verify",
                "ANY /v1/audit/verify",
                "GET /v1/audit/{id}",
                "ANY /v1/{proxy+}"
            ]
        );
    }
}
