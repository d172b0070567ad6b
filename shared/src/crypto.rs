//! Pseudonymisation. A user id becomes an HMAC lookup key for its subject record;
//! the secret is derived from a KMS HMAC key at cold start (see `adapters::kms`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::domain::TenantId;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("KMS could not derive the subject lookup secret: {0}")]
    Kms(String),
    #[error("KMS returned a MAC of {0} bytes, expected 32")]
    BadMacLength(usize),
}

/// Turns (tenant, user id) into the hex lookup key of the subject record.
#[derive(Clone)]
pub struct SubjectLookup {
    secret: [u8; 32],
}

impl std::fmt::Debug for SubjectLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectLookup(<secret>)")
    }
}

impl SubjectLookup {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    pub fn lookup_key(&self, tenant: &TenantId, user: &str) -> String {
        // new_from_slice only fails for algorithms with a fixed key size; HMAC takes any.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(tenant.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(user.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
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
        assert_eq!(key.len(), 64);
        assert_eq!(key, a.lookup_key(&t1, "u-42"));
        assert_ne!(key, b.lookup_key(&t1, "u-42"));
        assert_ne!(key, a.lookup_key(&t2, "u-42"));
        assert_ne!(key, a.lookup_key(&t1, "u-43"));
        assert!(!format!("{a:?}").contains('1'));
    }
}
