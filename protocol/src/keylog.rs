//! Agency key logs (SPEC.md §3.4): an agency's append-only, hash-chained,
//! root-signed statements about its keys.
//!
//! The agency id stays the first root key (the inception's), so pins and
//! fingerprints keep their meaning; everything after it is a statement in
//! this log: a root rotation (pre-committed by digest, as KERI does), a
//! node or officer key certified, a key revoked, the agency's own profile.
//! A [`KeyStatement`] is one signed statement, checked from its bytes
//! alone (rules K1–K5); a [`KeyLog`] is one agency's chain of them, checked
//! as it grows (K6–K12), and answers what a key was at a position of the
//! log ([`KeyLog::status`]).
//!
//! Version 1 case entries do not cite key logs yet: this is the structure
//! the identity lifecycle is built on (docs/design/identity-lifecycle.md).
//!
//! ```
//! use custodia_protocol::keylog::{KeyLog, KeyStatement, Statement, StatementPayload};
//! use custodia_protocol::{Identity, KeyDigest, KeyId};
//! let root = Identity::from_seed([1; 32]);
//! let next = Identity::from_seed([2; 32]);
//! let inception = KeyStatement::sign(&root, &StatementPayload::inception(&root, &next, 1_795_000_000_000));
//! let log = KeyLog::from_inception(inception).unwrap();
//! assert_eq!(log.current_root(), KeyId(root.agency().0));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError, Value};
use crate::cose::{sig_structure_with_aad, CoseSign1, COSE_SIGN1_TAG};
use crate::identity::Identity;
use crate::ids::{AgencyId, KeyDigest, KeyId, StatementId};
use crate::signature;

/// Content type of a key statement's protected header (label 3).
pub const KEY_CONTENT_TYPE: &str = "application/custodia-key+cbor";
/// COSE algorithm id of Ed25519 (RFC 9864), fully specified; key
/// statements never use the polymorphic EdDSA (-8).
pub const ALG_ED25519: i64 = -19;
/// The largest key statement accepted, in bytes (K1).
pub const MAX_STATEMENT_SIZE: usize = 4096;
/// The longest text in a statement (names, service numbers), in bytes.
pub const MAX_STATEMENT_TEXT: usize = 256;
/// The most statements one agency's log holds (K6).
pub const MAX_LOG_LENGTH: u64 = 100_000;

/// A public key and its algorithm. Version 1 knows Ed25519 (-19) only; a
/// later algorithm (ML-DSA) is a new `alg` value, not a new format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// COSE algorithm id (-19).
    pub alg: i64,
    /// The key's bytes.
    #[serde(rename = "pub")]
    pub key: KeyId,
}

impl PublicKey {
    /// An Ed25519 key.
    pub fn ed25519(key: KeyId) -> Self {
        PublicKey {
            alg: ALG_ED25519,
            key,
        }
    }
}

/// A root key and the commitment to the one after it (inception and
/// rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// The root key from this statement on.
    pub root: PublicKey,
    /// SHA-256 of the next root key's bytes (pre-rotation).
    pub next: KeyDigest,
}

/// What a certified key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// The node: TLS, witness entries, what a node writes on its own.
    Node,
    /// One officer: that officer's case entries.
    Officer,
}

impl KeyRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Node => "node",
            KeyRole::Officer => "officer",
        }
    }
}

/// An officer, as the agency names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Officer {
    /// The officer's name.
    pub name: String,
    /// The officer's service number.
    pub number: String,
}

/// A key certified by the agency's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Certify {
    /// The key.
    pub key: PublicKey,
    /// What it may sign.
    pub role: KeyRole,
    /// Who holds it: present exactly when the role is officer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer: Option<Officer>,
    /// Entries it signs are dated at or after this (ms since the epoch).
    pub not_before: u64,
    /// Entries it signs are dated at or before this, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// Why a key was revoked (SPEC.md §3.4 gives what each means for entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevokeReason {
    /// Taken out of service; never out of the holder's control.
    Retired,
    /// Lost: someone else may hold it.
    Lost,
    /// Known or suspected to be in someone else's hands.
    Compromised,
}

impl RevokeReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Retired => "retired",
            RevokeReason::Lost => "lost",
            RevokeReason::Compromised => "compromised",
        }
    }
}

/// A certified key withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The key.
    pub key: KeyId,
    /// From when the agency no longer stands behind it (ms since the
    /// epoch); may be earlier than the statement.
    pub effective: u64,
    /// Why.
    pub reason: RevokeReason,
}

/// The agency's name and country, as it signs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The agency's name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// One statement about the agency's keys: exactly one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Statement {
    /// The first statement: the first root, whose key is the agency id.
    Inception(Root),
    /// A new root, signed by the key the previous root committed to.
    RotateRoot(Root),
    /// A node or officer key.
    Certify(Certify),
    /// A certified key withdrawn.
    Revoke(Revoke),
    /// The agency's own name and country.
    Profile(Profile),
}

impl Statement {
    /// The kind's wire name.
    pub fn kind(&self) -> &'static str {
        match self {
            Statement::Inception(_) => "inception",
            Statement::RotateRoot(_) => "rotate-root",
            Statement::Certify(_) => "certify",
            Statement::Revoke(_) => "revoke",
            Statement::Profile(_) => "profile",
        }
    }
}

/// What a key statement says: the signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementPayload {
    /// Format version, 1.
    pub v: u64,
    /// The agency whose log this is (its inception key).
    pub agency: AgencyId,
    /// Position in the log, from 0 (the inception).
    pub seq: u64,
    /// The previous statement's id; absent exactly when seq is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<StatementId>,
    /// The signer's asserted time, ms since the Unix epoch (UTC).
    pub time: u64,
    /// The statement.
    pub st: Statement,
}

impl StatementPayload {
    /// The inception of `root`'s log, committing to `next` as the next
    /// root.
    pub fn inception(root: &Identity, next: &Identity, time: u64) -> Self {
        StatementPayload {
            v: 1,
            agency: root.agency(),
            seq: 0,
            prev: None,
            time,
            st: Statement::Inception(Root {
                root: PublicKey::ed25519(key_of(root)),
                next: KeyDigest::of(&key_of(next)),
            }),
        }
    }

    /// The statement that follows the last of `log`.
    pub fn after(log: &KeyLog, time: u64, st: Statement) -> Self {
        StatementPayload {
            v: 1,
            agency: log.agency(),
            seq: log.len(),
            prev: Some(log.head()),
            time,
            st,
        }
    }

    /// The statement at position `seq` of `log`, following its first `seq`
    /// statements: the next one when `seq` is the log's length, or a
    /// recovery rotation at an earlier position (SPEC.md §3.4), whose
    /// `prev` is statement `seq - 1`. `None` for 0 (only the inception is
    /// there) or past the end of the log.
    pub fn at(log: &KeyLog, seq: u64, time: u64, st: Statement) -> Option<Self> {
        let before = usize::try_from(seq.checked_sub(1)?).ok()?;
        let prev = log.statements().get(before)?;
        Some(StatementPayload {
            v: 1,
            agency: log.agency(),
            seq,
            prev: Some(prev.id()),
            time,
            st,
        })
    }

    /// K5: what the types alone do not say.
    fn check_schema(&self) -> Result<(), String> {
        if self.v != 1 {
            return Err(format!("\"v\" is {}, this version knows 1", self.v));
        }
        if self.prev.is_some() != (self.seq > 0) {
            return Err("\"prev\" must be present exactly when seq > 0".into());
        }
        if matches!(self.st, Statement::Inception(_)) != (self.seq == 0) {
            return Err("the statement at seq 0, and only it, is the inception".into());
        }
        let alg = |k: &PublicKey| {
            if k.alg == ALG_ED25519 {
                Ok(())
            } else {
                Err(format!(
                    "key algorithm {} is not supported: version 1 knows Ed25519 (-19)",
                    k.alg
                ))
            }
        };
        match &self.st {
            Statement::Inception(r) | Statement::RotateRoot(r) => alg(&r.root)?,
            Statement::Certify(c) => {
                alg(&c.key)?;
                if c.officer.is_some() != (c.role == KeyRole::Officer) {
                    return Err(
                        "\"officer\" must be present exactly when the role is officer".into(),
                    );
                }
                if let Some(o) = &c.officer {
                    text(&o.name, "officer name")?;
                    text(&o.number, "service number")?;
                }
                if c.not_after.is_some_and(|a| a < c.not_before) {
                    return Err("\"not-after\" is before \"not-before\"".into());
                }
            }
            Statement::Revoke(_) => {}
            Statement::Profile(p) => {
                text(&p.name, "agency name")?;
                if !(p.country.len() == 2 && p.country.bytes().all(|b| b.is_ascii_uppercase())) {
                    return Err(format!(
                        "{:?} is not an ISO 3166-1 alpha-2 code (two capital letters)",
                        p.country
                    ));
                }
            }
        }
        Ok(())
    }
}

fn text(t: &str, what: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_STATEMENT_TEXT {
        return Err(format!(
            "the {what} is empty or over {MAX_STATEMENT_TEXT} bytes"
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("the {what} holds a control character"));
    }
    Ok(())
}

/// The key of an identity, as a key statement names it.
pub fn key_of(id: &Identity) -> KeyId {
    KeyId(id.agency().0)
}

/// Why a key statement, or its place in a log, is refused. Each variant
/// is a rule of SPEC.md §3.4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLogError {
    /// K1: over [`MAX_STATEMENT_SIZE`] bytes.
    #[error("K1: key statement of {0} bytes, over the limit of {MAX_STATEMENT_SIZE}")]
    Oversize(usize),
    /// K2: not a tagged COSE_Sign1 with an empty unprotected header and a
    /// 64-byte signature.
    #[error("K2: not a key statement: {0}")]
    Malformed(String),
    /// K3: not the deterministic encoding.
    #[error("K3: the {0} is not deterministically encoded")]
    NonCanonical(&'static str),
    /// K4: the protected header is not exactly {1: -19, 3: the content
    /// type, 4: a 32-byte kid}.
    #[error("K4: protected header: {0}")]
    BadHeader(String),
    /// K5: the payload does not follow the schema.
    #[error("K5: {0}")]
    Schema(String),
    /// K5: the signature does not verify with the kid.
    #[error("K5: the signature does not verify with the kid")]
    BadSignature,
    /// K6: another agency's statement, or the log is full.
    #[error("K6: {0}")]
    WrongLog(String),
    /// K7: a statement after a gap: the ones before it are missing.
    #[error("K7: statement {seq} arrived, but the log holds only {len}")]
    Gap {
        /// Its position.
        seq: u64,
        /// How many the log holds.
        len: u64,
    },
    /// K8: `prev` is not the id of the statement before it.
    #[error("K8: statement {seq} does not chain to statement {}", .seq - 1)]
    BrokenChain {
        /// Its position.
        seq: u64,
    },
    /// K9: signed by a key other than the one the rules require.
    #[error("K9: statement {seq} ({kind}) is signed by {signer}, not by {want}")]
    WrongSigner {
        /// Its position.
        seq: u64,
        /// Its kind.
        kind: &'static str,
        /// The key that signed it.
        signer: KeyId,
        /// What had to sign it.
        want: String,
    },
    /// K10: dated before the statement it follows.
    #[error("K10: statement {seq} is dated before statement {}", .seq - 1)]
    TimeReversed {
        /// Its position.
        seq: u64,
    },
    /// K11: certifies a key already named in the log, or revokes one the
    /// log never certified or revoked already.
    #[error("K11: statement {seq}: {what}")]
    BadKey {
        /// Its position.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// K12: two different statements at one position, both by the root in
    /// force: the root equivocated. Both statements are the proof.
    #[error("K12: two different statements at position {seq}, both signed by the root: the agency's root equivocated")]
    Forked {
        /// The position.
        seq: u64,
        /// The statement the log holds.
        held: StatementId,
        /// The other one.
        other: StatementId,
    },
}

impl KeyLogError {
    /// The rule of SPEC.md §3.4 that refuses: 1 to 12 for K1 to K12 (both
    /// `Schema` and `BadSignature` are K5). The conformance vectors
    /// (`spec/vectors/keylogs.json`) name refusals by it.
    pub fn rule(&self) -> u8 {
        match self {
            KeyLogError::Oversize(_) => 1,
            KeyLogError::Malformed(_) => 2,
            KeyLogError::NonCanonical(_) => 3,
            KeyLogError::BadHeader(_) => 4,
            KeyLogError::Schema(_) | KeyLogError::BadSignature => 5,
            KeyLogError::WrongLog(_) => 6,
            KeyLogError::Gap { .. } => 7,
            KeyLogError::BrokenChain { .. } => 8,
            KeyLogError::WrongSigner { .. } => 9,
            KeyLogError::TimeReversed { .. } => 10,
            KeyLogError::BadKey { .. } => 11,
            KeyLogError::Forked { .. } => 12,
        }
    }

    /// A short name of the refusal, as the conformance vectors give it next
    /// to the rule: `oversize`, `malformed`, `non-canonical`, `bad-header`,
    /// `schema`, `bad-signature`, `wrong-log`, `gap`, `broken-chain`,
    /// `wrong-signer`, `time-reversed`, `bad-key` or `fork`.
    pub fn class(&self) -> &'static str {
        match self {
            KeyLogError::Oversize(_) => "oversize",
            KeyLogError::Malformed(_) => "malformed",
            KeyLogError::NonCanonical(_) => "non-canonical",
            KeyLogError::BadHeader(_) => "bad-header",
            KeyLogError::Schema(_) => "schema",
            KeyLogError::BadSignature => "bad-signature",
            KeyLogError::WrongLog(_) => "wrong-log",
            KeyLogError::Gap { .. } => "gap",
            KeyLogError::BrokenChain { .. } => "broken-chain",
            KeyLogError::WrongSigner { .. } => "wrong-signer",
            KeyLogError::TimeReversed { .. } => "time-reversed",
            KeyLogError::BadKey { .. } => "bad-key",
            KeyLogError::Forked { .. } => "fork",
        }
    }
}

/// A decoded, signature-checked key statement, holding its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatement {
    bytes: Arc<[u8]>,
    id: StatementId,
    signer: KeyId,
    payload: StatementPayload,
}

/// The deterministic protected header {1: -19, 3: KEY_CONTENT_TYPE, 4: kid}.
fn protected_header(kid: &KeyId) -> Vec<u8> {
    let mut m = BTreeMap::new();
    m.insert(Value::Integer(1), Value::Integer(i128::from(ALG_ED25519)));
    m.insert(Value::Integer(3), Value::Text(KEY_CONTENT_TYPE.into()));
    m.insert(Value::Integer(4), Value::Bytes(kid.0.to_vec()));
    codec::to_vec(&Value::Map(m))
}

/// The statement's bytes: tag 18 and the four items.
fn encode(protected: Vec<u8>, payload: Vec<u8>, signature: Vec<u8>) -> Vec<u8> {
    let outer = Value::Array(vec![
        Value::Bytes(protected),
        Value::Map(BTreeMap::new()),
        Value::Bytes(payload),
        Value::Bytes(signature),
    ]);
    let mut bytes = vec![COSE_SIGN1_TAG];
    bytes.extend_from_slice(&codec::to_vec(&outer));
    bytes
}

/// Why a [`StatementSigner`] could not sign: a token that is gone, a
/// session that was closed, a PIN that expired. The signer says what, for
/// the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignerError(pub String);

/// Why [`KeyStatement::sign_with`] made no statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignWithError {
    /// The signer failed.
    #[error("the signing key could not sign: {0}")]
    Signer(#[from] SignerError),
    /// The signer returned a signature that does not verify with the key it
    /// names (a token answering with another key's signature, or garbage).
    #[error("the signing key returned a signature that does not verify with its public key {0}")]
    BadSignature(KeyId),
}

/// A key that signs key statements without this crate holding its secret:
/// an [`Identity`] in memory, or a key in a hardware token, where the
/// secret never leaves the device (the node's PKCS#11 signer). The signer
/// is handed the exact COSE `Sig_structure` bytes (RFC 9052 §4.4) and
/// signs them with pure Ed25519 (RFC 8032, no pre-hash, no context).
pub trait StatementSigner {
    /// The public key, which becomes the statement's kid.
    fn key(&self) -> KeyId;
    /// An Ed25519 signature of `message`: 64 bytes, R then S.
    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerError>;
}

impl StatementSigner for Identity {
    fn key(&self) -> KeyId {
        key_of(self)
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        Ok(self.sign(message))
    }
}

impl KeyStatement {
    /// Signs a statement with `signer` (the root, or for a rotation the new
    /// root). Checking it against a log is [`KeyLog::append`]'s.
    pub fn sign(signer: &Identity, payload: &StatementPayload) -> KeyStatement {
        let kid = key_of(signer);
        let protected = protected_header(&kid);
        let payload_bytes = codec::to_vec(payload);
        let signature = signer.sign(&sig_structure_with_aad(&protected, &[], &payload_bytes));
        let bytes = encode(protected, payload_bytes, signature.to_vec());
        KeyStatement {
            id: StatementId::of(&bytes),
            bytes: bytes.into(),
            signer: kid,
            payload: payload.clone(),
        }
    }

    /// Signs a statement with any [`StatementSigner`] (a key in a token).
    /// The signature is checked with the signer's public key before the
    /// statement is made: a device that signs with another key, or returns
    /// garbage, yields an error here, never a statement K5 refuses later.
    pub fn sign_with(
        signer: &dyn StatementSigner,
        payload: &StatementPayload,
    ) -> Result<KeyStatement, SignWithError> {
        let kid = signer.key();
        let protected = protected_header(&kid);
        let payload_bytes = codec::to_vec(payload);
        let message = sig_structure_with_aad(&protected, &[], &payload_bytes);
        let signature = signer.sign_message(&message)?;
        if !signature::verify(&AgencyId(kid.0), &message, &signature) {
            return Err(SignWithError::BadSignature(kid));
        }
        let bytes = encode(protected, payload_bytes, signature.to_vec());
        Ok(KeyStatement {
            id: StatementId::of(&bytes),
            bytes: bytes.into(),
            signer: kid,
            payload: payload.clone(),
        })
    }

    /// Decodes and checks a statement from its bytes alone (K1–K5).
    pub fn decode(bytes: &[u8]) -> Result<KeyStatement, KeyLogError> {
        if bytes.len() > MAX_STATEMENT_SIZE {
            return Err(KeyLogError::Oversize(bytes.len()));
        }
        let Some((&COSE_SIGN1_TAG, rest)) = bytes.split_first() else {
            return Err(KeyLogError::Malformed(
                "does not start with the COSE_Sign1 tag 18 (0xD2)".into(),
            ));
        };
        let cose = codec::decode_value(rest)
            .map_err(|e| codec_error(e, "statement"))
            .and_then(|v| {
                CoseSign1::from_value(v).map_err(|e| KeyLogError::Malformed(e.to_string()))
            })?;
        if cose.unprotected_len() != 0 {
            return Err(KeyLogError::Malformed(
                "the unprotected header is not empty".into(),
            ));
        }
        if cose.signature.len() != 64 {
            return Err(KeyLogError::Malformed(format!(
                "the signature is {} bytes, not 64",
                cose.signature.len()
            )));
        }
        if encode(
            cose.protected.clone(),
            cose.payload.clone(),
            cose.signature.clone(),
        ) != bytes
        {
            return Err(KeyLogError::NonCanonical("statement"));
        }
        let header =
            codec::decode_value(&cose.protected).map_err(|e| codec_error(e, "protected header"))?;
        codec::check_canonical(&header, &cose.protected)
            .map_err(|e| codec_error(e, "protected header"))?;
        let kid = check_header(header).map_err(KeyLogError::BadHeader)?;
        let payload_value =
            codec::decode_value(&cose.payload).map_err(|e| codec_error(e, "payload"))?;
        codec::check_canonical(&payload_value, &cose.payload)
            .map_err(|e| codec_error(e, "payload"))?;
        let payload: StatementPayload =
            codec::from_value(payload_value).map_err(|e| codec_error(e, "payload"))?;
        payload.check_schema().map_err(KeyLogError::Schema)?;
        let sig: [u8; 64] = cose
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| KeyLogError::Malformed("signature length".into()))?;
        let message = sig_structure_with_aad(&cose.protected, &[], &cose.payload);
        if !signature::verify(&AgencyId(kid.0), &message, &sig) {
            return Err(KeyLogError::BadSignature);
        }
        Ok(KeyStatement {
            id: StatementId::of(bytes),
            bytes: bytes.into(),
            signer: kid,
            payload,
        })
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the bytes.
    pub fn id(&self) -> StatementId {
        self.id
    }

    /// The key that signed it (the kid).
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    /// What it says.
    pub fn payload(&self) -> &StatementPayload {
        &self.payload
    }

    /// Its position in its agency's log.
    pub fn seq(&self) -> u64 {
        self.payload.seq
    }
}

fn codec_error(e: CodecError, part: &'static str) -> KeyLogError {
    match e {
        CodecError::NonCanonical => KeyLogError::NonCanonical(part),
        CodecError::Malformed(m) => KeyLogError::Malformed(format!("{part}: {m}")),
        CodecError::Schema(m) => KeyLogError::Schema(format!("{part}: {m}")),
    }
}

fn check_header(header: Value) -> Result<KeyId, String> {
    let Value::Map(h) = header else {
        return Err("not a map".into());
    };
    if h.len() != 3 {
        return Err(format!(
            "{} parameters; exactly alg, content type and kid are required",
            h.len()
        ));
    }
    match h.get(&Value::Integer(1)) {
        Some(Value::Integer(a)) if *a == i128::from(ALG_ED25519) => {}
        Some(Value::Integer(-8)) => {
            return Err("alg is EdDSA (-8); key statements name Ed25519 (-19), RFC 9864".into())
        }
        Some(other) => return Err(format!("alg is {other:?}, not Ed25519 (-19)")),
        None => return Err("alg (1) is missing".into()),
    }
    match h.get(&Value::Integer(3)) {
        Some(Value::Text(t)) if t == KEY_CONTENT_TYPE => {}
        _ => return Err(format!("content type (3) is not {KEY_CONTENT_TYPE:?}")),
    }
    match h.get(&Value::Integer(4)) {
        Some(Value::Bytes(b)) => b
            .as_slice()
            .try_into()
            .map(KeyId)
            .map_err(|_| format!("kid is {} bytes, not 32", b.len())),
        _ => Err("kid (4) is missing or not a byte string".into()),
    }
}

/// What [`KeyLog::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The statement is the log's new last one.
    New,
    /// The log held this statement already.
    Duplicate,
    /// A rotation by the pre-committed key replaced the statements from
    /// its position on (superseding recovery, SPEC.md §3.4): how many were
    /// superseded.
    Recovered {
        /// How many statements it superseded.
        superseded: usize,
    },
    /// A statement such a rotation superseded, arriving after it (signed
    /// by the root it replaced, at its position): kept with the superseded
    /// statements; the log does not change.
    Superseded,
}

/// What a key was at a position of its agency's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    /// Not named by the log up to that position.
    Unknown,
    /// The root in force there.
    Root,
    /// A root no longer in force (rotated away).
    FormerRoot,
    /// Certified there (statement `seq`) and not revoked.
    Certified {
        /// Where it was certified.
        seq: u64,
        /// What was certified.
        certify: Certify,
    },
    /// Certified, then revoked there.
    Revoked {
        /// Where it was certified.
        seq: u64,
        /// What was certified.
        certify: Certify,
        /// Where it was revoked.
        revoked_at: u64,
        /// The revocation.
        revoke: Revoke,
    },
}

/// A key's certification as of a prefix of its log ([`KeyLog::certification`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Certification<'a> {
    /// The position of the `certify` statement.
    pub seq: u64,
    /// What it certified.
    pub certify: &'a Certify,
    /// The revocation within the prefix, with its position, if any.
    pub revoked: Option<(u64, &'a Revoke)>,
}

/// One agency's key log: its statements in order, checked as they came.
#[derive(Debug, Clone)]
pub struct KeyLog {
    agency: AgencyId,
    statements: Vec<KeyStatement>,
    superseded: Vec<KeyStatement>,
    /// The ids of `superseded`: a statement superseded again is a
    /// duplicate, found without a scan.
    superseded_ids: std::collections::HashSet<StatementId>,
    /// Where each root statement is (inception, rotations), ascending.
    roots: Vec<usize>,
    /// Per key named in the log: where it was named (as a root or a
    /// certified key), whether certified, and where revoked. With `roots`,
    /// each append is checked in logarithmic time, not by a scan of the
    /// log (which made a long log quadratic to load).
    keys: std::collections::BTreeMap<KeyId, Named>,
}

/// Where a key is named in a log.
#[derive(Debug, Clone, Copy)]
struct Named {
    at: usize,
    certified: bool,
    revoked_at: Option<usize>,
}

impl KeyLog {
    /// Starts a log from its inception (seq 0, signed by the root it
    /// names, which is the agency id).
    pub fn from_inception(inception: KeyStatement) -> Result<KeyLog, KeyLogError> {
        let mut log = KeyLog {
            agency: inception.payload.agency,
            statements: Vec::new(),
            superseded: Vec::new(),
            superseded_ids: std::collections::HashSet::new(),
            roots: Vec::new(),
            keys: std::collections::BTreeMap::new(),
        };
        log.append(inception)?;
        Ok(log)
    }

    /// The agency.
    pub fn agency(&self) -> AgencyId {
        self.agency
    }

    /// How many statements the log holds.
    pub fn len(&self) -> u64 {
        self.statements.len() as u64
    }

    /// Whether the log is empty (never, once made).
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The id of the last statement.
    pub fn head(&self) -> StatementId {
        self.statements
            .last()
            .map_or(StatementId([0; 32]), KeyStatement::id)
    }

    /// The statements, in order.
    pub fn statements(&self) -> &[KeyStatement] {
        &self.statements
    }

    /// Statements a recovery rotation replaced, in the order they were
    /// held: what a thief of an old root signed, for the report.
    pub fn superseded(&self) -> &[KeyStatement] {
        &self.superseded
    }

    /// The log with `superseded` kept beside it as the statements its
    /// recoveries superseded (a store keeps them apart and reads them back
    /// without their place): those that take their place in a
    /// [`KeyLog::history`] of this log; the others are left out. The log
    /// itself is unchanged.
    pub fn with_superseded(self, superseded: &[KeyStatement]) -> KeyLog {
        match replay_history(&self.statements, superseded) {
            Some((log, _)) if log.head() == self.head() && log.len() == self.len() => log,
            _ => self,
        }
    }

    /// The log's **key history** (SPEC.md §10.1, bundle format version 3):
    /// its statements and the ones its recoveries superseded, in an order in
    /// which [`KeyLog::append`] takes each one, after the inception, as new,
    /// as a recovery or as superseded, and which leaves this log. Without
    /// superseded statements, the statements in log order.
    pub fn history(&self) -> Vec<&KeyStatement> {
        if self.superseded.is_empty() {
            return self.statements.iter().collect();
        }
        match replay_history(&self.statements, &self.superseded) {
            Some((log, order)) if log.head() == self.head() && log.len() == self.len() => order,
            _ => self.statements.iter().collect(),
        }
    }

    /// The root in force after the first `prefix` statements, and its
    /// commitment to the next root.
    fn root_after(&self, prefix: usize) -> Option<&Root> {
        let i = self.roots.partition_point(|&at| at < prefix);
        let at = *self.roots.get(i.checked_sub(1)?)?;
        match &self.statements.get(at)?.payload.st {
            Statement::Inception(r) | Statement::RotateRoot(r) => Some(r),
            _ => None,
        }
    }

    /// Adds the statement at the end of the log, indexing what it names.
    fn push(&mut self, s: KeyStatement) {
        let at = self.statements.len();
        match &s.payload.st {
            Statement::Inception(r) | Statement::RotateRoot(r) => {
                self.roots.push(at);
                self.keys.entry(r.root.key).or_insert(Named {
                    at,
                    certified: false,
                    revoked_at: None,
                });
            }
            Statement::Certify(c) => {
                self.keys.entry(c.key.key).or_insert(Named {
                    at,
                    certified: true,
                    revoked_at: None,
                });
            }
            Statement::Revoke(r) => {
                if let Some(k) = self.keys.get_mut(&r.key) {
                    k.revoked_at.get_or_insert(at);
                }
            }
            Statement::Profile(_) => {}
        }
        self.statements.push(s);
    }

    /// Cuts the log to its first `at` statements; returns the rest.
    fn cut(&mut self, at: usize) -> Vec<KeyStatement> {
        let rest: Vec<KeyStatement> = self.statements.drain(at..).collect();
        self.roots.retain(|&r| r < at);
        self.keys.retain(|_, k| k.at < at);
        for k in self.keys.values_mut() {
            if k.revoked_at.is_some_and(|r| r >= at) {
                k.revoked_at = None;
            }
        }
        rest
    }

    /// The key's record as of the first `at` statements.
    fn named_before(&self, key: &KeyId, at: usize) -> Option<Named> {
        self.keys.get(key).filter(|k| k.at < at).map(|k| Named {
            revoked_at: k.revoked_at.filter(|&r| r < at),
            ..*k
        })
    }

    /// The digest of the next root committed to by the root in force after
    /// the first `prefix` statements: what a rotation at position `prefix`
    /// must name (K9).
    pub fn committed_next(&self, prefix: u64) -> Option<KeyDigest> {
        let n = usize::try_from(prefix).unwrap_or(usize::MAX);
        self.root_after(n).map(|r| r.next)
    }

    /// The root in force after the first `prefix` statements.
    pub fn root_at(&self, prefix: u64) -> Option<KeyId> {
        let n = usize::try_from(prefix).unwrap_or(usize::MAX);
        self.root_after(n).map(|r| r.root.key)
    }

    /// The root in force at the end of the log.
    pub fn current_root(&self) -> KeyId {
        self.root_after(self.statements.len())
            .map_or(KeyId(self.agency.0), |r| r.root.key)
    }

    /// The agency's profile as of the first `prefix` statements (the last
    /// profile statement among them).
    pub fn profile(&self, prefix: u64) -> Option<&Profile> {
        self.prefix(prefix)
            .iter()
            .rev()
            .find_map(|s| match &s.payload.st {
                Statement::Profile(p) => Some(p),
                _ => None,
            })
    }

    fn prefix(&self, prefix: u64) -> &[KeyStatement] {
        let n = usize::try_from(prefix).unwrap_or(usize::MAX);
        &self.statements[..n.min(self.statements.len())]
    }

    /// The certification of `key` as of the first `prefix` statements, if
    /// it was certified there: where, what, and the revocation among those
    /// statements, if any. Looked up in the log's index, not by a scan:
    /// a validator asks this once per entry of format version 2.
    pub fn certification(&self, key: &KeyId, prefix: u64) -> Option<Certification<'_>> {
        let n = usize::try_from(prefix)
            .unwrap_or(usize::MAX)
            .min(self.statements.len());
        let named = self.named_before(key, n)?;
        if !named.certified {
            return None;
        }
        let Statement::Certify(certify) = &self.statements.get(named.at)?.payload.st else {
            return None;
        };
        let revoked = named
            .revoked_at
            .and_then(|r| match &self.statements.get(r)?.payload.st {
                Statement::Revoke(v) => Some((r as u64, v)),
                _ => None,
            });
        Some(Certification {
            seq: named.at as u64,
            certify,
            revoked,
        })
    }

    /// What `key` was as of the first `prefix` statements.
    pub fn status(&self, key: &KeyId, prefix: u64) -> KeyStatus {
        let part = self.prefix(prefix);
        let mut status = KeyStatus::Unknown;
        for s in part {
            match &s.payload.st {
                Statement::Inception(r) | Statement::RotateRoot(r) => {
                    if r.root.key == *key {
                        status = KeyStatus::Root;
                    } else if status == KeyStatus::Root {
                        status = KeyStatus::FormerRoot;
                    }
                }
                Statement::Certify(c) if c.key.key == *key => {
                    status = KeyStatus::Certified {
                        seq: s.payload.seq,
                        certify: c.clone(),
                    };
                }
                Statement::Revoke(r) if r.key == *key => {
                    if let KeyStatus::Certified { seq, certify } = status {
                        status = KeyStatus::Revoked {
                            seq,
                            certify,
                            revoked_at: s.payload.seq,
                            revoke: r.clone(),
                        };
                    }
                }
                _ => {}
            }
        }
        status
    }

    /// Adds a statement (K6–K12): the next one, one the log holds already,
    /// or a recovery rotation that supersedes the statements from its
    /// position on. A refused statement leaves the log as it was.
    pub fn append(&mut self, s: KeyStatement) -> Result<Appended, KeyLogError> {
        let p = &s.payload;
        if p.agency != self.agency {
            return Err(KeyLogError::WrongLog(format!(
                "statement of agency {}, this log is agency {}",
                p.agency.fingerprint(),
                self.agency.fingerprint()
            )));
        }
        let len = self.len();
        if p.seq > len {
            return Err(KeyLogError::Gap { seq: p.seq, len });
        }
        if p.seq >= MAX_LOG_LENGTH {
            return Err(KeyLogError::WrongLog(format!(
                "the log is full ({MAX_LOG_LENGTH} statements)"
            )));
        }
        let at = usize::try_from(p.seq).unwrap_or(usize::MAX);
        if let Some(held) = self.statements.get(at) {
            if held.id == s.id {
                return Ok(Appended::Duplicate);
            }
            // Checked against the statements before it first (K8 to K11),
            // so that a fork is only ever two well-chained statements by
            // the root in force: a stranger's refused by K9 proves nothing
            // of the root. Then a recovery (a rotation by the pre-committed
            // key supersedes whatever the old root signed from here on), or
            // K12.
            self.check_at(&s, at)?;
            let rotation = |x: &StatementPayload| matches!(x.st, Statement::RotateRoot(_));
            match (rotation(&held.payload), rotation(p)) {
                // The held statement is a rotation by the pre-committed key
                // and this one was signed by the root it replaced: what a
                // recovery supersedes, arriving after it. Kept for reports,
                // as if it had come first; the log does not change, and no
                // root equivocated.
                (true, false) => {
                    if !self.superseded_ids.insert(s.id) {
                        return Ok(Appended::Duplicate);
                    }
                    self.superseded.push(s);
                    return Ok(Appended::Superseded);
                }
                // Two statements at one position by the root in force
                // there (two rotations are both by the committed key).
                (_, false) | (true, true) => {
                    return Err(KeyLogError::Forked {
                        seq: p.seq,
                        held: held.id,
                        other: s.id,
                    });
                }
                (false, true) => {}
            }
            let superseded = self.cut(at);
            let n = superseded.len();
            self.superseded_ids
                .extend(superseded.iter().map(KeyStatement::id));
            self.superseded.extend(superseded);
            self.push(s);
            return Ok(Appended::Recovered { superseded: n });
        }
        self.check_at(&s, at)?;
        self.push(s);
        Ok(Appended::New)
    }

    /// K8–K11 for `s` at position `at`, against the statements before it.
    fn check_at(&self, s: &KeyStatement, at: usize) -> Result<(), KeyLogError> {
        let p = &s.payload;
        let before = &self.statements[..at];
        if let Some(last) = before.last() {
            if p.prev != Some(last.id) {
                return Err(KeyLogError::BrokenChain { seq: p.seq });
            }
            if p.time < last.payload.time {
                return Err(KeyLogError::TimeReversed { seq: p.seq });
            }
        }
        let wrong = |want: String| KeyLogError::WrongSigner {
            seq: p.seq,
            kind: p.st.kind(),
            signer: s.signer,
            want,
        };
        match &p.st {
            Statement::Inception(r) => {
                if r.root.key.0 != self.agency.0 || s.signer != r.root.key {
                    return Err(wrong("the root it names, which is the agency id".into()));
                }
                return Ok(());
            }
            Statement::RotateRoot(r) => {
                let committed = self.root_after(at).map(|old| old.next);
                if Some(KeyDigest::of(&r.root.key)) != committed {
                    return Err(wrong(
                        "the key the previous root committed to (its \"next\")".into(),
                    ));
                }
                if s.signer != r.root.key {
                    return Err(wrong("the new root it names".into()));
                }
            }
            _ => {
                let root = self.root_after(at).map(|r| r.root.key);
                if Some(s.signer) != root {
                    return Err(wrong("the root in force".into()));
                }
            }
        }
        let named_before = |key: &KeyId| self.named_before(key, at).is_some();
        let bad = |what: String| KeyLogError::BadKey { seq: p.seq, what };
        match &p.st {
            Statement::RotateRoot(r) if named_before(&r.root.key) => {
                Err(bad("the new root was named before in this log".into()))
            }
            Statement::Certify(c) if named_before(&c.key.key) || c.key.key.0 == self.agency.0 => {
                Err(bad(format!(
                    "key {} is named already in this log; a key is certified once",
                    c.key.key.short()
                )))
            }
            Statement::Revoke(r) => {
                let named = self.named_before(&r.key, at);
                let certified = named.is_some_and(|k| k.certified);
                let revoked = named.is_some_and(|k| k.revoked_at.is_some());
                if !certified {
                    Err(bad(format!(
                        "key {} was never certified in this log (a root is replaced by rotation, not revoked)",
                        r.key.short()
                    )))
                } else if revoked {
                    Err(bad(format!("key {} is revoked already", r.key.short())))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// The most statements of a bundle's key history that may be taken as a
/// recovery or as superseded (SPEC.md §10.5 B8, §16): a recovery cuts the
/// log's index, so a crafted history of recoveries without end would cost
/// its verifier time of the order of its square. An agency recovers when
/// its root is stolen: a handful of times in its life.
pub const MAX_HISTORY_SUPERSEDED: usize = 1024;

/// Replays `statements` (a log, in order) with `superseded` the way SPEC.md
/// §10.1 orders a key history: each superseded statement that continues a
/// branch where the log's length is its position and its `prev` the last
/// statement taken, before the log's own statement there (the recovery);
/// the others after the log's last, each taken as superseded or left out.
/// The log the replay leaves (its `superseded()` those that found their
/// place) and the order; None if the log itself does not replay.
fn replay_history<'a>(
    statements: &'a [KeyStatement],
    superseded: &'a [KeyStatement],
) -> Option<(KeyLog, Vec<&'a KeyStatement>)> {
    let (first, rest) = statements.split_first()?;
    let mut log = KeyLog::from_inception(first.clone()).ok()?;
    let mut order = vec![first];
    // A statement of the log itself is not superseded.
    let held: std::collections::HashSet<StatementId> =
        statements.iter().map(KeyStatement::id).collect();
    let candidates: Vec<&KeyStatement> = superseded
        .iter()
        .filter(|s| !held.contains(&s.id()))
        .collect();
    // Each candidate by the place it continues at (position, predecessor),
    // so that finding one costs no scan; `tried` marks the ones taken out.
    let mut at: std::collections::HashMap<(u64, Option<StatementId>), Vec<usize>> =
        std::collections::HashMap::new();
    for (k, s) in candidates.iter().enumerate().rev() {
        at.entry((s.seq(), s.payload.prev)).or_default().push(k);
    }
    let mut tried = vec![false; candidates.len()];
    let mut next = rest.iter();
    // Appends taken as a recovery or as superseded (B8 bounds them).
    let mut turns = 0usize;
    loop {
        let here = (log.len(), Some(log.head()));
        if let Some(k) = at.get_mut(&here).and_then(Vec::pop) {
            tried[k] = true;
            let s = candidates[k];
            // A statement refused here is left out (the log is unchanged).
            if log.append(s.clone()) == Ok(Appended::New) {
                order.push(s);
            }
            continue;
        }
        let Some(s) = next.next() else {
            break;
        };
        match log.append(s.clone()) {
            Ok(Appended::New) => order.push(s),
            Ok(Appended::Recovered { .. }) => {
                turns += 1;
                order.push(s);
            }
            _ => return None,
        }
    }
    let pending = candidates
        .iter()
        .zip(&tried)
        .filter(|(_, &t)| !t)
        .map(|(s, _)| *s);
    for s in pending {
        if turns >= MAX_HISTORY_SUPERSEDED {
            break;
        }
        if log.append(s.clone()) == Ok(Appended::Superseded) {
            turns += 1;
            order.push(s);
        }
    }
    // More recoveries than a history may hold: none is placed.
    (turns <= MAX_HISTORY_SUPERSEDED).then_some((log, order))
}

/// What [`receive`] did with statements of one agency's log that a peer
/// sent (SPEC.md §9.15).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Statements newly appended (a recovery rotation counts here).
    pub new: usize,
    /// Statements the log held already.
    pub duplicates: usize,
    /// Statements a recovery superseded: held before, or arriving after it.
    pub superseded: usize,
    /// The first statement refused, if any. The statements after it in the
    /// message are not checked: each chains to the one before.
    pub refused: Option<KeyLogError>,
    /// Statements after the refused one, not checked.
    pub unchecked: usize,
    /// The position and id of the last statement taken (new, duplicate or
    /// superseded): the sender holds the log up to it.
    pub last: Option<(u64, StatementId)>,
    /// The lowest position whose statement is new or replaced (by a
    /// recovery): a store rewrites the log from there on only.
    pub changed_from: Option<u64>,
    /// Where the log went two ways at one position, both statements
    /// signed by its root (K12): the statement held and the other's bytes,
    /// the proof that the root equivocated.
    pub fork: Option<(KeyStatement, KeyStatement)>,
}

impl Received {
    /// Whether the log changed (statements appended, or superseded ones
    /// kept for reports).
    pub fn changed(&self) -> bool {
        self.new > 0 || self.superseded > 0
    }
}

/// Applies, in order, statements of `agency`'s log that a peer sent, to
/// `log` (the log held of that agency, `None` if none): each is decoded
/// and checked (K1–K5) and appended (K6–K12) as [`KeyLog::append`] does.
/// The first refusal stops the rest. Pure: the caller stores the log if
/// [`Received::changed`].
pub fn receive(log: &mut Option<KeyLog>, agency: &AgencyId, items: &[Vec<u8>]) -> Received {
    let mut out = Received::default();
    for (i, bytes) in items.iter().enumerate() {
        let mut taken = None;
        let step = KeyStatement::decode(bytes).and_then(|s| {
            taken = Some((s.payload.seq, s.id));
            if s.payload.agency != *agency {
                return Err(KeyLogError::WrongLog(format!(
                    "a statement of agency {} sent as agency {}'s",
                    s.payload.agency.fingerprint(),
                    agency.fingerprint()
                )));
            }
            match log {
                None if s.payload.seq == 0 => {
                    *log = Some(KeyLog::from_inception(s)?);
                    Ok(Appended::New)
                }
                None => Err(KeyLogError::Gap {
                    seq: s.payload.seq,
                    len: 0,
                }),
                Some(l) => {
                    let held = usize::try_from(s.payload.seq)
                        .ok()
                        .and_then(|at| l.statements.get(at))
                        .cloned();
                    l.append(s.clone()).inspect_err(|e| {
                        if let (KeyLogError::Forked { .. }, Some(held)) = (e, held) {
                            out.fork = Some((held, s.clone()));
                        }
                    })
                }
            }
        });
        if step.is_ok() {
            out.last = taken;
        }
        if let (Ok(Appended::New | Appended::Recovered { .. }), Some((seq, _))) = (&step, taken) {
            out.changed_from = Some(out.changed_from.map_or(seq, |c| c.min(seq)));
        }
        match step {
            Ok(Appended::New) => out.new += 1,
            Ok(Appended::Duplicate) => out.duplicates += 1,
            Ok(Appended::Recovered { superseded }) => {
                out.new += 1;
                out.superseded += superseded;
            }
            Ok(Appended::Superseded) => out.superseded += 1,
            Err(e) => {
                out.refused = Some(e);
                out.unchecked = items.len() - i - 1;
                break;
            }
        }
    }
    out
}

/// The key logs a validator reads entries of format version 2 against
/// (SPEC.md §8.2, V20 to V24): whatever holds them (a node's store, a
/// bundle's `keys`, a test's map) answers by agency.
pub trait KeyLogs {
    /// The log of an agency, as held.
    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog>;
}

/// No key logs: entries of format version 2 wait (V20).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeyLogs;

impl KeyLogs for NoKeyLogs {
    fn key_log(&self, _: &AgencyId) -> Option<&KeyLog> {
        None
    }
}

impl KeyLogs for std::collections::BTreeMap<AgencyId, KeyLog> {
    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog> {
        self.get(agency)
    }
}

impl<S: std::hash::BuildHasher> KeyLogs for std::collections::HashMap<AgencyId, KeyLog, S> {
    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog> {
        self.get(agency)
    }
}

impl KeyLogs for [KeyLog] {
    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog> {
        self.iter().find(|l| l.agency() == *agency)
    }
}
