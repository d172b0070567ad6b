//! The export's file format (docs/decisions/0018): the two tables' Arrow
//! schemas, rows to record batches, and a Parquet writer that streams into an
//! S3 object written in parts. Memory holds one batch of rows, one row group
//! being encoded and one part: not the file.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures_util::future::BoxFuture;
use parquet::arrow::async_writer::{AsyncArrowWriter, AsyncFileWriter};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use super::s3::{ObjectUpload, WrittenObject};
use crate::domain::export::{EventRow, FeatureRow, SCHEMA_VERSION};
use crate::ports::{FailureKind, StoreError};

/// Rows encoded at once (a record batch).
pub const BATCH_ROWS: usize = 8_192;
/// Rows per row group: bounds the encoder's buffer (≈ 2 MB of event rows).
pub const ROW_GROUP_ROWS: usize = 65_536;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", utc_micros(), false),
        Field::new("account_ref", DataType::Utf8, false),
        Field::new("subject_ref", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("endpoint", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, true),
        Field::new("http_status", DataType::Int32, true),
        Field::new("latency_ms", DataType::Int64, true),
        Field::new("units", DataType::Int64, true),
        Field::new("ticket_priority", DataType::Utf8, true),
        Field::new("ticket_status", DataType::Utf8, true),
        Field::new("billing_status", DataType::Utf8, true),
    ]))
}

pub fn features_schema() -> SchemaRef {
    let i64_field = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    let f64_field = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("month_start", utc_micros(), false),
        Field::new("account_ref", DataType::Utf8, false),
        Field::new("tenure_months", DataType::Int32, true),
        i64_field("monthly_quota", true),
        i64_field("calls", false),
        i64_field("units", false),
        i64_field("errors_4xx", false),
        i64_field("errors_5xx", false),
        f64_field("error_rate"),
        i64_field("latency_p50_ms", true),
        i64_field("latency_p95_ms", true),
        i64_field("latency_p99_ms", true),
        f64_field("calls_trend"),
        Field::new("active_days", DataType::Int32, false),
        i64_field("active_users", false),
        i64_field("endpoint_templates", false),
        f64_field("quota_share"),
        i64_field("product_events", false),
        i64_field("marketing_touches", false),
        i64_field("tickets", false),
        i64_field("urgent_tickets", false),
        i64_field("invoices", false),
        i64_field("failed_payments", false),
        Field::new("outcome", DataType::Utf8, true),
    ]))
}

fn encoding_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::failed("Parquet", FailureKind::Permanent, e.to_string())
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn int64s(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = Int64Builder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn int32s(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    let mut b = Int32Builder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn float64s(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    let mut b = Float64Builder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

pub fn events_batch(rows: &[EventRow]) -> Result<RecordBatch, StoreError> {
    let columns = vec![
        timestamps(rows.iter().map(|r| r.time_us)),
        strings(rows.iter().map(|r| Some(r.account_ref.as_str()))),
        strings(rows.iter().map(|r| r.subject_ref.as_deref())),
        strings(rows.iter().map(|r| Some(r.source))),
        strings(rows.iter().map(|r| r.endpoint.as_deref())),
        strings(rows.iter().map(|r| r.method)),
        int32s(rows.iter().map(|r| r.http_status)),
        int64s(rows.iter().map(|r| r.latency_ms)),
        int64s(rows.iter().map(|r| r.units)),
        strings(rows.iter().map(|r| r.ticket_priority)),
        strings(rows.iter().map(|r| r.ticket_status)),
        strings(rows.iter().map(|r| r.billing_status)),
    ];
    RecordBatch::try_new(events_schema(), columns).map_err(encoding_failed)
}

pub fn features_batch(rows: &[FeatureRow]) -> Result<RecordBatch, StoreError> {
    let i = |f: fn(&FeatureRow) -> i64| int64s(rows.iter().map(move |r| Some(f(r))));
    let columns = vec![
        timestamps(rows.iter().map(|r| r.month_start_us)),
        strings(rows.iter().map(|r| Some(r.account_ref.as_str()))),
        int32s(rows.iter().map(|r| r.tenure_months)),
        int64s(rows.iter().map(|r| r.monthly_quota)),
        i(|r| r.calls),
        i(|r| r.units),
        i(|r| r.errors_4xx),
        i(|r| r.errors_5xx),
        float64s(rows.iter().map(|r| r.error_rate)),
        int64s(rows.iter().map(|r| r.latency_p50_ms)),
        int64s(rows.iter().map(|r| r.latency_p95_ms)),
        int64s(rows.iter().map(|r| r.latency_p99_ms)),
        float64s(rows.iter().map(|r| r.calls_trend)),
        int32s(rows.iter().map(|r| Some(r.active_days))),
        i(|r| r.active_users),
        i(|r| r.endpoint_templates),
        float64s(rows.iter().map(|r| r.quota_share)),
        i(|r| r.product_events),
        i(|r| r.marketing_touches),
        i(|r| r.tickets),
        i(|r| r.urgent_tickets),
        i(|r| r.invoices),
        i(|r| r.failed_payments),
        strings(rows.iter().map(|r| r.outcome)),
    ];
    RecordBatch::try_new(features_schema(), columns).map_err(encoding_failed)
}

/// The Parquet writer's output: an S3 object written in parts. A storage error
/// is kept so the caller sees it as such, not as an encoding error.
struct UploadSink {
    upload: Option<ObjectUpload>,
    written: Option<WrittenObject>,
    error: SinkError,
}

type SinkError = Arc<std::sync::Mutex<Option<StoreError>>>;

impl UploadSink {
    fn fail(&mut self, error: StoreError) -> ParquetError {
        let message = error.to_string();
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        ParquetError::External(message.into())
    }
}

impl AsyncFileWriter for UploadSink {
    fn write(&mut self, bytes: bytes::Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            let Some(upload) = self.upload.as_mut() else {
                return Err(ParquetError::General("write after complete".into()));
            };
            match upload.write(&bytes).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.fail(e)),
            }
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            let Some(upload) = self.upload.take() else {
                return Err(ParquetError::General("completed twice".into()));
            };
            match upload.complete().await {
                Ok(written) => {
                    self.written = Some(written);
                    Ok(())
                }
                Err(e) => Err(self.fail(e)),
            }
        })
    }
}

/// One Parquet file being written to S3.
pub struct ParquetObject {
    writer: AsyncArrowWriter<UploadSink>,
    rows: u64,
    error: SinkError,
}

/// Fixed writer settings: the same rows always give the same bytes.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("vigil export, schema {SCHEMA_VERSION}"))
        .build()
}

impl ParquetObject {
    pub fn create(upload: ObjectUpload, schema: SchemaRef) -> Result<Self, StoreError> {
        let error = SinkError::default();
        let sink = UploadSink {
            upload: Some(upload),
            written: None,
            error: error.clone(),
        };
        let writer =
            AsyncArrowWriter::try_new(sink, schema, Some(properties())).map_err(encoding_failed)?;
        Ok(Self {
            writer,
            rows: 0,
            error,
        })
    }

    /// The storage error raised inside the writer, else the encoding error.
    fn failed(&self, e: ParquetError) -> StoreError {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| encoding_failed(e))
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        self.rows += batch.num_rows() as u64;
        match self.writer.write(batch).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Writes the footer and completes the object; the written object and rows.
    pub async fn finish(mut self) -> Result<(WrittenObject, u64), StoreError> {
        if let Err(e) = self.writer.finish().await {
            return Err(self.failed(e));
        }
        let mut sink = self.writer.into_inner();
        let written = sink
            .written
            .take()
            .ok_or_else(|| encoding_failed("the object was not completed"))?;
        Ok((written, self.rows))
    }

    /// Abandons the file (its parts are discarded).
    pub async fn abort(self) {
        if let Some(upload) = self.writer.into_inner().upload {
            upload.abort().await;
        }
    }
}
