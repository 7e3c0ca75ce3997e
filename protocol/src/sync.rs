//! Sync protocol messages (SPEC.md §9) and their framing.
//!
//! Peers exchange length-prefixed frames on one bidirectional QUIC stream:
//! a 4-byte big-endian length, then one deterministic-CBOR [`Message`]. The
//! session logic (who sends what when) lives in the node; this module owns
//! the wire types, their limits and their error codes, so that an
//! independent peer can be written from the spec and these types alone.

use serde::{Deserialize, Serialize};

use crate::body::Head;
use crate::codec;
use crate::equivocation::EquivocationProof;
use crate::ids::{AgencyId, CaseId, StatementId};
use crate::state::WithheldPosition;

/// Sync protocol versions this implementation speaks. Version 2 adds the
/// `summary` message (SPEC.md §9.5.1): a reconnect that finds nothing new
/// costs one message each way instead of one `heads` per shared case.
/// Version 3 adds the replication of agencies' key logs (SPEC.md §9.15):
/// the `key-heads` and `key-statements` messages.
pub const SYNC_VERSIONS: &[u64] = &[1, 2, 3];
/// The largest frame accepted, in bytes (excluding the 4-byte length).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// At most this many items in one `entries` message.
pub const MAX_BATCH: usize = 256;
/// At most this many heads in one `heads` message.
pub const MAX_HEADS: usize = 4096;
/// A sender keeps at most this many unacknowledged batches per connection.
pub const MAX_UNACKED_BATCHES: usize = 4;
/// At most this many key logs in one `key-heads` message (version 3).
pub const MAX_KEY_HEADS: usize = 4096;
/// At most this many statements in one `key-statements` message (version 3).
pub const MAX_KEY_BATCH: usize = 256;

/// One sync message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Message {
    /// First message on a connection, both ways.
    Hello(Hello),
    /// What the sender holds of one case.
    Heads(Heads),
    /// Entries of one case, in dependency order.
    Entries(Entries),
    /// The receiver durably stored a batch.
    Ack(Ack),
    /// An equivocation proof for a case both share.
    Equivocation(EquivocationNotice),
    /// Version 2: a digest of every case the sender would announce to the
    /// receiver, with its heads.
    Summary(Summary),
    /// Version 3: the key logs the sender holds and would share with the
    /// receiver, each as its length and last statement.
    KeyHeads(KeyHeads),
    /// Version 3: consecutive statements of one agency's key log.
    KeyStatements(KeyStatements),
    /// A fatal error; the sender closes the connection after it.
    Error(ErrorMessage),
}

/// Version negotiation and identity echo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Supported sync versions, ascending.
    pub versions: Vec<u64>,
    /// The sender's agency id (must equal its TLS-authenticated key).
    pub agency: AgencyId,
}

/// The heads the sender holds of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heads {
    /// The case.
    pub case: CaseId,
    /// One per author, ascending by author.
    pub heads: Vec<Head>,
}

/// What the sender would announce, as one digest (SPEC.md §9.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// How many cases the digest covers.
    pub cases: u64,
    /// SHA-256 of the deterministic CBOR array of `[case, heads]` pairs,
    /// ascending by case.
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
}

/// What the sender holds of one agency's key log: `[agency, length,
/// id of the last statement]` (SPEC.md §9.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyHead(pub AgencyId, pub u64, pub StatementId);

/// Version 3: the key logs the sender would share with the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHeads {
    /// One per agency, ascending by agency, at most [`MAX_KEY_HEADS`].
    pub logs: Vec<KeyHead>,
}

/// Version 3: consecutive statements of one agency's key log, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStatements {
    /// Whose log.
    pub agency: AgencyId,
    /// 1 to [`MAX_KEY_BATCH`] statements: their exact COSE_Sign1 bytes.
    #[serde(with = "byte_strings")]
    pub items: Vec<Vec<u8>>,
}

/// A list of byte strings as a CBOR array of byte strings (not of arrays
/// of integers, serde's default for `Vec<u8>`).
mod byte_strings {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|b| serde_bytes::Bytes::new(b))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
        Ok(v.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
    }
}

/// An entry or a withheld position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    /// The exact COSE_Sign1 bytes.
    Entry(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A position the receiver may not see.
    Withheld(WithheldPosition),
}

/// A batch of entries of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entries {
    /// The case.
    pub case: CaseId,
    /// The sender's batch number on this connection, from 1.
    pub batch: u64,
    /// At most [`MAX_BATCH`] items, in dependency order.
    pub items: Vec<Item>,
}

/// Acknowledges a batch once its entries are durably stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The case.
    pub case: CaseId,
    /// The batch number acknowledged.
    pub batch: u64,
    /// How many items are now stored (new or already present).
    pub stored: u64,
    /// How many items were refused.
    pub refused: u64,
}

/// Carries an equivocation proof to members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquivocationNotice {
    /// The case.
    pub case: CaseId,
    /// The proof.
    pub proof: EquivocationProof,
}

/// A fatal protocol error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMessage {
    /// The error code, see [`ErrorCode`].
    pub code: u64,
    /// A human-readable message (may be empty).
    pub message: String,
}

/// Sync error codes: one registry, so no number is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No common sync version.
    UnsupportedVersion = 1,
    /// A frame that does not decode as a message.
    MalformedMessage = 2,
    /// A frame over [`MAX_FRAME`], or a message over a count limit.
    OversizeMessage = 3,
    /// A message out of order (e.g. before hello), or a hello whose agency
    /// is not the authenticated peer.
    ProtocolViolation = 4,
    /// Too many unacknowledged batches.
    FlowControl = 5,
    /// The node failed internally (storage); the peer may retry later.
    Internal = 6,
}

impl ErrorCode {
    /// The code for a number, if registered.
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            1 => Self::UnsupportedVersion,
            2 => Self::MalformedMessage,
            3 => Self::OversizeMessage,
            4 => Self::ProtocolViolation,
            5 => Self::FlowControl,
            6 => Self::Internal,
            _ => return None,
        })
    }

    /// QUIC application close code carrying this error.
    pub fn as_u64(self) -> u64 {
        self as u64
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Over [`MAX_FRAME`] or a count limit.
    #[error("message too large: {0}")]
    Oversize(String),
    /// Not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl SyncError {
    /// The wire code to close the connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            SyncError::Oversize(_) => ErrorCode::OversizeMessage,
            SyncError::Malformed(_) => ErrorCode::MalformedMessage,
        }
    }
}

impl Message {
    /// Encodes a message as one frame: 4-byte big-endian length + CBOR.
    pub fn to_frame(&self) -> Vec<u8> {
        let body = codec::to_vec(self);
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a frame's body (without the length prefix) strictly and
    /// checks the count limits.
    pub fn decode(body: &[u8]) -> Result<Message, SyncError> {
        if body.len() > MAX_FRAME {
            return Err(SyncError::Oversize(format!("{} bytes", body.len())));
        }
        check_item_count(body)?;
        let m: Message =
            codec::from_slice(body).map_err(|e| SyncError::Malformed(e.to_string()))?;
        match &m {
            Message::Entries(e) if e.items.len() > MAX_BATCH => Err(SyncError::Oversize(format!(
                "{} items in a batch (limit {MAX_BATCH})",
                e.items.len()
            ))),
            Message::Heads(h) if h.heads.len() > MAX_HEADS => Err(SyncError::Oversize(format!(
                "{} heads (limit {MAX_HEADS})",
                h.heads.len()
            ))),
            Message::Hello(h) if h.versions.len() > 16 => {
                Err(SyncError::Oversize("more than 16 versions".into()))
            }
            Message::KeyHeads(k) if k.logs.len() > MAX_KEY_HEADS => Err(SyncError::Oversize(
                format!("{} key logs (limit {MAX_KEY_HEADS})", k.logs.len()),
            )),
            Message::KeyHeads(k) if !k.logs.windows(2).all(|w| w[0].0 < w[1].0) => Err(
                SyncError::Malformed("key-heads not strictly ascending by agency".into()),
            ),
            Message::KeyStatements(k) if k.items.len() > MAX_KEY_BATCH => Err(SyncError::Oversize(
                format!("{} key statements (limit {MAX_KEY_BATCH})", k.items.len()),
            )),
            Message::KeyStatements(k) if k.items.is_empty() => Err(SyncError::Malformed(
                "key-statements with no statement".into(),
            )),
            Message::Summary(s) if s.digest.len() != 32 => Err(SyncError::Malformed(format!(
                "a summary digest of {} bytes (SHA-256: 32)",
                s.digest.len()
            ))),
            _ => Ok(m),
        }
    }

    /// Reads the length prefix of a frame, refusing one over [`MAX_FRAME`].
    pub fn frame_len(prefix: [u8; 4]) -> Result<usize, SyncError> {
        let n = u32::from_be_bytes(prefix) as usize;
        if n > MAX_FRAME {
            return Err(SyncError::Oversize(format!(
                "frame of {n} bytes (limit {MAX_FRAME})"
            )));
        }
        Ok(n)
    }
}

/// At most this many CBOR data items in one message: a `heads` message at
/// its limit has about four per head. More cannot be a valid message.
const MAX_ITEMS: usize = 4 * MAX_HEADS + 64;

/// Counts a body's CBOR data items by walking their heads, without building
/// anything, and refuses a body with more than [`MAX_ITEMS`]. Decoding
/// builds a tree of about 32 bytes per item before the count limits can be
/// checked, so a frame of 4 MiB of one-byte items would take over 500 MB
/// and seconds of CPU (found by fuzzing `sync_message` with large frames).
/// Anything else wrong is left to the strict decoder, except an indefinite
/// length, which it refuses anyway and which cannot be counted ahead.
fn check_item_count(body: &[u8]) -> Result<(), SyncError> {
    let (mut pos, mut pending, mut items) = (0usize, 1u64, 0usize);
    while pending > 0 {
        let Some(&first) = body.get(pos) else {
            return Ok(()); // truncated: the decoder says so
        };
        pending -= 1;
        items += 1;
        if items > MAX_ITEMS {
            return Err(SyncError::Oversize(format!(
                "more than {MAX_ITEMS} CBOR data items"
            )));
        }
        let (major, info) = (first >> 5, first & 0x1F);
        let size = match info {
            0..=23 => 0,
            24..=27 => 1usize << (info - 24),
            31 if (2..=5).contains(&major) => {
                return Err(SyncError::Malformed(
                    "an indefinite length (not deterministic CBOR)".into(),
                ))
            }
            _ => return Ok(()), // reserved or a break: the decoder says so
        };
        let Some(raw) = body.get(pos + 1..pos + 1 + size) else {
            return Ok(());
        };
        pos += 1 + size;
        let arg = if size == 0 {
            u64::from(info)
        } else {
            raw.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
        };
        match major {
            2 | 3 => match usize::try_from(arg).ok().and_then(|n| pos.checked_add(n)) {
                Some(end) if end <= body.len() => pos = end,
                _ => return Ok(()),
            },
            4 => pending = pending.saturating_add(arg),
            5 => pending = pending.saturating_add(arg.saturating_mul(2)),
            6 => pending += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EntryId;

    #[test]
    fn a_frame_of_many_small_items_is_refused_before_decoding() {
        // Fuzzing regression (sync_message, large frames): 4 MiB of
        // one-byte items took ~590 MB and ~6 s to refuse; now refused by
        // counting heads, before any tree is built.
        let n = MAX_FRAME - 16;
        let mut array = vec![0x9A];
        array.extend_from_slice(&((n - 5) as u32).to_be_bytes());
        array.resize(n, 0x00);
        let mut items = vec![0xA1, 0x67];
        items.extend_from_slice(b"entries");
        items.extend_from_slice(&[0xA3, 0x64]);
        items.extend_from_slice(b"case");
        items.extend_from_slice(&[0x58, 0x20]);
        items.extend_from_slice(&[0; 32]);
        items.push(0x65);
        items.extend_from_slice(b"batch");
        items.push(1);
        items.push(0x65);
        items.extend_from_slice(b"items");
        let k = n - items.len() - 5;
        items.push(0x9A);
        items.extend_from_slice(&(k as u32).to_be_bytes());
        items.resize(items.len() + k, 0x40);
        let mut nested = vec![0x9A];
        nested.extend_from_slice(&(((n - 5) / 16) as u32).to_be_bytes());
        while nested.len() + 16 <= n {
            nested.push(0x8F);
            nested.extend_from_slice(&[0; 15]);
        }
        for body in [array, items, nested] {
            match Message::decode(&body) {
                Err(SyncError::Oversize(m)) => assert!(m.contains("CBOR data items"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        // An indefinite-length array is refused without being read.
        let mut indefinite = vec![0x9F];
        indefinite.resize(1000, 0x00);
        assert!(matches!(
            Message::decode(&indefinite),
            Err(SyncError::Malformed(_))
        ));
        // A heads message at its limit still decodes.
        let heads = Message::Heads(Heads {
            case: EntryId([2; 32]),
            heads: (0..MAX_HEADS as u64)
                .map(|i| Head(AgencyId([1; 32]), i, EntryId([3; 32])))
                .collect(),
        });
        let f = heads.to_frame();
        assert_eq!(Message::decode(&f[4..]), Ok(heads));
    }

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            Message::Hello(Hello {
                versions: vec![1],
                agency: AgencyId([1; 32]),
            }),
            Message::Heads(Heads {
                case: EntryId([2; 32]),
                heads: vec![Head(AgencyId([1; 32]), 5, EntryId([3; 32]))],
            }),
            Message::Entries(Entries {
                case: EntryId([2; 32]),
                batch: 7,
                items: vec![
                    Item::Entry(vec![0xD2, 1, 2]),
                    Item::Withheld(WithheldPosition {
                        author: AgencyId([1; 32]),
                        seq: 3,
                        id: EntryId([4; 32]),
                    }),
                ],
            }),
            Message::Ack(Ack {
                case: EntryId([2; 32]),
                batch: 7,
                stored: 2,
                refused: 0,
            }),
            Message::Error(ErrorMessage {
                code: 1,
                message: "x".into(),
            }),
        ];
        for m in msgs {
            let frame = m.to_frame();
            let n = Message::frame_len(frame[..4].try_into().expect("4")).expect("len");
            assert_eq!(n, frame.len() - 4);
            assert_eq!(Message::decode(&frame[4..]), Ok(m));
        }
    }

    #[test]
    fn refuses_oversize_and_garbage() {
        assert!(Message::frame_len((MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        assert!(matches!(
            Message::decode(b"\xff\x00"),
            Err(SyncError::Malformed(_))
        ));
        assert!(Message::decode(&[0xA1, 0x61, 0x78, 0x00]).is_err());
        let big = Message::Entries(Entries {
            case: EntryId([0; 32]),
            batch: 0,
            items: vec![Item::Entry(vec![1]); MAX_BATCH + 1],
        });
        let f = big.to_frame();
        assert!(matches!(
            Message::decode(&f[4..]),
            Err(SyncError::Oversize(_))
        ));
    }
}
