//! The only code that speaks to AWS services: one DynamoDB adapter per port
//! (`dynamo::<thing>`) over one set of helpers, KMS (the lookup secrets and the
//! data keys of sealed contact fields), and S3 (the bucket that anchors the
//! audit trail, the data bucket of access and portability bundles), EventBridge
//! (the alert bus). `webhook` is the one adapter that speaks to tenants' servers.

pub mod bus;
pub mod dynamo;
pub mod kms;
#[cfg(feature = "export")]
pub mod parquet;
pub mod s3;
pub mod webhook;
