//! Reading a batch: size, content type and the `{"events": [...]}` envelope.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::Value;
use vigil_shared::http::{self, ApiError};

/// Largest body accepted, as API Gateway would count it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 500;

/// The body bytes, size-checked before anything is parsed.
pub fn body_bytes(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, ApiError> {
    http::json_bytes(request, MAX_BODY_BYTES, "1 MiB")
}

/// `{"events": [ {...}, ... ]}`: parses JSON, checks the envelope, returns the elements.
/// Each element is validated on its own later (one bad event does not fail the batch).
pub fn parse_envelope(bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut envelope) = http::parse_json::<Value>(bytes)? else {
        return Err(ApiError::invalid(
            "body",
            "expected an object with an \"events\" array",
        ));
    };
    if envelope.keys().any(|key| key.as_str() != "events") {
        return Err(ApiError::invalid(
            "body",
            "has an unknown field (allowed: events)",
        ));
    }
    let events = match envelope.remove("events") {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(ApiError::invalid("events", "expected an array")),
        None => return Err(ApiError::invalid("events", "is required")),
    };
    if events.is_empty() {
        return Err(ApiError::invalid("events", "must hold at least one event"));
    }
    if events.len() > MAX_EVENTS {
        return Err(ApiError::TooManyItems {
            field: "events",
            max: MAX_EVENTS,
        });
    }
    if let Some(index) = events.iter().position(|event| !event.is_object()) {
        return Err(ApiError::invalid(
            format!("events[{index}]"),
            "expected an object",
        ));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> String {
        parse_envelope(body.as_bytes())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn envelope_errors_name_the_problem_never_the_value() {
        assert_eq!(parse_envelope(b"{\"events\": [").unwrap_err().status(), 400);
        assert_eq!(message("{\"events\": {}}"), "events: expected an array");
        assert_eq!(
            message("{\"jane@example.com\": []}"),
            "body: has an unknown field (allowed: events)"
        );
        assert_eq!(
            message("{\"events\": [1]}"),
            "events[0]: expected an object"
        );
        let many = format!("{{\"events\": [{}]}}", vec!["{}"; 501].join(","));
        assert_eq!(
            parse_envelope(many.as_bytes()).unwrap_err(),
            ApiError::TooManyItems {
                field: "events",
                max: 500
            }
        );
        assert_eq!(parse_envelope(b"{\"events\": [{}]}").expect("ok").len(), 1);
    }
}
