//! The one configuration loader. Lambda reads it from the process environment;
//! the local stack passes the environment that template.yaml declares for the function.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
}

/// Names of the resources a function talks to, plus the emulator endpoint when running locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub events_table: String,
    pub aggregates_table: String,
    pub subjects_table: String,
    pub subject_lookup_key_id: String,
    /// Set only for the local stack and tests (`AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the config from any name -> value lookup (environment, template variables).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(Self {
            events_table: required("VIGIL_EVENTS_TABLE")?,
            aggregates_table: required("VIGIL_AGGREGATES_TABLE")?,
            subjects_table: required("VIGIL_SUBJECTS_TABLE")?,
            subject_lookup_key_id: required("VIGIL_SUBJECT_LOOKUP_KEY_ID")?,
            endpoint_url: lookup("AWS_ENDPOINT_URL").filter(|v| !v.is_empty()),
            region: lookup("AWS_REGION").filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup<'a>(map: &'a HashMap<&'a str, &'a str>) -> impl Fn(&str) -> Option<String> + 'a {
        |name| map.get(name).map(|v| v.to_string())
    }

    #[test]
    fn names_the_missing_variable() {
        let mut vars = HashMap::from([
            ("VIGIL_EVENTS_TABLE", "e"),
            ("VIGIL_AGGREGATES_TABLE", "a"),
            ("VIGIL_SUBJECT_LOOKUP_KEY_ID", "k"),
        ]);
        assert_eq!(
            Config::from_lookup(lookup(&vars)),
            Err(ConfigError::Missing("VIGIL_SUBJECTS_TABLE"))
        );
        vars.insert("VIGIL_SUBJECTS_TABLE", "s");
        let config = Config::from_lookup(lookup(&vars)).expect("complete config");
        assert_eq!(config.subjects_table, "s");
        assert_eq!(config.endpoint_url, None);
    }
}
