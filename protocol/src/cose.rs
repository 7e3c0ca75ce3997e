//! The generic COSE_Sign1 layer (RFC 9052 §4.2, §4.4) under Custodia's
//! entries and bundles.
//!
//! This module knows COSE, not Custodia: it takes a COSE_Sign1 apart,
//! builds the Sig_structure ("ToBeSigned") and checks an EdDSA/Ed25519
//! signature. Custodia's own rules (deterministic encoding, the exact
//! protected header, the payload schema) are layered on top in
//! [`crate::Entry`]. It is tested against the COSE working group's
//! examples (`tests/cose_wg.rs`).

use std::collections::BTreeMap;

use crate::codec::{self, write_bytes, Value};
use crate::ids::AgencyId;
use crate::signature::verify;

/// The CBOR tag of COSE_Sign1 (RFC 9052 §2), as its one-byte head.
pub(crate) const COSE_SIGN1_TAG: u8 = 0xD2;
/// COSE algorithm id of EdDSA (RFC 9053 §2.2).
pub(crate) const COSE_ALG_EDDSA: i128 = -8;

/// Why bytes are not a usable COSE_Sign1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoseError {
    /// Not the structure of a COSE_Sign1.
    #[error("not a COSE_Sign1: {0}")]
    Structure(String),
    /// A CBOR tag other than 18 (COSE_Sign1).
    #[error("CBOR tag {0} is not COSE_Sign1 (18)")]
    WrongTag(u64),
    /// An algorithm other than EdDSA, or none.
    #[error("algorithm {0} is not supported: only EdDSA (-8) with Ed25519")]
    UnsupportedAlgorithm(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A COSE_Sign1 taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct CoseSign1 {
    /// Whether it carried tag 18.
    pub tagged: bool,
    /// The serialized protected header, exactly as received.
    pub protected: Vec<u8>,
    /// The unprotected header (crate-private: its values are CBOR trees;
    /// see [`CoseSign1::unprotected_len`]).
    pub(crate) unprotected: BTreeMap<Value, Value>,
    /// The payload.
    pub payload: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Reads a CBOR tag head, if the item starts with one: (tag, head length).
fn tag_head(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = bytes.split_first()?;
    if first >> 5 != 6 {
        return None;
    }
    let info = first & 0x1F;
    let n = match info {
        0..=23 => return Some((u64::from(info), 1)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Some((u64::MAX, 1)),
    };
    let raw = rest.get(..n)?;
    let v = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some((v, 1 + n))
}

impl CoseSign1 {
    /// Takes a COSE_Sign1 apart: optionally tagged 18, an array of
    /// [protected bstr, unprotected map, payload bstr, signature bstr].
    /// Any other tag is refused. Encoding strictness is left to the caller.
    pub fn decode(bytes: &[u8]) -> Result<CoseSign1, CoseError> {
        let (tagged, rest) = match tag_head(bytes) {
            Some((18, n)) => (true, &bytes[n..]),
            Some((tag, _)) => return Err(CoseError::WrongTag(tag)),
            None => (false, bytes),
        };
        let value = codec::decode_value(rest).map_err(|e| CoseError::Structure(e.to_string()))?;
        let mut s = Self::from_value(value)?;
        s.tagged = tagged;
        Ok(s)
    }

    /// Takes apart an already-parsed COSE_Sign1 array (untagged).
    pub(crate) fn from_value(value: Value) -> Result<CoseSign1, CoseError> {
        let Value::Array(parts) = value else {
            return Err(CoseError::Structure("not an array".into()));
        };
        let [Value::Bytes(protected), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(signature)] =
            <[Value; 4]>::try_from(parts).map_err(|p| {
                CoseError::Structure(format!("an array of {} items, not 4", p.len()))
            })?
        else {
            return Err(CoseError::Structure(
                "items are not [bstr, map, bstr, bstr]".into(),
            ));
        };
        Ok(CoseSign1 {
            tagged: false,
            protected,
            unprotected,
            payload,
            signature,
        })
    }

    /// How many members the unprotected header has (Custodia's entries and
    /// bundles have none).
    pub fn unprotected_len(&self) -> usize {
        self.unprotected.len()
    }

    /// The protected header as a map (an empty bstr is the empty map).
    fn protected_map(&self) -> Result<BTreeMap<Value, Value>, CoseError> {
        if self.protected.is_empty() {
            return Ok(BTreeMap::new());
        }
        match codec::decode_value(&self.protected) {
            Ok(Value::Map(m)) => Ok(m),
            Ok(_) => Err(CoseError::Structure(
                "the protected header is not a map".into(),
            )),
            Err(e) => Err(CoseError::Structure(format!("protected header: {e}"))),
        }
    }

    /// The Sig_structure (RFC 9052 §4.4) this signature covers.
    pub fn to_be_signed(&self, external_aad: &[u8]) -> Vec<u8> {
        sig_structure_with_aad(&self.protected, external_aad, &self.payload)
    }

    /// Checks an EdDSA signature with an Ed25519 key (strict verification).
    /// The algorithm must be EdDSA in the protected header.
    pub fn verify_ed25519(&self, key: &AgencyId, external_aad: &[u8]) -> Result<(), CoseError> {
        match self.protected_map()?.get(&Value::Integer(1)) {
            Some(Value::Integer(COSE_ALG_EDDSA)) => {}
            Some(Value::Integer(other)) => {
                return Err(CoseError::UnsupportedAlgorithm(other.to_string()))
            }
            Some(other) => return Err(CoseError::UnsupportedAlgorithm(format!("{other:?}"))),
            None => {
                return Err(CoseError::UnsupportedAlgorithm(
                    "(none in the protected header)".into(),
                ))
            }
        }
        let sig: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| {
            CoseError::Structure(format!(
                "an Ed25519 signature is 64 bytes, not {}",
                self.signature.len()
            ))
        })?;
        if verify(key, &self.to_be_signed(external_aad), &sig) {
            Ok(())
        } else {
            Err(CoseError::BadSignature)
        }
    }
}

/// `["Signature1", protected, external_aad, payload]`, encoded.
pub(crate) fn sig_structure_with_aad(protected: &[u8], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = sig_structure_prefix(protected, aad, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The Sig_structure up to the payload's bytes: the array head, the
/// context, the protected header, the external AAD and the payload's head.
/// A large payload (a bundle's) is then hashed in place after it.
pub(crate) fn sig_structure_prefix(protected: &[u8], aad: &[u8], payload_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(protected.len() + aad.len() + 24);
    out.push(0x84);
    out.push(0x6A);
    out.extend_from_slice(b"Signature1");
    write_bytes(&mut out, protected);
    write_bytes(&mut out, aad);
    codec::write_head(&mut out, codec::BYTES, payload_len);
    out
}
