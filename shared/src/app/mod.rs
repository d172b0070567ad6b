//! Use cases shared by several entry points (the admin function, the operator
//! CLI, the local stack): they take ports, never SDK clients, so every binary
//! depends on `shared` and none on another function's crate.

pub mod accounts;
pub mod alerts;
pub mod audit;
#[cfg(feature = "export")]
pub mod export;
pub mod jobs;
pub mod keys;
pub mod privacy;
pub mod purge;
