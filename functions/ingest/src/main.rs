//! Lambda entry point: builds config and clients once (`Deps::connect`), then
//! hands every invocation to the handler in `lib.rs`.

vigil_shared::lambda_main!(vigil_ingest::Deps);
