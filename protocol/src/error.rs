//! Why an entry was refused: one variant per numbered rule of SPEC.md §8.

use std::fmt;

use crate::equivocation::EquivocationProof;
use crate::ids::{AgencyId, CaseId, EntryId};

/// An entry was refused. Names the entry (the SHA-256 of the bytes offered,
/// which is known even for garbage) and the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Id of the offered bytes (SHA-256), when bytes were offered.
    pub entry: Option<EntryId>,
    /// The rule that failed, with details.
    pub kind: RejectKind,
}

impl Rejection {
    pub(crate) fn new(entry: Option<EntryId>, kind: RejectKind) -> Self {
        Rejection { entry, kind }
    }

    /// The spec's rule number (V1..V24).
    pub fn rule(&self) -> u8 {
        self.kind.rule()
    }

    /// The spec's error class name, as used in the test vectors.
    pub fn class(&self) -> &'static str {
        self.kind.class()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(id) => write!(f, "entry {}: ", id)?,
            None => f.write_str("entry: ")?,
        }
        write!(f, "rule V{} ({}): {}", self.rule(), self.class(), self.kind)
    }
}

impl std::error::Error for Rejection {}

/// The rule an entry broke. Each variant is one numbered rule of the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectKind {
    /// V1: the entry is larger than [`crate::MAX_ENTRY_SIZE`].
    #[error("the entry is {size} bytes, over the limit of 65536")]
    Oversize {
        /// Its size.
        size: usize,
    },
    /// V2: not a well-formed tagged COSE_Sign1 of the expected shape.
    #[error("not a well-formed COSE_Sign1 entry: {0}")]
    Malformed(String),
    /// V3: not deterministic CBOR.
    #[error("the {0} is not deterministic CBOR (RFC 8949 §4.2.1)")]
    NonCanonical(&'static str),
    /// V4: the protected header is not exactly alg EdDSA, content type, kid.
    #[error("protected header: {0}")]
    BadHeader(String),
    /// V5: a payload format version this implementation does not know.
    #[error("payload format version {0} is not supported (this implementation knows 1 and 2)")]
    UnsupportedVersion(u64),
    /// V6: the payload does not match the schema.
    #[error("payload schema: {0}")]
    Schema(String),
    /// V7: the payload's author is not the key in the header.
    #[error("the payload names author {payload} but the header's kid is {kid}")]
    AuthorMismatch {
        /// Author in the payload.
        payload: AgencyId,
        /// kid in the protected header.
        kid: AgencyId,
    },
    /// V8: the signature does not verify under the kid.
    #[error("the Ed25519 signature does not verify under the key in the header")]
    BadSignature,
    /// V9: the entry belongs to another case, or is a genesis where none fits.
    #[error("wrong case: {0}")]
    WrongCase(String),
    /// V10: another entry with the same (case, author, sequence) exists.
    #[error("the author signed two different entries at sequence {seq}")]
    Equivocation {
        /// The sequence number.
        seq: u64,
        /// The entry already held at that position, when there is one (a
        /// store can build the proof from its bytes).
        existing: Option<EntryId>,
        /// The proof, when both entries are at hand (a withheld position
        /// contradicted by a relay gives no signed proof).
        proof: Option<Box<EquivocationProof>>,
    },
    /// V11: the sequence number is not the next one of its author.
    #[error("sequence {found} does not follow: expected {expected}")]
    SequenceGap {
        /// The next expected.
        expected: u64,
        /// What the entry says.
        found: u64,
    },
    /// V12: `prev` is not the author's previous entry.
    #[error("prev does not name the author's entry at sequence {}", .seq.saturating_sub(1))]
    PrevMismatch {
        /// The entry's sequence number.
        seq: u64,
    },
    /// V13: a reference names an entry that is not known, or not of another author.
    #[error("reference to {id}: {why}")]
    UnknownReference {
        /// The referenced id.
        id: EntryId,
        /// What is wrong with it.
        why: &'static str,
    },
    /// V14: the author is not a member in the entry's causal past.
    #[error("the author {0} is not a member of the case in the entry's causal past")]
    NotAMember(AgencyId),
    /// V15: the author's role does not permit this entry.
    #[error("not authorised: {0}")]
    NotAuthorized(String),
    /// V16: the custody rules forbid this event.
    #[error("custody: {0}")]
    CustodyViolation(String),
    /// V17: the entry claims a time before a causal predecessor's.
    #[error("time {time} ms is more than 5 minutes before its predecessor {predecessor} ({predecessor_time} ms)")]
    TimeViolation {
        /// The entry's time.
        time: u64,
        /// The predecessor.
        predecessor: EntryId,
        /// Its time.
        predecessor_time: u64,
    },
    /// V18: the entry claims a time too far ahead of the receiver's clock.
    /// Transient: may be accepted later.
    #[error("time {time} ms is more than 5 minutes ahead of this node's clock ({now} ms)")]
    FromTheFuture {
        /// The entry's time.
        time: u64,
        /// The receiver's clock.
        now: u64,
    },
    /// V19: the entry's format version is not its case's (the genesis's).
    #[error("format version {entry} in a case of format version {case} (every entry of a case has its genesis's version)")]
    VersionMismatch {
        /// The case's version.
        case: u64,
        /// The entry's.
        entry: u64,
    },
    /// V20: the entry was made under more of its author's key log than
    /// this node holds. Out of order: the statements come by sync.
    #[error("made under the first {need} statements of the key log of agency {agency}, of which {held} are held here")]
    KeyLogPending {
        /// The author.
        agency: AgencyId,
        /// The prefix the entry cites.
        need: u64,
        /// How many statements are held.
        held: u64,
    },
    /// V21: the kid is not a key the author's log certified in the
    /// prefix the entry cites.
    #[error("signed by key {key}, which the first {keys} statements of its agency's key log do not certify ({why})")]
    UncertifiedKey {
        /// The signing key.
        key: AgencyId,
        /// The cited prefix.
        keys: u64,
        /// What the key is there (unknown, a root).
        why: &'static str,
    },
    /// V22: the kid was revoked in the cited prefix, or the receiver's log
    /// revokes it with an effective time at or before the entry's time.
    #[error("signed by a key revoked ({reason}) by statement #{revoked_at} of its agency's key log, effective {effective} ms; the entry is dated {time} ms")]
    RevokedKey {
        /// The revoking statement's position.
        revoked_at: u64,
        /// Its reason.
        reason: &'static str,
        /// Its effective time.
        effective: u64,
        /// The entry's time.
        time: u64,
    },
    /// V23: the key's role does not sign this kind of body (witnesses are
    /// signed by node keys, everything else by officer keys).
    #[error("a {role} key cannot sign a {body} entry ({want} keys do)")]
    KeyRole {
        /// The key's role.
        role: &'static str,
        /// The body's kind.
        body: &'static str,
        /// The role that signs it.
        want: &'static str,
    },
    /// V24: the entry's time is outside the key's validity.
    #[error("dated {time} ms, outside its key's validity ({valid})")]
    KeyValidity {
        /// The entry's time.
        time: u64,
        /// The validity, as text.
        valid: String,
    },
    /// Not a rule of the spec (reported as V0): this implementation holds
    /// at most 2^32 − 2 entries of one case (it keeps positions as 32-bit
    /// numbers to stay small); the entry itself may be valid.
    #[error("the case already holds {held} entries, the most this implementation keeps")]
    TooManyEntries {
        /// Entries (and withheld positions) held.
        held: u64,
    },
    /// Not a rule of the spec (reported as V0): a validator that keeps its
    /// older records out of memory could not read one back, so it cannot
    /// judge this entry or any after it; the entry itself may be valid.
    /// Transient: offered again, it is judged once the records can be read.
    #[error("this implementation could not read back what it keeps of the case: {0}")]
    RecordsUnavailable(String),
}

impl RejectKind {
    /// The spec's rule number.
    pub fn rule(&self) -> u8 {
        match self {
            RejectKind::Oversize { .. } => 1,
            RejectKind::Malformed(_) => 2,
            RejectKind::NonCanonical(_) => 3,
            RejectKind::BadHeader(_) => 4,
            RejectKind::UnsupportedVersion(_) => 5,
            RejectKind::Schema(_) => 6,
            RejectKind::AuthorMismatch { .. } => 7,
            RejectKind::BadSignature => 8,
            RejectKind::WrongCase(_) => 9,
            RejectKind::Equivocation { .. } => 10,
            RejectKind::SequenceGap { .. } => 11,
            RejectKind::PrevMismatch { .. } => 12,
            RejectKind::UnknownReference { .. } => 13,
            RejectKind::NotAMember(_) => 14,
            RejectKind::NotAuthorized(_) => 15,
            RejectKind::CustodyViolation(_) => 16,
            RejectKind::TimeViolation { .. } => 17,
            RejectKind::FromTheFuture { .. } => 18,
            RejectKind::VersionMismatch { .. } => 19,
            RejectKind::KeyLogPending { .. } => 20,
            RejectKind::UncertifiedKey { .. } => 21,
            RejectKind::RevokedKey { .. } => 22,
            RejectKind::KeyRole { .. } => 23,
            RejectKind::KeyValidity { .. } => 24,
            RejectKind::TooManyEntries { .. } | RejectKind::RecordsUnavailable(_) => 0,
        }
    }

    /// The spec's class name.
    pub fn class(&self) -> &'static str {
        match self {
            RejectKind::Oversize { .. } => "oversize",
            RejectKind::Malformed(_) => "malformed",
            RejectKind::NonCanonical(_) => "non-canonical",
            RejectKind::BadHeader(_) => "bad-header",
            RejectKind::UnsupportedVersion(_) => "unsupported-version",
            RejectKind::Schema(_) => "schema",
            RejectKind::AuthorMismatch { .. } => "author-mismatch",
            RejectKind::BadSignature => "bad-signature",
            RejectKind::WrongCase(_) => "wrong-case",
            RejectKind::Equivocation { .. } => "equivocation",
            RejectKind::SequenceGap { .. } => "sequence-gap",
            RejectKind::PrevMismatch { .. } => "prev-mismatch",
            RejectKind::UnknownReference { .. } => "unknown-reference",
            RejectKind::NotAMember(_) => "not-a-member",
            RejectKind::NotAuthorized(_) => "not-authorized",
            RejectKind::CustodyViolation(_) => "custody-violation",
            RejectKind::TimeViolation { .. } => "time-violation",
            RejectKind::FromTheFuture { .. } => "from-the-future",
            RejectKind::VersionMismatch { .. } => "version-mismatch",
            RejectKind::KeyLogPending { .. } => "key-log-pending",
            RejectKind::UncertifiedKey { .. } => "uncertified-key",
            RejectKind::RevokedKey { .. } => "revoked-key",
            RejectKind::KeyRole { .. } => "key-role",
            RejectKind::KeyValidity { .. } => "key-validity",
            RejectKind::TooManyEntries { .. } => "too-many-entries",
            RejectKind::RecordsUnavailable(_) => "records-unavailable",
        }
    }

    /// What a receiver does with an entry refused for this rule: its
    /// class in SPEC.md §8.6.
    ///
    /// V12 and V15 are out of order in §8.6 when they are caused by a
    /// withheld marker (an uncorroborated position, a target held only as
    /// a marker); the kind alone does not say so, and this implementation
    /// classes them permanent. It holds no refused entry in any class, and
    /// a refused position is offered again by sync either way (§9.8).
    pub fn receiver_class(&self) -> ReceiverClass {
        match self {
            RejectKind::Equivocation { .. } => ReceiverClass::Equivocation,
            RejectKind::SequenceGap { .. }
            | RejectKind::UnknownReference { .. }
            | RejectKind::KeyLogPending { .. } => ReceiverClass::OutOfOrder,
            RejectKind::FromTheFuture { .. } | RejectKind::RecordsUnavailable(_) => {
                ReceiverClass::Transient
            }
            _ => ReceiverClass::Permanent,
        }
    }

    /// Whether the same entry may be accepted later without change
    /// (out of order, or ahead of this node's clock).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.receiver_class(),
            ReceiverClass::OutOfOrder | ReceiverClass::Transient
        )
    }
}

/// What a receiver does with a refused entry (SPEC.md §8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiverClass {
    /// Refuse and log; never store, never forward; may count against the
    /// sending peer.
    Permanent,
    /// Something it depends on is missing: refuse without penalty and
    /// obtain it again later.
    OutOfOrder,
    /// A second entry at a held position: keep the first, store and
    /// forward the proof, tell the operator.
    Equivocation,
    /// Dated ahead of this node's clock: refuse without penalty and
    /// obtain it again once its time has come.
    Transient,
}

impl ReceiverClass {
    /// The class's name in SPEC.md §8.6.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverClass::Permanent => "permanent",
            ReceiverClass::OutOfOrder => "out of order",
            ReceiverClass::Equivocation => "equivocation",
            ReceiverClass::Transient => "transient",
        }
    }
}

/// A case id mismatch, formatted for [`RejectKind::WrongCase`].
pub(crate) fn wrong_case(expected: &CaseId, found: Option<&CaseId>) -> RejectKind {
    match found {
        Some(f) => RejectKind::WrongCase(format!("the entry belongs to case {f}, not {expected}")),
        None => RejectKind::WrongCase(format!(
            "a second genesis entry cannot join case {expected}"
        )),
    }
}
