//! # custodia-sim
//!
//! A deterministic federation simulator. N agencies run Custodia's real
//! sync sessions ([`custodia_protocol::session::Session`]) and real
//! validation over an in-memory network under a seeded scheduler: every
//! message is encoded to its wire frame and decoded at the other end,
//! after a latency drawn from the seed. Faults: connections dropped,
//! partitions, node crashes and restarts (optionally from an older
//! backup), peers unpinned mid-session, members removed, frames
//! duplicated or swapped on a link, members whose node folder was cloned
//! (so they sign two histories), and agencies probing cases they are not
//! members of. After the run the invariants are checked ([`Report`]).
//!
//! The same seed gives the same run, message for message: a failing seed
//! reproduces exactly. The anchors are FoundationDB's simulation testing
//! and TigerBeetle's VOPR; the in-memory pair of sessions is quinn-proto's
//! `Pair` made federation-wide.
//!
//! QUIC hides packet loss, reordering and duplication below the stream a
//! session reads: what reaches the session level is a connection that
//! breaks, messages from different connections interleaved in any order,
//! the same entries arriving over several paths, and (from a hostile or
//! broken peer) frames out of order or repeated. Those are what is
//! simulated.

use std::collections::{BTreeMap, BTreeSet};

use custodia_protocol::session::{Event, MemoryReplica, Replica, Session};
use custodia_protocol::{
    AgencyId, Body, CaseId, CaseOpened, Entry, EntryId, Identity, MemberAdded, MemberRemoved,
    Message, Note, Role, Tlp,
};

/// A small deterministic generator (SplitMix64): the simulator's only
/// source of choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// How agencies are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every two members of a case pin each other.
    Mesh,
    /// Agencies connect only to their liaison desk (agency `i` to desk
    /// `i % hubs`); desks connect to each other. A desk is a member
    /// (role liaison) of every case one of its agencies is in, and relays.
    Liaisons {
        /// How many desks (agencies 0..hubs).
        hubs: usize,
    },
    /// Like [`Topology::Liaisons`], but the desks form a line (desk `i`
    /// connects to desk `i + 1` only): an entry crosses up to `hubs`
    /// desks, so the relay depth grows with their number.
    DeskChain {
        /// How many desks.
        hubs: usize,
    },
}

/// Faults to inject during the run.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Connections dropped at random moments.
    pub disconnects: usize,
    /// Network partitions (a random half cut off from the rest for a
    /// while).
    pub partitions: usize,
    /// Node crashes, each followed by a restart.
    pub crashes: usize,
    /// A crashed node restarts from its last backup (an older state), not
    /// from where it stopped.
    pub rollback: bool,
    /// Node crashes after which the node starts again on an empty store
    /// (the store file lost; its key and pins kept): it must get its own
    /// chain back from its partners before it signs anything.
    pub lost_stores: usize,
    /// Per frame, the probability that a link delivers it twice or after
    /// the next one (a broken or hostile peer's stream).
    pub garble: f64,
    /// Members of case 0 whose node folder was copied: two nodes with one
    /// key write two histories.
    pub equivocators: usize,
    /// Agencies pinned by members but not members of case 0, that ask for
    /// it anyway.
    pub intruders: usize,
    /// Members of case 0 removed from it mid-run.
    pub removals: usize,
    /// Peers unpinned by one of their partners mid-session.
    pub unpins: usize,
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agencies in the federation.
    pub agencies: usize,
    /// The seed.
    pub seed: u64,
    /// One case per element, with that many members (the opener
    /// included).
    pub cases: Vec<usize>,
    /// How agencies connect.
    pub topology: Topology,
    /// One-way latency per message, ms, drawn uniformly.
    pub latency_ms: (u64, u64),
    /// Notes written per case, by random members.
    pub writes: usize,
    /// Mean simulated time between two writes in a case, ms.
    pub write_interval_ms: u64,
    /// Faults.
    pub faults: Faults,
    /// Called on every new session (a test breaks a rule with it).
    pub session_hook: Option<fn(&mut Session)>,
    /// This many agencies (the highest-numbered) speak only sync version
    /// 1, the others versions 1 and 2: the federation mid-upgrade.
    pub old_nodes: usize,
    /// Simulated ms during which the case's setup (genesis, members)
    /// spreads before anyone writes; the traffic counters start after it,
    /// so the per-entry figures are those of new entries alone.
    pub warmup_ms: u64,
}

impl Config {
    /// A small federation with every kind of fault: what the test suite
    /// runs, a fraction of a second per seed.
    pub fn small(seed: u64) -> Config {
        Config {
            agencies: 8,
            seed,
            cases: vec![5, 4, 3],
            topology: Topology::Mesh,
            latency_ms: (1, 40),
            writes: 12,
            write_interval_ms: 300,
            faults: Faults {
                disconnects: 4,
                partitions: 1,
                crashes: 2,
                rollback: true,
                lost_stores: 1,
                garble: 0.002,
                equivocators: 1,
                intruders: 1,
                removals: 1,
                unpins: 1,
            },
            session_hook: None,
            old_nodes: 2,
            warmup_ms: 0,
        }
    }
}

/// What a run measured and what it found wrong.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Entries written by honest members.
    pub entries: usize,
    /// Per entry, the simulated ms until every member at the end held it.
    pub reach_all_ms: Vec<u64>,
    /// Frames sent, and their bytes (length prefixes included).
    pub frames: u64,
    /// Bytes of all frames.
    pub bytes: u64,
    /// Frames and bytes of `entries` messages alone.
    pub entry_frames: u64,
    /// Bytes of `entries` messages.
    pub entry_bytes: u64,
    /// Sum over cases of entries × (members − 1): the deliveries needed.
    pub deliveries: u64,
    /// Sessions that ended with an error, by wire code.
    pub session_errors: BTreeMap<u64, u64>,
    /// Connections opened.
    pub connections: u64,
    /// The largest send queue any session had.
    pub max_queue: usize,
    /// The longest path a written note took to a member, in connections
    /// crossed (1: straight from its author).
    pub max_hops: u32,
    /// How often each fault actually happened (a run whose faults did
    /// not bite proves little): crashes, restores of an older backup,
    /// partitions, dropped connections, unpins, removals, broken frames,
    /// equivocation proofs found, intruder probes.
    pub faults_seen: BTreeMap<&'static str, u64>,
    /// Invariant violations; empty when the run is correct.
    pub violations: Vec<String>,
}

impl Report {
    /// A percentile (0–100) of the reach-all times.
    pub fn reach_percentile(&self, p: f64) -> u64 {
        percentile(&self.reach_all_ms, p)
    }

    /// Frames per entry per member.
    pub fn frames_per_delivery(&self) -> f64 {
        self.frames as f64 / self.deliveries.max(1) as f64
    }

    /// Bytes per entry per member.
    pub fn bytes_per_delivery(&self) -> f64 {
        self.bytes as f64 / self.deliveries.max(1) as f64
    }
}

/// The `p`th percentile of some values.
pub fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The first time of the simulated clock (a plausible wall time, so the
/// validator's clock rules see ordinary times).
const T0: u64 = 1_800_000_000_000;
/// How long the faults and writes last, at most, before the network heals.
const ACTIVE_MS: u64 = 60_000;
/// After healing, how long the federation has to converge.
const SETTLE_MS: u64 = 60_000;

#[derive(Debug)]
enum Ev {
    Deliver {
        conn: u64,
        from: usize,
        to: usize,
        frame: Vec<u8>,
        hops: u32,
    },
    Write {
        case: usize,
    },
    Tick(usize),
    Dial(usize, usize),
    Drop(usize, usize),
    Crash(usize),
    Restart(usize),
    /// A restart on an empty store.
    RestartLost(usize),
    Backup(usize),
    Partition,
    Heal,
    Remove {
        case: usize,
        member: usize,
    },
    Unpin(usize, usize),
    Equivocate(usize),
    /// The warm-up is over: traffic counts from here.
    Count,
}

#[derive(Debug)]
struct Node {
    identity: Identity,
    replica: MemoryReplica,
    backup: Option<MemoryReplica>,
    up: bool,
    /// Open sessions, by peer node: (connection, session).
    sessions: BTreeMap<usize, (u64, Session)>,
    /// Nodes this one pins (by node index).
    pins: BTreeSet<usize>,
    /// A copy of another node's folder (same key): it equivocates.
    clone_of: Option<usize>,
    /// Asks for cases it is not a member of.
    intruder: bool,
    /// Restored from a backup at some point.
    rolled_back: bool,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: u64,
    /// When the last frame each way is delivered (a stream is in order).
    last: [u64; 2],
}

struct World {
    cfg: Config,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    conns: BTreeMap<(usize, usize), Conn>,
    next_conn: u64,
    /// Cut off from the rest (a partition), by node.
    cut: BTreeSet<usize>,
    cases: Vec<CaseInfo>,
    report: Report,
    /// When each honest entry was written, and in which case.
    written: BTreeMap<EntryId, (u64, usize)>,
    /// When each node first stored each entry, and over how many hops.
    /// With the number of nodes it passed through to get there.
    arrived: BTreeMap<(EntryId, usize), (u64, u32)>,
    /// Every entry an honest node stored from a peer (acknowledged), per
    /// case index, with who stored it when.
    ever: Vec<BTreeMap<EntryId, Vec<(usize, u64)>>>,
    /// Restores from an older backup: (node, when).
    rollbacks: Vec<(usize, u64)>,
    /// Pins withdrawn mid-run: (by, of, when).
    unpinned: Vec<(usize, usize)>,
    /// Agencies removed from a case: (case, node).
    removed: BTreeSet<(usize, usize)>,
    /// The entries a copied node and its original wrote at one position:
    /// (writer node, entry).
    forks: Vec<(usize, EntryId)>,
}

#[derive(Debug, Clone)]
struct CaseInfo {
    id: CaseId,
    /// Member nodes (the opener first), liaisons included.
    members: Vec<usize>,
    writes_left: usize,
}

/// Runs a simulation and checks its invariants.
pub fn run(cfg: Config) -> Report {
    let mut w = World::new(cfg);
    w.setup();
    let end = T0 + w.cfg.warmup_ms + ACTIVE_MS + SETTLE_MS;
    w.run_until(end);
    w.check();
    w.report
}

fn key(seed: u64, i: usize) -> Identity {
    let mut s = [0u8; 32];
    let mut r = Rng::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    for chunk in s.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    Identity::from_seed(s)
}

impl World {
    fn new(cfg: Config) -> World {
        let nodes = (0..cfg.agencies)
            .map(|i| {
                let identity = key(cfg.seed, i);
                Node {
                    replica: MemoryReplica::of(identity.agency()),
                    identity,
                    backup: None,
                    up: true,
                    sessions: BTreeMap::new(),
                    pins: BTreeSet::new(),
                    clone_of: None,
                    intruder: false,
                    rolled_back: false,
                }
            })
            .collect();
        World {
            rng: Rng::new(cfg.seed),
            cfg,
            now: T0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            conns: BTreeMap::new(),
            next_conn: 1,
            cut: BTreeSet::new(),
            cases: Vec::new(),
            report: Report::default(),
            written: BTreeMap::new(),
            arrived: BTreeMap::new(),
            forks: Vec::new(),
            ever: Vec::new(),
            unpinned: Vec::new(),
            removed: BTreeSet::new(),
            rollbacks: Vec::new(),
        }
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn saw(&mut self, fault: &'static str) {
        *self.report.faults_seen.entry(fault).or_default() += 1;
    }

    fn agency(&self, n: usize) -> AgencyId {
        self.nodes[n].identity.agency()
    }

    fn hub(&self, n: usize) -> Option<usize> {
        match self.cfg.topology {
            Topology::Mesh => None,
            Topology::Liaisons { hubs } | Topology::DeskChain { hubs } => Some(n % hubs.max(1)),
        }
    }

    fn pin(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (ka, kb) = (self.agency(a), self.agency(b));
        self.nodes[a].pins.insert(b);
        self.nodes[a].replica.pin(kb);
        self.nodes[b].pins.insert(a);
        self.nodes[b].replica.pin(ka);
    }

    fn setup(&mut self) {
        let n = self.cfg.agencies;
        // Cases: opener i, members drawn at random.
        for (ci, &size) in self.cfg.cases.clone().iter().enumerate() {
            let opener = ci % n;
            let mut members = vec![opener];
            while members.len() < size.min(n) {
                let m = self.rng.range(0, n as u64 - 1) as usize;
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            if self.cfg.topology != Topology::Mesh {
                for m in members.clone() {
                    if let Some(h) = self.hub(m) {
                        if !members.contains(&h) {
                            members.push(h);
                        }
                    }
                }
            }
            let opened = Body::CaseOpened(CaseOpened {
                title: format!("Case {ci}"),
                reference: format!("SIM-{ci}"),
                jurisdiction: None,
                name: format!("Agency {opener}"),
                country: "PH".into(),
            });
            let id = {
                let node = &mut self.nodes[opener];
                let e = node
                    .replica
                    .write(&node.identity, None, opened, Tlp::Amber, self.now)
                    .expect("a genesis of a fresh case");
                e.case_id()
            };
            for &m in &members[1..] {
                let body = Body::MemberAdded(MemberAdded {
                    agency: self.agency(m),
                    name: format!("Agency {m}"),
                    country: "DE".into(),
                    role: if self.hub(m) == Some(m) {
                        Role::Liaison
                    } else {
                        Role::Investigator
                    },
                });
                let node = &mut self.nodes[opener];
                node.replica
                    .write(&node.identity, Some(&id), body, Tlp::Amber, self.now)
                    .expect("a member added by the lead");
            }
            self.ever.push(BTreeMap::new());
            self.cases.push(CaseInfo {
                id,
                members,
                writes_left: self.cfg.writes,
            });
        }
        // Pins.
        for ci in 0..self.cases.len() {
            let members = self.cases[ci].members.clone();
            for &a in &members {
                for &b in &members {
                    if a < b {
                        match self.cfg.topology {
                            Topology::Mesh => self.pin(a, b),
                            Topology::Liaisons { .. } | Topology::DeskChain { .. } => {
                                let (ha, hb) = (self.hub(a), self.hub(b));
                                let desks = ha == Some(a) && hb == Some(b);
                                let line = !matches!(self.cfg.topology, Topology::DeskChain { .. })
                                    || b == a + 1;
                                if ha == Some(b) || hb == Some(a) || (desks && line) {
                                    self.pin(a, b);
                                }
                            }
                        }
                    }
                }
            }
        }
        // Hostile roles, all about case 0.
        let c0 = self.cases.first().cloned();
        if let Some(c0) = c0 {
            let f = self.cfg.faults.clone();
            // Equivocators: a member's node folder is copied to a new node
            // (same key, same store) that connects to half its partners.
            let candidates: Vec<usize> = c0.members[1..].to_vec();
            for &orig in candidates.iter().take(f.equivocators) {
                let twin = self.nodes.len();
                let node = Node {
                    identity: Identity::from_seed(self.nodes[orig].identity.seed()),
                    replica: self.nodes[orig].replica.clone(),
                    backup: None,
                    up: true,
                    sessions: BTreeMap::new(),
                    pins: BTreeSet::new(),
                    clone_of: Some(orig),
                    intruder: false,
                    rolled_back: false,
                };
                self.nodes.push(node);
                let partners: Vec<usize> = self.nodes[orig].pins.iter().copied().collect();
                for (i, p) in partners.into_iter().enumerate() {
                    if i % 2 == 1 {
                        // This partner now talks to the copy instead.
                        self.nodes[orig].pins.remove(&p);
                        let k = self.agency(orig);
                        self.nodes[p].pins.remove(&orig);
                        self.nodes[twin].pins.insert(p);
                        let kp = self.agency(p);
                        self.nodes[twin].replica.pin(kp);
                        self.nodes[p].pins.insert(twin);
                        self.nodes[p].replica.pin(k);
                    }
                }
                let t = self.now + self.rng.range(ACTIVE_MS / 4, ACTIVE_MS / 2);
                self.at(t, Ev::Equivocate(twin));
            }
            // Intruders: agencies outside case 0, pinned by a member.
            let outside: Vec<usize> = (0..n).filter(|a| !c0.members.contains(a)).collect();
            for &x in outside.iter().take(f.intruders) {
                self.nodes[x].intruder = true;
                let m = c0.members[self.rng.range(0, c0.members.len() as u64 - 1) as usize];
                self.pin(x, m);
            }
            for _ in 0..f.removals {
                let honest: Vec<usize> = c0.members[1..]
                    .iter()
                    .copied()
                    .filter(|m| !self.nodes.iter().any(|n| n.clone_of == Some(*m)))
                    .filter(|m| self.hub(*m) != Some(*m))
                    .collect();
                if let Some(&m) = honest.first() {
                    let t = self.now + self.rng.range(ACTIVE_MS / 4, ACTIVE_MS * 3 / 4);
                    self.at(t, Ev::Remove { case: 0, member: m });
                }
            }
        }
        let f = self.cfg.faults.clone();
        let nodes = self.nodes.len();
        for _ in 0..f.unpins {
            let a = self.rng.range(0, nodes as u64 - 1) as usize;
            if let Some(&b) = self.nodes[a].pins.iter().next() {
                let t = self.now + self.rng.range(ACTIVE_MS / 4, ACTIVE_MS * 3 / 4);
                self.at(t, Ev::Unpin(a, b));
            }
        }
        for _ in 0..f.disconnects {
            let a = self.rng.range(0, nodes as u64 - 1) as usize;
            if let Some(&b) = self.nodes[a].pins.iter().next() {
                let t = self.now + self.rng.range(1_000, ACTIVE_MS);
                self.at(t, Ev::Drop(a, b));
            }
        }
        for _ in 0..f.partitions {
            let t = self.now + self.rng.range(5_000, ACTIVE_MS / 2);
            self.at(t, Ev::Partition);
            let d = self.rng.range(2_000, 10_000);
            self.at(t + d, Ev::Heal);
        }
        for _ in 0..f.crashes {
            let a = self.rng.range(0, self.cfg.agencies as u64 - 1) as usize;
            let t = self.now + self.rng.range(5_000, ACTIVE_MS - 10_000);
            self.at(t.saturating_sub(3_000), Ev::Backup(a));
            self.at(t, Ev::Crash(a));
            let d = self.rng.range(500, 8_000);
            self.at(t + d, Ev::Restart(a));
        }
        for _ in 0..f.lost_stores {
            let a = self.rng.range(0, self.cfg.agencies as u64 - 1) as usize;
            let t = self.now + self.rng.range(5_000, ACTIVE_MS - 10_000);
            self.at(t, Ev::Crash(a));
            let d = self.rng.range(500, 8_000);
            self.at(t + d, Ev::RestartLost(a));
        }
        for ci in 0..self.cases.len() {
            let t =
                self.now + self.cfg.warmup_ms + self.rng.range(100, self.cfg.write_interval_ms * 2);
            self.at(t, Ev::Write { case: ci });
        }
        if self.cfg.warmup_ms > 0 {
            self.at(self.now + self.cfg.warmup_ms, Ev::Count);
        }
        for a in 0..nodes {
            let t = self.now + self.rng.range(0, 1_000);
            self.at(t, Ev::Tick(a));
            for b in self.nodes[a].pins.clone() {
                if a < b {
                    let t = self.now + self.rng.range(0, 50);
                    self.at(t, Ev::Dial(a, b));
                }
            }
        }
    }

    fn run_until(&mut self, end: u64) {
        while let Some((&(t, s), _)) = self.queue.first_key_value() {
            if t > end {
                break;
            }
            let Some(ev) = self.queue.remove(&(t, s)) else {
                break;
            };
            self.now = t;
            self.step(ev);
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                conn,
                from,
                to,
                frame,
                hops,
            } => self.deliver(conn, from, to, &frame, hops),
            Ev::Write { case } => self.write(case),
            Ev::Tick(a) => {
                if self.nodes[a].up {
                    let peers: Vec<usize> = self.nodes[a].sessions.keys().copied().collect();
                    for p in peers {
                        let now = self.now;
                        let r = self.with_session(a, p, |s, r| s.tick(r, now));
                        self.after(a, p, r, 0);
                    }
                }
                self.at(self.now + 1_000, Ev::Tick(a));
            }
            Ev::Dial(a, b) => self.dial(a, b),
            Ev::Drop(a, b) => {
                if self.conns.contains_key(&(a.min(b), a.max(b))) {
                    self.saw("dropped connection");
                }
                self.close(a, b)
            }
            Ev::Crash(a) => {
                self.saw("crash");
                let peers: Vec<usize> = self.nodes[a].sessions.keys().copied().collect();
                for p in peers {
                    self.close(a, p);
                }
                self.nodes[a].up = false;
            }
            Ev::Restart(a) => {
                if self.cfg.faults.rollback {
                    if let Some(b) = self.nodes[a].backup.take() {
                        self.nodes[a].replica.restore(b);
                        self.nodes[a].rolled_back = true;
                        self.rollbacks.push((a, self.now));
                        self.saw("restore of an older backup");
                    }
                }
                self.restart(a);
            }
            Ev::RestartLost(a) => {
                // Already up (two crashes overlapped): the loss waits for
                // a crash of its own.
                if !self.nodes[a].up {
                    self.nodes[a].replica.lose();
                    self.nodes[a].backup = None;
                    self.nodes[a].rolled_back = true;
                    self.rollbacks.push((a, self.now));
                    self.saw("store lost");
                    self.restart(a);
                }
            }
            Ev::Backup(a) => self.nodes[a].backup = Some(self.nodes[a].replica.clone()),
            Ev::Partition => {
                self.saw("partition");
                let n = self.nodes.len();
                self.cut = (0..n).filter(|_| self.rng.chance(0.5)).collect();
                let pairs: Vec<(usize, usize)> = self.conns.keys().copied().collect();
                for (a, b) in pairs {
                    if self.cut.contains(&a) != self.cut.contains(&b) {
                        self.close(a, b);
                    }
                }
            }
            Ev::Heal => {
                self.cut.clear();
                self.redial_all();
            }
            Ev::Remove { case, member } => self.remove(case, member),
            Ev::Count => {
                let r = &mut self.report;
                (r.frames, r.bytes, r.entry_frames, r.entry_bytes) = (0, 0, 0, 0);
            }
            Ev::Unpin(a, b) => {
                // `peer remove` on a: b gets nothing more from a.
                let kb = self.agency(b);
                self.nodes[a].replica.unpin(&kb);
                self.unpinned.push((a, b));
                self.saw("peer unpinned");
                // The session learns it at its next step.
                if self.nodes[a].sessions.contains_key(&b) {
                    let r = self.with_session(a, b, |s, r| s.changed(r));
                    self.after(a, b, r, 0);
                }
                self.nodes[a].pins.remove(&b);
                self.nodes[b].pins.remove(&a);
            }
            Ev::Equivocate(twin) => {
                // The copy and the original each write in case 0 from
                // their own state: two entries at one position (or the
                // copy, behind, at a position the original filled).
                let c = self.cases[0].id;
                let orig = self.nodes[twin].clone_of.unwrap_or(twin);
                let mut written = None;
                for n in [twin, orig] {
                    let node = &mut self.nodes[n];
                    let body = Body::Note(Note {
                        text: format!("written by node {n} of a copied folder"),
                        item: None,
                    });
                    if node.up && node.replica.case(&c).is_some() {
                        if let Ok(e) =
                            node.replica
                                .write(&node.identity, Some(&c), body, Tlp::Amber, self.now)
                        {
                            if n == twin {
                                written = Some(e);
                            }
                        }
                        self.changed(n, 0);
                    }
                }
                // The two versions at the copy's position: its entry, and
                // what the original holds there (its own write now, or an
                // earlier one when the copy was behind).
                if let Some(e) = written {
                    let theirs = self.nodes[orig]
                        .replica
                        .case(&c)
                        .and_then(|v| v.at(&e.author(), e.seq()));
                    if let Some(other) = theirs.filter(|o| *o != e.id()) {
                        self.forks = vec![(twin, e.id()), (orig, other)];
                    }
                }
            }
        }
    }

    fn redial_all(&mut self) {
        for a in 0..self.nodes.len() {
            for b in self.nodes[a].pins.clone() {
                if a < b && !self.conns.contains_key(&(a, b)) {
                    let t = self.now + self.rng.range(10, 500);
                    self.at(t, Ev::Dial(a, b));
                }
            }
        }
    }

    fn dial(&mut self, a: usize, b: usize) {
        if self.now > T0 + self.cfg.warmup_ms + ACTIVE_MS && !self.cut.is_empty() {
            self.cut.clear();
        }
        let ok = self.nodes[a].up
            && self.nodes[b].up
            && self.nodes[a].pins.contains(&b)
            && self.nodes[b].pins.contains(&a)
            && self.cut.contains(&a) == self.cut.contains(&b)
            && !self.conns.contains_key(&(a, b));
        if !ok {
            if self.nodes[a].pins.contains(&b) && !self.conns.contains_key(&(a, b)) {
                let t = self.now + self.rng.range(200, 5_000);
                self.at(t, Ev::Dial(a, b));
            }
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.report.connections += 1;
        self.conns.insert((a, b), Conn { id, last: [0; 2] });
        for (x, y) in [(a, b), (b, a)] {
            let old =
                x >= self.cfg.agencies.saturating_sub(self.cfg.old_nodes) && x < self.cfg.agencies;
            let versions: &[u64] = if old {
                &[1]
            } else {
                custodia_protocol::SYNC_VERSIONS
            };
            let mut s = Session::with_versions(self.agency(x), self.agency(y), versions);
            if let Some(hook) = self.cfg.session_hook {
                hook(&mut s);
            }
            self.nodes[x].sessions.insert(y, (id, s));
        }
        self.flush(a, b, 0);
        self.flush(b, a, 0);
        // An intruder asks for case 0 as if it held it.
        for (x, y) in [(a, b), (b, a)] {
            if self.nodes[x].intruder {
                if let Some(c) = self.cases.first() {
                    let m = Message::Heads(custodia_protocol::Heads {
                        case: c.id,
                        heads: Vec::new(),
                    });
                    self.saw("intruder probe");
                    self.send_frame(x, y, m.to_frame(), 0);
                }
            }
        }
    }

    fn close(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        if self.conns.remove(&key).is_some() {
            self.nodes[a].sessions.remove(&b);
            self.nodes[b].sessions.remove(&a);
            if self.nodes[a].pins.contains(&b) {
                let t = self.now + self.rng.range(200, 2_000);
                self.at(t, Ev::Dial(key.0, key.1));
            }
        }
    }

    fn with_session<T>(
        &mut self,
        a: usize,
        b: usize,
        f: impl FnOnce(&mut Session, &mut MemoryReplica) -> T,
    ) -> Option<T> {
        let node = &mut self.nodes[a];
        let (_, s) = node.sessions.get_mut(&b)?;
        Some(f(s, &mut node.replica))
    }

    /// After an input to a's session with b: errors, output, events.
    fn after(
        &mut self,
        a: usize,
        b: usize,
        r: Option<Result<(), custodia_protocol::session::SessionError>>,
        hops: u32,
    ) {
        if let Some(Err(e)) = r {
            *self
                .report
                .session_errors
                .entry(e.code().as_u64())
                .or_default() += 1;
            let m = Message::Error(custodia_protocol::ErrorMessage {
                code: e.code().as_u64(),
                message: e.to_peer(),
            });
            self.send_frame(a, b, m.to_frame(), hops);
            self.close(a, b);
            return;
        }
        self.flush(a, b, hops);
        self.events(a, b, hops);
    }

    fn events(&mut self, a: usize, b: usize, hops: u32) {
        let mut stored = false;
        let mut proofs = Vec::new();
        let mut close = false;
        while let Some(ev) = self.nodes[a]
            .sessions
            .get_mut(&b)
            .and_then(|(_, s)| s.poll_event())
        {
            match ev {
                Event::Stored { case, ids, .. } => {
                    stored = true;
                    let honest = self.honest(a);
                    let ci = self.cases.iter().position(|c| c.id == case);
                    for id in ids {
                        // One hop more than at the peer it came from.
                        let depth = self.arrived.get(&(id, b)).map_or(1, |(_, d)| d + 1);
                        self.arrived.entry((id, a)).or_insert((self.now, depth));
                        if self.written.contains_key(&id) {
                            self.report.max_hops = self.report.max_hops.max(depth);
                        }
                        if let (true, Some(ci)) = (honest, ci) {
                            self.ever[ci].entry(id).or_default().push((a, self.now));
                        }
                    }
                }
                Event::Proof { case, proof, .. } => {
                    self.saw("equivocation proof stored");
                    proofs.push((case, proof))
                }
                Event::PeerRemoved | Event::PeerError { .. } => close = true,
                _ => {}
            }
        }
        for (case, proof) in proofs {
            let peers: Vec<usize> = self.nodes[a].sessions.keys().copied().collect();
            for p in peers.into_iter().filter(|p| *p != b) {
                let pr = proof.clone();
                self.with_session(a, p, |s, r| s.offer_proof(case, pr, r));
                self.flush(a, p, hops);
            }
        }
        if close {
            self.close(a, b);
        }
        if stored {
            self.changed(a, hops);
        }
    }

    /// The case data at node a changed: every session of it looks.
    fn changed(&mut self, a: usize, hops: u32) {
        let peers: Vec<usize> = self.nodes[a].sessions.keys().copied().collect();
        for p in peers {
            let r = self.with_session(a, p, |s, r| s.changed(r));
            self.after_quiet(a, p, r, hops);
        }
    }

    /// Like [`World::after`] without looking at events again (they are
    /// looked at by the caller's loop on the next input).
    fn after_quiet(
        &mut self,
        a: usize,
        b: usize,
        r: Option<Result<(), custodia_protocol::session::SessionError>>,
        hops: u32,
    ) {
        if let Some(Err(e)) = r {
            *self
                .report
                .session_errors
                .entry(e.code().as_u64())
                .or_default() += 1;
            self.close(a, b);
            return;
        }
        self.flush(a, b, hops);
        let close = self.nodes[a]
            .sessions
            .get(&b)
            .is_some_and(|(_, s)| s.is_closed());
        if close {
            self.close(a, b);
        }
    }

    fn honest(&self, a: usize) -> bool {
        let n = &self.nodes[a];
        n.clone_of.is_none() && !n.intruder && !self.nodes.iter().any(|m| m.clone_of == Some(a))
    }

    fn flush(&mut self, a: usize, b: usize, hops: u32) {
        loop {
            let Some((q, m)) = self.nodes[a].sessions.get_mut(&b).map(|(_, s)| {
                let q = s.queued();
                (q, s.poll_transmit())
            }) else {
                return;
            };
            self.report.max_queue = self.report.max_queue.max(q);
            let Some(m) = m else { return };
            if let Message::Entries(e) = &m {
                self.check_sent(a, b, e);
            }
            self.send_frame(a, b, m.to_frame(), hops + 1);
        }
    }

    /// Invariant: what a node sends is for a member allowed to see it, and
    /// nothing goes to a peer it unpinned.
    fn check_sent(&mut self, a: usize, b: usize, e: &custodia_protocol::Entries) {
        if self.unpinned.contains(&(a, b)) {
            self.report.violations.push(format!(
                "t={} node {a} sent entries to node {b} after unpinning it",
                self.now - T0
            ));
        }
        let kb = self.agency(b);
        let member = self.nodes[a]
            .replica
            .case(&e.case)
            .is_some_and(|v| v.is_member(&kb));
        let ci = self.cases.iter().position(|c| c.id == e.case);
        let was_member = ci.is_some_and(|ci| self.cases[ci].members.contains(&b))
            || self.nodes[b]
                .clone_of
                .is_some_and(|o| ci.is_some_and(|ci| self.cases[ci].members.contains(&o)));
        if !member || !was_member {
            self.report.violations.push(format!(
                "t={} node {a} sent {} items of case {} to node {b}, not a member",
                self.now - T0,
                e.items.len(),
                e.case.short()
            ));
        }
    }

    fn send_frame(&mut self, a: usize, b: usize, frame: Vec<u8>, hops: u32) {
        let key = (a.min(b), a.max(b));
        let Some(conn) = self.conns.get(&key).copied() else {
            return;
        };
        self.report.frames += 1;
        self.report.bytes += frame.len() as u64;
        if frame.len() > 4 && frame[4..].starts_with(&[0xA1, 0x67, b'e', b'n', b't']) {
            self.report.entry_frames += 1;
            self.report.entry_bytes += frame.len() as u64;
        }
        let dir = usize::from(a > b);
        let (lo, hi) = self.cfg.latency_ms;
        let mut t = (self.now + self.rng.range(lo, hi)).max(conn.last[dir]);
        let garble = self.cfg.faults.garble;
        // A broken link: the frame twice, or before the one sent earlier.
        if garble > 0.0 && self.rng.chance(garble) {
            self.saw("frame repeated or reordered");
            let dup = self.rng.chance(0.5);
            if dup {
                self.at(
                    t,
                    Ev::Deliver {
                        conn: conn.id,
                        from: a,
                        to: b,
                        frame: frame.clone(),
                        hops,
                    },
                );
            } else {
                t = t.saturating_sub(hi + 1).max(self.now);
            }
        }
        if let Some(c) = self.conns.get_mut(&key) {
            c.last[dir] = c.last[dir].max(t);
        }
        self.at(
            t,
            Ev::Deliver {
                conn: conn.id,
                from: a,
                to: b,
                frame,
                hops,
            },
        );
    }

    fn deliver(&mut self, conn: u64, from: usize, to: usize, frame: &[u8], hops: u32) {
        if self.nodes[to].sessions.get(&from).map(|(c, _)| *c) != Some(conn) {
            return; // the connection closed meanwhile
        }
        let decoded = frame
            .get(..4)
            .and_then(|p| <[u8; 4]>::try_from(p).ok())
            .ok_or(custodia_protocol::SyncError::Malformed(
                "short frame".into(),
            ))
            .and_then(Message::frame_len)
            .and_then(|_| Message::decode(&frame[4..]));
        if self.nodes[to].intruder {
            if let Ok(Message::Entries(e)) = &decoded {
                if self.cases.first().is_some_and(|c| c.id == e.case) {
                    self.report.violations.push(format!(
                        "t={} intruder node {to} received {} items of case 0 from node {from}",
                        self.now - T0,
                        e.items.len()
                    ));
                }
            }
        }
        let now = self.now;
        let r = match decoded {
            Ok(m) => self.with_session(to, from, |s, r| s.handle(m, r, now)),
            Err(e) => Some(Err(e.into())),
        };
        self.after(to, from, r, hops);
    }

    fn write(&mut self, ci: usize) {
        let case = self.cases[ci].clone();
        if case.writes_left == 0 || self.now > T0 + self.cfg.warmup_ms + ACTIVE_MS {
            return;
        }
        let who = case.members[self.rng.range(0, case.members.len() as u64 - 1) as usize];
        let node = &mut self.nodes[who];
        let ok = node.up
            && !self.removed.contains(&(ci, who))
            && node.replica.may_write(&case.id)
            && node
                .replica
                .case(&case.id)
                .is_some_and(|v| v.is_member(&node.identity.agency()));
        if ok {
            let body = Body::Note(Note {
                text: format!(
                    "note {} by agency {who}",
                    self.cfg.writes - case.writes_left
                ),
                item: None,
            });
            if let Ok(e) =
                node.replica
                    .write(&node.identity, Some(&case.id), body, Tlp::Amber, self.now)
            {
                self.cases[ci].writes_left -= 1;
                if self.honest(who) {
                    self.written.insert(e.id(), (self.now, ci));
                    self.arrived.insert((e.id(), who), (self.now, 0));
                }
                self.changed(who, 0);
            }
        }
        let gap = self.rng.range(1, self.cfg.write_interval_ms * 2);
        self.at(self.now + gap, Ev::Write { case: ci });
    }

    fn remove(&mut self, ci: usize, member: usize) {
        let case = self.cases[ci].clone();
        let lead = case.members[0];
        if !self.nodes[lead].up || !self.nodes[lead].replica.may_write(&case.id) {
            let t = self.now + 1_000;
            self.at(t, Ev::Remove { case: ci, member });
            return;
        }
        let body = Body::MemberRemoved(MemberRemoved {
            agency: self.agency(member),
            reason: Some("removed by the lead".into()),
        });
        let node = &mut self.nodes[lead];
        if let Ok(e) =
            node.replica
                .write(&node.identity, Some(&case.id), body, Tlp::Amber, self.now)
        {
            self.removed.insert((ci, member));
            self.saw("member removed");
            let _ = e;
            self.changed(lead, 0);
        }
    }

    /// A crashed node is up again and dials its peers.
    fn restart(&mut self, a: usize) {
        self.nodes[a].up = true;
        for b in self.nodes[a].pins.clone() {
            let t = self.now + self.rng.range(10, 300);
            self.at(t, Ev::Dial(a.min(b), a.max(b)));
        }
    }

    /// Whether a node other than the copied node and its original holds
    /// an equivocation proof in a case.
    fn proof_outside_writers(&self, case: &CaseId) -> bool {
        let writers: BTreeSet<usize> = self.forks.iter().map(|(w, _)| *w).collect();
        self.nodes
            .iter()
            .enumerate()
            .any(|(i, n)| !writers.contains(&i) && !n.replica.proofs_of(case).is_empty())
    }

    /// The end-of-run invariants.
    fn check(&mut self) {
        let mut v = std::mem::take(&mut self.report.violations);
        for (ci, case) in self.cases.iter().enumerate() {
            // The copied node writes its second history in case 0 only. The
            // federation holds an equivocation once both versions left
            // their writers (stored elsewhere, or a node other than the
            // two writers holds a proof): one that never did (its writer
            // restored an older backup first) is no fork anyone can see.
            let left = |(w, id): &(usize, EntryId)| {
                self.arrived
                    .keys()
                    .any(|(e, at)| e == id && at != w && self.nodes[*at].clone_of != Some(*w))
            };
            let forked = ci == 0
                && self.nodes.iter().any(|n| n.clone_of.is_some())
                && !self.forks.is_empty()
                && (self.forks.iter().all(left) || self.proof_outside_writers(&case.id));
            let members: Vec<usize> = case
                .members
                .iter()
                .copied()
                .filter(|m| !self.removed.contains(&(ci, *m)) && self.honest(*m))
                .collect();
            // Convergence, and nothing acknowledged lost: every honest
            // member holds everything any honest node ever stored. In a
            // case with a forked member, the entries after the fork cannot
            // converge (each side keeps the version it saw first); there,
            // the proof must reach every member instead.
            // An entry counts as acknowledged once an honest node stored it
            // from a peer and did not restore an older backup after.
            let required: BTreeSet<EntryId> = self.ever[ci]
                .iter()
                .filter(|(_, holders)| {
                    holders
                        .iter()
                        .any(|(n, t)| !self.rollbacks.iter().any(|(r, rt)| r == n && rt > t))
                })
                .map(|(id, _)| *id)
                .collect();
            if !forked {
                for &m in &members {
                    let held = self.nodes[m].replica.ids(&case.id);
                    let missing = required.difference(&held).count();
                    if missing > 0 {
                        v.push(format!(
                            "case {ci}: member node {m} lacks {missing} of {} acknowledged entries",
                            required.len()
                        ));
                    }
                }
            } else {
                let twins: Vec<AgencyId> = self
                    .nodes
                    .iter()
                    .filter(|n| n.clone_of.is_some())
                    .map(|n| n.identity.agency())
                    .collect();
                let wrote: bool = self
                    .nodes
                    .iter()
                    .filter(|n| n.clone_of.is_some())
                    .any(|n| n.replica.case(&case.id).is_some());
                for &m in &members {
                    let proofs = self.nodes[m].replica.proofs_of(&case.id);
                    let about: BTreeSet<AgencyId> = proofs
                        .iter()
                        .filter_map(|p| p.check().ok())
                        .map(|eq| eq.author)
                        .collect();
                    if wrote && !twins.iter().all(|t| about.contains(t)) {
                        v.push(format!(
                            "case {ci}: member node {m} holds no proof of the copied node's equivocation"
                        ));
                    }
                }
            }
            // Latency: per honest entry, until every member holding the
            // case at the end had it.
            for (id, (t, c)) in &self.written {
                if *c != ci || forked {
                    continue;
                }
                let last = members
                    .iter()
                    .filter_map(|m| self.arrived.get(&(*id, *m)).map(|(t, _)| t))
                    .max();
                if let Some(last) = last {
                    self.report.reach_all_ms.push(last - t);
                }
            }
            if !forked {
                // With a warm-up, the traffic counted is that of the notes
                // written after it; without, of everything acknowledged.
                let entries = if self.cfg.warmup_ms > 0 {
                    self.written.values().filter(|(_, c)| *c == ci).count()
                } else {
                    required.len()
                };
                self.report.deliveries += (entries * members.len().saturating_sub(1)) as u64;
            }
        }
        // Non-members hold nothing of the cases they are not in.
        for (ci, case) in self.cases.iter().enumerate() {
            for (n, node) in self.nodes.iter().enumerate() {
                let member = case.members.contains(&n)
                    || node.clone_of.is_some_and(|o| case.members.contains(&o));
                if !member && node.replica.case(&case.id).is_some() {
                    v.push(format!("case {ci}: non-member node {n} holds it"));
                }
            }
        }
        // Bounded queues: a session never queues more than its window of
        // batches, one heads message per case each way, the acks of its
        // peer's window, and the proofs.
        let bound = 4 * custodia_protocol::MAX_UNACKED_BATCHES + 2 * self.cases.len() + 64;
        if self.report.max_queue > bound {
            v.push(format!(
                "a session queued {} messages (bound {bound})",
                self.report.max_queue
            ));
        }
        self.report.entries = self.written.len();
        self.report.violations = v;
    }
}

/// Runs many seeds; the reports of those that found violations.
pub fn sweep(base: &Config, seeds: std::ops::Range<u64>) -> Vec<(u64, Report)> {
    seeds
        .filter_map(|seed| {
            let r = run(Config {
                seed,
                ..base.clone()
            });
            (!r.violations.is_empty()).then_some((seed, r))
        })
        .collect()
}

/// The entries of a case at a node, for tests that look closer.
pub fn entries_of(r: &MemoryReplica, case: &CaseId) -> Vec<Entry> {
    r.entries(case).into_iter().cloned().collect()
}
