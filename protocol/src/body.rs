//! Entry bodies: what an entry says. See SPEC.md §6 and `custodia.cddl`.

use serde::{Deserialize, Serialize};

use crate::ids::{AgencyId, EntryId, ItemId};
use crate::tlp::Tlp;

/// The body of an entry: exactly one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Body {
    /// The genesis entry of a case.
    CaseOpened(CaseOpened),
    /// An agency joins the case.
    MemberAdded(MemberAdded),
    /// An agency leaves the case.
    MemberRemoved(MemberRemoved),
    /// An evidence item is registered (the file stays at the agency).
    EvidenceRegistered(EvidenceRegistered),
    /// A custody event on an item.
    Custody(CustodyEvent),
    /// A countersignature of other members' chain heads.
    Witness(Witness),
    /// Free text, optionally about one item.
    Note(Note),
    /// A new handling label for an earlier entry of the same author.
    HandlingChanged(HandlingChanged),
    /// The author withdraws an earlier entry of its own.
    Retracted(Retracted),
}

impl Body {
    /// The body kind's wire name.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::CaseOpened(_) => "case-opened",
            Body::MemberAdded(_) => "member-added",
            Body::MemberRemoved(_) => "member-removed",
            Body::EvidenceRegistered(_) => "evidence-registered",
            Body::Custody(_) => "custody",
            Body::Witness(_) => "witness",
            Body::Note(_) => "note",
            Body::HandlingChanged(_) => "handling-changed",
            Body::Retracted(_) => "retracted",
        }
    }
}

/// Opens a case. The author becomes its first member, with role lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseOpened {
    /// A short title.
    pub title: String,
    /// The opening agency's own case reference.
    pub reference: String,
    /// ISO 3166-1 alpha-2 code of the leading jurisdiction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// The opening agency's name.
    pub name: String,
    /// The opening agency's country.
    pub country: String,
}

/// A member's role in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Leads the case; may add and remove members.
    Lead,
    /// Investigator.
    Investigator,
    /// Forensic examiner.
    Examiner,
    /// Liaison desk; may add and remove members, relays.
    Liaison,
    /// Reads; may write only witnesses and notes.
    Observer,
}

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Lead => "lead",
            Role::Investigator => "investigator",
            Role::Examiner => "examiner",
            Role::Liaison => "liaison",
            Role::Observer => "observer",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "lead" => Role::Lead,
            "investigator" => Role::Investigator,
            "examiner" => Role::Examiner,
            "liaison" => Role::Liaison,
            "observer" => Role::Observer,
            _ => return None,
        })
    }

    /// Whether the role may add and remove members.
    pub fn manages_members(&self) -> bool {
        matches!(self, Role::Lead | Role::Liaison)
    }
}

/// An agency is admitted to the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAdded {
    /// The agency's key.
    pub agency: AgencyId,
    /// The agency's name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Its role.
    pub role: Role,
}

/// An agency is removed from the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRemoved {
    /// The agency's key.
    pub agency: AgencyId,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Digests of an evidence file. SHA-256 always; SHA-1 and MD5 for legacy
/// forensic tools and hash-set exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    /// SHA-256 (FIPS 180-4).
    #[serde(with = "crate::codec::fixed_bytes")]
    pub sha256: [u8; 32],
    /// SHA-1, on request.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes20")]
    pub sha1: Option<[u8; 20]>,
    /// MD5, on request.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes16")]
    pub md5: Option<[u8; 16]>,
}

macro_rules! opt_fixed {
    ($name:ident, $n:expr) => {
        mod $name {
            use serde::{Deserializer, Serializer};

            pub(super) fn serialize<S: Serializer>(
                v: &Option<[u8; $n]>,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                match v {
                    Some(b) => s.serialize_bytes(b),
                    None => s.serialize_none(),
                }
            }

            pub(super) fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Option<[u8; $n]>, D::Error> {
                crate::codec::fixed_bytes::deserialize::<D, $n>(d).map(Some)
            }
        }
    };
}
opt_fixed!(opt_bytes20, 20);
opt_fixed!(opt_bytes16, 16);

/// How and by whom an item was acquired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acquisition {
    /// Person or team.
    pub by: String,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub at: u64,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// How (e.g. "seizure", "logical extraction").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// With which tool and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// An evidence item is registered: its digests and description. The file
/// itself never leaves the agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EvidenceRegistered {
    /// The item's UUID.
    pub item: ItemId,
    /// Exhibit number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhibit: Option<String>,
    /// Digests of the content.
    pub digests: Digests,
    /// Size in bytes.
    pub size: u64,
    /// Media type (RFC 6838).
    pub media_type: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Acquisition.
    pub acquired: Acquisition,
    /// Legal authority: warrant, European Investigation Order, MLA request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// The item this one was derived from (a copy, an extraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<ItemId>,
}

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyAction {
    /// Acquired (again) by the holder.
    Acquired,
    /// Sent to another agency; opens a transfer.
    Transferred,
    /// The addressee's receipt of a transfer, accepted or rejected.
    Received,
    /// Examined.
    Examined,
    /// Copied to a new (derived) item.
    Copied,
    /// Sealed.
    Sealed,
    /// Unsealed.
    Unsealed,
    /// Returned to its owner.
    Returned,
    /// Destroyed; ends the item's custody.
    Destroyed,
}

impl CustodyAction {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CustodyAction::Acquired => "acquired",
            CustodyAction::Transferred => "transferred",
            CustodyAction::Received => "received",
            CustodyAction::Examined => "examined",
            CustodyAction::Copied => "copied",
            CustodyAction::Sealed => "sealed",
            CustodyAction::Unsealed => "unsealed",
            CustodyAction::Returned => "returned",
            CustodyAction::Destroyed => "destroyed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "acquired" => Self::Acquired,
            "transferred" => Self::Transferred,
            "received" => Self::Received,
            "examined" => Self::Examined,
            "copied" => Self::Copied,
            "sealed" => Self::Sealed,
            "unsealed" => Self::Unsealed,
            "returned" => Self::Returned,
            "destroyed" => Self::Destroyed,
            _ => return None,
        })
    }
}

/// A custody event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CustodyEvent {
    /// The item.
    pub item: ItemId,
    /// What happened.
    pub action: CustodyAction,
    /// The addressee (transferred only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AgencyId>,
    /// The transfer entry this receipt answers (received only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<EntryId>,
    /// Whether the transfer was accepted (received only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// The new item (copied only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<ItemId>,
    /// Who did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// With which tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// A reason (required for a rejected receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the digest observed at that moment matched the registered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_matched: Option<bool>,
}

impl CustodyEvent {
    /// An event with only item and action set.
    pub fn new(item: ItemId, action: CustodyAction) -> Self {
        CustodyEvent {
            item,
            action,
            to: None,
            transfer: None,
            accepted: None,
            copy: None,
            actor: None,
            place: None,
            purpose: None,
            tool: None,
            reason: None,
            digest_matched: None,
        }
    }
}

/// One author's chain head: (author, seq, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Head(pub AgencyId, pub u64, pub EntryId);

/// The heads of other members' chains that the author holds and countersigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// Ascending by author, one per author.
    pub heads: Vec<Head>,
}

/// Free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The text.
    pub text: String,
    /// The item it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemId>,
}

/// A new handling label for an earlier entry of the same author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlingChanged {
    /// The entry.
    pub entry: EntryId,
    /// The new label.
    pub tlp: Tlp,
    /// Recipients, iff RED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<AgencyId>>,
}

/// The author withdraws an earlier entry of its own. The entry stays in the
/// record; the state marks it retracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retracted {
    /// The entry.
    pub entry: EntryId,
    /// Why.
    pub reason: String,
}
