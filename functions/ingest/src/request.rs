//! Reading a request: the tenant seam, content type, size and the batch envelope.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use serde_json::Value;
use thiserror::Error;
use vigil_shared::domain::TenantId;

/// Largest body accepted, as API Gateway would count it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 500;

/// Problems with the request as a whole. Each names what is wrong; none echoes a value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("missing or invalid x-vigil-tenant header")]
    Tenant,
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than 1 MiB")]
    BodyTooLarge,
    #[error("a batch holds at most 500 events; this one holds {0}")]
    TooManyEvents(usize),
    #[error("body is not valid JSON (line {line}, column {column})")]
    MalformedJson { line: usize, column: usize },
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Envelope(String),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Tenant => 401,
            RequestError::UnsupportedMediaType => 415,
            RequestError::BodyTooLarge | RequestError::TooManyEvents(_) => 413,
            RequestError::MalformedJson { .. }
            | RequestError::NotUtf8
            | RequestError::Envelope(_) => 400,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Tenant => "unauthenticated",
            RequestError::UnsupportedMediaType => "unsupported_media_type",
            RequestError::BodyTooLarge => "body_too_large",
            RequestError::TooManyEvents(_) => "too_many_events",
            RequestError::MalformedJson { .. } | RequestError::NotUtf8 => "malformed_json",
            RequestError::Envelope(_) => "invalid_request",
        }
    }
}

/// The tenant making the request.
///
/// Temporary seam: until the authorizer exists, the tenant comes from the
/// `x-vigil-tenant` header. This is the only function that decides who the tenant
/// is; the authorizer will replace its body with a read of the request context.
pub fn tenant_from_request(request: &ApiGatewayV2httpRequest) -> Result<TenantId, RequestError> {
    request
        .headers
        .get("x-vigil-tenant")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| TenantId::parse(value).ok())
        .ok_or(RequestError::Tenant)
}

fn is_json(request: &ApiGatewayV2httpRequest) -> bool {
    request
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The body bytes, size-checked before anything is parsed.
pub fn body_bytes(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, RequestError> {
    if !is_json(request) {
        return Err(RequestError::UnsupportedMediaType);
    }
    let raw = request.body.as_deref().unwrap_or_default();
    // Base64 is 4/3 of the payload: check the encoded size first to bound the decode.
    let limit = if request.is_base64_encoded {
        MAX_BODY_BYTES / 3 * 4 + 4
    } else {
        MAX_BODY_BYTES
    };
    if raw.len() > limit {
        return Err(RequestError::BodyTooLarge);
    }
    let bytes = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| {
                RequestError::Envelope("body is marked base64 but is not valid base64".into())
            })?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(bytes)
}

/// `{"events": [ {...}, ... ]}`: parses JSON, checks the envelope, returns the elements.
pub fn parse_envelope(bytes: &[u8]) -> Result<Vec<Value>, RequestError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RequestError::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|e| RequestError::MalformedJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(mut envelope) = value else {
        return Err(RequestError::Envelope(
            "body must be a JSON object with an \"events\" array".into(),
        ));
    };
    if let Some(unknown) = envelope.keys().find(|key| key.as_str() != "events") {
        return Err(RequestError::Envelope(format!(
            "unknown field \"{}\" (the body holds only \"events\")",
            truncate_name(unknown)
        )));
    }
    let events = match envelope.remove("events") {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(RequestError::Envelope("events: expected an array".into())),
        None => return Err(RequestError::Envelope("events: is required".into())),
    };
    if events.is_empty() {
        return Err(RequestError::Envelope(
            "events: must hold at least one event".into(),
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(RequestError::TooManyEvents(events.len()));
    }
    if let Some(index) = events.iter().position(|event| !event.is_object()) {
        return Err(RequestError::Envelope(format!(
            "events[{index}]: expected an object"
        )));
    }
    Ok(events)
}

/// Field names are echoed back; keep them short.
fn truncate_name(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_name_the_problem() {
        assert_eq!(parse_envelope(b"{\"events\": [").unwrap_err().status(), 400);
        assert_eq!(
            parse_envelope(b"{\"events\": {}}").unwrap_err(),
            RequestError::Envelope("events: expected an array".into())
        );
        assert_eq!(
            parse_envelope(b"{\"event\": []}").unwrap_err().to_string(),
            "unknown field \"event\" (the body holds only \"events\")"
        );
        assert_eq!(
            parse_envelope(b"{\"events\": [1]}")
                .unwrap_err()
                .to_string(),
            "events[0]: expected an object"
        );
        let many = format!("{{\"events\": [{}]}}", vec!["{}"; 501].join(","));
        assert_eq!(
            parse_envelope(many.as_bytes()).unwrap_err(),
            RequestError::TooManyEvents(501)
        );
        assert_eq!(parse_envelope(b"{\"events\": [{}]}").expect("ok").len(), 1);
    }
}
