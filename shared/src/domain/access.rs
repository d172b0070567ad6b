//! Tenants' API keys and their scopes.
//!
//! A key reads `vk_<tenant>_<key id>_<secret>`: the prefix makes it recognisable
//! (secret scanners, logs), the tenant and key id find its record in one read, and
//! the secret (256 random bits) is stored only as its SHA-256 and compared in
//! constant time. Tenant ids may contain `_`, so a key is parsed from the right.

use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::ids::TenantId;

pub const KEY_PREFIX: &str = "vk_";
const KEY_ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Dashboard and alerts.
    Read,
    /// Data subject requests and the register of processing.
    Privacy,
    /// Keys, settings and the audit trail.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Privacy, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Privacy => "privacy",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// `"ingest read"` (space-separated, as the authorizer passes them on).
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses a space- or comma-separated list; None if any item is unknown.
    pub fn parse_list(value: &str) -> Option<Vec<Scope>> {
        let mut scopes: Vec<Scope> = value
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect::<Option<_>>()?;
        scopes.sort();
        scopes.dedup();
        Some(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as presented in `Authorization: Bearer ...`. Its Debug hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub tenant: TenantId,
    pub key_id: String,
    secret: String,
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedKey({}/{})", self.tenant, self.key_id)
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PresentedKey {
    /// Parses `vk_<tenant>_<key id>_<secret>`; None for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.strip_prefix(KEY_PREFIX)?;
        let mut parts = rest.rsplitn(3, '_');
        let secret = parts.next()?;
        let key_id = parts.next()?;
        let tenant = TenantId::parse(parts.next()?).ok()?;
        if !is_lower_hex(secret, SECRET_HEX) || !is_lower_hex(key_id, KEY_ID_HEX) {
            return None;
        }
        Some(Self {
            tenant,
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// From an `Authorization` header value: `Bearer <key>`.
    pub fn from_authorization(header: &str) -> Option<Self> {
        let (scheme, key) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        Self::parse(key.trim())
    }

    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equal-length comparison whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key's stored record: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub tenant: TenantId,
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub secret_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// `yyyy-mm-ddThh` of the last use, written at most once an hour.
    pub last_used_hour: Option<String>,
    /// The key id that issued it, or `operator:<identity>` (None: issued before this was kept).
    pub issued_by: Option<String>,
    /// Its tenant is suspended (read with the key, from the tenant's record).
    pub tenant_suspended: bool,
}

/// Why a key is refused. Only logs see this; clients get one generic answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDenial {
    Malformed,
    Unknown,
    WrongSecret,
    Revoked,
    Expired,
    TenantSuspended,
}

impl KeyDenial {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDenial::Malformed => "malformed",
            KeyDenial::Unknown => "unknown",
            KeyDenial::WrongSecret => "wrong_secret",
            KeyDenial::Revoked => "revoked",
            KeyDenial::Expired => "expired",
            KeyDenial::TenantSuspended => "tenant_suspended",
        }
    }
}

impl KeyRecord {
    /// Checks a presented key against this record at `now`.
    pub fn verify(&self, presented: &PresentedKey, now: OffsetDateTime) -> Result<(), KeyDenial> {
        if !constant_time_eq(
            presented.secret_hash().as_bytes(),
            self.secret_hash.as_bytes(),
        ) {
            return Err(KeyDenial::WrongSecret);
        }
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(KeyDenial::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyDenial::Expired);
        }
        if self.tenant_suspended {
            return Err(KeyDenial::TenantSuspended);
        }
        Ok(())
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none_or(|at| at > now) && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A freshly generated key: `secret` is shown once and never stored.
pub struct IssuedKey {
    pub secret: String,
    pub record: KeyRecord,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuedKey({:?})", self.record.key_id)
    }
}

impl IssuedKey {
    pub fn generate(
        tenant: &TenantId,
        name: &str,
        scopes: Vec<Scope>,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        issued_by: &str,
    ) -> Self {
        let key_id = hex::encode(rand::random::<[u8; KEY_ID_HEX / 2]>());
        let secret = hex::encode(rand::random::<[u8; SECRET_HEX / 2]>());
        Self {
            secret: format!("{KEY_PREFIX}{tenant}_{key_id}_{secret}"),
            record: KeyRecord {
                tenant: tenant.clone(),
                key_id,
                name: name.to_owned(),
                scopes,
                secret_hash: hash_secret(&secret),
                created_at: now,
                expires_at,
                revoked_at: None,
                last_used_hour: None,
                issued_by: Some(issued_by.to_owned()),
                tenant_suspended: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("tenant")
    }

    #[test]
    fn an_issued_key_verifies_and_only_its_hash_is_kept() {
        let issued = IssuedKey::generate(
            &tenant("acme_corp"),
            "ci",
            vec![Scope::Ingest],
            NOW,
            None,
            "k0",
        );
        assert!(issued.secret.starts_with("vk_acme_corp_"));
        let presented = PresentedKey::parse(&issued.secret).expect("parses");
        assert_eq!(presented.tenant, tenant("acme_corp"));
        assert_eq!(presented.key_id, issued.record.key_id);
        assert_eq!(issued.record.verify(&presented, NOW), Ok(()));
        assert!(!issued
            .record
            .secret_hash
            .contains(&issued.secret[issued.secret.len() - 64..]));
        assert!(!format!("{presented:?} {issued:?}")
            .contains(&issued.secret[issued.secret.len() - 64..]));
    }

    #[test]
    fn wrong_revoked_and_expired_keys_are_denied() {
        let mut issued = IssuedKey::generate(
            &tenant("t"),
            "k",
            vec![Scope::Read],
            NOW,
            Some(NOW + time::Duration::hours(1)),
            "k0",
        );
        let mut forged = issued.secret.clone();
        forged.pop();
        forged.push(if issued.secret.ends_with('0') {
            '1'
        } else {
            '0'
        });
        let forged = PresentedKey::parse(&forged).expect("well-formed");
        assert_eq!(
            issued.record.verify(&forged, NOW),
            Err(KeyDenial::WrongSecret)
        );
        let presented = PresentedKey::parse(&issued.secret).expect("parses");
        assert_eq!(
            issued
                .record
                .verify(&presented, NOW + time::Duration::hours(2)),
            Err(KeyDenial::Expired)
        );
        issued.record.tenant_suspended = true;
        assert_eq!(
            issued.record.verify(&presented, NOW),
            Err(KeyDenial::TenantSuspended)
        );
        issued.record.revoked_at = Some(NOW);
        assert_eq!(
            issued.record.verify(&presented, NOW),
            Err(KeyDenial::Revoked)
        );
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "Bearer",
            "vk_",
            "vk_t_abc_def",
            "xx_t_0123456789abcdef_00",
            "vk__0123456789abcdef_0000",
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
        assert!(PresentedKey::from_authorization("Basic abc").is_none());
        assert_eq!(
            Scope::parse_list("read, ingest read"),
            Some(vec![Scope::Ingest, Scope::Read])
        );
        assert_eq!(Scope::parse_list("read,root"), None);
    }
}
