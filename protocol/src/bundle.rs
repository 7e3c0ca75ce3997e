//! Court bundles (SPEC.md §10): one file that holds a case's record and
//! can be verified with nothing else.
//!
//! A bundle is a COSE_Sign1 object (RFC 9052 §4.2, tag 18) signed by the
//! exporting agency, like an entry but with the content type
//! `application/custodia-bundle+cbor`. Its payload is a deterministic CBOR
//! map:
//!
//! ```text
//! {"v": 2, "case": case-id, "keys": [[key statement bytes...]...],
//!  ? "items": [item-id...], "proofs": [proof...],
//!  "entries": [entry bytes / withheld [author, seq, id] ...],
//!  "agencies": [{"name", "agency", "country"}...], "exporter": agency-id,
//!  "exported-at": millis}
//! ```
//!
//! Version 2 carries the key log (SPEC.md §3.4) of each listed agency the
//! exporter holds, so a court sees every agency's key history, the names
//! it signed for itself and the officers it certified; version 1 (no
//! `"keys"`) is still read and verified as before.
//!
//! (keys shown in their deterministic order). The entries are the exact
//! bytes their authors signed, in dependency order; an entry the exporter
//! does not disclose travels as its withheld marker, so every chain still
//! links end to end. The exporter's signature covers the whole payload:
//! editing any byte breaks it, and breaks the signature or the chain of the
//! entry the byte belongs to, so a verifier can say exactly where.
//!
//! There is one reader, [`StreamDecoder`]: it walks the structure head by
//! head without building a tree, from a stream pushed in chunks of any
//! size. [`Bundle::decode`] drives it over a whole file in memory and keeps
//! slices of the input;
//! [`Bundle::elements`] then yields the entries one at a time, and
//! [`Verifier`] replays them through a fresh [`crate::Validator`] as of the
//! export time, collecting every problem instead of stopping at the first.
//! [`verify`] does all of it in one call.
//!
//! ```
//! use custodia_protocol::{bundle, CaseOpened, Entry, Identity, Payload, Tlp, Validator};
//! let alpha = Identity::from_seed([1; 32]);
//! let genesis = Entry::sign(&alpha, &Payload::genesis(alpha.agency(), 1_795_000_000_000,
//!     Tlp::Amber, CaseOpened { title: "T".into(), reference: "R".into(), jurisdiction: None,
//!     name: "Alpha".into(), country: "PH".into() }));
//! let mut v = Validator::new();
//! v.apply(&genesis, 1_795_000_000_000).unwrap();
//! let rows = [bundle::Element::Entry(genesis.bytes())];
//! let bytes = bundle::export(&alpha, &v, &rows, &[], &[], 1_795_000_060_000, None).unwrap();
//! let b = bundle::Bundle::decode(&bytes).unwrap();
//! let report = bundle::verify(&b, None);
//! assert!(report.is_valid());
//! ```

pub mod engine;
mod explain;
mod export;
mod notes;
mod report;
mod stream;
mod trust;

use std::ops::Range;

use crate::equivocation::EquivocationProof;
use crate::identity::Identity;
use crate::ids::{AgencyId, CaseId, EntryId, ItemId};
use crate::state::WithheldPosition;

use crate::codec::{write_bytes, write_head, write_text, ReadError, Reader, ARRAY, BYTES, MAP};
use crate::cose::sig_structure_prefix;

pub use explain::{explain, explain_bundle_rule};
pub use export::{disclosure, export, ExportError};
pub use notes::NoteSpill;
pub use report::{
    body_line, check_entries, check_entry, verify, BundleRule, Checked, Claimed, ConflictReport,
    EntrySigner, EventReport, ItemReport, KeyLogReport, KeyStatementReport, KeyTrust, MemberReport,
    NoteReport, Notes, Problem, Receipt, Report, Rule, Unlisted, Verifier, VersionReport,
    WithheldReport, LISTED,
};
pub use stream::{oversize, StreamDecoder, Streamed, Summary};
pub use trust::{TrustError, TrustList};

/// SKEW in whole minutes, for sentences.
const SKEW_MINUTES: u64 = crate::validate::SKEW_MS / 60_000;

/// Content type of a bundle's protected header (COSE label 3).
pub const BUNDLE_CONTENT_TYPE: &str = "application/custodia-bundle+cbor";
/// The bundle format version this implementation writes (SPEC.md §10.8):
/// version 2, which carries the agencies' key logs (`"keys"`), or
/// [`BUNDLE_VERSION_3`] when a log it carries holds superseded
/// statements. It reads versions 1, 2 and 3.
pub const BUNDLE_VERSION: u64 = 2;
/// The first bundle format version, without key logs: still read and
/// verified as before.
pub const BUNDLE_VERSION_1: u64 = 1;
/// The bundle format version whose key logs are key histories, with the
/// statements a recovery superseded (SPEC.md §10.1).
pub const BUNDLE_VERSION_3: u64 = 3;

/// Whether a bundle format version carries `"keys"` (2 and 3).
pub fn has_keys(version: u64) -> bool {
    version == BUNDLE_VERSION || version == BUNDLE_VERSION_3
}

/// The payload's keys in deterministic order (shorter first, then bytewise).
/// `"keys"` is a member of versions 2 and 3 only.
const KEYS: [&str; 9] = [
    "v",
    "case",
    "keys",
    "items",
    "proofs",
    "entries",
    "agencies",
    "exporter",
    "exported-at",
];
const AGENCY_KEYS: [&str; 3] = ["name", "agency", "country"];

/// Why bytes are not a readable bundle. Every variant means the file could
/// not be checked at all (a verifier exits 2); problems *with* a readable
/// bundle are reported in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The file is empty.
    #[error("not a Custodia bundle: the file is empty")]
    Empty,
    /// The bytes are not a bundle at all (another kind of file, or a single
    /// entry).
    #[error("not a Custodia bundle: {0}")]
    NotABundle(String),
    /// The file ends before the structure does.
    #[error("truncated at byte {at}: the file ends inside {inside}{}", needed.map_or_else(String::new, |n| format!(" (a complete file has at least {n} bytes)")))]
    Truncated {
        /// Where the file ends (its length).
        at: usize,
        /// What was being read.
        inside: &'static str,
        /// How long the file would have to be at least, when a length said so.
        needed: Option<usize>,
    },
    /// Not well-formed CBOR.
    #[error("damaged at byte {at}: {reason}")]
    Malformed {
        /// File offset.
        at: usize,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed, but not the deterministic encoding.
    #[error("damaged at byte {at}: {what} (a bundle is deterministic CBOR, RFC 8949 §4.2.1)")]
    NonCanonical {
        /// File offset.
        at: usize,
        /// What is not deterministic.
        what: &'static str,
    },
    /// Not the structure SPEC.md §10 describes.
    #[error("damaged at byte {at}: {reason}")]
    Schema {
        /// File offset.
        at: usize,
        /// What is wrong.
        reason: String,
    },
    /// Bytes after the end of the bundle.
    #[error("damaged: {extra} unexpected byte(s) after the end of the bundle at byte {at}")]
    TrailingBytes {
        /// Where the bundle ends.
        at: usize,
        /// How many bytes follow.
        extra: usize,
    },
    /// A bundle format version this implementation does not know.
    #[error(
        "bundle format version {0} is not supported (this verifier reads versions 1, 2 and 3)"
    )]
    UnsupportedVersion(u64),
    /// Read twice ([`StreamDecoder`]), the file was not the same the
    /// second time: it changed while it was being verified.
    #[error(
        "the file changed while it was being read: it was not the same bundle the second time"
    )]
    Changed,
}

impl From<ReadError> for BundleError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated { at, inside, needed } => {
                BundleError::Truncated { at, inside, needed }
            }
            ReadError::Malformed { at, reason } => BundleError::Malformed { at, reason },
            ReadError::NonCanonical { at, what } => BundleError::NonCanonical { at, what },
            ReadError::Schema { at, reason } => BundleError::Schema { at, reason },
        }
    }
}

impl BundleError {
    /// A short stable name for the kind of error (used by the test vectors).
    pub fn class(&self) -> &'static str {
        match self {
            BundleError::Empty => "empty",
            BundleError::NotABundle(_) => "not-a-bundle",
            BundleError::Truncated { .. } => "truncated",
            BundleError::Malformed { .. } => "malformed",
            BundleError::NonCanonical { .. } => "non-canonical",
            BundleError::Schema { .. } => "schema",
            BundleError::TrailingBytes { .. } => "trailing-bytes",
            BundleError::UnsupportedVersion(_) => "unsupported-version",
            BundleError::Changed => "changed",
        }
    }
}

/// The key logs of a version 2 bundle (`"keys"`, SPEC.md §10.1), as read:
/// every statement's exact bytes in one buffer, with where each statement
/// and each log ends. Flat, so that a file of many tiny (invalid) logs
/// costs memory of the order of its size, not one allocation per log and
/// per statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLogs {
    bytes: Vec<u8>,
    /// The end of each statement in `bytes`.
    statements: Vec<usize>,
    /// The end of each log in `statements`.
    logs: Vec<usize>,
}

impl KeyLogs {
    /// Starts the next log.
    pub(crate) fn start_log(&mut self) {
        self.logs.push(self.statements.len());
    }

    /// Adds a statement to the log started last.
    pub(crate) fn push_statement(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.statements.push(self.bytes.len());
        if let Some(end) = self.logs.last_mut() {
            *end = self.statements.len();
        }
    }

    /// How many logs.
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// The statements of log `k`, in order.
    pub fn log(&self, k: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let from = k.checked_sub(1).map_or(0, |p| self.logs[p]);
        let to = self.logs.get(k).copied().unwrap_or(from);
        (from..to).map(move |i| {
            let start = i.checked_sub(1).map_or(0, |p| self.statements[p]);
            &self.bytes[start..self.statements[i]]
        })
    }

    /// Every log, in order, each as its statements.
    pub fn iter(&self) -> impl Iterator<Item = Vec<&[u8]>> + '_ {
        (0..self.len()).map(|k| self.log(k).collect())
    }
}

/// An agency as the bundle lists it: key, name and country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAgency {
    /// Its key.
    pub agency: AgencyId,
    /// Its name.
    pub name: String,
    /// Its country (ISO 3166-1 alpha-2).
    pub country: String,
}

/// One element of a bundle's `entries`: an entry's exact bytes, or the
/// withheld marker of a position not disclosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element<'a> {
    /// The exact signed bytes of an entry.
    Entry(&'a [u8]),
    /// A position disclosed only as `[author, seq, id]`.
    Withheld(WithheldPosition),
}

/// A decoded bundle: the fixed fields, and slices of the input for the
/// entries, which are read one at a time.
#[derive(Debug, Clone)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    summary: Summary,
    protected: Range<usize>,
    payload: Range<usize>,
    entries: Range<usize>,
}

/// [`Bundle::decode`] feeds the input to the streaming decoder this many
/// bytes at a time, so it holds one chunk and one element besides the
/// input, never a copy of it.
const DECODE_CHUNK: usize = 1 << 16;

/// The protected header of a bundle signed by `kid`:
/// `{1: -8, 3: "application/custodia-bundle+cbor", 4: kid}`.
pub fn bundle_protected_header(kid: &AgencyId) -> Vec<u8> {
    let mut out = Vec::with_capacity(73);
    write_head(&mut out, MAP, 3);
    out.extend_from_slice(&[0x01, 0x27, 0x03]);
    write_text(&mut out, BUNDLE_CONTENT_TYPE);
    out.push(0x04);
    write_bytes(&mut out, &kid.0);
    out
}

impl<'a> Bundle<'a> {
    /// Decodes a bundle: checks the COSE_Sign1 envelope, the protected
    /// header, the payload's structure and deterministic encoding, and
    /// every element's shape (not the entries themselves: they are checked
    /// by verification, one at a time). Never panics; memory beyond the
    /// input is the agency list, the item list and the proofs.
    ///
    /// This is the [`StreamDecoder`]'s first pass over the whole input:
    /// there is one parser, and the whole file and a stream of it get the
    /// same verdict, the same error at the same offset.
    pub fn decode(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        let mut d = StreamDecoder::new();
        let mut chunks = bytes.chunks(DECODE_CHUNK);
        let mut ended = false;
        let summary = loop {
            match d.next_item()? {
                Some(Streamed::End(s)) => break s,
                Some(_) => {}
                None if ended => {
                    // The decoder promises progress after finish().
                    return Err(BundleError::Malformed {
                        at: d.offset(),
                        reason: "internal: the bundle reader stopped".into(),
                    });
                }
                None => match chunks.next() {
                    Some(c) => d.push(c),
                    None => {
                        d.finish();
                        ended = true;
                    }
                },
            }
        };
        let layout = d.layout();
        Ok(Bundle {
            bytes,
            summary,
            protected: layout.protected,
            payload: layout.payload,
            entries: layout.entries,
        })
    }

    /// The case id the bundle says it holds.
    pub fn case(&self) -> CaseId {
        self.summary.case()
    }

    /// The agency named as exporter in the payload.
    pub fn exporter(&self) -> AgencyId {
        self.summary.exporter()
    }

    /// The key that signed the bundle (the protected header's kid).
    pub fn signer(&self) -> AgencyId {
        self.summary.signer()
    }

    /// When the bundle was exported (ms since the Unix epoch).
    pub fn exported_at(&self) -> u64 {
        self.summary.exported_at()
    }

    /// The agencies the bundle lists.
    pub fn agencies(&self) -> &[BundleAgency] {
        self.summary.agencies()
    }

    /// The items a selective export covers; None for a whole case.
    pub fn items(&self) -> Option<&[ItemId]> {
        self.summary.items()
    }

    /// Number of elements in `entries`.
    pub fn len(&self) -> usize {
        self.summary.len()
    }

    /// The bundle format version (1, 2 or 3).
    pub fn version(&self) -> u64 {
        self.summary.version()
    }

    /// The key logs a version 2 or 3 bundle carries, in order, each as its
    /// statements' exact bytes; None for a version 1 bundle.
    pub fn key_logs(&self) -> Option<&KeyLogs> {
        self.summary.key_logs()
    }

    /// Whether `entries` is empty (never, for a decoded bundle).
    pub fn is_empty(&self) -> bool {
        self.summary.is_empty()
    }

    /// Number of equivocation proofs.
    pub fn proof_count(&self) -> usize {
        self.summary.proofs().len()
    }

    /// What the bundle holds besides its elements, as a streamed first
    /// pass gives it.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The signed payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload.clone()]
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The elements of `entries`, in order, each borrowed from the input.
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            reader: Reader::new(&self.bytes[self.entries.clone()], self.entries.start),
            left: self.summary.len(),
        }
    }

    /// The equivocation proofs, in order (decoded copies: there are few).
    pub fn proofs(&self) -> Vec<EquivocationProof> {
        self.summary.proofs().to_vec()
    }

    /// Whether the exporter's signature verifies (SPEC.md §3.3) by the kid over `["Signature1", protected, h'', payload]`.
    /// The payload is hashed in place, never copied.
    pub fn signature_valid(&self) -> bool {
        let protected = &self.bytes[self.protected.clone()];
        let payload = &self.bytes[self.payload.clone()];
        let prefix = sig_structure_prefix(protected, &[], payload.len() as u64);
        crate::signature::verify_parts(
            &self.summary.signer(),
            &[&prefix, payload],
            self.summary.signature(),
        )
    }
}

/// The elements of a bundle's `entries`, one at a time.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The shape of every element was checked by `Bundle::decode`.
        read_element(&mut self.reader).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Elements<'_> {}

fn read_element<'a>(r: &mut Reader<'a>) -> Result<Element<'a>, BundleError> {
    let at = r.offset();
    match r.peek_major("an element of \"entries\"")? {
        BYTES => Ok(Element::Entry(r.bytes("an entry")?)),
        ARRAY => {
            if r.array("a withheld marker")? != 3 {
                return Err(BundleError::Schema {
                    at,
                    reason: "a withheld marker is [author, seq, id]".into(),
                });
            }
            let author = AgencyId(r.fixed::<32>("a withheld marker")?);
            let seq = r.uint("a withheld marker")?;
            let id = EntryId(r.fixed::<32>("a withheld marker")?);
            Ok(Element::Withheld(WithheldPosition { author, seq, id }))
        }
        _ => Err(BundleError::Schema {
            at,
            reason: "an element of \"entries\" is neither entry bytes nor a withheld marker".into(),
        }),
    }
}

fn read_items(r: &mut Reader<'_>) -> Result<Vec<ItemId>, BundleError> {
    let at = r.offset();
    let n = r.array("\"items\"")?;
    if n == 0 {
        return Err(BundleError::Schema {
            at,
            reason: "\"items\" is empty (omit it for a whole-case export)".into(),
        });
    }
    let mut out: Vec<ItemId> = Vec::new();
    for _ in 0..n {
        let at = r.offset();
        let id = ItemId(r.fixed::<16>("an item id")?);
        if out.last().is_some_and(|l| *l >= id) {
            return Err(BundleError::Schema {
                at,
                reason: "\"items\" must be strictly ascending".into(),
            });
        }
        out.push(id);
    }
    Ok(out)
}

fn read_agencies(r: &mut Reader<'_>) -> Result<Vec<BundleAgency>, BundleError> {
    let n = r.array("\"agencies\"")?;
    let mut out: Vec<BundleAgency> = Vec::new();
    for _ in 0..n {
        let at = r.offset();
        let count = r.map("an agency")?;
        let (mut name, mut agency, mut country) = (None, None, None);
        let seen = r.members(count, &AGENCY_KEYS, "an agency", |r, k| {
            match k {
                0 => name = Some(r.text("an agency's name")?.to_owned()),
                1 => agency = Some(AgencyId(r.fixed::<32>("an agency's key")?)),
                _ => country = Some(r.text("an agency's country")?.to_owned()),
            }
            Ok::<(), BundleError>(())
        })?;
        let (Some(name), Some(agency), Some(country)) = (name, agency, country) else {
            let missing = AGENCY_KEYS
                .iter()
                .zip(&seen)
                .find(|(_, s)| !**s)
                .map_or("a member", |(k, _)| *k);
            return Err(BundleError::Schema {
                at,
                reason: format!("an agency has no {missing:?}"),
            });
        };
        if out.last().is_some_and(|l| l.agency >= agency) {
            return Err(BundleError::Schema {
                at,
                reason: "\"agencies\" must be strictly ascending by agency".into(),
            });
        }
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(BundleError::Schema {
                at,
                reason: format!("{country:?} is not an ISO 3166-1 alpha-2 code"),
            });
        }
        out.push(BundleAgency {
            agency,
            name,
            country,
        });
    }
    Ok(out)
}

/// A defect in the protected header's byte string head means another kind
/// of file (SPEC.md 10.5 step 1); a file that ends inside it is truncated.
fn not_a_protected_header(e: BundleError) -> BundleError {
    match e {
        BundleError::Truncated { .. } => e,
        _ => BundleError::NotABundle(
            "the COSE_Sign1 array does not start with a protected header byte string".into(),
        ),
    }
}

fn check_protected(protected: &[u8]) -> Result<AgencyId, BundleError> {
    // The header is fixed except for the kid, which is its last 32 bytes.
    if protected.len() >= 32 {
        let mut kid = [0u8; 32];
        kid.copy_from_slice(&protected[protected.len() - 32..]);
        let kid = AgencyId(kid);
        if protected == bundle_protected_header(&kid).as_slice() {
            return Ok(kid);
        }
        if protected == crate::entry::protected_header(&kid).as_slice() {
            return Err(BundleError::NotABundle(
                "this is a single Custodia entry (content type application/custodia-entry+cbor), not a bundle".into(),
            ));
        }
    }
    Err(BundleError::NotABundle(format!(
        "the signed header is not a Custodia bundle header (alg EdDSA, content type {BUNDLE_CONTENT_TYPE}, kid)"
    )))
}

/// A short description of what a file that is not a bundle starts with.
fn describe_start(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let kind = if bytes.starts_with(b"%PDF") {
        " (a PDF document)"
    } else if bytes.starts_with(b"PK\x03\x04") {
        " (a ZIP archive)"
    } else if bytes.starts_with(b"{") || bytes.starts_with(b"[") {
        " (JSON or other text)"
    } else if bytes.starts_with(b"<") {
        " (HTML or XML)"
    } else if bytes.iter().take(64).all(|b| b.is_ascii()) {
        " (text)"
    } else {
        ""
    };
    format!(
        "it does not start with the COSE_Sign1 tag 18 (byte d2); it starts with {}{kind}",
        head.join(" ")
    )
}

/// What a bundle holds besides its entries, for [`write()`].
#[derive(Debug, Clone)]
pub struct Header {
    /// The case.
    pub case: CaseId,
    /// The items of a selective export (strictly ascending), or None.
    pub items: Option<Vec<ItemId>>,
    /// Equivocation proofs.
    pub proofs: Vec<EquivocationProof>,
    /// The agencies (strictly ascending by key).
    pub agencies: Vec<BundleAgency>,
    /// Export time, ms since the Unix epoch.
    pub exported_at: u64,
    /// The key logs to carry, each as its statements' exact bytes in log
    /// order, strictly ascending by agency (SPEC.md §10.1): `Some` writes
    /// a version 2 bundle, `None` a version 1 bundle (without `"keys"`).
    pub keys: Option<Vec<Vec<Vec<u8>>>>,
    /// Whether the logs of `keys` are key histories that hold statements a
    /// recovery superseded ([`crate::keylog::KeyLog::history`]): a version
    /// 3 bundle.
    pub key_histories: bool,
}

/// Writes and signs a bundle. `elements` must be in dependency order; the
/// exporter is `signer`. The payload is built once, in place: the
/// Sig_structure and the bundle share its bytes, so the output is the only
/// large allocation.
pub fn write(signer: &Identity, header: &Header, elements: &[Element<'_>]) -> Vec<u8> {
    const ROOM: usize = 128;
    let kid = signer.agency();
    let protected = bundle_protected_header(&kid);
    let size: usize = elements
        .iter()
        .map(|e| match e {
            Element::Entry(b) => b.len() + 5,
            Element::Withheld(_) => 80,
        })
        .sum::<usize>()
        + header
            .keys
            .iter()
            .flatten()
            .flatten()
            .map(|s| s.len() + 5)
            .sum::<usize>();
    let mut buf = Vec::with_capacity(ROOM + size + 1024 + 66);
    buf.resize(ROOM, 0);
    // The payload, keys in deterministic order.
    let members = 7 + u64::from(header.items.is_some()) + u64::from(header.keys.is_some());
    write_head(&mut buf, MAP, members);
    write_text(&mut buf, "v");
    write_head(
        &mut buf,
        0,
        match (&header.keys, header.key_histories) {
            (Some(_), true) => BUNDLE_VERSION_3,
            (Some(_), false) => BUNDLE_VERSION,
            (None, _) => BUNDLE_VERSION_1,
        },
    );
    write_text(&mut buf, "case");
    write_bytes(&mut buf, &header.case.0);
    if let Some(keys) = &header.keys {
        write_text(&mut buf, "keys");
        write_head(&mut buf, ARRAY, keys.len() as u64);
        for log in keys {
            write_head(&mut buf, ARRAY, log.len() as u64);
            for s in log {
                write_bytes(&mut buf, s);
            }
        }
    }
    if let Some(items) = &header.items {
        write_text(&mut buf, "items");
        write_head(&mut buf, ARRAY, items.len() as u64);
        for i in items {
            write_bytes(&mut buf, &i.0);
        }
    }
    write_text(&mut buf, "proofs");
    write_head(&mut buf, ARRAY, header.proofs.len() as u64);
    for p in &header.proofs {
        write_head(&mut buf, ARRAY, 2);
        write_bytes(&mut buf, &p.0);
        write_bytes(&mut buf, &p.1);
    }
    write_text(&mut buf, "entries");
    write_head(&mut buf, ARRAY, elements.len() as u64);
    for e in elements {
        match e {
            Element::Entry(b) => write_bytes(&mut buf, b),
            Element::Withheld(w) => {
                write_head(&mut buf, ARRAY, 3);
                write_bytes(&mut buf, &w.author.0);
                write_head(&mut buf, 0, w.seq);
                write_bytes(&mut buf, &w.id.0);
            }
        }
    }
    write_text(&mut buf, "agencies");
    write_head(&mut buf, ARRAY, header.agencies.len() as u64);
    for a in &header.agencies {
        write_head(&mut buf, MAP, 3);
        write_text(&mut buf, "name");
        write_text(&mut buf, &a.name);
        write_text(&mut buf, "agency");
        write_bytes(&mut buf, &a.agency.0);
        write_text(&mut buf, "country");
        write_text(&mut buf, &a.country);
    }
    write_text(&mut buf, "exporter");
    write_bytes(&mut buf, &kid.0);
    write_text(&mut buf, "exported-at");
    write_head(&mut buf, 0, header.exported_at);
    let payload_len = (buf.len() - ROOM) as u64;

    // Sign ["Signature1", protected, h'', payload] with the payload in place.
    let sig_prefix = sig_structure_prefix(&protected, &[], payload_len);
    let start = ROOM - sig_prefix.len();
    buf[start..ROOM].copy_from_slice(&sig_prefix);
    let signature = signer.sign(&buf[start..]);

    // Then the envelope: 18([protected, {}, payload, signature]).
    let mut prefix = vec![0xD2, 0x84];
    write_bytes(&mut prefix, &protected);
    prefix.push(0xA0);
    write_head(&mut prefix, BYTES, payload_len);
    let start = ROOM - prefix.len();
    buf[start..ROOM].copy_from_slice(&prefix);
    write_bytes(&mut buf, &signature);
    buf.drain(..start);
    buf
}
