//! Identifiers: agency ids, entry ids, case ids and evidence item ids.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::fixed_bytes;

/// How many hex digits of an id `short()` shows.
const SHORT_HEX: usize = 12;

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = "fixed_bytes")] pub [u8; $len]);

        impl $name {
            /// Length of the identifier in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses lowercase or uppercase hex of exactly the right length.
            pub fn from_hex(s: &str) -> Result<Self, IdParseError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| IdParseError {
                    what: stringify!($name),
                    expected_hex_chars: 2 * $len,
                })?;
                Ok(Self(out))
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits (6 bytes), as people see an id in
            /// lists and messages. Only for reading: never used to find or
            /// compare ids.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..SHORT_HEX / 2])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16.min(2 * $len)])
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}

byte_id!(
    /// An agency's identity: its 32-byte Ed25519 public key (RFC 8032).
    AgencyId,
    32
);
byte_id!(
    /// An entry's id: SHA-256 of the exact COSE_Sign1 bytes of the entry.
    EntryId,
    32
);
byte_id!(
    /// An Ed25519 public key named in a key statement (SPEC.md §3.4): an
    /// agency's root, node or officer key. The agency id is its first root.
    KeyId,
    32
);
byte_id!(
    /// A key statement's id: SHA-256 of its exact bytes (SPEC.md §3.4).
    StatementId,
    32
);
byte_id!(
    /// SHA-256 of a public key: the pre-rotation commitment to the next
    /// root key (SPEC.md §3.4).
    KeyDigest,
    32
);
byte_id!(
    /// An evidence item: a UUID (RFC 9562) as 16 raw bytes.
    ItemId,
    16
);

/// A case is named by the id of its genesis (case-opened) entry.
pub type CaseId = EntryId;

/// A string was not the hex form of an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {what}: expected {expected_hex_chars} hex characters")]
pub struct IdParseError {
    /// Which identifier was expected.
    pub what: &'static str,
    /// How many hex characters it takes.
    pub expected_hex_chars: usize,
}

impl EntryId {
    /// The id of an entry: SHA-256 of its exact bytes.
    pub fn of(entry_bytes: &[u8]) -> Self {
        EntryId(Sha256::digest(entry_bytes).into())
    }
}

impl StatementId {
    /// The id of a key statement: SHA-256 of its exact bytes.
    pub fn of(statement_bytes: &[u8]) -> Self {
        StatementId(Sha256::digest(statement_bytes).into())
    }
}

impl KeyDigest {
    /// The commitment to a public key: SHA-256 of its 32 bytes.
    pub fn of(key: &KeyId) -> Self {
        KeyDigest(Sha256::digest(key.0).into())
    }
}

impl AgencyId {
    /// A short fingerprint for people to compare aloud: the first 10 bytes
    /// of SHA-256(agency id) as five dash-separated groups of four hex
    /// digits. Never used for security decisions.
    pub fn fingerprint(&self) -> String {
        let d = Sha256::digest(self.0);
        let h = hex::encode(&d[..10]);
        let groups: Vec<&str> = (0..5).map(|i| &h[4 * i..4 * i + 4]).collect();
        groups.join("-")
    }
}

impl ItemId {
    /// The canonical UUID text form (8-4-4-4-12 lowercase hex).
    pub fn to_uuid_string(&self) -> String {
        let h = self.to_hex();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Builds a version-4 (random) UUID from 16 random bytes supplied by the
    /// caller (the protocol crate has no source of randomness).
    pub fn new_v4(mut random: [u8; 16]) -> Self {
        random[6] = (random[6] & 0x0F) | 0x40;
        random[8] = (random[8] & 0x3F) | 0x80;
        ItemId(random)
    }

    /// Parses the UUID text form (with or without dashes).
    pub fn parse(s: &str) -> Result<Self, IdParseError> {
        let compact: String = s.trim().chars().filter(|c| *c != '-').collect();
        Self::from_hex(&compact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_shape() {
        let fp = AgencyId([7; 32]).fingerprint();
        assert_eq!(fp.len(), 24);
        assert_eq!(fp.matches('-').count(), 4);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = EntryId([0xAB; 32]);
        assert_eq!(EntryId::from_hex(&id.to_hex()), Ok(id));
        assert!(EntryId::from_hex("abcd").is_err());
        assert!(AgencyId::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn short_is_a_prefix_of_the_hex() {
        let id = EntryId(std::array::from_fn(|i| i as u8));
        assert_eq!(id.short(), "000102030405");
        assert!(id.to_hex().starts_with(&id.short()));
        assert_eq!(AgencyId([0xAB; 32]).short().len(), SHORT_HEX);
        assert_eq!(ItemId([0xCD; 16]).short(), "cdcdcdcdcdcd");
    }

    #[test]
    fn uuid_form() {
        let id = ItemId::new_v4([0xFF; 16]);
        let s = id.to_uuid_string();
        assert_eq!(s, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(ItemId::parse(&s), Ok(id));
    }
}
