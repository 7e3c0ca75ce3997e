//! The sync session (SPEC.md §9) as a state machine, in the style of
//! quinn-proto's `Connection`: no sockets, no clock, no tasks.
//!
//! A [`Session`] is one connection's worth of protocol state with one
//! peer. Its inputs are the messages the peer sent ([`Session::handle`],
//! [`Session::receive_entries`]), changes to the case data
//! ([`Session::changed`]), and time ([`Session::tick`]); it reads and
//! writes case data through a [`Replica`]. Its outputs are messages to
//! send ([`Session::poll_transmit`]) and events for the node to act on or
//! log ([`Session::poll_event`]). The node's daemon is socket, store and
//! timer glue around it; tests and the federation simulator drive it in
//! memory, byte for byte.
//!
//! What it decides: the hello and version check (§9.3), which cases to
//! announce and to whom (§9.4), what the peer lacks and in which batches
//! (§9.5), the flow-control window (§9.6), fork detection from heads
//! (§9.10), which proofs to send and take (§9.11), when to ask again for
//! entries refused as transient (§9.7), and that a removed peer gets
//! nothing (§9.2).

mod replica;

use std::collections::{BTreeMap, VecDeque};

pub use replica::{
    apply_batch, check, heads_of, key_log_holds, zip_checked, BatchOutcome, BatchStore, Checked,
    MemoryReplica, Never, Replica, RowHead,
};

use crate::body::Head;
use crate::entry::Entry;
use crate::equivocation::{EquivocationProof, ProofRefusal};
use crate::error::Rejection;
use crate::ids::{AgencyId, CaseId, EntryId, StatementId};
use crate::keylog::KeyLogError;
use crate::state::WithheldPosition;
use crate::sync::{
    Ack, Entries, EquivocationNotice, ErrorCode, Heads, Hello, Item as SyncItem, KeyHead, KeyHeads,
    KeyStatements, Message, Summary, SyncError, MAX_BATCH, MAX_KEY_BATCH, MAX_UNACKED_BATCHES,
    SYNC_VERSIONS,
};
use crate::validate::Validator;

/// A batch is closed once it holds this many bytes of entries (a frame
/// stays far below `MAX_FRAME` whatever the entries' sizes).
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Delay before asking a peer again for entries refused as transient, ms.
pub const RESYNC_MS: u64 = 2_000;
/// At most this many re-requests in a row without progress (an entry that
/// stays refused does not make a peer resend forever).
pub const MAX_RESYNCS: u32 = 5;
/// Equivocation proofs refused on one connection before the rest of its
/// proofs are dropped unchecked (SPEC.md §9.11).
pub const MAX_REFUSED_PROOFS: usize = 64;
/// `key-statements` messages refused, or ignored, on one connection before
/// the rest are dropped unchecked (SPEC.md §9.15).
pub const MAX_REFUSED_KEY_MESSAGES: usize = 64;
/// At most this many statements of another agency's key log are kept
/// (SPEC.md §9.15): every node verifies the logs it holds when it opens its
/// store, so a member that signs statements without end must not make its
/// partners' nodes slower without end. Decades of an agency's officers
/// fit far below it.
pub const MAX_KEPT_KEY_LOG: u64 = 16_384;
/// A `key-statements` message is closed once it holds this many bytes
/// (statements are at most 4,096 bytes each).
pub const KEY_BATCH_BYTES: usize = 256 * 1024;

/// Why a session ends with an error (SPEC.md §9.12). Each has its wire
/// code ([`SessionError::code`]); the text is for the peer and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A frame that does not decode, or is over a limit.
    #[error(transparent)]
    Frame(#[from] SyncError),
    /// A message before the peer's hello.
    #[error("message before hello")]
    BeforeHello,
    /// A second hello.
    #[error("second hello")]
    SecondHello,
    /// The hello names another agency than the authenticated one.
    #[error("hello names another agency than the authenticated one")]
    WrongAgency,
    /// No sync version in common.
    #[error("no common sync version (this node speaks {SYNC_VERSIONS:?})")]
    NoCommonVersion,
    /// A `summary` in sync version 1, or a second one.
    #[error("a summary that was not expected (version 2 sends one, once)")]
    UnexpectedSummary,
    /// A `key-heads` or `key-statements` message in sync version 1 or 2.
    #[error("a key log message in sync version {0} (version 3 has them)")]
    UnexpectedKeys(u64),
    /// More unacknowledged `entries` messages than the window allows.
    #[error("{0} entries messages unacknowledged (limit {MAX_UNACKED_BATCHES})")]
    FlowControl(u64),
    /// The node's storage failed; the peer may retry later. The text is
    /// the node's, for its log; the peer is told only "storage failure".
    #[error("storage failure: {0}")]
    Storage(String),
}

impl SessionError {
    /// The wire code to report and close with.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::Frame(e) => e.code(),
            SessionError::BeforeHello
            | SessionError::SecondHello
            | SessionError::WrongAgency
            | SessionError::UnexpectedSummary
            | SessionError::UnexpectedKeys(_) => ErrorCode::ProtocolViolation,
            SessionError::NoCommonVersion => ErrorCode::UnsupportedVersion,
            SessionError::FlowControl(_) => ErrorCode::FlowControl,
            SessionError::Storage(_) => ErrorCode::Internal,
        }
    }

    /// What the peer is told (the node's storage details stay local).
    pub fn to_peer(&self) -> String {
        match self {
            SessionError::Storage(_) => "storage failure".into(),
            other => other.to_string(),
        }
    }
}

/// Something the node acts on or logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A received batch stored new items durably (acknowledged already).
    Stored {
        /// The case.
        case: CaseId,
        /// The items newly stored, in order.
        ids: Vec<EntryId>,
        /// Items in the batch.
        of: usize,
        /// Some of the new entries are other agencies' and not witnesses:
        /// a witness of this agency is due (SPEC.md §9.9).
        witness_due: bool,
    },
    /// A received entry was refused; `transient` ones are asked for again.
    Refused {
        /// The case.
        case: CaseId,
        /// Why.
        rejection: Rejection,
        /// Whether it may be accepted later (out of order, ahead of the
        /// clock).
        transient: bool,
    },
    /// Withheld markers from a peer that is not a member were dropped.
    MarkersIgnored {
        /// The case.
        case: CaseId,
        /// How many.
        count: usize,
    },
    /// A new equivocation proof is held: found while storing entries
    /// (`from_peer` false), or sent by the peer and taken. The node sends
    /// it to its other sessions' peers that may see it
    /// ([`Session::offer_proof`]); when found here, to this peer too.
    Proof {
        /// The case.
        case: CaseId,
        /// The proof.
        proof: EquivocationProof,
        /// Whether this session's peer sent it.
        from_peer: bool,
    },
    /// A proof the peer sent was refused (SPEC.md §9.11).
    ProofRefused {
        /// The case.
        case: CaseId,
        /// Why.
        refusal: ProofRefusal,
    },
    /// The peer reached [`MAX_REFUSED_PROOFS`]: its further proofs are
    /// dropped unread.
    ProofLimit,
    /// The peer reported an error; the session is over.
    PeerError {
        /// Its code.
        code: u64,
        /// Its text (untrusted: escape before showing).
        message: String,
    },
    /// Statements of an agency's key log the peer sent were stored
    /// (SPEC.md §9.15). The node tells its other sessions, which send them
    /// on to their peers.
    KeysStored {
        /// Whose log.
        agency: AgencyId,
        /// Statements appended.
        new: usize,
        /// Statements a recovery rotation superseded.
        superseded: usize,
    },
    /// A statement the peer sent was refused; the rest of its message was
    /// not checked.
    KeysRefused {
        /// Whose log.
        agency: AgencyId,
        /// Why (untrusted text inside: escape before showing).
        error: KeyLogError,
        /// Statements after it, not checked.
        unchecked: usize,
    },
    /// A key log the node does not take from this peer: of an agency that
    /// is neither this one, the peer, a pinned peer nor a member of a case
    /// held.
    KeysIgnored {
        /// Whose log.
        agency: AgencyId,
        /// How many statements.
        count: usize,
    },
    /// The peer reached [`MAX_REFUSED_KEY_MESSAGES`]: its further key
    /// statements are dropped unread.
    KeyLimit,
    /// Another agency's log reached the bound this node keeps
    /// ([`MAX_KEPT_KEY_LOG`] unless [`Session::limit_key_logs`] set another):
    /// further statements of it are not taken.
    KeysOverLimit {
        /// Whose log.
        agency: AgencyId,
        /// Statements held of it.
        held: u64,
    },
    /// The peer is no longer pinned: the node closes the connection
    /// (code 0, "peer removed") and sends nothing more.
    PeerRemoved,
}

/// Per-case state of one session.
#[derive(Debug, Default, Clone)]
struct Cursor {
    /// We sent our heads for this case.
    heads_sent: bool,
    /// The peer's heads arrived: the next sequence number it needs, per
    /// author.
    peer_next: Option<BTreeMap<AgencyId, u64>>,
    /// Replica position up to which rows were considered.
    pos: i64,
    /// When to send our heads again so the peer re-offers refused entries.
    resync_at: Option<u64>,
    /// Re-requests since the last batch that stored something new.
    resyncs: u32,
    /// The proofs held for this case were sent on this connection.
    proofs_sent: bool,
    /// What the peer said it holds of this agency's own chain in a case
    /// the replica did not hold yet (a node whose store was lost, or new
    /// to the case): given to the replica once the case's first entries
    /// are stored and the peer is seen to be a member, before anything
    /// else happens, so the node is on hold before it could sign at a
    /// position it already used (SPEC.md §9.14).
    own_claim: Option<(u64, EntryId)>,
}

/// One sync session with one authenticated peer.
#[derive(Debug)]
pub struct Session {
    me: AgencyId,
    peer: AgencyId,
    /// The peer's hello arrived.
    hello: bool,
    /// Closed: nothing more is sent (peer removed, peer error, or our
    /// error).
    closed: bool,
    cases: BTreeMap<CaseId, Cursor>,
    /// `entries` messages sent and not yet acknowledged.
    in_flight: usize,
    /// The last batch number sent.
    batch: u64,
    /// Batches sent and not yet acknowledged: (batch, case, the peer's
    /// head of this agency's chain once it stores the batch).
    unacked: VecDeque<(u64, CaseId, Option<u64>)>,
    /// What the peer acknowledged of this agency's chain, per case, not
    /// yet given to the replica (on [`Session::tick`]).
    acked_own: BTreeMap<CaseId, u64>,
    /// Proofs the peer sent that were refused.
    refused_proofs: usize,
    /// `entries` messages received, and acknowledged.
    received: u64,
    acks_sent: u64,
    transmit: VecDeque<Message>,
    events: VecDeque<Event>,
    /// Set only by the simulator's self-test ([`Session::disable_member_check`]).
    skip_member_check: bool,
    /// The sync versions this side offers.
    versions: Vec<u64>,
    /// The version in use, once the peer's hello arrived.
    version: u64,
    /// Version 2: what this side summarised, until the peer's summary
    /// settles whether the heads must be exchanged.
    summary: Summarised,
    /// Version 3: what the peer holds of each key log (length, last
    /// statement), once its `key-heads` arrived; extended as statements
    /// are sent and received.
    key_view: Option<BTreeMap<AgencyId, (u64, StatementId)>>,
    /// `key-statements` messages refused or ignored.
    refused_keys: usize,
    /// Agencies whose logs this side asked for on this connection, by
    /// sending its key heads again, when they became members of a case it
    /// holds (their logs were not taken before: SPEC.md §9.15).
    asked_keys: std::collections::BTreeSet<AgencyId>,
    /// Statements of another agency's log this node keeps at most.
    max_kept_key_log: u64,
}

/// Where a version 2 session is with its summaries (SPEC.md §9.5.1).
#[derive(Debug, Default)]
enum Summarised {
    /// Not sent yet (or version 1).
    #[default]
    None,
    /// Sent: the digest and the heads it covers.
    Sent(Vec<u8>, Vec<(CaseId, Vec<Head>)>),
    /// The peer's arrived and was compared.
    Settled,
}

impl Session {
    /// A session of agency `me` with the authenticated `peer`. Its hello
    /// is the first message to send.
    pub fn new(me: AgencyId, peer: AgencyId) -> Session {
        Session::with_versions(me, peer, SYNC_VERSIONS)
    }

    /// A session that offers only some of the versions this implementation
    /// speaks (an older peer, in tests and the simulator). Versions it
    /// does not speak are left out.
    pub fn with_versions(me: AgencyId, peer: AgencyId, versions: &[u64]) -> Session {
        let versions: Vec<u64> = SYNC_VERSIONS
            .iter()
            .copied()
            .filter(|v| versions.contains(v))
            .collect();
        let mut s = Session {
            me,
            peer,
            hello: false,
            closed: false,
            cases: BTreeMap::new(),
            in_flight: 0,
            batch: 0,
            unacked: VecDeque::new(),
            acked_own: BTreeMap::new(),
            refused_proofs: 0,
            received: 0,
            acks_sent: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            skip_member_check: false,
            versions: versions.clone(),
            version: 0,
            summary: Summarised::None,
            key_view: None,
            refused_keys: 0,
            asked_keys: std::collections::BTreeSet::new(),
            max_kept_key_log: MAX_KEPT_KEY_LOG,
        };
        s.transmit.push_back(Message::Hello(Hello {
            versions,
            agency: me,
        }));
        s
    }

    /// Keeps at most `n` statements of another agency's key log instead of
    /// [`MAX_KEPT_KEY_LOG`] (SPEC.md §9.15 lets each node choose its bound).
    pub fn limit_key_logs(&mut self, n: u64) {
        self.max_kept_key_log = n;
    }

    /// The sync version in use (0 before the peer's hello).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Breaks this session on purpose: it serves non-members. Only for
    /// checking that the federation simulator catches a broken rule.
    #[cfg(feature = "fault-injection")]
    pub fn disable_member_check(&mut self) {
        self.skip_member_check = true;
    }

    /// Whether the peer counts as a member of a case here.
    fn member(&self, v: &Validator) -> bool {
        self.skip_member_check || v.is_member(&self.peer)
    }

    /// The peer.
    pub fn peer(&self) -> AgencyId {
        self.peer
    }

    /// Whether the session is over (nothing more will be sent).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// `entries` messages received and not yet acknowledged.
    pub fn unacknowledged(&self) -> u64 {
        self.received.saturating_sub(self.acks_sent)
    }

    /// Messages queued to send (bounded by the window: at most
    /// [`MAX_UNACKED_BATCHES`] batches, plus one `heads` per case and the
    /// acks of what was received).
    pub fn queued(&self) -> usize {
        self.transmit.len()
    }

    /// Handles one message from the peer. An `entries` message is checked
    /// here on the calling thread; a node that checks batches elsewhere
    /// (on all cores, outside its store lock) calls
    /// [`Session::receive_entries`] instead. An error ends the session:
    /// send [`Message::Error`] with its code and close.
    pub fn handle<R: Replica>(
        &mut self,
        msg: Message,
        replica: &mut R,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        if self.closed {
            return Ok(());
        }
        match msg {
            Message::Hello(h) => {
                if self.hello {
                    return Err(SessionError::SecondHello);
                }
                if h.agency != self.peer {
                    return Err(SessionError::WrongAgency);
                }
                let Some(version) = h
                    .versions
                    .iter()
                    .copied()
                    .filter(|v| self.versions.contains(v))
                    .max()
                else {
                    return Err(SessionError::NoCommonVersion);
                };
                self.hello = true;
                self.version = version;
                if version >= 3 {
                    self.send_key_heads(replica)?;
                }
                if version >= 2 {
                    self.send_summary(replica)?;
                } else {
                    self.announce(replica)?;
                }
            }
            Message::Error(e) => {
                self.closed = true;
                self.events.push_back(Event::PeerError {
                    code: e.code,
                    message: e.message,
                });
                return Ok(());
            }
            _ if !self.hello => return Err(SessionError::BeforeHello),
            Message::Heads(h) => self.on_heads(h, replica)?,
            Message::Entries(e) => {
                let items = check(e.items);
                return self.receive_entries(vec![(e.case, e.batch, items)], replica, now_ms);
            }
            Message::Ack(a) => self.ack(&a)?,
            Message::Equivocation(n) => self.on_proof(n, replica)?,
            Message::Summary(theirs) => self.on_summary(&theirs, replica)?,
            Message::KeyHeads(_) | Message::KeyStatements(_) if self.version < 3 => {
                return Err(SessionError::UnexpectedKeys(self.version))
            }
            Message::KeyHeads(k) => self.on_key_heads(k, replica)?,
            Message::KeyStatements(k) => self.on_key_statements(k, replica)?,
        }
        self.pump(replica)
    }

    /// Takes an acknowledgement without touching the replica (a node
    /// handles the acks queued behind a batch while it gathers a group
    /// commit).
    pub fn ack(&mut self, ack: &Ack) -> Result<(), SessionError> {
        if !self.hello {
            return Err(SessionError::BeforeHello);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        while let Some(&(batch, case, own)) = self.unacked.front() {
            if batch > ack.batch {
                break;
            }
            self.unacked.pop_front();
            if let (true, Some(seq)) = (batch == ack.batch && case == ack.case, own) {
                let e = self.acked_own.entry(case).or_insert(seq);
                *e = (*e).max(seq);
            }
        }
        Ok(())
    }

    /// Stores received batches (case, batch number, checked items) in one
    /// call to the replica (one durable commit), then acknowledges each,
    /// in order: nothing is acknowledged before it is stored.
    pub fn receive_entries<R: Replica>(
        &mut self,
        group: Vec<(CaseId, u64, Vec<Checked>)>,
        replica: &mut R,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        if self.closed {
            return Ok(());
        }
        if !self.hello {
            return Err(SessionError::BeforeHello);
        }
        self.received += group.len() as u64;
        let unacked = self.unacknowledged();
        if unacked > MAX_UNACKED_BATCHES as u64 {
            return Err(SessionError::FlowControl(unacked));
        }
        let labels: Vec<(CaseId, u64, usize)> = group
            .iter()
            .map(|(case, batch, items)| (*case, *batch, items.len()))
            .collect();
        let batches = group
            .into_iter()
            .map(|(case, _, items)| (case, items))
            .collect();
        let outcomes = replica
            .receive(batches, &self.peer, now_ms)
            .map_err(|e| SessionError::Storage(e.to_string()))?;
        for (outcome, (case, batch, n)) in outcomes.into_iter().zip(labels) {
            self.settle_own_claim(&case, replica)?;
            if outcome.ignored > 0 {
                self.events.push_back(Event::MarkersIgnored {
                    case,
                    count: outcome.ignored,
                });
            }
            // What the peer sent, it has: never echo it back.
            let cursor = self.cases.entry(case).or_default();
            if let Some(next) = cursor.peer_next.as_mut() {
                for (a, seq) in &outcome.positions {
                    let n = next.entry(*a).or_insert(0);
                    *n = (*n).max(seq + 1);
                }
            }
            // Entries refused for now (out of order, ahead of our clock)
            // are asked for again later by sending our heads again.
            if !outcome.stored.is_empty() {
                cursor.resyncs = 0;
            }
            let transient = outcome.refused.iter().any(|r| r.kind.is_transient());
            if transient && cursor.resyncs < MAX_RESYNCS {
                cursor.resyncs += 1;
                cursor.resync_at = Some(now_ms.saturating_add(RESYNC_MS));
            }
            for r in outcome.refused.iter() {
                self.events.push_back(Event::Refused {
                    case,
                    transient: r.kind.is_transient(),
                    rejection: r.clone(),
                });
            }
            self.acks_sent += 1;
            self.transmit.push_back(Message::Ack(Ack {
                case,
                batch,
                stored: (outcome.stored.len() + outcome.duplicates) as u64,
                refused: (outcome.refused.len() + outcome.ignored) as u64,
            }));
            if !outcome.stored.is_empty() {
                let me = self.me;
                let v = replica.case(&case);
                let witness_due = !outcome.stored.iter().all(|id| {
                    v.and_then(|v| v.meta(id))
                        .is_none_or(|m| m.witness || m.author == me)
                });
                self.events.push_back(Event::Stored {
                    case,
                    ids: outcome.stored.clone(),
                    of: n,
                    witness_due,
                });
            }
            if !outcome.stored.is_empty() && self.version >= 3 {
                self.ask_for_new_members_keys(&case, replica)?;
            }
            for proof in outcome.proofs {
                // Including to this peer: it holds only its own version.
                self.events.push_back(Event::Proof {
                    case,
                    proof: proof.clone(),
                    from_peer: false,
                });
                self.offer_proof(case, proof, replica);
            }
        }
        self.pump(replica)
    }

    /// The case data changed (this node wrote, or another session stored
    /// something): announce new cases and send what the peer lacks.
    pub fn changed<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if self.closed || !self.hello {
            return Ok(());
        }
        self.pump_keys(replica)?;
        // Version 2 announces nothing until the summaries are compared.
        if self.version >= 2 && !matches!(self.summary, Summarised::Settled) {
            return self.pump(replica);
        }
        self.announce(replica)?;
        self.pump(replica)
    }

    /// Time passed: sends heads again where refused entries are due to be
    /// offered again, and gives the replica what the peer acknowledged of
    /// this agency's chains (one small write per tick, not one per batch).
    pub fn tick<R: Replica>(&mut self, replica: &mut R, now_ms: u64) -> Result<(), SessionError> {
        if self.closed {
            return Ok(());
        }
        for (case, seq) in std::mem::take(&mut self.acked_own) {
            replica
                .peer_acknowledged(&case, &self.peer, seq)
                .map_err(|e| SessionError::Storage(e.to_string()))?;
        }
        let due: Vec<CaseId> = self
            .cases
            .iter()
            .filter(|(_, c)| c.resync_at.is_some_and(|t| t <= now_ms))
            .map(|(k, _)| *k)
            .collect();
        for case in due {
            if let Some(c) = self.cases.get_mut(&case) {
                c.resync_at = None;
            }
            if !self.serving(replica) {
                return Ok(());
            }
            let heads = match replica.case(&case) {
                Some(v) if v.is_member(&self.peer) => replica.heads(&case),
                _ => Vec::new(),
            };
            self.transmit
                .push_back(Message::Heads(Heads { case, heads }));
        }
        Ok(())
    }

    /// Sends a proof held for `case` to the peer if it may see it (a
    /// member allowed to see both entries). A proof it already holds is
    /// ignored there.
    pub fn offer_proof<R: Replica>(
        &mut self,
        case: CaseId,
        proof: EquivocationProof,
        replica: &mut R,
    ) {
        if self.closed || !self.hello {
            return;
        }
        if replica
            .case(&case)
            .is_some_and(|v| proof_visible(v, &proof, &self.peer))
        {
            self.transmit
                .push_back(Message::Equivocation(EquivocationNotice { case, proof }));
        }
    }

    /// Whether the peer may still be served; if not, the session closes
    /// and says so once.
    fn serving<R: Replica>(&mut self, replica: &mut R) -> bool {
        if self.closed {
            return false;
        }
        if replica.may_serve(&self.peer) {
            return true;
        }
        self.closed = true;
        self.transmit.clear();
        self.events.push_back(Event::PeerRemoved);
        false
    }

    fn on_heads<R: Replica>(&mut self, h: Heads, replica: &mut R) -> Result<(), SessionError> {
        let case = h.case;
        let serving = self.serving(replica);
        if !serving {
            return Ok(());
        }
        let v = replica.case(&case);
        // What the peer holds, per author. Where its head names another id
        // than ours at the same position, the author forked: send our
        // entry at that position so the peer can build the equivocation
        // proof (and it sends us its own).
        let peer_next: BTreeMap<AgencyId, u64> = h
            .heads
            .iter()
            .map(|Head(a, seq, id)| {
                let forked = v
                    .and_then(|v| v.at(a, *seq))
                    .is_some_and(|ours| ours != *id);
                (*a, if forked { *seq } else { seq + 1 })
            })
            .collect();
        // A non-member gets the same empty answer as for an unknown case:
        // it cannot tell whether this node holds the case.
        let member = v.is_some_and(|v| self.member(v));
        let ours = if member {
            replica.heads(&case)
        } else {
            Vec::new()
        };
        // What a member peer holds of this agency's own chain confirms the
        // replica's head, or shows it behind (SPEC.md §9.14).
        if member {
            let mine = h
                .heads
                .iter()
                .find(|h| h.0 == self.me)
                .map(|Head(_, seq, id)| (*seq, *id));
            replica
                .own_head_seen(&case, &self.peer, mine)
                .map_err(|e| SessionError::Storage(e.to_string()))?;
        }
        let unknown = replica.case(&case).is_none();
        let cursor = self.cases.entry(case).or_default();
        cursor.peer_next = Some(peer_next);
        cursor.pos = 0;
        if unknown {
            cursor.own_claim = h
                .heads
                .iter()
                .find(|h| h.0 == self.me)
                .map(|Head(_, seq, id)| (*seq, *id));
        }
        if !cursor.heads_sent {
            cursor.heads_sent = true;
            self.transmit
                .push_back(Message::Heads(Heads { case, heads: ours }));
        }
        Ok(())
    }

    /// Gives the replica what the peer said it holds of this agency's own
    /// chain in a case that was unknown when the peer's heads arrived,
    /// once the case is known and the peer a member of it.
    fn settle_own_claim<R: Replica>(
        &mut self,
        case: &CaseId,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        let claimed = self.cases.get(case).is_some_and(|c| c.own_claim.is_some());
        if !claimed || !replica.case(case).is_some_and(|v| self.member(v)) {
            return Ok(());
        }
        let claim = self.cases.get_mut(case).and_then(|c| c.own_claim.take());
        replica
            .own_head_seen(case, &self.peer, claim)
            .map_err(|e| SessionError::Storage(e.to_string()))
    }

    fn on_proof<R: Replica>(
        &mut self,
        n: EquivocationNotice,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        // Past the bound, a connection's proofs are dropped unread: a peer
        // cannot make the node verify signatures without limit.
        if self.refused_proofs >= MAX_REFUSED_PROOFS {
            return Ok(());
        }
        let fresh = replica
            .receive_proof(&n.case, &n.proof, &self.peer)
            .map_err(|e| SessionError::Storage(e.to_string()))?;
        match fresh {
            Ok(true) => self.events.push_back(Event::Proof {
                case: n.case,
                proof: n.proof,
                from_peer: true,
            }),
            Ok(false) => {}
            Err(refusal) => {
                self.refused_proofs += 1;
                self.events
                    .push_back(if self.refused_proofs == MAX_REFUSED_PROOFS {
                        Event::ProofLimit
                    } else {
                        Event::ProofRefused {
                            case: n.case,
                            refusal,
                        }
                    });
            }
        }
        Ok(())
    }

    /// The cases this side would announce to the peer, with their heads,
    /// ascending by case.
    fn shared<R: Replica>(&self, replica: &R) -> Vec<(CaseId, Vec<Head>)> {
        replica
            .cases()
            .into_iter()
            .filter(|c| replica.case(c).is_some_and(|v| self.member(v)))
            .map(|c| {
                let h = replica.heads(&c);
                (c, h)
            })
            .collect()
    }

    /// Version 2: sends one digest of everything this side would announce
    /// (SPEC.md §9.5.1).
    fn send_summary<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if !self.serving(replica) {
            return Ok(());
        }
        let mut shared = self.shared(replica);
        shared.sort_by_key(|(case, _)| *case);
        let digest = summary_digest(&shared);
        self.transmit.push_back(Message::Summary(Summary {
            cases: shared.len() as u64,
            digest: digest.clone(),
        }));
        self.summary = Summarised::Sent(digest, shared);
        Ok(())
    }

    /// Version 2: the peer's summary. The same two digests are compared on
    /// both sides, so both reach the same decision: equal, and each takes
    /// the other's heads to be its own (nothing more is sent unless
    /// something changes); different, and both announce as in version 1.
    fn on_summary<R: Replica>(
        &mut self,
        theirs: &Summary,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        let Summarised::Sent(ours, shared) =
            std::mem::replace(&mut self.summary, Summarised::Settled)
        else {
            return Err(SessionError::UnexpectedSummary);
        };
        if theirs.digest != ours || theirs.cases != shared.len() as u64 {
            return self.announce(replica);
        }
        for (case, heads) in shared {
            // The peer holds exactly these heads, this agency's own
            // included: the same confirmation a `heads` message gives
            // (SPEC.md §9.14).
            let mine = heads
                .iter()
                .find(|h| h.0 == self.me)
                .map(|Head(_, seq, id)| (*seq, *id));
            replica
                .own_head_seen(&case, &self.peer, mine)
                .map_err(|e| SessionError::Storage(e.to_string()))?;
            let cursor = self.cases.entry(case).or_default();
            if !cursor.heads_sent {
                cursor.heads_sent = true;
                cursor.peer_next =
                    Some(heads.iter().map(|Head(a, seq, _)| (*a, seq + 1)).collect());
                cursor.pos = 0;
            }
        }
        // Anything that changed since the summary was taken goes now.
        self.announce(replica)
    }

    /// Sends our heads for every case the peer may see and has not heard
    /// of on this connection.
    fn announce<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if !self.serving(replica) {
            return Ok(());
        }
        for case in replica.cases() {
            if self.cases.get(&case).is_some_and(|c| c.heads_sent) {
                continue;
            }
            if !replica.case(&case).is_some_and(|v| self.member(v)) {
                continue;
            }
            let heads = replica.heads(&case);
            self.cases.entry(case).or_default().heads_sent = true;
            self.transmit
                .push_back(Message::Heads(Heads { case, heads }));
        }
        Ok(())
    }

    /// The agencies whose key logs this side shares with the peer
    /// (SPEC.md §9.15): its own, the peer's, and those of the members
    /// (active or removed) of every case it would announce to the peer;
    /// of these, the ones it holds.
    fn shared_key_logs<R: Replica>(&self, replica: &R) -> Vec<AgencyId> {
        let mut agencies: std::collections::BTreeSet<AgencyId> = [self.me, self.peer].into();
        for case in replica.cases() {
            if let Some(v) = replica.case(&case).filter(|v| self.member(v)) {
                agencies.extend(v.state().members.keys().copied());
            }
        }
        agencies
            .into_iter()
            .filter(|a| replica.key_log(a).is_some())
            .collect()
    }

    /// Whether this side takes key statements of `agency` from the peer:
    /// its own log, the peer's, a pinned agency's, or a member's of a
    /// case it holds. Anything else would let a peer fill the store with
    /// logs of made-up agencies.
    fn takes_key_log<R: Replica>(&self, replica: &R, agency: &AgencyId) -> bool {
        *agency == self.me
            || *agency == self.peer
            || replica.pins(agency)
            || replica.cases().iter().any(|c| {
                replica
                    .case(c)
                    .is_some_and(|v| v.state().members.contains_key(agency))
            })
    }

    /// Version 3: tells the peer which key logs this side holds, right
    /// after the hello.
    fn send_key_heads<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if !self.serving(replica) {
            return Ok(());
        }
        let logs = self
            .shared_key_logs(replica)
            .into_iter()
            .filter_map(|a| replica.key_log(&a).map(|l| KeyHead(a, l.len(), l.head())))
            .take(crate::sync::MAX_KEY_HEADS)
            .collect();
        self.transmit
            .push_back(Message::KeyHeads(KeyHeads { logs }));
        Ok(())
    }

    fn on_key_heads<R: Replica>(
        &mut self,
        k: KeyHeads,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        let view: BTreeMap<AgencyId, (u64, StatementId)> = k
            .logs
            .iter()
            .map(|KeyHead(a, len, head)| (*a, (*len, *head)))
            .collect();
        // What the peer holds of this agency's own log confirms the store's
        // (or shows it behind: the statements then arrive below).
        if let Some((len, head)) = view.get(&self.me) {
            replica
                .own_key_head_seen(&self.peer, *len, head)
                .map_err(|e| SessionError::Storage(e.to_string()))?;
        }
        self.key_view = Some(view);
        self.pump_keys(replica)
    }

    fn on_key_statements<R: Replica>(
        &mut self,
        k: KeyStatements,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        // Past the bound, a connection's statements are dropped unread: a
        // peer cannot make the node verify signatures without limit.
        if self.refused_keys >= MAX_REFUSED_KEY_MESSAGES {
            return Ok(());
        }
        let agency = k.agency;
        if !self.takes_key_log(replica, &agency) {
            self.refused_keys += 1;
            self.events.push_back(Event::KeysIgnored {
                agency,
                count: k.items.len(),
            });
            return self.key_limit();
        }
        let held = replica.key_log(&agency).map_or(0, |l| l.len());
        if agency != self.me && held >= self.max_kept_key_log {
            self.refused_keys += 1;
            self.events.push_back(Event::KeysOverLimit { agency, held });
            return self.key_limit();
        }
        let storage = |e: R::Error| SessionError::Storage(e.to_string());
        let got = replica
            .receive_key_statements(&agency, &k.items)
            .map_err(storage)?;
        if got.changed() {
            self.events.push_back(Event::KeysStored {
                agency,
                new: got.new,
                superseded: got.superseded,
            });
        }
        let log = replica.key_log(&agency);
        if let (Some(log), Some((seq, head))) = (log, got.last) {
            let len = seq + 1;
            if key_log_holds(Some(log), len, &head) {
                self.key_view
                    .get_or_insert_with(BTreeMap::new)
                    .insert(agency, (len, head));
                if agency == self.me {
                    replica
                        .own_key_head_seen(&self.peer, len, &head)
                        .map_err(storage)?;
                }
            }
        }
        if let Some(error) = got.refused {
            self.refused_keys += 1;
            self.events.push_back(Event::KeysRefused {
                agency,
                error,
                unchecked: got.unchecked,
            });
            return self.key_limit();
        }
        Ok(())
    }

    /// A stored batch may have made new agencies members of `case`: their
    /// key logs, refused before as logs of strangers, are taken now. This
    /// side sends its key heads again (once per agency and connection), so
    /// the peer sends the logs it holds of them.
    fn ask_for_new_members_keys<R: Replica>(
        &mut self,
        case: &CaseId,
        replica: &mut R,
    ) -> Result<(), SessionError> {
        let Some(v) = replica.case(case) else {
            return Ok(());
        };
        let mut new = false;
        for a in v.state().members.keys() {
            if replica.key_log(a).is_none() && self.asked_keys.insert(*a) {
                new = true;
            }
        }
        if new {
            self.send_key_heads(replica)?;
        }
        Ok(())
    }

    fn key_limit(&mut self) -> Result<(), SessionError> {
        if self.refused_keys == MAX_REFUSED_KEY_MESSAGES {
            self.events.push_back(Event::KeyLimit);
        }
        Ok(())
    }

    /// Version 3: sends the statements of each shared key log that the
    /// peer lacks. Where the peer's last statement is one this side holds
    /// at the same position, it lacks what follows; otherwise (a log this
    /// side recovered, or one the peer forked) the whole log goes, and the
    /// peer's rules sort it out (duplicates, a recovery, or a fork).
    fn pump_keys<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if self.version < 3 || self.key_view.is_none() || !self.serving(replica) {
            return Ok(());
        }
        for agency in self.shared_key_logs(replica) {
            let Some(log) = replica.key_log(&agency) else {
                continue;
            };
            let Some(view) = self.key_view.as_mut() else {
                return Ok(());
            };
            let from = match view.get(&agency) {
                Some((len, head)) if key_log_holds(Some(log), *len, head) => *len,
                _ => 0,
            };
            if from >= log.len() {
                continue;
            }
            view.insert(agency, (log.len(), log.head()));
            let statements = log
                .statements()
                .get(usize::try_from(from).unwrap_or(usize::MAX)..)
                .unwrap_or_default();
            let mut items = Vec::new();
            let mut bytes = 0;
            for st in statements {
                if items.len() == MAX_KEY_BATCH || bytes >= KEY_BATCH_BYTES {
                    self.transmit
                        .push_back(Message::KeyStatements(KeyStatements {
                            agency,
                            items: std::mem::take(&mut items),
                        }));
                    bytes = 0;
                }
                bytes += st.bytes().len();
                items.push(st.bytes().to_vec());
            }
            if !items.is_empty() {
                self.transmit
                    .push_back(Message::KeyStatements(KeyStatements { agency, items }));
            }
        }
        Ok(())
    }

    /// Sends what the peer lacks, in bounded batches, while the window
    /// allows.
    fn pump<R: Replica>(&mut self, replica: &mut R) -> Result<(), SessionError> {
        if self.closed {
            return Ok(());
        }
        let cases: Vec<CaseId> = self
            .cases
            .iter()
            .filter(|(_, c)| c.heads_sent && c.peer_next.is_some())
            .map(|(k, _)| *k)
            .collect();
        for case in cases {
            while self.in_flight < MAX_UNACKED_BATCHES {
                // Rows written since the last look are served only once
                // the replica knows them, and nothing to a peer removed
                // meanwhile.
                if !self.serving(replica) {
                    return Ok(());
                }
                let Some(cursor) = self.cases.get(&case) else {
                    break;
                };
                let Some(mut next) = cursor.peer_next.clone() else {
                    break;
                };
                let pos = cursor.pos;
                let Some(v) = replica.case(&case) else { break };
                if !self.member(v) {
                    break;
                }
                let skip = self.skip_member_check;
                let (items, last) = next_batch(replica, &case, &self.peer, pos, &mut next, skip)?;
                let Some(cursor) = self.cases.get_mut(&case) else {
                    break;
                };
                if last == cursor.pos {
                    // Everything the peer lacked is sent. Once the peer
                    // has acknowledged it all, it holds the case, its
                    // members and every entry a proof's author needs: the
                    // proofs go now (SPEC.md §9.11), not before, or the
                    // peer could not take them.
                    if self.in_flight == 0 && !cursor.proofs_sent {
                        cursor.proofs_sent = true;
                        let proofs = replica
                            .proofs(&case)
                            .map_err(|e| SessionError::Storage(e.to_string()))?;
                        for proof in proofs {
                            self.offer_proof(case, proof, replica);
                        }
                    }
                    break;
                }
                cursor.pos = last;
                cursor.peer_next = Some(next);
                if items.is_empty() {
                    continue;
                }
                self.in_flight += 1;
                self.batch += 1;
                // What the peer holds of this agency's chain once it
                // acknowledges the batch.
                let own = cursor
                    .peer_next
                    .as_ref()
                    .and_then(|h| h.get(&self.me))
                    .and_then(|n| n.checked_sub(1));
                if self.unacked.len() < MAX_UNACKED_BATCHES * 4 {
                    self.unacked.push_back((self.batch, case, own));
                }
                self.transmit.push_back(Message::Entries(Entries {
                    case,
                    batch: self.batch,
                    items,
                }));
            }
        }
        Ok(())
    }
}

/// The next batch for `peer` of a case after replica position `pos`:
/// the items and the last position considered. `next` (what the peer
/// needs next, per author) is advanced past what the batch carries.
fn next_batch<R: Replica>(
    replica: &mut R,
    case: &CaseId,
    peer: &AgencyId,
    pos: i64,
    next: &mut BTreeMap<AgencyId, u64>,
    skip_member_check: bool,
) -> Result<(Vec<SyncItem>, i64), SessionError> {
    let storage = |e: R::Error| SessionError::Storage(e.to_string());
    // The rows' places first; bytes are read (and checked against their
    // ids) only for the entries sent.
    let rows = replica
        .row_heads_after(case, pos, MAX_BATCH)
        .map_err(storage)?;
    let mut items = Vec::new();
    let mut bytes_in_batch = 0usize;
    let mut last = pos;
    for row in rows {
        let (known, visible) = match replica.case(case) {
            Some(v) => {
                let (known, visible) = v.served(&row.author, row.seq, &row.id, peer);
                (known, skip_member_check || visible)
            }
            None => (false, false),
        };
        if !known {
            // Damaged (skipped at load): never served. Later entries of
            // its author could not be validated by the peer either, so
            // stop this batch here.
            break;
        }
        last = row.pos;
        let have = next.get(&row.author).copied().unwrap_or(0);
        if row.seq < have {
            continue;
        }
        let item = if visible && !row.withheld {
            match replica.row_bytes(row.pos, &row.id).map_err(storage)? {
                Some(b) => SyncItem::Entry(b),
                // Damaged since it was loaded: never served.
                None => continue,
            }
        } else {
            SyncItem::Withheld(WithheldPosition {
                author: row.author,
                seq: row.seq,
                id: row.id,
            })
        };
        next.insert(row.author, row.seq + 1);
        bytes_in_batch += match &item {
            SyncItem::Entry(b) => b.len() + 8,
            SyncItem::Withheld(_) => 80,
        };
        items.push(item);
        if items.len() == MAX_BATCH || bytes_in_batch >= BATCH_BYTES {
            break;
        }
    }
    Ok((items, last))
}

/// The digest of a version 2 summary: SHA-256 of the deterministic CBOR
/// array of `[case, heads]` pairs, ascending by case (SPEC.md §9.5.1).
pub fn summary_digest(shared: &[(CaseId, Vec<Head>)]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(crate::codec::to_vec(&shared)).to_vec()
}

/// Whether a peer may receive a proof: it carries both entries in full, so
/// the peer must be a member allowed to see both (a RED entry stays with
/// its addressees).
pub fn proof_visible(v: &Validator, proof: &EquivocationProof, peer: &AgencyId) -> bool {
    v.is_member(peer)
        && [&proof.0, &proof.1].iter().all(|b| {
            Entry::decode_unverified(b)
                .map(|u| u.assume_verified())
                .is_ok_and(|e| {
                    if v.knows(&e.id()) {
                        v.may_see(&e.id(), peer)
                    } else {
                        e.visible_to(peer)
                    }
                })
        })
}
