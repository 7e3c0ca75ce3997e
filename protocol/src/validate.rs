//! Validation of entries against a case (SPEC.md §8, rules V9–V18).
//!
//! [`Validator`] holds what has been validated of one case and decides on
//! each new entry as a pure function of (entry, validated state, receiver's
//! clock). Every rule is evaluated on the entry's *causal past* — what is
//! reachable through `prev` and `refs` — so honest nodes that see the same
//! entries in different orders reach the same verdicts. The causal past is
//! tracked with a vector clock per known entry.

use std::collections::HashMap;
use std::sync::Arc;

use crate::body::{Body, CustodyAction, Role};
use crate::entry::Entry;
use crate::equivocation::EquivocationProof;
use crate::error::{wrong_case, RejectKind, Rejection};
use crate::ids::{AgencyId, CaseId, EntryId};
use crate::state::{CaseState, Conflict, WithheldPosition};
use crate::tlp::Tlp;

/// Allowed clock skew, in milliseconds (5 minutes).
pub const SKEW_MS: u64 = 300_000;

/// How an accepted entry changed the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new entry was accepted.
    New,
    /// The entry was already known: nothing changed.
    Duplicate,
    /// The entry was known as withheld and its content is now shown.
    Revealed,
}

/// A vector clock: for each author index, 1 + the highest sequence number
/// in the causal past (0: nothing of that author). Stored per entry *without*
/// the entry's own slot (see [`Known::clock_at`]), so consecutive entries of
/// one author that saw nothing new share one allocation.
type Clock = Arc<Vec<u64>>;

/// What the validator keeps of a known entry: enough to evaluate every rule
/// and to decide visibility, without the entry itself (a node holding a
/// million entries keeps about a hundred bytes for each). The full entry is
/// kept only by a validator made with [`Validator::new`].
#[derive(Debug, Clone)]
struct Known {
    author: u32,
    seq: u64,
    /// Asserted time; None for a withheld position.
    time: Option<u64>,
    tlp: Tlp,
    to: Option<Arc<[AgencyId]>>,
    /// The earlier entry a handling change or retraction is about.
    target: Option<Box<EntryId>>,
    witness: bool,
    base: Clock,
    entry: Option<Entry>,
}

impl Known {
    fn withheld(&self) -> bool {
        self.time.is_none()
    }

    /// Merges this entry's clock into `into`.
    fn merge_into(&self, into: &mut Vec<u64>) {
        merge(into, &self.base);
        let a = self.author as usize;
        if into.len() <= a {
            into.resize(a + 1, 0);
        }
        into[a] = into[a].max(self.seq + 1);
    }
}

/// What a validator knows of an entry, for callers (serving, reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// The author.
    pub author: AgencyId,
    /// The sequence number.
    pub seq: u64,
    /// The asserted time; None for a withheld position.
    pub time: Option<u64>,
    /// The entry's own handling label.
    pub tlp: Tlp,
    /// Its recipients, for RED.
    pub to: Option<Vec<AgencyId>>,
    /// Whether it is a witness.
    pub witness: bool,
}

#[derive(Debug, Clone)]
struct MembershipEvent {
    genesis: bool,
    added: Option<Role>,
    author: usize,
    seq: u64,
    base: Clock,
}

impl MembershipEvent {
    fn clock_at(&self, x: usize) -> u64 {
        if x == self.author {
            self.seq + 1
        } else {
            self.base.get(x).copied().unwrap_or(0)
        }
    }
}

/// Validates the entries of one case and derives its state.
#[derive(Debug, Default, Clone)]
pub struct Validator {
    state: CaseState,
    authors: Vec<AgencyId>,
    author_index: HashMap<AgencyId, usize>,
    known: HashMap<EntryId, Known>,
    /// Each author's chain: the id at every sequence number.
    chains: Vec<Vec<EntryId>>,
    membership: HashMap<AgencyId, Vec<MembershipEvent>>,
    lean: bool,
}

impl Validator {
    /// A validator for a case not yet opened: it accepts a genesis first.
    /// It keeps every accepted entry ([`Validator::entry`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A validator that keeps only what the rules need of each entry (about
    /// a hundred bytes), not the entries: for nodes, which have the entries
    /// in their store, and for verifying large bundles. [`Validator::entry`]
    /// returns None; [`Validator::meta`] answers.
    pub fn lean() -> Self {
        Validator {
            lean: true,
            ..Self::default()
        }
    }

    /// What is known of an entry (accepted or withheld).
    pub fn meta(&self, id: &EntryId) -> Option<EntryMeta> {
        self.known.get(id).map(|k| EntryMeta {
            author: self.authors[k.author as usize],
            seq: k.seq,
            time: k.time,
            tlp: k.tlp,
            to: k.to.as_deref().map(<[AgencyId]>::to_vec),
            witness: k.witness,
        })
    }

    /// Whether `agency` may see the content of an accepted entry (SPEC.md
    /// §7): a RED entry, after handling changes, only reaches its author and
    /// addressees; a handling change or retraction of an entry the agency
    /// may not see is not shown either. False for unknown or withheld ids.
    pub fn may_see(&self, id: &EntryId, agency: &AgencyId) -> bool {
        self.may_see_depth(id, agency, 0)
    }

    fn may_see_depth(&self, id: &EntryId, agency: &AgencyId, depth: u8) -> bool {
        let Some(k) = self.known.get(id) else {
            return false;
        };
        if k.withheld() || depth > 8 {
            return false;
        }
        let author = self.authors[k.author as usize];
        let (tlp, to) = match self.state.handling.get(id) {
            Some((t, to)) => (*t, to.as_deref()),
            None => (k.tlp, k.to.as_deref()),
        };
        let own = tlp != Tlp::Red || author == *agency || to.is_some_and(|t| t.contains(agency));
        own && k
            .target
            .as_deref()
            .is_none_or(|t| self.may_see_depth(t, agency, depth + 1))
    }

    /// The case id, once the genesis is accepted.
    pub fn case(&self) -> Option<CaseId> {
        self.state.case
    }

    /// The derived case state.
    pub fn state(&self) -> &CaseState {
        &self.state
    }

    /// Whether an entry id is known (accepted or withheld).
    pub fn knows(&self, id: &EntryId) -> bool {
        self.known.contains_key(id)
    }

    /// An accepted entry by id.
    pub fn entry(&self, id: &EntryId) -> Option<&Entry> {
        self.known.get(id).and_then(|k| k.entry.as_ref())
    }

    /// The id at an author's position, if known.
    pub fn at(&self, author: &AgencyId, seq: u64) -> Option<EntryId> {
        let a = *self.author_index.get(author)?;
        self.chains[a].get(usize::try_from(seq).ok()?).copied()
    }

    fn at_index(&self, a: usize, seq: u64) -> Option<EntryId> {
        self.chains
            .get(a)
            .and_then(|c| c.get(usize::try_from(seq).ok()?))
            .copied()
    }

    /// The next sequence number expected of an author (0 if none known).
    pub fn next_seq(&self, author: &AgencyId) -> u64 {
        self.author_index
            .get(author)
            .map_or(0, |&a| self.chains[a].len() as u64)
    }

    fn all_clock(&self) -> Vec<u64> {
        self.chains.iter().map(|c| c.len() as u64).collect()
    }

    /// Whether the agency is a current member (on everything accepted).
    pub fn is_member(&self, agency: &AgencyId) -> bool {
        self.role_in(agency, &self.all_clock()).is_some()
    }

    /// The agency's role on everything accepted so far.
    pub fn role(&self, agency: &AgencyId) -> Option<Role> {
        self.role_in(agency, &self.all_clock())
    }

    /// Validates an entry and, if it passes, accepts it (rules V9–V18; the
    /// entry has already passed V1–V8 by being an [`Entry`]).
    ///
    /// An equivocation is recorded as a conflict in the state *and* returned
    /// as an error carrying the proof: the second entry is never silently
    /// kept or dropped.
    pub fn apply(&mut self, entry: &Entry, now_ms: u64) -> Result<Applied, Rejection> {
        let id = entry.id();
        let fail = |kind| Rejection::new(Some(id), kind);
        let p = entry.payload();

        // V9: the case.
        match (self.state.case, p.case) {
            (None, None) => {}
            (None, Some(c)) => {
                return Err(fail(RejectKind::WrongCase(format!(
                    "case {c} has not been opened here (its genesis comes first)"
                ))))
            }
            (Some(c), found) if found != Some(c) => {
                if found.is_none() && id == c {
                    return Ok(Applied::Duplicate);
                }
                return Err(fail(wrong_case(&c, found.as_ref())));
            }
            _ => {}
        }

        // V10: one entry per (author, seq); an id already known at another
        // position (a lying withheld marker) is refused too.
        let author_idx = self.author_index.get(&p.author).copied();
        if let Some(k) = self.known.get(&id) {
            if Some(k.author as usize) != author_idx || k.seq != p.seq {
                return Err(fail(RejectKind::Equivocation {
                    seq: p.seq,
                    existing: None,
                    proof: None,
                }));
            }
        }
        let mut revealing = false;
        if let Some(a) = author_idx {
            if let Some(existing) = self.at_index(a, p.seq) {
                if existing == id {
                    if self.known.get(&id).is_some_and(|k| !k.withheld()) {
                        return Ok(Applied::Duplicate);
                    }
                    revealing = true;
                } else {
                    let proof = self
                        .entry(&existing)
                        .map(|first| Box::new(EquivocationProof::new(first, entry)));
                    self.state.conflicts.push(Conflict::Equivocation {
                        author: p.author,
                        seq: p.seq,
                        proof: proof.as_deref().cloned(),
                    });
                    return Err(fail(RejectKind::Equivocation {
                        seq: p.seq,
                        existing: Some(existing),
                        proof,
                    }));
                }
            }
        }

        // V11, V12: the author's chain.
        if !revealing {
            let expected = author_idx.map_or(0, |a| self.chains[a].len() as u64);
            if p.seq != expected {
                return Err(fail(RejectKind::SequenceGap {
                    expected,
                    found: p.seq,
                }));
            }
        }
        if let Some(prev) = p.prev {
            let at = author_idx.and_then(|a| self.at_index(a, p.seq - 1));
            if at != Some(prev) {
                return Err(fail(RejectKind::PrevMismatch { seq: p.seq }));
            }
        }

        // V13: references known, of other authors; witness heads known.
        for r in &p.refs {
            match self.known.get(r) {
                None => {
                    return Err(fail(RejectKind::UnknownReference {
                        id: *r,
                        why: "not a known entry of this case",
                    }))
                }
                Some(k) if self.authors[k.author as usize] == p.author => {
                    return Err(fail(RejectKind::UnknownReference {
                        id: *r,
                        why: "refs name other authors' entries; the own chain is linked by prev",
                    }))
                }
                Some(_) => {}
            }
        }
        if let Body::Witness(w) = &p.body {
            for h in &w.heads {
                let ok = self
                    .known
                    .get(&h.2)
                    .is_some_and(|k| self.authors[k.author as usize] == h.0 && k.seq == h.1);
                if !ok {
                    return Err(fail(RejectKind::UnknownReference {
                        id: h.2,
                        why: "witness head is not a known entry at that author and sequence",
                    }));
                }
            }
        }

        // The causal past, as a vector clock over the parents.
        let mut clock: Vec<u64> = vec![0; self.authors.len()];
        for parent in p.prev.iter().chain(&p.refs) {
            if let Some(k) = self.known.get(parent) {
                k.merge_into(&mut clock);
            }
        }

        // V14: membership in the causal past.
        let role = if p.is_genesis() {
            Role::Lead
        } else {
            match self.role_in(&p.author, &clock) {
                Some(r) => r,
                None => return Err(fail(RejectKind::NotAMember(p.author))),
            }
        };

        // V15: role permissions.
        self.check_authority(entry, role)
            .map_err(|e| fail(RejectKind::NotAuthorized(e)))?;

        // V16: custody.
        let incomplete = self
            .check_custody(entry, &clock)
            .map_err(|e| fail(RejectKind::CustodyViolation(e)))?;

        // V17: not before a causal predecessor (beyond the skew).
        for parent in p.prev.iter().chain(&p.refs) {
            if let Some(pt) = self.known.get(parent).and_then(|k| k.time) {
                if p.time.saturating_add(SKEW_MS) < pt {
                    return Err(fail(RejectKind::TimeViolation {
                        time: p.time,
                        predecessor: *parent,
                        predecessor_time: pt,
                    }));
                }
            }
        }
        // V18: not ahead of the receiver's clock (beyond the skew).
        if p.time > now_ms.saturating_add(SKEW_MS) {
            return Err(fail(RejectKind::FromTheFuture {
                time: p.time,
                now: now_ms,
            }));
        }

        // Accept.
        let a = self.intern(p.author);
        clock.resize(self.authors.len(), 0);
        clock[a] = 0;
        let base: Clock = match p
            .seq
            .checked_sub(1)
            .and_then(|s| self.at_index(a, s))
            .and_then(|prev| self.known.get(&prev))
        {
            Some(prev) if prev.base.as_slice() == clock.as_slice() => prev.base.clone(),
            _ => Arc::new(clock),
        };
        match &p.body {
            Body::MemberAdded(m) => self.push_membership(m.agency, Some(m.role), a, p.seq, &base),
            Body::MemberRemoved(m) => self.push_membership(m.agency, None, a, p.seq, &base),
            Body::CaseOpened(_) => self.push_membership(p.author, Some(Role::Lead), a, 0, &base),
            _ => {}
        }
        let target = match &p.body {
            Body::HandlingChanged(h) => Some(Box::new(h.entry)),
            Body::Retracted(r) => Some(Box::new(r.entry)),
            _ => None,
        };
        self.known.insert(
            id,
            Known {
                author: a as u32,
                seq: p.seq,
                time: Some(p.time),
                tlp: p.tlp,
                to: p.to.as_deref().map(Arc::from),
                target,
                witness: matches!(p.body, Body::Witness(_)),
                base,
                entry: (!self.lean).then(|| entry.clone()),
            },
        );
        if !revealing {
            self.chains[a].push(id);
        }
        self.state.apply(entry, incomplete);
        if revealing {
            self.state.record_reveal(&id);
        }
        Ok(if revealing {
            Applied::Revealed
        } else {
            Applied::New
        })
    }

    /// Records a position whose content this node may not see: the entry
    /// travels as (author, seq, id) alone. The chain continues through it.
    pub fn apply_withheld(&mut self, pos: WithheldPosition) -> Result<Applied, Rejection> {
        let fail = |kind| Rejection::new(Some(pos.id), kind);
        if self.state.case.is_none() {
            return Err(fail(RejectKind::WrongCase(
                "a withheld position cannot precede the genesis".into(),
            )));
        }
        if let Some(k) = self.known.get(&pos.id) {
            if self.authors[k.author as usize] != pos.author || k.seq != pos.seq {
                return Err(fail(RejectKind::Equivocation {
                    seq: pos.seq,
                    existing: None,
                    proof: None,
                }));
            }
        }
        let a = self.intern(pos.author);
        if let Some(existing) = self.at_index(a, pos.seq) {
            if existing == pos.id {
                return Ok(Applied::Duplicate);
            }
            return Err(fail(RejectKind::Equivocation {
                seq: pos.seq,
                existing: Some(existing),
                proof: None,
            }));
        }
        let expected = self.chains[a].len() as u64;
        if pos.seq != expected {
            return Err(fail(RejectKind::SequenceGap {
                expected,
                found: pos.seq,
            }));
        }
        // The causal past of a withheld entry is taken to be that of the
        // author's previous entry plus the position itself.
        let base = match pos
            .seq
            .checked_sub(1)
            .and_then(|s| self.at_index(a, s))
            .and_then(|prev| self.known.get(&prev))
        {
            Some(prev) => prev.base.clone(),
            None => Arc::new(vec![0; self.authors.len()]),
        };
        self.known.insert(
            pos.id,
            Known {
                author: a as u32,
                seq: pos.seq,
                time: None,
                tlp: Tlp::Red,
                to: None,
                target: None,
                witness: false,
                base,
                entry: None,
            },
        );
        self.chains[a].push(pos.id);
        self.state.record_withheld(pos);
        Ok(Applied::New)
    }

    fn intern(&mut self, agency: AgencyId) -> usize {
        if let Some(&a) = self.author_index.get(&agency) {
            return a;
        }
        self.authors.push(agency);
        self.chains.push(Vec::new());
        self.author_index.insert(agency, self.authors.len() - 1);
        self.authors.len() - 1
    }

    fn push_membership(
        &mut self,
        agency: AgencyId,
        added: Option<Role>,
        author: usize,
        seq: u64,
        base: &Clock,
    ) {
        let genesis = added == Some(Role::Lead) && seq == 0 && self.state.case.is_none();
        self.membership
            .entry(agency)
            .or_default()
            .push(MembershipEvent {
                genesis,
                added,
                author,
                seq,
                base: base.clone(),
            });
    }

    /// The agency's role in a causal past given as a clock (SPEC.md §11.1):
    /// the genesis author is lead for the whole case; another agency is a
    /// member iff some admission in that past has no removal in that past
    /// causally after it. Among the live admissions not causally before
    /// another live one, concurrent ones with different roles give only the
    /// permissions common to all (the least privileged role).
    fn role_in(&self, agency: &AgencyId, clock: &[u64]) -> Option<Role> {
        let events = self.membership.get(agency)?;
        let in_past = |e: &MembershipEvent| clock.get(e.author).is_some_and(|&c| c > e.seq);
        let before = |a: &MembershipEvent, b: &MembershipEvent| {
            // a is causally before b (or is b).
            b.clock_at(a.author) > a.seq
        };
        if events.first().is_some_and(|e| e.genesis) && in_past(&events[0]) {
            return Some(Role::Lead);
        }
        let removals: Vec<&MembershipEvent> = events
            .iter()
            .filter(|e| e.added.is_none() && in_past(e))
            .collect();
        let live: Vec<&MembershipEvent> = events
            .iter()
            .filter(|e| e.added.is_some() && in_past(e))
            .filter(|add| !removals.iter().any(|r| before(add, r)))
            .collect();
        live.iter()
            .filter(|a| !live.iter().any(|b| !std::ptr::eq(**a, *b) && before(a, b)))
            .filter_map(|a| a.added)
            .min_by_key(|r| match r {
                Role::Observer => 0,
                Role::Investigator | Role::Examiner => 1,
                Role::Liaison | Role::Lead => 2,
            })
    }

    fn check_authority(&self, entry: &Entry, role: Role) -> Result<(), String> {
        let p = entry.payload();
        match &p.body {
            Body::MemberAdded(_) | Body::MemberRemoved(_) if !role.manages_members() => {
                Err(format!(
                    "a member with role {} cannot add or remove members",
                    role.as_str()
                ))
            }
            Body::Witness(_) | Body::Note(_) => Ok(()),
            _ if role == Role::Observer => Err(format!(
                "an observer may only write witnesses and notes, not {}",
                p.body.kind()
            )),
            Body::HandlingChanged(h) => self.own_earlier(p.author, &h.entry),
            Body::Retracted(r) => self.own_earlier(p.author, &r.entry),
            _ => Ok(()),
        }
    }

    fn own_earlier(&self, author: AgencyId, target: &EntryId) -> Result<(), String> {
        match self.known.get(target) {
            Some(k) if !k.withheld() && self.authors[k.author as usize] == author => Ok(()),
            Some(k) if !k.withheld() => Err(format!(
                "entry {target} was written by another agency; only its author may retract it or change its handling"
            )),
            _ => Err(format!("entry {target} is not a known entry shown to this node")),
        }
    }

    /// V16. Returns whether the event was accepted under the withheld
    /// relaxation (item or transfer unknown while positions are withheld).
    fn check_custody(&self, entry: &Entry, clock: &[u64]) -> Result<bool, String> {
        let p = entry.payload();
        let relaxed = self.state.withheld.iter().any(|w| {
            self.author_index
                .get(&w.author)
                .and_then(|&a| clock.get(a))
                .is_some_and(|&c| c > w.seq)
        });
        match &p.body {
            Body::EvidenceRegistered(r) => {
                if let Some(existing) = self.state.items.get(&r.item) {
                    // Refused only if the earlier registration is in this
                    // entry's causal past; a concurrent one is a conflict.
                    let k = &self.known[&existing.registered];
                    if clock.get(k.author as usize).is_some_and(|&c| c > k.seq) {
                        return Err(format!(
                            "item {} is already registered",
                            r.item.to_uuid_string()
                        ));
                    }
                }
                if let Some(from) = r.derived_from {
                    if !self.state.items.contains_key(&from) && !relaxed {
                        return Err(format!(
                            "derived from item {}, which is not registered",
                            from.to_uuid_string()
                        ));
                    }
                }
                Ok(false)
            }
            Body::Custody(ev) => {
                let name = ev.item.to_uuid_string();
                let Some(item) = self.state.items.get(&ev.item) else {
                    return if relaxed {
                        Ok(true)
                    } else {
                        Err(format!("item {name} is not registered in this case"))
                    };
                };
                if item.destroyed {
                    return Err(format!("item {name} was destroyed"));
                }
                if ev.action == CustodyAction::Received {
                    let Some(tid) = ev.transfer else {
                        return Err("a receipt must name its transfer".into());
                    };
                    let Some(t) = self.state.open_transfers.get(&tid) else {
                        return if relaxed && self.known.get(&tid).is_none_or(Known::withheld) {
                            Ok(true)
                        } else {
                            Err(format!("transfer {tid} is not an open transfer"))
                        };
                    };
                    if t.item != ev.item {
                        return Err(format!("transfer {tid} is of another item"));
                    }
                    if t.to != p.author {
                        return Err(format!(
                            "transfer {tid} is addressed to {}, not to the author",
                            t.to.fingerprint()
                        ));
                    }
                    let tk = &self.known[&tid];
                    if clock.get(tk.author as usize).is_none_or(|&c| c <= tk.seq) {
                        return Err(format!(
                            "transfer {tid} is not in the receipt's causal past (reference it)"
                        ));
                    }
                    return Ok(false);
                }
                if item.holder != p.author {
                    return Err(format!(
                        "only the current holder ({}) may record {} of item {name}",
                        self.state
                            .agency_name(&item.holder)
                            .map_or_else(|| item.holder.fingerprint(), str::to_owned),
                        ev.action.as_str()
                    ));
                }
                if let Some(t) = item.open_transfer {
                    return Err(format!(
                        "item {name} is in transit (transfer {t} awaits its receipt)"
                    ));
                }
                if ev.action == CustodyAction::Transferred {
                    let to = ev.to.unwrap_or(p.author);
                    if to == p.author {
                        return Err("an agency cannot transfer an item to itself".into());
                    }
                    if self.role_in(&to, clock).is_none() {
                        return Err(format!(
                            "the addressee {} is not a member of the case",
                            to.fingerprint()
                        ));
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}

fn merge(into: &mut Vec<u64>, other: &[u64]) {
    if into.len() < other.len() {
        into.resize(other.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(other) {
        *a = (*a).max(*b);
    }
}
