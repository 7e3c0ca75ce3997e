//! What a session needs of the case data: the [`Replica`] trait, the
//! stateless check of received items, and an in-memory replica.
//!
//! A session asks its replica questions (the heads of a case, the rows
//! after a position) and hands it batches to store, synchronously. The
//! node implements the trait over its SQLite store, under its store lock;
//! tests and the federation simulator use [`MemoryReplica`]. This is the
//! shape of rustls's storage traits (`StoresServerSessions`): the state
//! machine stays free of I/O, and whoever owns the I/O answers it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::body::{Body, Head};
use crate::entry::{Entry, Payload, FORMAT_VERSION, MAX_REFS};
use crate::equivocation::{admit_proof, EquivocationProof, ProofRefusal, MAX_PROOFS_PER_AUTHOR};
use crate::error::{RejectKind, Rejection};
use crate::identity::Identity;
use crate::ids::{AgencyId, CaseId, EntryId, StatementId};
use crate::keylog::{KeyLog, KeyLogs, KeyStatement, NoKeyLogs};
use crate::state::WithheldPosition;
use crate::sync::{Item as SyncItem, MAX_HEADS};
use crate::tlp::Tlp;
use crate::validate::{refuse_revoked, Applied, Validator};

/// A received item after the stateless checks (decoding and signature,
/// V1–V8), ready for [`Replica::receive`].
#[derive(Debug)]
pub enum Checked {
    /// An entry, decoded and verified, or why not.
    Entry(Result<Entry, Rejection>),
    /// A withheld marker (nothing to check without the case).
    Withheld(WithheldPosition),
}

/// The stateless checks of a received batch, in order, on the calling
/// thread. A node runs them on all cores, outside its store lock; the
/// result is the same.
pub fn check(items: Vec<SyncItem>) -> Vec<Checked> {
    let entries: Vec<&[u8]> = items
        .iter()
        .filter_map(|i| match i {
            SyncItem::Entry(bytes) => Some(bytes.as_slice()),
            SyncItem::Withheld(_) => None,
        })
        .collect();
    let decoded = Entry::decode_many(&entries);
    zip_checked(items, decoded)
}

/// Puts the verdicts on a batch's entries back among its withheld markers,
/// in the batch's order.
pub fn zip_checked(items: Vec<SyncItem>, decoded: Vec<Result<Entry, Rejection>>) -> Vec<Checked> {
    let mut decoded = decoded.into_iter();
    items
        .into_iter()
        .map(|item| match item {
            SyncItem::Entry(_) => Checked::Entry(decoded.next().unwrap_or_else(|| {
                Err(Rejection {
                    entry: None,
                    kind: RejectKind::Malformed("internal: no verdict".into()),
                })
            })),
            SyncItem::Withheld(w) => Checked::Withheld(w),
        })
        .collect()
}

/// What storing one batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    /// Entries (or withheld positions) newly stored, in order.
    pub stored: Vec<EntryId>,
    /// Items already present.
    pub duplicates: usize,
    /// Items refused, with the reason.
    pub refused: Vec<Rejection>,
    /// Equivocations found (proofs stored).
    pub proofs: Vec<EquivocationProof>,
    /// (author, seq) of every item now held (stored or duplicate).
    pub positions: Vec<(AgencyId, u64)>,
    /// Withheld markers not taken because their sender is not a member of
    /// the case.
    pub ignored: usize,
}

/// The storage side of [`apply_batch`]: where a batch's validators live
/// and where accepted items, found proofs and the entries they need are
/// written and read. A node implements it over SQLite inside its write
/// transaction; [`MemoryReplica`] in memory.
pub trait BatchStore {
    /// A storage failure.
    type Error;

    /// The validator of a case held, or a fresh one for a case not held
    /// yet when `open` is set (the batch may carry its genesis).
    fn validator(&mut self, case: &CaseId, open: bool) -> Option<&mut Validator>;

    /// [`BatchStore::validator`] with the key logs entries of format
    /// version 2 are checked against (SPEC.md §8.2, V20 to V24). Without
    /// key logs (the default), such entries wait (V20).
    fn keyed_validator(
        &mut self,
        case: &CaseId,
        open: bool,
    ) -> Option<(&mut Validator, &dyn KeyLogs)> {
        self.validator(case, open)
            .map(|v| (v, &NoKeyLogs as &dyn KeyLogs))
    }

    /// Forgets a validator made for a case that the batch did not open.
    fn forget_unopened(&mut self, case: &CaseId);

    /// Stores an entry the validator accepted (`how`: new, or revealing a
    /// withheld position).
    fn insert_entry(&mut self, entry: &Entry, how: Applied, now_ms: u64)
        -> Result<(), Self::Error>;

    /// Stores a withheld position the validator accepted.
    fn insert_withheld(
        &mut self,
        case: &CaseId,
        w: &WithheldPosition,
        now_ms: u64,
    ) -> Result<(), Self::Error>;

    /// The entry held with this id, if its bytes are held.
    fn held_entry(&mut self, id: &EntryId) -> Result<Option<Entry>, Self::Error>;

    /// Stores a proof found while applying; whether it is new and kept.
    fn insert_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
    ) -> Result<bool, Self::Error>;
}

/// Applies one received batch of a case, in order, each item seeing the
/// ones before it (SPEC.md §9.8): the one procedure behind every store.
/// Entries of another case are refused (`wrong-case`); an entry at a
/// position that holds another becomes an equivocation proof, built from
/// the entry held and the one offered. With `markers_from`, withheld
/// markers are taken only if that agency is a member of the case when the
/// batch starts (a marker is unsigned: only a member's word counts); the
/// others are counted in `ignored`.
pub fn apply_batch<S: BatchStore>(
    store: &mut S,
    case: &CaseId,
    items: Vec<Checked>,
    markers_from: Option<&AgencyId>,
    now_ms: u64,
) -> Result<BatchOutcome, S::Error> {
    let markers_taken =
        markers_from.is_none_or(|p| store.validator(case, false).is_some_and(|v| v.is_member(p)));
    let mut out = BatchOutcome::default();
    for item in items {
        match item {
            Checked::Entry(Err(r)) => out.refused.push(r),
            Checked::Entry(Ok(entry)) => {
                if entry.case_id() != *case {
                    out.refused.push(Rejection {
                        entry: Some(entry.id()),
                        kind: RejectKind::WrongCase(format!("sent in a batch of case {case}")),
                    });
                    continue;
                }
                let Some((v, keys)) = store.keyed_validator(case, true) else {
                    continue;
                };
                if !v.knows(&entry.id()) {
                    if let Err(r) = refuse_revoked(&entry, keys) {
                        out.refused.push(r);
                        continue;
                    }
                }
                match v.apply_keyed(&entry, now_ms, keys) {
                    Ok(Applied::Duplicate) => {
                        out.duplicates += 1;
                        out.positions.push((entry.author(), entry.seq()));
                    }
                    Ok(how) => {
                        store.insert_entry(&entry, how, now_ms)?;
                        out.stored.push(entry.id());
                        out.positions.push((entry.author(), entry.seq()));
                    }
                    Err(r) => {
                        if let RejectKind::Equivocation {
                            existing: Some(existing),
                            ..
                        } = &r.kind
                        {
                            if let Some(first) = store.held_entry(existing)? {
                                let proof = EquivocationProof::new(&first, &entry);
                                if store.insert_proof(case, &proof)? {
                                    out.proofs.push(proof);
                                }
                            }
                        }
                        out.refused.push(r);
                    }
                }
            }
            Checked::Withheld(_) if !markers_taken => out.ignored += 1,
            Checked::Withheld(w) => {
                let Some(v) = store.validator(case, false) else {
                    out.refused.push(Rejection {
                        entry: Some(w.id),
                        kind: RejectKind::WrongCase(
                            "a withheld position cannot precede the genesis".into(),
                        ),
                    });
                    continue;
                };
                match v.apply_withheld(w) {
                    Ok(Applied::Duplicate) => {
                        out.duplicates += 1;
                        out.positions.push((w.author, w.seq));
                    }
                    Ok(_) => {
                        store.insert_withheld(case, &w, now_ms)?;
                        out.stored.push(w.id);
                        out.positions.push((w.author, w.seq));
                    }
                    Err(r) => out.refused.push(r),
                }
            }
        }
    }
    store.forget_unopened(case);
    Ok(out)
}

/// A stored row's place, without its bytes: what a sender needs to decide
/// whether to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowHead {
    /// Insertion order in the replica (ascending, not necessarily dense).
    pub pos: i64,
    /// The entry id.
    pub id: EntryId,
    /// The author.
    pub author: AgencyId,
    /// The sequence number.
    pub seq: u64,
    /// Held only as a withheld position (no bytes).
    pub withheld: bool,
}

/// The case data a session reads and writes. Every method answers at once
/// (the node calls them under its store lock). A method that fails with
/// [`Replica::Error`] fails the session with a storage error; the peer may
/// retry later.
pub trait Replica {
    /// A storage failure.
    type Error: fmt::Display;

    /// Whether the node may still send anything to `peer` (SPEC.md §9.2).
    /// A node re-reads its store and its pins here: a peer removed since
    /// the last answer gets nothing more.
    fn may_serve(&mut self, peer: &AgencyId) -> bool;

    /// The cases held.
    fn cases(&self) -> Vec<CaseId>;

    /// The validator of a case held.
    fn case(&self, case: &CaseId) -> Option<&Validator>;

    /// The heads held of a case, ascending by author, at most
    /// [`MAX_HEADS`].
    fn heads(&self, case: &CaseId) -> Vec<Head> {
        heads_of(self.case(case))
    }

    /// Up to `limit` rows of a case after position `pos`, in order.
    fn row_heads_after(
        &mut self,
        case: &CaseId,
        pos: i64,
        limit: usize,
    ) -> Result<Vec<RowHead>, Self::Error>;

    /// The bytes of the row at `pos`, checked against `id`; None if the
    /// row is damaged (it is never served).
    fn row_bytes(&mut self, pos: i64, id: &EntryId) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Validates and stores batches in order, atomically: when this
    /// returns Ok, everything in every outcome's `stored` is durable.
    /// Withheld markers are taken only if `from` is a member of the case.
    fn receive(
        &mut self,
        batches: Vec<(CaseId, Vec<Checked>)>,
        from: &AgencyId,
        now_ms: u64,
    ) -> Result<Vec<BatchOutcome>, Self::Error>;

    /// Takes an equivocation proof `from` sent, if the rules of SPEC.md
    /// §9.11 allow: `Ok(Ok(true))` if new and stored.
    fn receive_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
        from: &AgencyId,
    ) -> Result<Result<bool, ProofRefusal>, Self::Error>;

    /// The proofs held for a case.
    fn proofs(&mut self, case: &CaseId) -> Result<Vec<EquivocationProof>, Self::Error>;

    /// A member peer said what it holds of this agency's own chain (None:
    /// nothing). A node compares it with its own head (SPEC.md §9.14).
    fn own_head_seen(
        &mut self,
        case: &CaseId,
        peer: &AgencyId,
        head: Option<(u64, EntryId)>,
    ) -> Result<(), Self::Error> {
        let _ = (case, peer, head);
        Ok(())
    }

    /// The key log held of `agency` (SPEC.md §3.4), if any.
    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog> {
        let _ = agency;
        None
    }

    /// Applies statements of `agency`'s key log that a peer sent, in order,
    /// to the log held (as [`crate::keylog::receive`] does), and stores
    /// what changed, with a fork's proof: atomically, like a batch.
    fn receive_key_statements(
        &mut self,
        agency: &AgencyId,
        items: &[Vec<u8>],
    ) -> Result<crate::keylog::Received, Self::Error> {
        let _ = (agency, items);
        Ok(crate::keylog::Received::default())
    }

    /// Whether the node pins `agency` as a peer: besides members of its
    /// cases, the agencies whose key logs it takes (SPEC.md §9.15).
    fn pins(&self, agency: &AgencyId) -> bool {
        let _ = agency;
        false
    }

    /// A peer holds this agency's own key log up to `len` statements, the
    /// last being `head` (SPEC.md §9.15): a node whose key log waits for
    /// confirmation compares it with its own.
    fn own_key_head_seen(
        &mut self,
        peer: &AgencyId,
        len: u64,
        head: &StatementId,
    ) -> Result<(), Self::Error> {
        let _ = (peer, len, head);
        Ok(())
    }

    /// A peer acknowledged holding this agency's chain up to `seq`.
    fn peer_acknowledged(
        &mut self,
        case: &CaseId,
        peer: &AgencyId,
        seq: u64,
    ) -> Result<(), Self::Error> {
        let _ = (case, peer, seq);
        Ok(())
    }
}

/// Whether `log` holds a statement `head` at position `len - 1` (the
/// peer's view of the log is a prefix of it, or all of it); a length of 0
/// is the empty prefix.
pub fn key_log_holds(log: Option<&KeyLog>, len: u64, head: &StatementId) -> bool {
    if len == 0 {
        return true;
    }
    log.and_then(|l| {
        usize::try_from(len - 1)
            .ok()
            .and_then(|i| l.statements().get(i))
    })
    .is_some_and(|s| s.id() == *head)
}

/// The heads of a validator, as sent in a `heads` message.
pub fn heads_of(v: Option<&Validator>) -> Vec<Head> {
    v.map(|v| {
        v.state()
            .heads
            .iter()
            .take(MAX_HEADS)
            .map(|(a, (seq, id))| Head(*a, *seq, *id))
            .collect()
    })
    .unwrap_or_default()
}

/// A replica in memory: the simulator's and the tests' store. It applies
/// the same rules as a node's store (the validator's), keeps every
/// accepted entry, and can be snapshotted and rolled back to model a
/// restored backup.
#[derive(Debug, Clone, Default)]
pub struct MemoryReplica {
    /// The agency whose replica this is (for the own-head check).
    me: Option<AgencyId>,
    /// Cases this agency may not write in: restored from an older state,
    /// and no member peer has yet shown that nothing of its own chain is
    /// missing (SPEC.md §9.14).
    held: BTreeSet<CaseId>,
    /// Of the held cases, those a member peer showed ahead on this
    /// agency's own chain: the position it holds. The hold ends once the
    /// replica holds that position too (SPEC.md §9.14).
    behind: BTreeMap<CaseId, u64>,
    cases: BTreeMap<CaseId, Validator>,
    rows: Vec<(CaseId, RowHead)>,
    /// Each case's rows, as indices into `rows`.
    by_case: BTreeMap<CaseId, Vec<usize>>,
    proofs: BTreeMap<CaseId, Vec<EquivocationProof>>,
    pins: BTreeSet<AgencyId>,
    acknowledged: BTreeMap<(CaseId, AgencyId), u64>,
    /// Key logs held, this agency's own included (SPEC.md §3.4).
    key_logs: BTreeMap<AgencyId, KeyLog>,
    /// Proofs that a root signed two statements at one position.
    key_forks: Vec<(KeyStatement, KeyStatement)>,
    /// Restored while holding its own key log: no statement until a peer
    /// shows that the log is not behind (SPEC.md §9.15).
    key_unconfirmed: bool,
}

/// A storage error of a [`MemoryReplica`] (it has none; the type exists
/// for the trait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl MemoryReplica {
    /// An empty replica that serves no one.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty replica of agency `me`'s node.
    pub fn of(me: AgencyId) -> Self {
        MemoryReplica {
            me: Some(me),
            ..Self::default()
        }
    }

    /// Models a restored backup: this replica becomes `older` (an earlier
    /// clone of it), keeping its pins, and every case is held until a
    /// member peer shows this agency's head there (SPEC.md §9.14).
    pub fn restore(&mut self, older: MemoryReplica) {
        let pins = std::mem::take(&mut self.pins);
        *self = older;
        self.pins = pins;
        self.held = self.cases.keys().copied().collect();
        self.key_unconfirmed = self.me.is_some_and(|me| self.key_logs.contains_key(&me));
    }

    /// The key log held of `agency`.
    pub fn key_log_of(&self, agency: &AgencyId) -> Option<&KeyLog> {
        self.key_logs.get(agency)
    }

    /// Every key log held.
    pub fn key_logs(&self) -> impl Iterator<Item = &KeyLog> {
        self.key_logs.values()
    }

    /// Appends a statement this agency signed to its own key log (starting
    /// it with an inception). Refused while the log waits for a peer's
    /// confirmation after a restore, like the node's guard.
    pub fn add_own_statement(&mut self, s: KeyStatement) -> Result<(), String> {
        if self.key_unconfirmed {
            return Err("the key log waits for confirmation".into());
        }
        let mut log = self.key_logs.get(&s.payload().agency).cloned();
        let agency = s.payload().agency;
        let r = crate::keylog::receive(&mut log, &agency, &[s.bytes().to_vec()]);
        match (r.refused, log) {
            (Some(e), _) => Err(e.to_string()),
            (None, Some(log)) => {
                self.key_logs.insert(agency, log);
                Ok(())
            }
            (None, None) => Err("no log".into()),
        }
    }

    /// Whether this agency's own key log waits for confirmation.
    pub fn key_log_unconfirmed(&self) -> bool {
        self.key_unconfirmed
    }

    /// The proofs held that a root signed two statements at one position.
    pub fn key_forks(&self) -> &[(KeyStatement, KeyStatement)] {
        &self.key_forks
    }

    /// Ends the holds whose missing entries of this agency's own chain
    /// have all arrived.
    fn settle_holds(&mut self) {
        let Some(me) = self.me else { return };
        let done: Vec<CaseId> = self
            .behind
            .iter()
            .filter(|(case, b)| self.cases.get(case).is_some_and(|v| v.next_seq(&me) > **b))
            .map(|(case, _)| *case)
            .collect();
        for case in done {
            self.behind.remove(&case);
            self.held.remove(&case);
        }
    }

    /// Models a store lost and started again empty with the same key and
    /// pins (the operator kept the folder's keys and configuration): no
    /// case, no proof, no key log of its own to confirm.
    pub fn lose(&mut self) {
        *self = MemoryReplica {
            me: self.me,
            pins: std::mem::take(&mut self.pins),
            ..Self::default()
        };
    }

    /// Whether this agency may write in a case now.
    pub fn may_write(&self, case: &CaseId) -> bool {
        !self.held.contains(case)
    }

    /// The payload agency `author` would write next in `case`, as the
    /// reference node writes it: the next position of its chain, and a
    /// reference to every other author's head. A RED payload needs its
    /// recipients set (`to`) before it is signed.
    pub fn next_payload(
        &self,
        author: AgencyId,
        case: &CaseId,
        body: Body,
        tlp: Tlp,
        now_ms: u64,
    ) -> Option<Payload> {
        let v = self.cases.get(case)?;
        let seq = v.next_seq(&author);
        let refs: Vec<EntryId> = v
            .state()
            .heads
            .iter()
            .filter(|(a, _)| **a != author)
            .take(MAX_REFS)
            .map(|(_, (_, id))| *id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Some(Payload {
            v: FORMAT_VERSION,
            keys: None,
            case: Some(*case),
            author,
            seq,
            prev: seq.checked_sub(1).and_then(|s| v.at(&author, s)),
            refs,
            time: now_ms,
            to: None,
            tlp,
            body,
        })
    }

    /// Signs and stores the next entry of `who` in `case` (or opens a new
    /// case when `case` is None and the body is case-opened).
    pub fn write(
        &mut self,
        who: &Identity,
        case: Option<&CaseId>,
        body: Body,
        tlp: Tlp,
        now_ms: u64,
    ) -> Result<Entry, Rejection> {
        let payload = match (case, body) {
            (None, Body::CaseOpened(o)) => Payload::genesis(who.agency(), now_ms, tlp, o),
            (Some(c), body) => self
                .next_payload(who.agency(), c, body, tlp, now_ms)
                .ok_or(Rejection {
                    entry: None,
                    kind: RejectKind::WrongCase("a case this replica does not hold".into()),
                })?,
            (None, _) => {
                return Err(Rejection {
                    entry: None,
                    kind: RejectKind::WrongCase("only a case-opened body opens a case".into()),
                })
            }
        };
        let entry = Entry::sign(who, &payload);
        self.author(&entry, now_ms)?;
        Ok(entry)
    }

    /// Pins a peer: it may be served.
    pub fn pin(&mut self, peer: AgencyId) {
        self.pins.insert(peer);
    }

    /// Unpins a peer: it gets nothing more.
    pub fn unpin(&mut self, peer: &AgencyId) {
        self.pins.remove(peer);
    }

    /// Whether a peer is pinned.
    pub fn pinned(&self, peer: &AgencyId) -> bool {
        self.pins.contains(peer)
    }

    /// Stores an entry this agency wrote (or any valid entry), as a node
    /// does when its operator writes one.
    pub fn author(&mut self, entry: &Entry, now_ms: u64) -> Result<Applied, Rejection> {
        let case = entry.case_id();
        let v = self.cases.entry(case).or_default();
        let r = v.apply(entry, now_ms);
        if matches!(r, Ok(Applied::New)) {
            self.push_row(case, entry.id(), entry.author(), entry.seq(), false);
        }
        if self.cases.get(&case).is_some_and(|v| v.case().is_none()) {
            self.cases.remove(&case);
        }
        r
    }

    /// Every id held of a case (entries and withheld positions).
    pub fn ids(&self, case: &CaseId) -> BTreeSet<EntryId> {
        self.by_case
            .get(case)
            .map(|mine| mine.iter().map(|&i| self.rows[i].1.id).collect())
            .unwrap_or_default()
    }

    /// Every id held as an entry, with its bytes (not withheld).
    pub fn entries(&self, case: &CaseId) -> Vec<&Entry> {
        let Some(v) = self.cases.get(case) else {
            return Vec::new();
        };
        self.by_case
            .get(case)
            .map(|mine| {
                mine.iter()
                    .map(|&i| &self.rows[i].1)
                    .filter(|r| !r.withheld)
                    .filter_map(|r| v.entry(&r.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The proofs held of a case.
    pub fn proofs_of(&self, case: &CaseId) -> &[EquivocationProof] {
        self.proofs.get(case).map_or(&[], Vec::as_slice)
    }

    /// The highest sequence number of this agency's chain a peer
    /// acknowledged.
    pub fn acknowledged(&self, case: &CaseId, peer: &AgencyId) -> Option<u64> {
        self.acknowledged.get(&(*case, *peer)).copied()
    }

    /// How many rows are held, over all cases.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn push_row(&mut self, case: CaseId, id: EntryId, author: AgencyId, seq: u64, withheld: bool) {
        let pos = self.rows.len() as i64 + 1;
        self.by_case.entry(case).or_default().push(self.rows.len());
        self.rows.push((
            case,
            RowHead {
                pos,
                id,
                author,
                seq,
                withheld,
            },
        ));
    }
}

impl BatchStore for MemoryReplica {
    type Error = Never;

    fn validator(&mut self, case: &CaseId, open: bool) -> Option<&mut Validator> {
        self.keyed_validator(case, open).map(|(v, _)| v)
    }

    fn keyed_validator(
        &mut self,
        case: &CaseId,
        open: bool,
    ) -> Option<(&mut Validator, &dyn KeyLogs)> {
        let v = if open {
            self.cases.entry(*case).or_default()
        } else {
            self.cases.get_mut(case)?
        };
        Some((v, &self.key_logs))
    }

    fn forget_unopened(&mut self, case: &CaseId) {
        if self.cases.get(case).is_some_and(|v| v.case().is_none()) {
            self.cases.remove(case);
        }
    }

    fn insert_entry(&mut self, entry: &Entry, how: Applied, _now_ms: u64) -> Result<(), Never> {
        if how == Applied::Revealed {
            if let Some(mine) = self.by_case.get(&entry.case_id()) {
                for &i in mine {
                    if self.rows[i].1.id == entry.id() {
                        self.rows[i].1.withheld = false;
                    }
                }
            }
        } else {
            self.push_row(
                entry.case_id(),
                entry.id(),
                entry.author(),
                entry.seq(),
                false,
            );
        }
        Ok(())
    }

    fn insert_withheld(
        &mut self,
        case: &CaseId,
        w: &WithheldPosition,
        _now_ms: u64,
    ) -> Result<(), Never> {
        self.push_row(*case, w.id, w.author, w.seq, true);
        Ok(())
    }

    fn held_entry(&mut self, id: &EntryId) -> Result<Option<Entry>, Never> {
        Ok(self.cases.values().find_map(|v| v.entry(id)).cloned())
    }

    fn insert_proof(&mut self, case: &CaseId, proof: &EquivocationProof) -> Result<bool, Never> {
        // The same bound as a node's store (SPEC.md §9.11).
        let Ok(eq) = proof.check_keyed(&self.key_logs) else {
            return Ok(false);
        };
        let keys = &self.key_logs;
        let held = self.proofs.entry(*case).or_default();
        let about = held
            .iter()
            .filter(|p| p.check_keyed(keys).is_ok_and(|e| e.author == eq.author))
            .count();
        if eq.case != *case || about >= MAX_PROOFS_PER_AUTHOR || held.contains(proof) {
            return Ok(false);
        }
        held.push(proof.clone());
        Ok(true)
    }
}

impl Replica for MemoryReplica {
    type Error = Never;

    fn may_serve(&mut self, peer: &AgencyId) -> bool {
        self.pins.contains(peer)
    }

    fn cases(&self) -> Vec<CaseId> {
        self.cases.keys().copied().collect()
    }

    fn case(&self, case: &CaseId) -> Option<&Validator> {
        self.cases.get(case)
    }

    fn row_heads_after(
        &mut self,
        case: &CaseId,
        pos: i64,
        limit: usize,
    ) -> Result<Vec<RowHead>, Never> {
        let Some(mine) = self.by_case.get(case) else {
            return Ok(Vec::new());
        };
        let start = mine.partition_point(|&i| self.rows[i].1.pos <= pos);
        Ok(mine[start..]
            .iter()
            .take(limit)
            .map(|&i| self.rows[i].1.clone())
            .collect())
    }

    fn row_bytes(&mut self, pos: i64, id: &EntryId) -> Result<Option<Vec<u8>>, Never> {
        let Some((case, row)) = usize::try_from(pos - 1).ok().and_then(|i| self.rows.get(i)) else {
            return Ok(None);
        };
        if row.id != *id {
            return Ok(None);
        }
        Ok(self
            .cases
            .get(case)
            .and_then(|v| v.entry(id))
            .map(|e| e.bytes().to_vec()))
    }

    fn receive(
        &mut self,
        batches: Vec<(CaseId, Vec<Checked>)>,
        from: &AgencyId,
        now_ms: u64,
    ) -> Result<Vec<BatchOutcome>, Never> {
        let out = batches
            .into_iter()
            .map(|(case, items)| {
                let Ok(out) = apply_batch(self, &case, items, Some(from), now_ms);
                out
            })
            .collect();
        self.settle_holds();
        Ok(out)
    }

    fn receive_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
        from: &AgencyId,
    ) -> Result<Result<bool, ProofRefusal>, Never> {
        let held = self.proofs.get(case).cloned().unwrap_or_default();
        let keys = &self.key_logs;
        let about = |a: &AgencyId| {
            held.iter()
                .filter(|p| p.check_keyed(keys).is_ok_and(|eq| eq.author == *a))
                .count()
        };
        if let Err(r) = admit_proof(case, proof, from, self.cases.get(case), keys, about) {
            return Ok(Err(r));
        }
        if held.contains(proof) {
            return Ok(Ok(false));
        }
        self.proofs.entry(*case).or_default().push(proof.clone());
        Ok(Ok(true))
    }

    fn proofs(&mut self, case: &CaseId) -> Result<Vec<EquivocationProof>, Never> {
        Ok(self.proofs.get(case).cloned().unwrap_or_default())
    }

    fn own_head_seen(
        &mut self,
        case: &CaseId,
        _peer: &AgencyId,
        head: Option<(u64, EntryId)>,
    ) -> Result<(), Never> {
        let (Some(me), Some(v)) = (self.me, self.cases.get(case)) else {
            return Ok(());
        };
        let next = v.next_seq(&me);
        match head {
            // The peer holds more of ours than this replica: hold until
            // those entries arrive, as a node does.
            Some((seq, _)) if seq >= next => {
                self.held.insert(*case);
                let b = self.behind.entry(*case).or_insert(seq);
                *b = (*b).max(seq);
            }
            // The peer holds nothing of ours this replica lacks: writing
            // on is safe, unless another peer showed it behind.
            _ => {
                if self.behind.get(case).is_none_or(|b| *b < next) {
                    self.held.remove(case);
                    self.behind.remove(case);
                }
            }
        }
        Ok(())
    }

    fn key_log(&self, agency: &AgencyId) -> Option<&KeyLog> {
        self.key_logs.get(agency)
    }

    fn receive_key_statements(
        &mut self,
        agency: &AgencyId,
        items: &[Vec<u8>],
    ) -> Result<crate::keylog::Received, Never> {
        let mut log = self.key_logs.remove(agency);
        let got = crate::keylog::receive(&mut log, agency, items);
        if let Some(log) = log {
            self.key_logs.insert(*agency, log);
        }
        if let Some(fork) = &got.fork {
            self.key_forks.push(fork.clone());
        }
        Ok(got)
    }

    fn pins(&self, agency: &AgencyId) -> bool {
        self.pins.contains(agency)
    }

    fn own_key_head_seen(
        &mut self,
        _peer: &AgencyId,
        len: u64,
        head: &StatementId,
    ) -> Result<(), Never> {
        let Some(me) = self.me else { return Ok(()) };
        if self.key_unconfirmed && key_log_holds(self.key_logs.get(&me), len, head) {
            self.key_unconfirmed = false;
        }
        Ok(())
    }

    fn peer_acknowledged(&mut self, case: &CaseId, peer: &AgencyId, seq: u64) -> Result<(), Never> {
        let e = self.acknowledged.entry((*case, *peer)).or_insert(seq);
        *e = (*e).max(seq);
        Ok(())
    }
}
