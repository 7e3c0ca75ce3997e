//! The verification report as JSON (`custodia --json verify`), written
//! as it is serialized.
//!
//! The report's long lists (members, items and their timelines, conflicts,
//! withheld positions, problems) are produced one element at a time while
//! the writer runs, so the JSON never exists as one `serde_json::Value`
//! tree: memory stays that of the report itself plus one element, however
//! long the lists (a `Value` tree costs kilobytes per element, several
//! times the bundle's own bytes). The keys come out in the order a `Value`
//! would give them (sorted), so the document is the same.
//!
//! JSON is data: strings are written as they are in the bundle, with
//! control characters escaped by serde_json.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use custodia_protocol::bundle::{EventReport, KeyTrust, Report};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::{json, Value};

use super::explain::keys_statement;
use super::Source;
use crate::output::iso_time;

/// A JSON value: a small one built whole, an array produced element by
/// element, or an object with such fields.
enum Field<'a> {
    Value(Value),
    Each(Each<'a>),
    Object(Object<'a>),
}

type Object<'a> = BTreeMap<String, Field<'a>>;

/// An array whose elements are made while it is written (once).
struct Each<'a>(RefCell<Option<Box<dyn Iterator<Item = Field<'a>> + 'a>>>);

impl<'a> Each<'a> {
    fn of(it: impl Iterator<Item = Field<'a>> + 'a) -> Field<'a> {
        Field::Each(Each(RefCell::new(Some(Box::new(it)))))
    }

    fn values(it: impl Iterator<Item = Value> + 'a) -> Field<'a> {
        Each::of(it.map(Field::Value))
    }
}

impl Serialize for Each<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        if let Some(it) = self.0.borrow_mut().take() {
            for f in it {
                seq.serialize_element(&f)?;
            }
        }
        seq.end()
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Value(v) => v.serialize(s),
            Field::Each(e) => e.serialize(s),
            Field::Object(o) => o.serialize(s),
        }
    }
}

/// The fields of a small JSON object given with `json!({...})`, to which
/// lazy fields are added.
fn object<'a>(v: Value) -> Object<'a> {
    match v {
        Value::Object(m) => m.into_iter().map(|(k, v)| (k, Field::Value(v))).collect(),
        _ => Object::new(),
    }
}

fn trust_json(t: &KeyTrust) -> Value {
    match t {
        KeyTrust::NotChecked => json!("not-checked"),
        KeyTrust::Confirmed(n) => json!({"confirmed": n}),
        KeyTrust::NotConfirmed => json!("not-confirmed"),
    }
}

fn event_json(e: &EventReport) -> Value {
    json!({
        "index": e.index,
        "entry": e.entry.to_hex(),
        "time": e.time,
        "time_iso": iso_time(e.time),
        "author": e.author.to_hex(),
        "action": e.action,
        "to": e.to.map(|a| a.to_hex()),
        "receipt": e.receipt.as_ref().map(|r| json!({"entry": r.entry.to_hex(), "index": r.index, "author": r.author.to_hex(), "time": r.time, "accepted": r.accepted})),
        "answers": e.answers.map(|t| t.to_hex()),
        "accepted": e.accepted,
        "actor": e.actor,
        "place": e.place,
        "purpose": e.purpose,
        "tool": e.tool,
        "reason": e.reason,
        "authority": e.authority,
        "digest_matched": e.digest_matched,
        "copy": e.copy.map(|c| c.to_uuid_string()),
        "tlp": e.tlp.as_str(),
        "retracted": e.retracted,
        "note": e.note,
    })
}

/// The whole report as one JSON document.
fn document(r: &Report) -> Object<'_> {
    let mut top = object(json!({
        "verdict": r.verdict_kind(),
        "conflict_counts": r.conflict_counts().into_iter().map(|(k, n)| (k.to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "summary": r.verdict(),
        "problem_count": r.problem_count,
        "root_problems": r.root_problems(),
        "problems_listed": r.problems.len(),
        "problems_not_listed": r.unlisted.iter().map(|u| json!({
            "rule": u.rule.to_string(), "class": u.class, "count": u.count,
        })).collect::<Vec<_>>(),
        "case": {
            "id": r.case.to_hex(),
            "title": r.title,
            "reference": r.reference,
            "jurisdiction": r.jurisdiction,
            "tlp": r.tlp.map(|t| t.as_str()),
            "opened_at": r.opened.map(|o| o.0),
            "opened_by": r.opened.map(|o| o.1.to_hex()),
        },
        "exporter": {
            "agency": r.exporter.to_hex(),
            "name": r.name_of(&r.exporter),
            "fingerprint": r.exporter.fingerprint(),
            "signer": r.signer.to_hex(),
            "trust": trust_json(&r.exporter_trust),
        },
        "exported_at": r.exported_at,
        "exported_at_iso": iso_time(r.exported_at),
        "signature_valid": r.signature_valid,
        "selective_items": r.selective.as_ref().map(|v| v.iter().map(|i| i.to_uuid_string()).collect::<Vec<_>>()),
        "positions": r.elements,
        "disclosed": r.disclosed,
        "keys_confirmed": r.trust_checked,
        "keys": keys_statement(r, &|s: &str| s.to_owned()),
    }));
    top.insert(
        "members".into(),
        Each::values(r.members.iter().map(|m| {
            json!({
                "agency": m.agency.to_hex(),
                "fingerprint": m.fingerprint,
                "name": m.name,
                "country": m.country,
                "role": m.role.as_str(),
                "added_by": m.added_by.to_hex(),
                "added_index": m.added_index,
                "removed_by": m.removed_by.map(|x| x.to_hex()),
                "removed_index": m.removed_index,
                "after_removal": m.after_removal.iter().map(|(id, index)| json!({"entry": id.to_hex(), "index": index})).collect::<Vec<_>>(),
                "disclosed": m.disclosed,
                "withheld": m.withheld,
                "trust": trust_json(&m.trust),
            })
        })),
    );
    top.insert(
        "items".into(),
        Each::of(r.items.iter().map(|i| {
            let mut o = object(json!({
                "id": i.id.to_uuid_string(),
                "exhibit": i.exhibit,
                "sha256": hex::encode(i.digests.sha256),
                "sha1": i.digests.sha1.map(hex::encode),
                "md5": i.digests.md5.map(hex::encode),
                "size": i.size,
                "media_type": i.media_type,
                "description": i.description,
                "acquired": {"by": i.acquired.by, "at": i.acquired.at, "place": i.acquired.place, "method": i.acquired.method, "tool": i.acquired.tool},
                "authority": i.authority,
                "derived_from": i.derived_from.map(|d| d.to_uuid_string()),
                "holder": i.holder.to_hex(),
                "in_transit": i.in_transit.map(|t| t.to_hex()),
                "destroyed": i.destroyed,
                "incomplete": i.incomplete,
            }));
            o.insert(
                "copies".into(),
                Each::values(i.copies.iter().map(|c| json!(c.to_uuid_string()))),
            );
            o.insert(
"timeline".into(), Each::values(i.timeline.iter().map(event_json)));
            Field::Object(o)
        })),
    );
    top.insert(
        "conflicts".into(),
        Each::values(r.conflicts.iter().map(|c| {
            json!({
                "kind": c.kind,
                "author": c.author.map(|a| a.to_hex()),
                "item": c.item.map(|i| i.to_uuid_string()),
                "entries": c.entries.iter().map(|(id, i)| json!({"entry": id.to_hex(), "index": i})).collect::<Vec<_>>(),
                "sentence": c.sentence,
            })
        })),
    );
    top.insert(
        "notes".into(),
        Each::values(r.notes.iter().map(|n| {
            json!({
                "index": n.index,
                "entry": n.entry.to_hex(),
                "time": n.time,
                "time_iso": iso_time(n.time),
                "author": n.author.to_hex(),
                "author_name": r.name_of(&n.author),
                "item": n.item.map(|i| i.to_uuid_string()),
                "text": n.text,
                "tlp": n.tlp.as_str(),
                "retracted": n.retracted,
            })
        })),
    );
    top.insert(
        "withheld".into(),
        Each::values(r.withheld.iter().map(|w| {
            json!({
                "index": w.index, "author": w.author.to_hex(), "seq": w.seq, "id": w.id.to_hex(), "corroborated": w.corroborated,
            })
        })),
    );
    top.insert(
        "problems".into(),
        Each::values(r.problems.iter().map(|p| {
            json!({
                "index": p.index,
                "proof": p.proof,
                "entry": p.entry.map(|e| e.to_hex()),
                "author": p.author.map(|a| a.to_hex()),
                "author_name": p.author_name,
                "seq": p.seq,
                "rule": p.rule.to_string(),
                "class": p.class,
                "sentence": p.sentence,
                "detail": p.detail,
                "caused_by": p.caused_by,
                "consequences": p.consequences,
            })
        })),
    );
    top
}

/// Writes the report as pretty JSON and a newline.
pub(crate) fn write(r: &Report, file: &Source, w: &mut impl Write) -> std::io::Result<()> {
    let mut doc = document(r);
    doc.insert(
        "bundle".into(),
        Field::Value(json!({
            "file": file.name,
            "sha256": hex::encode(file.sha256),
            "size": file.size,
        })),
    );
    doc.insert(
        "schema_version".into(),
        Field::Value(json!(crate::output::JSON_SCHEMA_VERSION)),
    );
    doc.insert(
        "verifier".into(),
        Field::Value(json!({
            "name": env!("CARGO_BIN_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
        })),
    );
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    w.write_all(b"\n")?;
    w.flush()
}
