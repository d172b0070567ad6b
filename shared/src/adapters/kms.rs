//! KMS adapter: derives the subject lookup secret from the HMAC key, once per cold start.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;

use crate::crypto::{CryptoError, SubjectLookup};

/// Fixed, versioned message: the derived secret changes only with the key.
const LOOKUP_SECRET_MESSAGE: &[u8] = b"vigil/subject-lookup/v1";

pub async fn derive_subject_lookup(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<SubjectLookup, CryptoError> {
    let out = client
        .generate_mac()
        .key_id(key_id)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .message(Blob::new(LOOKUP_SECRET_MESSAGE))
        .send()
        .await
        .map_err(|e| CryptoError::Kms(DisplayErrorContext(e).to_string()))?;
    let mac = out.mac.map(Blob::into_inner).unwrap_or_default();
    let secret: [u8; 32] = mac
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadMacLength(mac.len()))?;
    Ok(SubjectLookup::new(secret))
}
