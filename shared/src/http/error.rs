//! `ApiError`: every way an HTTP request can fail, and the one response shape for it.
//!
//! `{"error": {"code": "...", "message": "...", "field": "..."}, "request_id": "..."}`.
//! Messages name the field and what was expected, never a value the client sent.
//! Storage failures are classified: retryable ones are 503 with `Retry-After`,
//! the others 500 with the request id; their detail goes to the log only.

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::auth::AuthError;
use crate::domain::access::Scope;
use crate::ports::StoreError;

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("this key lacks the {0} scope")]
    MissingScope(Scope),
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {0}")]
    BodyTooLarge(&'static str),
    #[error("{field}: at most {max} items")]
    TooManyItems { field: &'static str, max: usize },
    #[error("body is not valid JSON ({0})")]
    MalformedJson(String),
    /// The one validation shape: a field path and what was expected there.
    #[error("{field}: {expected}")]
    Invalid { field: String, expected: String },
    #[error("{0}")]
    NotFound(&'static str),
    /// The request clashes with the current state (e.g. a request of its type is open).
    #[error("{0}")]
    Conflict(&'static str),
    /// A storage failure a retry can fix (throttling, timeouts, 5xx).
    #[error("storage unavailable: retry later")]
    Unavailable(StoreError),
    /// Anything else that is not the client's fault; the detail is only logged.
    #[error("internal error: quote the request id when reporting it")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, expected: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            expected: expected.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthenticated => 401,
            ApiError::MissingScope(_) => 403,
            ApiError::UnsupportedMediaType => 415,
            ApiError::BodyTooLarge(_) | ApiError::TooManyItems { .. } => 413,
            ApiError::MalformedJson(_) | ApiError::Invalid { .. } => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::MissingScope(_) => "forbidden",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::TooManyItems { .. } => "too_many_items",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What goes to the log beside the status: the internal detail, if any.
    pub fn detail(&self) -> Option<String> {
        match self {
            ApiError::Unavailable(error) => Some(error.to_string()),
            ApiError::Internal(detail) => Some(detail.clone()),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, ApiError::Unavailable(_)).then_some(RETRY_AFTER_SECONDS)
    }

    /// The error body (without the request id, which the request path adds).
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        match self {
            ApiError::Invalid { field, .. } => error.insert("field".into(), json!(field)),
            ApiError::TooManyItems { field, .. } => error.insert("field".into(), json!(field)),
            _ => None,
        };
        json!({ "error": error })
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => ApiError::Unauthenticated,
            AuthError::MissingScope(scope) => ApiError::MissingScope(scope),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_retryable() {
            ApiError::Unavailable(error)
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::FailureKind;

    #[test]
    fn storage_errors_are_classified() {
        let throttled = StoreError::failed("Query", FailureKind::Retryable, "throttled");
        let denied = StoreError::failed("Query", FailureKind::Permanent, "AccessDenied");
        let retry = ApiError::from(throttled);
        assert_eq!((retry.status(), retry.retry_after()), (503, Some(1)));
        let internal = ApiError::from(denied);
        assert_eq!((internal.status(), internal.retry_after()), (500, None));
        assert!(!internal.to_string().contains("AccessDenied"));
        assert!(internal
            .detail()
            .is_some_and(|d| d.contains("AccessDenied")));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let body = ApiError::invalid("scopes[0]", "one of ingest, read").body();
        assert_eq!(body["error"]["field"], "scopes[0]");
        assert_eq!(body["error"]["message"], "scopes[0]: one of ingest, read");
    }
}
