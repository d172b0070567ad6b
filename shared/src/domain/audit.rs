//! The tamper-evident audit trail: each tenant's entries form a SHA-256 hash chain.
//!
//! Entry n commits to entry n-1 (`prev_hash`, `prev_time`) and to its own fields,
//! so a changed entry no longer matches its hash, and a removed or re-ordered one
//! breaks the sequence or the link. Entries expire after a year; a chain may then
//! start after 1, which is accepted only if the entry before it was due to expire.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ids::TenantId;

pub use super::retention::AUDIT_RETENTION;
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller states it (pseudonymous ids only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// Key id of the caller, or `operator` for the CLI. Never a secret.
    pub actor: String,
    /// e.g. `key.issue`, `key.revoke`, `audit.read`.
    pub action: String,
    /// The account, subject or key concerned, when there is one.
    pub target: Option<String>,
    pub request_id: String,
    /// `ok`, `denied`, `not_found`, ...
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub request_id: String,
    pub outcome: String,
    pub prev_hash: String,
    /// Time of the previous entry (empty for the first): lets `verify` tell expiry from deletion.
    pub prev_time: String,
    pub hash: String,
}

/// The fields the hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    tenant: &'a str,
    seq: u64,
    time: String,
    actor: &'a str,
    action: &'a str,
    target: Option<&'a str>,
    request_id: &'a str,
    outcome: &'a str,
    prev_hash: &'a str,
    prev_time: &'a str,
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

impl AuditEntry {
    /// The entry that follows `previous` (None: the chain's first).
    pub fn next(
        tenant: &TenantId,
        previous: Option<&AuditEntry>,
        draft: AuditDraft,
        now: OffsetDateTime,
    ) -> Self {
        let (seq, prev_hash, prev_time) = match previous {
            Some(p) => (p.seq + 1, p.hash.clone(), rfc3339(p.time)),
            None => (1, GENESIS_HASH.to_owned(), String::new()),
        };
        let mut entry = Self {
            seq,
            time: now,
            actor: draft.actor,
            action: draft.action,
            target: draft.target,
            request_id: draft.request_id,
            outcome: draft.outcome,
            prev_hash,
            prev_time,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash(tenant);
        entry
    }

    pub fn compute_hash(&self, tenant: &TenantId) -> String {
        let hashed = Hashed {
            tenant: tenant.as_str(),
            seq: self.seq,
            time: rfc3339(self.time),
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            request_id: &self.request_id,
            outcome: &self.outcome,
            prev_hash: &self.prev_hash,
            prev_time: &self.prev_time,
        };
        let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainProblem {
    /// The entry's content does not match its hash: it was changed.
    Changed,
    /// Entries are missing just before this one.
    Missing,
    /// The entry does not commit to the entry stored before it (removed, swapped or re-ordered).
    BrokenLink,
    /// The entry is older than the one stored before it.
    OutOfOrder,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainFinding {
    pub seq: u64,
    pub problem: ChainProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub intact: bool,
    pub entries: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub findings: Vec<ChainFinding>,
}

/// Verifies a tenant's entries, given in stored (sequence) order.
pub fn verify_chain(tenant: &TenantId, entries: &[AuditEntry], now: OffsetDateTime) -> ChainReport {
    let mut findings = Vec::new();
    let mut previous: Option<&AuditEntry> = None;
    for entry in entries {
        let mut flag = |problem| {
            findings.push(ChainFinding {
                seq: entry.seq,
                problem,
            })
        };
        if entry.compute_hash(tenant) != entry.hash {
            flag(ChainProblem::Changed);
        }
        match previous {
            None => {
                let expired_before = OffsetDateTime::parse(&entry.prev_time, &Rfc3339)
                    .is_ok_and(|t| t + AUDIT_RETENTION <= now);
                let is_genesis = entry.seq == 1 && entry.prev_hash == GENESIS_HASH;
                if !is_genesis && !expired_before {
                    flag(ChainProblem::Missing);
                }
            }
            Some(p) => {
                if entry.seq != p.seq + 1 {
                    flag(ChainProblem::Missing);
                }
                if entry.prev_hash != p.hash || entry.prev_time != rfc3339(p.time) {
                    flag(ChainProblem::BrokenLink);
                }
                if entry.time < p.time {
                    flag(ChainProblem::OutOfOrder);
                }
            }
        }
        previous = Some(entry);
    }
    ChainReport {
        intact: findings.is_empty(),
        entries: entries.len(),
        first_seq: entries.first().map(|e| e.seq),
        last_seq: entries.last().map(|e| e.seq),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn chain(n: u64) -> (TenantId, Vec<AuditEntry>) {
        let tenant = TenantId::parse("t").expect("tenant");
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let draft = AuditDraft {
                actor: "k1".into(),
                action: "key.issue".into(),
                target: Some(format!("key-{i}")),
                request_id: format!("r{i}"),
                outcome: "ok".into(),
            };
            let at = datetime!(2026-11-01 10:00 UTC) + time::Duration::minutes(i as i64);
            let next = AuditEntry::next(&tenant, entries.last(), draft, at);
            entries.push(next);
        }
        (tenant, entries)
    }

    const NOW: OffsetDateTime = datetime!(2026-11-29 00:00 UTC);

    #[test]
    fn an_untouched_chain_is_intact() {
        let (tenant, entries) = chain(5);
        let report = verify_chain(&tenant, &entries, NOW);
        assert!(report.intact, "{report:?}");
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(5)));
    }

    #[test]
    fn changes_removals_and_swaps_are_found_where_they_are() {
        let (tenant, mut entries) = chain(6);
        entries[1].outcome = "denied".into();
        let report = verify_chain(&tenant, &entries, NOW);
        assert_eq!(
            report.findings,
            [ChainFinding {
                seq: 2,
                problem: ChainProblem::Changed
            }]
        );

        let (tenant, mut entries) = chain(6);
        entries.remove(3);
        let report = verify_chain(&tenant, &entries, NOW);
        let at: Vec<_> = report.findings.iter().map(|f| (f.seq, f.problem)).collect();
        assert_eq!(
            at,
            [(5, ChainProblem::Missing), (5, ChainProblem::BrokenLink)]
        );

        let (tenant, mut entries) = chain(3);
        entries.remove(0);
        assert_eq!(
            verify_chain(&tenant, &entries, NOW).findings[0],
            ChainFinding {
                seq: 2,
                problem: ChainProblem::Missing
            }
        );
        // ...but a head that expired is fine.
        assert!(verify_chain(&tenant, &entries, NOW + AUDIT_RETENTION).intact);
    }
}
