//! The one configuration loader. Lambda reads it from the process environment;
//! the local stack passes the environment that template.yaml declares for the function.
//! Each function asks at cold start for the settings it needs (`require_all`), so a
//! missing variable fails the init with its name, not a request later.

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {0} must be {1}")]
    Invalid(&'static str, &'static str),
}

/// The settings vigil's functions read, each from one environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    EventsTable,
    AggregatesTable,
    SubjectsTable,
    TenantsTable,
    AuditTable,
    SubjectLookupKeyId,
    AuditAnchorBucket,
    /// The lookup secret's version (default 1); a rotation raises it.
    SubjectLookupVersion,
    /// Set only during a rotation: the version still read (docs/decisions/0016).
    SubjectLookupPreviousVersion,
    ContactKeyId,
    PrivacyTable,
    DataBucket,
    AlertsTable,
    /// The EventBridge bus notifications are put on.
    AlertBus,
    /// The KMS key that seals webhook signing secrets.
    WebhookKeyId,
    /// `true` only on the local stack: webhooks may use plain `http://` to loopback.
    WebhookAllowLoopback,
    /// The KMS HMAC key the export's pseudonyms are derived from.
    ExportPseudonymKeyId,
}

impl Setting {
    pub const ALL: [Setting; 17] = [
        Setting::EventsTable,
        Setting::AggregatesTable,
        Setting::SubjectsTable,
        Setting::TenantsTable,
        Setting::AuditTable,
        Setting::SubjectLookupKeyId,
        Setting::AuditAnchorBucket,
        Setting::SubjectLookupVersion,
        Setting::SubjectLookupPreviousVersion,
        Setting::ContactKeyId,
        Setting::PrivacyTable,
        Setting::DataBucket,
        Setting::AlertsTable,
        Setting::AlertBus,
        Setting::WebhookKeyId,
        Setting::WebhookAllowLoopback,
        Setting::ExportPseudonymKeyId,
    ];

    pub fn env_name(self) -> &'static str {
        match self {
            Setting::EventsTable => "VIGIL_EVENTS_TABLE",
            Setting::AggregatesTable => "VIGIL_AGGREGATES_TABLE",
            Setting::SubjectsTable => "VIGIL_SUBJECTS_TABLE",
            Setting::TenantsTable => "VIGIL_TENANTS_TABLE",
            Setting::AuditTable => "VIGIL_AUDIT_TABLE",
            Setting::SubjectLookupKeyId => "VIGIL_SUBJECT_LOOKUP_KEY_ID",
            Setting::AuditAnchorBucket => "VIGIL_AUDIT_ANCHOR_BUCKET",
            Setting::SubjectLookupVersion => "VIGIL_SUBJECT_LOOKUP_VERSION",
            Setting::SubjectLookupPreviousVersion => "VIGIL_SUBJECT_LOOKUP_PREVIOUS_VERSION",
            Setting::ContactKeyId => "VIGIL_CONTACT_KEY_ID",
            Setting::PrivacyTable => "VIGIL_PRIVACY_TABLE",
            Setting::DataBucket => "VIGIL_DATA_BUCKET",
            Setting::AlertsTable => "VIGIL_ALERTS_TABLE",
            Setting::AlertBus => "VIGIL_ALERT_BUS",
            Setting::WebhookKeyId => "VIGIL_WEBHOOK_KEY_ID",
            Setting::WebhookAllowLoopback => "VIGIL_WEBHOOK_ALLOW_LOOPBACK",
            Setting::ExportPseudonymKeyId => "VIGIL_EXPORT_PSEUDONYM_KEY_ID",
        }
    }

    /// The template.yaml resource whose name or id the setting holds.
    pub fn resource(self) -> &'static str {
        match self {
            Setting::EventsTable => "EventsTable",
            Setting::AggregatesTable => "AggregatesTable",
            Setting::SubjectsTable => "SubjectsTable",
            Setting::TenantsTable => "TenantsTable",
            Setting::AuditTable => "AuditTable",
            Setting::SubjectLookupKeyId => "SubjectLookupKey",
            Setting::AuditAnchorBucket => "AuditAnchorBucket",
            Setting::SubjectLookupVersion => "SubjectLookupVersion",
            Setting::SubjectLookupPreviousVersion => "SubjectLookupPreviousVersion",
            Setting::ContactKeyId => "SubjectContactKey",
            Setting::PrivacyTable => "PrivacyTable",
            Setting::DataBucket => "DataBucket",
            Setting::AlertsTable => "AlertsTable",
            Setting::AlertBus => "AlertBus",
            Setting::WebhookKeyId => "WebhookSecretKey",
            Setting::WebhookAllowLoopback => "WebhookAllowLoopback",
            Setting::ExportPseudonymKeyId => "ExportPseudonymKey",
        }
    }

    /// A version setting: absent is None, anything but a positive number is an error.
    pub fn version(self, config: &Config) -> Result<Option<u32>, ConfigError> {
        match config.get(self) {
            None => Ok(None),
            Some(text) => {
                text.parse::<u32>()
                    .ok()
                    .filter(|v| *v > 0)
                    .map(Some)
                    .ok_or(ConfigError::Invalid(
                        self.env_name(),
                        "a positive whole number",
                    ))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    values: HashMap<Setting, String>,
    /// Set only for the local stack and tests (`AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

impl Config {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every known setting from any name -> value lookup (environment, template variables).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let present = |name: &str| lookup(name).filter(|value| !value.is_empty());
        Self {
            values: Setting::ALL
                .into_iter()
                .filter_map(|setting| present(setting.env_name()).map(|value| (setting, value)))
                .collect(),
            endpoint_url: present("AWS_ENDPOINT_URL"),
            region: present("AWS_REGION"),
        }
    }

    pub fn get(&self, setting: Setting) -> Option<&str> {
        self.values.get(&setting).map(String::as_str)
    }

    pub fn require(&self, setting: Setting) -> Result<&str, ConfigError> {
        self.get(setting)
            .ok_or(ConfigError::Missing(setting.env_name()))
    }

    pub fn require_all(&self, settings: &[Setting]) -> Result<(), ConfigError> {
        settings
            .iter()
            .try_for_each(|setting| self.require(*setting).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_variable() {
        let vars = HashMap::from([("VIGIL_EVENTS_TABLE", "e"), ("VIGIL_AUDIT_TABLE", "")]);
        let config = Config::from_lookup(|name| vars.get(name).map(|v| v.to_string()));
        assert_eq!(config.require(Setting::EventsTable), Ok("e"));
        assert_eq!(
            config.require_all(&[Setting::EventsTable, Setting::AuditTable]),
            Err(ConfigError::Missing("VIGIL_AUDIT_TABLE"))
        );
        assert_eq!(config.endpoint_url, None);
    }
}
