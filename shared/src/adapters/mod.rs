//! The only code that speaks to AWS services.

pub mod dynamo;
pub mod kms;
