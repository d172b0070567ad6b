//! vigil's shared crate.
//!
//! - `domain`: event model, validation, minimisation, aggregates. Knows nothing of AWS.
//! - `app`: use cases several entry points share (key issuance, audit verification).
//! - `http`: the one request path of every HTTP function and its `ApiError`.
//! - `keys`: the one place that formats DynamoDB keys.
//! - `ports`: the storage traits the functions depend on, one per thing stored.
//! - `adapters`: the only code that speaks DynamoDB and KMS, one adapter per port.
//! - `config`, `aws`, `retry`, `telemetry`: one loader, one client builder, one retry policy, one log setup.
//! - `function`: the shape every Lambda handler has, so the local stack can host any of them.
//! - `stack_state`: the local stack's state file, read by the local stack and the operator CLI.
//! - `mocks`: in-memory ports and request builders for unit tests and benchmarks.
//!
//! Every binary that links this crate (functions, local stack, CLI, tests,
//! benchmarks) allocates with mimalloc: building, serialising and dropping
//! DynamoDB items is allocation-heavy, and glibc's malloc spent a quarter of the
//! ingest function's CPU on it (docs/decisions/0011).

pub mod adapters;
pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod function;
pub mod http;
pub mod keys;
pub mod mocks;
pub mod ports;
pub mod retry;
pub mod stack_state;
pub mod telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
