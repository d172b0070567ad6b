//! Reading a batch: size, content type and the `{"events": [...]}` envelope.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::Value;
use thiserror::Error;
use vigil_shared::api::{self, BodyError};

/// Largest body accepted, as API Gateway would count it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 500;

/// Problems with the request as a whole. Each names what is wrong; none echoes a value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("a batch holds at most 500 events; this one holds {0}")]
    TooManyEvents(usize),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Body(body) => body.status(),
            RequestError::TooManyEvents(_) => 413,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Body(body) => body.code(),
            RequestError::TooManyEvents(_) => "too_many_events",
        }
    }
}

fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Body(BodyError::Invalid(message.into()))
}

/// The body bytes, size-checked before anything is parsed.
pub fn body_bytes(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, RequestError> {
    Ok(api::json_body(request, MAX_BODY_BYTES, "1 MiB")?)
}

/// `{"events": [ {...}, ... ]}`: parses JSON, checks the envelope, returns the elements.
pub fn parse_envelope(bytes: &[u8]) -> Result<Vec<Value>, RequestError> {
    let Value::Object(mut envelope) = api::parse_json::<Value>(bytes)? else {
        return Err(invalid(
            "body must be a JSON object with an \"events\" array",
        ));
    };
    if let Some(unknown) = envelope.keys().find(|key| key.as_str() != "events") {
        return Err(invalid(format!(
            "unknown field \"{}\" (the body holds only \"events\")",
            unknown.chars().take(64).collect::<String>()
        )));
    }
    let events = match envelope.remove("events") {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(invalid("events: expected an array")),
        None => return Err(invalid("events: is required")),
    };
    if events.is_empty() {
        return Err(invalid("events: must hold at least one event"));
    }
    if events.len() > MAX_EVENTS {
        return Err(RequestError::TooManyEvents(events.len()));
    }
    if let Some(index) = events.iter().position(|event| !event.is_object()) {
        return Err(invalid(format!("events[{index}]: expected an object")));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_name_the_problem() {
        assert_eq!(parse_envelope(b"{\"events\": [").unwrap_err().status(), 400);
        assert_eq!(
            parse_envelope(b"{\"events\": {}}").unwrap_err(),
            invalid("events: expected an array")
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
