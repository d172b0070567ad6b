//! vigil's shared crate.
//!
//! - `domain`: event model, validation, minimisation, aggregates. Knows nothing of AWS.
//! - `keys`: the one place that formats DynamoDB keys.
//! - `ports`: the storage traits the functions depend on.
//! - `adapters`: the only code that speaks DynamoDB and KMS.
//! - `config`, `aws`, `retry`, `telemetry`: one loader, one client builder, one retry policy, one log setup.

pub mod adapters;
pub mod api;
pub mod auth;
pub mod aws;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod keys;
#[cfg(any(test, feature = "mocks"))]
pub mod mocks;
pub mod ports;
pub mod retry;
pub mod telemetry;
