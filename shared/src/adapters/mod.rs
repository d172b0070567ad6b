//! The only code that speaks to AWS services: one DynamoDB adapter per port
//! (`dynamo::<thing>`) over one set of helpers, the KMS key derivation, and the
//! S3 bucket that anchors the audit trail.

pub mod dynamo;
pub mod kms;
pub mod s3;
