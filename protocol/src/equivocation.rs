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

    /// Checks the proof with its two entries and the key logs entries of
    /// format version 2 are read against (SPEC.md §14.2): each such entry
    /// is signed by a key its author's log certifies in the prefix it
    /// cites (V20 to V24). Without that, anyone could sign two entries
    /// naming an author with a key of their own and "prove" that the
    /// author equivocated. A proof of format version 1 entries needs no
    /// log.
    pub fn check_keyed(
        &self,
        keys: &dyn crate::keylog::KeyLogs,
    ) -> Result<Equivocation, ProofError> {
        let (eq, entries) = self.check_entries()?;
        for (index, e) in entries.iter().enumerate() {
            if let Some(cited) = e.payload().keys {
                crate::validate::check_key(e, cited, keys).map_err(|kind| {
                    ProofError::InvalidEntry {
                        index,
                        reason: crate::error::Rejection::new(Some(e.id()), kind).to_string(),
                    }
                })?;
            }
        }
        Ok(eq)
    }

    /// Checks the proof with nothing but its two entries: enough for
    /// entries of format version 1, signed by the author's agency key.
    /// Entries of format version 2 also need the author's key log
    /// ([`EquivocationProof::check_keyed`]); without it a proof of them
    /// is refused, since its signatures say nothing of the author.
    pub fn check(&self) -> Result<Equivocation, ProofError> {
        self.check_keyed(&crate::keylog::NoKeyLogs)
    }

    /// What the proof claims, its entries decoded and their signatures
    /// checked against their kids, but not who holds those keys: for a
    /// proof already admitted with [`EquivocationProof::check_keyed`].
    pub fn claims(&self) -> Result<Equivocation, ProofError> {
        self.check_entries().map(|(eq, _)| eq)
    }

    /// Steps 2 (without the key logs) to 6: what the proof claims, and its
    /// two entries, decoded once.
    fn check_entries(&self) -> Result<(Equivocation, [Entry; 2]), ProofError> {
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
        let eq = Equivocation {
            case: a.case_id(),
            author: a.author(),
            seq: a.seq(),
        };
        Ok((eq, [a, b]))
    }
}

/// At most this many proofs are kept per case and author (SPEC.md §9.11).
/// One proof already shows that the author forked its history; the bound
/// keeps a member that forks every position it writes (or a peer that
/// sends such proofs) from growing other nodes' stores without limit.
pub const MAX_PROOFS_PER_AUTHOR: usize = 16;

/// Why a node does not take a proof a peer sent it (SPEC.md §9.11). None
/// of these is a protocol error: the proof is dropped and logged, and the
/// connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofRefusal {
    /// The node does not hold the case (it reveals nothing by saying so:
    /// the refusal is not sent back).
    #[error("unknown-case: this node does not hold the case")]
    UnknownCase,
    /// The sending peer is not a member of the case here.
    #[error("sender-not-member: the sending agency is not, and never was, a member of the case")]
    SenderNotMember,
    /// The proof does not check (SPEC.md §14.2).
    #[error("invalid-proof: {0}")]
    Invalid(ProofError),
    /// The proof is about another case than the message names.
    #[error("wrong-case: the proof's entries belong to another case")]
    WrongCase,
    /// The author of the two entries was never a member of the case.
    #[error("author-not-member: the author of the two entries is not a member of the case")]
    AuthorNotMember,
    /// The node already holds [`MAX_PROOFS_PER_AUTHOR`] proofs about the
    /// author in this case.
    #[error("author-limit: {MAX_PROOFS_PER_AUTHOR} proofs about this author are already held")]
    AuthorLimit,
}

impl ProofRefusal {
    /// The refusal's class name, as logged.
    pub fn class(&self) -> &'static str {
        match self {
            ProofRefusal::UnknownCase => "unknown-case",
            ProofRefusal::SenderNotMember => "sender-not-member",
            ProofRefusal::Invalid(_) => "invalid-proof",
            ProofRefusal::WrongCase => "wrong-case",
            ProofRefusal::AuthorNotMember => "author-not-member",
            ProofRefusal::AuthorLimit => "author-limit",
        }
    }
}

/// Decides whether a node takes a proof that peer `sender` sent for
/// `case` (SPEC.md §9.11), given its validator of the case (None if it
/// does not hold it) and how many proofs it already holds about an author
/// of the case. The cheap checks come first, so a peer that may not send
/// proofs at all costs no signature verification.
pub fn admit_proof(
    case: &CaseId,
    proof: &EquivocationProof,
    sender: &AgencyId,
    validator: Option<&crate::Validator>,
    keys: &dyn crate::keylog::KeyLogs,
    held_about: impl Fn(&AgencyId) -> usize,
) -> Result<Equivocation, ProofRefusal> {
    let v = validator.ok_or(ProofRefusal::UnknownCase)?;
    // A member now or before: a removed member may be the only one that
    // holds both versions of a forked history (found by the federation
    // simulator), and a proof proves itself. Agencies that never were
    // members still cost no signature check.
    if !v.state().members.contains_key(sender) {
        return Err(ProofRefusal::SenderNotMember);
    }
    let eq = proof.check_keyed(keys).map_err(ProofRefusal::Invalid)?;
    if eq.case != *case {
        return Err(ProofRefusal::WrongCase);
    }
    if !v.state().members.contains_key(&eq.author) {
        return Err(ProofRefusal::AuthorNotMember);
    }
    if held_about(&eq.author) >= MAX_PROOFS_PER_AUTHOR {
        return Err(ProofRefusal::AuthorLimit);
    }
    Ok(eq)
}
