//! The one place that speaks CBOR.
//!
//! Every Custodia structure is deterministic CBOR (RFC 8949 §4.2.1). Encoding
//! goes through [`serde_cbor::Value`], whose map ordering is the canonical
//! one for the key types we use (text and unsigned integers), so encoding is
//! deterministic by construction. Decoding is strict: the input is parsed
//! into a value, re-encoded, and must come out byte-identical. That single
//! check rejects non-shortest integers and lengths, indefinite lengths,
//! unsorted or duplicate map keys and any tag serde_cbor would skip.
//!
//! Structures too large for a tree (a court bundle) or built byte by byte
//! (the COSE envelope, the Sig_structure) go through [`head`]: a
//! shortest-form head writer and a cursor that checks each head as it
//! reads. The rest of the crate speaks CBOR only through this module, and
//! no type of the CBOR library appears in the crate's public API.
//!
//! Keeping CBOR behind this module means the library can be swapped without
//! touching the wire format (the tests decode every vector with a second,
//! independent CBOR implementation too).

mod head;

pub(crate) use head::{write_bytes, write_head, write_text, ReadError, Reader, ARRAY, BYTES, MAP};
/// A decoded CBOR data item, for the few places that look at a structure
/// before typing it (the COSE envelope and headers). Crate-private: no
/// public function takes or returns one.
pub(crate) use serde_cbor::Value;

use serde::{de::DeserializeOwned, Serialize};

/// Why a byte string is not an acceptable CBOR encoding of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a single well-formed CBOR data item.
    #[error("not well-formed CBOR: {0}")]
    Malformed(String),
    /// Well-formed, but not the deterministic encoding of what it decodes to.
    #[error("not deterministic CBOR (RFC 8949 §4.2.1)")]
    NonCanonical,
    /// Deterministic CBOR, but not the structure the schema asks for.
    #[error("schema: {0}")]
    Schema(String),
}

/// Maximum nesting depth of any Custodia structure.
pub const MAX_DEPTH: usize = 16;

/// Encodes a value as deterministic CBOR.
pub fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Converting a derive-Serialize type to a Value and a Value to bytes
    // cannot fail for the types this crate defines (no floats, no
    // non-string map keys other than integers).
    match serde_cbor::value::to_value(value).and_then(|v| serde_cbor::to_vec(&v)) {
        Ok(bytes) => bytes,
        Err(e) => unreachable_encoding(e),
    }
}

#[cold]
fn unreachable_encoding(e: serde_cbor::Error) -> Vec<u8> {
    // Only reachable through a programming error in a Serialize impl of this
    // crate; encode nothing rather than panic in a library.
    debug_assert!(false, "encoding failed: {e}");
    Vec::new()
}

/// Parses exactly one CBOR data item and checks it is deterministic.
pub(crate) fn value_from_slice(bytes: &[u8]) -> Result<Value, CodecError> {
    let value = decode_value(bytes)?;
    check_canonical(&value, bytes)?;
    Ok(value)
}

/// Parses exactly one well-formed CBOR data item, nested at most
/// [`MAX_DEPTH`] deep, without checking its encoding (SPEC.md §4.2: an
/// unassigned simple value is malformed here).
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Value, CodecError> {
    let value: Value =
        serde_cbor::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if depth(&value) > MAX_DEPTH {
        return Err(CodecError::Malformed(format!(
            "nested deeper than {MAX_DEPTH}"
        )));
    }
    Ok(value)
}

/// Checks that `bytes`, which decoded to `value`, are its deterministic
/// encoding with no float, tag or `undefined` (SPEC.md §4.2; `undefined`
/// decodes as null, so its re-encoding differs).
pub(crate) fn check_canonical(value: &Value, bytes: &[u8]) -> Result<(), CodecError> {
    let again = serde_cbor::to_vec(value).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if again != bytes || contains_float_or_tag(value) {
        return Err(CodecError::NonCanonical);
    }
    Ok(())
}

/// Converts an already-checked value to a typed structure. The structure
/// must encode back to the same value: serde alone would take a byte string
/// where the schema has a text string (and the reverse), which would give
/// one meaning two encodings (found by fuzzing, `entry_decode`).
pub(crate) fn from_value<T: DeserializeOwned + Serialize>(value: Value) -> Result<T, CodecError> {
    let typed: T = serde_cbor::value::from_value(value.clone())
        .map_err(|e| CodecError::Schema(e.to_string()))?;
    match serde_cbor::value::to_value(&typed) {
        Ok(again) if again == value => Ok(typed),
        _ => Err(CodecError::Schema(
            "a value is not of the CBOR type the schema gives (e.g. a byte string for a text string)"
                .into(),
        )),
    }
}

/// Strictly decodes deterministic CBOR bytes into a typed structure.
pub fn from_slice<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, CodecError> {
    from_value(value_from_slice(bytes)?)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tag(_, inner) => 1 + depth(inner),
        _ => 0,
    }
}

fn contains_float_or_tag(v: &Value) -> bool {
    match v {
        Value::Float(_) | Value::Tag(..) => true,
        Value::Array(a) => a.iter().any(contains_float_or_tag),
        Value::Map(m) => m
            .iter()
            .any(|(k, v)| contains_float_or_tag(k) || contains_float_or_tag(v)),
        _ => false,
    }
}

/// Serde adapter for fixed-size byte strings (`[u8; N]` as a CBOR bstr).
pub(crate) mod fixed_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(d)?;
        <[u8; N]>::try_from(buf.as_slice())
            .map_err(|_| D::Error::custom(format!("expected {N} bytes, got {}", buf.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_shortest_integer() {
        // 0x18 0x01 is 1 encoded in two bytes; the shortest form is 0x01.
        assert_eq!(
            value_from_slice(&[0x18, 0x01]),
            Err(CodecError::NonCanonical)
        );
        assert!(value_from_slice(&[0x01]).is_ok());
    }

    #[test]
    fn rejects_unsorted_and_duplicate_keys() {
        // {2: 0, 1: 0}
        assert_eq!(
            value_from_slice(&[0xA2, 0x02, 0x00, 0x01, 0x00]),
            Err(CodecError::NonCanonical)
        );
        // {1: 0, 1: 0}
        assert!(value_from_slice(&[0xA2, 0x01, 0x00, 0x01, 0x00]).is_err());
    }

    #[test]
    fn rejects_indefinite_length_and_trailing_bytes() {
        assert_eq!(
            value_from_slice(&[0x9F, 0x01, 0xFF]),
            Err(CodecError::NonCanonical)
        );
        assert!(matches!(
            value_from_slice(&[0x01, 0x01]),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_floats_tags_and_deep_nesting() {
        // 1.5 as a half float
        assert!(value_from_slice(&[0xF9, 0x3E, 0x00]).is_err());
        // tag 1 (epoch time) around 0
        assert!(value_from_slice(&[0xC1, 0x00]).is_err());
        let mut deep = vec![0x81; 40];
        deep.push(0x00);
        assert!(value_from_slice(&deep).is_err());
    }

    #[test]
    fn a_value_of_another_cbor_type_is_refused() {
        // Fuzzing regression (entry_decode): h'61' decoded as the text "a",
        // and "a" as the bytes h'61'; each must be refused.
        assert!(matches!(
            from_slice::<String>(&[0x41, 0x61]),
            Err(CodecError::Schema(_))
        ));
        assert_eq!(from_slice::<String>(&[0x61, 0x61]), Ok("a".to_owned()));
        assert!(matches!(
            from_slice::<serde_bytes::ByteBuf>(&[0x61, 0x61]),
            Err(CodecError::Schema(_))
        ));
        assert!(from_slice::<serde_bytes::ByteBuf>(&[0x41, 0x61]).is_ok());
    }

    #[test]
    fn huge_declared_length_does_not_allocate() {
        // A byte string claiming 2^63 bytes, with none following.
        let bytes = [0x5B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            value_from_slice(&bytes),
            Err(CodecError::Malformed(_))
        ));
        // An array claiming 2^32 elements.
        let bytes = [0x9A, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            value_from_slice(&bytes),
            Err(CodecError::Malformed(_))
        ));
    }
}
