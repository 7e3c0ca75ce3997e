//! Verification of a bundle (SPEC.md §10.5) and the report a court reads
//! (§10.6).
//!
//! The [`Verifier`] replays the elements through a fresh
//! [`Validator`] as of the export time and keeps going after a refusal, so
//! the report lists every problem. A refused element that only fails
//! because something it depends on was refused before it is reported as a
//! consequence (class `depends-on-invalid`) pointing at that first
//! problem, so one edited entry gives one problem at the source and a short
//! list of consequences rather than a wall of unrelated-looking failures.
//!
//! Every problem is found and counted, but a report lists at most
//! [`LISTED`] problems at the source and [`LISTED`] consequences one by
//! one; the others are counted by rule and class ([`Report::unlisted`]).
//! A crafted bundle of millions of one-byte elements then gives a report,
//! and a text, HTML or JSON rendering, of bounded size, and building the
//! report costs the same small time per element whatever it holds: the
//! lookups it makes per element are hash maps, never scans.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::body::{Acquisition, Body, CustodyAction, Digests, Role};
use crate::entry::Entry;
use crate::error::{RejectKind, Rejection};
use crate::ids::{AgencyId, CaseId, EntryId, ItemId, KeyId, StatementId};
use crate::keylog::{Appended, KeyLog, KeyStatement, Officer, Profile, RevokeReason, Statement};
use crate::packed::Packed;
use crate::state::{Conflict, WithheldPosition};
use crate::tlp::Tlp;
use crate::validate::{Applied, RecordSpill, Validator};

use super::explain::{explain, explain_bundle_rule, explain_consequence};
use super::notes::NoteSpill;
pub use super::notes::Notes;
use super::{Bundle, BundleAgency, Element, KeyLogs, Summary, TrustList};
use crate::equivocation::EquivocationProof;

/// How many problems at the source, and how many consequences, a report
/// lists one by one (each kind separately, in the order found). The
/// exporter's signature and the bundle's identity (B1 to B4), found once
/// each, are always listed. Any real record fits: one edited entry gives
/// one problem and its dependants.
pub const LISTED: usize = 1_000;

/// Problems found but not listed one by one: how many, for one rule and
/// class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    /// The rule.
    pub rule: Rule,
    /// The class (`depends-on-invalid` for consequences).
    pub class: &'static str,
    /// How many.
    pub count: usize,
}

/// The rule a problem breaks: an entry rule of SPEC.md §8 (V1–V18) or a
/// bundle rule of §10.5 (B1–B9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Entry rule Vn.
    Entry(u8),
    /// A bundle rule.
    Bundle(BundleRule),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Entry(n) => write!(f, "V{n}"),
            Rule::Bundle(b) => write!(f, "B{}", b.number()),
        }
    }
}

/// The bundle rules of SPEC.md §10.5 step 4, numbered as there. Problems
/// are listed in the order B1, B2, B3, B4, B5, B7, B6, B8, B9 (§10.5, "The
/// problem list").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum BundleRule {
    /// B1 `bundle-signature`: the exporter's signature verifies under the kid.
    Signature = 1,
    /// B2 `exporter-mismatch`: `exporter` equals the kid.
    ExporterMismatch = 2,
    /// B3 `case-mismatch`: element 0 is a byte string whose id is `case`.
    CaseMismatch = 3,
    /// B4 `exporter-not-member`: the exporter is in the case's agencies list.
    ExporterNotMember = 4,
    /// B5 `agency-list`: `agencies` is the case's agencies list (one
    /// problem per agency that differs).
    AgencyList = 5,
    /// B6 `bad-proof`: a proof checks and is about `case` (one problem per
    /// bad proof).
    BadProof = 6,
    /// B7 `selection`: an item of `items` is registered (one problem per
    /// item that is not).
    Selection = 7,
    /// B8 `key-log`: a key log of `keys` (versions 2 and 3) replays from
    /// its inception by the key log rules K1–K12, each statement at its
    /// position, or in a version 3 key history also as a recovery or as
    /// superseded (one problem per log that does not).
    KeyLog = 8,
    /// B9 `key-log-agency`: a key log's agency is in `agencies`, after the
    /// agency of every log before it (one problem per log that is not).
    KeyLogAgency = 9,
}

impl BundleRule {
    /// Every bundle rule, B1 to B9.
    pub const ALL: [BundleRule; 9] = [
        BundleRule::Signature,
        BundleRule::ExporterMismatch,
        BundleRule::CaseMismatch,
        BundleRule::ExporterNotMember,
        BundleRule::AgencyList,
        BundleRule::BadProof,
        BundleRule::Selection,
        BundleRule::KeyLog,
        BundleRule::KeyLogAgency,
    ];

    /// n in Bn.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The rule's class name (SPEC.md §10.5).
    pub fn class(self) -> &'static str {
        match self {
            BundleRule::Signature => "bundle-signature",
            BundleRule::ExporterMismatch => "exporter-mismatch",
            BundleRule::CaseMismatch => "case-mismatch",
            BundleRule::ExporterNotMember => "exporter-not-member",
            BundleRule::AgencyList => "agency-list",
            BundleRule::BadProof => "bad-proof",
            BundleRule::Selection => "selection",
            BundleRule::KeyLog => "key-log",
            BundleRule::KeyLogAgency => "key-log-agency",
        }
    }
}

/// One problem found in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index of the element in the bundle's `entries` (from 0), when the
    /// problem is an element.
    pub index: Option<usize>,
    /// Index of the equivocation proof, for a `bad-proof` problem.
    pub proof: Option<usize>,
    /// The entry id (SHA-256 of the element's bytes, or the marker's id).
    pub entry: Option<EntryId>,
    /// The author the element claims (unverified when its signature fails).
    pub author: Option<AgencyId>,
    /// The author's name, when the case names it.
    pub author_name: Option<String>,
    /// The claimed position in the author's history.
    pub seq: Option<u64>,
    /// The rule that failed.
    pub rule: Rule,
    /// The class: the rule's class, or `depends-on-invalid` for a
    /// consequence of an earlier problem.
    pub class: &'static str,
    /// What it means, for a reader who has never seen Custodia.
    pub sentence: String,
    /// The technical detail, for an expert.
    pub detail: String,
    /// For a consequence: the index of the element whose refusal causes it.
    pub caused_by: Option<usize>,
    /// For a problem at the source: how many consequences follow from it,
    /// listed or not.
    pub consequences: usize,
}

impl Problem {
    /// Whether this problem is a consequence of an earlier one.
    pub fn is_consequence(&self) -> bool {
        self.caused_by.is_some()
    }
}

/// Whether a key was confirmed by the court's trust file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTrust {
    /// No trust file was given.
    NotChecked,
    /// The key is in the trust file, under this name.
    Confirmed(String),
    /// A trust file was given and the key is not in it.
    NotConfirmed,
}

/// A member of the case as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// Its key.
    pub agency: AgencyId,
    /// Its fingerprint (SPEC.md §3.2), for comparing over a trusted channel.
    pub fingerprint: String,
    /// Its name as the case's signed entries record it.
    pub name: String,
    /// Its country.
    pub country: String,
    /// Its role.
    pub role: Role,
    /// The entry that admitted it (the genesis for the opening agency).
    pub added_by: EntryId,
    /// That entry's index in the bundle.
    pub added_index: Option<usize>,
    /// The entry that removed it, if any.
    pub removed_by: Option<EntryId>,
    /// That entry's index in the bundle.
    pub removed_index: Option<usize>,
    /// Its entries concurrent with its removal (SPEC.md §11.1), with their
    /// indices in the bundle: written after the removal without having it
    /// in their causal past.
    pub after_removal: Vec<(EntryId, Option<usize>)>,
    /// Its entries disclosed in the bundle.
    pub disclosed: usize,
    /// Its positions disclosed as withheld.
    pub withheld: usize,
    /// Whether the trust file confirms its key.
    pub trust: KeyTrust,
}

/// A receipt answering a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The receipt entry.
    pub entry: EntryId,
    /// Its index in the bundle.
    pub index: Option<usize>,
    /// Who signed it.
    pub author: AgencyId,
    /// When (the signer's assertion).
    pub time: u64,
    /// Whether custody was accepted.
    pub accepted: bool,
}

/// One step of an item's custody timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReport {
    /// The entry.
    pub entry: EntryId,
    /// Its index in the bundle.
    pub index: Option<usize>,
    /// When (the signer's own clock).
    pub time: u64,
    /// Who signed it.
    pub author: AgencyId,
    /// `registered`, or a custody action (`transferred`, `received`, …).
    pub action: String,
    /// The addressee of a transfer.
    pub to: Option<AgencyId>,
    /// For a transfer: its receipt, once signed.
    pub receipt: Option<Receipt>,
    /// For a receipt: the transfer it answers, and whether it accepted.
    pub answers: Option<EntryId>,
    /// For a receipt: whether custody was accepted.
    pub accepted: Option<bool>,
    /// The person who acted.
    pub actor: Option<String>,
    /// Where.
    pub place: Option<String>,
    /// Why.
    pub purpose: Option<String>,
    /// With which tool.
    pub tool: Option<String>,
    /// A reason (e.g. for a refused receipt).
    pub reason: Option<String>,
    /// Legal authority (registration).
    pub authority: Option<String>,
    /// Whether the observed digest matched the registered one.
    pub digest_matched: Option<bool>,
    /// For a copy: the new item.
    pub copy: Option<ItemId>,
    /// The entry's TLP label.
    pub tlp: Tlp,
    /// If the author retracted the entry: the reason.
    pub retracted: Option<String>,
    /// For a note about the item (action `note`): its text.
    pub note: Option<String>,
    /// For an entry of format version 2: the key that signed it
    /// ([`Report::signer`] says whose).
    pub signer: Option<KeyId>,
}

/// A note: free text an agency signed about the case or one item (e.g.
/// `custody receive --note "seal intact"`). Every note is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteReport {
    /// The entry.
    pub entry: EntryId,
    /// Its index in the bundle.
    pub index: Option<usize>,
    /// When (the signer's own clock).
    pub time: u64,
    /// Who signed it.
    pub author: AgencyId,
    /// The item it is about, if any.
    pub item: Option<ItemId>,
    /// The text, as signed.
    pub text: String,
    /// The entry's TLP label.
    pub tlp: Tlp,
    /// If the author retracted the note: the reason.
    pub retracted: Option<String>,
    /// For a note of format version 2: the key that signed it
    /// ([`Report::signer`] says whose).
    pub signer: Option<KeyId>,
}

/// An evidence item, its digests and its custody timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemReport {
    /// Its id.
    pub id: ItemId,
    /// Exhibit label.
    pub exhibit: Option<String>,
    /// Digests of its content.
    pub digests: Digests,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Description.
    pub description: Option<String>,
    /// How it was acquired.
    pub acquired: Acquisition,
    /// Legal authority.
    pub authority: Option<String>,
    /// The item it derives from.
    pub derived_from: Option<ItemId>,
    /// Items registered as derived from it.
    pub copies: Vec<ItemId>,
    /// Who holds it at the end of the record.
    pub holder: AgencyId,
    /// The transfer awaiting its receipt, if in transit.
    pub in_transit: Option<EntryId>,
    /// Whether it was destroyed.
    pub destroyed: bool,
    /// Whether part of its history was withheld.
    pub incomplete: bool,
    /// Registration first, then every custody event, in causal order.
    pub timeline: Vec<EventReport>,
}

/// A conflict the record shows (SPEC.md §11.7). Not a problem with the
/// file: the record is intact, and it shows agencies disagreeing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictReport {
    /// `equivocation`, `digest-mismatch`, `duplicate-registration` or
    /// `duplicate-digest` (SPEC.md §11.7); `key-retired` or
    /// `key-reported-compromised` for an entry signed by a key revoked
    /// after the prefix it cites (§10.6), listed after the others.
    pub kind: &'static str,
    /// The agency concerned.
    pub author: Option<AgencyId>,
    /// The item concerned.
    pub item: Option<ItemId>,
    /// The entries concerned, with their index in the bundle if present.
    pub entries: Vec<(EntryId, Option<usize>)>,
    /// What it means.
    pub sentence: String,
    /// For an equivocation: what each of the two signed versions says, to
    /// be shown side by side (empty for the other kinds).
    pub versions: Vec<VersionReport>,
}

/// One of two entries an author signed at one position (SPEC.md §14),
/// as the equivocation proof carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReport {
    /// The entry id.
    pub entry: EntryId,
    /// Its index in the bundle, if the record holds it.
    pub index: Option<usize>,
    /// The author's asserted time (ms since the Unix epoch).
    pub time: u64,
    /// Its handling label.
    pub tlp: crate::Tlp,
    /// The body's kind (`note`, `custody`, ...).
    pub kind: &'static str,
    /// What it says, in a line (untrusted text: escape before showing).
    pub says: String,
    /// Whether the record in this bundle follows this version.
    pub in_record: bool,
}

/// What a body says, in one line: the parts a reader needs to tell two
/// versions apart.
pub fn body_line(body: &crate::Body) -> String {
    use crate::Body;
    match body {
        Body::CaseOpened(o) => format!("opens the case \"{}\" ({})", o.title, o.reference),
        Body::MemberAdded(m) => format!("adds {} ({}) as {}", m.name, m.country, m.role.as_str()),
        Body::MemberRemoved(m) => format!(
            "removes {}{}",
            m.agency.fingerprint(),
            m.reason
                .as_ref()
                .map_or_else(String::new, |r| format!(": {r}"))
        ),
        Body::EvidenceRegistered(e) => format!(
            "registers {} ({}), SHA-256 {}, {} bytes",
            e.exhibit.as_deref().unwrap_or("an item"),
            e.item.to_uuid_string(),
            hex::encode(e.digests.sha256),
            e.size
        ),
        Body::Custody(c) => format!(
            "custody: {} of item {}{}",
            c.action.as_str(),
            c.item.to_uuid_string(),
            c.to.map_or_else(String::new, |t| format!(" to {}", t.fingerprint()))
        ),
        Body::Witness(w) => format!("countersigns {} heads", w.heads.len()),
        Body::Note(n) => format!("note: {}", n.text),
        Body::HandlingChanged(h) => format!("relabels entry {} as {}", h.entry.short(), h.tlp),
        Body::Retracted(r) => format!("retracts entry {}: {}", r.entry.short(), r.reason),
    }
}

/// A position disclosed as withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithheldReport {
    /// Index in the bundle.
    pub index: usize,
    /// The author.
    pub author: AgencyId,
    /// The position.
    pub seq: u64,
    /// The entry id.
    pub id: EntryId,
    /// Whether a signed entry commits to this id (the author's next entry,
    /// another's reference, or a witness), so the marker is not merely the
    /// exporter's claim.
    pub corroborated: bool,
}

/// One statement of an agency's key log, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatementReport {
    /// Its position in the log (0: the inception).
    pub seq: u64,
    /// The time its signer asserted (ms since the Unix epoch).
    pub time: u64,
    /// Its statement id (SHA-256 of its bytes).
    pub id: StatementId,
    /// The key that signed it.
    pub signer: KeyId,
    /// What it states: a root, a certification (with the officer's name
    /// and service number), a revocation (with its reason), a profile.
    pub statement: Statement,
}

impl KeyStatementReport {
    fn of(s: &KeyStatement) -> KeyStatementReport {
        KeyStatementReport {
            seq: s.seq(),
            time: s.payload().time,
            id: s.id(),
            signer: s.signer(),
            statement: s.payload().st.clone(),
        }
    }
}

/// An agency's key log carried by a version 2 or 3 bundle, replayed from
/// its inception (SPEC.md §3.4, §10.5 B8): its key history as the report
/// shows it. A version 2 bundle does not carry the statements a recovery
/// superseded, so a rotation there may have been a recovery; version 3
/// carries those the exporter held ([`KeyLogReport::superseded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLogReport {
    /// The agency (its inception key).
    pub agency: AgencyId,
    /// Its name in the bundle's `agencies` list, if listed.
    pub listed_name: Option<String>,
    /// The name and country it signed for itself: its last `profile`
    /// statement, if any.
    pub profile: Option<Profile>,
    /// The root key in force at the end of the log.
    pub root: KeyId,
    /// Every statement, in log order.
    pub statements: Vec<KeyStatementReport>,
    /// The statements a recovery superseded that a key history (bundle
    /// format version 3) carries, in the order the replay superseded them:
    /// void, signed by a root the agency took back. Empty in version 2.
    pub superseded: Vec<KeyStatementReport>,
}

impl KeyLogReport {
    /// The officer a key was certified for in this log (the last
    /// certification of it), if any.
    pub fn officer_of(&self, key: &KeyId) -> Option<&Officer> {
        self.statements.iter().find_map(|s| match &s.statement {
            Statement::Certify(c) if c.key.key == *key => c.officer.as_ref(),
            _ => None,
        })
    }
}

/// Everything a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The case id the bundle names.
    pub case: CaseId,
    /// Title, from the genesis.
    pub title: String,
    /// The opening agency's reference.
    pub reference: String,
    /// Jurisdiction.
    pub jurisdiction: Option<String>,
    /// The case's TLP label.
    pub tlp: Option<Tlp>,
    /// When the case was opened, and by whom.
    pub opened: Option<(u64, AgencyId)>,
    /// The exporter named in the bundle.
    pub exporter: AgencyId,
    /// The key that signed the bundle.
    pub signer: AgencyId,
    /// Whether the trust file confirms the exporter's key.
    pub exporter_trust: KeyTrust,
    /// When the bundle was exported.
    pub exported_at: u64,
    /// The items of a selective export.
    pub selective: Option<Vec<ItemId>>,
    /// Whether the exporter's signature verifies.
    pub signature_valid: bool,
    /// Elements in the bundle.
    pub elements: usize,
    /// Entries accepted (disclosed in full).
    pub disclosed: usize,
    /// Whether a trust file was given.
    pub trust_checked: bool,
    /// The agencies named in the bundle's list (names for unknown keys).
    pub listed: Vec<BundleAgency>,
    /// Members of the case.
    pub members: Vec<MemberReport>,
    /// Evidence items, in order of registration.
    pub items: Vec<ItemReport>,
    /// Conflicts shown by the record.
    pub conflicts: Vec<ConflictReport>,
    /// Every note, in bundle order.
    pub notes: Notes,
    /// Positions disclosed as withheld.
    pub withheld: Vec<WithheldReport>,
    /// The bundle format version (1, 2 or 3).
    pub version: u64,
    /// The key logs of a version 2 bundle that replay (B8), in the
    /// bundle's order: each agency's key history. Empty for version 1.
    pub key_logs: Vec<KeyLogReport>,
    /// What each key that signed an entry of format version 2 shown in
    /// the report is, from its agency's key log (the events' and notes'
    /// `signer`).
    pub signers: BTreeMap<(AgencyId, KeyId), EntrySigner>,
    /// The problems listed one by one, in the order found: the first
    /// [`LISTED`] at the source and the first [`LISTED`] consequences
    /// (and B1 to B4 always).
    pub problems: Vec<Problem>,
    /// Every problem found, listed or not.
    pub problem_count: usize,
    /// Problems at the source (not consequences) found, listed or not.
    pub root_count: usize,
    /// The problems found but not listed, by rule and class, in rule
    /// order.
    pub unlisted: Vec<Unlisted>,
}

/// The key that signed an entry of format version 2, as its author's key
/// log certifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySigner {
    /// The key.
    pub key: KeyId,
    /// Its role: `officer` or `node`.
    pub role: crate::keylog::KeyRole,
    /// The officer it was certified for.
    pub officer: Option<Officer>,
}

impl Report {
    /// What the key that signed an entry of format version 2 is (an
    /// event's or a note's `signer`), in its author's key log: two agencies
    /// may certify one key, each for an officer of its own.
    pub fn signer(&self, author: &AgencyId, key: Option<KeyId>) -> Option<&EntrySigner> {
        self.signers.get(&(*author, key?))
    }

    /// Whether the bundle verifies: no problem at all.
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0
    }

    /// Problems at their source (not consequences), listed or not.
    pub fn root_problems(&self) -> usize {
        self.root_count
    }

    /// Problems found but not listed one by one.
    pub fn unlisted_count(&self) -> usize {
        self.problem_count - self.problems.len()
    }

    /// The three-way verdict: `valid` (no problem, no conflict),
    /// `valid-with-conflicts` (no problem, but agencies' signed statements
    /// contradict each other) or `invalid` (a problem).
    pub fn verdict_kind(&self) -> &'static str {
        if !self.is_valid() {
            "invalid"
        } else if self.conflicts.is_empty() {
            "valid"
        } else {
            "valid-with-conflicts"
        }
    }

    /// The conflicts counted by kind, in the order each kind first
    /// appears in the report.
    pub fn conflict_counts(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for c in &self.conflicts {
            match out.iter_mut().find(|(k, _)| *k == c.kind) {
                Some((_, n)) => *n += 1,
                None => out.push((c.kind, 1)),
            }
        }
        out
    }

    /// The conflicts in words: `1 equivocation, 2 duplicate digests`.
    pub fn conflict_summary(&self) -> String {
        self.conflict_counts()
            .iter()
            .map(|(kind, n)| {
                let words = kind.replace('-', " ");
                match (n, words.as_str()) {
                    (1, _) => format!("1 {words}"),
                    (_, w) if w.ends_with('h') => format!("{n} {w}es"),
                    (_, w) => format!("{n} {w}s"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line: the verdict.
    pub fn verdict(&self) -> String {
        if self.is_valid() {
            format!(
                "{}every signature and every link of the record checks ({} entries{})",
                if self.conflicts.is_empty() {
                    "VALID: ".to_owned()
                } else {
                    format!("VALID, WITH CONFLICTS: {}; ", self.conflict_summary())
                },
                self.disclosed,
                match self.withheld.len() {
                    0 => String::new(),
                    n => format!(", {n} disclosed as withheld"),
                }
            )
        } else {
            let n = self.problem_count;
            let roots = self.root_count;
            format!(
                "INVALID: {n} problem{}{}",
                if n == 1 { "" } else { "s" },
                if roots < n {
                    format!(" ({roots} at the source, {} consequences)", n - roots)
                } else {
                    String::new()
                }
            )
        }
    }

    /// A display name for an agency: the case's name for it, else the
    /// bundle list's, else its fingerprint. A scan of both lists: a
    /// renderer that names many agencies builds a map once instead.
    pub fn name_of(&self, agency: &AgencyId) -> String {
        if let Some(m) = self.members.iter().find(|m| m.agency == *agency) {
            return m.name.clone();
        }
        if let Some(a) = self.listed.iter().find(|a| a.agency == *agency) {
            return a.name.clone();
        }
        agency.fingerprint()
    }
}

/// What an entry's claimed dependencies are, when its payload decoded
/// (even if its signature or a rule then failed). Used only to tell a
/// consequence from a new problem; never trusted otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Claimed author.
    pub author: AgencyId,
    /// Claimed position.
    pub seq: u64,
    /// Every id it names: prev, refs, witness heads, the transfer a receipt
    /// answers, the target of a retraction or handling change.
    pub depends_on: Vec<EntryId>,
}

impl Claimed {
    fn of(entry: &Entry) -> Claimed {
        let p = entry.payload();
        let mut deps: Vec<EntryId> = p.prev.iter().chain(&p.refs).copied().collect();
        match &p.body {
            Body::Witness(w) => deps.extend(w.heads.iter().map(|h| h.2)),
            Body::Custody(ev) => deps.extend(ev.transfer),
            Body::Retracted(r) => deps.push(r.entry),
            Body::HandlingChanged(h) => deps.push(h.entry),
            _ => {}
        }
        Claimed {
            author: p.author,
            seq: p.seq,
            depends_on: deps,
        }
    }
}

/// An element's entry after the checks that need nothing but its bytes
/// (V1–V8). [`check_entry`] is pure and independent per entry, so callers
/// may run it on several threads and feed the results in order to
/// [`Verifier::push_checked`].
#[derive(Debug, Clone)]
pub enum Checked {
    /// Decoded, and the signature verifies.
    Valid(Entry),
    /// Refused by V1–V8.
    Invalid {
        /// Why.
        rejection: Rejection,
        /// What it claims, when the payload decoded.
        claimed: Option<Claimed>,
    },
}

/// Checks one entry's bytes alone (V1–V8).
pub fn check_entry(bytes: &[u8]) -> Checked {
    check_entries(&[bytes])
        .pop()
        .unwrap_or_else(|| unreachable_checked(bytes))
}

/// Checks many entries' bytes, each alone (V1–V8), verifying their
/// signatures in one batch; the result keeps the order. The verdicts are
/// those of [`check_entry`] on each.
pub fn check_entries<B: AsRef<[u8]>>(all: &[B]) -> Vec<Checked> {
    Entry::decode_batch(all)
        .into_iter()
        .map(|d| match d {
            Err(rejection) => Checked::Invalid {
                rejection,
                claimed: None,
            },
            Ok((entry, true)) => Checked::Valid(entry),
            Ok((entry, false)) => Checked::Invalid {
                rejection: Rejection::new(Some(entry.id()), RejectKind::BadSignature),
                claimed: Some(Claimed::of(&entry)),
            },
        })
        .collect()
}

/// The verdict for an entry that `check_entries` returned nothing for
/// (it returns one verdict per input, so this is never used).
fn unreachable_checked(bytes: &[u8]) -> Checked {
    Checked::Invalid {
        rejection: Rejection::new(
            Some(EntryId::of(bytes)),
            RejectKind::Malformed("internal: no verdict".into()),
        ),
        claimed: None,
    }
}

/// What the report keeps of a registration, custody event or genesis: the
/// payload, not the bytes. The payload is boxed: it is several hundred
/// bytes inline (its largest body), and a map's free slots would each
/// cost that much.
/// An accepted entry signed by a key revoked after the prefix it cites.
#[derive(Debug, Clone)]
struct Suspect {
    entry: EntryId,
    index: usize,
    author: AgencyId,
    seq: u64,
    time: u64,
    key: KeyId,
    reason: RevokeReason,
    effective: u64,
}

#[derive(Debug)]
struct Kept {
    id: EntryId,
    payload: Box<crate::entry::Payload>,
    /// The key that signed it, for format version 2.
    key: Option<KeyId>,
}

impl Kept {
    fn id(&self) -> EntryId {
        self.id
    }

    fn payload(&self) -> &crate::entry::Payload {
        &self.payload
    }

    fn author(&self) -> AgencyId {
        self.payload.author
    }
}

/// The problem key of each refused element's id (the first key, for an
/// id refused twice): every refused element's id is kept, since a later
/// entry naming it is a consequence of it (SPEC.md §10.5, step 3).
///
/// A crafted bundle can hold millions of distinct refused elements of a
/// few bytes each, so this is kept compact: sorted runs, each more than
/// twice the size of the next, the newest merged into the one before it
/// whenever it has grown to half its size (the logarithmic method). That
/// costs 40 bytes an id (80 while two runs merge), where a hash map costs
/// two to three times as much with its free slots and its growth; an
/// insertion costs O(log n) amortized, a look-up one binary search per
/// run (at most one run per bit of the count).
#[derive(Debug, Default)]
struct RefusedIds {
    /// Oldest (and largest) first; each ascending by id, one entry per id.
    runs: Vec<Vec<(EntryId, usize)>>,
}

impl RefusedIds {
    /// The first key recorded for `id`.
    fn get(&self, id: &EntryId) -> Option<usize> {
        // The oldest run first: it holds the first key of an id.
        self.runs.iter().find_map(|run| {
            run.binary_search_by(|(x, _)| x.cmp(id))
                .ok()
                .map(|k| run[k].1)
        })
    }

    /// Records `key` for `id`, unless `id` already has one.
    fn insert(&mut self, id: EntryId, key: usize) {
        let mut run = vec![(id, key)];
        // Each run more than twice the next: at most one run per bit of
        // the count, even when merges drop repeated ids.
        while self
            .runs
            .last()
            .is_some_and(|last| last.len() <= 2 * run.len())
        {
            let older = self.runs.pop().unwrap_or_default();
            run = merge_runs(older, run);
        }
        self.runs.push(run);
    }
}

/// Merges two sorted runs into one; an id in both keeps the older run's
/// key.
fn merge_runs(older: Vec<(EntryId, usize)>, newer: Vec<(EntryId, usize)>) -> Vec<(EntryId, usize)> {
    use std::cmp::Ordering;
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut a = older.into_iter().peekable();
    let mut b = newer.into_iter().peekable();
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        match x.0.cmp(&y.0) {
            Ordering::Less => out.extend(a.next()),
            Ordering::Greater => out.extend(b.next()),
            Ordering::Equal => {
                out.extend(a.next());
                b.next();
            }
        }
    }
    out.extend(a);
    out.extend(b);
    out
}

/// Replays one key log of a bundle from its inception (B8): every
/// statement must be appended as the log's next one. Why not, otherwise.
/// B8 and B9 (SPEC.md 10.5 step 4): each key log of `keys` replays from
/// its inception by K1–K12 ([`KeyLog::from_inception`], [`KeyLog::append`]:
/// the one checker of key logs), each statement appended at its own
/// position; and each log's agency is listed (`listed`) and after those of
/// the logs before it. Returns the logs that replay, in order, and the
/// problems: B8's, then B9's, each in the order of `keys`.
fn judge_key_logs(
    logs: Option<&KeyLogs>,
    version: u64,
    listed: impl Fn(&AgencyId) -> bool,
) -> (Vec<KeyLog>, Vec<(BundleRule, String)>) {
    let mut replayed = Vec::new();
    let mut problems = Vec::new();
    let mut order = Vec::new();
    for (k, log) in logs.into_iter().flat_map(KeyLogs::iter).enumerate() {
        // B9 judges the agency of a log whose first statement passes
        // K1–K5, whatever B8 finds after it.
        let agency = log
            .first()
            .and_then(|b| KeyStatement::decode(b).ok())
            .map(|s| s.payload().agency);
        if let Some(a) = agency {
            order.push((k, a));
        }
        match replay_key_log(&log, version == super::BUNDLE_VERSION_3) {
            Ok(l) => replayed.push(l),
            Err(detail) => problems.push((
                BundleRule::KeyLog,
                format!(
                    "key log {k}{}: {detail}",
                    agency.map_or_else(String::new, |a| format!(" (agency {})", a.fingerprint()))
                ),
            )),
        }
    }
    let mut last: Option<AgencyId> = None;
    for (k, a) in order {
        let detail = if !listed(&a) {
            Some(format!(
                "key log {k} is of agency {}, which the bundle's agencies list does not name",
                a.fingerprint()
            ))
        } else if last.is_some_and(|l| l >= a) {
            Some(format!(
                "key log {k} (agency {}) is not after the log before it: one log per agency, in ascending order of agency",
                a.fingerprint()
            ))
        } else {
            None
        };
        last = Some(last.map_or(a, |l| l.max(a)));
        if let Some(d) = detail {
            problems.push((BundleRule::KeyLogAgency, d));
        }
    }
    (replayed, problems)
}

/// B8: a log of `keys` replays from its inception, each later statement
/// taken as the log's next one, or, in a key history (version 3), also as
/// a recovery or a statement a recovery superseded (SPEC.md §10.5).
fn replay_key_log(log: &[&[u8]], history: bool) -> Result<KeyLog, String> {
    let mut statements = log.iter().enumerate();
    let Some((_, first)) = statements.next() else {
        return Err("the log is empty".into());
    };
    let mut kl = KeyStatement::decode(first)
        .and_then(KeyLog::from_inception)
        .map_err(|e| format!("statement 0: {e}"))?;
    let mut turns = 0usize;
    for (i, bytes) in statements {
        match KeyStatement::decode(bytes).and_then(|s| kl.append(s)) {
            Ok(Appended::New) => {}
            Ok(Appended::Recovered { .. } | Appended::Superseded) if history => {
                turns += 1;
                if turns > crate::keylog::MAX_HISTORY_SUPERSEDED {
                    return Err(format!(
                        "statement {i}: more than {} statements of the history are taken as a recovery or as superseded",
                        crate::keylog::MAX_HISTORY_SUPERSEDED
                    ));
                }
            }
            Ok(Appended::Duplicate) if history => {
                return Err(format!("statement {i} is a duplicate of one before it"))
            }
            Ok(other) => {
                return Err(format!(
                    "statement {i} is not the log's next statement ({})",
                    match other {
                        Appended::Duplicate => "a duplicate",
                        Appended::Recovered { .. } => "a rotation at an earlier position",
                        _ => "a superseded statement",
                    }
                ))
            }
            Err(e) => return Err(format!("statement {i}: {e}")),
        }
    }
    Ok(kl)
}

/// Replays a bundle's elements, one at a time, and collects the report.
#[derive(Debug)]
pub struct Verifier<'t> {
    v: Validator,
    /// The entries the report shows (genesis, registrations, custody
    /// events); the validator itself is lean and keeps no entry.
    kept: HashMap<EntryId, Kept>,
    /// The accepted notes, in bundle order, as the report shows them (the
    /// retraction is marked at the end): a bundle may be mostly notes, so
    /// each is kept once, compactly, and out of memory if the caller gave
    /// a place ([`Verifier::spill_notes`]).
    notes: Notes,
    now: u64,
    case: CaseId,
    exporter: AgencyId,
    signer: AgencyId,
    exported_at: u64,
    items: Option<Vec<ItemId>>,
    agencies: Vec<BundleAgency>,
    /// The bundle format version.
    version: u64,
    /// The key logs of `keys` that replay (B8), by agency: entries of
    /// format version 2 are checked against them (V20 to V24), so they
    /// are judged before the first element; their problems (B8, B9) are
    /// listed at the end, where the spec puts them.
    logs: BTreeMap<AgencyId, KeyLog>,
    /// The logs that replay, in the order of `keys`, for the report.
    replayed: Vec<KeyLog>,
    /// B8 and B9 problems found in `keys`, in the order they are listed.
    key_problems: Vec<(BundleRule, String)>,
    /// Accepted entries of format version 2 whose key the author's log
    /// revokes after the prefix they cite: classed at the end (SPEC.md
    /// §10.6), once every witness is known.
    suspects: Vec<Suspect>,
    /// The distinct keys that signed accepted entries of format version 2
    /// (not witnesses), with their agency: what the report says of each.
    signing_keys: std::collections::BTreeSet<(AgencyId, KeyId)>,
    /// Each agency's place in `agencies` (the first, if listed twice).
    agency_at: HashMap<AgencyId, usize>,
    trust: Option<&'t TrustList>,
    next: usize,
    /// The element index of every accepted or withheld position, by
    /// author and sequence number (chains are dense from 0): four bytes a
    /// position instead of a map from ids. See [`Verifier::index_of`].
    positions: HashMap<AgencyId, Packed>,
    refused_ids: RefusedIds,
    refused_at: HashMap<AgencyId, BTreeMap<u64, usize>>,
    first_unplaced: Option<usize>,
    first_refused: Option<usize>,
    /// The id of element 0 when it is an entry's bytes (B3); None for a
    /// marker, or before element 0 is pushed.
    first_element: Option<EntryId>,
    per_author: HashMap<AgencyId, (usize, usize)>,
    withheld: Vec<WithheldReport>,
    withheld_at: HashMap<EntryId, usize>,
    disclosed: usize,
    /// The problems listed one by one (see [`LISTED`]).
    problems: Vec<Problem>,
    /// Problems found, listed or not; of them, at the source.
    found: usize,
    roots: usize,
    /// Listed so far: at the source, and consequences.
    listed_roots: usize,
    listed_consequences: usize,
    /// Where each listed problem at the source of an element is in
    /// `problems`, by element index: its consequences are counted there.
    root_at: HashMap<usize, usize>,
    unlisted: BTreeMap<(Rule, &'static str), usize>,
}

impl<'t> Verifier<'t> {
    /// A verifier for a decoded bundle, with the court's trust file if any.
    /// The validator's clock is the export time: the bundle is verified as
    /// of its own export (V18 allows entries up to SKEW after it).
    pub fn new(bundle: &Bundle<'_>, trust: Option<&'t TrustList>) -> Self {
        Self::start(
            (bundle.case(), bundle.exporter(), bundle.signer()),
            bundle.exported_at(),
            bundle.items(),
            bundle.agencies(),
            bundle.version(),
            bundle.key_logs(),
            trust,
        )
    }

    /// A verifier for a bundle read from a stream ([`super::StreamDecoder`]),
    /// from the first pass's summary.
    pub fn streamed(summary: &Summary, trust: Option<&'t TrustList>) -> Self {
        Self::start(
            (summary.case(), summary.exporter(), summary.signer()),
            summary.exported_at(),
            summary.items(),
            summary.agencies(),
            summary.version(),
            summary.key_logs(),
            trust,
        )
    }

    /// Keeps the report's notes in `spill` instead of memory, a block at a
    /// time (see [`Notes`]); before the first element.
    pub fn spill_notes(&mut self, spill: Box<dyn NoteSpill>) {
        if self.notes.is_empty() {
            self.notes = Notes::spilling(spill);
        }
    }

    /// Keeps the validator's older records in files `spill` opens, all but
    /// the newest `window` to `2 * window` (see
    /// [`Validator::with_spill`]); before the first element.
    pub fn spill_records(&mut self, spill: Arc<dyn RecordSpill>, window: usize) {
        self.v = std::mem::take(&mut self.v).with_spill(spill, window);
    }

    fn start(
        (case, exporter, signer): (CaseId, AgencyId, AgencyId),
        exported_at: u64,
        items: Option<&[ItemId]>,
        agencies: &[BundleAgency],
        version: u64,
        key_logs: Option<&KeyLogs>,
        trust: Option<&'t TrustList>,
    ) -> Self {
        let mut agency_at = HashMap::with_capacity(agencies.len());
        for (k, a) in agencies.iter().enumerate() {
            agency_at.entry(a.agency).or_insert(k);
        }
        let (replayed, key_problems) =
            judge_key_logs(key_logs, version, |a| agency_at.contains_key(a));
        let mut logs = BTreeMap::new();
        for l in &replayed {
            // Two logs of one agency break B9; the first is used.
            logs.entry(l.agency()).or_insert_with(|| l.clone());
        }
        Verifier {
            v: Validator::lean(),
            kept: HashMap::new(),
            notes: Notes::default(),
            now: exported_at,
            case,
            exporter,
            signer,
            exported_at,
            items: items.map(<[ItemId]>::to_vec),
            agencies: agencies.to_vec(),
            version,
            logs,
            replayed,
            key_problems,
            suspects: Vec::new(),
            signing_keys: std::collections::BTreeSet::new(),
            agency_at,
            trust,
            next: 0,
            positions: HashMap::new(),
            refused_ids: RefusedIds::default(),
            refused_at: HashMap::new(),
            first_unplaced: None,
            first_refused: None,
            first_element: None,
            per_author: HashMap::new(),
            withheld: Vec::new(),
            withheld_at: HashMap::new(),
            disclosed: 0,
            problems: Vec::new(),
            found: 0,
            roots: 0,
            listed_roots: 0,
            listed_consequences: 0,
            root_at: HashMap::new(),
            unlisted: BTreeMap::new(),
        }
    }

    /// Elements pushed so far.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Checks and replays the next element.
    pub fn push(&mut self, element: Element<'_>) {
        match element {
            Element::Entry(bytes) => self.push_checked(check_entry(bytes)),
            Element::Withheld(pos) => self.push_withheld(pos),
        }
    }

    /// Replays the next elements in order, checking their entries'
    /// signatures in one batch ([`check_entries`]).
    pub fn push_chunk(&mut self, elements: &[Element<'_>]) {
        let entries: Vec<&[u8]> = elements
            .iter()
            .filter_map(|e| match e {
                Element::Entry(bytes) => Some(*bytes),
                Element::Withheld(_) => None,
            })
            .collect();
        let mut checked = check_entries(&entries).into_iter();
        for e in elements {
            match e {
                Element::Withheld(pos) => self.push_withheld(*pos),
                Element::Entry(bytes) => {
                    let c = checked.next().unwrap_or_else(|| check_entry(bytes));
                    self.push_checked(c);
                }
            }
        }
    }

    /// Replays the next element, an entry already checked with
    /// [`check_entry`].
    pub fn push_checked(&mut self, checked: Checked) {
        let index = self.next;
        self.next += 1;
        if index == 0 {
            self.first_element = match &checked {
                Checked::Valid(entry) => Some(entry.id()),
                Checked::Invalid { rejection, .. } => rejection.entry,
            };
        }
        match checked {
            Checked::Valid(entry) => match self.v.apply_keyed(&entry, self.now, &self.logs) {
                Ok(Applied::New | Applied::Revealed) => self.accepted(&entry, index),
                Ok(Applied::Duplicate) => {}
                Err(r) => {
                    let claimed = Claimed::of(&entry);
                    self.refuse(index, r.kind, Some(claimed), Some(entry.id()));
                }
            },
            Checked::Invalid { rejection, claimed } => {
                self.refuse(index, rejection.kind, claimed, rejection.entry);
            }
        }
    }

    /// Replays the next element, a withheld marker.
    pub fn push_withheld(&mut self, pos: WithheldPosition) {
        let index = self.next;
        self.next += 1;
        match self.v.apply_withheld(pos) {
            Ok(Applied::Duplicate) => {}
            Ok(_) => {
                self.place(pos.author, pos.seq, index);
                self.per_author.entry(pos.author).or_default().1 += 1;
                self.withheld_at.insert(pos.id, self.withheld.len());
                self.withheld.push(WithheldReport {
                    index,
                    author: pos.author,
                    seq: pos.seq,
                    id: pos.id,
                    corroborated: false,
                });
            }
            Err(r) => {
                let claimed = Claimed {
                    author: pos.author,
                    seq: pos.seq,
                    depends_on: Vec::new(),
                };
                self.refuse(index, r.kind, Some(claimed), Some(pos.id));
            }
        }
    }

    fn accepted(&mut self, entry: &Entry, index: usize) {
        self.place(entry.author(), entry.payload().seq, index);
        let p = entry.payload();
        let signed_by = p.keys.map(|_| KeyId(entry.signer().0));
        if let Some(cited) = p.keys {
            let kid = KeyId(entry.signer().0);
            if !matches!(p.body, Body::Witness(_)) {
                self.signing_keys.insert((p.author, kid));
            }
            let revoked = self
                .logs
                .get(&p.author)
                .and_then(|l| l.certification(&kid, l.len()))
                .and_then(|c| c.revoked)
                .filter(|(at, _)| *at >= cited);
            if let Some((_, r)) = revoked {
                self.suspects.push(Suspect {
                    entry: entry.id(),
                    index,
                    author: p.author,
                    seq: p.seq,
                    time: p.time,
                    key: kid,
                    reason: r.reason,
                    effective: r.effective,
                });
            }
        }
        match &p.body {
            Body::Note(n) => self.notes.push(entry.id(), index, p, n, signed_by),
            Body::CaseOpened(_) | Body::EvidenceRegistered(_) | Body::Custody(_) => {
                self.kept.insert(
                    entry.id(),
                    Kept {
                        id: entry.id(),
                        payload: Box::new(p.clone()),
                        key: signed_by,
                    },
                );
            }
            _ => {}
        }
        self.disclosed += 1;
        self.per_author.entry(entry.author()).or_default().0 += 1;
        if self.withheld_at.is_empty() {
            return;
        }
        let p = entry.payload();
        let heads: Vec<EntryId> = match &p.body {
            Body::Witness(w) => w.heads.iter().map(|h| h.2).collect(),
            _ => Vec::new(),
        };
        for id in p.prev.iter().chain(&p.refs).chain(&heads) {
            if let Some(&w) = self.withheld_at.get(id) {
                self.withheld[w].corroborated = true;
            }
        }
    }

    /// Records that the position (author, seq) is element `index`.
    fn place(&mut self, author: AgencyId, seq: u64, index: usize) {
        let at = self.positions.entry(author).or_default();
        // An index past u32 (4 billion elements) is recorded as unknown.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match usize::try_from(seq) {
            Ok(s) if s < at.len() => at.set(s, index),
            Ok(s) if s == at.len() => at.push(index),
            // Not reached: an accepted position continues its chain.
            _ => {}
        }
    }

    /// The element index of an accepted or withheld id: its position from
    /// the validator, then the index recorded for that position.
    fn index_of(&self, id: &EntryId) -> Option<usize> {
        let m = self.v.meta(id)?;
        let at = self.positions.get(&m.author)?;
        let i = at.get(usize::try_from(m.seq).ok()?)?;
        (i != u32::MAX).then_some(i as usize)
    }

    fn name(&self, agency: &AgencyId) -> Option<String> {
        self.v
            .state()
            .agency_name(agency)
            .map(str::to_owned)
            .or_else(|| self.listed_agency(agency).map(|a| a.name.clone()))
    }

    /// The bundle list's entry for an agency.
    fn listed_agency(&self, agency: &AgencyId) -> Option<&BundleAgency> {
        self.agency_at
            .get(agency)
            .and_then(|k| self.agencies.get(*k))
    }

    /// Counts a problem of `rule` and `class` (a consequence when
    /// `caused_by` is set) and says whether it is listed one by one; a
    /// consequence also counts at its root, when that is listed.
    fn count(&mut self, rule: Rule, class: &'static str, caused_by: Option<usize>) -> bool {
        self.found += 1;
        let listed = match caused_by {
            // A consequence is listed only with the problem it follows
            // from, so a reader always finds its cause above it.
            Some(root) => match self.root_at.get(&root) {
                Some(&k) => {
                    if let Some(p) = self.problems.get_mut(k) {
                        p.consequences += 1;
                    }
                    self.listed_consequences < LISTED
                }
                None => false,
            },
            None => {
                self.roots += 1;
                self.listed_roots < LISTED || matches!(rule, Rule::Bundle(b) if b.number() <= 4)
            }
        };
        if !listed {
            *self.unlisted.entry((rule, class)).or_default() += 1;
        }
        listed
    }

    /// Lists a problem that [`Verifier::count`] said is listed.
    fn list(&mut self, p: Problem) {
        match (p.caused_by, p.index) {
            (Some(_), _) => self.listed_consequences += 1,
            (None, Some(i)) if matches!(p.rule, Rule::Entry(_)) => {
                self.listed_roots += 1;
                self.root_at.entry(i).or_insert(self.problems.len());
            }
            (None, _) => self.listed_roots += 1,
        }
        self.problems.push(p);
    }

    /// Records a refused element, as a problem at its source or as a
    /// consequence of an earlier one (SPEC.md §10.5, step 3).
    fn refuse(
        &mut self,
        index: usize,
        kind: RejectKind,
        claimed: Option<Claimed>,
        id: Option<EntryId>,
    ) {
        let rule = kind.rule();
        let refused_dep = |c: &Option<Claimed>| {
            c.as_ref()
                .and_then(|c| c.depends_on.iter().find_map(|d| self.refused_ids.get(d)))
        };
        let root = if self.v.case().is_none() && matches!(rule, 9..=18) {
            // The genesis itself was refused: nothing can follow it.
            self.first_refused
        } else {
            match &kind {
                RejectKind::SequenceGap { expected, found } if found > expected => claimed
                    .as_ref()
                    .and_then(|c| self.refused_at.get(&c.author))
                    .and_then(|seqs| seqs.range(*expected..*found).next().map(|(_, r)| *r))
                    .or(self.first_unplaced),
                RejectKind::UnknownReference { id, .. } => self
                    .refused_ids
                    .get(id)
                    .or_else(|| refused_dep(&claimed))
                    .or(self.first_unplaced),
                RejectKind::NotAMember(_)
                | RejectKind::NotAuthorized(_)
                | RejectKind::CustodyViolation(_) => refused_dep(&claimed),
                _ => None,
            }
        };
        let (author, seq) = claimed.as_ref().map(|c| (c.author, c.seq)).unzip();
        let class = match root {
            Some(_) => "depends-on-invalid",
            None => kind.class(),
        };
        let listed = self.count(Rule::Entry(rule), class, root);
        let key = root.unwrap_or(index);
        if let Some(id) = id {
            self.refused_ids.insert(id, key);
        }
        match &claimed {
            Some(c) => {
                self.refused_at
                    .entry(c.author)
                    .or_default()
                    .entry(c.seq)
                    .or_insert(key);
            }
            None => {
                self.first_unplaced.get_or_insert(key);
            }
        }
        self.first_refused.get_or_insert(key);
        if !listed {
            // Counted only: none of the text is built.
            return;
        }
        let sentence = match root {
            Some(r) => explain_consequence(r),
            None => explain(&kind, seq),
        };
        self.list(Problem {
            index: Some(index),
            proof: None,
            entry: id,
            author_name: author.as_ref().and_then(|a| self.name(a)),
            author,
            seq,
            rule: Rule::Entry(rule),
            class,
            sentence,
            detail: kind.to_string(),
            caused_by: root,
            consequences: 0,
        });
    }

    fn bundle_problem(
        &mut self,
        n: BundleRule,
        detail: String,
        index: Option<usize>,
        entry: Option<EntryId>,
    ) {
        self.bundle_problem_at(n, detail, index, entry, None);
    }

    /// A bundle problem; `proof` is the equivocation proof it is about.
    fn bundle_problem_at(
        &mut self,
        n: BundleRule,
        detail: String,
        index: Option<usize>,
        entry: Option<EntryId>,
        proof: Option<usize>,
    ) {
        let rule = Rule::Bundle(n);
        if !self.count(rule, n.class(), None) {
            return;
        }
        self.list(Problem {
            index,
            proof,
            entry,
            author: None,
            author_name: None,
            seq: None,
            rule,
            class: n.class(),
            sentence: explain_bundle_rule(rule, &detail),
            detail,
            caused_by: None,
            consequences: 0,
        });
    }

    fn trust_of(&self, agency: &AgencyId) -> KeyTrust {
        match self.trust {
            None => KeyTrust::NotChecked,
            Some(t) => match t.name(agency) {
                Some(n) => KeyTrust::Confirmed(n.to_owned()),
                None => KeyTrust::NotConfirmed,
            },
        }
    }

    /// Finishes: checks the exporter's signature and the bundle-level rules
    /// (B1–B7), the equivocation proofs, and builds the report. For a
    /// verifier whose records are all in memory (a bundle decoded whole);
    /// one given [`Verifier::spill_records`] finishes with
    /// [`Verifier::finish_streamed`], which says when a record was lost.
    pub fn finish(self, bundle: &Bundle<'_>) -> Report {
        let signature_valid = bundle.signature_valid();
        self.conclude(signature_valid, bundle.len(), &bundle.proofs())
            .0
    }

    /// Finishes a bundle read from a stream: `summary` is the second
    /// pass's ([`super::StreamDecoder::second_pass`]), which knows whether
    /// the exporter's signature verifies (a first pass's counts as not).
    /// An error, and no report, when a record set aside out of memory
    /// could not be read back, before or while the report was made.
    pub fn finish_streamed(self, summary: &Summary) -> std::io::Result<Report> {
        let signature_valid = summary.signature_valid().unwrap_or(false);
        match self.conclude(signature_valid, summary.len(), summary.proofs()) {
            (report, None) => Ok(report),
            (_, Some(why)) => Err(std::io::Error::other(why)),
        }
    }

    /// The report, and why a record could not be read back if one could
    /// not (the report is then not to be given).
    fn conclude(
        mut self,
        signature_valid: bool,
        elements: usize,
        proofs: &[EquivocationProof],
    ) -> (Report, Option<String>) {
        let elements_ok = self.found == 0;
        if !signature_valid {
            self.bundle_problem(
                BundleRule::Signature,
                format!(
                    "the Ed25519 signature does not verify under key {} ({})",
                    self.signer,
                    self.signer.fingerprint()
                ),
                None,
                None,
            );
        }
        if self.signer != self.exporter {
            let detail = format!(
                "signed by {}, exporter named {}",
                self.signer.fingerprint(),
                self.exporter.fingerprint()
            );
            self.bundle_problem(BundleRule::ExporterMismatch, detail, None, None);
        }
        // B3 is about the bytes of element 0, whatever the replay made of
        // them (SPEC.md 10.5 step 4): a marker is never the genesis.
        if self.first_element != Some(self.case) {
            let detail = match self.first_element {
                Some(id) => format!(
                    "the bundle names case {}, its first element is entry {id}",
                    self.case
                ),
                None => format!(
                    "the bundle names case {}, its first element is a withheld marker, not the genesis",
                    self.case
                ),
            };
            self.bundle_problem(BundleRule::CaseMismatch, detail, None, None);
        } else if self.next < elements {
            // Only reachable when a caller stopped pushing early.
            let detail = format!("{} of {} elements were checked", self.next, elements);
            self.bundle_problem(BundleRule::CaseMismatch, detail, None, None);
        }
        let state = self.v.state().clone();
        if elements_ok {
            if !state.members.contains_key(&self.exporter) {
                let detail = format!(
                    "{} ({}) is not admitted by any membership entry",
                    self.name(&self.exporter)
                        .unwrap_or_else(|| "an unknown agency".into()),
                    self.exporter.fingerprint()
                );
                self.bundle_problem(BundleRule::ExporterNotMember, detail, None, None);
            }
            self.check_agency_list(&state);
            if let Some(items) = self.items.clone() {
                for i in items {
                    if !state.items.contains_key(&i) {
                        let detail = format!("item {} is not registered", i.to_uuid_string());
                        self.bundle_problem(BundleRule::Selection, detail, None, None);
                    }
                }
            }
        }
        let mut conflicts = Vec::new();
        // One equivocation is one conflict, whether the replay met it (V10),
        // `proofs` holds it, or both (SPEC.md 10.5 step 5).
        let mut equivocations = std::collections::HashSet::new();
        for c in &state.conflicts {
            if let Conflict::Equivocation { author, seq, .. } = c {
                equivocations.insert((*author, *seq));
            }
            conflicts.push(self.conflict(c, &state));
        }
        for (k, proof) in proofs.iter().enumerate() {
            match proof.check_keyed(&self.logs) {
                Ok(eq) if eq.case == self.case && !equivocations.insert((eq.author, eq.seq)) => {}
                Ok(eq) if eq.case == self.case => {
                    let ids = [EntryId::of(&proof.0), EntryId::of(&proof.1)];
                    let name = self
                        .name(&eq.author)
                        .unwrap_or_else(|| eq.author.fingerprint());
                    let held = ids.iter().find(|i| self.v.knows(i));
                    conflicts.push(ConflictReport {
                        kind: "equivocation",
                        author: Some(eq.author),
                        item: None,
                        versions: self.versions(proof),
                        entries: ids.iter().map(|i| (*i, self.index_of(i))).collect(),
                        sentence: format!(
                            "{name} signed two different entries as #{} of its history (proof {k} in the bundle): it showed different versions of its record to different agencies. {}",
                            eq.seq,
                            match held {
                                Some(i) => format!("The record in this bundle follows entry {}.", i.short()),
                                None => "Neither version is part of the record in this bundle.".into(),
                            }
                        ),
                    });
                }
                Ok(eq) => {
                    let detail = format!("proof {k} is about case {}, not this case", eq.case);
                    self.bundle_problem_at(BundleRule::BadProof, detail, None, None, Some(k));
                }
                Err(e) => {
                    self.bundle_problem_at(
                        BundleRule::BadProof,
                        format!("proof {k}: {e}"),
                        None,
                        None,
                        Some(k),
                    );
                }
            }
        }
        conflicts.extend(self.key_conflicts());
        let signers = self
            .signing_keys
            .iter()
            .filter_map(|(author, key)| {
                let c = self.logs.get(author)?.certification(key, u64::MAX)?;
                Some((
                    (*author, *key),
                    EntrySigner {
                        key: *key,
                        role: c.certify.role,
                        officer: c.certify.officer.clone(),
                    },
                ))
            })
            .collect();
        let key_logs = self.key_log_reports();
        let after_removal = self.v.after_removal();
        let members = state
            .members
            .values()
            .map(|m| {
                let (disclosed, withheld) =
                    self.per_author.get(&m.agency).copied().unwrap_or_default();
                MemberReport {
                    agency: m.agency,
                    fingerprint: m.agency.fingerprint(),
                    name: m.name.clone(),
                    country: m.country.clone(),
                    role: m.role,
                    added_by: m.added_by,
                    added_index: self.index_of(&m.added_by),
                    removed_by: m.removed_by,
                    removed_index: m.removed_by.and_then(|r| self.index_of(&r)),
                    after_removal: after_removal
                        .iter()
                        .filter(|x| x.agency == m.agency)
                        .map(|x| (x.entry, self.index_of(&x.entry)))
                        .collect(),
                    disclosed,
                    withheld,
                    trust: self.trust_of(&m.agency),
                }
            })
            .collect();
        let items = self.items_report(&state);
        let notes = self.notes_report();
        let opened = state
            .case
            .and_then(|c| self.kept.get(&c))
            .map(|g| (g.payload().time, g.author()));
        // Every record the report reads was read above.
        let lost = self.v.failure().map(str::to_string);
        let report = Report {
            case: self.case,
            title: state.title.clone(),
            reference: state.reference.clone(),
            jurisdiction: state.jurisdiction.clone(),
            tlp: state.tlp,
            opened,
            exporter: self.exporter,
            signer: self.signer,
            exporter_trust: self.trust_of(&self.exporter),
            exported_at: self.exported_at,
            selective: self.items.clone(),
            signature_valid,
            elements,
            disclosed: self.disclosed,
            trust_checked: self.trust.is_some(),
            listed: self.agencies.clone(),
            members,
            items,
            conflicts,
            notes,
            withheld: std::mem::take(&mut self.withheld),
            version: self.version,
            key_logs,
            signers,
            problems: std::mem::take(&mut self.problems),
            problem_count: self.found,
            root_count: self.roots,
            unlisted: std::mem::take(&mut self.unlisted)
                .into_iter()
                .map(|((rule, class), count)| Unlisted { rule, class, count })
                .collect(),
        };
        (report, lost)
    }

    /// The entries signed by keys revoked after the prefix they cite, in
    /// the classes of SPEC.md §10.6: a key retired, for entries dated at
    /// or after its effective time; a key lost or compromised, for entries
    /// no other agency witnessed before its effective time.
    fn key_conflicts(&mut self) -> Vec<ConflictReport> {
        let suspects = std::mem::take(&mut self.suspects);
        // A witness signed by a key its own log reports lost or
        // compromised does not count (whoever held that key may have
        // dated it), whatever its date.
        let untrusted: std::collections::HashSet<EntryId> = suspects
            .iter()
            .filter(|s| s.reason != RevokeReason::Retired)
            .map(|s| s.entry)
            .collect();
        // Which suspects another agency witnessed in time: per author, its
        // witnesses by others as (time, reach so far), one pass over the
        // records, asked by binary search and dropped before the next
        // author, so memory holds one author's witnesses at a time.
        let mut seen = vec![false; suspects.len()];
        let mut by_author: BTreeMap<AgencyId, Vec<usize>> = BTreeMap::new();
        for (k, s) in suspects.iter().enumerate() {
            if s.reason != RevokeReason::Retired {
                by_author.entry(s.author).or_default().push(k);
            }
        }
        for (author, ks) in by_author {
            let r = self
                .v
                .witness_reaches(&author, &|id| untrusted.contains(id));
            for k in ks {
                let s = &suspects[k];
                let before = r.partition_point(|(t, _)| *t < s.effective);
                seen[k] = before.checked_sub(1).is_some_and(|i| r[i].1 > s.seq);
            }
        }
        let mut out = Vec::new();
        for (k, s) in suspects.into_iter().enumerate() {
            let who = self.signer_words(&s.author, &s.key);
            let (kind, sentence) = match s.reason {
                RevokeReason::Retired if s.time >= s.effective => (
                    "key-retired",
                    format!(
                        "Entry #{} of {} is signed by {who} and dated {}, at or after the agency retired that key (from {}). The record is intact; the entry was made with a key the agency no longer stood behind.",
                        s.seq,
                        self.name(&s.author).unwrap_or_else(|| s.author.fingerprint()),
                        crate::utc::iso_seconds(s.time),
                        crate::utc::iso_seconds(s.effective)
                    ),
                ),
                RevokeReason::Retired => continue,
                _ if seen[k] => continue,
                reason => (
                    "key-reported-compromised",
                    format!(
                        "Entry #{} of {} is signed by {who}, a key the agency reported {} from {}. The entry is dated {}, but no other agency witnessed it before then, so its date cannot be relied on: whoever held the key may have made it. The record is intact; weigh this entry knowing that.",
                        s.seq,
                        self.name(&s.author).unwrap_or_else(|| s.author.fingerprint()),
                        reason.as_str(),
                        crate::utc::iso_seconds(s.effective),
                        crate::utc::iso_seconds(s.time)
                    ),
                ),
            };
            out.push(ConflictReport {
                kind,
                author: Some(s.author),
                item: None,
                entries: vec![(s.entry, Some(s.index))],
                sentence,
                versions: Vec::new(),
            });
        }
        out
    }

    /// "officer NAME (NUMBER), key K" or "key K", from the author's log.
    fn signer_words(&self, agency: &AgencyId, key: &KeyId) -> String {
        let officer = self
            .logs
            .get(agency)
            .and_then(|l| l.certification(key, l.len()))
            .and_then(|c| c.certify.officer.clone());
        match officer {
            Some(o) => format!(
                "officer {} ({}), key {}",
                o.name,
                o.number,
                &key.to_hex()[..16]
            ),
            None => format!("key {}", &key.to_hex()[..16]),
        }
    }

    /// Lists the B8 and B9 problems found in `keys` ([`judge_key_logs`])
    /// and returns the report of each log that replays.
    fn key_log_reports(&mut self) -> Vec<KeyLogReport> {
        for (rule, detail) in std::mem::take(&mut self.key_problems) {
            self.bundle_problem(rule, detail, None, None);
        }
        std::mem::take(&mut self.replayed)
            .into_iter()
            .map(|l| KeyLogReport {
                agency: l.agency(),
                listed_name: self.listed_agency(&l.agency()).map(|a| a.name.clone()),
                profile: l.profile(l.len()).cloned(),
                root: l.current_root(),
                statements: l.statements().iter().map(KeyStatementReport::of).collect(),
                superseded: l.superseded().iter().map(KeyStatementReport::of).collect(),
            })
            .collect()
    }

    /// B5: one problem per agency that differs, in ascending order of
    /// agency id (SPEC.md 10.5 step 4).
    fn check_agency_list(&mut self, state: &crate::state::CaseState) {
        let mut diffs = Vec::new();
        for m in state.members.values() {
            match self.listed_agency(&m.agency) {
                None => diffs.push((
                    m.agency,
                    format!(
                        "member {} ({}) is not listed",
                        m.name,
                        m.agency.fingerprint()
                    ),
                )),
                Some(a) if a.name != m.name || a.country != m.country => diffs.push((
                    m.agency,
                    format!(
                        "{} is listed as {:?} ({}) but the case records {:?} ({})",
                        m.agency.fingerprint(),
                        a.name,
                        a.country,
                        m.name,
                        m.country
                    ),
                )),
                Some(_) => {}
            }
        }
        for a in &self.agencies {
            if !state.members.contains_key(&a.agency) {
                diffs.push((
                    a.agency,
                    format!(
                        "{:?} ({}) is listed but is not a member of the case",
                        a.name,
                        a.agency.fingerprint()
                    ),
                ));
            }
        }
        diffs.sort_by_key(|d| d.0);
        for (_, d) in diffs {
            self.bundle_problem(BundleRule::AgencyList, d, None, None);
        }
    }

    /// The two versions a proof carries, side by side.
    fn versions(&self, proof: &EquivocationProof) -> Vec<VersionReport> {
        [&proof.0, &proof.1]
            .into_iter()
            .filter_map(|b| Entry::decode_unverified(b).ok())
            .map(|u| u.assume_verified())
            .map(|e| {
                let p = e.payload();
                VersionReport {
                    entry: e.id(),
                    index: self.index_of(&e.id()),
                    time: p.time,
                    tlp: p.tlp,
                    kind: p.body.kind(),
                    says: body_line(&p.body),
                    in_record: self.v.knows(&e.id()),
                }
            })
            .collect()
    }

    fn conflict(&self, c: &Conflict, state: &crate::state::CaseState) -> ConflictReport {
        let name = |a: &AgencyId| self.name(a).unwrap_or_else(|| a.fingerprint());
        let at = |id: &EntryId| (*id, self.index_of(id));
        let label = |i: &ItemId| match state.items.get(i).and_then(|x| x.exhibit.clone()) {
            Some(x) => format!("{x} ({})", i.to_uuid_string()),
            None => i.to_uuid_string(),
        };
        match c {
            Conflict::Equivocation { author, seq, proof } => ConflictReport {
                kind: "equivocation",
                author: Some(*author),
                item: None,
                versions: proof.iter().flat_map(|p| self.versions(p)).collect(),
                entries: proof
                    .iter()
                    .flat_map(|p| [EntryId::of(&p.0), EntryId::of(&p.1)])
                    .map(|i| at(&i))
                    .collect(),
                sentence: format!(
                    "{} signed two different entries as #{seq} of its history: it showed different versions of its record.",
                    name(author)
                ),
            },
            Conflict::DigestMismatch { entry, item, author } => ConflictReport {
                versions: Vec::new(),
                kind: "digest-mismatch",
                author: Some(*author),
                item: Some(*item),
                entries: vec![at(entry)],
                sentence: format!(
                    "{} recorded that the content of item {} no longer matched its registered digest: the item may have been altered or replaced.",
                    name(author),
                    label(item)
                ),
            },
            Conflict::DuplicateRegistration { item, entry } => ConflictReport {
                versions: Vec::new(),
                kind: "duplicate-registration",
                author: None,
                item: Some(*item),
                entries: vec![at(entry)],
                sentence: format!(
                    "Item {} was registered twice, independently; the first registration is the item's record.",
                    label(item)
                ),
            },
            Conflict::DuplicateDigest { first, second, entry } => ConflictReport {
                versions: Vec::new(),
                kind: "duplicate-digest",
                author: None,
                item: Some(*second),
                entries: vec![at(entry)],
                sentence: format!(
                    "Items {} and {} have the same SHA-256 digest but are not recorded as copies of each other: the same content was registered twice.",
                    label(first),
                    label(second)
                ),
            },
        }
    }

    fn items_report(&self, state: &crate::state::CaseState) -> Vec<ItemReport> {
        let mut out: Vec<(usize, ItemReport)> = Vec::new();
        // Each item's copies, in the order of the state's items.
        let mut copies_of: HashMap<ItemId, Vec<ItemId>> = HashMap::new();
        for x in state.items.values() {
            if let Some(d) = x.derived_from {
                copies_of.entry(d).or_default().push(x.id);
            }
        }
        // Each item's notes, in bundle order: one pass over the notes.
        let mut notes_about: HashMap<ItemId, Vec<EventReport>> = HashMap::new();
        if !state.items.is_empty() {
            for n in self.notes.iter() {
                if let Some(i) = n.item.filter(|i| state.items.contains_key(i)) {
                    notes_about.entry(i).or_default().push(self.note_event(n));
                }
            }
        }
        for item in state.items.values() {
            let Some(reg) = self.kept.get(&item.registered) else {
                continue;
            };
            let Body::EvidenceRegistered(r) = &reg.payload().body else {
                continue;
            };
            let mut timeline = vec![self.event(reg, "registered")];
            if let Some(t) = timeline.first_mut() {
                t.authority = r.authority.clone();
                t.place = r.acquired.place.clone();
                t.actor = Some(r.acquired.by.clone());
                t.tool = r.acquired.tool.clone();
            }
            for id in &item.events {
                if let Some(e) = self.kept.get(id) {
                    if let Body::Custody(ev) = &e.payload().body {
                        timeline.push(self.event(e, ev.action.as_str()));
                    }
                }
            }
            // The notes about the item, in bundle order among its events.
            timeline.extend(notes_about.remove(&item.id).unwrap_or_default());
            timeline.sort_by_key(|e| e.index.unwrap_or(usize::MAX));
            // Pair each transfer with its receipt.
            // (The first receipt answering each transfer.)
            let mut receipts: HashMap<EntryId, Receipt> = HashMap::new();
            for e in &timeline {
                if let Some(t) = e.answers {
                    receipts.entry(t).or_insert_with(|| Receipt {
                        entry: e.entry,
                        index: e.index,
                        author: e.author,
                        time: e.time,
                        accepted: e.accepted.unwrap_or(false),
                    });
                }
            }
            for e in &mut timeline {
                if e.action == CustodyAction::Transferred.as_str() {
                    e.receipt = receipts.get(&e.entry).cloned();
                }
            }
            let copies = copies_of.remove(&item.id).unwrap_or_default();
            let index = self.index_of(&item.registered).unwrap_or(0);
            out.push((
                index,
                ItemReport {
                    id: item.id,
                    exhibit: item.exhibit.clone(),
                    digests: item.digests.clone(),
                    size: item.size,
                    media_type: item.media_type.clone(),
                    description: item.description.clone(),
                    acquired: r.acquired.clone(),
                    authority: r.authority.clone(),
                    derived_from: item.derived_from,
                    copies,
                    holder: item.holder,
                    in_transit: item.open_transfer,
                    destroyed: item.destroyed,
                    incomplete: item.incomplete,
                    timeline,
                },
            ));
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// The notes, taken out of the verifier, with their retractions.
    fn notes_report(&mut self) -> Notes {
        let mut notes = std::mem::take(&mut self.notes);
        let retracted = &self.v.state().retracted;
        notes.set_retracted(
            retracted
                .iter()
                .map(|(id, (_, why))| (*id, why.clone()))
                .collect(),
        );
        notes
    }

    /// An event of `entry` with only what every event has: the fields of
    /// a custody event are filled in by the caller.
    fn base_event(
        &self,
        entry: EntryId,
        time: u64,
        author: AgencyId,
        action: &str,
        tlp: Tlp,
    ) -> EventReport {
        EventReport {
            entry,
            index: self.index_of(&entry),
            time,
            author,
            action: action.to_owned(),
            to: None,
            receipt: None,
            answers: None,
            accepted: None,
            actor: None,
            place: None,
            purpose: None,
            tool: None,
            reason: None,
            authority: None,
            digest_matched: None,
            copy: None,
            tlp,
            retracted: self
                .v
                .state()
                .retracted
                .get(&entry)
                .map(|(_, why)| why.clone()),
            note: None,
            signer: None,
        }
    }

    /// A note in its item's timeline.
    fn note_event(&self, n: NoteReport) -> EventReport {
        let mut r = self.base_event(n.entry, n.time, n.author, "note", n.tlp);
        r.note = Some(n.text);
        r.signer = n.signer;
        r
    }

    fn event(&self, e: &Kept, action: &str) -> EventReport {
        let p = e.payload();
        let mut r = self.base_event(e.id(), p.time, p.author, action, p.tlp);
        r.signer = e.key;
        if let Body::Custody(ev) = &p.body {
            r.to = ev.to;
            r.answers = ev.transfer;
            r.accepted = ev.accepted;
            r.actor = ev.actor.clone();
            r.place = ev.place.clone();
            r.purpose = ev.purpose.clone();
            r.tool = ev.tool.clone();
            r.reason = ev.reason.clone();
            r.digest_matched = ev.digest_matched;
            r.copy = ev.copy;
        }
        r
    }
}

/// Verifies a decoded bundle: replays every element, checks the
/// exporter's signature, the bundle rules and the proofs, and returns the
/// report. `trust` is the court's file of independently obtained keys.
pub fn verify(bundle: &Bundle<'_>, trust: Option<&TrustList>) -> Report {
    let mut v = Verifier::new(bundle, trust);
    let mut elements = bundle.elements();
    loop {
        let chunk: Vec<Element<'_>> = elements.by_ref().take(VERIFY_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        v.push_chunk(&chunk);
    }
    v.finish(bundle)
}

/// Entries whose signatures [`verify`] checks in one batch.
const VERIFY_CHUNK: usize = 1024;

#[cfg(test)]
mod tests {
    use super::RefusedIds;
    use crate::ids::EntryId;
    use std::collections::HashMap;

    #[test]
    fn refused_ids_keep_the_first_key_of_each_id_like_a_map() {
        let mut runs = RefusedIds::default();
        let mut map: HashMap<EntryId, usize> = HashMap::new();
        // Ids repeat (one in three is an earlier one), keys grow.
        for k in 0..5_000usize {
            let n = if k % 3 == 0 { k / 7 } else { k };
            let id = EntryId::of(&n.to_be_bytes());
            runs.insert(id, k);
            map.entry(id).or_insert(k);
            if k % 97 == 0 {
                for probe in [0, k / 2, k, k + 1] {
                    let id = EntryId::of(&probe.to_be_bytes());
                    assert_eq!(runs.get(&id), map.get(&id).copied(), "after {k}, {probe}");
                }
            }
        }
        for n in 0..5_001usize {
            let id = EntryId::of(&n.to_be_bytes());
            assert_eq!(runs.get(&id), map.get(&id).copied(), "{n}");
        }
        // Each run more than twice the next: one per bit of the count at
        // most. A repeated id is held twice until its runs merge.
        assert!(runs.runs.len() <= 14, "{} runs", runs.runs.len());
        assert!(runs.runs.windows(2).all(|w| w[0].len() > 2 * w[1].len()));
        let held: usize = runs.runs.iter().map(Vec::len).sum();
        assert!(held >= map.len() && held <= 5_000, "{held}");
    }
}
