//! The verification report as JSON (`custodia --json verify`), written
//! as it is serialized. Its shape is published as a JSON Schema
//! (`docs/schemas/verify-report.schema.json`).
//!
//! The document is a typed view of the report: one struct per JSON
//! object, with `#[derive(Serialize)]`, borrowing from the report. The
//! members of each struct are declared in the order they are written, which
//! is sorted by name (the order of the earlier `serde_json::Value` form, so
//! the bytes did not change); keep them sorted when adding one.
//!
//! The report's long lists (members, items and their timelines, conflicts,
//! notes, withheld positions, problems) are produced one element at a time
//! while the writer runs ([`Each`]), so the JSON never exists as a tree:
//! memory stays that of the report itself plus one element, however long
//! the lists.
//!
//! JSON is data: strings are written as they are in the bundle, with
//! control characters escaped by serde_json.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use custodia_protocol::bundle::{
    ConflictReport, EventReport, ItemReport, KeyLogReport, KeyStatementReport, KeyTrust,
    MemberReport, NoteReport, Problem, Report, Unlisted, WithheldReport,
};
use custodia_protocol::keylog::Statement;
use custodia_protocol::{AgencyId, EntryId, ItemId};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde::Serialize as DeriveSerialize;

use super::explain::{key_logs_statement, keys_statement};
use super::Source;
use crate::output::{iso_time, JSON_SCHEMA_VERSION};

/// An array whose elements are made while it is written (once).
struct Each<I>(RefCell<Option<I>>);

impl<I> Each<I> {
    fn of(it: I) -> Self {
        Each(RefCell::new(Some(it)))
    }
}

impl<I, T> Serialize for Each<I>
where
    I: Iterator<Item = T>,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        if let Some(it) = self.0.borrow_mut().take() {
            for x in it {
                seq.serialize_element(&x)?;
            }
        }
        seq.end()
    }
}

fn hex(id: &EntryId) -> String {
    id.to_hex()
}

fn agency(id: &AgencyId) -> String {
    id.to_hex()
}

fn uuid(id: &ItemId) -> String {
    id.to_uuid_string()
}

/// A key's standing against the court's trust file.
#[derive(DeriveSerialize)]
#[serde(rename_all = "kebab-case")]
enum Trust<'r> {
    NotChecked,
    Confirmed(&'r str),
    NotConfirmed,
}

impl<'r> Trust<'r> {
    fn of(t: &'r KeyTrust) -> Self {
        match t {
            KeyTrust::NotChecked => Trust::NotChecked,
            KeyTrust::Confirmed(n) => Trust::Confirmed(n),
            KeyTrust::NotConfirmed => Trust::NotConfirmed,
        }
    }
}

/// The whole document.
#[derive(DeriveSerialize)]
#[serde(bound(
    serialize = "Each<M>: Serialize, Each<I>: Serialize, Each<C>: Serialize, \
                           Each<N>: Serialize, Each<W>: Serialize, Each<P>: Serialize"
))]
struct Document<'r, M, I, C, N, W, P> {
    bundle: BundleFile<'r>,
    case: Case<'r>,
    conflict_counts: BTreeMap<&'static str, usize>,
    conflicts: Each<C>,
    disclosed: usize,
    exported_at: u64,
    exported_at_iso: String,
    exporter: Exporter<'r>,
    items: Each<I>,
    key_logs: Vec<KeyLogJson<'r>>,
    key_logs_note: &'static str,
    keys: String,
    keys_confirmed: bool,
    members: Each<M>,
    notes: Each<N>,
    positions: usize,
    problem_count: usize,
    problems: Each<P>,
    problems_listed: usize,
    problems_not_listed: Vec<NotListed<'r>>,
    root_problems: usize,
    schema_version: u64,
    selective_items: Option<Vec<String>>,
    signature_valid: bool,
    summary: String,
    verdict: &'static str,
    verifier: Verifier,
    withheld: Each<W>,
}

#[derive(DeriveSerialize)]
struct BundleFile<'r> {
    file: &'r str,
    format_version: u64,
    sha256: String,
    size: u64,
}

/// An agency's key history (a version 2 or 3 bundle's key log that replays).
#[derive(DeriveSerialize)]
struct KeyLogJson<'r> {
    agency: String,
    fingerprint: String,
    listed_name: Option<&'r str>,
    profile: Option<ProfileJson<'r>>,
    root: String,
    statements: Vec<KeyStatementJson<'r>>,
    superseded: Vec<KeyStatementJson<'r>>,
}

#[derive(DeriveSerialize)]
struct ProfileJson<'r> {
    country: &'r str,
    name: &'r str,
}

#[derive(DeriveSerialize)]
struct OfficerJson<'r> {
    name: &'r str,
    number: &'r str,
}

/// One statement: every member present, null where the kind has none.
#[derive(DeriveSerialize)]
struct KeyStatementJson<'r> {
    country: Option<&'r str>,
    effective: Option<u64>,
    effective_iso: Option<String>,
    id: String,
    key: Option<String>,
    kind: &'static str,
    name: Option<&'r str>,
    next: Option<String>,
    not_after: Option<u64>,
    not_after_iso: Option<String>,
    not_before: Option<u64>,
    not_before_iso: Option<String>,
    officer: Option<OfficerJson<'r>>,
    reason: Option<&'static str>,
    role: Option<&'static str>,
    seq: u64,
    signer: String,
    time: u64,
    time_iso: String,
}

impl<'r> KeyLogJson<'r> {
    fn of(l: &'r KeyLogReport) -> Self {
        KeyLogJson {
            agency: agency(&l.agency),
            fingerprint: l.agency.fingerprint(),
            listed_name: l.listed_name.as_deref(),
            profile: l.profile.as_ref().map(|p| ProfileJson {
                country: &p.country,
                name: &p.name,
            }),
            root: l.root.to_hex(),
            statements: l.statements.iter().map(KeyStatementJson::of).collect(),
            superseded: l.superseded.iter().map(KeyStatementJson::of).collect(),
        }
    }
}

impl<'r> KeyStatementJson<'r> {
    fn of(s: &'r KeyStatementReport) -> Self {
        let mut j = KeyStatementJson {
            country: None,
            effective: None,
            effective_iso: None,
            id: s.id.to_hex(),
            key: None,
            kind: s.statement.kind(),
            name: None,
            next: None,
            not_after: None,
            not_after_iso: None,
            not_before: None,
            not_before_iso: None,
            officer: None,
            reason: None,
            role: None,
            seq: s.seq,
            signer: s.signer.to_hex(),
            time: s.time,
            time_iso: iso_time(s.time),
        };
        match &s.statement {
            Statement::Inception(r) | Statement::RotateRoot(r) => {
                j.key = Some(r.root.key.to_hex());
                j.next = Some(r.next.to_hex());
            }
            Statement::Certify(c) => {
                j.key = Some(c.key.key.to_hex());
                j.role = Some(c.role.as_str());
                j.officer = c.officer.as_ref().map(|o| OfficerJson {
                    name: &o.name,
                    number: &o.number,
                });
                j.not_before = Some(c.not_before);
                j.not_before_iso = Some(iso_time(c.not_before));
                j.not_after = c.not_after;
                j.not_after_iso = c.not_after.map(iso_time);
            }
            Statement::Revoke(r) => {
                j.key = Some(r.key.to_hex());
                j.reason = Some(r.reason.as_str());
                j.effective = Some(r.effective);
                j.effective_iso = Some(iso_time(r.effective));
            }
            Statement::Profile(p) => {
                j.name = Some(&p.name);
                j.country = Some(&p.country);
            }
            _ => {}
        }
        j
    }
}

#[derive(DeriveSerialize)]
struct Case<'r> {
    id: String,
    jurisdiction: Option<&'r str>,
    opened_at: Option<u64>,
    opened_at_iso: Option<String>,
    opened_by: Option<String>,
    reference: &'r str,
    title: &'r str,
    tlp: Option<&'static str>,
}

#[derive(DeriveSerialize)]
struct Exporter<'r> {
    agency: String,
    fingerprint: String,
    name: String,
    signer: String,
    trust: Trust<'r>,
}

#[derive(DeriveSerialize)]
struct NotListed<'r> {
    class: &'r str,
    count: usize,
    rule: String,
}

#[derive(DeriveSerialize)]
struct Verifier {
    name: &'static str,
    version: &'static str,
}

/// An entry and its position in the bundle (None: not in it).
#[derive(DeriveSerialize)]
struct Position {
    entry: String,
    index: Option<usize>,
}

fn positions(list: &[(EntryId, Option<usize>)]) -> Vec<Position> {
    list.iter()
        .map(|(id, index)| Position {
            entry: hex(id),
            index: *index,
        })
        .collect()
}

#[derive(DeriveSerialize)]
struct Member<'r> {
    added_by: String,
    added_index: Option<usize>,
    after_removal: Vec<Position>,
    agency: String,
    country: &'r str,
    disclosed: usize,
    fingerprint: &'r str,
    name: &'r str,
    removed_by: Option<String>,
    removed_index: Option<usize>,
    role: &'static str,
    trust: Trust<'r>,
    withheld: usize,
}

impl<'r> Member<'r> {
    fn of(m: &'r MemberReport) -> Self {
        Member {
            added_by: hex(&m.added_by),
            added_index: m.added_index,
            after_removal: positions(&m.after_removal),
            agency: agency(&m.agency),
            country: &m.country,
            disclosed: m.disclosed,
            fingerprint: &m.fingerprint,
            name: &m.name,
            removed_by: m.removed_by.as_ref().map(hex),
            removed_index: m.removed_index,
            role: m.role.as_str(),
            trust: Trust::of(&m.trust),
            withheld: m.withheld,
        }
    }
}

#[derive(DeriveSerialize)]
struct Acquired<'r> {
    at: u64,
    at_iso: String,
    by: &'r str,
    method: Option<&'r str>,
    place: Option<&'r str>,
    tool: Option<&'r str>,
}

#[derive(DeriveSerialize)]
#[serde(bound(serialize = "Each<C>: Serialize, Each<T>: Serialize"))]
struct Item<'r, C, T> {
    acquired: Acquired<'r>,
    authority: Option<&'r str>,
    copies: Each<C>,
    derived_from: Option<String>,
    description: Option<&'r str>,
    destroyed: bool,
    exhibit: Option<&'r str>,
    holder: String,
    id: String,
    in_transit: Option<String>,
    incomplete: bool,
    md5: Option<String>,
    media_type: &'r str,
    sha1: Option<String>,
    sha256: String,
    size: u64,
    timeline: Each<T>,
}

fn item<'r>(
    r: &'r Report,
    i: &'r ItemReport,
) -> Item<'r, impl Iterator<Item = String> + 'r, impl Iterator<Item = Event<'r>> + 'r> {
    let a = &i.acquired;
    Item {
        acquired: Acquired {
            at: a.at,
            at_iso: iso_time(a.at),
            by: &a.by,
            method: a.method.as_deref(),
            place: a.place.as_deref(),
            tool: a.tool.as_deref(),
        },
        authority: i.authority.as_deref(),
        copies: Each::of(i.copies.iter().map(uuid)),
        derived_from: i.derived_from.as_ref().map(uuid),
        description: i.description.as_deref(),
        destroyed: i.destroyed,
        exhibit: i.exhibit.as_deref(),
        holder: agency(&i.holder),
        id: uuid(&i.id),
        in_transit: i.in_transit.as_ref().map(hex),
        incomplete: i.incomplete,
        md5: i.digests.md5.map(hex::encode),
        media_type: &i.media_type,
        sha1: i.digests.sha1.map(hex::encode),
        sha256: hex::encode(i.digests.sha256),
        size: i.size,
        timeline: Each::of(i.timeline.iter().map(move |e| Event::of(r, e))),
    }
}

#[derive(DeriveSerialize)]
struct ReceiptJson {
    accepted: bool,
    author: String,
    entry: String,
    index: Option<usize>,
    time: u64,
    time_iso: String,
}

#[derive(DeriveSerialize)]
struct Event<'r> {
    accepted: Option<bool>,
    action: &'r str,
    actor: Option<&'r str>,
    answers: Option<String>,
    author: String,
    authority: Option<&'r str>,
    copy: Option<String>,
    digest_matched: Option<bool>,
    entry: String,
    index: Option<usize>,
    note: Option<&'r str>,
    place: Option<&'r str>,
    purpose: Option<&'r str>,
    reason: Option<&'r str>,
    receipt: Option<ReceiptJson>,
    retracted: Option<&'r str>,
    signer: Option<SignerJson<'r>>,
    time: u64,
    time_iso: String,
    tlp: &'static str,
    to: Option<String>,
    tool: Option<&'r str>,
}

/// The officer or node key that signed an entry of format version 2.
#[derive(DeriveSerialize)]
struct SignerJson<'r> {
    key: String,
    officer: Option<OfficerJson<'r>>,
    role: &'static str,
}

impl<'r> SignerJson<'r> {
    fn of(r: &'r Report, author: &AgencyId, key: Option<custodia_protocol::KeyId>) -> Option<Self> {
        r.signer(author, key).map(|s| SignerJson {
            key: s.key.to_hex(),
            officer: s.officer.as_ref().map(|o| OfficerJson {
                name: &o.name,
                number: &o.number,
            }),
            role: s.role.as_str(),
        })
    }
}

impl<'r> Event<'r> {
    fn of(r: &'r Report, e: &'r EventReport) -> Self {
        Event {
            accepted: e.accepted,
            action: &e.action,
            actor: e.actor.as_deref(),
            answers: e.answers.as_ref().map(hex),
            author: agency(&e.author),
            authority: e.authority.as_deref(),
            copy: e.copy.as_ref().map(uuid),
            digest_matched: e.digest_matched,
            entry: hex(&e.entry),
            index: e.index,
            note: e.note.as_deref(),
            place: e.place.as_deref(),
            purpose: e.purpose.as_deref(),
            reason: e.reason.as_deref(),
            receipt: e.receipt.as_ref().map(|r| ReceiptJson {
                accepted: r.accepted,
                author: agency(&r.author),
                entry: hex(&r.entry),
                index: r.index,
                time: r.time,
                time_iso: iso_time(r.time),
            }),
            retracted: e.retracted.as_deref(),
            signer: SignerJson::of(r, &e.author, e.signer),
            time: e.time,
            time_iso: iso_time(e.time),
            tlp: e.tlp.as_str(),
            to: e.to.as_ref().map(agency),
            tool: e.tool.as_deref(),
        }
    }
}

#[derive(DeriveSerialize)]
struct Conflict<'r> {
    author: Option<String>,
    entries: Vec<Position>,
    item: Option<String>,
    kind: &'r str,
    sentence: &'r str,
    versions: Vec<Version<'r>>,
}

/// One of an equivocation's two versions.
#[derive(DeriveSerialize)]
struct Version<'r> {
    entry: String,
    in_record: bool,
    index: Option<usize>,
    kind: &'static str,
    says: &'r str,
    time: u64,
    time_iso: String,
    tlp: &'static str,
}

impl<'r> Conflict<'r> {
    fn of(c: &'r ConflictReport) -> Self {
        Conflict {
            author: c.author.as_ref().map(agency),
            entries: positions(&c.entries),
            item: c.item.as_ref().map(uuid),
            kind: c.kind,
            sentence: &c.sentence,
            versions: c
                .versions
                .iter()
                .map(|v| Version {
                    entry: v.entry.to_hex(),
                    in_record: v.in_record,
                    index: v.index,
                    kind: v.kind,
                    says: &v.says,
                    time: v.time,
                    time_iso: iso_time(v.time),
                    tlp: v.tlp.as_str(),
                })
                .collect(),
        }
    }
}

#[derive(DeriveSerialize)]
struct Note<'r> {
    author: String,
    author_name: String,
    entry: String,
    index: Option<usize>,
    item: Option<String>,
    retracted: Option<String>,
    signer: Option<SignerJson<'r>>,
    text: String,
    time: u64,
    time_iso: String,
    tlp: &'static str,
}

impl<'r> Note<'r> {
    fn of(r: &'r Report, n: NoteReport) -> Self {
        Note {
            signer: SignerJson::of(r, &n.author, n.signer),
            author: agency(&n.author),
            author_name: r.name_of(&n.author).to_string(),
            entry: hex(&n.entry),
            index: n.index,
            item: n.item.as_ref().map(uuid),
            retracted: n.retracted,
            text: n.text,
            time: n.time,
            time_iso: iso_time(n.time),
            tlp: n.tlp.as_str(),
        }
    }
}

#[derive(DeriveSerialize)]
struct Withheld {
    author: String,
    corroborated: bool,
    id: String,
    index: usize,
    seq: u64,
}

impl Withheld {
    fn of(w: &WithheldReport) -> Self {
        Withheld {
            author: agency(&w.author),
            corroborated: w.corroborated,
            id: hex(&w.id),
            index: w.index,
            seq: w.seq,
        }
    }
}

#[derive(DeriveSerialize)]
struct ProblemJson<'r> {
    author: Option<String>,
    author_name: Option<&'r str>,
    caused_by: Option<usize>,
    class: &'r str,
    consequences: usize,
    detail: &'r str,
    entry: Option<String>,
    index: Option<usize>,
    proof: Option<usize>,
    rule: String,
    sentence: &'r str,
    seq: Option<u64>,
}

impl<'r> ProblemJson<'r> {
    fn of(p: &'r Problem) -> Self {
        ProblemJson {
            author: p.author.as_ref().map(agency),
            author_name: p.author_name.as_deref(),
            caused_by: p.caused_by,
            class: p.class,
            consequences: p.consequences,
            detail: &p.detail,
            entry: p.entry.as_ref().map(hex),
            index: p.index,
            proof: p.proof,
            rule: p.rule.to_string(),
            sentence: &p.sentence,
            seq: p.seq,
        }
    }
}

fn not_listed(u: &Unlisted) -> NotListed<'_> {
    NotListed {
        class: u.class,
        count: u.count,
        rule: u.rule.to_string(),
    }
}

/// Writes the report as pretty JSON and a newline.
pub(crate) fn write(r: &Report, file: &Source, w: &mut impl Write) -> std::io::Result<()> {
    let doc = Document {
        bundle: BundleFile {
            file: &file.name,
            format_version: r.version,
            sha256: hex::encode(file.sha256),
            size: file.size,
        },
        case: Case {
            id: hex(&r.case),
            jurisdiction: r.jurisdiction.as_deref(),
            opened_at: r.opened.map(|o| o.0),
            opened_at_iso: r.opened.map(|o| iso_time(o.0)),
            opened_by: r.opened.map(|o| agency(&o.1)),
            reference: &r.reference,
            title: &r.title,
            tlp: r.tlp.map(|t| t.as_str()),
        },
        conflict_counts: r.conflict_counts().into_iter().collect(),
        conflicts: Each::of(r.conflicts.iter().map(Conflict::of)),
        disclosed: r.disclosed,
        exported_at: r.exported_at,
        exported_at_iso: iso_time(r.exported_at),
        exporter: Exporter {
            agency: agency(&r.exporter),
            fingerprint: r.exporter.fingerprint(),
            name: r.name_of(&r.exporter).to_string(),
            signer: agency(&r.signer),
            trust: Trust::of(&r.exporter_trust),
        },
        items: Each::of(r.items.iter().map(|i| item(r, i))),
        key_logs: r.key_logs.iter().map(KeyLogJson::of).collect(),
        key_logs_note: key_logs_statement(r),
        keys: keys_statement(r, &|s: &str| s.to_owned()),
        keys_confirmed: r.trust_checked,
        members: Each::of(r.members.iter().map(Member::of)),
        notes: Each::of(r.notes.iter().map(|n| Note::of(r, n))),
        positions: r.elements,
        problem_count: r.problem_count,
        problems: Each::of(r.problems.iter().map(ProblemJson::of)),
        problems_listed: r.problems.len(),
        problems_not_listed: r.unlisted.iter().map(not_listed).collect(),
        root_problems: r.root_problems(),
        schema_version: JSON_SCHEMA_VERSION,
        selective_items: r.selective.as_ref().map(|v| v.iter().map(uuid).collect()),
        signature_valid: r.signature_valid,
        summary: r.verdict(),
        verdict: r.verdict_kind(),
        verifier: Verifier {
            name: env!("CARGO_BIN_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        },
        withheld: Each::of(r.withheld.iter().map(Withheld::of)),
    };
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    w.write_all(b"\n")?;
    w.flush()
}
