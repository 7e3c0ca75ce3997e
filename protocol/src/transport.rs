//! Which agency a TLS certificate key speaks for (SPEC.md §9.1).
//!
//! A node authenticates on the wire either with its agency id (the
//! inception key) while that key is still its agency's root, or with a
//! node key its agency's log certifies. A node key's certificate carries
//! the statements of its agency's log that end with the key's
//! certification, so a partner that has not yet received them can check
//! the key from the certificate alone: key statements authenticate
//! themselves from the agency id, whoever relays them. The partner's own
//! held log still decides what it knows: a key it holds revoked stays
//! refused, and a former root is refused once it holds the rotation.
//!
//! Pure: the caller passes its pins, its held logs and its clock.

use crate::keylog::{
    receive, KeyLog, KeyLogError, KeyLogs, KeyRole, KeyStatement, RevokeReason, Statement,
};
use crate::{AgencyId, KeyId, SKEW_MS};

/// The most key statements a certificate carries.
pub const MAX_CARRIED: usize = 128;
/// The most bytes of key statements a certificate carries (a TLS
/// handshake message holds at most 64 KiB): about two hundred statements,
/// so a partner without the log checks a node key certified that early.
pub const MAX_CARRIED_BYTES: usize = 48 * 1024;

/// Why a certificate key does not speak for a pinned agency. A peer sees
/// none of this (every refusal is the same TLS alert); it is for the
/// refusing node's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The key is an agency id that is not pinned, or the statements it
    /// carries are of an agency that is not pinned.
    #[error("not a pinned agency")]
    NotPinned,
    /// The key is a pinned agency id that its log rotated away from.
    #[error("the agency's root was rotated away from this key")]
    FormerRoot,
    /// Neither a pinned agency id nor certified by the log its statements
    /// (or the held log) make.
    #[error("the key is not certified by the agency's key log")]
    Uncertified,
    /// Certified, but as an officer's key.
    #[error("the key is certified for an officer, not a node")]
    NotANodeKey,
    /// Certified and then revoked, for this reason.
    #[error("the key is revoked ({})", .0.as_str())]
    Revoked(RevokeReason),
    /// Before its not-before, or after its not-after (beyond the skew).
    #[error("the key is outside its validity")]
    OutsideValidity,
    /// More than [`MAX_CARRIED`] statements, or more than
    /// [`MAX_CARRIED_BYTES`].
    #[error("the certificate carries too many key statements")]
    TooManyCarried,
    /// The certificate's extension of key statements is not an array of
    /// byte strings in deterministic CBOR (or is not well-formed DER).
    #[error("the certificate's key statements are malformed: {0}")]
    Malformed(String),
    /// A carried statement is refused by the checks of SPEC.md §3.4.
    #[error("a carried key statement is refused: {0}")]
    Carried(KeyLogError),
}

/// The agency `key` speaks for on the wire, given the key statements its
/// certificate carries (`carried`, possibly none), the pins, the held key
/// logs and the clock (SPEC.md §9.1):
///
/// * a pinned agency id speaks for its agency while the held log of it is
///   absent or has it as its root in force;
/// * any other key speaks for the agency of the carried statements when
///   that agency is pinned and the held log of it, with the carried
///   statements applied (in order, as a peer's are), certifies the key
///   with role node, has not revoked it, and `now_ms` is within its
///   validity (with the skew of SPEC.md §8.2 either side).
pub fn speaks_for(
    key: &KeyId,
    carried: &[Vec<u8>],
    pinned: &dyn Fn(&AgencyId) -> bool,
    logs: &dyn KeyLogs,
    now_ms: u64,
) -> Result<AgencyId, Refusal> {
    let as_agency = AgencyId(key.0);
    if pinned(&as_agency) {
        return match logs.key_log(&as_agency) {
            Some(log) if log.current_root() != *key => Err(Refusal::FormerRoot),
            _ => Ok(as_agency),
        };
    }
    let Some(last) = carried.last() else {
        return Err(Refusal::Uncertified);
    };
    if carried.len() > MAX_CARRIED
        || carried.iter().map(Vec::len).sum::<usize>() > MAX_CARRIED_BYTES
    {
        return Err(Refusal::TooManyCarried);
    }
    // The run ends with the key's certification: checked first, with one
    // signature check, before any other statement is looked at or a log
    // copied. A stranger cannot make it (only the agency's root signs
    // it), and a member cannot carry statements past it.
    let certify = KeyStatement::decode(last).map_err(Refusal::Carried)?;
    let agency = certify.payload().agency;
    match &certify.payload().st {
        Statement::Certify(c) if c.key.key == *key => {}
        _ => return Err(Refusal::Uncertified),
    }
    if !pinned(&agency) {
        return Err(Refusal::NotPinned);
    }
    let held = logs.key_log(&agency);
    // The held log is copied only when the certificate tells it something
    // new: usually the partner holds every carried statement already.
    let applied;
    let log = if all_held(held, carried, certify.seq()) {
        held
    } else {
        let mut log = held.cloned();
        let got = receive(&mut log, &agency, carried);
        if let Some(e) = got.refused {
            return Err(Refusal::Carried(e));
        }
        applied = log;
        applied.as_ref()
    };
    let log = log.ok_or(Refusal::Uncertified)?;
    let c = log
        .certification(key, log.len())
        .ok_or(Refusal::Uncertified)?;
    if let Some((_, r)) = c.revoked {
        return Err(Refusal::Revoked(r.reason));
    }
    if c.certify.role != KeyRole::Node {
        return Err(Refusal::NotANodeKey);
    }
    let early = now_ms.saturating_add(SKEW_MS) < c.certify.not_before;
    let late = c
        .certify
        .not_after
        .is_some_and(|end| now_ms.saturating_sub(SKEW_MS) > end);
    if early || late {
        return Err(Refusal::OutsideValidity);
    }
    Ok(agency)
}

/// Whether `held` holds every one of `carried`, byte for byte, as the run
/// of consecutive statements ending at position `last_seq` (compared by
/// bytes at their positions: nothing is decoded or searched).
fn all_held(held: Option<&KeyLog>, carried: &[Vec<u8>], last_seq: u64) -> bool {
    let Some(log) = held else { return false };
    let Ok(end) = usize::try_from(last_seq) else {
        return false;
    };
    let Some(start) = (end + 1).checked_sub(carried.len()) else {
        return false;
    };
    log.statements().get(start..=end).is_some_and(|run| {
        run.iter()
            .zip(carried)
            .all(|(h, c)| h.bytes() == c.as_slice())
    })
}

/// The statements a certificate for node key `key` carries: the last ones
/// of `log` up to and including the key's certification, as many as fit
/// in [`MAX_CARRIED`] and [`MAX_CARRIED_BYTES`], in log order. `None` when
/// the log does not certify `key` as an unrevoked node key.
pub fn carried_for(log: &KeyLog, key: &KeyId) -> Option<Vec<Vec<u8>>> {
    let c = log.certification(key, log.len())?;
    if c.revoked.is_some() || c.certify.role != KeyRole::Node {
        return None;
    }
    let upto = usize::try_from(c.seq).ok()?;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for s in log.statements()[..=upto].iter().rev() {
        if out.len() == MAX_CARRIED || bytes + s.bytes().len() > MAX_CARRIED_BYTES {
            break;
        }
        bytes += s.bytes().len();
        out.push(s.bytes().to_vec());
    }
    out.reverse();
    Some(out)
}

/// The object identifier of the certificate extension that carries key
/// statements: 2.25.5791347283106525657, an OID under the UUID arc
/// (ITU-T X.667), fixed by this protocol.
pub const CARRIED_OID: &[u64] = &[2, 25, 5_791_347_283_106_525_657];

/// The carried statements as the extension's CBOR: an array of byte
/// strings, each one statement's exact bytes.
pub fn encode_carried(carried: &[Vec<u8>]) -> Vec<u8> {
    let items: Vec<serde_bytes::ByteBuf> = carried
        .iter()
        .map(|s| serde_bytes::ByteBuf::from(s.clone()))
        .collect();
    crate::codec::to_vec(&items)
}

/// Reads the extension's CBOR back: an array of at most [`MAX_CARRIED`]
/// byte strings, deterministically encoded. Each statement is checked
/// later, by [`speaks_for`].
pub fn decode_carried(cbor: &[u8]) -> Result<Vec<Vec<u8>>, Refusal> {
    if cbor.len() > MAX_CARRIED_BYTES + 1024 {
        return Err(Refusal::TooManyCarried);
    }
    let items: Vec<serde_bytes::ByteBuf> =
        crate::codec::from_slice(cbor).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if items.len() > MAX_CARRIED {
        return Err(Refusal::TooManyCarried);
    }
    Ok(items
        .into_iter()
        .map(serde_bytes::ByteBuf::into_vec)
        .collect())
}
