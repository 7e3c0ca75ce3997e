//! Traffic Light Protocol 2.0 labels (FIRST TLP 2.0).

use serde::{Deserialize, Serialize};

/// A TLP 2.0 handling label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tlp {
    /// TLP:CLEAR — no limit on disclosure.
    #[serde(rename = "CLEAR")]
    Clear,
    /// TLP:GREEN — the community.
    #[serde(rename = "GREEN")]
    Green,
    /// TLP:AMBER — the recipients' organisations and their clients.
    #[serde(rename = "AMBER")]
    Amber,
    /// TLP:AMBER+STRICT — the recipients' organisations only.
    #[serde(rename = "AMBER+STRICT")]
    AmberStrict,
    /// TLP:RED — only the named recipients. In Custodia, only the agencies
    /// in the entry's `to` list (and the author) receive its content.
    #[serde(rename = "RED")]
    Red,
}

impl Tlp {
    /// The label's number in the fixed-size records this implementation
    /// writes out of memory (a report's notes, a validator's records).
    pub(crate) fn number(self) -> u8 {
        match self {
            Tlp::Clear => 0,
            Tlp::Green => 1,
            Tlp::Amber => 2,
            Tlp::AmberStrict => 3,
            Tlp::Red => 4,
        }
    }

    /// The label of a number [`Tlp::number`] gave.
    pub(crate) fn from_number(n: u8) -> Option<Tlp> {
        Some(match n {
            0 => Tlp::Clear,
            1 => Tlp::Green,
            2 => Tlp::Amber,
            3 => Tlp::AmberStrict,
            4 => Tlp::Red,
            _ => return None,
        })
    }

    /// The label as written on the wire and for people, e.g. `AMBER+STRICT`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Tlp::Clear => "CLEAR",
            Tlp::Green => "GREEN",
            Tlp::Amber => "AMBER",
            Tlp::AmberStrict => "AMBER+STRICT",
            Tlp::Red => "RED",
        }
    }

    /// Parses a label, case-insensitively, with or without a `TLP:` prefix.
    pub fn parse(s: &str) -> Option<Tlp> {
        let s = s.trim().to_ascii_uppercase();
        let s = s.strip_prefix("TLP:").unwrap_or(&s);
        Some(match s {
            "CLEAR" => Tlp::Clear,
            "GREEN" => Tlp::Green,
            "AMBER" => Tlp::Amber,
            "AMBER+STRICT" => Tlp::AmberStrict,
            "RED" => Tlp::Red,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Tlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLP:{}", self.as_str())
    }
}
