//! The only code that speaks to AWS services.

pub mod dynamo;
pub mod dynamo_access;
pub mod kms;
