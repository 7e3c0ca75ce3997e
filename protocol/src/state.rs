//! Case state: a pure derivation over validated entries (SPEC.md §11).
//!
//! The [`crate::Validator`] folds every accepted entry into a [`CaseState`];
//! the state is what people ask about — who is in the case, which items
//! exist, who holds each one, which transfers are open, what conflicts and
//! withheld positions there are.

use std::collections::BTreeMap;

use crate::body::{Body, CustodyAction, Digests, Head, Role};
use crate::entry::Entry;
use crate::equivocation::EquivocationProof;
use crate::ids::{AgencyId, CaseId, EntryId, ItemId};
use crate::tlp::Tlp;

/// A member agency as the case knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its key.
    pub agency: AgencyId,
    /// Its name.
    pub name: String,
    /// Its country.
    pub country: String,
    /// Its role.
    pub role: Role,
    /// The entry that admitted it (the genesis for the lead).
    pub added_by: EntryId,
    /// The entry that removed it, if any.
    pub removed_by: Option<EntryId>,
}

impl Member {
    /// Whether the agency is a member now (not removed).
    pub fn is_active(&self) -> bool {
        self.removed_by.is_none()
    }
}

/// An evidence item and its custody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id.
    pub id: ItemId,
    /// The registering entry.
    pub registered: EntryId,
    /// Who registered it.
    pub registered_by: AgencyId,
    /// Exhibit number.
    pub exhibit: Option<String>,
    /// Digests.
    pub digests: Digests,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Description.
    pub description: Option<String>,
    /// The item it derives from.
    pub derived_from: Option<ItemId>,
    /// The current holder.
    pub holder: AgencyId,
    /// The open transfer, if the item is in transit.
    pub open_transfer: Option<EntryId>,
    /// Whether it was destroyed.
    pub destroyed: bool,
    /// Whether part of its history was withheld from this node.
    pub incomplete: bool,
    /// Its custody events, in the order they were accepted.
    pub events: Vec<EntryId>,
}

/// A transfer awaiting its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The transferred event.
    pub entry: EntryId,
    /// The item.
    pub item: ItemId,
    /// The sender.
    pub from: AgencyId,
    /// The addressee.
    pub to: AgencyId,
    /// The sender's asserted time.
    pub time: u64,
}

/// Something two records disagree about. Conflicts are reported, never
/// resolved silently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// An author signed two entries for one position.
    Equivocation {
        /// The author.
        author: AgencyId,
        /// The position.
        seq: u64,
        /// The proof, when both entries were at hand.
        proof: Option<EquivocationProof>,
    },
    /// A custody event recorded that the observed digest did not match.
    DigestMismatch {
        /// The event.
        entry: EntryId,
        /// The item.
        item: ItemId,
        /// Who observed it.
        author: AgencyId,
    },
    /// Two concurrent registrations of the same item id: the first accepted
    /// stays the item's record.
    DuplicateRegistration {
        /// The item.
        item: ItemId,
        /// The later registration.
        entry: EntryId,
    },
    /// Two items were registered with the same SHA-256.
    DuplicateDigest {
        /// The first item.
        first: ItemId,
        /// The later item.
        second: ItemId,
        /// The registering entry of the later item.
        entry: EntryId,
    },
}

/// A position whose content this node was not shown. On the wire it is
/// the array `[author, seq, id]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "(AgencyId, u64, EntryId)", from = "(AgencyId, u64, EntryId)")]
pub struct WithheldPosition {
    /// The author.
    pub author: AgencyId,
    /// The sequence number.
    pub seq: u64,
    /// The entry id.
    pub id: EntryId,
}

/// The latest witness of one agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessRecord {
    /// The witness entry.
    pub entry: EntryId,
    /// Its asserted time.
    pub time: u64,
    /// The heads it countersigned.
    pub heads: Vec<Head>,
}

/// The derived state of one case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseState {
    /// The case id (id of the genesis).
    pub case: Option<CaseId>,
    /// Title.
    pub title: String,
    /// The opening agency's reference.
    pub reference: String,
    /// Jurisdiction.
    pub jurisdiction: Option<String>,
    /// Handling label of the genesis.
    pub tlp: Option<Tlp>,
    /// The members, current and removed.
    pub members: BTreeMap<AgencyId, Member>,
    /// Evidence items.
    pub items: BTreeMap<ItemId, Item>,
    /// Open transfers by transfer entry.
    pub open_transfers: BTreeMap<EntryId, Transfer>,
    /// Conflicts found.
    pub conflicts: Vec<Conflict>,
    /// Positions withheld from this node.
    pub withheld: Vec<WithheldPosition>,
    /// Retracted entries: entry → (retraction entry, reason).
    pub retracted: BTreeMap<EntryId, (EntryId, String)>,
    /// Handling changes: entry → (new label, recipients).
    pub handling: BTreeMap<EntryId, (Tlp, Option<Vec<AgencyId>>)>,
    /// Each author's head: highest sequence number and its id.
    pub heads: BTreeMap<AgencyId, (u64, EntryId)>,
    /// Each agency's latest witness.
    pub witnesses: BTreeMap<AgencyId, WitnessRecord>,
    /// Accepted entries (not counting withheld positions).
    pub entries: u64,
}

impl CaseState {
    /// The name of an agency, when the case names it.
    pub fn agency_name(&self, agency: &AgencyId) -> Option<&str> {
        self.members.get(agency).map(|m| m.name.as_str())
    }

    /// Whether the agency opened the case (its lead for the whole case).
    pub fn is_lead(&self, agency: &AgencyId) -> bool {
        self.members
            .get(agency)
            .is_some_and(|m| m.role == Role::Lead && Some(m.added_by) == self.case)
    }

    /// The item an item was ultimately derived from (following
    /// `derived-from` through the items this state knows).
    pub fn origin(&self, item: &ItemId) -> ItemId {
        let mut at = *item;
        for _ in 0..64 {
            match self.items.get(&at).and_then(|i| i.derived_from) {
                Some(parent) if parent != at => at = parent,
                _ => break,
            }
        }
        at
    }

    /// The effective handling label of an entry (after handling changes).
    pub fn effective_tlp(&self, entry: &Entry) -> (Tlp, Option<Vec<AgencyId>>) {
        match self.handling.get(&entry.id()) {
            Some(h) => h.clone(),
            None => (entry.payload().tlp, entry.payload().to.clone()),
        }
    }

    pub(crate) fn record_withheld(&mut self, pos: WithheldPosition) {
        self.heads.insert(pos.author, (pos.seq, pos.id));
        self.withheld.push(pos);
    }

    pub(crate) fn record_reveal(&mut self, id: &EntryId) {
        self.withheld.retain(|w| w.id != *id);
    }

    /// Folds one validated entry into the state.
    pub(crate) fn apply(&mut self, entry: &Entry, incomplete_item: bool) {
        let p = entry.payload();
        let id = entry.id();
        let author = p.author;
        self.entries += 1;
        let head = self.heads.entry(author).or_insert((p.seq, id));
        if p.seq >= head.0 {
            *head = (p.seq, id);
        }
        match &p.body {
            Body::CaseOpened(c) => {
                self.case = Some(id);
                self.title = c.title.clone();
                self.reference = c.reference.clone();
                self.jurisdiction = c.jurisdiction.clone();
                self.tlp = Some(p.tlp);
                self.members.insert(
                    author,
                    Member {
                        agency: author,
                        name: c.name.clone(),
                        country: c.country.clone(),
                        role: Role::Lead,
                        added_by: id,
                        removed_by: None,
                    },
                );
            }
            // The genesis author stays the lead for the whole case.
            Body::MemberAdded(m) if self.is_lead(&m.agency) => {}
            Body::MemberRemoved(m) if self.is_lead(&m.agency) => {}
            Body::MemberAdded(m) => {
                self.members.insert(
                    m.agency,
                    Member {
                        agency: m.agency,
                        name: m.name.clone(),
                        country: m.country.clone(),
                        role: m.role,
                        added_by: id,
                        removed_by: None,
                    },
                );
            }
            Body::MemberRemoved(m) => {
                if let Some(member) = self.members.get_mut(&m.agency) {
                    member.removed_by = Some(id);
                }
            }
            Body::EvidenceRegistered(r) if self.items.contains_key(&r.item) => {
                self.conflicts.push(Conflict::DuplicateRegistration {
                    item: r.item,
                    entry: id,
                });
            }
            Body::EvidenceRegistered(r) => {
                // Copies (any chain of derived-from) share digests
                // legitimately; unrelated items do not.
                let origin = r.derived_from.map(|d| self.origin(&d));
                if let Some(first) = self.items.values().find(|i| {
                    i.digests.sha256 == r.digests.sha256 && origin != Some(self.origin(&i.id))
                }) {
                    self.conflicts.push(Conflict::DuplicateDigest {
                        first: first.id,
                        second: r.item,
                        entry: id,
                    });
                }
                self.items.insert(
                    r.item,
                    Item {
                        id: r.item,
                        registered: id,
                        registered_by: author,
                        exhibit: r.exhibit.clone(),
                        digests: r.digests.clone(),
                        size: r.size,
                        media_type: r.media_type.clone(),
                        description: r.description.clone(),
                        derived_from: r.derived_from,
                        holder: author,
                        open_transfer: None,
                        destroyed: false,
                        incomplete: false,
                        events: Vec::new(),
                    },
                );
            }
            Body::Custody(ev) => {
                if ev.digest_matched == Some(false) {
                    self.conflicts.push(Conflict::DigestMismatch {
                        entry: id,
                        item: ev.item,
                        author,
                    });
                }
                let transfer = ev.transfer;
                if let Some(item) = self.items.get_mut(&ev.item) {
                    item.events.push(id);
                    item.incomplete |= incomplete_item;
                    match ev.action {
                        CustodyAction::Transferred => {
                            item.open_transfer = Some(id);
                            if let Some(to) = ev.to {
                                self.open_transfers.insert(
                                    id,
                                    Transfer {
                                        entry: id,
                                        item: ev.item,
                                        from: author,
                                        to,
                                        time: p.time,
                                    },
                                );
                            }
                        }
                        CustodyAction::Received => {
                            if ev.accepted == Some(true) {
                                item.holder = author;
                            }
                            item.open_transfer = None;
                            if let Some(t) = transfer {
                                self.open_transfers.remove(&t);
                            }
                        }
                        CustodyAction::Destroyed => item.destroyed = true,
                        _ => {}
                    }
                } else if incomplete_item {
                    // Accepted under the withheld relaxation: the item's
                    // registration was not shown to this node.
                    if ev.action == CustodyAction::Received && ev.accepted == Some(true) {
                        if let Some(t) = transfer {
                            self.open_transfers.remove(&t);
                        }
                    }
                }
            }
            Body::Witness(w) => {
                self.witnesses.insert(
                    author,
                    WitnessRecord {
                        entry: id,
                        time: p.time,
                        heads: w.heads.clone(),
                    },
                );
            }
            Body::HandlingChanged(h) => {
                self.handling.insert(h.entry, (h.tlp, h.to.clone()));
            }
            Body::Retracted(r) => {
                self.retracted.insert(r.entry, (id, r.reason.clone()));
            }
            Body::Note(_) => {}
        }
    }
}

impl From<WithheldPosition> for (AgencyId, u64, EntryId) {
    fn from(w: WithheldPosition) -> Self {
        (w.author, w.seq, w.id)
    }
}

impl From<(AgencyId, u64, EntryId)> for WithheldPosition {
    fn from((author, seq, id): (AgencyId, u64, EntryId)) -> Self {
        WithheldPosition { author, seq, id }
    }
}
