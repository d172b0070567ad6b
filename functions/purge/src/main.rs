vigil_shared::lambda_main!(vigil_purge::Deps);
