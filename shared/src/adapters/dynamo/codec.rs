//! The attribute codec: how values are written to and read from DynamoDB items,
//! and the one timestamp format (RFC 3339, UTC).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::keys;

pub type Item = HashMap<String, AttributeValue>;

/// The TTL attribute (epoch seconds) of every table with expiring items.
pub const EXPIRES_AT: &str = "expires_at";

/// Whether an item is still to be read (not past its `expires_at`).
pub fn is_live(item: &Item, now: OffsetDateTime) -> bool {
    let expiry = item
        .get(EXPIRES_AT)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok());
    crate::domain::retention::is_live(expiry, now)
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A time as stored.
pub fn timestamp(time: OffsetDateTime) -> AttributeValue {
    s(time.format(&Rfc3339).unwrap_or_default())
}

/// Now, as stored.
pub fn now() -> AttributeValue {
    timestamp(OffsetDateTime::now_utc())
}

pub fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn time_of(item: &Item, name: &str) -> Option<OffsetDateTime> {
    text(item, name).and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
}

/// A number attribute.
pub fn num<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// A day attribute (`yyyy-mm-dd`).
pub fn date_of(item: &Item, name: &str) -> Option<time::Date> {
    text(item, name).and_then(|d| crate::domain::rollup::parse_day(&d))
}

/// An item's `pk` and `sk`.
pub fn key_of(item: &Item) -> (Option<&str>, Option<&str>) {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    (text(keys::PK), text(keys::SK))
}
