//! Lambda entry point: builds config and clients once (`Deps::connect`), then
//! hands every invocation to the handler in `lib.rs`.

// The handler's future is deep (a stream of reads per account); its layout needs more than 128 levels.
#![recursion_limit = "256"]

vigil_shared::lambda_main!(vigil_dashboard::Deps);
