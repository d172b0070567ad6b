//! The privacy API's request bodies, validated once into domain values. Errors
//! name the field and what was expected, never the value sent.

use serde::Deserialize;
use vigil_shared::domain::privacy::{check_user, Contact, Directive, RequestSpec, RequestType};
use vigil_shared::domain::subject::Purpose;
use vigil_shared::http::body::present;
use vigil_shared::http::ApiError;

/// `PUT /v1/subjects/{user}`: the person's contact fields (absent ones are cleared).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    #[serde(default, deserialize_with = "present")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
}

fn check_contact(contact: Contact, at: &str) -> Result<Contact, ApiError> {
    contact
        .check(at)
        .map_err(|(field, expected)| ApiError::invalid(field, expected))?;
    Ok(contact)
}

impl SubjectBody {
    pub fn validate(self) -> Result<Contact, ApiError> {
        check_contact(
            Contact {
                email: self.email,
                name: self.name,
            },
            "body",
        )
    }
}

/// `POST /v1/privacy/requests`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    #[serde(rename = "type")]
    pub kind: String,
    /// The tenant's own user id for the person.
    pub subject: String,
    #[serde(default, deserialize_with = "present")]
    pub purpose: Option<String>,
    /// Rectification: the fields to change.
    #[serde(default, deserialize_with = "present")]
    pub fields: Option<Contact>,
    /// Post-mortem directive: erase, keep or hand_over.
    #[serde(default, deserialize_with = "present")]
    pub directive: Option<String>,
    /// Post-mortem directive `hand_over`: who receives the bundle.
    #[serde(default, deserialize_with = "present")]
    pub recipient: Option<Contact>,
}

const TYPES: &str = "one of access, portability, rectification, erasure, restriction, restriction_lift, objection, objection_withdrawal, post_mortem_directive, death_notice";

impl RequestBody {
    pub fn validate(self) -> Result<RequestSpec, ApiError> {
        let kind =
            RequestType::parse(&self.kind).ok_or_else(|| ApiError::invalid("type", TYPES))?;
        if !check_user(&self.subject) {
            return Err(ApiError::invalid(
                "subject",
                "expected the tenant's user id (1 to 256 characters, no control characters)",
            ));
        }
        let purpose = match (kind.takes_purpose(), self.purpose) {
            (true, Some(p)) => Some(Purpose::parse(&p).ok_or_else(|| {
                ApiError::invalid("purpose", "one of analytics, alerting, model_training")
            })?),
            (true, None) => {
                return Err(ApiError::invalid(
                    "purpose",
                    "required for an objection or its withdrawal",
                ))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid(
                    "purpose",
                    "only for an objection or its withdrawal",
                ))
            }
            (false, None) => None,
        };
        let fields = match (kind == RequestType::Rectification, self.fields) {
            (true, Some(fields)) => Some(check_contact(fields, "fields")?),
            (true, None) => {
                return Err(ApiError::invalid("fields", "required for a rectification"))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid("fields", "only for a rectification"))
            }
            (false, None) => None,
        };
        let is_directive = kind == RequestType::PostMortemDirective;
        let directive =
            match (is_directive, self.directive) {
                (true, Some(d)) => Some(Directive::parse(&d).ok_or_else(|| {
                    ApiError::invalid("directive", "one of erase, keep, hand_over")
                })?),
                (true, None) => {
                    return Err(ApiError::invalid(
                        "directive",
                        "required for a post_mortem_directive",
                    ))
                }
                (false, Some(_)) => {
                    return Err(ApiError::invalid(
                        "directive",
                        "only for a post_mortem_directive",
                    ))
                }
                (false, None) => None,
            };
        let recipient = match (directive == Some(Directive::HandOver), self.recipient) {
            (true, Some(r)) => Some(check_contact(r, "recipient")?),
            (true, None) => {
                return Err(ApiError::invalid(
                    "recipient",
                    "required for a hand_over directive",
                ))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid(
                    "recipient",
                    "only for a hand_over directive",
                ))
            }
            (false, None) => None,
        };
        Ok(RequestSpec {
            kind,
            user: self.subject,
            purpose,
            fields,
            directive,
            recipient,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<RequestSpec, ApiError> {
        serde_json::from_value::<RequestBody>(json)
            .map_err(|_| ApiError::invalid("body", "shape"))?
            .validate()
    }

    fn field(result: Result<RequestSpec, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn each_type_takes_exactly_its_fields() {
        use serde_json::json;
        assert!(body(json!({"type": "access", "subject": "u-1"})).is_ok());
        assert_eq!(
            field(body(json!({"type": "acces", "subject": "u-1"}))),
            "type"
        );
        assert_eq!(
            field(body(json!({"type": "access", "subject": ""}))),
            "subject"
        );
        assert_eq!(
            field(body(json!({"type": "objection", "subject": "u"}))),
            "purpose"
        );
        assert_eq!(
            field(body(
                json!({"type": "objection", "subject": "u", "purpose": "sales"})
            )),
            "purpose"
        );
        assert_eq!(
            field(body(
                json!({"type": "access", "subject": "u", "purpose": "alerting"})
            )),
            "purpose"
        );
        assert_eq!(
            field(body(json!({"type": "rectification", "subject": "u"}))),
            "fields"
        );
        assert_eq!(
            field(body(
                json!({"type": "rectification", "subject": "u", "fields": {"email": "x"}})
            )),
            "fields.email"
        );
        assert_eq!(
            field(body(
                json!({"type": "post_mortem_directive", "subject": "u", "directive": "hand_over"})
            )),
            "recipient"
        );
        let spec = body(
            json!({"type": "post_mortem_directive", "subject": "u", "directive": "hand_over",
            "recipient": {"name": "Heir", "email": "heir@example.com"}}),
        )
        .expect("directive");
        assert_eq!(spec.directive, Some(Directive::HandOver));
    }
}
