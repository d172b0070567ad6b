//! All integration tests, one binary (the SDK is linked once): each module is a
//! feature, run against its own copy of the local stack in the emulator that
//! `infra/test` started, behind a fault-injecting proxy.

mod access;
mod access_faults;
mod alerts;
mod audit;
mod concurrency;
mod contract;
mod contract_errors;
mod dashboard;
mod data_model;
mod export;
mod ingest_api;
mod ingest_faults;
mod key_lifetimes;
mod local_process;
mod local_stack;
mod logs;
mod privacy;
mod properties;
mod purge;
mod register;
mod scheduled;
mod storage_faults;
