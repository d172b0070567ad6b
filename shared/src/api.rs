//! HTTP API responses: one JSON shape for results and one for errors.
//! Error bodies name the problem for the client; internal detail only goes to the log.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
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
