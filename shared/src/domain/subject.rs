//! A data subject's state: what the person has asked of the processing of their
//! data (restriction, objections per purpose, erasure). Held on the subject
//! record next to the pseudonym; the rights (issue 10) change it, alerts and the
//! export read it.

use std::collections::BTreeSet;

use time::OffsetDateTime;

/// The purposes a person can object to, each a processing of the privacy policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    Analytics,
    Alerting,
    ModelTraining,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [
        Purpose::Analytics,
        Purpose::Alerting,
        Purpose::ModelTraining,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Analytics => "analytics",
            Purpose::Alerting => "alerting",
            Purpose::ModelTraining => "model_training",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// Art. 18: stored, but processed for nothing else until lifted.
    pub restricted: bool,
    /// Art. 21: purposes the person objected to.
    pub objections: BTreeSet<Purpose>,
    /// Art. 17: when the person's data was erased (the record stays as a tombstone
    /// so that the pseudonym is never reused for them).
    pub erased_at: Option<OffsetDateTime>,
}

impl SubjectState {
    /// Whether the person's data may be used for `purpose`.
    pub fn allows(&self, purpose: Purpose) -> bool {
        !self.restricted && self.erased_at.is_none() && !self.objections.contains(&purpose)
    }

    /// The default state (nothing asked): such subjects stay out of the state index.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restriction_erasure_and_objections_each_stop_processing() {
        let mut state = SubjectState::default();
        assert!(state.is_default());
        assert!(Purpose::ALL.iter().all(|p| state.allows(*p)));
        state.objections.insert(Purpose::ModelTraining);
        assert!(!state.allows(Purpose::ModelTraining));
        assert!(state.allows(Purpose::Alerting));
        assert!(!state.is_default());
        let restricted = SubjectState {
            restricted: true,
            ..SubjectState::default()
        };
        assert!(Purpose::ALL.iter().all(|p| !restricted.allows(*p)));
        let erased = SubjectState {
            erased_at: Some(time::macros::datetime!(2026-11-29 00:00 UTC)),
            ..SubjectState::default()
        };
        assert!(!erased.allows(Purpose::Analytics));
        for purpose in Purpose::ALL {
            assert_eq!(Purpose::parse(purpose.as_str()), Some(purpose));
        }
        assert_eq!(Purpose::parse("marketing"), None);
    }
}
