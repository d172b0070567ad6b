//! Identifiers. Each is validated once, at the door, so keys built from them are safe.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct IdError {
    pub reason: &'static str,
}

/// Characters allowed in ids that become part of a key: no `#` (the key separator), no spaces.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '+' | '=')
}

/// `+33612345678`, `06-12-34-56-78`, `(555) 123.4567`: a phone number, which must
/// not end up in a table key (nothing can redact a key later).
pub fn looks_like_phone(value: &str) -> bool {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let only_phone_chars = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | ' ' | '(' | ')'));
    let groups = value
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .count();
    only_phone_chars
        && (7..=15).contains(&digits)
        && (value.starts_with('+') || (groups >= 3 && digits >= 9))
}

fn check_id(value: &str, max_len: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError {
            reason: "must not be empty",
        });
    }
    if value.len() > max_len {
        return Err(IdError {
            reason: "is too long",
        });
    }
    if !value.chars().all(is_id_char) {
        return Err(IdError {
            reason: "may hold only letters, digits and - _ . : / + =",
        });
    }
    if looks_like_phone(value) {
        return Err(IdError {
            reason: "must not be a phone number (ids end up in keys)",
        });
    }
    Ok(())
}

/// An id that is also a path segment of a route (`/v1/accounts/{account}`):
/// API Gateway decodes `%2F` before routing, so an id with `/` could never be read back.
fn check_path_id(value: &str, max_len: usize) -> Result<(), IdError> {
    check_id(value, max_len)?;
    if value.contains('/') {
        return Err(IdError {
            reason: "must not contain / (it is a path segment of the API)",
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        id_type!($(#[$doc])* $name, $max, check_id);
    };
    ($(#[$doc:meta])* $name:ident, $max:expr, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: &str) -> Result<Self, IdError> {
                $check(value, Self::MAX_LEN)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A company using vigil.
    TenantId,
    64
);
id_type!(
    /// The tenant's customer (a company account), as the tenant names it.
    AccountId,
    128,
    check_path_id
);
id_type!(
    /// The client-chosen id of an event: its idempotency key within an account.
    EventId,
    128
);

/// The random pseudonym that events carry instead of the tenant's user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectId(String);

impl SubjectId {
    /// 128 random bits: nothing about the person can be derived from it.
    pub fn random() -> Self {
        let bits: u128 = rand::random();
        Self(format!("s_{bits:032x}"))
    }

    /// Rebuilds a pseudonym read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_the_key_separator_and_overlong_values() {
        assert!(AccountId::parse("acme-corp").is_ok());
        assert!(AccountId::parse("acme#corp").is_err());
        assert!(AccountId::parse("").is_err());
        assert!(EventId::parse(&"x".repeat(129)).is_err());
        assert!(TenantId::parse("t 1").is_err());
    }

    #[test]
    fn ids_refuse_phone_numbers_and_route_breaking_slashes() {
        for phone in [
            "+33612345678",
            "06-12-34-56-78",
            "555.123.4567",
            "+1-202-555-0143",
        ] {
            assert!(AccountId::parse(phone).is_err(), "{phone}");
            assert!(EventId::parse(phone).is_err(), "{phone}");
        }
        for fine in [
            "12345678",
            "2026-11-29",
            "acct-1234567",
            "inv.2026.001",
            "v1.2.3",
        ] {
            assert!(AccountId::parse(fine).is_ok(), "{fine}");
        }
        assert!(AccountId::parse("acme/eu").is_err());
        assert!(EventId::parse("batch/7").is_ok());
        assert!(AccountId::parse("jane@example.com").is_err());
    }

    #[test]
    fn subject_ids_are_random() {
        assert_ne!(SubjectId::random(), SubjectId::random());
        assert_eq!(SubjectId::random().as_str().len(), 34);
    }
}
