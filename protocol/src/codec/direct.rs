//! Deterministic CBOR written straight from a typed value, without a
//! [`Value`](super::Value) tree: the bytes [`super::to_vec`] gives, at a
//! fraction of the cost (no allocation per string, no ordered map of
//! values; a map's entries are written to one buffer and sorted there).
//!
//! Every entry decoded on the fast path is encoded again to check that its
//! bytes are its typed value's (serde alone would take a byte string for a
//! text string): with the tree, that re-encoding was a tenth of the
//! verification of a bundle.
//!
//! It follows the CBOR library's value serializer rule for rule: a unit, a unit
//! struct and `None` are null; a unit variant is its name; a newtype
//! variant, a tuple variant and a struct variant are a map of one entry,
//! the name; structs and maps are maps whose keys sort as the library's
//! `Value` orders them, which for integer, byte string and text string
//! keys is the bytewise order of their encodings (RFC 8949 §4.2.1). What it
//! does not write the same way — a float, a tag, a u128, a map key of another
//! type, two equal keys, a sequence whose length was misstated — is
//! [`Unsupported`], and the caller encodes through the tree instead, so
//! the bytes never differ.

use serde::ser::{self, Serialize};

use super::head::{write_bytes, write_head, write_text, ARRAY, MAP, TEXT};

/// This encoder does not write the value as the tree would.
#[derive(Debug)]
pub(crate) struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not encoded without a value tree")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

type Result<T = ()> = std::result::Result<T, Unsupported>;

/// The CBOR library's name for a tagged value's newtype.
const TAG_NEWTYPE: &str = "\0cbor_tag";

/// Encodes `value`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    value.serialize(Direct { out: &mut out })?;
    Ok(out)
}

/// The serializer: appends one data item to `out`.
struct Direct<'a> {
    out: &'a mut Vec<u8>,
}

const SIMPLE_FALSE: u8 = 0xF4;
const SIMPLE_TRUE: u8 = 0xF5;
const SIMPLE_NULL: u8 = 0xF6;

impl<'a> Direct<'a> {
    fn int(self, v: i128) -> Result {
        if v >= 0 {
            write_head(self.out, 0, u64::try_from(v).map_err(|_| Unsupported)?);
        } else {
            write_head(
                self.out,
                1,
                u64::try_from(-(v + 1)).map_err(|_| Unsupported)?,
            );
        }
        Ok(())
    }

    /// Starts a map of one entry, `variant`, whose value follows.
    fn variant(self, variant: &str) -> &'a mut Vec<u8> {
        write_head(self.out, MAP, 1);
        write_text(self.out, variant);
        self.out
    }
}

impl<'a> ser::Serializer for Direct<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Map<'a>;
    type SerializeStructVariant = Map<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result {
        self.out.push(if v { SIMPLE_TRUE } else { SIMPLE_FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result {
        self.int(v.into())
    }
    fn serialize_i128(self, v: i128) -> Result {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result {
        self.int(v.into())
    }
    fn serialize_u128(self, _: u128) -> Result {
        // The tree has no u128 (serde's default refuses it).
        Err(Unsupported)
    }
    fn serialize_f32(self, _: f32) -> Result {
        Err(Unsupported)
    }
    fn serialize_f64(self, _: f64) -> Result {
        Err(Unsupported)
    }
    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result {
        write_text(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        write_bytes(self.out, v);
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.out.push(SIMPLE_NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, v: &T) -> Result {
        if name == TAG_NEWTYPE {
            return Err(Unsupported);
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result {
        v.serialize(Direct {
            out: self.variant(variant),
        })
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>> {
        let len = len.ok_or(Unsupported)?;
        write_head(self.out, ARRAY, len as u64);
        Ok(Seq {
            out: self.out,
            left: len,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a>> {
        Direct {
            out: self.variant(variant),
        }
        .serialize_seq(Some(len))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a>> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Map<'a>> {
        Ok(Map::new(self.out))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Map<'a>> {
        Ok(Map::new(self.variant(variant)))
    }
}

/// An array whose length was written first: exactly `left` more elements.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    left: usize,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.left = self.left.checked_sub(1).ok_or(Unsupported)?;
        v.serialize(Direct { out: self.out })
    }

    fn done(self) -> Result {
        (self.left == 0).then_some(()).ok_or(Unsupported)
    }
}

/// Six of serde's seven compound traits (the map's is below), each
/// forwarding to one of the two writers: arrays to [`Seq`], structs to
/// [`Map`].
macro_rules! forward {
    ($trait:ident for $ty:ident: $method:ident($($key:ident: $kt:ty,)?) => $to:ident) => {
        impl ser::$trait for $ty<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: $kt,)? v: &T) -> Result {
                self.$to($($key,)? v)
            }
            fn end(self) -> Result {
                self.done()
            }
        }
    };
}

forward!(SerializeSeq for Seq: serialize_element() => element);
forward!(SerializeTuple for Seq: serialize_element() => element);
forward!(SerializeTupleStruct for Seq: serialize_field() => element);
forward!(SerializeTupleVariant for Seq: serialize_field() => element);
forward!(SerializeStruct for Map: serialize_field(k: &'static str,) => field);
forward!(SerializeStructVariant for Map: serialize_field(k: &'static str,) => field);

/// A map: its entries are encoded into `buf` as they come, then written
/// to `out` in the order of their keys' encodings.
struct Map<'a> {
    out: &'a mut Vec<u8>,
    buf: Vec<u8>,
    /// Per entry: where its key starts, where its value starts, where it
    /// ends, in `buf`.
    entries: Vec<(usize, usize, usize)>,
}

impl<'a> Map<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Map {
            out,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result {
        let start = self.buf.len();
        k.serialize(Direct { out: &mut self.buf })?;
        // Integer, byte string and text string keys sort bytewise as the
        // tree sorts them; others not always.
        if !matches!(self.buf.get(start).map(|b| b >> 5), Some(0..=TEXT)) {
            return Err(Unsupported);
        }
        self.entries.push((start, self.buf.len(), self.buf.len()));
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        v.serialize(Direct { out: &mut self.buf })?;
        let end = self.buf.len();
        self.entries.last_mut().ok_or(Unsupported)?.2 = end;
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result {
        let start = self.buf.len();
        write_text(&mut self.buf, k);
        let value = self.buf.len();
        v.serialize(Direct { out: &mut self.buf })?;
        self.entries.push((start, value, self.buf.len()));
        Ok(())
    }

    fn done(mut self) -> Result {
        let buf = &self.buf;
        self.entries
            .sort_unstable_by(|a, b| buf[a.0..a.1].cmp(&buf[b.0..b.1]));
        if self
            .entries
            .windows(2)
            .any(|w| buf[w[0].0..w[0].1] == buf[w[1].0..w[1].1])
        {
            return Err(Unsupported);
        }
        write_head(self.out, MAP, self.entries.len() as u64);
        for &(start, _, end) in &self.entries {
            self.out.extend_from_slice(&buf[start..end]);
        }
        Ok(())
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result {
        self.key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.value(v)
    }
    fn end(self) -> Result {
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Serialize, Serializer};

    use super::super::{to_vec_via_tree, Value};
    use super::*;

    /// The direct bytes are the tree's, or the direct writer declines.
    fn same<T: Serialize + ?Sized>(v: &T) -> bool {
        let tree = to_vec_via_tree(v);
        match to_vec(v) {
            Ok(direct) => {
                assert_eq!(direct, tree, "direct vs tree");
                true
            }
            Err(Unsupported) => false,
        }
    }

    #[test]
    fn every_vector_payload_is_written_as_the_tree_writes_it() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../spec/vectors/entries.json"
        ))
        .expect("entries.json");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let mut payloads = 0;
        for v in doc["vectors"].as_array().expect("vectors") {
            for e in v["entries"].as_array().into_iter().flatten() {
                let bytes = hex::decode(e.as_str().unwrap_or_default()).expect("hex");
                if let Ok(entry) = crate::Entry::decode(&bytes) {
                    assert!(same(entry.payload()), "{}", v["name"]);
                    payloads += 1;
                }
            }
        }
        assert!(payloads > 100, "{payloads} payloads");
    }

    /// Values of every kind the tree orders, from a fixed sequence.
    fn value(x: &mut u64, depth: usize) -> Value {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = *x >> 33;
        let len = |r: u64| [0, 1, 5, 23, 24, 25, 255, 256, 300][(r % 9) as usize];
        match r % if depth > 3 { 6 } else { 8 } {
            0 => Value::Integer(i128::from(r >> 3) - (1 << 29)),
            1 => Value::Integer(
                [
                    0,
                    23,
                    24,
                    255,
                    256,
                    65535,
                    65536,
                    u64::MAX.into(),
                    -1,
                    -24,
                    -25,
                    -(1 << 64),
                ][(r >> 3) as usize % 12],
            ),
            2 => Value::Text("é".repeat(len(r >> 3) / 2) + &"t".repeat(len(r >> 7) % 3)),
            3 => Value::Bytes(vec![(r >> 3) as u8; len(r >> 5)]),
            4 => Value::Bool(r & 8 == 0),
            5 => Value::Null,
            6 => Value::Array((0..(r >> 3) % 5).map(|_| value(x, depth + 1)).collect()),
            _ => {
                let mut m = BTreeMap::new();
                for _ in 0..(r >> 3) % 7 {
                    let k = match value(x, 4) {
                        k @ (Value::Integer(_) | Value::Text(_) | Value::Bytes(_)) => k,
                        _ => Value::Text(format!("k{}", m.len())),
                    };
                    m.insert(k, value(x, depth + 1));
                }
                Value::Map(m)
            }
        }
    }

    #[test]
    fn generated_values_are_written_as_the_tree_writes_them() {
        let mut x = 7;
        for _ in 0..3000 {
            let v = value(&mut x, 0);
            assert!(same(&v), "{v:?}");
        }
    }

    /// Emits a map with the same key twice.
    struct TwoEqualKeys;
    impl Serialize for TwoEqualKeys {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("a", &1)?;
            m.serialize_entry("a", &2)?;
            m.end()
        }
    }

    /// Says one element and gives two, or gives no length.
    struct Misstated(Option<usize>);
    impl Serialize for Misstated {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut q = s.serialize_seq(self.0)?;
            q.serialize_element(&1)?;
            q.serialize_element(&2)?;
            q.end()
        }
    }

    #[test]
    fn what_it_does_not_write_as_the_tree_it_leaves_to_the_tree() {
        let float = Value::Float(1.5);
        let tag = Value::Tag(1, Box::new(Value::Integer(0)));
        let array_key = Value::Map(BTreeMap::from([(
            Value::Array(vec![Value::Integer(1)]),
            Value::Null,
        )]));
        let bool_key = Value::Map(BTreeMap::from([(Value::Bool(true), Value::Null)]));
        assert!(!same(&float));
        assert!(!same(&tag));
        assert!(!same(&array_key));
        assert!(!same(&bool_key));
        assert!(!same(&TwoEqualKeys));
        assert!(!same(&Misstated(Some(1))));
        assert!(!same(&Misstated(Some(3))));
        assert!(!same(&Misstated(None)));
        assert!(to_vec(&1u128).is_err(), "the tree has no u128");
        // And the crate's encoder still gives the tree's bytes for them.
        assert_eq!(super::super::to_vec(&float), to_vec_via_tree(&float));
        assert_eq!(
            super::super::to_vec(&TwoEqualKeys),
            to_vec_via_tree(&TwoEqualKeys)
        );
        // Enums in every shape, options, tuples and structs.
        #[derive(Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, String),
            Struct { b: bool, a: Option<u8> },
        }
        #[derive(Serialize)]
        struct S {
            zz: Vec<E>,
            a: (i64, Option<String>),
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            unit: (),
        }
        let s = S {
            zz: vec![
                E::Unit,
                E::New(3),
                E::Tuple(4, "x".into()),
                E::Struct { b: true, a: None },
            ],
            a: (-7, None),
            skipped: None,
            unit: (),
        };
        assert!(same(&s));
    }
}
