//! Entries: tagged COSE_Sign1 objects (RFC 9052 §4.2) signed with Ed25519.
//!
//! An entry is kept as the exact bytes its author signed. Decoding checks
//! rules V1–V8 of the spec (everything that can be checked from the bytes
//! alone); the case-dependent rules live in [`crate::Validator`].
//!
//! ```
//! use custodia_protocol::{Body, CaseOpened, Entry, Identity, Payload, Tlp};
//! let alpha = Identity::from_seed([1; 32]);
//! let payload = Payload::genesis(alpha.agency(), 1_795_000_000_000, Tlp::Amber, CaseOpened {
//!     title: "Operation Lantern".into(), reference: "NBI-2026-0042".into(),
//!     jurisdiction: Some("PH".into()), name: "NBI Cybercrime Division".into(), country: "PH".into(),
//! });
//! let entry = Entry::sign(&alpha, &payload);
//! let again = Entry::decode(entry.bytes()).unwrap();
//! assert_eq!(again.id(), entry.id());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::Value;
use serde::{Deserialize, Serialize};

use crate::body::{Body, CaseOpened, CustodyAction};
use crate::codec::{self, CodecError};
use crate::cose::{sig_structure_with_aad, CoseSign1, COSE_ALG_EDDSA, COSE_SIGN1_TAG};
use crate::error::{RejectKind, Rejection};
use crate::identity::Identity;
use crate::ids::{AgencyId, CaseId, EntryId};
use crate::signature;
use crate::tlp::Tlp;

/// Content type of the COSE protected header (RFC 9052 §3.1, label 3).
pub const CONTENT_TYPE: &str = "application/custodia-entry+cbor";
/// The largest entry accepted, in bytes (V1).
pub const MAX_ENTRY_SIZE: usize = 65_536;
/// Format version 1: entries signed by the author's agency key (alg -8,
/// the kid is the agency id).
pub const FORMAT_VERSION: u64 = 1;
/// Format version 2: entries signed by the key that acted, an officer or
/// node key certified in the author's key log (alg -19, the kid is that
/// key; the payload cites the log's prefix in `keys`, SPEC.md §5.7).
pub const FORMAT_VERSION_2: u64 = 2;
/// The COSE algorithm of a version 2 entry: Ed25519 (RFC 9864).
pub(crate) const ALG_ED25519: i128 = -19;
/// At most this many references per entry.
pub const MAX_REFS: usize = 64;
/// At most this many recipients of a RED entry.
pub const MAX_RECIPIENTS: usize = 64;
/// At most this many heads per witness.
pub const MAX_WITNESS_HEADS: usize = 256;

/// What an entry says: the signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Format version: 1 or 2 ([`FORMAT_VERSION_2`]).
    pub v: u64,
    /// The case; absent only in the genesis entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseId>,
    /// The author: its agency id. In version 1 it is the COSE kid; in
    /// version 2 the kid is a key certified in this agency's key log.
    pub author: AgencyId,
    /// Version 2 only: how many statements of the author's key log the
    /// entry was made under (at least 1); the kid's status is read there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// The author's sequence number in this case, from 0.
    pub seq: u64,
    /// The author's previous entry in this case; absent iff seq = 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<EntryId>,
    /// Other authors' entries seen, ascending.
    pub refs: Vec<EntryId>,
    /// The signer's asserted time, in ms since the Unix epoch (UTC).
    pub time: u64,
    /// TLP 2.0 handling label.
    pub tlp: Tlp,
    /// Recipients, iff RED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<AgencyId>>,
    /// What the entry says.
    pub body: Body,
}

impl Payload {
    /// A genesis payload: opens a case.
    pub fn genesis(author: AgencyId, time: u64, tlp: Tlp, opened: CaseOpened) -> Self {
        Payload {
            v: FORMAT_VERSION,
            keys: None,
            case: None,
            author,
            seq: 0,
            prev: None,
            refs: Vec::new(),
            time,
            tlp,
            to: None,
            body: Body::CaseOpened(opened),
        }
    }

    /// Whether this is a genesis (case-opening) payload.
    pub fn is_genesis(&self) -> bool {
        self.case.is_none()
    }

    /// A genesis payload of format version 2, made under the first
    /// `keys` statements of the author's key log.
    pub fn genesis_v2(
        author: AgencyId,
        keys: u64,
        time: u64,
        tlp: Tlp,
        opened: CaseOpened,
    ) -> Self {
        Payload {
            v: FORMAT_VERSION_2,
            keys: Some(keys),
            ..Payload::genesis(author, time, tlp, opened)
        }
    }

    /// Context-free schema checks beyond what the CDDL types give (V6).
    fn check_schema(&self) -> Result<(), String> {
        match (self.v, self.keys) {
            (FORMAT_VERSION, Some(_)) => {
                return Err("\"keys\" is only allowed in format version 2".into())
            }
            (FORMAT_VERSION_2, None) => {
                return Err("\"keys\" is required in format version 2".into())
            }
            (FORMAT_VERSION_2, Some(0)) => {
                return Err("\"keys\" is at least 1 (the inception)".into())
            }
            _ => {}
        }
        let genesis = self.case.is_none();
        let opens = matches!(self.body, Body::CaseOpened(_));
        if genesis != opens {
            return Err(if genesis {
                "an entry without \"case\" must be a case-opened genesis".into()
            } else {
                "a case-opened body is only allowed in a genesis entry (without \"case\")".into()
            });
        }
        if genesis && (self.seq != 0 || !self.refs.is_empty()) {
            return Err("a genesis entry has seq 0 and no refs".into());
        }
        if self.prev.is_some() != (self.seq > 0) {
            return Err("\"prev\" must be present exactly when seq > 0".into());
        }
        strictly_ascending(&self.refs, MAX_REFS, "refs")?;
        check_recipients(self.tlp, self.to.as_deref(), "entry")?;
        match &self.body {
            Body::CaseOpened(c) => {
                country(&c.country)?;
                if let Some(j) = &c.jurisdiction {
                    country(j)?;
                }
            }
            Body::MemberAdded(m) => country(&m.country)?,
            Body::Custody(ev) => {
                let a = ev.action;
                let want = |present: bool, cond: bool, name: &str| {
                    if present != cond {
                        Err(format!(
                            "\"{name}\" must be present exactly when action is {}",
                            match name {
                                "to" => "transferred",
                                "copy" => "copied",
                                _ => "received",
                            }
                        ))
                    } else {
                        Ok(())
                    }
                };
                want(ev.to.is_some(), a == CustodyAction::Transferred, "to")?;
                want(
                    ev.transfer.is_some(),
                    a == CustodyAction::Received,
                    "transfer",
                )?;
                want(
                    ev.accepted.is_some(),
                    a == CustodyAction::Received,
                    "accepted",
                )?;
                want(ev.copy.is_some(), a == CustodyAction::Copied, "copy")?;
                if ev.accepted == Some(false) && ev.reason.is_none() {
                    return Err("a rejected receipt must give a \"reason\"".into());
                }
            }
            Body::Witness(w) => {
                if w.heads.is_empty() {
                    return Err("a witness names at least one head".into());
                }
                let authors: Vec<AgencyId> = w.heads.iter().map(|h| h.0).collect();
                strictly_ascending(&authors, MAX_WITNESS_HEADS, "witness heads")?;
            }
            Body::HandlingChanged(h) => check_recipients(h.tlp, h.to.as_deref(), "handling")?,
            _ => {}
        }
        Ok(())
    }
}

fn check_recipients(tlp: Tlp, to: Option<&[AgencyId]>, what: &str) -> Result<(), String> {
    match (tlp, to) {
        (Tlp::Red, Some(to)) if !to.is_empty() => strictly_ascending(to, MAX_RECIPIENTS, "to"),
        (Tlp::Red, _) => Err(format!("a RED {what} must name its recipients in \"to\"")),
        (_, Some(_)) => Err(format!("\"to\" is only allowed on a RED {what}")),
        (_, None) => Ok(()),
    }
}

fn strictly_ascending<T: Ord>(xs: &[T], max: usize, what: &str) -> Result<(), String> {
    if xs.len() > max {
        return Err(format!(
            "{what} has {} members, over the limit of {max}",
            xs.len()
        ));
    }
    if xs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{what} must be strictly ascending"));
    }
    Ok(())
}

fn country(c: &str) -> Result<(), String> {
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "{c:?} is not an ISO 3166-1 alpha-2 code (two capital letters)"
        ))
    }
}

/// A decoded, signature-checked entry, holding the exact signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    bytes: Arc<[u8]>,
    id: EntryId,
    payload: Arc<Payload>,
}

/// A decoded entry whose signature has not been checked yet, for batch
/// verification. Turn it into an [`Entry`] with [`Unverified::verify`] or
/// after checking [`Unverified::signed_parts`] in a batch.
#[derive(Debug, Clone)]
pub struct Unverified {
    entry: Entry,
    /// Where the protected header's byte string (head and content) ends
    /// in the entry's bytes; it starts at 2, after the tag and the array
    /// head.
    protected_end: usize,
    /// The payload's byte string, head and content, in the entry's bytes.
    payload: std::ops::Range<usize>,
    signature: [u8; 64],
}

/// The Sig_structure's array head and context string `"Signature1"`.
const SIG_STRUCTURE_START: &[u8] = b"\x84\x6ASignature1";
/// The Sig_structure's empty external_aad, `h''`.
const EMPTY_AAD: &[u8] = &[0x40];

impl Unverified {
    /// The Sig_structure the signature covers, in the four parts it is
    /// made of: its start, the protected header's byte string, the empty
    /// external_aad and the payload's byte string. The two byte strings
    /// are the entry's own bytes (heads included), not copies: an entry is
    /// deterministic CBOR, so their heads are the ones the Sig_structure
    /// has.
    pub fn signed_parts(&self) -> [&[u8]; 4] {
        let b = self.entry.bytes();
        [
            SIG_STRUCTURE_START,
            &b[2..self.protected_end],
            EMPTY_AAD,
            &b[self.payload.clone()],
        ]
    }

    /// The Sig_structure bytes the signature covers, in one buffer.
    pub fn signed_message(&self) -> Vec<u8> {
        self.signed_parts().concat()
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The author's agency id.
    pub fn author(&self) -> AgencyId {
        self.entry.payload.author
    }

    /// The key the signature is checked with: the kid (the author's agency
    /// id in version 1, a certified key in version 2).
    pub fn signer(&self) -> AgencyId {
        self.entry.signer()
    }

    /// Checks the signature (V8).
    pub fn verify(self) -> Result<Entry, Rejection> {
        if signature::verify_parts(&self.entry.signer(), &self.signed_parts(), &self.signature) {
            Ok(self.entry)
        } else {
            Err(Rejection::new(
                Some(self.entry.id),
                RejectKind::BadSignature,
            ))
        }
    }

    /// Accepts the entry after its signature was checked elsewhere (a batch).
    pub fn assume_verified(self) -> Entry {
        self.entry
    }
}

impl Entry {
    /// Signs a payload as a new entry: of version 1 with the author's
    /// agency key (`author` is the payload's author), of version 2 with
    /// the certified key that acts (its public key becomes the kid).
    pub fn sign(author: &Identity, payload: &Payload) -> Entry {
        Self::sign_with(payload, &author.agency(), |m| author.sign(m))
    }

    /// Signs a payload with a signer that is not an [`Identity`] in memory
    /// (a key in a token): `kid` is its public key, `sign` signs the
    /// Sig_structure with pure Ed25519.
    pub fn sign_with(
        payload: &Payload,
        kid: &AgencyId,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> Entry {
        let protected = protected_header_of(payload.v, kid);
        let payload_bytes = codec::to_vec(payload);
        let message = sig_structure(&protected, &payload_bytes);
        let signature = sign(&message);
        let outer = Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(BTreeMap::new()),
            Value::Bytes(payload_bytes),
            Value::Bytes(signature.to_vec()),
        ]);
        let mut bytes = vec![COSE_SIGN1_TAG];
        bytes.extend_from_slice(&codec::to_vec(&outer));
        Entry {
            id: EntryId::of(&bytes),
            bytes: bytes.into(),
            payload: Arc::new(payload.clone()),
        }
    }

    /// Decodes and checks an entry (rules V1–V8).
    pub fn decode(bytes: &[u8]) -> Result<Entry, Rejection> {
        Self::decode_unverified(bytes)?.verify()
    }

    /// Decodes and checks many entries (V1–V8), verifying their signatures
    /// in one batch (SPEC.md §3.3): the verdicts are those of
    /// [`Entry::decode`] on each, in the same order, at a fraction of the
    /// cost. Callers that use several threads give each thread a slice.
    pub fn decode_many<B: AsRef<[u8]>>(all: &[B]) -> Vec<Result<Entry, Rejection>> {
        Self::decode_batch(all)
            .into_iter()
            .map(|d| match d? {
                (entry, true) => Ok(entry),
                (entry, false) => Err(Rejection::new(Some(entry.id), RejectKind::BadSignature)),
            })
            .collect()
    }

    /// Decodes many entries (V1–V7) and verifies their signatures (V8) in
    /// one batch, in order: each entry that decodes, with whether its
    /// signature verifies (a caller reporting a bad signature can still
    /// say what the entry claims), or why it did not decode.
    pub fn decode_batch<B: AsRef<[u8]>>(all: &[B]) -> Vec<Result<(Entry, bool), Rejection>> {
        let decoded: Vec<Result<Unverified, Rejection>> = all
            .iter()
            .map(|b| Self::decode_unverified(b.as_ref()))
            .collect();
        let mut batch = signature::Batch::with_capacity(decoded.len());
        for u in decoded.iter().flatten() {
            batch.push_parts(&u.signer(), &u.signed_parts(), &u.signature);
        }
        let mut verdicts = batch.verify().into_iter();
        decoded
            .into_iter()
            .map(|d| Ok((d?.entry, verdicts.next().unwrap_or(false))))
            .collect()
    }

    /// Decodes an entry and checks V1–V7, leaving the signature (V8).
    ///
    /// Honest entries take a fast path (`decode_plain`) that walks the
    /// bytes once and decodes the payload straight into its type; anything
    /// it is not sure of goes through the strict decoder, which gives every
    /// refusal and its reason. Both accept exactly the same entries.
    pub fn decode_unverified(bytes: &[u8]) -> Result<Unverified, Rejection> {
        let id = EntryId::of(bytes);
        match decode_plain(bytes, id) {
            Some(u) => Ok(u),
            None => Self::decode_strict(bytes, id),
        }
    }

    /// The strict decoder alone, without the fast path: the verdicts of
    /// [`Entry::decode_unverified`], at the cost of a [`Value`] tree (for
    /// benchmarks that compare the two).
    #[doc(hidden)]
    pub fn decode_unverified_strict(bytes: &[u8]) -> Result<Unverified, Rejection> {
        Self::decode_strict(bytes, EntryId::of(bytes))
    }

    /// The strict decoder: V1–V7 through a [`Value`] tree, each rule in
    /// the order SPEC.md §8.2 gives.
    pub(crate) fn decode_strict(bytes: &[u8], id: EntryId) -> Result<Unverified, Rejection> {
        let fail = |kind| Rejection::new(Some(id), kind);
        if bytes.len() > MAX_ENTRY_SIZE {
            return Err(fail(RejectKind::Oversize { size: bytes.len() }));
        }
        // V2 checks the structure before V3 looks at the encoding (SPEC.md
        // §8.2): a long-form tag 18 is tag 18, and non-canonical (V3).
        let Some((short_tag, rest)) = split_tag(bytes) else {
            return Err(fail(RejectKind::Malformed(
                "does not start with the COSE_Sign1 tag 18 (0xD2)".into(),
            )));
        };
        let outer = codec::decode_value(rest).map_err(|e| fail(codec_kind(e, "entry")))?;
        let CoseSign1 {
            protected,
            unprotected,
            payload: payload_bytes,
            signature,
            ..
        } = CoseSign1::from_value(outer).map_err(|e| {
            fail(RejectKind::Malformed(match e {
                crate::cose::CoseError::Structure(m) => m,
                other => other.to_string(),
            }))
        })?;
        if !unprotected.is_empty() {
            return Err(fail(RejectKind::Malformed(
                "the unprotected header is not empty".into(),
            )));
        }
        let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| {
            fail(RejectKind::Malformed(format!(
                "the signature is {} bytes, not 64",
                signature.len()
            )))
        })?;
        let header =
            codec::decode_value(&protected).map_err(|e| fail(codec_kind(e, "protected header")))?;
        let payload_value =
            codec::decode_value(&payload_bytes).map_err(|e| fail(codec_kind(e, "payload")))?;
        if !matches!(header, Value::Map(_)) {
            return Err(fail(RejectKind::Malformed(
                "the protected header is not a map".into(),
            )));
        }
        if !matches!(payload_value, Value::Map(_)) {
            return Err(fail(RejectKind::Malformed(
                "the payload is not a map".into(),
            )));
        }
        // V3, in the order entry, protected header, payload. The entry's
        // four items are known byte strings and an empty map, so its
        // deterministic encoding is written out and compared.
        if !short_tag || !is_canonical_cose(rest, &protected, &payload_bytes, &signature) {
            return Err(fail(RejectKind::NonCanonical("entry")));
        }
        codec::check_canonical(&header, &protected)
            .map_err(|e| fail(codec_kind(e, "protected header")))?;
        codec::check_canonical(&payload_value, &payload_bytes)
            .map_err(|e| fail(codec_kind(e, "payload")))?;
        let (Value::Map(header), Value::Map(payload_map)) = (header, &payload_value) else {
            return Err(fail(RejectKind::Malformed(
                "the protected header or the payload is not a map".into(),
            )));
        };
        let (alg, kid) = check_header(&header).map_err(|e| fail(RejectKind::BadHeader(e)))?;
        let version = match payload_map.get(&Value::Text("v".into())) {
            Some(Value::Integer(v)) if *v == 1 || *v == 2 => *v as u64,
            Some(Value::Integer(v)) if *v >= 0 => {
                return Err(fail(RejectKind::UnsupportedVersion(
                    u64::try_from(*v).unwrap_or(u64::MAX),
                )))
            }
            _ => {
                return Err(fail(RejectKind::Schema(
                    "\"v\" must be the integer 1 or 2".into(),
                )))
            }
        };
        // V4, the part that needs the version: each version has one alg.
        let want = alg_of(version);
        if alg != want {
            return Err(fail(RejectKind::BadHeader(format!(
                "alg is {alg}, but an entry of format version {version} has alg {want}"
            ))));
        }
        if contains_null(&payload_value) {
            return Err(fail(RejectKind::Schema(
                "null is not allowed: an optional member without a value is omitted".into(),
            )));
        }
        let payload: Payload = codec::from_value(payload_value)
            .map_err(|e| fail(RejectKind::Schema(e.to_string())))?;
        payload
            .check_schema()
            .map_err(|e| fail(RejectKind::Schema(e)))?;
        if payload.v == FORMAT_VERSION && payload.author != kid {
            return Err(fail(RejectKind::AuthorMismatch {
                payload: payload.author,
                kid,
            }));
        }
        // The entry is deterministic (checked above), so it is laid out as
        // 0xD2 0x84, the protected header's byte string, 0xA0, the
        // payload's byte string, then the signature's.
        let protected_end = 2 + bstr_len(protected.len());
        let payload_start = protected_end + 1;
        let payload_end = payload_start + bstr_len(payload_bytes.len());
        Ok(Unverified {
            entry: Entry {
                bytes: bytes.into(),
                id,
                payload: Arc::new(payload),
            },
            protected_end,
            payload: payload_start..payload_end,
            signature,
        })
    }

    /// The exact signed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The entry id (SHA-256 of the bytes).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The author.
    pub fn author(&self) -> AgencyId {
        self.payload.author
    }

    /// The key that signed the entry: the protected header's kid. The
    /// author's agency id in format version 1; in version 2 a key the
    /// author's key log certifies.
    pub fn signer(&self) -> AgencyId {
        // Every entry's protected header is the 72 bytes of SPEC.md §5.2,
        // its byte string at offset 2 with a 2-byte head, the kid last.
        let mut kid = [0; 32];
        if let Some(b) = self.bytes.get(44..76) {
            kid.copy_from_slice(b);
        }
        AgencyId(kid)
    }

    /// The format version (1 or 2).
    pub fn version(&self) -> u64 {
        self.payload.v
    }

    /// The author's sequence number.
    pub fn seq(&self) -> u64 {
        self.payload.seq
    }

    /// The case this entry belongs to (its own id for a genesis).
    pub fn case_id(&self) -> CaseId {
        self.payload.case.unwrap_or(self.id)
    }

    /// Whether the agency may see this entry's content: everyone in the case
    /// unless RED, when only the author and the named recipients may.
    pub fn visible_to(&self, agency: &AgencyId) -> bool {
        match (&self.payload.tlp, &self.payload.to) {
            (Tlp::Red, Some(to)) => *agency == self.payload.author || to.contains(agency),
            (Tlp::Red, None) => *agency == self.payload.author,
            _ => true,
        }
    }
}

/// The length of a byte string of `n` bytes in deterministic CBOR, head
/// included.
fn bstr_len(n: usize) -> usize {
    n + match n {
        0..=23 => 1,
        24..=0xFF => 2,
        0x100..=0xFFFF => 3,
        _ => 5,
    }
}

/// The protected header every entry of a version has, up to its kid's 32
/// bytes.
fn protected_header_start(version: u64) -> &'static [u8] {
    static START: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    let starts = START.get_or_init(|| {
        [FORMAT_VERSION, FORMAT_VERSION_2].map(|v| {
            let mut h = protected_header_of(v, &AgencyId([0; 32]));
            h.truncate(h.len() - 32);
            h
        })
    });
    &starts[usize::from(version == FORMAT_VERSION_2)]
}

/// The COSE algorithm of a format version: EdDSA (-8) in version 1,
/// Ed25519 (-19, RFC 9864) in version 2.
fn alg_of(version: u64) -> i128 {
    if version == FORMAT_VERSION_2 {
        ALG_ED25519
    } else {
        COSE_ALG_EDDSA
    }
}

/// A byte string's content at `*at`, advancing past it (None unless its
/// head is in the shortest form).
fn bstr(bytes: &[u8], at: &mut usize) -> Option<std::ops::Range<usize>> {
    let (major, len) = codec::plain_head(bytes, at)?;
    let start = *at;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (major == 2 && end <= bytes.len()).then(|| {
        *at = end;
        start..end
    })
}

/// The fast path of [`Entry::decode_unverified`]: an entry laid out as its
/// deterministic encoding, `0xD2 [protected, {}, payload, signature]`, with
/// the one protected header an entry can have, a payload that
/// [`codec::is_plain_deterministic`] passes and that decodes straight into
/// a [`Payload`] whose encoding is those very bytes, of version 1, whose
/// author is the kid and which passes V6. No [`Value`] tree is built for
/// the entry or its header, and the payload's tree only to re-encode it.
///
/// The strict decoder accepts every entry this accepts, with the same
/// payload: each step is one of its checks or implies it. None means "not
/// known here" (the strict decoder then says why, or accepts it).
fn decode_plain(bytes: &[u8], id: EntryId) -> Option<Unverified> {
    if bytes.len() > MAX_ENTRY_SIZE || bytes.get(..2) != Some(&[COSE_SIGN1_TAG, 0x84][..]) {
        return None;
    }
    let mut at = 2;
    let protected = bstr(bytes, &mut at)?;
    let protected_end = at;
    if bytes.get(at) != Some(&0xA0) {
        return None;
    }
    at += 1;
    let payload_start = at;
    let payload = bstr(bytes, &mut at)?;
    let payload_end = at;
    let sig = bstr(bytes, &mut at)?;
    if at != bytes.len() {
        return None;
    }
    let signature: [u8; 64] = bytes[sig].try_into().ok()?;
    let header = &bytes[protected];
    let version = match header.get(2) {
        Some(0x27) => FORMAT_VERSION,
        Some(0x32) => FORMAT_VERSION_2,
        _ => return None,
    };
    let kid = header.strip_prefix(protected_header_start(version))?;
    let kid = AgencyId(kid.try_into().ok()?);
    let payload_bytes = &bytes[payload];
    if payload_bytes.first()? >> 5 != 5 || !codec::is_plain_deterministic(payload_bytes) {
        return None;
    }
    let payload: Payload = codec::from_plain_slice(payload_bytes)?;
    // The typed value must encode back to these bytes: serde alone would
    // take a byte string for a text string (see `codec::from_value`).
    if payload.v != version
        || (version == FORMAT_VERSION && payload.author != kid)
        || codec::to_vec(&payload) != payload_bytes
        || payload.check_schema().is_err()
    {
        return None;
    }
    Some(Unverified {
        entry: Entry {
            bytes: bytes.into(),
            id,
            payload: Arc::new(payload),
        },
        protected_end,
        payload: payload_start..payload_end,
        signature,
    })
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(contains_null),
        Value::Map(m) => m.iter().any(|(k, v)| contains_null(k) || contains_null(v)),
        _ => false,
    }
}

/// Splits off the leading tag head if it is tag 18, in any head width;
/// returns whether it was the one-byte form 0xD2.
fn split_tag(bytes: &[u8]) -> Option<(bool, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first == COSE_SIGN1_TAG {
        return Some((true, rest));
    }
    let width = match first {
        0xD8 => 1,
        0xD9 => 2,
        0xDA => 4,
        0xDB => 8,
        _ => return None,
    };
    let (arg, rest) = rest.split_at_checked(width)?;
    let value = arg.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    (value == 18).then_some((false, rest))
}

/// Whether `rest` is exactly `[protected, {}, payload, signature]` in
/// deterministic CBOR.
fn is_canonical_cose(rest: &[u8], protected: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    let mut want = Vec::with_capacity(rest.len());
    want.push(0x84);
    crate::codec::write_head(&mut want, crate::codec::BYTES, protected.len() as u64);
    want.extend_from_slice(protected);
    want.push(0xA0);
    crate::codec::write_head(&mut want, crate::codec::BYTES, payload.len() as u64);
    want.extend_from_slice(payload);
    crate::codec::write_head(&mut want, crate::codec::BYTES, signature.len() as u64);
    want.extend_from_slice(signature);
    want == rest
}

fn codec_kind(e: CodecError, part: &'static str) -> RejectKind {
    match e {
        CodecError::NonCanonical => RejectKind::NonCanonical(part),
        CodecError::Malformed(m) => RejectKind::Malformed(format!("{part}: {m}")),
        CodecError::Schema(m) => RejectKind::Schema(format!("{part}: {m}")),
    }
}

/// The deterministic protected header of a version 1 entry,
/// {1: -8, 3: CONTENT_TYPE, 4: kid}.
pub fn protected_header(kid: &AgencyId) -> Vec<u8> {
    protected_header_of(FORMAT_VERSION, kid)
}

/// The deterministic protected header of an entry of a format version:
/// {1: -8 or -19, 3: CONTENT_TYPE, 4: kid}.
pub fn protected_header_of(version: u64, kid: &AgencyId) -> Vec<u8> {
    let mut m = BTreeMap::new();
    m.insert(Value::Integer(1), Value::Integer(alg_of(version)));
    m.insert(Value::Integer(3), Value::Text(CONTENT_TYPE.into()));
    m.insert(Value::Integer(4), Value::Bytes(kid.0.to_vec()));
    codec::to_vec(&Value::Map(m))
}

/// V4 on the header alone: its alg (-8 or -19; which one the version
/// needs is checked once the version is read) and its kid.
fn check_header(h: &BTreeMap<Value, Value>) -> Result<(i128, AgencyId), String> {
    if h.len() != 3 {
        return Err(format!(
            "{} parameters; exactly alg, content type and kid are required",
            h.len()
        ));
    }
    let alg = match h.get(&Value::Integer(1)) {
        Some(Value::Integer(a)) if *a == COSE_ALG_EDDSA || *a == ALG_ED25519 => *a,
        Some(other) => return Err(format!("alg is {other:?}, not EdDSA (-8) or Ed25519 (-19)")),
        None => return Err("alg (1) is missing".into()),
    };
    match h.get(&Value::Integer(3)) {
        Some(Value::Text(t)) if t == CONTENT_TYPE => {}
        _ => return Err(format!("content type (3) must be \"{CONTENT_TYPE}\"")),
    }
    match h.get(&Value::Integer(4)) {
        Some(Value::Bytes(k)) if k.len() == 32 => {
            let mut a = [0u8; 32];
            a.copy_from_slice(k);
            Ok((alg, AgencyId(a)))
        }
        Some(Value::Bytes(k)) => Err(format!("kid is {} bytes, not 32", k.len())),
        _ => Err("kid (4) must be a 32-byte string".into()),
    }
}

/// Sig_structure for COSE_Sign1 (RFC 9052 §4.4) with empty external_aad:
/// `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    sig_structure_with_aad(protected, &[], payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    }

    /// The entries of the spec's vectors, each with whether its vector
    /// expects every entry to be accepted.
    fn vector_entries() -> Vec<(Vec<u8>, bool)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/entries.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json");
        let mut out = Vec::new();
        for v in doc["vectors"].as_array().expect("vectors") {
            let valid = v["expect"] == "valid";
            for e in v["entries"].as_array().expect("entries") {
                if let Some(h) = e.as_str() {
                    out.push((unhex(h), valid));
                }
            }
        }
        out
    }

    fn files_in(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_file() {
                out.push(std::fs::read(e.path()).expect("readable"));
            }
        }
        out
    }

    /// The fast path gives exactly the strict decoder's verdict; returns
    /// whether it decided (accepted) the input itself.
    fn same_verdict(bytes: &[u8]) -> bool {
        let id = EntryId::of(bytes);
        let strict = Entry::decode_strict(bytes, id);
        let plain = decode_plain(bytes, id);
        if let Some(p) = &plain {
            let s = strict.as_ref().unwrap_or_else(|r| {
                panic!("the fast path accepted what V{} refuses: {r:?}", r.rule())
            });
            assert_eq!(p.entry, s.entry);
            assert_eq!(p.signature, s.signature);
            assert_eq!(p.signed_parts(), s.signed_parts());
        }
        let combined = Entry::decode_unverified(bytes);
        match (&combined, &strict) {
            (Ok(c), Ok(s)) => {
                assert_eq!(c.entry, s.entry);
                // The parts are the Sig_structure built from the COSE items.
                let cose = CoseSign1::decode(bytes).expect("a COSE_Sign1");
                assert_eq!(c.signed_message(), cose.to_be_signed(&[]));
            }
            (Err(c), Err(s)) => assert_eq!(c, s),
            _ => panic!("verdicts differ: {combined:?} against {strict:?}"),
        }
        plain.is_some()
    }

    #[test]
    fn the_fast_path_gives_the_strict_verdict_on_every_vector_seed_and_mutation() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let vectors = vector_entries();
        assert!(vectors.len() > 100);
        for (bytes, valid) in &vectors {
            let fast = same_verdict(bytes);
            // Every entry of a valid vector is honest: it takes the fast path.
            assert!(
                !valid || fast,
                "a valid vector's entry missed the fast path"
            );
        }
        let mut seeds = files_in(&root.join("fuzz/corpus/entry_decode"));
        seeds.extend(files_in(&root.join("tests/fuzz-regressions/entry_decode")));
        assert!(!seeds.is_empty());
        for s in &seeds {
            same_verdict(s);
        }
        // Every single-byte change of honest entries: most are refused,
        // some (a changed letter in a text) still decode.
        let mut decided = 0;
        for (bytes, _) in vectors.iter().filter(|(_, valid)| *valid).take(12) {
            for i in 0..bytes.len() {
                for change in [0x01u8, 0x20, 0x80, 0xFF] {
                    let mut m = bytes.clone();
                    m[i] ^= change;
                    decided += usize::from(same_verdict(&m));
                }
                let mut shorter = bytes.clone();
                shorter.remove(i);
                same_verdict(&shorter);
                let mut longer = bytes.clone();
                longer.insert(i, bytes[i]);
                same_verdict(&longer);
            }
        }
        assert!(decided > 0, "some mutations still decode, on the fast path");
    }

    /// Payloads the fast path must leave to the strict decoder, which
    /// refuses each with its own reason: an honest entry re-signed around
    /// a payload that is not deterministic CBOR.
    #[test]
    fn a_non_canonical_payload_is_refused_on_the_fast_path_too() {
        let alpha = Identity::from_seed([7; 32]);
        let payload = Payload::genesis(
            alpha.agency(),
            1_795_000_000_000,
            Tlp::Amber,
            CaseOpened {
                title: "T".into(),
                reference: "R".into(),
                jurisdiction: None,
                name: "N".into(),
                country: "PH".into(),
            },
        );
        let honest = codec::to_vec(&payload);
        // Re-sign arbitrary payload bytes as an entry of alpha's.
        let entry_of = |payload_bytes: &[u8]| {
            let protected = protected_header(&alpha.agency());
            let sig = alpha.sign(&sig_structure(&protected, payload_bytes));
            let outer = Value::Array(vec![
                Value::Bytes(protected),
                Value::Map(BTreeMap::new()),
                Value::Bytes(payload_bytes.to_vec()),
                Value::Bytes(sig.to_vec()),
            ]);
            let mut bytes = vec![COSE_SIGN1_TAG];
            bytes.extend_from_slice(&codec::to_vec(&outer));
            bytes
        };
        assert!(Entry::decode(&entry_of(&honest)).is_ok());
        // The payload is a map whose first key is "v" (0x61 0x76) with 1.
        assert_eq!(&honest[1..4], &[0x61, 0x76, 0x01]);
        let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
        // v: 1 as a two-byte integer.
        let mut m = honest.clone();
        m.splice(3..4, [0x18, 0x01]);
        variants.push(("non-minimal integer", m));
        // The map's length in a two-byte head.
        let mut m = honest.clone();
        let n = m[0] & 0x1F;
        m.splice(0..1, [0xB8, n]);
        variants.push(("non-minimal map length", m));
        // The same map, indefinite.
        let mut m = honest.clone();
        m[0] = 0xBF;
        m.push(0xFF);
        variants.push(("indefinite-length map", m));
        // "v" moved to the end: unsorted keys.
        let mut m = vec![honest[0]];
        m.extend_from_slice(&honest[4..]);
        m.extend_from_slice(&honest[1..4]);
        variants.push(("unsorted keys", m));
        // "v" twice: a duplicate key (the count says one more).
        let mut m = vec![honest[0] + 1];
        m.extend_from_slice(&honest[1..4]);
        m.extend_from_slice(&honest[1..]);
        variants.push(("duplicate key", m));
        // "v" written as an indefinite-length text.
        let mut m = honest.clone();
        m.splice(1..3, [0x7F, 0x61, 0x76, 0xFF]);
        variants.push(("indefinite-length text key", m));
        for (what, p) in variants {
            assert!(!codec::is_plain_deterministic(&p), "{what}");
            let bytes = entry_of(&p);
            assert!(
                decode_plain(&bytes, EntryId::of(&bytes)).is_none(),
                "{what} passed the fast path"
            );
            let err = Entry::decode(&bytes).expect_err(what);
            assert!(
                matches!(
                    err.kind,
                    RejectKind::NonCanonical("payload") | RejectKind::Malformed(_)
                ),
                "{what}: {:?}",
                err.kind
            );
            same_verdict(&bytes);
        }
    }
}
