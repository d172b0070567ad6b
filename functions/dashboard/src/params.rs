//! Query parameters of the dashboard routes, each checked before any read: a
//! bad one is a 400 naming it and what was expected, never echoing its value.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use time::{Date, Duration};
use vigil_shared::domain::account::Window;
use vigil_shared::domain::rollup::parse_day;
use vigil_shared::domain::AccountId;
use vigil_shared::http::{ApiError, Call};

/// The account id of the path.
pub fn account(call: &Call<'_>) -> Result<AccountId, ApiError> {
    AccountId::parse(call.path("account"))
        .map_err(|_| ApiError::invalid("account", "expected an account id"))
}

/// A window of days from `from` and `to` (`yyyy-mm-dd`, both included): by
/// default the `default_days` ending today (UTC); never after today, never
/// reversed, at most `max_days` long.
pub fn window(
    from: Option<&str>,
    to: Option<&str>,
    today: Date,
    default_days: i64,
    max_days: i64,
) -> Result<Window, ApiError> {
    let day = |name: &'static str, value: Option<&str>| {
        value
            .map(|v| {
                parse_day(v)
                    .ok_or_else(|| ApiError::invalid(name, "expected a date such as 2026-11-01"))
            })
            .transpose()
    };
    let to_day = day("to", to)?.unwrap_or(today);
    if to_day > today {
        return Err(ApiError::invalid("to", "must not be after today (UTC)"));
    }
    let from_day = day("from", from)?.unwrap_or(to_day - Duration::days(default_days - 1));
    if from_day > to_day {
        return Err(ApiError::invalid("from", "must not be after to"));
    }
    let window = Window {
        from: from_day,
        to: to_day,
    };
    if window.days() > max_days {
        return Err(ApiError::invalid(
            "from, to",
            format!("the range may span at most {max_days} days"),
        ));
    }
    Ok(window)
}

/// A whole number from `min` to `max`.
pub fn bounded(name: &'static str, value: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ApiError::invalid(name, format!("expected an integer from {min} to {max}")))
}

/// An opaque cursor: the offset of the next page, bound to the query it came
/// from (`fingerprint`), so it cannot be replayed against another one.
pub fn cursor(offset: usize, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}.{}", short_hash(fingerprint)))
}

pub fn offset_of(cursor: &str, fingerprint: &str) -> Result<usize, ApiError> {
    let invalid = || {
        ApiError::invalid(
            "cursor",
            "expected a cursor from the previous page of this query",
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let (offset, hash) = text.split_once('.').ok_or_else(invalid)?;
    if hash != short_hash(fingerprint) {
        return Err(invalid());
    }
    offset.parse().map_err(|_| invalid())
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn windows_are_checked() {
        let today = date!(2026 - 11 - 30);
        let w = window(None, None, today, 30, 90).expect("default");
        assert_eq!((w.from, w.to), (date!(2026 - 11 - 01), today));
        let field = |r: Result<Window, ApiError>| match r {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(window(
                Some("2026-11-10"),
                Some("2026-11-09"),
                today,
                30,
                90
            )),
            "from"
        );
        assert_eq!(field(window(None, Some("2026-12-01"), today, 30, 90)), "to");
        assert_eq!(
            field(window(Some("2026-01-01"), None, today, 30, 90)),
            "from, to"
        );
        assert_eq!(
            field(window(Some("2026-11-31"), None, today, 30, 90)),
            "from"
        );
        assert!(window(Some("2026-09-02"), None, today, 30, 90).is_ok());
        assert!(window(Some("2026-09-01"), None, today, 30, 90).is_err());
    }

    #[test]
    fn cursors_belong_to_their_query() {
        let c = cursor(50, "q1");
        assert_eq!(offset_of(&c, "q1"), Ok(50));
        assert!(offset_of(&c, "q2").is_err());
        assert!(offset_of("not-a-cursor", "q1").is_err());
    }
}
