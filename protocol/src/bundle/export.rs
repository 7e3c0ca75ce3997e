//! Writing a bundle from what a node holds of a case, whole or for chosen
//! items (selective disclosure, SPEC.md §10.4).

use std::collections::{HashMap, HashSet};

use crate::body::Body;
use crate::entry::Entry;
use crate::equivocation::EquivocationProof;
use crate::identity::Identity;
use crate::ids::{EntryId, ItemId};
use crate::keylog::KeyLog;
use crate::state::WithheldPosition;
use crate::validate::Validator;

use super::{verify, write, Bundle, BundleAgency, Element, Header};

/// Why a bundle cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The validator holds no case.
    #[error("the case has not been opened")]
    NoCase,
    /// The exporting agency is not a member: its bundle would fail B4.
    #[error("this agency is not a member of the case, so it cannot export it")]
    NotAMember,
    /// An item asked for is not registered in the case.
    #[error("item {0} is not registered in this case")]
    UnknownItem(String),
    /// The selective bundle does not verify (a writer's causal links go
    /// through entries that the selection withholds).
    #[error("the bundle for these items would not verify ({0}); export the whole case instead")]
    DoesNotVerify(String),
    /// A record the validator kept out of memory could not be read back
    /// (SPEC.md §8.7): what to carry, and what to withhold, cannot be
    /// known, so nothing is exported.
    #[error("what this node keeps of the case could not be read back ({0}); nothing was exported")]
    RecordsUnavailable(String),
}

/// What a selective export discloses.
struct Selection {
    /// The items asked for.
    chosen: HashSet<ItemId>,
    /// The items asked for and every item they derive from.
    registered: HashSet<ItemId>,
}

impl Selection {
    fn new(entries: &[&Entry], items: &[ItemId]) -> Selection {
        let parents: HashMap<ItemId, ItemId> = entries
            .iter()
            .filter_map(|e| match &e.payload().body {
                Body::EvidenceRegistered(r) => r.derived_from.map(|d| (r.item, d)),
                _ => None,
            })
            .collect();
        let chosen: HashSet<ItemId> = items.iter().copied().collect();
        let mut registered = chosen.clone();
        for i in items {
            let mut at = *i;
            while let Some(p) = parents.get(&at) {
                if !registered.insert(*p) {
                    break;
                }
                at = *p;
            }
        }
        Selection { chosen, registered }
    }

    /// Whether an entry is needed to establish the chosen items' custody,
    /// by its body alone (retractions are decided by their target).
    fn wants(&self, body: &Body) -> bool {
        match body {
            Body::CaseOpened(_) | Body::MemberAdded(_) | Body::MemberRemoved(_) => true,
            Body::EvidenceRegistered(r) => self.registered.contains(&r.item),
            Body::Custody(ev) => self.chosen.contains(&ev.item),
            _ => false,
        }
    }
}

/// The entries a selective export of `items` discloses (SPEC.md §10.4):
/// the genesis, every membership entry, the registrations of the items and
/// of every item they derive from, the items' custody events, and the
/// retractions of disclosed entries. `entries` is the case in dependency
/// order.
pub fn disclosure(entries: &[&Entry], items: &[ItemId]) -> HashSet<EntryId> {
    let sel = Selection::new(entries, items);
    let mut out = HashSet::new();
    for e in entries {
        let keep = match &e.payload().body {
            Body::Retracted(r) => out.contains(&r.entry),
            body => sel.wants(body),
        };
        if keep {
            out.insert(e.id());
        }
    }
    out
}

/// Exports a case as a signed bundle.
///
/// `case` is the validated case; `rows` are its positions in the node's
/// storage order (entry bytes, or markers for positions the node holds
/// only as markers); `proofs` the equivocation proofs the node holds;
/// `key_logs` the key logs the node holds of the case's agencies (SPEC.md
/// §3.4): the bundle (format version 2, or 3 when a log holds statements
/// its recoveries superseded, [`KeyLog::with_superseded`]) carries each one
/// whose agency is in the case's agencies list, ascending by agency, once
/// (any other log is left out, not an error). With
/// `items`, only what establishes those items' custody is disclosed and
/// everything else becomes a withheld marker; the result is then verified
/// before it is returned.
pub fn export(
    signer: &Identity,
    case: &Validator,
    rows: &[Element<'_>],
    proofs: &[EquivocationProof],
    key_logs: &[KeyLog],
    exported_at: u64,
    items: Option<&[ItemId]>,
) -> Result<Vec<u8>, ExportError> {
    let case_id = case.case().ok_or(ExportError::NoCase)?;
    let state = case.state();
    if !state.members.contains_key(&signer.agency()) {
        return Err(ExportError::NotAMember);
    }
    let items = match items {
        Some(list) => {
            let mut list = list.to_vec();
            list.sort();
            list.dedup();
            if let Some(missing) = list.iter().find(|i| !state.items.contains_key(i)) {
                return Err(ExportError::UnknownItem(missing.to_uuid_string()));
            }
            (!list.is_empty()).then_some(list)
        }
        None => None,
    };
    // The entries the validator accepted, decoded from the rows (a node's
    // validator keeps no entry). Signatures were checked when stored.
    let decoded: Vec<Option<Entry>> = rows
        .iter()
        .map(|r| match r {
            Element::Entry(b) => {
                let accepted = case.meta(&EntryId::of(b)).is_some_and(|m| m.time.is_some());
                accepted
                    .then(|| Entry::decode_unverified(b).ok())
                    .flatten()
                    .map(|u| u.assume_verified())
            }
            Element::Withheld(_) => None,
        })
        .collect();
    let keep = items.as_ref().map(|list| {
        let entries: Vec<&Entry> = decoded.iter().flatten().collect();
        disclosure(&entries, list)
    });
    let elements: Vec<Element<'_>> = rows
        .iter()
        .zip(&decoded)
        .map(|(row, entry)| match (row, entry, &keep) {
            (Element::Entry(_), Some(e), Some(keep)) if !keep.contains(&e.id()) => {
                Element::Withheld(WithheldPosition {
                    author: e.author(),
                    seq: e.seq(),
                    id: e.id(),
                })
            }
            (row, _, _) => *row,
        })
        .collect();
    let elements = dependency_order(elements, &decoded, case);
    let proofs: Vec<EquivocationProof> = match &items {
        None => proofs.to_vec(),
        Some(list) => {
            let entries: Vec<&Entry> = decoded.iter().flatten().collect();
            let sel = Selection::new(&entries, list);
            proofs
                .iter()
                .filter(|p| {
                    [&p.0, &p.1]
                        .iter()
                        .all(|b| Entry::decode(b).is_ok_and(|e| sel.wants(&e.payload().body)))
                })
                .cloned()
                .collect()
        }
    };
    let header = Header {
        case: case_id,
        items: items.clone(),
        proofs,
        agencies: state
            .members
            .values()
            .map(|m| BundleAgency {
                agency: m.agency,
                name: m.name.clone(),
                country: m.country.clone(),
            })
            .collect(),
        exported_at,
        key_histories: carried(state, key_logs).any(|l| !l.superseded().is_empty()),
        keys: Some(carried_logs(state, key_logs)),
    };
    // Every record read to choose and place the elements was read above
    // (and by the caller, through the same validator).
    if let Some(why) = case.failure() {
        return Err(ExportError::RecordsUnavailable(why.to_string()));
    }
    let bytes = write(signer, &header, &elements);
    if items.is_some() {
        let check = Bundle::decode(&bytes)
            .map(|b| verify(&b, None))
            .map_err(|e| ExportError::DoesNotVerify(e.to_string()))?;
        if let Some(p) = check.problems.first() {
            return Err(ExportError::DoesNotVerify(format!(
                "element {}: {} ({})",
                p.index.map_or_else(|| "-".into(), |i| i.to_string()),
                p.detail,
                p.rule
            )));
        }
    }
    Ok(bytes)
}

/// The key logs a bundle carries: those of the agencies in the case's
/// agencies list, ascending by agency, one per agency.
fn carried<'a>(
    state: &'a crate::state::CaseState,
    key_logs: &'a [KeyLog],
) -> impl Iterator<Item = &'a KeyLog> {
    let mut logs: Vec<&KeyLog> = key_logs
        .iter()
        .filter(|l| state.members.contains_key(&l.agency()))
        .collect();
    logs.sort_by_key(|l| l.agency());
    logs.dedup_by_key(|l| l.agency());
    logs.into_iter()
}

/// The key logs a bundle carries (SPEC.md §10.1 `"keys"`), each as its
/// statements' exact bytes: in log order, or, for a log that holds
/// statements its recoveries superseded ([`KeyLog::with_superseded`]), as
/// its key history (a version 3 bundle).
fn carried_logs(state: &crate::state::CaseState, key_logs: &[KeyLog]) -> Vec<Vec<Vec<u8>>> {
    carried(state, key_logs)
        .map(|l| l.history().iter().map(|s| s.bytes().to_vec()).collect())
        .collect()
}

/// Puts elements in a dependency order: each after everything it names
/// (prev, refs, witness heads, the transfer it answers, its target), each
/// marker after its chain's previous position. Storage order nearly always
/// is one already; a revealed entry keeps its marker's place and may name
/// entries stored after it (SPEC.md §9.13), and is moved after them.
fn dependency_order<'a>(
    elements: Vec<Element<'a>>,
    decoded: &[Option<Entry>],
    case: &Validator,
) -> Vec<Element<'a>> {
    let id_of = |e: &Element<'_>| match e {
        Element::Entry(b) => EntryId::of(b),
        Element::Withheld(w) => w.id,
    };
    let ids: Vec<EntryId> = elements.iter().map(id_of).collect();
    let present: HashSet<EntryId> = ids.iter().copied().collect();
    let deps = |i: usize| -> Vec<EntryId> {
        match &decoded[i] {
            Some(e) => {
                let p = e.payload();
                let mut d: Vec<EntryId> = p.prev.iter().chain(&p.refs).copied().collect();
                match &p.body {
                    Body::Witness(w) => d.extend(w.heads.iter().map(|h| h.2)),
                    Body::Custody(ev) => d.extend(ev.transfer),
                    Body::Retracted(r) => d.push(r.entry),
                    Body::HandlingChanged(h) => d.push(h.entry),
                    _ => {}
                }
                d
            }
            None => match elements[i] {
                Element::Withheld(w) if w.seq > 0 => {
                    case.at(&w.author, w.seq - 1).into_iter().collect()
                }
                _ => Vec::new(),
            },
        }
    };
    let mut emitted: HashSet<EntryId> = HashSet::with_capacity(ids.len());
    let mut waiting: HashMap<EntryId, Vec<usize>> = HashMap::new();
    let mut order: Vec<usize> = Vec::with_capacity(ids.len());
    for start in 0..elements.len() {
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if emitted.contains(&ids[i]) {
                continue;
            }
            let missing = deps(i)
                .into_iter()
                .find(|d| present.contains(d) && !emitted.contains(d) && *d != ids[i]);
            match missing {
                Some(d) => waiting.entry(d).or_default().push(i),
                None => {
                    emitted.insert(ids[i]);
                    order.push(i);
                    if let Some(w) = waiting.remove(&ids[i]) {
                        stack.extend(w);
                    }
                }
            }
        }
    }
    // Anything still waiting (impossible for a validated case) keeps its
    // storage place at the end rather than being dropped.
    let mut rest: Vec<usize> = waiting.into_values().flatten().collect();
    rest.sort_unstable();
    rest.dedup();
    order.extend(rest.into_iter().filter(|i| !emitted.contains(&ids[*i])));
    let mut slots: Vec<Option<Element<'a>>> = elements.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
