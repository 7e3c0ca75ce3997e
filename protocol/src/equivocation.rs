//! Equivocation proofs: two entries one author signed for the same position.
//!
//! Anyone can check a proof with the two entries alone (SPEC.md §14): both
//! decode and verify (V1–V8), name the same case, author and sequence number,
//! and differ. Such a pair cannot be produced without the author's key, so it
//! is portable evidence that the author forked its history.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::entry::Entry;
use crate::ids::{AgencyId, CaseId};

/// Two conflicting entries by one author, ordered by entry id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationProof(
    #[serde(with = "serde_bytes")] pub Vec<u8>,
    #[serde(with = "serde_bytes")] pub Vec<u8>,
);

/// What a checked proof establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equivocation {
    /// The case.
    pub case: CaseId,
    /// The author who signed both.
    pub author: AgencyId,
    /// The position signed twice.
    pub seq: u64,
}

/// Why a proof does not prove anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The proof itself is not the CBOR the spec describes.
    #[error("not an equivocation proof: {0}")]
    Malformed(String),
    /// One of the entries is not a valid signed entry.
    #[error("entry {index} of the proof is invalid: {reason}")]
    InvalidEntry {
        /// 0 or 1.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The entries do not conflict (same entry, different author, case or seq,
    /// or not ordered by id).
    #[error("the entries do not conflict: {0}")]
    NoConflict(&'static str),
}

impl EquivocationProof {
    /// Builds a proof from two entries (in either order).
    pub fn new(a: &Entry, b: &Entry) -> Self {
        if a.id() <= b.id() {
            EquivocationProof(a.bytes().to_vec(), b.bytes().to_vec())
        } else {
            EquivocationProof(b.bytes().to_vec(), a.bytes().to_vec())
        }
    }

    /// Encodes the proof (CDDL `equivocation-proof`).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::to_vec(self)
    }

    /// Decodes a proof strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        codec::from_slice(bytes).map_err(|e| ProofError::Malformed(e.to_string()))
    }

    /// Checks the proof with nothing but its two entries.
    pub fn check(&self) -> Result<Equivocation, ProofError> {
        let decode = |index, bytes: &[u8]| {
            Entry::decode(bytes).map_err(|r| ProofError::InvalidEntry {
                index,
                reason: r.to_string(),
            })
        };
        let a = decode(0, &self.0)?;
        let b = decode(1, &self.1)?;
        if a.id() >= b.id() {
            return Err(ProofError::NoConflict(
                "the entries are identical or not in ascending id order",
            ));
        }
        if a.author() != b.author() {
            return Err(ProofError::NoConflict("different authors"));
        }
        if a.case_id() != b.case_id() {
            return Err(ProofError::NoConflict("different cases"));
        }
        if a.seq() != b.seq() {
            return Err(ProofError::NoConflict("different sequence numbers"));
        }
        Ok(Equivocation {
            case: a.case_id(),
            author: a.author(),
            seq: a.seq(),
        })
    }
}
