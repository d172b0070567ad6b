//! HTTP API responses: one JSON shape for results and one for errors.
//! Error bodies name the problem for the client; internal detail only goes to the log.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::Serialize;
use serde_json::json;

pub fn json_response(status: u16, body: &impl Serialize) -> ApiGatewayV2httpResponse {
    let text = serde_json::to_string(body).unwrap_or_else(|_| {
        r#"{"error":{"code":"internal","message":"response could not be encoded"}}"#.to_owned()
    });
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.body = Some(Body::Text(text));
    response
}

/// `{"error": {"code": ..., "message": ...}, "request_id": ...}`
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
) -> ApiGatewayV2httpResponse {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}, "request_id": request_id}),
    )
}

/// Tells the client when to try again (storage unavailable, throttled).
pub fn with_retry_after(
    mut response: ApiGatewayV2httpResponse,
    seconds: u32,
) -> ApiGatewayV2httpResponse {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers.insert(RETRY_AFTER, value);
    }
    response
}

/// Problems with a request body as a whole. Messages name the problem, never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {0}")]
    TooLarge(&'static str),
    #[error("body is marked base64 but is not valid base64")]
    BadBase64,
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON (line {line}, column {column})")]
    MalformedJson { line: usize, column: usize },
    #[error("{0}")]
    Invalid(String),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedMediaType => 415,
            BodyError::TooLarge(_) => 413,
            _ => 400,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedMediaType => "unsupported_media_type",
            BodyError::TooLarge(_) => "body_too_large",
            BodyError::BadBase64 | BodyError::NotUtf8 | BodyError::MalformedJson { .. } => {
                "malformed_json"
            }
            BodyError::Invalid(_) => "invalid_request",
        }
    }

    pub fn response(&self, request_id: &str) -> ApiGatewayV2httpResponse {
        error_response(self.status(), self.code(), &self.to_string(), request_id)
    }
}

fn is_json(request: &ApiGatewayV2httpRequest) -> bool {
    request
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON request's body bytes, its size checked before anything is decoded.
/// `limit_label` is how the limit reads in the error ("1 MiB").
pub fn json_body(
    request: &ApiGatewayV2httpRequest,
    max_bytes: usize,
    limit_label: &'static str,
) -> Result<Vec<u8>, BodyError> {
    use base64::Engine;
    if !is_json(request) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let raw = request.body.as_deref().unwrap_or_default();
    // Base64 is 4/3 of the payload: check the encoded size first to bound the decode.
    let encoded_limit = if request.is_base64_encoded {
        max_bytes / 3 * 4 + 4
    } else {
        max_bytes
    };
    if raw.len() > encoded_limit {
        return Err(BodyError::TooLarge(limit_label));
    }
    let bytes = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| BodyError::BadBase64)?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > max_bytes {
        return Err(BodyError::TooLarge(limit_label));
    }
    Ok(bytes)
}

/// Parses JSON text; syntax errors give their position, shape errors serde's wording.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotUtf8)?;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            // serde's message without its " at line L column C" suffix.
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            BodyError::Invalid(message.to_owned())
        }
        _ => BodyError::MalformedJson {
            line: e.line(),
            column: e.column(),
        },
    })
}

/// 503 for a storage failure: the detail goes to the log, the client is told to retry.
pub fn storage_unavailable(
    request_id: &str,
    error: &impl std::fmt::Display,
) -> ApiGatewayV2httpResponse {
    tracing::warn!(request_id, error = %error, "storage failure");
    with_retry_after(
        error_response(
            503,
            "unavailable",
            "storage unavailable: retry later",
            request_id,
        ),
        1,
    )
}
