//! Active users without a list of users: a HyperLogLog sketch per rollup
//! (docs/decisions/0015).
//!
//! Each API user's pseudonym is hashed to 64 bits; the first 10 bits choose one
//! of 1,024 registers, the position of the first 1 bit in the rest is the rank.
//! A rollup stores the pairs it saw as one number each (`register * 64 + rank`)
//! in a DynamoDB number set, which ingestion extends with `ADD`: a set union, so
//! replaying an event changes nothing and no read is needed. Reading keeps the
//! highest rank per register and estimates the count (standard error
//! 1.04/sqrt(1024) = 3.25 %; exact-ish linear counting below 2,560 users).
//! Nothing in it names a person: a rank is a few bits of a hash of a pseudonym.

use sha2::{Digest, Sha256};

use super::ids::SubjectId;

/// log2 of the register count.
const PRECISION: u32 = 10;
pub const REGISTERS: usize = 1 << PRECISION;

/// The set element a subject adds to the sketch of every rollup it is active in.
pub fn element(subject: &SubjectId) -> u64 {
    let digest = Sha256::digest(subject.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let hash = u64::from_be_bytes(first);
    let register = hash >> (64 - PRECISION);
    // Rank of the remaining 54 bits: leading zeros + 1, at most 55.
    let rest = hash << PRECISION;
    let rank = u64::from(rest.leading_zeros().min(64 - PRECISION)) + 1;
    register * 64 + rank
}

/// A read sketch: the highest rank seen per register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveUsers {
    registers: Box<[u8; REGISTERS]>,
}

impl Default for ActiveUsers {
    fn default() -> Self {
        Self {
            registers: Box::new([0; REGISTERS]),
        }
    }
}

impl ActiveUsers {
    /// The sketch of stored elements (unknown ones are ignored, not trusted).
    pub fn from_elements(elements: impl IntoIterator<Item = u64>) -> Self {
        let mut sketch = Self::default();
        for element in elements {
            let (register, rank) = (element / 64, element % 64);
            if let (Some(slot), Ok(rank)) = (
                sketch.registers.get_mut(register as usize),
                u8::try_from(rank),
            ) {
                *slot = (*slot).max(rank);
            }
        }
        sketch
    }

    /// The union of two sketches (users active in either).
    pub fn merge(&mut self, other: &ActiveUsers) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            *mine = (*mine).max(*theirs);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|r| *r == 0)
    }

    /// The estimated number of distinct users.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        if zeros == REGISTERS {
            return 0;
        }
        let sum: f64 = self
            .registers
            .iter()
            .map(|r| 2f64.powi(-i32::from(*r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(range: std::ops::Range<u32>) -> ActiveUsers {
        ActiveUsers::from_elements(
            range.map(|i| element(&SubjectId::from_stored(format!("s{i:08}")))),
        )
    }

    #[test]
    fn small_counts_are_close_and_replays_change_nothing() {
        assert_eq!(ActiveUsers::default().estimate(), 0);
        assert_eq!(users(0..1).estimate(), 1);
        // Linear counting's standard error at 50 users is about 2.2 %: 3 of them is ±3.
        let fifty = users(0..50).estimate();
        assert!((47..=53).contains(&fifty), "50 users estimated {fifty}");
        let mut twice = users(0..50);
        twice.merge(&users(0..50));
        assert_eq!(twice.estimate(), fifty);
    }

    #[test]
    fn large_counts_stay_within_three_standard_errors() {
        for n in [5_000u32, 40_000] {
            let estimate = users(0..n).estimate() as f64;
            let error = (estimate - f64::from(n)).abs() / f64::from(n);
            assert!(error < 3.0 * 0.0325, "{n} users estimated {estimate}");
        }
    }

    #[test]
    fn a_union_counts_each_user_once() {
        let mut both = users(0..300);
        both.merge(&users(200..500));
        let estimate = both.estimate();
        assert!(
            (485..=515).contains(&estimate),
            "500 users estimated {estimate}"
        );
    }

    #[test]
    fn elements_fit_a_register_and_a_rank() {
        for i in 0..1000 {
            let e = element(&SubjectId::from_stored(format!("x{i}")));
            assert!((e / 64) < REGISTERS as u64 && (1..=55).contains(&(e % 64)));
        }
    }
}
