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

/// `lookup` is the hex HMAC of the user id (see `crypto::SubjectLookup`), never the id itself.
pub fn subject_pk(tenant: &TenantId, lookup: &str) -> String {
    format!("T#{tenant}#U#{lookup}")
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
    }
}
