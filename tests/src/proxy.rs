//! A fault-injecting HTTP proxy between the SDK and the emulator.
//!
//! It forwards every request to moto and counts them by operation
//! (`x-amz-target`, e.g. `BatchWriteItem`). Rules make chosen operations fail the
//! way AWS does: throttling, 500s, partial batches (UnprocessedItems/Keys), or a
//! 500 returned after the request was really applied (a lost response).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 ProvisionedThroughputExceededException (the SDK retries it).
    Throttle,
    /// 500 InternalServerError, request not applied.
    ServerError,
    /// Applies only the first half of a BatchWriteItem/BatchGetItem and returns the rest unprocessed.
    Unprocessed,
    /// Applies the request, then answers 500: the response is "lost".
    ForwardThenFail,
    /// 400 AccessDeniedException: a policy forbids the call (not retryable).
    AccessDenied,
    /// 400 ValidationException: the request is malformed (not retryable).
    Invalid,
    /// TransactWriteItems cancelled because another transaction held one of its
    /// items (reason `TransactionConflict` on the last action); nothing applied.
    TransactionConflict,
}

struct Rule {
    operation: String,
    /// None: on every table.
    table: Option<String>,
    fault: Fault,
    /// None: every matching request.
    remaining: Option<u32>,
    /// Matching requests let through before the fault applies.
    skip: u32,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// (operation, table) -> requests.
    counts: HashMap<(String, String), usize>,
    injected: usize,
    /// Added before every forwarded request: a slow network makes requests overlap.
    latency: std::time::Duration,
    /// Per table, the key attributes of each global secondary index (for write units).
    indexes: HashMap<String, Vec<Vec<String>>>,
    /// Write units of the writes the emulator applied, computed from the items sent.
    write_units: WriteUnits,
    /// Read units of the reads the emulator answered, in halves, computed from the items returned.
    read_half_units: u64,
    /// Operation -> requests answered with 200 and delivered (a request the SDK
    /// gave up on before the answer is counted in `counts`, not here).
    answered: HashMap<String, usize>,
}

/// Write capacity units by the rules of DynamoDB's pricing, computed here from the
/// request bodies (the emulator reports none for transactions and no index writes):
/// each item written costs ceil(size / 1 KB), twice that inside a transaction, plus
/// one unit per index whose key attributes the item has (the indexes project keys
/// only, so an index item stays under 1 KB). An UpdateItem counts its item as under
/// 1 KB (aggregate items are; `tests` asserts it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteUnits {
    pub table: u64,
    pub indexes: u64,
}

impl WriteUnits {
    pub fn total(&self) -> u64 {
        self.table + self.indexes
    }
}

/// An item's stored size: attribute names plus values (numbers: about one byte per two digits).
pub fn item_size(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> u64 {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(text)) | ("B", Value::String(text)) => text.len() as u64,
        ("N", Value::String(number)) => {
            let digits = number.chars().filter(char::is_ascii_digit).count() as u64;
            digits.div_ceil(2) + 1
        }
        ("M", Value::Object(map)) => 3 + item_size(map) + map.len() as u64,
        ("L", Value::Array(list)) => 3 + list.iter().map(|v| value_size(v) + 1).sum::<u64>(),
        ("SS", Value::Array(list)) | ("NS", Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map_or(0, |s| s.len() as u64))
            .sum(),
        _ => 1,
    }
}

/// Read units of one answered read, in half units, by DynamoDB's rules: a
/// Query or Scan costs its returned items' total size in 4 KB blocks (at least
/// one), a GetItem or each item of a BatchGetItem its own size in 4 KB blocks;
/// a strongly consistent read costs a unit per block, an eventually consistent
/// one half.
fn read_half_units_of(operation: &str, request: &Value, response: &Value) -> u64 {
    let blocks = |size: u64| size.div_ceil(4096).max(1);
    let halves = |consistent: bool| if consistent { 2 } else { 1 };
    let sizes = |items: &Value| -> Vec<u64> {
        items
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(item_size)
            .collect()
    };
    match operation {
        "Query" | "Scan" => {
            let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
            blocks(sizes(&response["Items"]).iter().sum()) * halves(consistent)
        }
        "GetItem" => {
            let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
            let size = response["Item"].as_object().map_or(0, item_size);
            blocks(size) * halves(consistent)
        }
        "BatchGetItem" => {
            let mut total = 0;
            for (table, items) in response["Responses"].as_object().into_iter().flatten() {
                let consistent = request["RequestItems"][table]["ConsistentRead"]
                    .as_bool()
                    .unwrap_or(false);
                total += sizes(items)
                    .into_iter()
                    .map(|size| blocks(size) * halves(consistent))
                    .sum::<u64>();
            }
            total
        }
        _ => 0,
    }
}

fn units_of_item(
    indexes: &HashMap<String, Vec<Vec<String>>>,
    table: &str,
    item: &serde_json::Map<String, Value>,
    factor: u64,
) -> WriteUnits {
    let index_units = indexes.get(table).map_or(0, |list| {
        list.iter()
            .filter(|keys| keys.iter().all(|k| item.contains_key(k)))
            .count() as u64
    });
    WriteUnits {
        table: factor * item_size(item).div_ceil(1024).max(1),
        indexes: index_units,
    }
}

/// Write units of one applied write request.
fn write_units_of(
    indexes: &HashMap<String, Vec<Vec<String>>>,
    operation: &str,
    request: &Value,
) -> WriteUnits {
    let mut units = WriteUnits::default();
    let mut add = |u: WriteUnits| {
        units.table += u.table;
        units.indexes += u.indexes;
    };
    let table = request["TableName"].as_str().unwrap_or_default();
    match operation {
        "PutItem" => {
            if let Some(item) = request["Item"].as_object() {
                add(units_of_item(indexes, table, item, 1));
            }
        }
        "UpdateItem" | "DeleteItem" => add(WriteUnits {
            table: 1,
            indexes: 0,
        }),
        "BatchWriteItem" => {
            for (table, writes) in request["RequestItems"].as_object().into_iter().flatten() {
                for write in writes.as_array().into_iter().flatten() {
                    match write["PutRequest"]["Item"].as_object() {
                        Some(item) => add(units_of_item(indexes, table, item, 1)),
                        None => add(WriteUnits {
                            table: 1,
                            indexes: 0,
                        }),
                    }
                }
            }
        }
        "TransactWriteItems" => {
            for action in request["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = action.get("Put") {
                    let table = put["TableName"].as_str().unwrap_or_default();
                    if let Some(item) = put["Item"].as_object() {
                        add(units_of_item(indexes, table, item, 2));
                    }
                } else {
                    add(WriteUnits {
                        table: 2,
                        indexes: 0,
                    });
                }
            }
        }
        _ => {}
    }
    units
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Upstream = Client<HttpConnector, Full<Bytes>>;

impl FaultProxy {
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let upstream = Arc::new(upstream.trim_end_matches('/').to_owned());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (state, client, upstream) =
                            (state.clone(), client.clone(), upstream.clone());
                        async move {
                            Ok::<_, Infallible>(handle(request, &state, &client, &upstream).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `times` requests of `operation` fail (None: all of them).
    /// Like `inject`, on requests to `table` only.
    pub fn inject_on(&self, operation: &str, table: &str, fault: Fault, times: Option<u32>) {
        self.state().rules.push(Rule {
            operation: operation.to_owned(),
            table: Some(table.to_owned()),
            fault,
            remaining: times,
            skip: 0,
        });
    }

    pub fn inject(&self, operation: &str, fault: Fault, times: Option<u32>) {
        self.inject_after(operation, 0, fault, times);
    }

    /// As `inject`, once `skip` matching requests have gone through: a fault
    /// mid-way through a job.
    pub fn inject_after(&self, operation: &str, skip: u32, fault: Fault, times: Option<u32>) {
        self.state().rules.push(Rule {
            operation: operation.to_owned(),
            table: None,
            fault,
            remaining: times,
            skip,
        });
    }

    pub fn clear_faults(&self) {
        self.state().rules.clear();
    }

    /// Requests seen for `operation` on any table (faulted ones included).
    pub fn count(&self, operation: &str) -> usize {
        self.state()
            .counts
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests seen for `operation` on `table`.
    pub fn count_on(&self, operation: &str, table: &str) -> usize {
        self.state()
            .counts
            .get(&(operation.to_owned(), table.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests per operation, leaving out those on `tables`.
    pub fn counts_except(&self, tables: &[&str]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for ((op, table), n) in &self.state().counts {
            if !tables.contains(&table.as_str()) {
                *counts.entry(op.clone()).or_default() += n;
            }
        }
        counts
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> usize {
        self.state().injected
    }

    pub fn reset_counts(&self) {
        let mut state = self.state();
        state.counts.clear();
        state.write_units = WriteUnits::default();
        state.read_half_units = 0;
        state.answered.clear();
    }

    /// Delays every forwarded request by `latency` (zero: none).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state().latency = latency;
    }

    /// Declares a table's index key attributes, so that index writes are counted.
    pub fn set_indexes(&self, table: &str, indexes: Vec<Vec<String>>) {
        self.state().indexes.insert(table.to_owned(), indexes);
    }

    /// Write units of the writes applied since the last `reset_counts`.
    pub fn write_units(&self) -> WriteUnits {
        self.state().write_units
    }

    /// Requests of `operation` answered with 200 since the last `reset_counts`.
    pub fn answered(&self, operation: &str) -> usize {
        self.state().answered.get(operation).copied().unwrap_or(0)
    }

    /// Read units of the reads answered since the last `reset_counts` (halves are eventually consistent reads).
    pub fn read_units(&self) -> f64 {
        self.state().read_half_units as f64 / 2.0
    }
}

/// DynamoDB and KMS name their operation in `x-amz-target`; S3 requests are
/// `s3:<METHOD>`, but for the multipart steps, named as S3 names them.
fn operation_of(request: &Request<Incoming>) -> String {
    if let Some(target) = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.rsplit('.').next())
    {
        return target.to_owned();
    }
    let query = request.uri().query().unwrap_or_default();
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair == name || pair.starts_with(&format!("{name}=")))
    };
    let method = request.method().as_str();
    match method {
        "PUT" if has("partNumber") => "s3:UploadPart".to_owned(),
        "POST" if has("uploads") => "s3:CreateMultipartUpload".to_owned(),
        "POST" if has("uploadId") => "s3:CompleteMultipartUpload".to_owned(),
        "DELETE" if has("uploadId") => "s3:AbortMultipartUpload".to_owned(),
        _ => format!("s3:{method}"),
    }
}

/// The table a DynamoDB request names (`TableName`, or the first of `RequestItems`).
fn table_of(body: &[u8]) -> String {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    request["TableName"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            request["RequestItems"]
                .as_object()
                .and_then(|t| t.keys().next().cloned())
        })
        .unwrap_or_default()
}

fn take_fault(state: &Mutex<State>, operation: &str, table: String) -> Option<Fault> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let rule_matches = |r: &Rule| {
        r.operation == operation
            && r.table.as_ref().is_none_or(|t| *t == table)
            && r.remaining != Some(0)
    };
    let matched = state.rules.iter().position(rule_matches);
    *state
        .counts
        .entry((operation.to_owned(), table))
        .or_default() += 1;
    let rule = &mut state.rules[matched?];
    if rule.skip > 0 {
        rule.skip -= 1;
        return None;
    }
    if let Some(remaining) = rule.remaining.as_mut() {
        *remaining -= 1;
    }
    let fault = rule.fault;
    state.injected += 1;
    Some(fault)
}

fn dynamo_error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body =
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

/// Headers that concern one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

async fn forward(
    parts: &http::request::Parts,
    body: Bytes,
    client: &Upstream,
    upstream: &str,
) -> Response<Full<Bytes>> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" && !is_hop_by_hop(name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(Full::new(body)) else {
        return dynamo_error(
            StatusCode::BAD_GATEWAY,
            "InternalServerError",
            "proxy could not build request",
        );
    };
    match client.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            parts.headers.remove("content-length");
            // The emulator closes every connection (HTTP/1.0); the SDK's connection
            // to the proxy stays open, as its connection to DynamoDB would.
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Full::new(body))
        }
        Err(_) => dynamo_error(
            StatusCode::BAD_GATEWAY,
            "InternalServerError",
            "emulator unreachable",
        ),
    }
}

/// Keeps the first half of the batch's items, forwards them, and returns the rest as unprocessed.
async fn forward_half(
    parts: &http::request::Parts,
    body: Bytes,
    client: &Upstream,
    upstream: &str,
    operation: &str,
) -> Response<Full<Bytes>> {
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return forward(parts, body, client, upstream).await;
    };
    let (list_key, unprocessed_key) = match operation {
        "BatchGetItem" => (Some("Keys"), "UnprocessedKeys"),
        _ => (None, "UnprocessedItems"),
    };
    let mut unprocessed = serde_json::Map::new();
    let mut forwarded_any = false;
    if let Some(tables) = request
        .get_mut("RequestItems")
        .and_then(Value::as_object_mut)
    {
        for (table, entry) in tables.iter_mut() {
            let list = match list_key {
                Some(key) => entry.get_mut(key),
                None => Some(&mut *entry),
            };
            let Some(Value::Array(items)) = list else {
                continue;
            };
            let rest = items.split_off(items.len() / 2);
            forwarded_any |= !items.is_empty();
            let mut left = entry.clone();
            match list_key {
                Some(key) => left[key] = Value::Array(rest),
                None => left = Value::Array(rest),
            }
            unprocessed.insert(table.clone(), left);
        }
        tables.retain(|_, entry| match list_key {
            Some(key) => entry[key].as_array().is_some_and(|a| !a.is_empty()),
            None => entry.as_array().is_some_and(|a| !a.is_empty()),
        });
    }
    let mut reply = json!({});
    if forwarded_any {
        let response = forward(parts, Bytes::from(request.to_string()), client, upstream).await;
        if response.status() != StatusCode::OK {
            return response;
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        reply = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    }
    reply[unprocessed_key] = Value::Object(unprocessed);
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    state: &Mutex<State>,
    client: &Upstream,
    upstream: &str,
) -> Response<Full<Bytes>> {
    let operation = operation_of(&request);
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let fault = take_fault(state, &operation, table_of(&body));
    let latency = state.lock().unwrap_or_else(|p| p.into_inner()).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        None => {
            let response = forward(&parts, body.clone(), client, upstream).await;
            if response.status() != StatusCode::OK {
                return response;
            }
            let Ok(request) = serde_json::from_slice::<Value>(&body) else {
                return response;
            };
            let units = {
                let state = state.lock().unwrap_or_else(|p| p.into_inner());
                write_units_of(&state.indexes, &operation, &request)
            };
            let mut response = response;
            let mut read_halves = 0;
            if matches!(
                operation.as_str(),
                "Query" | "Scan" | "GetItem" | "BatchGetItem"
            ) {
                let (head, answer) = response.into_parts();
                let bytes = answer
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let answer = serde_json::from_slice::<Value>(&bytes).unwrap_or_default();
                read_halves = read_half_units_of(&operation, &request, &answer);
                response = Response::from_parts(head, Full::new(bytes));
            }
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            state.write_units.table += units.table;
            state.write_units.indexes += units.indexes;
            state.read_half_units += read_halves;
            *state.answered.entry(operation.clone()).or_default() += 1;
            response
        }
        Some(Fault::TransactionConflict) => {
            let actions = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|r| r["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1);
            let reasons: Vec<Value> = (0..actions)
                .map(|i| {
                    if i + 1 == actions {
                        json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let body = json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
                "CancellationReasons": reasons,
            });
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            response
        }
        Some(Fault::Throttle) => dynamo_error(
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        Some(Fault::ServerError) => dynamo_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
        ),
        Some(Fault::ForwardThenFail) => {
            let _applied = forward(&parts, body, client, upstream).await;
            dynamo_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
            )
        }
        Some(Fault::AccessDenied) => dynamo_error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User is not authorized to perform this action",
        ),
        Some(Fault::Invalid) => dynamo_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "One or more parameter values were invalid",
        ),
        Some(Fault::Unprocessed) => forward_half(&parts, body, client, upstream, &operation).await,
    }
}
