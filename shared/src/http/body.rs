//! Request bodies and parameters: size and content type first, then JSON whose
//! errors name a field path and what was expected there, never a value or a
//! key the client sent (serde's own messages quote both).

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::error::ApiError;
pub use crate::domain::validate::field_label;

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
pub fn json_bytes(
    request: &ApiGatewayV2httpRequest,
    max_bytes: usize,
    limit_label: &'static str,
) -> Result<Vec<u8>, ApiError> {
    use base64::Engine;
    if !is_json(request) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let raw = request.body.as_deref().unwrap_or_default();
    // Base64 is 4/3 of the payload: check the encoded size first to bound the decode.
    let encoded_limit = if request.is_base64_encoded {
        max_bytes / 3 * 4 + 4
    } else {
        max_bytes
    };
    if raw.len() > encoded_limit {
        return Err(ApiError::BodyTooLarge(limit_label));
    }
    let bytes = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| ApiError::MalformedJson("body is marked base64 but is not".into()))?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > max_bytes {
        return Err(ApiError::BodyTooLarge(limit_label));
    }
    Ok(bytes)
}

/// Parses JSON into `T`. Syntax errors give their position; shape errors the
/// field path and what was expected, in words of the schema, not of the request.
/// An optional integer that JSON may write as `90` or `90.0` (both are the
/// integer 90 to JSON Schema, and to the contract).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::{Deserialize, Error};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(whole) = number.as_i64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom("expected an integer")),
    }
}

/// An optional field that may be left out but not set to `null` (the contract
/// gives it a type without null): use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::MalformedJson("body is not valid UTF-8".into()))?;
    // The fast path: path tracking costs an allocation per key, paid only once
    // the body is known to be wrong.
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(_) => Err(describe_error::<T>(text)),
    }
}

/// Parses `text` again with path tracking to say where and what is wrong.
fn describe_error<T: DeserializeOwned>(text: &str) -> ApiError {
    let syntax = |inner: serde_json::Error| {
        ApiError::MalformedJson(format!("line {}, column {}", inner.line(), inner.column()))
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => {
            let segments: Vec<Segment> = error.path().iter().cloned().collect();
            let inner = error.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => shape_error(&segments, &inner.to_string()),
                _ => syntax(inner),
            }
        }
        // Trailing characters after the value.
        Ok(_) => match deserializer.end() {
            Err(inner) => syntax(inner),
            Ok(()) => ApiError::MalformedJson("the body could not be read".into()),
        },
    }
}

/// `events[0].data`: map keys through `field_label`, "body" for the root.
pub fn path_label(segments: &[Segment]) -> String {
    let mut label = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => label.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !label.is_empty() {
                    label.push('.');
                }
                label.push_str(field_label(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    if label.is_empty() {
        "body".into()
    } else {
        label
    }
}

/// Turns serde's message (which quotes the value) into what was expected.
fn shape_error(segments: &[Segment], message: &str) -> ApiError {
    let message = message.split(" at line ").next().unwrap_or_default();
    let between_backticks = |text: &str| text.split('`').nth(1).map(str::to_owned);
    if let Some(rest) = message.strip_prefix("missing field ") {
        // The name is the schema's own.
        let name = between_backticks(rest).unwrap_or_default();
        let mut path = path_label(segments);
        path = if path == "body" {
            name
        } else {
            format!("{path}.{name}")
        };
        return ApiError::invalid(path, "is required");
    }
    if message.starts_with("unknown field") {
        // The last segment is the unknown key itself: name its parent only.
        let parent = &segments[..segments.len().saturating_sub(1)];
        let allowed = message
            .split_once(", expected ")
            .map(|(_, expected)| {
                let words = plain_words(expected);
                format!(" (allowed: {})", words.trim_start_matches("one of "))
            })
            .unwrap_or_default();
        return ApiError::invalid(path_label(parent), format!("has an unknown field{allowed}"));
    }
    let expected = message
        .split_once("expected ")
        .map(|(_, expected)| plain_words(expected))
        .unwrap_or_else(|| "a valid value".into());
    ApiError::invalid(path_label(segments), format!("expected {expected}"))
}

/// serde's type words in the API's words: "u32" is "a non-negative integer".
fn plain_words(expected: &str) -> String {
    let expected = expected.trim();
    let word = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "an object",
        "a boolean" | "a string" => expected,
        other if other.starts_with("struct ") => "an object",
        other if other.starts_with("one of ") || other.contains('`') => {
            return format!(
                "one of {}",
                other
                    .trim_start_matches("one of ")
                    .replace(" or ", ", ")
                    .replace('`', "")
            )
        }
        other => other,
    };
    word.to_owned()
}

/// The query string's parameters, refusing any not in `allowed` (without naming it).
pub fn query<'a>(
    request: &'a ApiGatewayV2httpRequest,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut pairs = Vec::new();
    for (name, value) in request.query_string_parameters.iter() {
        if !allowed.contains(&name) {
            let expected = if allowed.is_empty() {
                "none is accepted".to_owned()
            } else {
                format!("only {} are accepted", allowed.join(", "))
            };
            return Err(ApiError::invalid(
                format!("query parameter {}", field_label(name)),
                expected,
            ));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        list: Vec<Inner>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        One,
        Two,
    }

    fn error(body: &str) -> String {
        parse_json::<Outer>(body.as_bytes())
            .expect_err("invalid")
            .to_string()
    }

    const PII: &str = "jane.doe@example.com";

    #[test]
    fn shape_errors_name_the_path_and_never_the_value() {
        let cases = [
            (
                format!(r#"{{"name": "x", "list": [{{"a": "{PII}"}}]}}"#),
                "list[0].a: expected a non-negative integer",
            ),
            (
                format!(r#"{{"name": "x", "list": [{{"a": 1, "{PII}": 2}}]}}"#),
                "list[0]: has an unknown field (allowed: a)",
            ),
            (r#"{"name": "x"}"#.to_owned(), "list: is required"),
            (
                format!(r#"{{"name": "x", "list": [], "kind": "{PII}"}}"#),
                "kind: expected one of one, two",
            ),
            (format!(r#""{PII}""#), "body: expected an object"),
            (
                format!(r#"{{"name": ["{PII}"], "list": []}}"#),
                "name: expected a string",
            ),
        ];
        for (body, expected) in cases {
            let message = error(&body);
            assert_eq!(message, expected, "{body}");
            assert!(!message.contains(PII));
        }
        assert!(error(r#"{"name": "#).starts_with("body is not valid JSON (line 1"));
        assert!(error(&format!(r#"{{"name": "x", "list": []}} "{PII}""#))
            .starts_with("body is not valid JSON"));
    }

    #[test]
    fn only_plain_names_are_shown() {
        assert_eq!(field_label("email"), "email");
        assert_eq!(field_label(PII), "(unlisted field)");
        assert_eq!(field_label("Jane Doe"), "(unlisted field)");
    }
}
