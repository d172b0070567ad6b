//! Data subject requests (GDPR Art. 15–21, French post-mortem directives):
//! their types, lifecycle, due dates and receipts (docs/decisions/0016).
//!
//! A request names the person by the tenant's own user id only on the way in;
//! what is stored names the subject by pseudonym until the request is done,
//! and an erasure removes even that. A receipt proves what was done (counts,
//! the fields that changed, a digest of the bundle, the audit entry) without
//! repeating a value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, Month, OffsetDateTime};

use super::subject::{Purpose, SubjectState};

/// What the person (or the tenant on their behalf) asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestType {
    Access,
    Portability,
    Rectification,
    Erasure,
    Restriction,
    RestrictionLift,
    Objection,
    ObjectionWithdrawal,
    PostMortemDirective,
    DeathNotice,
}

impl RequestType {
    pub const ALL: [RequestType; 10] = [
        RequestType::Access,
        RequestType::Portability,
        RequestType::Rectification,
        RequestType::Erasure,
        RequestType::Restriction,
        RequestType::RestrictionLift,
        RequestType::Objection,
        RequestType::ObjectionWithdrawal,
        RequestType::PostMortemDirective,
        RequestType::DeathNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Access => "access",
            RequestType::Portability => "portability",
            RequestType::Rectification => "rectification",
            RequestType::Erasure => "erasure",
            RequestType::Restriction => "restriction",
            RequestType::RestrictionLift => "restriction_lift",
            RequestType::Objection => "objection",
            RequestType::ObjectionWithdrawal => "objection_withdrawal",
            RequestType::PostMortemDirective => "post_mortem_directive",
            RequestType::DeathNotice => "death_notice",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The GDPR article (or French law) the request exercises.
    pub fn legal_basis(self) -> &'static str {
        match self {
            RequestType::Access => "GDPR Art. 15",
            RequestType::Portability => "GDPR Art. 20",
            RequestType::Rectification => "GDPR Art. 16",
            RequestType::Erasure => "GDPR Art. 17",
            RequestType::Restriction | RequestType::RestrictionLift => "GDPR Art. 18",
            RequestType::Objection | RequestType::ObjectionWithdrawal => "GDPR Art. 21",
            RequestType::PostMortemDirective | RequestType::DeathNotice => {
                "Loi Informatique et Libertés, art. 85"
            }
        }
    }

    /// Whether the request needs a purpose (`analytics`, `alerting`, `model_training`).
    pub fn takes_purpose(self) -> bool {
        matches!(
            self,
            RequestType::Objection | RequestType::ObjectionWithdrawal
        )
    }

    /// Whether the request produces a bundle of the person's data.
    pub fn makes_bundle(self) -> bool {
        matches!(self, RequestType::Access | RequestType::Portability)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Received,
    InProgress,
    Completed,
    Rejected,
}

impl RequestState {
    pub const ALL: [RequestState; 4] = [
        RequestState::Received,
        RequestState::InProgress,
        RequestState::Completed,
        RequestState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::InProgress => "in_progress",
            RequestState::Completed => "completed",
            RequestState::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_open(self) -> bool {
        matches!(self, RequestState::Received | RequestState::InProgress)
    }
}

/// What a post-mortem directive asks for the person's data once the tenant
/// reports their death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Erase,
    Keep,
    HandOver,
}

impl Directive {
    pub const ALL: [Directive; 3] = [Directive::Erase, Directive::Keep, Directive::HandOver];

    pub fn as_str(self) -> &'static str {
        match self {
            Directive::Erase => "erase",
            Directive::Keep => "keep",
            Directive::HandOver => "hand_over",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// A person's contact identifiers. Stored only in the subject record, encrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub email: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::http::body::present"
    )]
    pub name: Option<String>,
}

impl Contact {
    /// The names of the fields that are set, in a fixed order.
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.email.is_some() {
            names.push("email");
        }
        if self.name.is_some() {
            names.push("name");
        }
        names
    }

    /// `self` with `change`'s fields applied; the names of the fields whose value changed.
    pub fn rectified(&self, change: &Contact) -> (Contact, Vec<&'static str>) {
        let mut out = self.clone();
        let mut changed = Vec::new();
        if let Some(email) = &change.email {
            if out.email.as_ref() != Some(email) {
                changed.push("email");
            }
            out.email = Some(email.clone());
        }
        if let Some(name) = &change.name {
            if out.name.as_ref() != Some(name) {
                changed.push("name");
            }
            out.name = Some(name.clone());
        }
        (out, changed)
    }

    /// The field that is wrong and what it should be, prefixed by `at`.
    pub fn check(&self, at: &str) -> Result<(), (String, &'static str)> {
        if self.email.is_none() && self.name.is_none() {
            return Err((at.to_owned(), "must hold email, name or both"));
        }
        if let Some(email) = &self.email {
            if !is_email(email) {
                return Err((
                    format!("{at}.email"),
                    "expected an e-mail address (at most 254 characters)",
                ));
            }
        }
        if let Some(name) = &self.name {
            let chars = name.chars().count();
            if name.trim().is_empty() || chars > 200 || name.chars().any(char::is_control) {
                return Err((
                    format!("{at}.name"),
                    "expected 1 to 200 characters, no control characters",
                ));
            }
        }
        Ok(())
    }
}

/// One `@`, something on each side, a dot in the domain, no spaces.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    value.chars().count() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What the subject record's encrypted envelope holds: the person's contact
/// identifiers and, with a hand-over directive, the recipient's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Contact>,
}

/// A request as received, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub kind: RequestType,
    /// The tenant's user id: used to find the subject, never stored.
    pub user: String,
    pub purpose: Option<Purpose>,
    /// Rectification: the new values.
    pub fields: Option<Contact>,
    pub directive: Option<Directive>,
    /// Hand-over directive: who receives the bundle.
    pub recipient: Option<Contact>,
}

/// The longest user id events may carry (`validate.rs`).
pub const MAX_USER_CHARS: usize = 256;

/// A tenant's user id as a request or a path gives it.
pub fn check_user(user: &str) -> bool {
    !user.is_empty()
        && user.chars().count() <= MAX_USER_CHARS
        && !user.chars().any(char::is_control)
}

/// The state a request type leads to, from the current one (None: no change of state).
pub fn next_state(current: &SubjectState, spec: &RequestSpec) -> Option<SubjectState> {
    let mut next = current.clone();
    match (spec.kind, spec.purpose) {
        (RequestType::Restriction, _) => next.restricted = true,
        (RequestType::RestrictionLift, _) => next.restricted = false,
        (RequestType::Objection, Some(purpose)) => {
            next.objections.insert(purpose);
        }
        (RequestType::ObjectionWithdrawal, Some(purpose)) => {
            next.objections.remove(&purpose);
        }
        _ => return None,
    }
    Some(next)
}

/// The purposes a subject's events are withheld from: all of them while the
/// processing is restricted or the data erased, else the ones objected to.
pub fn withheld(state: &SubjectState) -> BTreeSet<Purpose> {
    if state.restricted || state.erased_at.is_some() {
        Purpose::ALL.into_iter().collect()
    } else {
        state.objections.clone()
    }
}

/// Art. 12(3): one month after receipt (the same day of the next month, or its
/// last day when it has fewer days).
pub fn due_date(received: OffsetDateTime) -> OffsetDateTime {
    let date = received.date();
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        m => (date.year(), m.next()),
    };
    let last = month.length(year);
    let day = date.day().min(last);
    match time::Date::from_calendar_date(year, month, day) {
        Ok(due) => received.replace_date(due),
        Err(_) => received + Duration::days(31),
    }
}

/// A request id: `pr_`, 8 hex digits of the receipt second (so ids sort by
/// time), 12 random hex digits.
pub fn new_request_id(now: OffsetDateTime) -> String {
    let seconds = u32::try_from(now.unix_timestamp()).unwrap_or(u32::MAX);
    let random: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
    format!("pr_{seconds:08x}{random:012x}")
}

pub fn is_request_id(value: &str) -> bool {
    value.strip_prefix("pr_").is_some_and(|rest| {
        rest.len() == 20
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The suppression marker of an erased subject: a one-way digest of its lookup
/// key, so that a restore from backup can find and erase the record again. It
/// is not the user id nor the lookup key, and cannot be turned back into either.
pub fn suppression_marker(lookup: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"vigil/suppression/v1\0");
    hash.update(lookup.as_bytes());
    hex::encode(hash.finalize())
}

/// What a completed request did, without a single value of the person's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Events whose processing changed (restriction, objection) or that were erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// Bundle objects written (access, portability) or erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// SHA-256 of each bundle object, by name (access, portability, hand-over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<(String, String)>,
    /// Names of the fields that changed (rectification, subject update).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields_changed: Vec<String>,
    /// Purposes the person's data is now withheld from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld_from: Option<Vec<String>>,
    /// The directive recorded or applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// Erasure: a suppression marker was kept so a restore re-applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression_marker_kept: Option<bool>,
}

/// The receipt of a completed request: what was done, when, and the audit
/// entry that records it (sequence and hash in the anchored chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub legal_basis: String,
    pub received_at: String,
    pub completed_at: String,
    pub outcome: Outcome,
    pub audit_seq: u64,
    pub audit_hash: String,
    /// SHA-256 of the receipt's other fields (canonical JSON): a copy kept by the
    /// tenant can be checked against ours.
    pub digest: String,
}

impl Receipt {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: &str,
        kind: RequestType,
        received_at: &str,
        completed_at: &str,
        outcome: Outcome,
        audit_seq: u64,
        audit_hash: &str,
    ) -> Self {
        let mut receipt = Receipt {
            request_id: request_id.to_owned(),
            kind: kind.as_str().to_owned(),
            legal_basis: kind.legal_basis().to_owned(),
            received_at: received_at.to_owned(),
            completed_at: completed_at.to_owned(),
            outcome,
            audit_seq,
            audit_hash: audit_hash.to_owned(),
            digest: String::new(),
        };
        receipt.digest = receipt.compute_digest();
        receipt
    }

    pub fn compute_digest(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.digest = String::new();
        let canonical = serde_json::to_vec(&unsigned).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn due_one_calendar_month_after_receipt() {
        assert_eq!(
            due_date(datetime!(2026-12-01 08:00 UTC)),
            datetime!(2027-01-01 08:00 UTC)
        );
        assert_eq!(
            due_date(datetime!(2027-01-31 10:00 UTC)),
            datetime!(2027-02-28 10:00 UTC)
        );
        assert_eq!(
            due_date(datetime!(2028-01-31 10:00 UTC)),
            datetime!(2028-02-29 10:00 UTC)
        );
    }

    #[test]
    fn request_ids_sort_by_time_and_parse() {
        let a = new_request_id(datetime!(2026-12-01 08:00 UTC));
        let b = new_request_id(datetime!(2026-12-01 08:00:01 UTC));
        assert!(is_request_id(&a) && is_request_id(&b));
        assert!(a[..11] < b[..11]);
        assert!(!is_request_id("pr_123"));
        assert!(!is_request_id(&a.to_uppercase()));
    }

    #[test]
    fn states_follow_requests() {
        let spec = |kind, purpose| RequestSpec {
            kind,
            user: "u".into(),
            purpose,
            fields: None,
            directive: None,
            recipient: None,
        };
        let start = SubjectState::default();
        let restricted =
            next_state(&start, &spec(RequestType::Restriction, None)).expect("restriction");
        assert_eq!(withheld(&restricted).len(), 3);
        let lifted =
            next_state(&restricted, &spec(RequestType::RestrictionLift, None)).expect("lift");
        assert!(lifted.is_default());
        let objected = next_state(
            &start,
            &spec(RequestType::Objection, Some(Purpose::Alerting)),
        )
        .expect("objection");
        assert_eq!(
            withheld(&objected).into_iter().collect::<Vec<_>>(),
            vec![Purpose::Alerting]
        );
        assert_eq!(next_state(&start, &spec(RequestType::Access, None)), None);
    }

    #[test]
    fn rectification_names_changed_fields_only() {
        let before = Contact {
            email: Some("a@example.com".into()),
            name: Some("Ada".into()),
        };
        let change = Contact {
            email: Some("b@example.com".into()),
            name: Some("Ada".into()),
        };
        let (after, changed) = before.rectified(&change);
        assert_eq!(changed, vec!["email"]);
        assert_eq!(after.email.as_deref(), Some("b@example.com"));
        assert!(Contact::default().check("body").is_err());
        let bad = Contact {
            email: Some("not an address".into()),
            name: None,
        };
        assert_eq!(
            bad.check("fields").map_err(|e| e.0),
            Err("fields.email".to_owned())
        );
    }

    #[test]
    fn receipts_digest_their_content_and_markers_hide_the_key() {
        let receipt = Receipt::new(
            "pr_1",
            RequestType::Erasure,
            "2026-12-01T08:00:00Z",
            "2026-12-01T08:00:01Z",
            Outcome::default(),
            4,
            "ab",
        );
        assert_eq!(receipt.digest, receipt.compute_digest());
        let mut changed = receipt.clone();
        changed.audit_seq = 5;
        assert_ne!(changed.compute_digest(), receipt.digest);
        let marker = suppression_marker("v1.abcd");
        assert_eq!(marker.len(), 64);
        assert!(!marker.contains("abcd"));
    }
}
