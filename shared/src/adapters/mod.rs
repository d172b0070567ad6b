//! The only code that speaks to AWS services: one DynamoDB adapter per port
//! (`dynamo::<thing>`) over one set of helpers, and the KMS key derivation.

pub mod dynamo;
pub mod kms;
