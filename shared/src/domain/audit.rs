//! The tamper-evident audit trail: each tenant's entries form a SHA-256 hash chain.
//!
//! Entry n commits to entry n-1 (`prev_hash`, `prev_time`) and to every stored
//! attribute of its own (its expiry included), so a changed entry no longer
//! matches its hash, and a removed or re-ordered one breaks the sequence or the
//! link. Entries expire after a year; a chain may then start after 1, which is
//! accepted only if the entry before it was due to expire.
//!
//! Whoever can write the table could still rewrite a suffix of the chain with
//! recomputed hashes, or delete its newest entries. Against that, the chain head
//! is anchored (`Anchor`) where no function role can rewrite it (an S3 bucket under
//! Object Lock in compliance mode, written by its own function): `verify_anchored`
//! checks the chain against every anchor, from the last verified one
//! (docs/decisions/0013).

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
    /// Epoch seconds when the entry expires (the table's TTL attribute).
    pub expires_at: Option<i64>,
    pub hash: String,
    /// The stored item had attributes the hash does not cover (added after the fact).
    #[serde(skip)]
    pub foreign_attributes: bool,
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
    expires_at: Option<i64>,
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
            expires_at: super::retention::expires_at(
                super::retention::StoredItem::AuditEntry,
                now,
                super::retention::RawEventRetention::default(),
            )
            .map(OffsetDateTime::unix_timestamp),
            hash: String::new(),
            foreign_attributes: false,
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
            expires_at: self.expires_at,
        };
        let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
    /// The entry differs from what was anchored at this sequence: the chain was
    /// rewritten (hashes recomputed) up to here or beyond.
    AnchorMismatch,
    /// An entry up to this sequence was anchored but the chain now ends before it:
    /// its newest entries were removed.
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainFinding {
    pub seq: u64,
    pub problem: ChainProblem,
}

/// A chain head as it was anchored: sequence, hash, and when (the anchor store's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub anchored_at: OffsetDateTime,
}

impl Anchor {
    pub fn of(entry: &AuditEntry, now: OffsetDateTime) -> Self {
        Self {
            seq: entry.seq,
            hash: entry.hash.clone(),
            anchored_at: now,
        }
    }

    /// The anchored entry has expired by now (anchored at most a few minutes after it).
    fn expired(&self, now: OffsetDateTime) -> bool {
        self.anchored_at + AUDIT_RETENTION <= now
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// From the last verified anchor: the cost follows what was appended since.
    Incremental,
    /// From the first live entry, against every anchor.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub intact: bool,
    pub mode: VerifyMode,
    /// Entries read by this verification.
    pub entries: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The anchored sequence this verification started from (None: the chain's start).
    pub verified_from: Option<u64>,
    /// The newest anchor of the chain.
    pub anchor: Option<Anchor>,
    pub findings: Vec<ChainFinding>,
}

impl ChainReport {
    /// The newest anchor this report proved the chain matches: the next
    /// incremental verification may start there.
    pub fn verified_anchor(&self, anchors: &[Anchor]) -> Option<Anchor> {
        if !self.intact {
            return None;
        }
        let last = self.last_seq?;
        anchors
            .iter()
            .filter(|a| a.seq <= last)
            .max_by_key(|a| a.seq)
            .cloned()
    }
}

/// Verifies a tenant's whole chain, given in stored (sequence) order, without anchors.
pub fn verify_chain(tenant: &TenantId, entries: &[AuditEntry], now: OffsetDateTime) -> ChainReport {
    verify_anchored(tenant, entries, None, &[], VerifyMode::Full, now)
}

/// Verifies `entries` (stored order) against `anchors` (any order).
///
/// With `start`, `entries` begin at the anchored sequence `start.seq` (an
/// earlier verification proved everything before it); the first entry must be
/// the anchored one. Every other anchor must match the entry at its sequence,
/// and none may lie beyond the chain's end.
pub fn verify_anchored(
    tenant: &TenantId,
    entries: &[AuditEntry],
    start: Option<&Anchor>,
    anchors: &[Anchor],
    mode: VerifyMode,
    now: OffsetDateTime,
) -> ChainReport {
    let mut findings = Vec::new();
    let mut previous: Option<&AuditEntry> = None;
    for entry in entries {
        let mut flag = |problem| {
            findings.push(ChainFinding {
                seq: entry.seq,
                problem,
            })
        };
        if entry.foreign_attributes || entry.compute_hash(tenant) != entry.hash {
            flag(ChainProblem::Changed);
        }
        match previous {
            None => {
                let expired_before = OffsetDateTime::parse(&entry.prev_time, &Rfc3339)
                    .is_ok_and(|t| t + AUDIT_RETENTION <= now);
                let is_genesis = entry.seq == 1 && entry.prev_hash == GENESIS_HASH;
                // Where an earlier verification stopped, its anchor vouches for the link.
                let is_start = start.is_some_and(|a| a.seq == entry.seq);
                if !is_genesis && !expired_before && !is_start {
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
    let first_seq = entries.first().map(|e| e.seq);
    let last_seq = entries.last().map(|e| e.seq);
    for anchor in start.into_iter().chain(anchors) {
        let at = entries.binary_search_by_key(&anchor.seq, |e| e.seq);
        let problem = match at {
            Ok(i) if entries[i].hash != anchor.hash => Some(ChainProblem::AnchorMismatch),
            Ok(_) => None,
            // Past the end: the newest entries are gone (unless they all expired).
            Err(_) if last_seq.is_none_or(|last| anchor.seq > last) => {
                (!anchor.expired(now)).then_some(ChainProblem::Truncated)
            }
            // Before the first live entry: expired with it, or reported as missing.
            Err(_) if first_seq.is_some_and(|first| anchor.seq < first) => None,
            // Inside the chain: the gap is already reported where it is.
            Err(_) => None,
        };
        if let Some(problem) = problem {
            findings.push(ChainFinding {
                seq: anchor.seq,
                problem,
            });
        }
    }
    findings.sort_by_key(|f| (f.seq, f.problem));
    findings.dedup();
    ChainReport {
        intact: findings.is_empty(),
        mode,
        entries: entries.len(),
        first_seq,
        last_seq,
        verified_from: start.map(|a| a.seq),
        anchor: start
            .into_iter()
            .chain(anchors)
            .max_by_key(|a| (a.seq, a.anchored_at))
            .cloned(),
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
