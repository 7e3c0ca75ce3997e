//! # custodia-protocol
//!
//! The sans-IO core of Custodia: agency identities, signed hash-chained
//! entries (COSE_Sign1 with Ed25519 over deterministic CBOR), validation of
//! a case's entries, equivocation proofs, and case state derivation.
//!
//! This crate does no I/O: no sockets, no files, no clock, no randomness, no
//! async runtime. Time comes in as an argument (`now_ms`), keys from seeds
//! the caller provides. That keeps every rule testable byte for byte and the
//! crate usable by anyone who wants to verify Custodia records — a court's
//! expert included — without running a node. `spec/SPEC.md` is the normative
//! text; the rule numbers in [`RejectKind`] are the spec's.
//!
//! Two pieces use threads, never the clock or a file: [`map_in_parallel`]
//! checks entries on every core, and the bundle verification engine
//! ([`bundle::engine`]) reads a caller's [`std::io::Read`] twice.
//!
//! What it is not: a storage engine or a network stack (see `custodia-node`).

mod body;
pub mod bundle;
mod codec;
mod cose;
mod entry;
mod equivocation;
mod error;
mod identity;
mod ids;
pub mod keylog;
mod packed;
mod parallel;
pub mod session;
pub mod signature;
mod state;
mod sync;
mod tlp;
pub mod transport;
mod validate;

pub use body::{
    Acquisition, Body, CaseOpened, CustodyAction, CustodyEvent, Digests, EvidenceRegistered,
    HandlingChanged, Head, MemberAdded, MemberRemoved, Note, Retracted, Role, Witness,
};
pub use codec::{CodecError, MAX_DEPTH};
pub use cose::{CoseError, CoseSign1};
pub use entry::{
    protected_header, protected_header_of, sig_structure, Entry, Payload, Unverified, CONTENT_TYPE,
    FORMAT_VERSION, FORMAT_VERSION_2, MAX_ENTRY_SIZE, MAX_RECIPIENTS, MAX_REFS, MAX_WITNESS_HEADS,
};
pub use equivocation::{
    admit_proof, Equivocation, EquivocationProof, ProofError, ProofRefusal, MAX_PROOFS_PER_AUTHOR,
};
pub use error::{ReceiverClass, RejectKind, Rejection};
pub use identity::{is_valid_agency_key, Identity};
pub use ids::{AgencyId, CaseId, EntryId, IdParseError, ItemId, KeyDigest, KeyId, StatementId};
pub use parallel::{map_in_parallel, PARALLEL_MIN};
pub use signature::{verify, verify_parts};
pub use state::{CaseState, Conflict, Item, Member, Transfer, WithheldPosition, WitnessRecord};
pub use sync::{
    Ack, Entries, EquivocationNotice, ErrorCode, ErrorMessage, Heads, Hello, Item as SyncItem,
    KeyHead, KeyHeads, KeyStatements, Message, Summary, SyncError, MAX_BATCH, MAX_FRAME, MAX_HEADS,
    MAX_KEY_BATCH, MAX_KEY_HEADS, MAX_UNACKED_BATCHES, SYNC_VERSIONS,
};
pub use tlp::Tlp;
pub use validate::{
    refuse_revoked, AfterRemoval, Applied, EntryMeta, MemorySpill, RecordSpill, SpillFile,
    Validator, DEFAULT_WINDOW, MAX_WINDOW, SKEW_MS,
};

pub mod utc;

/// Deterministic CBOR for the project's own structures (SPEC.md §4.2):
/// encode with [`cbor::to_vec`], decode strictly with [`cbor::from_slice`].
/// The whole project speaks CBOR through this module; no type of the
/// CBOR library it uses is part of this crate's API.
pub mod cbor {
    pub use crate::codec::{from_slice, to_vec, CodecError};
}
