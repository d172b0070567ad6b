//! Lambda entry point: builds config and clients once, then serves invocations.

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use vigil_shared::{config::Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init_logging();
    let deps = vigil_authorizer::Deps::connect(&Config::from_env()).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            Ok::<_, Error>(vigil_authorizer::authorize(&event.payload, deps).await?)
        },
    ))
    .await
}
