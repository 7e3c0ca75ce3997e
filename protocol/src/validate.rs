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
use crate::ids::{AgencyId, CaseId, EntryId, ItemId, KeyId};
use crate::keylog::{KeyLogs, KeyRole, NoKeyLogs};
use crate::packed::Packed;
use crate::state::{CaseState, Conflict, WithheldPosition};
use crate::tlp::Tlp;

mod records;

pub use records::{MemorySpill, RecordSpill, SpillFile, DEFAULT_WINDOW, MAX_WINDOW};
use records::{Rec, Records, EXTRA, WITHHELD, WITNESS};

/// Allowed clock skew, in milliseconds (5 minutes).
pub const SKEW_MS: u64 = 300_000;

/// The most entries (accepted or withheld) one validator holds. Record
/// numbers, sequence numbers (below their chain's length) and clock values
/// (at most one more than a sequence number) are then all below
/// `u32::MAX`, so they are kept as `u32`: a node holding a million entries
/// keeps about 90 bytes for each instead of about 440 (see [`Rec`]).
const MAX_RECORDS: usize = u32::MAX as usize - 1;

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

/// The parts of a record few entries have.
#[derive(Debug, Clone, Default)]
struct Extra {
    to: Option<Box<[AgencyId]>>,
    /// The earlier entry a handling change or retraction is about.
    target: Option<EntryId>,
}

/// Whether a stored clock equals a computed one.
fn same_clock(stored: &[u32], clock: &[u64]) -> bool {
    stored.len() == clock.len() && stored.iter().zip(clock).all(|(&a, &b)| u64::from(a) == b)
}

/// An entry of a removed agency concurrent with its removal
/// ([`Validator::after_removal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRemoval {
    /// The removed agency, the entry's author.
    pub agency: AgencyId,
    /// The entry.
    pub entry: EntryId,
    /// The `member-removed` entry it is concurrent with.
    pub removal: EntryId,
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
    /// The event's clock without its own slot, a copy: every entry's V14
    /// reads it, and the stored one may be out of memory.
    clock: Box<[u32]>,
}

impl MembershipEvent {
    /// Slot `x` of the event's clock, its own slot included.
    fn clock_at(&self, x: usize) -> u64 {
        if x == self.author {
            self.seq + 1
        } else {
            self.clock.get(x).map_or(0, |&c| u64::from(c))
        }
    }
}

/// Validates the entries of one case and derives its state.
#[derive(Debug, Default, Clone)]
pub struct Validator {
    state: CaseState,
    authors: Vec<AgencyId>,
    author_index: HashMap<AgencyId, usize>,
    /// Every known entry (accepted or withheld), in the order it became
    /// known: the newest in memory, the older ones perhaps out of it.
    recs: Records,
    /// Recipients and targets, by record number.
    extra: HashMap<u32, Extra>,
    /// Each author's chain: the record number at every sequence number.
    chains: Vec<Packed>,
    membership: HashMap<AgencyId, Vec<MembershipEvent>>,
    lean: bool,
    /// The case's format version: its genesis's (0 before the genesis).
    version: u64,
    /// The accepted entries by record number (only when not lean).
    entries: Vec<Option<Entry>>,
}

impl Validator {
    /// A validator for a case not yet opened: it accepts a genesis first.
    /// It keeps every accepted entry ([`Validator::entry`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A validator that keeps only what the rules need of each entry (about
    /// ninety bytes), not the entries: for nodes, which have the entries
    /// in their store, and for verifying large bundles. [`Validator::entry`]
    /// returns None; [`Validator::meta`] answers.
    pub fn lean() -> Self {
        Validator {
            lean: true,
            ..Self::default()
        }
    }

    /// This validator with its older records out of memory: once it holds
    /// `2 * window` records, the older `window` go to two files `spill`
    /// opens (a record file and an id table), and so on. The verdicts are the ones of a validator that keeps
    /// everything in memory; check [`Validator::failure`] after using it.
    pub fn with_spill(mut self, spill: Arc<dyn RecordSpill>, window: usize) -> Self {
        self.recs.spill_to(spill, window);
        self
    }

    /// Why a record set aside out of memory could not be read back, if one
    /// could not. From then on every entry is refused as
    /// [`RejectKind::RecordsUnavailable`]; answers given since may be
    /// wrong, and a caller reporting on the case must say it could not
    /// finish instead.
    pub fn failure(&self) -> Option<&str> {
        self.recs.failure()
    }

    /// Why records stopped leaving memory (a file could not be written),
    /// if they did. Nothing was lost: they stay in memory.
    pub fn spill_warning(&self) -> Option<&str> {
        self.recs.warning()
    }

    /// Refuses an entry once a record could not be read back.
    fn unavailable(&self, id: EntryId) -> Result<(), Rejection> {
        match self.recs.failure() {
            Some(why) => Err(Rejection::new(
                Some(id),
                RejectKind::RecordsUnavailable(why.to_string()),
            )),
            None => Ok(()),
        }
    }

    /// Gives back spare capacity (after loading a case).
    pub fn shrink_to_fit(&mut self) {
        self.recs.shrink_to_fit();
        for c in &mut self.chains {
            c.shrink_to_fit();
        }
        self.entries.shrink_to_fit();
    }

    fn find(&self, id: &EntryId) -> Option<(u32, Rec)> {
        self.held(self.recs.find(id))
    }

    fn rec(&self, id: &EntryId) -> Option<Rec> {
        self.find(id).map(|(_, rec)| rec)
    }

    /// A record found, unless it names an author this validator never
    /// numbered (only a record file damaged from outside could): that is
    /// a failure ([`Validator::failure`]), not an index out of bounds.
    fn held(&self, found: Option<(u32, Rec)>) -> Option<(u32, Rec)> {
        match found {
            Some((r, k)) if k.author as usize >= self.authors.len() => {
                self.recs
                    .damaged(&format!("record {r} read back names no author of the case"));
                None
            }
            found => found,
        }
    }

    fn extra_of(&self, r: u32, rec: &Rec) -> Option<&Extra> {
        if rec.flags & EXTRA == 0 {
            None
        } else {
            self.extra.get(&r)
        }
    }

    /// The slot of author `x` in a record's clock, own slot included.
    fn clock_at(&self, author: usize, seq: u64, base: u32, x: usize) -> u64 {
        if x == author {
            seq + 1
        } else {
            u64::from(self.recs.clock_slot(base, x))
        }
    }

    /// Merges a record's clock into `into`.
    fn merge_into(&self, rec: &Rec, into: &mut Vec<u64>) {
        let base = self.recs.clock(rec.base);
        if into.len() < base.len() {
            into.resize(base.len(), 0);
        }
        for (a, &b) in into.iter_mut().zip(base.iter()) {
            *a = (*a).max(u64::from(b));
        }
        let a = rec.author as usize;
        if into.len() <= a {
            into.resize(a + 1, 0);
        }
        into[a] = into[a].max(rec.seq() + 1);
    }

    /// What is known of an entry (accepted or withheld).
    pub fn meta(&self, id: &EntryId) -> Option<EntryMeta> {
        self.find(id).map(|(r, k)| EntryMeta {
            author: self.authors[k.author as usize],
            seq: k.seq(),
            time: k.time(),
            tlp: k.tlp,
            to: self
                .extra_of(r, &k)
                .and_then(|x| x.to.as_deref())
                .map(<[AgencyId]>::to_vec),
            witness: k.flags & WITNESS != 0,
        })
    }

    /// Whether `agency` may see the content of an accepted entry (SPEC.md
    /// §7): a RED entry, after handling changes, only reaches its author and
    /// addressees; a handling change or retraction of an entry the agency
    /// may not see is not shown either. False for unknown or withheld ids.
    pub fn may_see(&self, id: &EntryId, agency: &AgencyId) -> bool {
        self.may_see_depth(id, agency, 0)
    }

    /// What serving a stored row needs: whether the entry at an author's
    /// position is `id` (a row damaged in the store is not), and whether
    /// `agency` may see it ([`Validator::may_see`]). One lookup by
    /// position, in the packed chain, instead of two by id: a node serving
    /// a case whose older records are out of memory reads each record
    /// once.
    pub fn served(
        &self,
        author: &AgencyId,
        seq: u64,
        id: &EntryId,
        agency: &AgencyId,
    ) -> (bool, bool) {
        let found = self
            .author_index
            .get(author)
            .and_then(|&a| self.at_index(a, seq))
            .filter(|(_, k)| k.id == *id);
        match found {
            Some((r, k)) => (true, self.may_see_rec(r, &k, agency, 0)),
            None => (false, false),
        }
    }

    fn may_see_depth(&self, id: &EntryId, agency: &AgencyId, depth: u8) -> bool {
        match self.find(id) {
            Some((r, k)) => self.may_see_rec(r, &k, agency, depth),
            None => false,
        }
    }

    fn may_see_rec(&self, r: u32, k: &Rec, agency: &AgencyId, depth: u8) -> bool {
        let id = &k.id;
        if k.withheld() || depth > 8 {
            return false;
        }
        let author = self.authors[k.author as usize];
        let extra = self.extra_of(r, k);
        let (tlp, to) = match self.state.handling.get(id) {
            Some((t, to)) => (*t, to.as_deref()),
            None => (k.tlp, extra.and_then(|x| x.to.as_deref())),
        };
        let own = tlp != Tlp::Red || author == *agency || to.is_some_and(|t| t.contains(agency));
        own && extra
            .and_then(|x| x.target.as_ref())
            .is_none_or(|t| self.may_see_depth(t, agency, depth + 1))
    }

    /// The case's format version (its genesis's), once the genesis is
    /// accepted.
    pub fn version(&self) -> Option<u64> {
        self.state.case.map(|_| self.version)
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
        self.find(id).is_some()
    }

    /// An accepted entry by id.
    pub fn entry(&self, id: &EntryId) -> Option<&Entry> {
        let (r, _) = self.find(id)?;
        self.entries.get(r as usize)?.as_ref()
    }

    /// The id at an author's position, if known.
    pub fn at(&self, author: &AgencyId, seq: u64) -> Option<EntryId> {
        let a = *self.author_index.get(author)?;
        self.at_index(a, seq).map(|(_, rec)| rec.id)
    }

    /// The record at an author's position.
    fn at_index(&self, a: usize, seq: u64) -> Option<(u32, Rec)> {
        let r = self.chains.get(a)?.get(usize::try_from(seq).ok()?)?;
        self.held(Some((r, self.recs.get(r)?)))
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

    /// The witnesses of agencies other than `author`, as (time, reach):
    /// each witness's asserted time and how far into `author`'s chain its
    /// causal past goes (1 + the highest sequence number of `author` in
    /// it; 0: none), sorted by time, each reach the most of any witness
    /// dated up to it. An entry of `author` at sequence number `s` was
    /// seen by another agency before time `t` iff some pair with time
    /// below `t` has reach above `s` (SPEC.md §10.6): one binary search per
    /// question, after one pass over the records per author. Each
    /// witness's causal past is its clock, the one computed when it was
    /// accepted: the refs of an entry revealed after it are not followed,
    /// as §10.6 says.
    /// Witnesses for which `skip` holds do not count.
    pub fn witness_reaches(
        &self,
        author: &AgencyId,
        skip: &dyn Fn(&EntryId) -> bool,
    ) -> Vec<(u64, u64)> {
        let Some(&a) = self.author_index.get(author) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        self.recs.for_each(|_, r| {
            if r.flags & WITNESS != 0 && !r.withheld() && r.author as usize != a && !skip(&r.id) {
                out.push((r.time, self.clock_at(r.author as usize, r.seq(), r.base, a)));
            }
        });
        out.sort_unstable();
        let mut most = 0;
        for (_, reach) in &mut out {
            most = most.max(*reach);
            *reach = most;
        }
        out
    }

    /// Whether the agency is a current member (on everything accepted).
    pub fn is_member(&self, agency: &AgencyId) -> bool {
        self.role_in(agency, &self.all_clock()).is_some()
    }

    /// The agency's role on everything accepted so far.
    pub fn role(&self, agency: &AgencyId) -> Option<Role> {
        self.role_in(agency, &self.all_clock())
    }

    /// Entries of agencies that are no longer members which are concurrent
    /// with a removal of their author (SPEC.md §11.1): neither in the
    /// removal's causal past nor having it in theirs. They passed the
    /// rules (membership is judged on each entry's own causal past), but
    /// their author wrote them without knowing, or while ignoring, that it
    /// had been removed; reports show them as "concurrent with removal".
    /// An entry that has the removal in its causal past is refused (V14)
    /// and never appears here. In order of author, then sequence number.
    pub fn after_removal(&self) -> Vec<AfterRemoval> {
        let all = self.all_clock();
        let mut out = Vec::new();
        let mut agencies: Vec<&AgencyId> = self.membership.keys().collect();
        agencies.sort();
        for agency in agencies {
            if self.role_in(agency, &all).is_some() {
                continue;
            }
            let Some(&m) = self.author_index.get(agency) else {
                continue;
            };
            let removals: Vec<(&MembershipEvent, EntryId)> = self.membership[agency]
                .iter()
                .filter(|e| e.added.is_none())
                .filter_map(|e| Some((e, self.at_index(e.author, e.seq)?.1.id)))
                .collect();
            for r in self.chains[m].iter() {
                let Some(rec) = self.recs.get(r) else {
                    continue;
                };
                if rec.withheld() {
                    continue;
                }
                let concurrent = removals.iter().find(|(rm, _)| {
                    let entry_before = rm.clock_at(m) > rec.seq();
                    let removal_before = self.clock_at(m, rec.seq(), rec.base, rm.author) > rm.seq;
                    !entry_before && !removal_before
                });
                if let Some((_, removal)) = concurrent {
                    out.push(AfterRemoval {
                        agency: *agency,
                        entry: rec.id,
                        removal: *removal,
                    });
                }
            }
        }
        out
    }

    /// Validates an entry and, if it passes, accepts it (rules V9–V18; the
    /// entry has already passed V1–V8 by being an [`Entry`]).
    ///
    /// An equivocation is recorded as a conflict in the state *and* returned
    /// as an error carrying the proof: the second entry is never silently
    /// kept or dropped.
    pub fn apply(&mut self, entry: &Entry, now_ms: u64) -> Result<Applied, Rejection> {
        self.apply_keyed(entry, now_ms, &NoKeyLogs)
    }

    /// [`Validator::apply`] with the key logs that entries of format
    /// version 2 are checked against (V20 to V24). Entries of version 1 do
    /// not read them.
    pub fn apply_keyed(
        &mut self,
        entry: &Entry,
        now_ms: u64,
        keys: &dyn KeyLogs,
    ) -> Result<Applied, Rejection> {
        let judged = self.judge(entry, now_ms, keys);
        self.refusal_or_unavailable(entry.id(), judged)
    }

    /// A refusal made while a record could not be read back was made on
    /// what the validator could not see: it is [`RejectKind::RecordsUnavailable`]
    /// instead. An acceptance stands (every record its rules read was
    /// read, and what was kept is what they found).
    fn refusal_or_unavailable(
        &self,
        id: EntryId,
        judged: Result<Applied, Rejection>,
    ) -> Result<Applied, Rejection> {
        match judged {
            Err(_) => self.unavailable(id).and(judged),
            ok => ok,
        }
    }

    fn judge(
        &mut self,
        entry: &Entry,
        now_ms: u64,
        keys: &dyn KeyLogs,
    ) -> Result<Applied, Rejection> {
        let id = entry.id();
        self.unavailable(id)?;
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
        // V19: one format version per case, the genesis's.
        if self.state.case.is_some() && p.v != self.version {
            return Err(fail(RejectKind::VersionMismatch {
                case: self.version,
                entry: p.v,
            }));
        }

        // V20 to V24, before V10: the key that signed a version 2 entry.
        // A position is taken, and an equivocation found, only by a key the
        // author's log certifies: anyone can sign bytes that name an author
        // with a key of their own (a duplicate was checked when accepted).
        if let Some(cited) = p.keys {
            if self.find(&id).is_none_or(|(_, k)| k.withheld()) {
                check_key(entry, cited, keys).map_err(fail)?;
            }
        }

        // V10: one entry per (author, seq); an id already known at another
        // position (a lying withheld marker) is refused too.
        let author_idx = self.author_index.get(&p.author).copied();
        if let Some(k) = self.rec(&id) {
            if Some(k.author as usize) != author_idx || k.seq() != p.seq {
                return Err(fail(RejectKind::Equivocation {
                    seq: p.seq,
                    existing: None,
                    proof: None,
                }));
            }
        }
        // The record of the withheld position this entry reveals.
        let mut revealed = None;
        if let Some(a) = author_idx {
            if let Some((r, existing)) = self.at_index(a, p.seq) {
                let (existing, withheld) = (existing.id, existing.withheld());
                if existing == id {
                    if !withheld {
                        return Ok(Applied::Duplicate);
                    }
                    revealed = Some(r);
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

        let revealing = revealed.is_some();
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
            let at = author_idx.and_then(|a| self.at_index(a, p.seq - 1).map(|(_, k)| k.id));
            if at != Some(prev) {
                return Err(fail(RejectKind::PrevMismatch { seq: p.seq }));
            }
        }

        // V13: references known, of other authors; witness heads known.
        for r in &p.refs {
            match self.rec(r) {
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
                    .rec(&h.2)
                    .is_some_and(|k| self.authors[k.author as usize] == h.0 && k.seq() == h.1);
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
            if let Some(k) = self.rec(parent) {
                self.merge_into(&k, &mut clock);
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
            if let Some(pt) = self.rec(parent).and_then(|k| k.time()) {
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

        // Accept, unless a record the rules read could not be read back.
        self.unavailable(id)?;
        let new_author = usize::from(!self.author_index.contains_key(&p.author));
        let clock_room =
            self.recs.clock_len() + 1 + clock.len().max(self.authors.len() + new_author);
        if (!revealing && self.recs.len() >= MAX_RECORDS) || clock_room > u32::MAX as usize {
            return Err(fail(RejectKind::TooManyEntries {
                held: self.recs.len() as u64,
            }));
        }
        let a = self.intern(p.author);
        clock.resize(self.authors.len(), 0);
        clock[a] = 0;
        let prev_base = p
            .seq
            .checked_sub(1)
            .and_then(|s| self.at_index(a, s))
            .map(|(_, prev)| prev.base);
        let base = match prev_base {
            Some(b) if same_clock(&self.recs.clock(b), &clock) => b,
            // Room was checked above.
            _ => self.recs.push_clock(&clock).unwrap_or(0),
        };
        match &p.body {
            Body::MemberAdded(m) => self.push_membership(m.agency, Some(m.role), a, p.seq, &clock),
            Body::MemberRemoved(m) => self.push_membership(m.agency, None, a, p.seq, &clock),
            Body::CaseOpened(_) => self.push_membership(p.author, Some(Role::Lead), a, 0, &clock),
            _ => {}
        }
        let extra = Extra {
            to: p.to.as_deref().map(Box::from),
            target: match &p.body {
                Body::HandlingChanged(h) => Some(h.entry),
                Body::Retracted(r) => Some(r.entry),
                _ => None,
            },
        };
        let has_extra = extra.to.is_some() || extra.target.is_some();
        let rec = Rec {
            id,
            time: p.time,
            // Below the chain's length (V11), itself below MAX_RECORDS.
            seq: u32::try_from(p.seq).unwrap_or(u32::MAX),
            author: a as u32,
            base,
            tlp: p.tlp,
            flags: if matches!(p.body, Body::Witness(_)) {
                WITNESS
            } else {
                0
            } | if has_extra { EXTRA } else { 0 },
        };
        let r = if let Some(r) = revealed {
            self.recs.set(r, rec);
            r
        } else {
            let r = self.recs.push(rec);
            self.chains[a].push(r);
            r
        };
        if has_extra {
            self.extra.insert(r, extra);
        }
        if !self.lean {
            let at = r as usize;
            if self.entries.len() <= at {
                self.entries.resize(at + 1, None);
            }
            self.entries[at] = Some(entry.clone());
        }
        if p.is_genesis() {
            self.version = p.v;
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
        let judged = self.judge_withheld(pos);
        self.refusal_or_unavailable(pos.id, judged)
    }

    fn judge_withheld(&mut self, pos: WithheldPosition) -> Result<Applied, Rejection> {
        self.unavailable(pos.id)?;
        let fail = |kind| Rejection::new(Some(pos.id), kind);
        if self.state.case.is_none() {
            return Err(fail(RejectKind::WrongCase(
                "a withheld position cannot precede the genesis".into(),
            )));
        }
        if let Some(k) = self.rec(&pos.id) {
            if self.authors[k.author as usize] != pos.author || k.seq() != pos.seq {
                return Err(fail(RejectKind::Equivocation {
                    seq: pos.seq,
                    existing: None,
                    proof: None,
                }));
            }
        }
        let a = self.intern(pos.author);
        if let Some((_, existing)) = self.at_index(a, pos.seq) {
            let existing = existing.id;
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
        let prev_base = pos
            .seq
            .checked_sub(1)
            .and_then(|s| self.at_index(a, s))
            .map(|(_, prev)| prev.base);
        // Nothing is kept if a record read above could not be read back.
        self.unavailable(pos.id)?;
        let clock_room = self.recs.clock_len() + 1 + self.authors.len();
        if self.recs.len() >= MAX_RECORDS || clock_room > u32::MAX as usize {
            return Err(fail(RejectKind::TooManyEntries {
                held: self.recs.len() as u64,
            }));
        }
        let base = match prev_base {
            Some(b) => b,
            // Room was checked above.
            None => self
                .recs
                .push_clock(&vec![0; self.authors.len()])
                .unwrap_or(0),
        };
        let r = self.recs.push(Rec {
            id: pos.id,
            time: 0,
            // Equal to the chain's length (checked above).
            seq: u32::try_from(pos.seq).unwrap_or(u32::MAX),
            author: a as u32,
            base,
            tlp: Tlp::Red,
            flags: WITHHELD,
        });
        self.chains[a].push(r);
        self.state.record_withheld(pos);
        Ok(Applied::New)
    }

    fn intern(&mut self, agency: AgencyId) -> usize {
        if let Some(&a) = self.author_index.get(&agency) {
            return a;
        }
        self.authors.push(agency);
        self.chains.push(Packed::default());
        self.author_index.insert(agency, self.authors.len() - 1);
        self.authors.len() - 1
    }

    fn push_membership(
        &mut self,
        agency: AgencyId,
        added: Option<Role>,
        author: usize,
        seq: u64,
        clock: &[u64],
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
                clock: clock
                    .iter()
                    .map(|&c| u32::try_from(c).unwrap_or(u32::MAX))
                    .collect(),
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
        match self.rec(target) {
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
                // Both registration checks are on CP(E) (SPEC.md 8.2 V16).
                let in_past = |item: &ItemId| {
                    self.state.items.get(item).is_some_and(|existing| {
                        self.rec(&existing.registered).is_some_and(|k| {
                            clock.get(k.author as usize).is_some_and(|&c| c > k.seq())
                        })
                    })
                };
                // Refused only if the earlier registration is in this
                // entry's causal past; a concurrent one is a conflict.
                if in_past(&r.item) {
                    return Err(format!(
                        "item {} is already registered",
                        r.item.to_uuid_string()
                    ));
                }
                if let Some(from) = r.derived_from {
                    if !in_past(&from) && !relaxed {
                        return Err(format!(
                            "derived from item {}, which is not registered in this entry's causal past",
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
                        return if relaxed && self.rec(&tid).is_none_or(|k| k.withheld()) {
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
                    let in_past = self.rec(&tid).is_some_and(|tk| {
                        clock.get(tk.author as usize).is_some_and(|&c| c > tk.seq())
                    });
                    if !in_past {
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

/// V20 to V24 for an entry of format version 2 made under the first
/// `cited` statements of its author's key log (SPEC.md §8.2).
pub(crate) fn check_key(entry: &Entry, cited: u64, keys: &dyn KeyLogs) -> Result<(), RejectKind> {
    let p = entry.payload();
    let kid = entry.signer();
    let key = KeyId(kid.0);
    // V20: the cited prefix is held.
    let held = keys.key_log(&p.author).map_or(0, |l| l.len());
    let log = match keys.key_log(&p.author) {
        Some(log) if held >= cited => log,
        _ => {
            return Err(RejectKind::KeyLogPending {
                agency: p.author,
                need: cited,
                held,
            })
        }
    };
    // V21: certified there.
    let Some(cert) = log.certification(&key, cited) else {
        let why = match log.status(&key, cited) {
            crate::keylog::KeyStatus::Root => {
                "it is the agency's root, which signs key statements only"
            }
            crate::keylog::KeyStatus::FormerRoot => "it is a former root of the agency",
            _ => "it is not named there",
        };
        return Err(RejectKind::UncertifiedKey {
            key: kid,
            keys: cited,
            why,
        });
    };
    // V22: not revoked in the cited prefix.
    if let Some((at, r)) = cert.revoked {
        return Err(RejectKind::RevokedKey {
            revoked_at: at,
            reason: r.reason.as_str(),
            effective: r.effective,
            time: p.time,
        });
    }
    // V23: witnesses by node keys, everything else by officer keys.
    let want = if matches!(p.body, Body::Witness(_)) {
        KeyRole::Node
    } else {
        KeyRole::Officer
    };
    if cert.certify.role != want {
        return Err(RejectKind::KeyRole {
            role: cert.certify.role.as_str(),
            body: p.body.kind(),
            want: want.as_str(),
        });
    }
    // V24: dated within the key's validity.
    let c = cert.certify;
    if p.time < c.not_before || c.not_after.is_some_and(|na| p.time > na) {
        return Err(RejectKind::KeyValidity {
            time: p.time,
            valid: match c.not_after {
                Some(na) => format!("from {} to {na} ms", c.not_before),
                None => format!("from {} ms", c.not_before),
            },
        });
    }
    Ok(())
}

/// The receiver's refusal of a *new* entry of format version 2 whose key
/// the author's log, as this node holds it, revokes with an effective time
/// at or before the entry's (SPEC.md §8.6): a node that has learnt of a
/// revocation stores no new entry its key signed since. Not a rule of
/// validity: a store reloading what it accepted and a verifier of a bundle
/// judge by the prefix each entry cites (V22), and reports class entries
/// signed by keys revoked later (§10.6).
pub fn refuse_revoked(entry: &Entry, keys: &dyn KeyLogs) -> Result<(), Rejection> {
    let p = entry.payload();
    if p.keys.is_none() {
        return Ok(());
    }
    let key = KeyId(entry.signer().0);
    let Some(log) = keys.key_log(&p.author) else {
        return Ok(());
    };
    match log.certification(&key, log.len()).and_then(|c| c.revoked) {
        Some((at, r)) if r.effective <= p.time => Err(Rejection::new(
            Some(entry.id()),
            RejectKind::RevokedKey {
                revoked_at: at,
                reason: r.reason.as_str(),
                effective: r.effective,
                time: p.time,
            },
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_clock_compares_equal_to_its_computed_one_only() {
        assert!(same_clock(&[3, 0, 7], &[3, 0, 7]));
        assert!(!same_clock(&[3, 0, 7], &[3, 0]));
        assert!(!same_clock(&[3, 0, 7], &[3, 0, 8]));
        assert!(same_clock(&[], &[]));
    }
}
