//! Lambda entry point: builds config and clients once (`Deps::connect`), then
//! hands every invocation (API request or scheduled evaluation) to `lib.rs`.

vigil_shared::lambda_main!(vigil_alerts::Deps);
