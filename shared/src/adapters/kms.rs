//! KMS adapter: derives the subject lookup secrets from the HMAC key (once per
//! cold start, one per version in use), and generates and unwraps the data keys
//! that seal a subject's contact fields (envelope encryption).

use std::collections::HashMap;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, MacAlgorithmSpec};

use crate::config::{Config, ConfigError, Setting};
use crate::crypto::{CryptoError, SubjectLookup};
use crate::domain::export::{
    account_secret_message, subject_secret_message, ExportMonth, Pseudonyms,
};
use crate::domain::{SubjectId, TenantId};

/// Fixed, versioned message: the derived secret changes only with the key or
/// the version (a rotation bumps the version, docs/decisions/0016).
fn lookup_secret_message(version: u32) -> Vec<u8> {
    format!("vigil/subject-lookup/v{version}").into_bytes()
}

async fn derive_secret(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    version: u32,
) -> Result<[u8; 32], CryptoError> {
    mac_secret(client, key_id, lookup_secret_message(version)).await
}

/// A 32-byte secret: the KMS HMAC (SHA-256) of a fixed message under `key_id`.
/// The key never leaves KMS; the secret lives in memory only.
async fn mac_secret(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    message: Vec<u8>,
) -> Result<[u8; 32], CryptoError> {
    let out = client
        .generate_mac()
        .key_id(key_id)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .message(Blob::new(message))
        .send()
        .await
        .map_err(|e| CryptoError::Kms(DisplayErrorContext(e).to_string()))?;
    let mac = out.mac.map(Blob::into_inner).unwrap_or_default();
    mac.as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadMacLength(mac.len()))
}

/// The export's pseudonyms for one tenant's month: two GenerateMac calls on the
/// export's own HMAC key (not the ingestion lookup key, docs/decisions/0018).
pub async fn derive_export_pseudonyms(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    tenant: &TenantId,
    month: ExportMonth,
) -> Result<Pseudonyms, CryptoError> {
    let account = mac_secret(client, key_id, account_secret_message(tenant)).await?;
    let subject = mac_secret(client, key_id, subject_secret_message(tenant, month)).await?;
    Ok(Pseudonyms::new(account, subject))
}

/// The lookup with version 1 and no rotation.
pub async fn derive_subject_lookup(
    client: &aws_sdk_kms::Client,
    key_id: &str,
) -> Result<SubjectLookup, CryptoError> {
    derive_versioned_lookup(client, key_id, 1, None).await
}

/// The lookup of `version`, and of `previous` while a rotation is under way.
pub async fn derive_versioned_lookup(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    version: u32,
    previous: Option<u32>,
) -> Result<SubjectLookup, CryptoError> {
    let secret = derive_secret(client, key_id, version).await?;
    let previous = match previous.filter(|p| *p != version) {
        Some(v) => Some((v, derive_secret(client, key_id, v).await?)),
        None => None,
    };
    Ok(SubjectLookup::versioned(version, secret, previous))
}

/// The lookup the configuration asks for: its key, version (default 1) and,
/// during a rotation, previous version.
pub async fn lookup_from_config(
    client: &aws_sdk_kms::Client,
    config: &Config,
) -> Result<SubjectLookup, LookupInitError> {
    let key_id = config.require(Setting::SubjectLookupKeyId)?;
    let version = Setting::SubjectLookupVersion.version(config)?.unwrap_or(1);
    let previous = Setting::SubjectLookupPreviousVersion.version(config)?;
    Ok(derive_versioned_lookup(client, key_id, version, previous).await?)
}

#[derive(Debug, thiserror::Error)]
pub enum LookupInitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Data keys for sealing contact fields, bound by the encryption context to
/// one tenant and one subject: a wrapped key copied to another record does not
/// unwrap.
#[derive(Debug, Clone)]
pub struct ContactKeys {
    client: aws_sdk_kms::Client,
    key_id: String,
}

/// A KMS failure, retryable (throttling, timeouts, 5xx) or not.
fn data_key_error<E>(
    error: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> CryptoError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_kms::error::SdkError;
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().as_u16() >= 500
                || matches!(
                    service.err().code(),
                    Some(
                        "ThrottlingException"
                            | "KMSInternalException"
                            | "DependencyTimeoutException"
                    )
                )
        }
        _ => false,
    };
    let detail = DisplayErrorContext(error).to_string();
    if retryable {
        CryptoError::DataKeyUnavailable(detail)
    } else {
        CryptoError::DataKey(detail)
    }
}

fn context(tenant: &TenantId, subject: &SubjectId) -> HashMap<String, String> {
    HashMap::from([
        ("tenant".to_owned(), tenant.as_str().to_owned()),
        ("subject".to_owned(), subject.as_str().to_owned()),
    ])
}

impl ContactKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: &str) -> Self {
        Self {
            client,
            key_id: key_id.to_owned(),
        }
    }

    /// A fresh 256-bit data key: (plaintext, wrapped). Only the wrapped one is stored.
    pub async fn generate(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(tenant, subject)))
            .send()
            .await
            .map_err(data_key_error)?;
        match (out.plaintext, out.ciphertext_blob) {
            (Some(plain), Some(wrapped)) => Ok((plain.into_inner(), wrapped.into_inner())),
            _ => Err(CryptoError::DataKey("no key in the answer".into())),
        }
    }

    /// Unwraps a stored data key (refused if tenant or subject differ).
    pub async fn unwrap(
        &self,
        tenant: &TenantId,
        subject: &SubjectId,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context(tenant, subject)))
            .send()
            .await
            .map_err(data_key_error)?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| CryptoError::DataKey("no key in the answer".into()))
    }
}

/// Webhook signing secrets, sealed by KMS (`Encrypt`, at most 4 KB) under the
/// webhook key with the tenant as encryption context: a sealed secret copied
/// to another tenant's record does not open.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    client: aws_sdk_kms::Client,
    key_id: String,
}

fn webhook_context(tenant: &TenantId) -> HashMap<String, String> {
    HashMap::from([
        ("tenant".to_owned(), tenant.as_str().to_owned()),
        ("purpose".to_owned(), "webhook-signing".to_owned()),
    ])
}

impl WebhookSecrets {
    pub fn new(client: aws_sdk_kms::Client, key_id: &str) -> Self {
        Self {
            client,
            key_id: key_id.to_owned(),
        }
    }

    pub async fn seal(&self, tenant: &TenantId, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(secret))
            .set_encryption_context(Some(webhook_context(tenant)))
            .send()
            .await
            .map_err(data_key_error)?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| CryptoError::DataKey("no ciphertext in the answer".into()))
    }

    pub async fn open(&self, tenant: &TenantId, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(sealed))
            .set_encryption_context(Some(webhook_context(tenant)))
            .send()
            .await
            .map_err(data_key_error)?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| CryptoError::DataKey("no plaintext in the answer".into()))
    }
}
