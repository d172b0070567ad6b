vigil_shared::lambda_main!(vigil_export::Deps);
