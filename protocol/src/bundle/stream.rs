//! Reading a bundle from a stream (sans-IO): the caller pushes the file's
//! bytes in chunks of any size and takes out the elements of `entries` one
//! at a time, so a bundle of any size is read with a buffer the size of one
//! element (plus one chunk), never the whole file.
//!
//! The payload's last member, `exported-at`, is the replay's clock, and the
//! exporter's signature comes after the payload; neither is known before
//! the elements are. A verifier therefore reads the file twice:
//!
//! 1. a [`StreamDecoder::new`] pass checks the whole structure and returns
//!    the [`Summary`] (everything but the elements, and the signature);
//!    [`Bundle::decode`](super::Bundle::decode) is this pass over a file
//!    held in memory, so the two cannot disagree;
//! 2. a [`StreamDecoder::second_pass`] pass yields the elements for the
//!    replay and checks the exporter's signature (B1) over the bytes it
//!    reads, hashed as they go by; its [`Summary`] must equal the first
//!    one, else the file changed between the passes
//!    ([`BundleError::Changed`]).
//!
//! Errors do not depend on how the input is cut into chunks: the same
//! bytes give the same error at the same offset. An error inside the payload is held
//! until the end of the payload and the envelope after it (signature,
//! trailing bytes) have been read, so a truncated file is reported as
//! truncated wherever else it is damaged. Lengths are never trusted for
//! memory: a byte string is buffered only as its bytes arrive, an element
//! longer than an entry may be ([`MAX_ENTRY_SIZE`]) is hashed as it goes by
//! and reported as [`Streamed::Oversize`] (it fails V1) instead of being
//! buffered, and a protected header or signature of the wrong length is
//! skipped rather than buffered.

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::entry::MAX_ENTRY_SIZE;
use crate::equivocation::EquivocationProof;
use crate::error::{RejectKind, Rejection};
use crate::ids::{AgencyId, CaseId, EntryId, ItemId};
use crate::signature::Streaming;
use crate::state::WithheldPosition;

use super::{
    check_protected, describe_start, has_keys, read_agencies, read_element, read_items,
    BundleAgency, BundleError, Checked, Element, KeyLogs, BUNDLE_VERSION, BUNDLE_VERSION_1,
    BUNDLE_VERSION_3, KEYS,
};
use crate::codec::{ReadError, Reader, BYTES};
use crate::cose::sig_structure_prefix;

/// A protected header longer than this is not buffered: a bundle's is 73
/// bytes, so it cannot be one (the file is "not a Custodia bundle", or
/// truncated if it ends inside it).
const MAX_PROTECTED: u64 = 4096;

/// What a bundle holds besides its elements: everything a verifier needs
/// before and after the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    kid: AgencyId,
    /// 1, 2 or 3 (a byte: the summary travels in [`Streamed::End`]).
    version: u8,
    case: CaseId,
    /// The key logs of a version 2 or 3 bundle (None for version 1); boxed,
    /// so the summary stays small.
    keys: Option<Box<KeysRead>>,
    items: Option<Vec<ItemId>>,
    proofs: Vec<EquivocationProof>,
    entry_count: usize,
    agencies: Vec<BundleAgency>,
    exporter: AgencyId,
    exported_at: u64,
    signature: [u8; 64],
    signature_valid: Option<bool>,
}

impl Summary {
    /// A copy without the key logs themselves (their digest kept): what a
    /// second pass compares its reading with.
    fn clone_without_key_logs(&self) -> Summary {
        Summary {
            keys: self.keys.as_ref().map(|k| {
                Box::new(KeysRead {
                    logs: None,
                    digest: k.digest,
                })
            }),
            items: self.items.clone(),
            proofs: self.proofs.clone(),
            agencies: self.agencies.clone(),
            ..*self
        }
    }

    /// The case id the bundle says it holds.
    pub fn case(&self) -> CaseId {
        self.case
    }

    /// The agency named as exporter in the payload.
    pub fn exporter(&self) -> AgencyId {
        self.exporter
    }

    /// The key that signed the bundle (the protected header's kid).
    pub fn signer(&self) -> AgencyId {
        self.kid
    }

    /// When the bundle was exported (ms since the Unix epoch).
    pub fn exported_at(&self) -> u64 {
        self.exported_at
    }

    /// The agencies the bundle lists.
    pub fn agencies(&self) -> &[BundleAgency] {
        &self.agencies
    }

    /// The items a selective export covers; None for a whole case.
    pub fn items(&self) -> Option<&[ItemId]> {
        self.items.as_deref()
    }

    /// Number of elements in `entries`.
    pub fn len(&self) -> usize {
        self.entry_count
    }

    /// The bundle format version (1, 2 or 3).
    pub fn version(&self) -> u64 {
        u64::from(self.version)
    }

    /// The key logs of a version 2 or 3 bundle, in order, each as its
    /// statements' exact bytes; None for version 1, and after a
    /// [`StreamDecoder::first_pass`] (which checks their structure only).
    pub fn key_logs(&self) -> Option<&KeyLogs> {
        self.keys.as_ref().and_then(|k| k.logs.as_ref())
    }

    /// Whether `entries` is empty (never, for a bundle read to its end).
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// The equivocation proofs, in order.
    pub fn proofs(&self) -> &[EquivocationProof] {
        &self.proofs
    }

    /// Whether the exporter's signature verifies over the bytes read: known
    /// after a [`StreamDecoder::second_pass`], None after a first pass.
    pub fn signature_valid(&self) -> Option<bool> {
        self.signature_valid
    }

    /// The exporter's signature, as read.
    pub(super) fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Equal but for what only the second pass knows.
    /// Field by field, without copying (the key logs may be large).
    fn same_bundle(&self, other: &Summary) -> bool {
        let Summary {
            kid,
            version,
            case,
            keys,
            items,
            proofs,
            entry_count,
            agencies,
            exporter,
            exported_at,
            signature,
            signature_valid: _,
        } = self;
        *kid == other.kid
            && *version == other.version
            && *case == other.case
            && keys.as_ref().map(|k| k.digest) == other.keys.as_ref().map(|k| k.digest)
            && *items == other.items
            && *proofs == other.proofs
            && *entry_count == other.entry_count
            && *agencies == other.agencies
            && *exporter == other.exporter
            && *exported_at == other.exported_at
            && *signature == other.signature
    }
}

/// The key logs of a version 2 or 3 bundle, as a pass read them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeysRead {
    /// The logs; None after a pass that does not keep them
    /// ([`StreamDecoder::first_pass`]).
    logs: Option<KeyLogs>,
    /// SHA-256 over the logs as read (each statement's log number, length
    /// and bytes): what tells two passes apart without keeping the logs
    /// twice.
    digest: [u8; 32],
}

/// What [`StreamDecoder::next_item`] yields.
#[derive(Debug)]
pub enum Streamed<'a> {
    /// The next element of `entries`, borrowed from the decoder's buffer
    /// until the next call.
    Element(Element<'a>),
    /// The next element of `entries` is a byte string longer than an entry
    /// may be: it was hashed, not kept. It fails V1 ([`oversize`]).
    Oversize {
        /// SHA-256 of its bytes: the id it would have.
        id: EntryId,
        /// Its length.
        size: usize,
    },
    /// The bundle was read to its end and is readable.
    End(Summary),
}

/// The V1 verdict on an element of `size` bytes, over [`MAX_ENTRY_SIZE`],
/// whose bytes hash to `id`: what [`super::check_entry`] says of it.
pub fn oversize(id: EntryId, size: usize) -> Checked {
    Checked::Invalid {
        rejection: Rejection::new(Some(id), RejectKind::Oversize { size }),
        claimed: None,
    }
}

/// Where the decoder is in the file.
#[derive(Debug)]
enum Phase {
    /// Tag, array head, protected header, unprotected map, payload head.
    Envelope,
    /// The envelope is damaged: whether the whole file would say so or
    /// "truncated" depends on its length (a count is checked against the
    /// bytes that remain). Holds the envelope's bytes, counts the rest.
    EnvelopeWait { held: usize, dropped: usize },
    /// Skipping `left` bytes the decoder does not keep, then `then`.
    Skip {
        left: u64,
        inside: &'static str,
        needed: Option<usize>,
        then: AfterSkip,
    },
    /// The payload map's head.
    PayloadMap,
    /// Before the next member of the payload map.
    Members,
    /// Inside `proofs`, `left` proofs to go.
    Proofs { left: u64 },
    /// Inside `keys` (version 2), `left` key logs to go after the current
    /// one.
    Keys { left: u64 },
    /// Inside a key log of `keys`: `left` statements to go, then `logs`
    /// logs. Statements are read one at a time, never the member whole, so
    /// a long log costs its length once whatever the chunks.
    KeyLog { left: u64, logs: u64 },
    /// Inside `entries`, `left` elements to go.
    Elements { left: u64 },
    /// Inside an element too large to be an entry.
    Oversize {
        left: u64,
        size: usize,
        hasher: Sha256,
        elements_left: u64,
    },
    /// After a damaged payload: to its end without reading it.
    SkipPayload,
    /// The signature.
    Signature,
    /// Counting what follows the signature.
    Trailing { at: usize },
    /// Everything was returned.
    Done,
}

/// What a skip leads to.
#[derive(Debug)]
enum AfterSkip {
    /// A protected header too long to be a bundle's.
    LongProtected,
    /// A signature of the wrong length.
    WrongSignature { at: usize, len: u64 },
}

/// A payload member, read.
enum Member {
    Version(u64),
    Case(CaseId),
    Keys(u64),
    Items(Vec<ItemId>),
    Proofs(u64),
    Entries(u64),
    Agencies(Vec<BundleAgency>),
    Exporter(AgencyId),
    ExportedAt(u64),
}

/// An element, read: where its bytes are, or the marker.
enum Read {
    Out(Out),
    Oversize { len: u64 },
}

/// An element to yield.
enum Out {
    /// File offsets of its bytes.
    Entry(Range<usize>),
    Withheld(WithheldPosition),
}

/// Reads a bundle pushed to it in chunks; see the module documentation.
///
/// ```
/// # use custodia_protocol::bundle::{StreamDecoder, Streamed};
/// # fn read(file: &[u8]) -> Result<(), custodia_protocol::bundle::BundleError> {
/// let mut first = StreamDecoder::new();
/// first.push(file); // in chunks, as they are read
/// first.finish();
/// let summary = loop {
///     match first.next_item()? {
///         Some(Streamed::End(s)) => break s,
///         Some(_) => {}                   // elements: only counted here
///         None => unreachable!("finish() was called"),
///     }
/// };
/// let mut second = StreamDecoder::second_pass(&summary);
/// second.push(file);
/// second.finish();
/// while let Some(item) = second.next_item()? {
///     match item {
///         Streamed::Element(_) | Streamed::Oversize { .. } => {} // replay it
///         Streamed::End(s) => { let _valid = s.signature_valid(); break; }
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamDecoder {
    /// Bytes pushed and not yet consumed start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[0]`.
    base: usize,
    eof: bool,
    /// The file's length, once known while still reading the envelope.
    total: Option<usize>,
    phase: Phase,
    failed: Option<BundleError>,
    /// File offsets of the payload's bytes.
    payload: Option<(usize, usize)>,
    /// File offsets of the protected header's bytes, and of the elements
    /// of `entries` (for [`Bundle::decode`](super::Bundle::decode), which
    /// keeps slices of the input).
    protected_at: Range<usize>,
    entries_at: Range<usize>,
    protected: Vec<u8>,
    kid: AgencyId,
    /// The format version read (0 until `"v"` is).
    version: u64,
    case: CaseId,
    keys: Option<KeyLogs>,
    /// Whether to keep the key logs, and the digest over them.
    keep_keys: bool,
    keys_digest: Sha256,
    key_log_index: u64,
    items: Option<Vec<ItemId>>,
    proofs: Vec<EquivocationProof>,
    entry_count: usize,
    agencies: Vec<BundleAgency>,
    exporter: AgencyId,
    exported_at: u64,
    signature: Option<[u8; 64]>,
    members_left: u64,
    last_key: Option<usize>,
    seen: [bool; 9],
    /// An error in the payload, reported once the envelope is read.
    deferred: Option<BundleError>,
    trailing: u64,
    /// Second pass: the first pass's summary, and the signature check fed
    /// with the Sig_structure as the payload goes by.
    first: Option<Box<Summary>>,
    check: Option<Streaming>,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    /// A first pass: checks the structure, yields the elements, and ends
    /// with the [`Summary`] (without the signature's verdict).
    pub fn new() -> Self {
        StreamDecoder {
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
            total: None,
            phase: Phase::Envelope,
            failed: None,
            payload: None,
            protected_at: 0..0,
            entries_at: 0..0,
            protected: Vec::new(),
            kid: AgencyId([0; 32]),
            version: 0,
            case: EntryId([0; 32]),
            keys: None,
            keep_keys: true,
            keys_digest: Sha256::new(),
            key_log_index: 0,
            items: None,
            proofs: Vec::new(),
            entry_count: 0,
            agencies: Vec::new(),
            exporter: AgencyId([0; 32]),
            exported_at: 0,
            signature: None,
            members_left: 0,
            last_key: None,
            seen: [false; 9],
            deferred: None,
            trailing: 0,
            first: None,
            check: None,
        }
    }

    /// A first pass: the structure, and the key logs of a version 2
    /// bundle, which the replay needs before the first entry (entries of
    /// format version 2 are checked against them).
    pub fn first_pass() -> Self {
        Self::new()
    }

    /// A second pass over the same bytes: also checks the exporter's
    /// signature (B1), and that the bytes are those the first pass read.
    /// It keeps only a digest of the key logs (the first pass's are the
    /// ones the replay uses), so a verifier that reads a file twice holds
    /// them once.
    pub fn second_pass(first: &Summary) -> Self {
        StreamDecoder {
            first: Some(Box::new(first.clone_without_key_logs())),
            keep_keys: false,
            ..Self::new()
        }
    }

    /// Gives the decoder the next bytes of the file.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Tells the decoder the file has ended.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Bytes held: the unconsumed input and what was consumed since the
    /// last [`push`](Self::push) (at most one element and one chunk).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// File offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.base + self.start
    }

    /// The next element, or the end; `Ok(None)` when more bytes are needed
    /// (never after [`finish`](Self::finish), until the end was returned).
    /// An error is final: it is returned again by every later call.
    pub fn next_item(&mut self) -> Result<Option<Streamed<'_>>, BundleError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            match self.step() {
                Ok(Step::More) => return Ok(None),
                Ok(Step::Again) => {}
                Ok(Step::Yield(out)) => {
                    return Ok(Some(match out {
                        Out::Entry(r) => {
                            let r = (r.start - self.base)..(r.end - self.base);
                            Streamed::Element(Element::Entry(&self.buf[r]))
                        }
                        Out::Withheld(w) => Streamed::Element(Element::Withheld(w)),
                    }))
                }
                Ok(Step::Oversize(id, size)) => return Ok(Some(Streamed::Oversize { id, size })),
                Ok(Step::End(s)) => return Ok(Some(Streamed::End(*s))),
                Err(e) => {
                    self.failed = Some(e.clone());
                    self.phase = Phase::Done;
                    return Err(e);
                }
            }
        }
    }

    /// The error for input that ended inside the payload: the one
    /// [`Bundle::decode`](super::Bundle::decode) gives for a payload longer
    /// than the file.
    fn payload_cut(&self) -> BundleError {
        let (_, end) = self.payload.unwrap_or((0, 0));
        BundleError::Truncated {
            at: self.base + self.buf.len(),
            inside: "the payload",
            needed: (end != usize::MAX).then_some(end),
        }
    }

    /// Consumes `n` bytes, feeding those of the payload to the signature
    /// check.
    fn advance(&mut self, n: usize) {
        let from = self.base + self.start;
        if let (Some(check), Some((ps, pe))) = (&mut self.check, self.payload) {
            let (a, b) = (from.max(ps), (from + n).min(pe));
            if a < b {
                check.update(&self.buf[a - self.base..b - self.base]);
            }
        }
        self.start += n;
    }

    /// Runs `f` on the available bytes of a structure ending at file offset
    /// `end` (None: the file's end). Ok(None): more input is needed.
    fn unit<T>(
        &mut self,
        end: Option<usize>,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, BundleError>,
    ) -> Result<Option<T>, BundleError> {
        let avail = self.base + self.buf.len();
        let (limit, view_end) = match end {
            Some(e) => (e, avail.min(e)),
            None if self.eof => (avail, avail),
            None => (usize::MAX, avail),
        };
        let from = self.base + self.start;
        let bytes = &self.buf[self.start..view_end - self.base];
        let mut r = Reader::prefix(bytes, from, limit);
        match f(&mut r) {
            Ok(t) => {
                let n = r.pos();
                self.advance(n);
                Ok(Some(t))
            }
            Err(BundleError::Truncated { at, .. }) if at == view_end && view_end < limit => {
                if !self.eof {
                    Ok(None)
                } else if end.is_some() {
                    Err(self.payload_cut())
                } else {
                    // Unreachable: at the end of input `limit` is the end.
                    Err(BundleError::Truncated {
                        at: avail,
                        inside: "the bundle",
                        needed: None,
                    })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A unit inside the payload: an error is held until the envelope is
    /// read (see the module documentation).
    fn payload_unit<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, BundleError>,
    ) -> Result<Option<T>, BundleError> {
        let (_, end) = self.payload.unwrap_or((0, 0));
        if self.eof && self.base + self.buf.len() < end {
            // The file is shorter than its payload: that is the error,
            // wherever else the payload is damaged.
            return Err(self.payload_cut());
        }
        match self.unit(Some(end), f) {
            Err(e) => {
                self.deferred = Some(e);
                self.phase = Phase::SkipPayload;
                Ok(None)
            }
            other => other,
        }
    }

    fn step(&mut self) -> Result<Step, BundleError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match phase {
            Phase::Envelope => self.envelope(),
            Phase::EnvelopeWait { held, mut dropped } => {
                dropped += self.buf.len() - held;
                self.buf.truncate(held);
                if self.eof {
                    // Read the envelope again, knowing where the file ends.
                    self.total = Some(self.base + held + dropped);
                    self.phase = Phase::Envelope;
                    Ok(Step::Again)
                } else {
                    self.phase = Phase::EnvelopeWait { held, dropped };
                    Ok(Step::More)
                }
            }
            Phase::Skip {
                left,
                inside,
                needed,
                then,
            } => {
                let n = self.skip(left);
                let left = left - n;
                if left > 0 {
                    if self.eof {
                        return Err(BundleError::Truncated {
                            at: self.base + self.buf.len(),
                            inside,
                            needed,
                        });
                    }
                    self.phase = Phase::Skip {
                        left,
                        inside,
                        needed,
                        then,
                    };
                    return Ok(Step::More);
                }
                Err(match then {
                    // What `check_protected` says of any header that is
                    // not a bundle's or an entry's.
                    AfterSkip::LongProtected => check_protected(&[])
                        .err()
                        .unwrap_or_else(|| BundleError::NotABundle("no bundle header".into())),
                    AfterSkip::WrongSignature { at, len } => BundleError::Schema {
                        at,
                        reason: format!("the signature: expected 64 bytes, found {len}"),
                    },
                })
            }
            Phase::PayloadMap => match self.payload_unit(|r| Ok(r.map("the payload map")?))? {
                Some(n) => {
                    self.members_left = n;
                    self.phase = Phase::Members;
                    Ok(Step::Again)
                }
                None => self.pending(Phase::PayloadMap),
            },
            Phase::Members => self.member(),
            Phase::Proofs { left } => {
                if left == 0 {
                    self.phase = Phase::Members;
                    return Ok(Step::Again);
                }
                match self.payload_unit(|r| {
                    let at = r.offset();
                    if r.array("an equivocation proof")? != 2 {
                        return Err(BundleError::Schema {
                            at,
                            reason: "an equivocation proof is an array of 2 entries".into(),
                        });
                    }
                    let a = r.bytes("an equivocation proof")?.to_vec();
                    let b = r.bytes("an equivocation proof")?.to_vec();
                    Ok(EquivocationProof(a, b))
                })? {
                    Some(p) => {
                        self.proofs.push(p);
                        self.phase = Phase::Proofs { left: left - 1 };
                        Ok(Step::Again)
                    }
                    None => self.pending(Phase::Proofs { left }),
                }
            }
            Phase::Keys { left } => {
                if left == 0 {
                    self.phase = Phase::Members;
                    return Ok(Step::Again);
                }
                match self.payload_unit(|r| {
                    let at = r.offset();
                    let n = r.array("a key log")?;
                    if n == 0 {
                        return Err(BundleError::Schema {
                            at,
                            reason: "a key log in \"keys\" is empty (it starts with its inception)"
                                .into(),
                        });
                    }
                    Ok(n)
                })? {
                    Some(n) => {
                        self.key_log_index += 1;
                        if let Some(k) = self.keys.as_mut().filter(|_| self.keep_keys) {
                            k.start_log();
                        }
                        self.phase = Phase::KeyLog {
                            left: n,
                            logs: left - 1,
                        };
                        Ok(Step::Again)
                    }
                    None => self.pending(Phase::Keys { left }),
                }
            }
            Phase::KeyLog { left, logs } => {
                if left == 0 {
                    self.phase = Phase::Keys { left: logs };
                    return Ok(Step::Again);
                }
                match self.payload_unit(|r| Ok(r.bytes("a key statement")?.to_vec()))? {
                    Some(b) => {
                        self.keys_digest.update(self.key_log_index.to_be_bytes());
                        self.keys_digest.update((b.len() as u64).to_be_bytes());
                        self.keys_digest.update(&b);
                        if let Some(k) = self.keys.as_mut().filter(|_| self.keep_keys) {
                            k.push_statement(&b);
                        }
                        self.phase = Phase::KeyLog {
                            left: left - 1,
                            logs,
                        };
                        Ok(Step::Again)
                    }
                    None => self.pending(Phase::KeyLog { left, logs }),
                }
            }
            Phase::Elements { left } => {
                if left == 0 {
                    self.entries_at.end = self.offset();
                    self.phase = Phase::Members;
                    return Ok(Step::Again);
                }
                let read = self.payload_unit(|r| {
                    if r.peek_major("an element of \"entries\"")? == BYTES {
                        let mut probe = r.clone();
                        let len = probe.expect(BYTES, "an entry")?;
                        if len > MAX_ENTRY_SIZE as u64 && len <= probe.left() {
                            *r = probe;
                            return Ok(Read::Oversize { len });
                        }
                    }
                    Ok(Read::Out(match read_element(r)? {
                        Element::Entry(b) => Out::Entry((r.offset() - b.len())..r.offset()),
                        Element::Withheld(w) => Out::Withheld(w),
                    }))
                })?;
                match read {
                    None => self.pending(Phase::Elements { left }),
                    Some(Read::Oversize { len }) => {
                        self.phase = Phase::Oversize {
                            left: len,
                            size: usize::try_from(len).unwrap_or(usize::MAX),
                            hasher: Sha256::new(),
                            elements_left: left - 1,
                        };
                        Ok(Step::Again)
                    }
                    Some(Read::Out(out)) => {
                        self.phase = Phase::Elements { left: left - 1 };
                        Ok(Step::Yield(out))
                    }
                }
            }
            Phase::Oversize {
                left,
                size,
                mut hasher,
                elements_left,
            } => {
                let from = self.start;
                let n = self.skip(left);
                hasher.update(&self.buf[from..from + n as usize]);
                let left = left - n;
                if left > 0 {
                    if self.eof {
                        return Err(self.payload_cut());
                    }
                    self.phase = Phase::Oversize {
                        left,
                        size,
                        hasher,
                        elements_left,
                    };
                    return Ok(Step::More);
                }
                self.phase = Phase::Elements {
                    left: elements_left,
                };
                Ok(Step::Oversize(EntryId(hasher.finalize().into()), size))
            }
            Phase::SkipPayload => {
                let (_, end) = self.payload.unwrap_or((0, 0));
                let left = end.saturating_sub(self.offset()) as u64;
                let n = self.skip(left);
                if n < left {
                    if self.eof {
                        return Err(self.payload_cut());
                    }
                    self.phase = Phase::SkipPayload;
                    return Ok(Step::More);
                }
                self.phase = Phase::Signature;
                Ok(Step::Again)
            }
            Phase::Signature => self.signature(),
            Phase::Trailing { at } => {
                let n = self.buf.len() - self.start;
                self.advance(n);
                self.trailing += n as u64;
                if !self.eof {
                    self.phase = Phase::Trailing { at };
                    return Ok(Step::More);
                }
                if self.trailing > 0 {
                    return Err(BundleError::TrailingBytes {
                        at,
                        extra: usize::try_from(self.trailing).unwrap_or(usize::MAX),
                    });
                }
                if let Some(e) = self.deferred.take() {
                    return Err(e);
                }
                self.end()
            }
            Phase::Done => Ok(Step::More),
        }
    }

    /// After a payload unit gave nothing: either it was damaged (the phase
    /// is now `SkipPayload`) or it needs more input (stay in `phase`).
    fn pending(&mut self, phase: Phase) -> Result<Step, BundleError> {
        if matches!(self.phase, Phase::SkipPayload) {
            Ok(Step::Again)
        } else {
            self.phase = phase;
            Ok(Step::More)
        }
    }

    /// Consumes up to `left` available bytes; returns how many.
    fn skip(&mut self, left: u64) -> u64 {
        let n = ((self.buf.len() - self.start) as u64).min(left);
        self.advance(n as usize);
        n
    }

    fn envelope(&mut self) -> Result<Step, BundleError> {
        let avail = &self.buf[self.start..];
        if avail.is_empty() {
            if self.eof {
                return Err(BundleError::Empty);
            }
            self.phase = Phase::Envelope;
            return Ok(Step::More);
        }
        if avail[0] != 0xD2 {
            // Describing the start looks at up to 64 bytes.
            if avail.len() < 64 && !self.eof {
                self.phase = Phase::Envelope;
                return Ok(Step::More);
            }
            return Err(BundleError::NotABundle(describe_start(avail)));
        }
        let env = match self.unit(self.total, envelope) {
            Err(_) if !self.eof => {
                self.phase = Phase::EnvelopeWait {
                    held: self.buf.len(),
                    dropped: 0,
                };
                return Ok(Step::More);
            }
            other => other?,
        };
        match env {
            None => {
                self.phase = Phase::Envelope;
                Ok(Step::More)
            }
            Some(Env::LongProtected { len, start }) => {
                self.phase = Phase::Skip {
                    left: len,
                    inside: "the protected header",
                    needed: usize::try_from(len).ok().and_then(|l| l.checked_add(start)),
                    then: AfterSkip::LongProtected,
                };
                Ok(Step::Again)
            }
            Some(Env::Ready {
                protected,
                protected_at,
                kid,
                payload: (start, end),
            }) => {
                self.protected_at = protected_at;
                let end = end.unwrap_or(usize::MAX);
                self.payload = Some((start, end));
                self.kid = kid;
                if let Some(first) = &self.first {
                    let mut check = Streaming::new(&kid, &first.signature);
                    check.update(&sig_structure_prefix(&protected, &[], (end - start) as u64));
                    self.check = Some(check);
                }
                self.protected = protected;
                self.phase = Phase::PayloadMap;
                Ok(Step::Again)
            }
        }
    }

    fn member(&mut self) -> Result<Step, BundleError> {
        let (payload_start, payload_end) = self.payload.unwrap_or((0, 0));
        if self.members_left == 0 {
            // The map is read: every required member, then nothing after.
            let missing = if !self.seen[0] {
                Some("the payload has no format version \"v\"".to_string())
            } else {
                // "items" is optional; "keys" is required in version 2
                // (and refused in version 1 when met).
                KEYS.iter()
                    .zip(&self.seen)
                    .find(|(k, s)| {
                        !**s && **k != "items" && (**k != "keys" || has_keys(self.version))
                    })
                    .map(|(k, _)| format!("the payload has no {k:?}"))
            };
            let at = self.offset();
            self.deferred = match missing {
                Some(reason) => Some(BundleError::Schema {
                    at: payload_start,
                    reason,
                }),
                None if at < payload_end => Some(BundleError::TrailingBytes {
                    at,
                    extra: payload_end - at,
                }),
                None => None,
            };
            self.phase = Phase::SkipPayload;
            return Ok(Step::Again);
        }
        let last = self.last_key;
        let version = self.version;
        let read = self.payload_unit(|r| {
            let at = r.offset();
            let k = r.member_key(&KEYS, "the payload", last)?;
            let m = match KEYS[k] {
                "v" => {
                    let v = r.uint("\"v\"")?;
                    if v != BUNDLE_VERSION && v != BUNDLE_VERSION_1 && v != BUNDLE_VERSION_3 {
                        return Err(BundleError::UnsupportedVersion(v));
                    }
                    Member::Version(v)
                }
                "case" => Member::Case(EntryId(r.fixed::<32>("\"case\"")?)),
                "keys" if !has_keys(version) => {
                    return Err(BundleError::Schema {
                        at,
                        reason: "\"keys\" is a member of version 2 and 3 bundles only".into(),
                    })
                }
                "keys" => Member::Keys(r.array("\"keys\"")?),
                "items" => Member::Items(read_items(r)?),
                "proofs" => Member::Proofs(r.array("\"proofs\"")?),
                "entries" => {
                    let at = r.offset();
                    let n = r.array("\"entries\"")?;
                    if n == 0 {
                        return Err(BundleError::Schema {
                            at,
                            reason: "\"entries\" is empty (a bundle holds at least the genesis)"
                                .into(),
                        });
                    }
                    Member::Entries(n)
                }
                "agencies" => Member::Agencies(read_agencies(r)?),
                "exporter" => Member::Exporter(AgencyId(r.fixed::<32>("\"exporter\"")?)),
                _ => Member::ExportedAt(r.uint("\"exported-at\"")?),
            };
            Ok((k, m))
        })?;
        let Some((k, m)) = read else {
            return self.pending(Phase::Members);
        };
        self.members_left -= 1;
        self.last_key = Some(k);
        self.seen[k] = true;
        self.phase = Phase::Members;
        match m {
            Member::Version(v) => self.version = v,
            Member::Case(c) => self.case = c,
            Member::Keys(n) => {
                self.keys = Some(KeyLogs::default());
                self.phase = Phase::Keys { left: n };
            }
            Member::Items(i) => self.items = Some(i),
            Member::Proofs(n) => self.phase = Phase::Proofs { left: n },
            Member::Entries(n) => {
                self.entry_count = usize::try_from(n).unwrap_or(usize::MAX);
                self.entries_at = self.offset()..self.offset();
                self.phase = Phase::Elements { left: n };
            }
            Member::Agencies(a) => self.agencies = a,
            Member::Exporter(e) => self.exporter = e,
            Member::ExportedAt(t) => self.exported_at = t,
        }
        Ok(Step::Again)
    }

    fn signature(&mut self) -> Result<Step, BundleError> {
        enum Sig {
            Bytes([u8; 64], usize),
            Wrong { at: usize, len: u64, start: usize },
        }
        let read = self.unit(None, |r| {
            let at = r.offset();
            let mut probe = r.clone();
            let len = probe.expect(BYTES, "the signature")?;
            if len == 64 {
                let s = r.fixed::<64>("the signature")?;
                Ok(Sig::Bytes(s, r.offset()))
            } else {
                *r = probe;
                Ok(Sig::Wrong {
                    at,
                    len,
                    start: r.offset(),
                })
            }
        })?;
        match read {
            None => {
                self.phase = Phase::Signature;
                Ok(Step::More)
            }
            Some(Sig::Wrong { at, len, start }) => {
                self.phase = Phase::Skip {
                    left: len,
                    inside: "the signature",
                    needed: usize::try_from(len).ok().and_then(|l| l.checked_add(start)),
                    then: AfterSkip::WrongSignature { at, len },
                };
                Ok(Step::Again)
            }
            Some(Sig::Bytes(s, end)) => {
                self.signature = Some(s);
                self.phase = Phase::Trailing { at: end };
                Ok(Step::Again)
            }
        }
    }

    /// Where the protected header, the payload and the elements of
    /// `entries` are in the file: known once the end was returned.
    pub(super) fn layout(&self) -> Layout {
        let (start, end) = self.payload.unwrap_or((0, 0));
        Layout {
            protected: self.protected_at.clone(),
            payload: start..end,
            entries: self.entries_at.clone(),
        }
    }

    fn end(&mut self) -> Result<Step, BundleError> {
        let mut summary = Summary {
            kid: self.kid,
            version: u8::try_from(self.version).unwrap_or(0),
            case: self.case,
            keys: self.keys.take().map(|logs| {
                Box::new(KeysRead {
                    logs: self.keep_keys.then_some(logs),
                    digest: std::mem::take(&mut self.keys_digest).finalize().into(),
                })
            }),
            items: self.items.take(),
            proofs: std::mem::take(&mut self.proofs),
            entry_count: self.entry_count,
            agencies: std::mem::take(&mut self.agencies),
            exporter: self.exporter,
            exported_at: self.exported_at,
            signature: self.signature.unwrap_or([0; 64]),
            signature_valid: None,
        };
        if let Some(first) = self.first.take() {
            if !summary.same_bundle(&first) {
                return Err(BundleError::Changed);
            }
            summary.signature_valid = Some(self.check.take().is_some_and(Streaming::finish));
        }
        self.phase = Phase::Done;
        Ok(Step::End(Box::new(summary)))
    }
}

/// File offsets of a bundle's parts, from [`StreamDecoder::layout`].
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) protected: Range<usize>,
    pub(super) payload: Range<usize>,
    pub(super) entries: Range<usize>,
}

/// The envelope, read.
enum Env {
    Ready {
        protected: Vec<u8>,
        protected_at: Range<usize>,
        kid: AgencyId,
        payload: (usize, Option<usize>),
    },
    LongProtected {
        len: u64,
        start: usize,
    },
}

/// The envelope: tag, array head, protected header, unprotected map and
/// the payload's head (its bytes are read as they come).
fn envelope(r: &mut Reader<'_>) -> Result<Env, BundleError> {
    r.head("the COSE_Sign1 tag")?;
    let n = r
        .array("the COSE_Sign1 array")
        .map_err(|e| match e.into() {
            e @ BundleError::Truncated { .. } => e,
            _ => BundleError::NotABundle(
                "after the COSE_Sign1 tag there is not an array of 4 items".into(),
            ),
        })?;
    if n != 4 {
        return Err(BundleError::NotABundle(format!(
            "the COSE_Sign1 array has {n} items, not 4"
        )));
    }
    let mut probe = r.clone();
    let len = probe
        .expect(BYTES, "the protected header")
        .map_err(|e: ReadError| super::not_a_protected_header(e.into()))?;
    if len > MAX_PROTECTED {
        *r = probe;
        return Ok(Env::LongProtected {
            len,
            start: r.offset(),
        });
    }
    let protected = r
        .bytes("the protected header")
        .map_err(|e| super::not_a_protected_header(e.into()))?;
    let kid = check_protected(protected)?;
    let protected_at = (r.offset() - protected.len())..r.offset();
    let protected = protected.to_vec();
    let at = r.offset();
    if r.map("the unprotected header")? != 0 {
        return Err(BundleError::Schema {
            at,
            reason: "the unprotected header is not empty".into(),
        });
    }
    let len = r.expect(BYTES, "the payload")?;
    let start = r.offset();
    let end = usize::try_from(len).ok().and_then(|l| l.checked_add(start));
    Ok(Env::Ready {
        protected,
        protected_at,
        kid,
        payload: (start, end),
    })
}

/// One step of the decoder.
enum Step {
    /// More input is needed.
    More,
    /// Progress was made; step again.
    Again,
    Yield(Out),
    Oversize(EntryId, usize),
    End(Box<Summary>),
}
