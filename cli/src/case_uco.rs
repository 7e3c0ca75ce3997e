//! A case's chain of custody in the CASE/UCO ontology (JSON-LD).
//!
//! CASE (Cyber-investigation Analysis Standard Expression, built on the
//! Unified Cyber Ontology) is what forensic tools use to exchange
//! provenance. [`graph`] maps what a node holds of a case to one JSON-LD
//! document that conforms to CASE 1.5.0 as checked by `case_validate`
//! (the `case-utils` package; `spec/vectors/check-case-uco` runs it):
//!
//! - the case → `case-investigation:Investigation` (title, reference,
//!   jurisdiction, the legal authorities of its registrations as
//!   `case-investigation:Authorization`, every other node as its object);
//! - each member agency → `uco-identity:Organization`, its key as an
//!   external reference;
//! - each evidence item → `uco-observable:File` with a `ContentDataFacet`
//!   (size, media type, SHA-256 and, when registered, SHA-1 and MD5);
//! - the registration and each custody event →
//!   `case-investigation:InvestigativeAction` performed by the signing
//!   agency, at the signed time, with its tool (`uco-tool:Tool`) and place
//!   (`uco-location:Location`) when recorded, and the Custodia entry id as
//!   an external reference and in its description;
//! - after each step, a new `case-investigation:ProvenanceRecord` of the
//!   item with its exhibit number: every action takes the item's previous
//!   provenance record as its object, yields the next one as its result
//!   and is informed by the previous action, so the records form the
//!   custody chain;
//! - notes → `uco-core:Annotation`.
//!
//! Every node IRI ends in a name-based (version 5, RFC 9562) UUID derived
//! from what the node stands for (an entry id, an item id, an agency key),
//! so exporting the same record twice gives the same document. The export
//! asserts nothing the signed record does not say; the signatures
//! themselves stay in the Custodia record (the bundle), which the entry ids
//! point to.

use std::collections::{BTreeMap, BTreeSet};

use custodia_protocol::utc::iso_millis;
use custodia_protocol::{
    AgencyId, Body, CaseState, CustodyAction, CustodyEvent, Digests, Entry, EntryId,
    EvidenceRegistered, ItemId, Note,
};
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

/// The name space of every UUID in an export:
/// `uuid5(NAMESPACE_URL, "urn:custodia:case-uco")` =
/// `8da424da-335e-5975-9983-9c41e8b0064d`.
pub(crate) const NAMESPACE: [u8; 16] = [
    0x8d, 0xa4, 0x24, 0xda, 0x33, 0x5e, 0x59, 0x75, 0x99, 0x83, 0x9c, 0x41, 0xe8, 0xb0, 0x06, 0x4d,
];

/// The IRI prefix of every node (`kb:` in the document).
pub(crate) const KB: &str = "urn:custodia:kb:";

/// A name-based UUID (version 5, RFC 9562 §5.5): SHA-1 of the name space
/// and the name, with the version and variant bits set; in text form.
pub(crate) fn uuid5(namespace: &[u8; 16], name: &str) -> String {
    let digest = Sha1::new()
        .chain_update(namespace)
        .chain_update(name.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0F) | 0x50;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The compact IRI of a node: `kb:<Kind>-<uuid5(NAMESPACE, name)>`.
fn iri(kind: &str, name: &str) -> String {
    format!("kb:{kind}-{}", uuid5(&NAMESPACE, name))
}

fn reference(id: &str) -> Value {
    json!({ "@id": id })
}

fn date_time(ms: u64) -> Value {
    json!({ "@type": "xsd:dateTime", "@value": iso_millis(ms) })
}

/// An external reference to something in the Custodia record.
fn external(owner: &str, context: &str, identifier: &str) -> Value {
    json!([{
        "@id": iri("ExternalReference", &format!("{owner}/reference")),
        "@type": "uco-core:ExternalReference",
        "uco-core:definingContext": context,
        "uco-core:externalIdentifier": identifier,
    }])
}

const ENTRY_CONTEXT: &str =
    "Custodia entry id: SHA-256 of the exact signed COSE_Sign1 bytes of the entry";
const CASE_CONTEXT: &str = "Custodia case id: the entry id of the case's case-opened entry";
const AGENCY_CONTEXT: &str = "Custodia agency id: the agency's Ed25519 public key";
const ITEM_CONTEXT: &str = "Custodia evidence item id (UUID)";

/// An item as its provenance records name it.
#[derive(Clone)]
struct Subject {
    /// The File node.
    file: String,
    /// Its exhibit number.
    exhibit: Option<String>,
    /// The exhibit number of the item it was derived from (or that item's
    /// root), for a derived item.
    root: Option<String>,
}

/// Where an item's custody chain stands while the entries are walked.
struct Chain {
    subject: Subject,
    /// Its latest provenance record.
    record: String,
    /// The action that produced it.
    action: String,
}

/// The document under construction: nodes in the order they are first
/// met, each once.
struct Graph<'a> {
    state: &'a CaseState,
    names: &'a BTreeMap<AgencyId, String>,
    nodes: Vec<Value>,
    ids: BTreeSet<String>,
    authorizations: Vec<String>,
    chains: BTreeMap<ItemId, Chain>,
    /// Custody events and notes about items whose registration this node
    /// was not shown (so there is no File to attach them to).
    skipped: usize,
}

impl Graph<'_> {
    fn add(&mut self, node: Value) {
        if let Some(id) = node.get("@id").and_then(Value::as_str) {
            if self.ids.insert(id.to_owned()) {
                self.nodes.push(node);
            }
        }
    }

    fn name(&self, agency: &AgencyId) -> String {
        self.state
            .agency_name(agency)
            .map(str::to_owned)
            .or_else(|| self.names.get(agency).cloned())
            .unwrap_or_else(|| format!("agency {}", agency.fingerprint()))
    }

    /// The agency's Organization node (added on first use).
    fn organization(&mut self, agency: &AgencyId) -> String {
        let key = agency.to_hex();
        let id = iri("Organization", &format!("agency/{key}"));
        if !self.ids.contains(&id) {
            let mut text = format!("Fingerprint {}", agency.fingerprint());
            if let Some(m) = self.state.members.get(agency) {
                text.push_str(&format!(
                    "; country {}; role in the case: {}",
                    m.country,
                    m.role.as_str()
                ));
                if let Some(r) = m.removed_by {
                    text.push_str(&format!("; removed from the case by entry {r}"));
                }
            }
            text.push('.');
            self.add(json!({
                "@id": id,
                "@type": "uco-identity:Organization",
                "uco-core:name": self.name(agency),
                "uco-core:description": text,
                "uco-core:externalReference": external(&id, AGENCY_CONTEXT, &key),
            }));
        }
        id
    }

    /// A person named in an entry, scoped to the agency that named them.
    fn person(&mut self, agency: &AgencyId, name: &str) -> String {
        let id = iri("Person", &format!("person/{}/{name}", agency.to_hex()));
        self.add(json!({
            "@id": id,
            "@type": "uco-identity:Person",
            "uco-core:name": name,
            "uco-core:description": format!("Named by {} in the Custodia record.", self.name(agency)),
        }));
        id
    }

    fn tool(&mut self, name: &str) -> String {
        let id = iri("Tool", &format!("tool/{name}"));
        self.add(json!({ "@id": id, "@type": "uco-tool:Tool", "uco-core:name": name }));
        id
    }

    fn location(&mut self, name: &str) -> String {
        let id = iri("Location", &format!("location/{name}"));
        self.add(json!({ "@id": id, "@type": "uco-location:Location", "uco-core:name": name }));
        id
    }

    fn authorization(&mut self, text: &str) -> String {
        let id = iri("Authorization", &format!("authorization/{text}"));
        if !self.ids.contains(&id) {
            self.authorizations.push(id.clone());
        }
        self.add(json!({
            "@id": id,
            "@type": "case-investigation:Authorization",
            "uco-core:name": text,
            "case-investigation:authorizationIdentifier": [text],
        }));
        id
    }

    /// How the record marks an entry afterwards (retraction), as a sentence.
    fn retraction(&self, entry: &EntryId) -> String {
        match self.state.retracted.get(entry) {
            Some((by, reason)) => {
                format!(" Retracted by its author in entry {by}: {reason}.")
            }
            None => String::new(),
        }
    }

    /// A provenance record of an item after a step.
    fn record(
        &mut self,
        s: &Subject,
        step: &EntryId,
        author: &str,
        time: u64,
        state_text: String,
    ) -> String {
        let id = iri("ProvenanceRecord", &format!("entry/{step}/record"));
        let mut node = Map::new();
        node.insert("@id".into(), json!(id));
        node.insert("@type".into(), json!("case-investigation:ProvenanceRecord"));
        node.insert("uco-core:description".into(), json!(state_text));
        if let Some(x) = &s.exhibit {
            node.insert("case-investigation:exhibitNumber".into(), json!(x));
        }
        if let Some(r) = &s.root {
            node.insert("case-investigation:rootExhibitNumber".into(), json!([r]));
        }
        node.insert("uco-core:object".into(), json!([reference(&s.file)]));
        node.insert("uco-core:createdBy".into(), reference(author));
        node.insert("uco-core:objectCreatedTime".into(), date_time(time));
        self.add(Value::Object(node));
        id
    }

    fn register(&mut self, entry: &Entry, r: &EvidenceRegistered) {
        let p = entry.payload();
        let step = entry.id();
        let item = r.item.to_uuid_string();
        let file = iri("File", &format!("item/{item}"));
        let org = self.organization(&p.author);
        let who = self.name(&p.author);
        let source = r
            .derived_from
            .and_then(|s| self.chains.get(&s))
            .map(|c| c.subject.clone());

        let label = r.exhibit.clone().unwrap_or_else(|| format!("item {item}"));
        let mut f = Map::new();
        f.insert("@id".into(), json!(file));
        f.insert("@type".into(), json!("uco-observable:File"));
        f.insert("uco-core:name".into(), json!(label));
        if let Some(d) = &r.description {
            f.insert("uco-core:description".into(), json!(d));
        }
        f.insert(
            "uco-core:hasFacet".into(),
            json!([
                {
                    "@id": iri("FileFacet", &format!("item/{item}/file")),
                    "@type": "uco-observable:FileFacet",
                    "uco-observable:sizeInBytes": r.size,
                },
                {
                    "@id": iri("ContentDataFacet", &format!("item/{item}/content")),
                    "@type": "uco-observable:ContentDataFacet",
                    "uco-observable:sizeInBytes": r.size,
                    "uco-observable:mimeType": [r.media_type],
                    "uco-observable:hash": hashes(&item, &r.digests),
                }
            ]),
        );
        if let Some(src) = &source {
            f.insert(
                "case-investigation:wasDerivedFrom".into(),
                json!([reference(&src.file)]),
            );
        }
        f.insert(
            "uco-core:externalReference".into(),
            external(&file, ITEM_CONTEXT, &item),
        );
        self.add(Value::Object(f));

        let mut text = format!(
            "{who} registered {label} (SHA-256 {}) in the Custodia record",
            hex::encode(r.digests.sha256)
        );
        if r.acquired.by != who {
            text.push_str(&format!("; acquired by {}", r.acquired.by));
        }
        if let Some(m) = &r.acquired.method {
            text.push_str(&format!("; method: {m}"));
        }
        if let Some(a) = &r.authority {
            text.push_str(&format!("; authority: {a}"));
        }
        if let Some(d) = r.derived_from {
            text.push_str(&format!("; derived from item {}", d.to_uuid_string()));
        }
        text.push_str(&format!(". Custodia entry {step}."));
        text.push_str(&self.retraction(&step));

        let mut participants = Vec::new();
        if r.acquired.by != who {
            participants.push(reference(&self.person(&p.author, &r.acquired.by)));
        }
        if let Some(a) = &r.authority {
            self.authorization(a);
        }
        let (root, objects) = match &source {
            Some(src) => (
                src.root.clone().or_else(|| src.exhibit.clone()),
                vec![reference(&file), reference(&src.file)],
            ),
            None => (None, vec![reference(&file)]),
        };
        let subject = Subject {
            file,
            exhibit: r.exhibit.clone(),
            root,
        };
        let record = self.record(
            &subject,
            &step,
            &org,
            p.time,
            format!("{label} as registered by {who}, who holds it."),
        );
        let action = iri("InvestigativeAction", &format!("entry/{step}/action"));
        let mut a = action_node(&action, "evidence-registered", text, r.acquired.at, &org);
        if !participants.is_empty() {
            a.insert("uco-action:participant".into(), json!(participants));
        }
        if let Some(t) = &r.acquired.tool {
            a.insert(
                "uco-action:instrument".into(),
                json!([reference(&self.tool(t))]),
            );
        }
        if let Some(l) = &r.acquired.place {
            a.insert(
                "uco-action:location".into(),
                json!([reference(&self.location(l))]),
            );
        }
        a.insert("uco-action:object".into(), json!(objects));
        a.insert("uco-action:result".into(), json!([reference(&record)]));
        a.insert(
            "uco-core:externalReference".into(),
            external(&action, ENTRY_CONTEXT, &step.to_hex()),
        );
        self.add(Value::Object(a));
        self.chains.insert(
            r.item,
            Chain {
                subject,
                record,
                action,
            },
        );
    }

    fn custody(
        &mut self,
        entry: &Entry,
        ev: &CustodyEvent,
        transfers: &BTreeMap<EntryId, AgencyId>,
    ) {
        let p = entry.payload();
        let step = entry.id();
        let Some(chain) = self.chains.get(&ev.item) else {
            self.skipped += 1;
            return;
        };
        let (subject, prev_record, prev_action) = (
            chain.subject.clone(),
            chain.record.clone(),
            chain.action.clone(),
        );
        let label = subject
            .exhibit
            .clone()
            .unwrap_or_else(|| format!("item {}", ev.item.to_uuid_string()));
        let org = self.organization(&p.author);
        let who = self.name(&p.author);
        let mut participants = Vec::new();
        let (mut text, after) = match ev.action {
            CustodyAction::Transferred => {
                let to = ev
                    .to
                    .map_or_else(|| "another agency".into(), |t| self.name(&t));
                if let Some(t) = ev.to {
                    participants.push(reference(&self.organization(&t)));
                }
                (
                    format!("{who} transferred {label} to {to}"),
                    format!("{label} in transit from {who} to {to}; {who} remains accountable until a receipt."),
                )
            }
            CustodyAction::Received => {
                let from = ev.transfer.and_then(|t| transfers.get(&t)).copied();
                let from_name = from.map_or_else(|| "the sender".into(), |f| self.name(&f));
                if let Some(f) = from {
                    participants.push(reference(&self.organization(&f)));
                }
                let transfer = ev
                    .transfer
                    .map(|t| format!(" (transfer entry {t})"))
                    .unwrap_or_default();
                if ev.accepted == Some(false) {
                    (
                        format!(
                            "{who} rejected the transfer of {label} from {from_name}{transfer}"
                        ),
                        format!("{label} held by {from_name}: {who} rejected the transfer."),
                    )
                } else {
                    (
                        format!("{who} received {label} from {from_name}{transfer}"),
                        format!("{label} held by {who}."),
                    )
                }
            }
            CustodyAction::Destroyed => (
                format!("{who} destroyed {label}"),
                format!("{label} destroyed by {who}; its custody ends."),
            ),
            CustodyAction::Returned => (
                format!("{who} returned {label} to its owner"),
                format!("{label} returned to its owner by {who}."),
            ),
            action => (
                format!("{who} recorded: {label} {}", action.as_str()),
                format!("{label} {} by {who}, who holds it.", action.as_str()),
            ),
        };
        if let Some(a) = &ev.actor {
            participants.push(reference(&self.person(&p.author, a)));
        }
        for (what, v) in [("purpose", &ev.purpose), ("reason", &ev.reason)] {
            if let Some(v) = v {
                text.push_str(&format!("; {what}: {v}"));
            }
        }
        match ev.digest_matched {
            Some(true) => text.push_str("; the digests observed matched the registered ones"),
            Some(false) => {
                text.push_str("; the digests observed did NOT match the registered ones")
            }
            None => {}
        }
        let copy = ev
            .copy
            .and_then(|c| self.chains.get(&c))
            .map(|c| c.subject.file.clone());
        if let Some(c) = &copy {
            self.derived(c, &subject.file);
        }
        if let Some(c) = ev.copy {
            text.push_str(&format!("; the copy is item {}", c.to_uuid_string()));
        }
        text.push_str(&format!(". Custodia entry {step}."));
        text.push_str(&self.retraction(&step));

        let record = self.record(&subject, &step, &org, p.time, after);
        let action = iri("InvestigativeAction", &format!("entry/{step}/action"));
        let mut a = action_node(
            &action,
            &format!("custody-{}", ev.action.as_str()),
            text,
            p.time,
            &org,
        );
        if !participants.is_empty() {
            participants.dedup();
            a.insert("uco-action:participant".into(), json!(participants));
        }
        if let Some(t) = &ev.tool {
            a.insert(
                "uco-action:instrument".into(),
                json!([reference(&self.tool(t))]),
            );
        }
        if let Some(l) = &ev.place {
            a.insert(
                "uco-action:location".into(),
                json!([reference(&self.location(l))]),
            );
        }
        a.insert("uco-action:object".into(), json!([reference(&prev_record)]));
        let mut results = vec![reference(&record)];
        if let Some(c) = copy {
            results.push(reference(&c));
        }
        a.insert("uco-action:result".into(), json!(results));
        a.insert(
            "case-investigation:wasInformedBy".into(),
            json!([reference(&prev_action)]),
        );
        a.insert(
            "uco-core:externalReference".into(),
            external(&action, ENTRY_CONTEXT, &step.to_hex()),
        );
        self.add(Value::Object(a));
        if let Some(c) = self.chains.get_mut(&ev.item) {
            c.record = record;
            c.action = action;
        }
    }

    /// Records that the File `copy` was derived from the File `source`,
    /// unless its registration already said so.
    fn derived(&mut self, copy: &str, source: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n["@id"] == copy)
            .and_then(Value::as_object_mut);
        if let Some(n) = node {
            n.entry("case-investigation:wasDerivedFrom")
                .or_insert_with(|| json!([reference(source)]));
        }
    }

    fn note(&mut self, entry: &Entry, n: &Note, investigation: &str) {
        let p = entry.payload();
        let step = entry.id();
        let object = match n.item {
            Some(i) => match self.chains.get(&i) {
                Some(c) => c.subject.file.clone(),
                None => {
                    self.skipped += 1;
                    return;
                }
            },
            None => investigation.to_owned(),
        };
        let org = self.organization(&p.author);
        let id = iri("Annotation", &format!("entry/{step}/note"));
        self.add(json!({
            "@id": id,
            "@type": "uco-core:Annotation",
            "uco-core:statement": [n.text],
            "uco-core:description": format!("Note by {}. Custodia entry {step}.{}", self.name(&p.author), self.retraction(&step)),
            "uco-core:object": [reference(&object)],
            "uco-core:createdBy": reference(&org),
            "uco-core:objectCreatedTime": date_time(p.time),
            "uco-core:externalReference": external(&id, ENTRY_CONTEXT, &step.to_hex()),
        }));
    }
}

fn action_node(
    id: &str,
    name: &str,
    text: String,
    time: u64,
    performer: &str,
) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("@id".into(), json!(id));
    a.insert(
        "@type".into(),
        json!("case-investigation:InvestigativeAction"),
    );
    a.insert("uco-core:name".into(), json!(name));
    a.insert("uco-core:description".into(), json!(text));
    a.insert("uco-action:startTime".into(), date_time(time));
    a.insert("uco-action:performer".into(), reference(performer));
    a
}

/// The item's digests as `uco-types:Hash` nodes: SHA-256, then SHA-1 and
/// MD5 when registered.
fn hashes(item: &str, d: &Digests) -> Value {
    let mut out = vec![("SHA256", hex::encode(d.sha256))];
    if let Some(s) = d.sha1 {
        out.push(("SHA1", hex::encode(s)));
    }
    if let Some(m) = d.md5 {
        out.push(("MD5", hex::encode(m)));
    }
    Value::Array(
        out.into_iter()
            .map(|(method, value)| {
                json!({
                    "@id": iri("Hash", &format!("item/{item}/hash/{method}")),
                    "@type": "uco-types:Hash",
                    "uco-types:hashMethod": method,
                    "uco-types:hashValue": { "@type": "xsd:hexBinary", "@value": value },
                })
            })
            .collect(),
    )
}

/// The JSON-LD `@context` of an export.
fn context() -> Value {
    json!({
        "kb": KB,
        "case-investigation": "https://ontology.caseontology.org/case/investigation/",
        "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
        "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
        "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
        "uco-location": "https://ontology.unifiedcyberontology.org/uco/location/",
        "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
        "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
        "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
    })
}

/// The case's chain of custody as one CASE/UCO JSON-LD document.
///
/// `entries` are the case's entries this node holds, in store
/// (dependency) order, `state` the case state derived from them, and
/// `names` names for agencies the case itself does not name (the case's
/// own names win). With `items`, only those items, the custody events and
/// notes about them, and the agencies are exported. Custody events of
/// items whose registration this node was not shown are left out (the
/// investigation's description counts them). The output is a pure
/// function of the arguments: the same record gives the same document.
pub(crate) fn graph(
    entries: &[Entry],
    state: &CaseState,
    names: &BTreeMap<AgencyId, String>,
    items: Option<&BTreeSet<ItemId>>,
) -> Value {
    let case = state
        .case
        .or_else(|| entries.first().map(Entry::case_id))
        .unwrap_or(EntryId([0; 32]));
    let investigation = iri("Investigation", &format!("case/{case}"));
    let mut g = Graph {
        state,
        names,
        nodes: Vec::new(),
        ids: BTreeSet::from([investigation.clone()]),
        authorizations: Vec::new(),
        chains: BTreeMap::new(),
        skipped: 0,
    };
    for m in state.members.keys() {
        g.organization(m);
    }
    let mut opened_at = None;
    let mut transfers: BTreeMap<EntryId, AgencyId> = BTreeMap::new();
    let wanted = |i: &ItemId| items.is_none_or(|s| s.contains(i));
    for e in entries {
        match &e.payload().body {
            Body::CaseOpened(_) => opened_at = Some(e.payload().time),
            Body::EvidenceRegistered(r) => {
                // A second registration of the same id is a conflict; the
                // first accepted one is the item's record.
                let first = state
                    .items
                    .get(&r.item)
                    .is_some_and(|i| i.registered == e.id());
                if first && wanted(&r.item) {
                    g.register(e, r);
                }
            }
            Body::Custody(ev) => {
                if ev.action == CustodyAction::Transferred {
                    transfers.insert(e.id(), e.author());
                }
                if wanted(&ev.item) {
                    g.custody(e, ev, &transfers);
                }
            }
            // A note about the case itself goes with a whole-case export.
            Body::Note(n) if n.item.map_or(items.is_none(), |i| wanted(&i)) => {
                g.note(e, n, &investigation);
            }
            _ => {}
        }
    }

    let mut text = format!("Custodia case {case}; reference {}", state.reference);
    if let Some(j) = &state.jurisdiction {
        text.push_str(&format!("; jurisdiction {j}"));
    }
    if let Some(s) = items {
        text.push_str(&format!(
            "; export limited to {} of {} items",
            s.len(),
            state.items.len()
        ));
    }
    if !state.conflicts.is_empty() {
        text.push_str(&format!(
            "; the record reports {} conflict(s) (see `custodia case show`)",
            state.conflicts.len()
        ));
    }
    if !state.withheld.is_empty() {
        text.push_str(&format!(
            "; {} entries were withheld from the exporting node",
            state.withheld.len()
        ));
    }
    if g.skipped > 0 {
        text.push_str(&format!(
            "; {} entries about items whose registration the exporting node was not shown are not included",
            g.skipped
        ));
    }
    text.push('.');
    let mut inv = Map::new();
    inv.insert("@id".into(), json!(investigation));
    inv.insert("@type".into(), json!("case-investigation:Investigation"));
    inv.insert("uco-core:name".into(), json!(state.title));
    inv.insert("uco-core:description".into(), json!(text));
    inv.insert("case-investigation:investigationForm".into(), json!("case"));
    if let Some(t) = opened_at {
        inv.insert("uco-core:startTime".into(), date_time(t));
    }
    if !g.authorizations.is_empty() {
        let auth: Vec<Value> = g.authorizations.iter().map(|a| reference(a)).collect();
        inv.insert(
            "case-investigation:relevantAuthorization".into(),
            json!(auth),
        );
    }
    let objects: Vec<Value> = g
        .nodes
        .iter()
        .filter_map(|n| n.get("@id").and_then(Value::as_str))
        .map(reference)
        .collect();
    if !objects.is_empty() {
        inv.insert("uco-core:object".into(), json!(objects));
    }
    inv.insert(
        "uco-core:externalReference".into(),
        external(&investigation, CASE_CONTEXT, &case.to_hex()),
    );
    let mut nodes = vec![Value::Object(inv)];
    nodes.append(&mut g.nodes);
    json!({ "@context": context(), "@graph": nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodia_protocol::{
        Acquisition, CaseOpened, Identity, MemberAdded, Payload, Role, Tlp, Validator,
    };

    const T0: u64 = 1_795_000_000_000;

    /// The RFC 9562 name space for URLs.
    const NAMESPACE_URL: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ];

    struct Agency {
        id: Identity,
        seq: u64,
        prev: Option<EntryId>,
    }

    impl Agency {
        fn new(n: u8) -> Self {
            Agency {
                id: Identity::from_seed([n; 32]),
                seq: 0,
                prev: None,
            }
        }
        fn key(&self) -> AgencyId {
            self.id.agency()
        }
        fn sign(&mut self, p: Payload) -> Entry {
            let e = Entry::sign(&self.id, &p);
            self.seq += 1;
            self.prev = Some(e.id());
            e
        }
        fn say(&mut self, case: CaseId, refs: Vec<EntryId>, body: Body) -> Entry {
            let p = Payload {
                v: 1,
                keys: None,
                case: Some(case),
                author: self.key(),
                seq: self.seq,
                prev: self.prev,
                refs,
                time: T0 + 60_000 * self.seq,
                tlp: Tlp::Amber,
                to: None,
                body,
            };
            self.sign(p)
        }
    }

    use custodia_protocol::CaseId;

    fn registration(item: ItemId, exhibit: &str, derived_from: Option<ItemId>) -> Body {
        Body::EvidenceRegistered(EvidenceRegistered {
            item,
            exhibit: Some(exhibit.into()),
            digests: Digests {
                sha256: [0xA1; 32],
                sha1: derived_from.is_none().then_some([0xB2; 20]),
                md5: derived_from.is_none().then_some([0xC3; 16]),
            },
            size: 4096,
            media_type: "application/octet-stream".into(),
            description: Some("Seized phone, full image".into()),
            acquired: Acquisition {
                by: "Insp. Reyes".into(),
                at: T0,
                place: Some("Quezon City".into()),
                method: Some("seizure".into()),
                tool: Some("FTK Imager 4.7".into()),
            },
            authority: Some("Warrant 2026-17".into()),
            derived_from,
        })
    }

    /// Two agencies: Manila registers an item, examines, seals and
    /// transfers it to Berlin, which receives it, examines it, registers a
    /// copy, records the copy and writes a note.
    fn sample() -> (Vec<Entry>, Validator, [ItemId; 2]) {
        let (mut a, mut b) = (Agency::new(1), Agency::new(2));
        let genesis = a.sign(Payload::genesis(
            a.key(),
            T0,
            Tlp::Amber,
            CaseOpened {
                title: "Operation Lantern".into(),
                reference: "MCU-2026-0042".into(),
                jurisdiction: Some("PH".into()),
                name: "Manila Cybercrime Unit".into(),
                country: "PH".into(),
            },
        ));
        let case = genesis.id();
        let item = ItemId::new_v4([5; 16]);
        let copy = ItemId::new_v4([6; 16]);
        let mut es = vec![genesis];
        let mut push = |e: Entry| {
            es.push(e.clone());
            e
        };
        push(a.say(
            case,
            vec![],
            Body::MemberAdded(MemberAdded {
                agency: b.key(),
                name: "Berlin Forensics".into(),
                country: "DE".into(),
                role: Role::Examiner,
            }),
        ));
        push(a.say(case, vec![], registration(item, "EX-1", None)));
        let mut examined = CustodyEvent::new(item, CustodyAction::Examined);
        examined.digest_matched = Some(true);
        examined.tool = Some("X-Ways 21.3".into());
        examined.actor = Some("Insp. Reyes".into());
        push(a.say(case, vec![], Body::Custody(examined)));
        push(a.say(
            case,
            vec![],
            Body::Custody(CustodyEvent::new(item, CustodyAction::Sealed)),
        ));
        let mut transfer = CustodyEvent::new(item, CustodyAction::Transferred);
        transfer.to = Some(b.key());
        transfer.purpose = Some("forensic examination".into());
        let t = push(a.say(case, vec![], Body::Custody(transfer)));
        let mut receipt = CustodyEvent::new(item, CustodyAction::Received);
        receipt.transfer = Some(t.id());
        receipt.accepted = Some(true);
        receipt.place = Some("BKA lab, Wiesbaden".into());
        push(b.say(case, vec![t.id()], Body::Custody(receipt)));
        push(b.say(
            case,
            vec![],
            Body::Custody(CustodyEvent::new(item, CustodyAction::Examined)),
        ));
        push(b.say(case, vec![], registration(copy, "BKA-7", Some(item))));
        let mut copied = CustodyEvent::new(item, CustodyAction::Copied);
        copied.copy = Some(copy);
        push(b.say(case, vec![], Body::Custody(copied)));
        push(b.say(
            case,
            vec![],
            Body::Note(Note {
                text: "seal intact on arrival".into(),
                item: Some(item),
            }),
        ));
        let mut v = Validator::new();
        for e in &es {
            v.apply(e, T0 + 3_600_000).expect("a valid sample");
        }
        (es, v, [item, copy])
    }

    fn export(items: Option<&BTreeSet<ItemId>>) -> (Vec<Entry>, Value) {
        let (es, v, _) = sample();
        let g = graph(&es, v.state(), &BTreeMap::new(), items);
        (es, g)
    }

    fn nodes(g: &Value) -> &Vec<Value> {
        g["@graph"].as_array().expect("a @graph array")
    }

    fn of_type<'a>(g: &'a Value, ty: &str) -> Vec<&'a Value> {
        nodes(g).iter().filter(|n| n["@type"] == ty).collect()
    }

    fn by_id<'a>(g: &'a Value, id: &Value) -> &'a Value {
        nodes(g)
            .iter()
            .find(|n| n["@id"] == *id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Every `@id` anywhere in the document, with whether it is a
    /// reference (a lone `@id`) or a node (with `@type`).
    fn ids(v: &Value, refs: &mut Vec<String>, defined: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(id)) = m.get("@id") {
                    if m.len() == 1 {
                        refs.push(id.clone());
                    } else {
                        assert!(m.contains_key("@type"), "{id} has no @type");
                        defined.push(id.clone());
                    }
                }
                m.values().for_each(|x| ids(x, refs, defined));
            }
            Value::Array(a) => a.iter().for_each(|x| ids(x, refs, defined)),
            _ => {}
        }
    }

    fn ends_with_uuid(id: &str) -> bool {
        let tail = &id[id.len().saturating_sub(36)..];
        let groups: Vec<&str> = tail.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        lens == [8, 4, 4, 4, 12]
            && groups.iter().all(|g| {
                g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            && (b'0'..=b'5').contains(&groups[2].as_bytes()[0])
            && matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b')
    }

    #[test]
    fn uuid5_matches_rfc_9562() {
        // Python: uuid.uuid5(uuid.NAMESPACE_URL, "urn:custodia:case-uco")
        assert_eq!(
            uuid5(&NAMESPACE_URL, "urn:custodia:case-uco"),
            "8da424da-335e-5975-9983-9c41e8b0064d"
        );
        assert_eq!(hex::encode(NAMESPACE), "8da424da335e597599839c41e8b0064d");
        // Python: uuid.uuid5(that, "test")
        assert_eq!(
            uuid5(&NAMESPACE, "test"),
            "4ecc46c7-f162-5e48-a137-720624eb1cae"
        );
    }

    #[test]
    fn the_sample_case_has_the_expected_nodes() {
        let (es, g) = export(None);
        assert_eq!(g["@context"]["kb"], KB);
        assert_eq!(of_type(&g, "case-investigation:Investigation").len(), 1);
        let orgs: Vec<&Value> = of_type(&g, "uco-identity:Organization");
        let mut names: Vec<&str> = orgs
            .iter()
            .filter_map(|o| o["uco-core:name"].as_str())
            .collect();
        names.sort();
        assert_eq!(names, ["Berlin Forensics", "Manila Cybercrime Unit"]);
        assert_eq!(of_type(&g, "uco-observable:File").len(), 2);
        // Registration, examined, sealed, transferred, received, examined,
        // copy registration, copied.
        let actions = of_type(&g, "case-investigation:InvestigativeAction");
        let mut action_names: Vec<&str> = actions
            .iter()
            .filter_map(|a| a["uco-core:name"].as_str())
            .collect();
        action_names.sort();
        assert_eq!(
            action_names,
            [
                "custody-copied",
                "custody-examined",
                "custody-examined",
                "custody-received",
                "custody-sealed",
                "custody-transferred",
                "evidence-registered",
                "evidence-registered"
            ]
        );
        assert_eq!(of_type(&g, "case-investigation:ProvenanceRecord").len(), 8);
        assert_eq!(of_type(&g, "uco-core:Annotation").len(), 1);
        assert_eq!(of_type(&g, "case-investigation:Authorization").len(), 1);
        assert_eq!(of_type(&g, "uco-tool:Tool").len(), 2);
        assert_eq!(of_type(&g, "uco-location:Location").len(), 2);
        // "Insp. Reyes" as named by each agency: two people, as far as the
        // record can tell.
        assert_eq!(of_type(&g, "uco-identity:Person").len(), 2);

        // Every custody and registration entry is tied back by its id.
        let text = g.to_string();
        for e in &es {
            if matches!(
                e.payload().body,
                Body::Custody(_) | Body::EvidenceRegistered(_) | Body::Note(_)
            ) {
                assert!(
                    text.contains(&format!("\"uco-core:externalIdentifier\":\"{}\"", e.id())),
                    "entry {} is not referenced",
                    e.id()
                );
            }
        }

        // The original item: three digests, exhibit number on its records.
        let item = of_type(&g, "uco-observable:File")
            .into_iter()
            .find(|f| f["uco-core:name"] == "EX-1")
            .expect("EX-1");
        let content = item["uco-core:hasFacet"]
            .as_array()
            .and_then(|f| {
                f.iter()
                    .find(|x| x["@type"] == "uco-observable:ContentDataFacet")
            })
            .expect("a content data facet");
        let hashes: Vec<(&str, &str)> = content["uco-observable:hash"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| {
                assert_eq!(h["uco-types:hashValue"]["@type"], "xsd:hexBinary");
                (
                    h["uco-types:hashMethod"].as_str().unwrap_or_default(),
                    h["uco-types:hashValue"]["@value"]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .collect();
        let (sha256, sha1, md5) = ("a1".repeat(32), "b2".repeat(20), "c3".repeat(16));
        assert_eq!(
            hashes,
            [
                ("SHA256", sha256.as_str()),
                ("SHA1", sha1.as_str()),
                ("MD5", md5.as_str())
            ]
        );
        let copy = of_type(&g, "uco-observable:File")
            .into_iter()
            .find(|f| f["uco-core:name"] == "BKA-7")
            .expect("BKA-7");
        assert_eq!(
            copy["case-investigation:wasDerivedFrom"][0]["@id"],
            item["@id"]
        );
    }

    #[test]
    fn each_action_takes_the_previous_record_and_yields_the_next() {
        let (_, g) = export(None);
        let actions = of_type(&g, "case-investigation:InvestigativeAction");
        let item = of_type(&g, "uco-observable:File")
            .into_iter()
            .find(|f| f["uco-core:name"] == "EX-1")
            .expect("EX-1")["@id"]
            .clone();
        // Walk EX-1's chain from its registration.
        let mut action = *actions
            .iter()
            .find(|a| {
                a["uco-core:name"] == "evidence-registered"
                    && a["uco-action:object"][0]["@id"] == item
            })
            .expect("the registration");
        let mut walked = vec![action["uco-core:name"].as_str().unwrap_or_default()];
        loop {
            let record = &action["uco-action:result"][0]["@id"];
            let r = by_id(&g, record);
            assert_eq!(r["case-investigation:exhibitNumber"], "EX-1");
            assert_eq!(r["uco-core:object"][0]["@id"], item);
            assert_eq!(r["uco-core:createdBy"], action["uco-action:performer"]);
            let next: Vec<&&Value> = actions
                .iter()
                .filter(|a| a["uco-action:object"][0]["@id"] == *record)
                .collect();
            match next.as_slice() {
                [] => break,
                [n] => {
                    assert_eq!(
                        n["case-investigation:wasInformedBy"][0]["@id"],
                        action["@id"]
                    );
                    action = n;
                    walked.push(action["uco-core:name"].as_str().unwrap_or_default());
                }
                _ => panic!("the chain forks at {record}"),
            }
        }
        assert_eq!(
            walked,
            [
                "evidence-registered",
                "custody-examined",
                "custody-sealed",
                "custody-transferred",
                "custody-received",
                "custody-examined",
                "custody-copied"
            ]
        );
        // The receipt is performed by Berlin, with Manila as participant.
        let received = actions
            .iter()
            .find(|a| a["uco-core:name"] == "custody-received")
            .expect("the receipt");
        let berlin = by_id(&g, &received["uco-action:performer"]["@id"]);
        assert_eq!(berlin["uco-core:name"], "Berlin Forensics");
        let manila = by_id(&g, &received["uco-action:participant"][0]["@id"]);
        assert_eq!(manila["uco-core:name"], "Manila Cybercrime Unit");
    }

    #[test]
    fn ids_are_deterministic_end_in_a_uuid_and_every_reference_resolves() {
        let (es, g) = export(None);
        assert_eq!(g, export(None).1, "the same record gives the same document");
        let mut refs = Vec::new();
        let mut defined = Vec::new();
        ids(&g, &mut refs, &mut defined);
        for id in refs.iter().chain(&defined) {
            assert!(id.starts_with("kb:"), "{id}");
            assert!(ends_with_uuid(id), "{id} does not end in a UUID");
        }
        let unique: BTreeSet<&String> = defined.iter().collect();
        assert_eq!(unique.len(), defined.len(), "a node is defined twice");
        for r in &refs {
            assert!(unique.contains(r), "{r} is referenced but not in the graph");
        }
        // An action's IRI depends on its entry id only.
        let reg = es
            .iter()
            .find(|e| matches!(e.payload().body, Body::EvidenceRegistered(_)))
            .expect("a registration");
        let want = format!(
            "kb:InvestigativeAction-{}",
            uuid5(&NAMESPACE, &format!("entry/{}/action", reg.id()))
        );
        assert!(defined.contains(&want));
    }

    #[test]
    fn an_export_limited_to_items_leaves_the_others_out() {
        let (_, _, [item, copy]) = sample();
        let only = BTreeSet::from([item]);
        let (_, g) = export(Some(&only));
        let files = of_type(&g, "uco-observable:File");
        assert_eq!(files.len(), 1);
        let copy_file = iri("File", &format!("item/{}", copy.to_uuid_string()));
        assert!(!g.to_string().contains(&copy_file));
        assert_eq!(
            of_type(&g, "case-investigation:InvestigativeAction").len(),
            7
        );
        let mut refs = Vec::new();
        let mut defined = Vec::new();
        ids(&g, &mut refs, &mut defined);
        for r in &refs {
            assert!(defined.contains(r), "{r} dangles");
        }
        assert!(g["@graph"][0]["uco-core:description"]
            .as_str()
            .is_some_and(|d| d.contains("limited to 1 of 2 items")));
    }
}
