//! CBOR heads: a shortest-form writer, and a cursor over deterministic
//! CBOR (RFC 8949 §4.2.1) for fixed schemas read without a tree.
//!
//! A bundle can be large (every entry of a case), so it is never parsed
//! into a tree: this reader walks the bytes head by head, checks each head
//! is in its shortest form and of definite length, and returns byte
//! strings as slices of the input. A length is compared with the bytes
//! that remain before anything is done with it, so memory never depends on
//! what a head claims. The writer builds the same structures (and the
//! COSE envelope around entries and bundles) byte by byte.

/// Why the bytes under a [`Reader`] are not what it was asked to read.
/// Offsets are those of the whole file the reader's bytes belong to; the
/// bundle layer turns each into the `BundleError` of the
/// same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The input ends before the structure does.
    Truncated {
        /// Where the input ends.
        at: usize,
        /// What was being read.
        inside: &'static str,
        /// How long the input would have to be at least, when a length said so.
        needed: Option<usize>,
    },
    /// Not well-formed CBOR.
    Malformed {
        /// Offset.
        at: usize,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed, but not the deterministic encoding.
    NonCanonical {
        /// Offset.
        at: usize,
        /// What is not deterministic.
        what: &'static str,
    },
    /// Not the structure the schema asks for.
    Schema {
        /// Offset.
        at: usize,
        /// What is wrong.
        reason: String,
    },
}

/// CBOR major types.
pub(crate) const UINT: u8 = 0;
pub(crate) const BYTES: u8 = 2;
pub(crate) const TEXT: u8 = 3;
pub(crate) const ARRAY: u8 = 4;
pub(crate) const MAP: u8 = 5;

/// A position in the input, with what is being read there (for errors).
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the whole file, so errors name file offsets.
    base: usize,
    /// File offset where the structure being read ends. For a reader over
    /// a whole structure it is where `bytes` ends; a streaming reader sees
    /// only a prefix of it (`bytes` ends earlier), and running out of
    /// `bytes` before `end` means "more input needed", reported as
    /// [`ReadError::Truncated`] at the end of `bytes`.
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
            end: base + bytes.len(),
        }
    }

    /// A reader over `bytes`, the available prefix of a structure that
    /// ends at file offset `end` (at least `base + bytes.len()`).
    pub(crate) fn prefix(bytes: &'a [u8], base: usize, end: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
            end: end.max(base + bytes.len()),
        }
    }

    /// The file offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The position within this reader's slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left in the structure being read (available or not yet).
    pub(crate) fn left(&self) -> u64 {
        (self.end - self.offset()) as u64
    }

    fn truncated(&self, inside: &'static str) -> ReadError {
        ReadError::Truncated {
            at: self.base + self.bytes.len(),
            inside,
            needed: None,
        }
    }

    fn take(&mut self, n: u64, inside: &'static str) -> Result<&'a [u8], ReadError> {
        let left = (self.end - self.offset()) as u64;
        if n > left {
            return Err(ReadError::Truncated {
                at: self.end,
                inside,
                needed: usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(self.base + self.pos)),
            });
        }
        let n = n as usize;
        if n > self.bytes.len() - self.pos {
            // Within the structure, beyond what is available yet.
            return Err(self.truncated(inside));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The major type of the next item, without consuming it.
    pub(crate) fn peek_major(&self, inside: &'static str) -> Result<u8, ReadError> {
        self.bytes
            .get(self.pos)
            .map(|b| b >> 5)
            .ok_or_else(|| self.truncated(inside))
    }

    /// Reads one head: (major type, argument). Rejects indefinite lengths,
    /// reserved values and non-shortest arguments.
    pub(crate) fn head(&mut self, inside: &'static str) -> Result<(u8, u64), ReadError> {
        let at = self.offset();
        let first = self.take(1, inside)?[0];
        let major = first >> 5;
        let info = first & 0x1F;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1u64 << (info - 24);
                let raw = self.take(n, inside)?;
                let mut v = 0u64;
                for b in raw {
                    v = (v << 8) | u64::from(*b);
                }
                let shortest = match info {
                    24 => v >= 24,
                    25 => v > 0xFF,
                    26 => v > 0xFFFF,
                    _ => v > 0xFFFF_FFFF,
                };
                if !shortest {
                    return Err(ReadError::NonCanonical {
                        at,
                        what: "an integer or length not in its shortest form",
                    });
                }
                v
            }
            31 if major >= BYTES && major != 6 && major != 7 => {
                return Err(ReadError::NonCanonical {
                    at,
                    what: "an indefinite length",
                })
            }
            _ => {
                return Err(ReadError::Malformed {
                    at,
                    reason: format!("byte {first:#04x} is not a CBOR head this format uses"),
                })
            }
        };
        Ok((major, arg))
    }

    pub(crate) fn expect(&mut self, want: u8, inside: &'static str) -> Result<u64, ReadError> {
        let at = self.offset();
        let (major, arg) = self.head(inside)?;
        if major != want {
            return Err(ReadError::Schema {
                at,
                reason: format!(
                    "{inside}: expected {}, found {}",
                    major_name(want),
                    major_name(major)
                ),
            });
        }
        Ok(arg)
    }

    pub(crate) fn uint(&mut self, inside: &'static str) -> Result<u64, ReadError> {
        self.expect(UINT, inside)
    }

    pub(crate) fn bytes(&mut self, inside: &'static str) -> Result<&'a [u8], ReadError> {
        let n = self.expect(BYTES, inside)?;
        self.take(n, inside)
    }

    /// A byte string of exactly `N` bytes.
    pub(crate) fn fixed<const N: usize>(
        &mut self,
        inside: &'static str,
    ) -> Result<[u8; N], ReadError> {
        let at = self.offset();
        let b = self.bytes(inside)?;
        <[u8; N]>::try_from(b).map_err(|_| ReadError::Schema {
            at,
            reason: format!("{inside}: expected {N} bytes, found {}", b.len()),
        })
    }

    pub(crate) fn text(&mut self, inside: &'static str) -> Result<&'a str, ReadError> {
        let at = self.offset();
        let n = self.expect(TEXT, inside)?;
        let raw = self.take(n, inside)?;
        std::str::from_utf8(raw).map_err(|_| ReadError::Malformed {
            at,
            reason: format!("{inside}: a text string that is not valid UTF-8"),
        })
    }

    pub(crate) fn array(&mut self, inside: &'static str) -> Result<u64, ReadError> {
        let n = self.expect(ARRAY, inside)?;
        self.plausible(n, inside)
    }

    pub(crate) fn map(&mut self, inside: &'static str) -> Result<u64, ReadError> {
        let n = self.expect(MAP, inside)?;
        self.plausible(n.saturating_mul(2), inside).map(|_| n)
    }

    /// Every item takes at least one byte: a count larger than what is
    /// left cannot be satisfied.
    fn plausible(&self, n: u64, inside: &'static str) -> Result<u64, ReadError> {
        if n > (self.end - self.offset()) as u64 {
            return Err(ReadError::Truncated {
                at: self.end,
                inside,
                needed: None,
            });
        }
        Ok(n)
    }

    /// Reads the members of a map whose keys are all text, in the
    /// deterministic order, each known key at most once. `keys` lists the
    /// known keys in deterministic order; `f` reads each member's value.
    pub(crate) fn members<E: From<ReadError>>(
        &mut self,
        count: u64,
        keys: &[&'static str],
        inside: &'static str,
        mut f: impl FnMut(&mut Self, usize) -> Result<(), E>,
    ) -> Result<Vec<bool>, E> {
        let mut seen = vec![false; keys.len()];
        let mut last: Option<usize> = None;
        for _ in 0..count {
            let k = self.member_key(keys, inside, last)?;
            last = Some(k);
            seen[k] = true;
            f(self, k)?;
        }
        Ok(seen)
    }

    /// Reads the key of a map member: one of `keys` (in deterministic
    /// order), after the key `last` read before it.
    pub(crate) fn member_key(
        &mut self,
        keys: &[&'static str],
        inside: &'static str,
        last: Option<usize>,
    ) -> Result<usize, ReadError> {
        let at = self.offset();
        let key = self.text(inside)?;
        let Some(k) = keys.iter().position(|x| *x == key) else {
            return Err(ReadError::Schema {
                at,
                reason: format!("{inside}: unknown member {key:?}"),
            });
        };
        if last.is_some_and(|l| l >= k) {
            return Err(ReadError::NonCanonical {
                at,
                what: "map keys out of order or repeated",
            });
        }
        Ok(k)
    }
}

fn major_name(m: u8) -> &'static str {
    match m {
        0 => "an unsigned integer",
        1 => "a negative integer",
        2 => "a byte string",
        3 => "a text string",
        4 => "an array",
        5 => "a map",
        6 => "a tag",
        _ => "a simple value or float",
    }
}

/// Appends a CBOR head in its shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xFF => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xFFFF => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Appends a text string.
pub(crate) fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a byte string.
pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_in_shortest_form() {
        for v in [
            0u64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_head(&mut out, UINT, v);
            let mut r = Reader::new(&out, 0);
            assert_eq!(r.uint("test"), Ok(v));
            assert_eq!(r.pos(), out.len());
        }
    }

    #[test]
    fn refuses_long_forms_and_indefinite_lengths() {
        let mut r = Reader::new(&[0x18, 0x05], 0);
        assert!(matches!(r.uint("t"), Err(ReadError::NonCanonical { .. })));
        let mut r = Reader::new(&[0x9F, 0xFF], 0);
        assert!(matches!(r.array("t"), Err(ReadError::NonCanonical { .. })));
    }

    #[test]
    fn a_length_beyond_the_input_is_truncation() {
        let mut r = Reader::new(&[0x5A, 0xFF, 0xFF, 0xFF, 0xFF, 0x00], 10);
        assert_eq!(
            r.bytes("entry"),
            Err(ReadError::Truncated {
                at: 16,
                inside: "entry",
                needed: Some(0xFFFF_FFFF + 15)
            })
        );
        let mut r = Reader::new(&[0x9A, 0xFF, 0xFF, 0xFF, 0xFF], 0);
        assert!(matches!(r.array("t"), Err(ReadError::Truncated { .. })));
    }
}
