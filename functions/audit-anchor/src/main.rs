//! Lambda entry point: builds config and clients once (`Deps::connect`), then
//! hands every scheduled invocation to the job in `lib.rs`.

vigil_shared::lambda_main!(vigil_audit_anchor::Deps);
