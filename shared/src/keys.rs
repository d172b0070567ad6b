//! The key schema: the one place that knows how DynamoDB keys are written.
//!
//! Every key starts with the tenant (`T#<tenant>#`), so no query built here can
//! reach another tenant's items. `#` cannot occur inside an id (see `domain::ids`).
//!
//! | table      | pk                         | sk                 | item                  |
//! |------------|----------------------------|--------------------|-----------------------|
//! | events     | `T#<tenant>#A#<account>`   | `E#<event id>`     | one event             |
//! | aggregates | `T#<tenant>#A#<account>`   | `H#<yyyy-mm-ddThh>`| one account-hour      |
//! | subjects   | `T#<tenant>#U#<lookup>`    | -                  | one data subject      |
//! | tenants    | `T#<tenant>`               | `TENANT`           | the tenant            |
//! | tenants    | `T#<tenant>`               | `KEY#<key id>`     | one API key           |
//! | audit      | `T#<tenant>#AUDIT`         | `S#<seq, 12 digits>`| one audit entry      |

use crate::domain::{AccountId, EventId, HourBucket, TenantId};

pub const PK: &str = "pk";
pub const SK: &str = "sk";

pub fn account_pk(tenant: &TenantId, account: &AccountId) -> String {
    format!("T#{tenant}#A#{account}")
}

pub fn event_sk(id: &EventId) -> String {
    format!("E#{id}")
}

pub fn aggregate_sk(hour: HourBucket) -> String {
    format!("H#{}", hour.label())
}

/// The hour label of an aggregate's sort key.
pub fn aggregate_hour(sk: &str) -> Option<&str> {
    sk.strip_prefix("H#")
}

/// `lookup` is the hex HMAC of the user id (see `crypto::SubjectLookup`), never the id itself.
pub fn subject_pk(tenant: &TenantId, lookup: &str) -> String {
    format!("T#{tenant}#U#{lookup}")
}

pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub const TENANT_SK: &str = "TENANT";
pub const KEY_SK_PREFIX: &str = "KEY#";

pub fn api_key_sk(key_id: &str) -> String {
    format!("{KEY_SK_PREFIX}{key_id}")
}

pub fn audit_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}#AUDIT")
}

/// Zero-padded so that entries sort by sequence.
pub fn audit_sk(seq: u64) -> String {
    format!("S#{seq:012}")
}

pub fn audit_seq(sk: &str) -> Option<u64> {
    sk.strip_prefix("S#")?.parse().ok()
}

/// The prefix every key of a tenant starts with.
pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("T#{tenant}#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_starts_with_the_tenant() {
        let tenant = TenantId::parse("t1").expect("tenant");
        let account = AccountId::parse("acme").expect("account");
        let prefix = tenant_prefix(&tenant);
        assert_eq!(account_pk(&tenant, &account), "T#t1#A#acme");
        assert!(account_pk(&tenant, &account).starts_with(&prefix));
        assert!(subject_pk(&tenant, "ab12").starts_with(&prefix));
        assert_eq!(event_sk(&EventId::parse("e-1").expect("id")), "E#e-1");
        assert!(audit_pk(&tenant).starts_with(&prefix));
        assert!(tenant_pk(&tenant).starts_with(&prefix[..prefix.len() - 1]));
        assert_eq!(audit_seq(&audit_sk(42)), Some(42));
        assert!(audit_sk(9) < audit_sk(10));
    }
}
