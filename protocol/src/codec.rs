//! The one place that speaks CBOR.
//!
//! Every Custodia structure is deterministic CBOR (RFC 8949 §4.2.1).
//! Encoding gives the bytes of a [`serde_cbor::Value`] tree, whose map
//! ordering is the canonical one for the key types we use (text and
//! unsigned integers), so encoding is deterministic by construction; they
//! are written without building the tree (codec/direct.rs). Decoding is strict: the input is parsed
//! into a value, re-encoded, and must come out byte-identical. That single
//! check rejects non-shortest integers and lengths, indefinite lengths,
//! unsorted or duplicate map keys and any tag serde_cbor would skip.
//! Entries first try a fast path ([`is_plain_deterministic`]): one walk
//! over the bytes that builds no value and only ever says "certainly
//! accepted" or "ask the strict decoder", so every refusal, and its
//! reason, still comes from the strict decoder.
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

mod direct;
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

/// Encodes a value as deterministic CBOR: written directly (codec/direct.rs),
/// or through a [`Value`] tree for what the direct writer does not write
/// the same way (nothing this crate defines); the bytes are the tree's.
pub fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    direct::to_vec(value).unwrap_or_else(|_| to_vec_via_tree(value))
}

/// [`to_vec`] through a [`Value`] tree, whose map ordering is the
/// canonical one: the reference the direct writer is tested against.
pub(crate) fn to_vec_via_tree<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
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

/// Whether `bytes` is certainly one data item in deterministic CBOR that
/// [`value_from_slice`] accepts, holding no null, float, tag or other
/// simple value than `false` and `true`: the fast path of decoding, a walk
/// over the bytes that builds no [`Value`].
///
/// It is conservative: `true` means the strict decoder would accept the
/// bytes, with the same value; `false` means "not known here", and the
/// caller falls back to the strict decoder, which gives the verdict and
/// its reason. Map keys must be integers, byte or text strings, strictly
/// ascending in the bytewise order of their encodings (RFC 8949 §4.2.1),
/// which for these keys is the order serde_cbor sorts them in, so a
/// duplicate key is refused too. Integers below −2⁶³ are left to the
/// strict decoder.
pub(crate) fn is_plain_deterministic(bytes: &[u8]) -> bool {
    let mut at = 0;
    item(bytes, &mut at, 0) && at == bytes.len()
}

/// Decodes bytes that [`is_plain_deterministic`] passed straight into a
/// typed structure, without a value tree; None if serde refuses them. The
/// caller must still check that the structure encodes back to the same
/// bytes: serde alone takes a byte string for a text string, and the
/// reverse (see [`from_value`]).
pub(crate) fn from_plain_slice<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_cbor::from_slice(bytes).ok()
}

/// The head of a data item at `*at`: major type and argument, advancing
/// past it. None unless definite and in the shortest form.
pub(crate) fn plain_head(bytes: &[u8], at: &mut usize) -> Option<(u8, u64)> {
    let first = *bytes.get(*at)?;
    let (major, info) = (first >> 5, first & 0x1F);
    let width = match info {
        0..=23 => {
            *at += 1;
            return Some((major, u64::from(info)));
        }
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let raw = bytes.get(*at + 1..*at + 1 + width)?;
    let arg = raw.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    let shortest = match width {
        1 => arg >= 24,
        2 => arg > 0xFF,
        4 => arg > 0xFFFF,
        _ => arg > 0xFFFF_FFFF,
    };
    *at += 1 + width;
    shortest.then_some((major, arg))
}

/// Walks one item nested `depth` containers deep.
fn item(bytes: &[u8], at: &mut usize, depth: usize) -> bool {
    let Some((major, arg)) = plain_head(bytes, at) else {
        return false;
    };
    match major {
        0 => true,
        1 => arg <= i64::MAX as u64,
        2 | 3 => {
            let Some(body) = usize::try_from(arg)
                .ok()
                .and_then(|n| bytes.get(*at..at.checked_add(n)?))
            else {
                return false;
            };
            *at += body.len();
            major == 2 || std::str::from_utf8(body).is_ok()
        }
        4 | 5 => {
            // A container's depth is one more than its deepest member's.
            if depth + 1 > MAX_DEPTH {
                return false;
            }
            // Each member takes at least one byte: a count beyond the
            // bytes left is refused before any loop.
            let left = (bytes.len() - *at) as u64;
            if arg > left {
                return false;
            }
            if major == 4 {
                return (0..arg).all(|_| item(bytes, at, depth + 1));
            }
            let mut previous: Option<&[u8]> = None;
            for _ in 0..arg {
                let start = *at;
                if !matches!(bytes.get(start).map(|b| b >> 5), Some(0..=3))
                    || !item(bytes, at, depth + 1)
                {
                    return false;
                }
                let key = &bytes[start..*at];
                if previous.is_some_and(|p| p >= key) {
                    return false;
                }
                previous = Some(key);
                if !item(bytes, at, depth + 1) {
                    return false;
                }
            }
            true
        }
        // Tags, and of the simple values all but false and true.
        _ => major == 7 && (arg == 20 || arg == 21),
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

    /// Every refusal of the strict decoder is a refusal of the fast path
    /// too (which then defers to the strict decoder for the reason), and
    /// what the fast path accepts the strict decoder accepts.
    #[test]
    fn the_fast_path_refuses_what_the_strict_decoder_refuses() {
        let refused: &[(&str, &[u8])] = &[
            ("non-minimal integer", &[0x18, 0x01]),
            ("non-minimal integer, 2 bytes", &[0x19, 0x00, 0x10]),
            ("non-minimal negative integer", &[0x38, 0x00]),
            ("non-minimal text length", &[0x78, 0x01, 0x61]),
            ("non-minimal array length", &[0x98, 0x01, 0x00]),
            ("non-minimal map length", &[0xB8, 0x01, 0x01, 0x00]),
            ("unsorted map keys", &[0xA2, 0x02, 0x00, 0x01, 0x00]),
            (
                "unsorted text keys",
                &[0xA2, 0x61, 0x62, 0x00, 0x61, 0x61, 0x00],
            ),
            (
                "longer text key first",
                &[0xA2, 0x62, 0x61, 0x61, 0x00, 0x61, 0x62, 0x00],
            ),
            ("duplicate key", &[0xA2, 0x01, 0x00, 0x01, 0x00]),
            (
                "duplicate text key",
                &[0xA2, 0x61, 0x61, 0x00, 0x61, 0x61, 0x01],
            ),
            ("indefinite array", &[0x9F, 0x01, 0xFF]),
            ("indefinite map", &[0xBF, 0x01, 0x00, 0xFF]),
            ("indefinite text", &[0x7F, 0x61, 0x61, 0xFF]),
            ("indefinite bytes", &[0x5F, 0x41, 0x61, 0xFF]),
            ("trailing bytes", &[0x01, 0x01]),
            ("truncated", &[0x62, 0x61]),
            ("reserved additional information", &[0x1C]),
            ("half float", &[0xF9, 0x3E, 0x00]),
            ("tag", &[0xC1, 0x00]),
            ("null", &[0xA1, 0x61, 0x61, 0xF6]),
            ("undefined", &[0xF7]),
            ("simple value 16", &[0xF0]),
            ("text that is not UTF-8", &[0x62, 0xC3, 0x28]),
            ("array claiming 2^32 items", &[0x9A, 0xFF, 0xFF, 0xFF, 0xFF]),
            (
                "bytes claiming 2^63",
                &[0x5B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            ("an array as a map key", &[0xA1, 0x80, 0x00]),
        ];
        for (what, bytes) in refused {
            assert!(
                !is_plain_deterministic(bytes),
                "{what} passed the fast path"
            );
            let strict = value_from_slice(bytes);
            let plain = strict
                .as_ref()
                .is_ok_and(|v| !contains_float_or_tag(v) && !matches!(v, Value::Null));
            assert!(
                strict.is_err() || !plain || matches!(*what, "null" | "an array as a map key"),
                "{what}: the strict decoder accepts it; the fast path need not refuse it"
            );
        }
        let mut deep = vec![0x81; MAX_DEPTH + 1];
        deep.push(0x00);
        assert!(!is_plain_deterministic(&deep));
        assert!(value_from_slice(&deep).is_err());
        let mut deepest = vec![0x81; MAX_DEPTH];
        deepest.push(0x00);
        assert!(is_plain_deterministic(&deepest));
        assert!(value_from_slice(&deepest).is_ok());

        let accepted: &[&[u8]] = &[
            &[0x00],
            &[0x17],
            &[0x18, 0x18],
            &[0x19, 0x01, 0x00],
            &[0x20],
            &[0x3B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0xF4],
            &[0xF5],
            &[0x40],
            &[0x60],
            &[0x80],
            &[0xA0],
            &[0xA2, 0x01, 0x00, 0x20, 0x00],
            &[
                0xA3, 0x61, 0x62, 0x00, 0x61, 0x63, 0x00, 0x62, 0x61, 0x61, 0x00,
            ],
            &[0xA2, 0x18, 0x18, 0x00, 0x41, 0x00, 0x00],
        ];
        for bytes in accepted {
            assert!(is_plain_deterministic(bytes), "{bytes:02x?}");
            assert_eq!(value_from_slice(bytes).map(|_| ()), Ok(()), "{bytes:02x?}");
        }
    }
}
