//! Pseudonymisation and envelope encryption.
//!
//! A user id becomes an HMAC lookup key for its subject record; the secret is
//! derived from a KMS HMAC key at cold start (see `adapters::kms`), under a
//! version: lookup keys read `v<version>.<hex>`, and during a rotation both the
//! current and the previous version are looked up (docs/decisions/0016).
//!
//! Webhook bodies are signed as Standard Webhooks signs them (`webhook_signature`).
//!
//! Contact fields are sealed with AES-256-GCM under a data key KMS generates
//! per write; only the KMS-wrapped data key is stored next to the ciphertext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::domain::{SubjectId, TenantId};

/// A webhook signing secret as shown to the tenant once: `whsec_` and the
/// base64 of 32 random bytes (the HMAC key).
pub fn new_webhook_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256, keyed by
/// the secret's bytes, of `<id>.<timestamp>.<body>` (Standard Webhooks). None
/// if the secret is not a `whsec_` secret.
pub fn webhook_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", engine.encode(mac.finalize().into_bytes())))
}

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("KMS could not derive the subject lookup secret: {0}")]
    Kms(String),
    #[error("KMS returned a MAC of {0} bytes, expected 32")]
    BadMacLength(usize),
    #[error("KMS could not generate or unwrap a data key: {0}")]
    DataKey(String),
    /// Throttled, timed out or a KMS 5xx: a retry can succeed.
    #[error("KMS is unavailable for data keys: {0}")]
    DataKeyUnavailable(String),
    #[error("sealed fields could not be opened (wrong context or altered)")]
    Unsealable,
}

/// Turns (tenant, user id) into the lookup key of the subject record, for the
/// current secret version and, during a rotation, the previous one.
#[derive(Clone)]
pub struct SubjectLookup {
    version: u32,
    secret: [u8; 32],
    previous: Option<(u32, [u8; 32])>,
}

impl std::fmt::Debug for SubjectLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectLookup(v{}, <secret>)", self.version)
    }
}

fn mac_hex(secret: &[u8; 32], tenant: &TenantId, user: &str) -> String {
    // new_from_slice only fails for algorithms with a fixed key size; HMAC takes any.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(tenant.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(user.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 of `value` under `secret`, its first 16 bytes in hex: the
/// export's references (128 bits: no collision in any realistic dataset, half
/// the bytes per row).
pub fn keyed_reference(secret: &[u8; 32], value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The lookup keys of one user id: the current version's, and the previous
/// version's while a rotation is under way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupKeys {
    pub current: String,
    pub previous: Option<String>,
}

impl SubjectLookup {
    /// Version 1, no rotation under way.
    pub fn new(secret: [u8; 32]) -> Self {
        Self::versioned(1, secret, None)
    }

    pub fn versioned(version: u32, secret: [u8; 32], previous: Option<(u32, [u8; 32])>) -> Self {
        Self {
            version,
            secret,
            previous,
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The current version's lookup key.
    pub fn lookup_key(&self, tenant: &TenantId, user: &str) -> String {
        format!("v{}.{}", self.version, mac_hex(&self.secret, tenant, user))
    }

    pub fn lookup_keys(&self, tenant: &TenantId, user: &str) -> LookupKeys {
        LookupKeys {
            current: self.lookup_key(tenant, user),
            previous: self
                .previous
                .map(|(v, secret)| format!("v{v}.{}", mac_hex(&secret, tenant, user))),
        }
    }
}

/// The version a lookup key was made with.
pub fn lookup_version(lookup: &str) -> Option<u32> {
    lookup.strip_prefix('v')?.split_once('.')?.0.parse().ok()
}

/// AES-256-GCM over `plaintext` with a fresh random nonce; `aad` binds the
/// ciphertext to its tenant and subject. Returns (nonce, ciphertext).
pub fn seal(
    data_key: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(data_key).map_err(|_| CryptoError::Unsealable)?;
    let nonce: [u8; 12] = rand::random();
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unsealable)?;
    Ok((nonce.to_vec(), sealed))
}

pub fn open(
    data_key: &[u8],
    aad: &[u8],
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if nonce.len() != 12 {
        return Err(CryptoError::Unsealable);
    }
    let cipher = Aes256Gcm::new_from_slice(data_key).map_err(|_| CryptoError::Unsealable)?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .map_err(|_| CryptoError::Unsealable)
}

/// The additional data and KMS encryption context of a subject's sealed fields.
pub fn sealing_context(tenant: &TenantId, subject: &SubjectId) -> Vec<u8> {
    format!("vigil/subject/v1\0{tenant}\0{}", subject.as_str()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_depend_on_secret_tenant_and_user() {
        let a = SubjectLookup::new([1; 32]);
        let b = SubjectLookup::new([2; 32]);
        let t1 = TenantId::parse("t1").expect("tenant");
        let t2 = TenantId::parse("t2").expect("tenant");
        let key = a.lookup_key(&t1, "u-42");
        assert_eq!(key.len(), 67);
        assert_eq!(lookup_version(&key), Some(1));
        assert_eq!(key, a.lookup_key(&t1, "u-42"));
        assert_ne!(key, b.lookup_key(&t1, "u-42"));
        assert_ne!(key, a.lookup_key(&t2, "u-42"));
        assert_ne!(key, a.lookup_key(&t1, "u-43"));
        assert!(!format!("{a:?}").contains("[1"));
    }

    #[test]
    fn a_rotation_reads_both_versions() {
        let t1 = TenantId::parse("t1").expect("tenant");
        let old = SubjectLookup::new([1; 32]);
        let rotating = SubjectLookup::versioned(2, [2; 32], Some((1, [1; 32])));
        let keys = rotating.lookup_keys(&t1, "u-42");
        assert_eq!(
            keys.previous.as_deref(),
            Some(old.lookup_key(&t1, "u-42").as_str())
        );
        assert_eq!(lookup_version(&keys.current), Some(2));
        assert_ne!(keys.current, old.lookup_key(&t1, "u-42"));
        assert_eq!(old.lookup_keys(&t1, "u-42").previous, None);
    }

    #[test]
    fn sealed_fields_open_only_with_their_key_and_context() {
        let key = [9u8; 32];
        let (nonce, sealed) = seal(&key, b"t1/s1", b"ada@example.com").expect("seal");
        assert!(!sealed.windows(3).any(|w| w == b"ada"));
        assert_eq!(
            open(&key, b"t1/s1", &nonce, &sealed).expect("open"),
            b"ada@example.com"
        );
        assert!(open(&key, b"t1/s2", &nonce, &sealed).is_err());
        assert!(open(&[8u8; 32], b"t1/s1", &nonce, &sealed).is_err());
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(open(&key, b"t1/s1", &nonce, &altered).is_err());
    }
}
