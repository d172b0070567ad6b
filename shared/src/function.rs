//! The shape of every Lambda function: a value built once per cold start (its
//! dependencies) that turns one event into one answer. `main.rs` hands it to
//! `lambda_runtime`; the local stack hosts any `Function` after one registration.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub trait Function: Send + Sync + 'static {
    /// What the function is invoked with (an API Gateway request, a scheduled event).
    type Event: DeserializeOwned + Send;
    type Output: Serialize;
    /// A failed invocation (Lambda reports it; API Gateway answers 500).
    type Error: std::error::Error + Send + Sync + 'static;

    fn call(
        &self,
        event: Self::Event,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// A job's explicit input: an EventBridge scheduled event (it has
/// `detail-type`) carries only EventBridge's own fields and stands for `{}`;
/// anything else is the input as sent, for the job to refuse unknown fields.
pub fn job_input(event: serde_json::Value) -> serde_json::Value {
    if event.get("detail-type").is_some() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        event
    }
}

/// The whole `main.rs` of a function: JSON logs, dependencies built once from
/// the environment (a missing setting fails the cold start, naming it), then
/// every invocation handed to `Function::call`. The caller's crate provides
/// `lambda_runtime` and `tokio`.
#[macro_export]
macro_rules! lambda_main {
    ($($deps:ident)::+) => {
        #[tokio::main]
        async fn main() -> Result<(), ::lambda_runtime::Error> {
            use $crate::function::Function as _;
            $crate::telemetry::init_logging();
            let function = $($deps)::+::connect(&$crate::config::Config::from_env()).await?;
            let function = &function;
            ::lambda_runtime::run(::lambda_runtime::service_fn(
                move |event: ::lambda_runtime::LambdaEvent<_>| async move {
                    function
                        .call(event.payload)
                        .await
                        .map_err(::lambda_runtime::Error::from)
                },
            ))
            .await
        }
    };
}
