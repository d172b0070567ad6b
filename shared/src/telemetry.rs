//! Structured logs and CloudWatch EMF metrics.
//! In Lambda: one JSON object per line (CloudWatch adds the time), EMF lines on
//! stdout beside them. Locally: readable lines with timestamps, and the EMF
//! lines in a file of their own so they do not interleave with the log.
//! Only pseudonymous ids and counts are ever logged: never user ids, e-mails, IPs or payloads.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// JSON logs for Lambda, level from RUST_LOG (default info). Safe to call more than once.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .flatten_event(true)
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Where EMF lines go instead of stdout (the local stack's metrics file).
static METRICS_FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Readable logs with UTC timestamps for the local stack; metrics go to `metrics_file`.
pub fn init_local_logging(metrics_file: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(metrics_file)?;
    let _ = METRICS_FILE.set(Mutex::new(file));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Writes one EMF document: to stdout in Lambda (CloudWatch extracts it), to
/// the metrics file locally.
pub fn emit_metrics(line: &str) {
    match METRICS_FILE.get() {
        Some(file) => {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(file, "{line}");
        }
        None => println!("{line}"),
    }
}

static COLD: AtomicBool = AtomicBool::new(true);

/// True on the first invocation of this process only.
pub fn take_cold_start() -> bool {
    COLD.swap(false, Ordering::Relaxed)
}

/// Emits a function's metrics now, in the `vigil` namespace with its `function` dimension.
pub fn emit_function_metrics(function: &str, metrics: &[(&str, f64, &str)]) {
    let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0);
    emit_metrics(&emf_line(
        "vigil",
        &[("function", function)],
        metrics,
        now_ms,
    ));
}

/// One EMF document: CloudWatch turns this log line into metrics, with no API call.
pub fn emf_line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, &str)],
    timestamp_ms: i64,
) -> String {
    let mut doc = Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let metric_defs: Vec<Value> = metrics
        .iter()
        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_names],
                "Metrics": metric_defs,
            }]
        }),
    );
    for (name, value) in dimensions {
        doc.insert((*name).into(), json!(value));
    }
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_dimensions_and_metrics() {
        let line = emf_line(
            "vigil",
            &[("function", "ingest")],
            &[("accepted", 3.0, "Count")],
            1,
        );
        let doc: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(doc["accepted"], 3.0);
        assert_eq!(doc["function"], "ingest");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "function"
        );
    }
}
