//! Builds the one SDK configuration every client is made from.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::retry::RetryPolicy;

/// Loads credentials and region the standard way. With an endpoint override (local
/// stack, tests) it uses dummy credentials so no AWS account is ever needed.
pub async fn sdk_config(
    endpoint_url: Option<&str>,
    region: Option<&str>,
    retry: RetryPolicy,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(retry.max_attempts)
                .with_initial_backoff(retry.base_delay)
                .with_max_backoff(retry.max_delay),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(20))
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint).credentials_provider(
            aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "vigil-local"),
        );
        if region.is_none() {
            loader = loader.region(Region::new("eu-west-3"));
        }
    }
    loader.load().await
}
