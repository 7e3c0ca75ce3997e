//! The node daemon: QUIC endpoint, peer sessions, replication, relay and
//! witnessing (SPEC.md §9).
//!
//! One task accepts connections, one task per configured peer dials it (the
//! agency with the lower key dials, so a pair of nodes has one connection),
//! one task watches the store and the configuration for changes made by
//! other processes (the CLI), and one task per connection runs a
//! `session`. Every store access runs on the blocking pool: SQLite calls
//! never stall the network.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use custodia_protocol::session::{
    proof_visible, Checked, Event, Replica, Session, SessionError, MAX_REFUSED_PROOFS,
};
use custodia_protocol::{
    AgencyId, Body, CaseId, EquivocationNotice, EquivocationProof, ErrorMessage, Head, Identity,
    KeyId, Message, SyncError, Tlp, Witness, MAX_UNACKED_BATCHES,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError, CONFIG_FILE};
use crate::keyfile::{self, KeyFileError, NoPassphrase, PassphraseSource, Protection};
use crate::store::{self, Draft, Store, StoreError};
use crate::tls::{self, PinSet, TlsError};
use custodia_protocol::keylog::{key_of, RevokeReason};
use custodia_protocol::transport::Refusal;

/// How often the daemon looks for changes other processes made (the CLI
/// writes to the store file directly) when nothing wakes it. A process
/// that commits wakes the node through its wake-up socket
/// ([`crate::wake`]), so the poll is only the fallback for a wake-up that
/// did not arrive. Changes the daemon makes itself (received batches,
/// witnesses) wake the sessions at once.
const POLL: Duration = Duration::from_millis(100);
/// How often open connections' transport keys are judged again when no
/// key log changed (a node key's not-after passes without a statement).
const REJUDGE: Duration = Duration::from_secs(5);
/// The poll interval where there is no wake-up socket.
const POLL_ALONE: Duration = Duration::from_millis(10);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the reconnect backoff even if it
/// ended with an error; a shorter one that failed keeps doubling it.
const STABLE: Duration = Duration::from_secs(10);
/// Outgoing messages queued per connection before the producer waits.
const OUTBOX: usize = 8;
/// Received frames queued (checked) for the session before the reader
/// waits. With the one the session takes, a sender's whole window of
/// unacknowledged batches fits: they are committed together.
const INBOX: usize = MAX_UNACKED_BATCHES - 1;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Identity key.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Inner {
    dir: PathBuf,
    me: AgencyId,
    identity: Identity,
    /// The node key (`node.key`, certified with role node in the agency's
    /// key log): it signs the witnesses of cases of format version 2
    /// (SPEC.md §5.7). Without it, such cases get no witness from here.
    /// Read again when the file changes, so a node key is replaced
    /// without a restart (and without dropping a session).
    node_key: Mutex<NodeKey>,
    store: Mutex<Store>,
    pins: PinSet,
    peers: Mutex<Vec<crate::config::Peer>>,
    sessions: Mutex<HashMap<AgencyId, Live>>,
    revision: watch::Sender<i64>,
    witness_interval: Duration,
    witness: Mutex<HashMap<CaseId, WitnessClock>>,
    next_session: std::sync::atomic::AtomicU64,
    endpoint: quinn::Endpoint,
    stats: Mutex<HashMap<AgencyId, PeerStats>>,
    /// Every authenticated connection, from the end of its handshake to
    /// its close, by connection number: a pin removal closes each of the
    /// agency's, including one still waiting for its first stream.
    conns: Mutex<HashMap<u64, (tls::PeerIdentity, quinn::Connection)>>,
    /// The key the node's TLS configurations present (SPEC.md §9.1): the
    /// node key when its own key log certifies it, else the agency key;
    /// with the statements its certificate carries. They are rebuilt when
    /// either changes; connections already open keep theirs.
    presented: Mutex<tls::Presented>,
    /// The client configuration dials use (with the presented key).
    client: Mutex<quinn::ClientConfig>,
    /// What the presented key was last judged at: the store's key log
    /// revision and the node key.
    presented_for: Mutex<Option<(i64, Option<KeyId>)>>,
    /// The store's key log revision the pins' logs were last taken at.
    pins_key_revision: Mutex<i64>,
    /// What the configuration file looked like when it was last applied.
    config_seen: Mutex<Option<FileStamp>>,
    shutdown: watch::Receiver<bool>,
    /// Refused handshakes, by remote address, for rate-limited logging.
    refused: Mutex<LogLimiter>,
}

/// The node key as last read, with the file's stamp then.
struct NodeKey {
    key: Option<Identity>,
    stamp: Option<FileStamp>,
    /// The passphrase the node was started with, if its key files are
    /// encrypted: a replaced node key is read with it.
    passphrase: Option<crate::keyfile::Passphrase>,
    /// Cases of format version 2 it could not witness (warned once each).
    unwitnessed: HashSet<CaseId>,
}

impl NodeKey {
    /// Reads `node.key` in `dir` again if it changed since the last look.
    fn refresh(&mut self, dir: &Path) {
        let path = dir.join(crate::local::NODE_KEY_FILE);
        let stamp = FileStamp::of(&path);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        if self.stamp.is_none() {
            if self.key.take().is_some() {
                info!(
                    "node.key was removed: cases of format version 2 are not witnessed from here"
                );
            }
            return;
        }
        let source = Remembered::with(self.passphrase.clone());
        match keyfile::read_with(&path, &source) {
            Ok(k) => {
                info!(key = %custodia_protocol::keylog::key_of(&k), "node key read");
                self.key = Some(k);
            }
            Err(e) => {
                warn!(error = %e, "node.key could not be read; the node key stays as it was");
            }
        }
    }
}

/// A passphrase source that remembers the passphrase it handed out, so the
/// node can read a replaced node key later with the one it started with.
struct Remembered<'a> {
    inner: Option<&'a (dyn PassphraseSource + Sync)>,
    got: Mutex<Option<crate::keyfile::Passphrase>>,
}

impl<'a> Remembered<'a> {
    fn new(inner: &'a (dyn PassphraseSource + Sync)) -> Self {
        Remembered {
            inner: Some(inner),
            got: Mutex::new(None),
        }
    }

    fn with(p: Option<crate::keyfile::Passphrase>) -> Self {
        Remembered {
            inner: None,
            got: Mutex::new(p),
        }
    }

    fn into_passphrase(self) -> Option<crate::keyfile::Passphrase> {
        self.got.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl PassphraseSource for Remembered<'_> {
    fn passphrase(&self, path: &Path) -> Result<crate::keyfile::Passphrase, crate::KeyFileError> {
        if let Some(p) = lock(&self.got).clone() {
            return Ok(p);
        }
        let Some(inner) = self.inner else {
            return Err(crate::KeyFileError::NoPassphrase(path.to_owned()));
        };
        let p = inner.passphrase(path)?;
        *lock(&self.got) = Some(p.clone());
        Ok(p)
    }

    fn unencrypted(&self, path: &Path) {
        if let Some(inner) = self.inner {
            inner.unencrypted(path);
        }
    }
}

/// Enough of a file's metadata to notice that it was replaced or changed
/// (the CLI replaces the configuration by a rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode,
        })
    }
}

/// Logs a repeated event once per interval per key, with the number of
/// times it happened meanwhile: a peer that retries a refused handshake
/// thousands of times leaves a few lines, not megabytes.
#[derive(Debug, Default)]
struct LogLimiter {
    seen: HashMap<std::net::IpAddr, (Instant, u64)>,
}

/// One log line per remote address per this interval for refused
/// handshakes.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// At most this many addresses are remembered for rate-limited logging.
const LOG_KEYS: usize = 1024;

impl LogLimiter {
    /// Some(n) when a line is due, n being the events since the last line
    /// (this one included).
    fn due(&mut self, key: std::net::IpAddr, now: Instant) -> Option<u64> {
        if self.seen.len() >= LOG_KEYS && !self.seen.contains_key(&key) {
            self.seen
                .retain(|_, (t, _)| now.duration_since(*t) < LOG_EVERY);
            if self.seen.len() >= LOG_KEYS {
                return None;
            }
        }
        // (when the last line was logged, events since then)
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((now, 0));
                Some(1)
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.1 += 1;
                if now.duration_since(e.0) >= LOG_EVERY {
                    let n = e.1;
                    *e = (now, 0);
                    Some(n)
                } else {
                    None
                }
            }
        }
    }
}

/// What a node received from one peer (for operators and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames received.
    pub frames: u64,
    /// Bytes received in frames (with length prefixes).
    pub bytes: u64,
    /// Bytes of frames that carried case data (heads, entries, proofs).
    pub case_bytes: u64,
    /// Entries and withheld positions received.
    pub items: u64,
    /// Sessions started with the peer (either side dialling).
    pub sessions: u64,
}

/// A running session, as the rest of the node reaches it.
#[derive(Clone)]
struct Live {
    id: u64,
    conn: quinn::Connection,
    out: mpsc::Sender<Message>,
}

#[derive(Default, Clone, Copy)]
struct WitnessClock {
    last: Option<Instant>,
    due: bool,
}

/// A running node.
pub struct Running {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// This node's agency.
    pub fn agency(&self) -> AgencyId {
        self.inner.me
    }

    /// What this node received from a peer since it started.
    pub fn peer_stats(&self, peer: &AgencyId) -> PeerStats {
        lock(&self.inner.stats)
            .get(peer)
            .copied()
            .unwrap_or_default()
    }

    /// The store's revision as this node last published it: it changes
    /// right after each commit of rows (received from a peer, loaded from
    /// the store file after another process wrote them, or written by the
    /// node itself), so a caller that waits for [`watch::Receiver::changed`]
    /// learns of a commit without polling the store file.
    pub fn revision(&self) -> watch::Receiver<i64> {
        self.inner.revision.subscribe()
    }

    /// The key each agency with an open session authenticated with: its
    /// node key, or its agency id (SPEC.md §9.1).
    pub fn connected_keys(&self) -> Vec<(AgencyId, KeyId)> {
        let sessions: HashSet<usize> = lock(&self.inner.sessions)
            .values()
            .map(|s| s.conn.stable_id())
            .collect();
        lock(&self.inner.conns)
            .values()
            .filter(|(_, c)| sessions.contains(&c.stable_id()))
            .map(|(p, _)| (p.agency, p.key))
            .collect()
    }

    /// Agencies with an open session right now.
    pub fn connected(&self) -> Vec<AgencyId> {
        lock(&self.inner.sessions).keys().copied().collect()
    }

    /// Stops: closes every connection, waits for the batch in flight to be
    /// stored, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug elsewhere; the data
    // (maps of handles, the store) stays usable, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the node in `dir` (which `custodia init` created), whose key
/// file is unencrypted; see [`start_with`].
pub async fn start(dir: &Path) -> Result<Running, NodeError> {
    start_with(dir, &NoPassphrase).await
}

/// Starts the node in `dir`; if its key file is encrypted, the passphrase
/// is asked of `source` (once, before anything else starts).
pub async fn start_with(
    dir: &Path,
    source: &(dyn PassphraseSource + Sync),
) -> Result<Running, NodeError> {
    let config = Config::load(dir)?;
    let key_path = config.key_path(dir);
    let source = Remembered::new(source);
    let loaded = keyfile::load(&key_path, &source)?;
    if loaded.protection == Protection::Unencrypted {
        warn!(key = %key_path.display(), "the identity key file is not encrypted: anyone who can read it can sign as this agency; encrypt it with `custodia key protect` (the node then needs its passphrase to start)");
    }
    let identity = loaded.identity;
    let node_key_path = dir.join(crate::local::NODE_KEY_FILE);
    let node_key_stamp = FileStamp::of(&node_key_path);
    let node_key = if node_key_stamp.is_some() {
        Some(keyfile::read_with(&node_key_path, &source)?)
    } else {
        None
    };
    let node_key = NodeKey {
        key: node_key,
        stamp: node_key_stamp,
        passphrase: source.into_passphrase(),
        unwitnessed: HashSet::new(),
    };
    let store_path = config.store_path(dir);
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    if let Some(why) = store.suspicion() {
        warn!(reason = %why, "the store may have gone back in time");
    }
    let me_id = identity.agency();
    for case in store.cases().copied().collect::<Vec<_>>() {
        if let Some(seq) = store.self_equivocation(&me_id, &case) {
            warn!(case = %case, seq, "THIS AGENCY HAS EQUIVOCATED in this case: it signed two different entries at one position; the node writes nothing more in the case until people decide how the record goes on");
        }
    }
    for h in store.holds(None)? {
        warn!(case = %h.case, reason = %h.reason, "case on hold: this node writes nothing in it until a peer confirms its head or it has recovered its own entries");
    }
    for p in store.damaged() {
        warn!(pos = ?p.pos, problem = %p.what, "damaged store row skipped; run `custodia store check`");
    }
    let pins = PinSet::new(config.pinned().into_iter().map(|a| a.0));
    let (key_revision, logs) = store.key_logs();
    pins.set_key_logs(logs.clone());
    let me_presented = presented(&identity, node_key.key.as_ref(), logs.get(&me_id));
    announce_presented(&identity, &me_presented, logs.get(&me_id));
    let server = tls::server_config(&me_presented, pins.clone())?;
    let client = tls::client_config_presenting(&me_presented, pins.clone())?;
    let addr = config
        .listen_addr()
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.node.listen.clone(),
            source,
        })?;
    let listen_err = |source| NodeError::Listen {
        addr: config.node.listen.clone(),
        source,
    };
    // Stateless resets keyed by the agency's identity (SPEC.md §9.2): after
    // a restart the node answers a peer's packets for a connection it no
    // longer has with a reset the peer recognises, so the peer drops that
    // connection at once instead of after its idle timeout.
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.reset_key(tls::reset_key(identity.signing_key()));
    // Connection ids are checked against a keyed hash before a reset is
    // sent; the key too must survive a restart.
    let cid_key = tls::cid_key(identity.signing_key());
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            as Box<dyn quinn::ConnectionIdGenerator>
    });
    let socket = std::net::UdpSocket::bind(addr).map_err(listen_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| listen_err(std::io::Error::other("no async runtime")))?;
    let endpoint =
        quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime).map_err(listen_err)?;
    let me = identity.agency();
    info!(
        agency = %me,
        fingerprint = %me.fingerprint(),
        listen = %endpoint.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string()),
        cases = store.cases().count(),
        "node started"
    );
    let (revision, _) = watch::channel(store.revision());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let config_seen = FileStamp::of(&dir.join(CONFIG_FILE));
    let inner = Arc::new(Inner {
        dir: dir.to_owned(),
        me,
        identity,
        node_key: Mutex::new(node_key),
        store: Mutex::new(store),
        pins,
        peers: Mutex::new(Vec::new()),
        sessions: Mutex::new(HashMap::new()),
        revision,
        witness_interval: Duration::from_secs(config.node.witness_interval_secs),
        witness: Mutex::new(HashMap::new()),
        next_session: 0.into(),
        endpoint,
        stats: Mutex::new(HashMap::new()),
        conns: Mutex::new(HashMap::new()),
        presented: Mutex::new(me_presented),
        client: Mutex::new(client),
        pins_key_revision: Mutex::new(key_revision),
        presented_for: Mutex::new(None),
        config_seen: Mutex::new(config_seen),
        shutdown: shutdown_rx.clone(),
        refused: Mutex::new(LogLimiter::default()),
    });
    apply_peers(&inner, config.peers, &shutdown_rx);
    let task = tokio::spawn(supervise(inner.clone(), shutdown_rx));
    Ok(Running {
        inner,
        shutdown,
        task,
    })
}

/// Runs the node until `stop` resolves, then shuts down cleanly (an
/// unencrypted key file; see [`run_with`]).
pub async fn run(dir: &Path, stop: impl std::future::Future<Output = ()>) -> Result<(), NodeError> {
    run_with(dir, stop, &NoPassphrase).await
}

/// Runs the node until `stop` resolves, then shuts down cleanly; if the
/// key file is encrypted, its passphrase is asked of `source` at start.
pub async fn run_with(
    dir: &Path,
    stop: impl std::future::Future<Output = ()>,
    source: &(dyn PassphraseSource + Sync),
) -> Result<(), NodeError> {
    let running = start_with(dir, source).await?;
    stop.await;
    info!("shutting down");
    running.shutdown().await;
    info!("stopped");
    Ok(())
}

async fn supervise(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let accept = tokio::spawn(accept_loop(inner.clone(), shutdown.clone()));
    let watcher = tokio::spawn(watch_loop(inner.clone(), shutdown.clone()));
    let _ = shutdown.wait_for(|s| *s).await;
    for s in lock(&inner.sessions).drain().map(|(_, s)| s) {
        s.conn.close(quinn::VarInt::from_u32(0), b"shutdown");
    }
    accept.abort();
    watcher.abort();
    // Wait for a store write in flight: taking the lock waits for it.
    let inner2 = inner.clone();
    let _ = tokio::task::spawn_blocking(move || drop(lock(&inner2.store))).await;
}

/// Reconciles the configured peers: pins, and one dial task per peer whose
/// key is above ours.
fn apply_peers(
    inner: &Arc<Inner>,
    peers: Vec<crate::config::Peer>,
    shutdown: &watch::Receiver<bool>,
) {
    let mut current = lock(&inner.peers);
    let new_keys: HashSet<AgencyId> = peers.iter().filter_map(|p| p.agency()).collect();
    for old in current.iter() {
        if let Some(k) = old.agency() {
            if !new_keys.contains(&k) {
                inner.pins.remove(&k.0);
                if let Some(s) = lock(&inner.sessions).remove(&k) {
                    s.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                }
                for (_, (p, c)) in lock(&inner.conns).iter() {
                    if p.agency == k {
                        c.close(quinn::VarInt::from_u32(0), b"peer removed");
                    }
                }
                info!(peer = ?old.name, "peer removed");
            }
        }
    }
    for p in &peers {
        let Some(k) = p.agency() else { continue };
        let known = current
            .iter()
            .any(|o| o.agency() == Some(k) && o.addr == p.addr);
        inner.pins.insert(k.0);
        if !known && inner.me < k {
            tokio::spawn(dial_loop(
                inner.clone(),
                p.name.clone(),
                k,
                p.addr.clone(),
                shutdown.clone(),
            ));
        }
    }
    *current = peers;
}

/// Applies the configuration file if it changed since it was last applied
/// (`peer add` and `peer remove` rewrite it). The lock is held until the
/// new pins are in force, so whoever finds the file unchanged also finds
/// its pins applied.
fn reload_config(inner: &Arc<Inner>) {
    let path = inner.dir.join(CONFIG_FILE);
    let mut seen = lock(&inner.config_seen);
    let now = FileStamp::of(&path);
    if *seen == now {
        return;
    }
    *seen = now;
    match Config::load(&inner.dir) {
        Ok(c) => apply_peers(inner, c.peers, &inner.shutdown),
        Err(e) => warn!(error = %e, "configuration change ignored"),
    }
}

/// Whether the node may still send anything to `peer`, checked inside the
/// store lock just before it reads what to send (SPEC.md §9.2): the store
/// is caught up first, then the configuration. The command-line tool
/// writes the configuration before any entry written after a `peer
/// remove`, so an entry this read can see was written after a
/// configuration this check has applied: a removed peer never receives
/// it.
fn may_serve(store: &mut Store, inner: &Arc<Inner>, peer: &AgencyId) -> bool {
    if let Err(e) = store.refresh() {
        warn!(error = %e, "store refresh failed");
    }
    reload_config(inner);
    inner.pins.contains(&peer.0)
}

/// What the node authenticates with (SPEC.md §9.1): its node key when its
/// own key log certifies it as an unrevoked node key, with the statements
/// its certificate carries; else the agency key.
fn presented(
    identity: &Identity,
    node_key: Option<&Identity>,
    own: Option<&custodia_protocol::keylog::KeyLog>,
) -> tls::Presented {
    if let (Some(k), Some(log)) = (node_key, own) {
        if let Some(carried) = custodia_protocol::transport::carried_for(log, &key_of(k)) {
            // Presented only if a partner holding this log would take it
            // now (not before its not-before, not after its not-after).
            let me = identity.agency();
            let judged = custodia_protocol::transport::speaks_for(
                &key_of(k),
                &carried,
                &|a: &AgencyId| *a == me,
                &OneLog(log),
                now_ms(),
            );
            if judged == Ok(me) {
                return tls::Presented {
                    key: k.signing_key().clone(),
                    carried,
                };
            }
        }
    }
    tls::Presented::agency(identity.signing_key())
}

/// One key log as the [`custodia_protocol::keylog::KeyLogs`] a judgement
/// reads.
struct OneLog<'a>(&'a custodia_protocol::keylog::KeyLog);

impl custodia_protocol::keylog::KeyLogs for OneLog<'_> {
    fn key_log(&self, agency: &AgencyId) -> Option<&custodia_protocol::keylog::KeyLog> {
        (self.0.agency() == *agency).then_some(self.0)
    }
}

/// Says which key the node authenticates with, and warns when partners
/// that hold the agency's log will refuse it.
fn announce_presented(
    identity: &Identity,
    p: &tls::Presented,
    own: Option<&custodia_protocol::keylog::KeyLog>,
) {
    let key = KeyId(p.key.verifying_key().to_bytes());
    if p.carried.is_empty() {
        if own.is_some_and(|l| l.current_root() != KeyId(identity.agency().0)) {
            warn!("this agency's root was rotated away from the agency key, and no node key is certified: partners holding the agency's key log refuse this node's connections; certify one with `custodia key certify-node --root ...`");
        } else {
            info!(key = %key, "authenticating with the agency key");
        }
    } else {
        info!(key = %key, carried = p.carried.len(), "authenticating with the node key");
    }
}

/// Takes the store's key logs into the pins if they changed since last
/// time, and closes every connection whose certificate key no longer
/// speaks for its agency (a node key revoked, a root rotated away from
/// the agency key).
fn sync_pins(inner: &Arc<Inner>, store: &Store) {
    let (rev, logs) = store.key_logs();
    {
        let mut seen = lock(&inner.pins_key_revision);
        // A negative revision is a cache being reloaded after a failure:
        // the pins keep the logs they have rather than lose one (which
        // would let a rotated-away agency key speak again).
        if *seen == rev || rev < 0 {
            return;
        }
        *seen = rev;
    }
    inner.pins.set_key_logs(logs.clone());
    rejudge_connections(inner);
}

/// Judges the transport key of every connection again (SPEC.md §9.2):
/// after the held logs change, and every few seconds for keys whose
/// validity ends.
fn rejudge_connections(inner: &Arc<Inner>) {
    let now = now_ms();
    for (peer, conn) in lock(&inner.conns).values() {
        match inner.pins.speaks_for(&peer.key, &peer.carried, now) {
            Ok(a) if a == peer.agency => {}
            // A key retired in the ordinary course stays in the hands of
            // its agency: its connections run until they end, and the
            // next handshake takes the new key (SPEC.md §9.2).
            Err(Refusal::Revoked(RevokeReason::Retired)) => {}
            Ok(_) | Err(_) => {
                info!(peer = %peer.agency.fingerprint(), key = %peer.key, "closing a connection: its key no longer speaks for the agency");
                conn.close(quinn::VarInt::from_u32(0), b"key no longer valid");
            }
        }
    }
}

/// Rebuilds the TLS configurations if what the node should present
/// changed (a node key certified, replaced or revoked; its carried
/// statements). Open connections keep the key they authenticated with.
fn refresh_presented(inner: &Arc<Inner>, node_key: Option<&Identity>, store: &Store, force: bool) {
    // Judged again when the key logs or the node key changed, or when
    // `force` says a while has passed (a validity may have ended).
    let seen = (store.key_logs().0, node_key.map(key_of));
    {
        let mut last = lock(&inner.presented_for);
        if *last == Some(seen) && !force {
            return;
        }
        *last = Some(seen);
    }
    let own = store.cached_key_log(&inner.me);
    let now = presented(&inner.identity, node_key, own);
    let mut current = lock(&inner.presented);
    if now.key.verifying_key() == current.key.verifying_key() && now.carried == current.carried {
        return;
    }
    let configs = tls::server_config(&now, inner.pins.clone()).and_then(|server| {
        tls::client_config_presenting(&now, inner.pins.clone()).map(|client| (server, client))
    });
    match configs {
        Ok((server, client)) => {
            inner.endpoint.set_server_config(Some(server));
            *lock(&inner.client) = client;
            announce_presented(&inner.identity, &now, own);
            *current = now;
        }
        Err(e) => warn!(error = %e, "TLS configuration not rebuilt; the node presents what it did"),
    }
}

/// Registers an authenticated connection until the guard is dropped.
struct Tracked {
    inner: Arc<Inner>,
    id: u64,
}

impl Tracked {
    fn new(inner: &Arc<Inner>, peer: tls::PeerIdentity, conn: &quinn::Connection) -> Tracked {
        let id = inner
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&inner.conns).insert(id, (peer, conn.clone()));
        Tracked {
            inner: inner.clone(),
            id,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.inner.conns).remove(&self.id);
    }
}

async fn dial_loop(
    inner: Arc<Inner>,
    name: String,
    key: AgencyId,
    addr: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let still_wanted = lock(&inner.peers)
            .iter()
            .any(|p| p.agency() == Some(key) && p.addr == addr);
        if !still_wanted {
            return;
        }
        if !lock(&inner.sessions).contains_key(&key) {
            // A host name is resolved at each attempt (the partner may move).
            let to = crate::config::resolve(&addr, inner.endpoint.local_addr().ok()).await;
            let client = lock(&inner.client).clone();
            match to.map(|to| inner.endpoint.connect_with(client, to, tls::SERVER_NAME)) {
                Err(e) => debug!(peer = ?name, %addr, error = %e, "address not resolved"),
                Ok(Ok(connecting)) => match connecting.await {
                    Ok(conn) => {
                        let peer = tls::peer_agency(&conn, &inner.pins);
                        if let Some(peer) = peer.filter(|p| p.agency == key) {
                            let carried = (peer.key, peer.carried.clone());
                            let _tracked = Tracked::new(&inner, peer, &conn);
                            info!(peer = ?name, %addr, "connected");
                            let opened = conn.open_bi().await;
                            match opened {
                                Ok((send, recv)) => {
                                    let began = Instant::now();
                                    let clean =
                                        run_session(inner.clone(), conn, key, carried, send, recv)
                                            .await;
                                    info!(peer = ?name, "disconnected");
                                    // A session that failed at once (the
                                    // peer's storage is failing, say) does
                                    // not reset the backoff: reconnecting
                                    // at full speed would only repeat it.
                                    if clean || began.elapsed() >= STABLE {
                                        backoff = BACKOFF_MIN;
                                    }
                                }
                                Err(e) => debug!(peer = ?name, error = %e, "stream refused"),
                            }
                        } else {
                            conn.close(quinn::VarInt::from_u32(0), b"");
                        }
                    }
                    Err(e) => debug!(peer = ?name, %addr, error = %e, "connect failed"),
                },
                Ok(Err(e)) => debug!(peer = ?name, %addr, error = %e, "connect failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn accept_loop(inner: Arc<Inner>, shutdown: watch::Receiver<bool>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        if *shutdown.borrow() {
            incoming.refuse();
            continue;
        }
        let inner = inner.clone();
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    // A peer retrying a refused handshake leaves one line
                    // per address per LOG_EVERY, with the count.
                    let due = lock(&inner.refused).due(remote.ip(), Instant::now());
                    if let Some(attempts) = due {
                        info!(%remote, attempts, error = %e, "handshake refused");
                    }
                    return;
                }
            };
            let Some(peer) = tls::peer_agency(&conn, &inner.pins) else {
                conn.close(quinn::VarInt::from_u32(0), b"");
                return;
            };
            let (key, carried) = (peer.agency, (peer.key, peer.carried.clone()));
            // From here until it closes, a pin removal closes it.
            let _tracked = Tracked::new(&inner, peer, &conn);
            if !inner.pins.contains(&key.0) {
                conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                return;
            }
            let accepted = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi()).await;
            match accepted {
                Ok(Ok((send, recv))) => {
                    info!(peer = %key.fingerprint(), "peer connected");
                    run_session(inner, conn, key, carried, send, recv).await;
                    info!(peer = %key.fingerprint(), "peer disconnected");
                }
                _ => conn.close(quinn::VarInt::from_u32(0), b""),
            }
        });
    }
}

/// Polls the store and the configuration for changes by other processes,
/// and writes due witnesses.
async fn watch_loop(inner: Arc<Inner>, shutdown: watch::Receiver<bool>) {
    let _ = shutdown;
    let store_path = lock(&inner.store).path().to_owned();
    #[cfg(unix)]
    let wake = crate::wake::listen(&store_path);
    #[cfg(not(unix))]
    let _ = &store_path;
    let mut buf = [0u8; 16];
    let mut rejudged = Instant::now();
    loop {
        #[cfg(unix)]
        match &wake {
            Some(sock) => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = sock.recv(&mut buf) => {
                        // Several commits, one look.
                        while sock.try_recv(&mut buf).is_ok() {}
                    }
                }
            }
            None => tokio::time::sleep(POLL_ALONE).await,
        }
        #[cfg(not(unix))]
        {
            let _ = &mut buf;
            tokio::time::sleep(POLL_ALONE).await;
        }
        let i = inner.clone();
        let due = rejudged.elapsed() >= REJUDGE;
        if due {
            rejudged = Instant::now();
            rejudge_connections(&inner);
        }
        let rev = tokio::task::spawn_blocking(move || {
            // The configuration first: a peer removed before an entry was
            // written is unpinned before that entry is loaded.
            reload_config(&i);
            // The node key first: the store lock is never held when this
            // one is taken.
            let mut nk = lock(&i.node_key);
            nk.refresh(&i.dir);
            let mut store = lock(&i.store);
            if let Err(e) = store.refresh() {
                warn!(error = %e, "store refresh failed");
            }
            sync_pins(&i, &store);
            refresh_presented(&i, nk.key.as_ref(), &store, due);
            store.revision()
        })
        .await;
        if let Ok(rev) = rev {
            inner.revision.send_if_modified(|r| {
                let changed = *r != rev;
                *r = rev;
                changed
            });
        }
        write_due_witnesses(&inner).await;
    }
}

/// Writes a witness for each case that received others' entries, at most
/// once per interval per case.
async fn write_due_witnesses(inner: &Arc<Inner>) {
    let due: Vec<CaseId> = {
        let w = lock(&inner.witness);
        w.iter()
            .filter(|(_, c)| c.due && c.last.is_none_or(|t| t.elapsed() >= inner.witness_interval))
            .map(|(k, _)| *k)
            .collect()
    };
    for case in due {
        {
            let mut w = lock(&inner.witness);
            let c = w.entry(case).or_default();
            c.due = false;
            c.last = Some(Instant::now());
        }
        let i = inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            // The node key first (it may be read again, which for an
            // encrypted file takes a key derivation), outside the store
            // lock; the store lock is never held when this one is taken.
            let mut nk = lock(&i.node_key);
            nk.refresh(&i.dir);
            let mut store = lock(&i.store);
            let heads: Vec<Head> = store
                .heads(&case)
                .into_iter()
                .filter(|h| h.0 != i.me)
                .take(custodia_protocol::MAX_WITNESS_HEADS)
                .collect();
            let v = store.case(&case)?;
            if heads.is_empty() || !v.is_member(&i.me) {
                return None;
            }
            // A case on hold takes no witness until it is ready again (the
            // hold was said when it was put); nothing to warn about at
            // every interval.
            if store.holds(Some(&case)).is_ok_and(|h| !h.is_empty()) {
                return None;
            }
            let tlp = v.state().tlp.unwrap_or(Tlp::Amber);
            let tlp = if tlp == Tlp::Red { Tlp::Amber } else { tlp };
            let mut draft = Draft::new(tlp, Body::Witness(Witness { heads }));
            draft.refs.clear();
            // A case of format version 2 is witnessed with the node key,
            // read again if node.key was replaced.
            if v.version() != Some(custodia_protocol::FORMAT_VERSION_2) {
                return Some(store.author(&i.identity, Some(case), draft, now_ms()));
            }
            let Some(k) = nk.key.as_ref() else {
                // Said once per case: without witnesses, a court cannot
                // tell this agency's partners' entries from a thief's
                // once a key is reported compromised (SPEC.md §10.6).
                if nk.unwitnessed.insert(case) {
                    warn!(case = %case, "no node key (node.key): this case of format version 2 is not witnessed from here; certify one with `custodia key certify-node`");
                }
                return None;
            };
            Some(store.author(crate::Signer::certified(i.me, k), Some(case), draft, now_ms()))
        })
        .await;
        match result {
            Ok(Some(Ok(e))) => {
                debug!(case = %case, entry = %e.id(), "witness written");
                let i = inner.clone();
                if let Ok(rev) =
                    tokio::task::spawn_blocking(move || lock(&i.store).revision()).await
                {
                    inner.revision.send_replace(rev);
                }
            }
            Ok(Some(Err(e))) => warn!(case = %case, error = %e, "witness not written"),
            _ => {}
        }
    }
}

/// Runs one session; returns whether it ended without a protocol or
/// storage error.
async fn run_session(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: AgencyId,
    (key, carried): (KeyId, Vec<Vec<u8>>),
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> bool {
    // The pins at the start of every session, whatever they were at the
    // handshake. The key statements the peer's certificate carried are
    // taken first, as a peer's key statements are (SPEC.md §9.15): from
    // then on the held log says what the peer's node key is.
    let pinned = {
        let i = inner.clone();
        tokio::task::spawn_blocking(move || {
            reload_config(&i);
            let mut store = lock(&i.store);
            // As many statements of another agency's log as a session
            // takes, no more (SPEC.md §9.15): a member cannot grow its
            // log here by reconnecting.
            let kept = store.cached_key_log(&peer).map_or(0, |l| l.len());
            if !carried.is_empty()
                && i.pins.contains(&peer.0)
                && kept < custodia_protocol::session::MAX_KEPT_KEY_LOG
            {
                match store.receive_key_statements(&peer, &carried) {
                    Ok(got) if got.changed() => {
                        debug!(peer = %peer.fingerprint(), new = got.new, "key statements taken from the peer's certificate");
                        sync_pins(&i, &store);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "store failed while taking a certificate's key statements"),
                }
            }
            // Judged again with the logs as they are now: the handshake
            // may have been judged with logs a statement has changed since.
            i.pins.contains(&peer.0)
                && i.pins.speaks_for(&key, &carried, now_ms()).ok() == Some(peer)
        })
        .await
        .unwrap_or(false)
    };
    if !pinned {
        conn.close(quinn::VarInt::from_u32(0), b"peer removed");
        return false;
    }
    lock(&inner.stats).entry(peer).or_default().sessions += 1;
    let id = inner
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out, out_rx) = mpsc::channel::<Message>(OUTBOX);
    if let Some(old) = lock(&inner.sessions).insert(
        peer,
        Live {
            id,
            conn: conn.clone(),
            out: out.clone(),
        },
    ) {
        old.conn
            .close(quinn::VarInt::from_u32(0), b"replaced by a new connection");
    }
    let writer = tokio::spawn(write_frames(send, out_rx));
    let result = session(&inner, &conn, peer, recv, out.clone()).await;
    // Clean: no error on either side (a peer that reports an error, or
    // closes with a non-zero code, ended the session with a failure).
    let clean = matches!(result, Ok(true))
        && match conn.close_reason() {
            None | Some(quinn::ConnectionError::LocallyClosed) => true,
            Some(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner() == 0,
            Some(_) => false,
        };
    if let Err(e) = result {
        // Tell the peer why (an error message), then close with the code.
        let (code, msg) = (e.code(), e.to_peer());
        let notice = Message::Error(ErrorMessage {
            code: code.as_u64(),
            message: msg.clone(),
        });
        let _ = tokio::time::timeout(Duration::from_millis(200), out.send(notice)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        warn!(peer = %peer.fingerprint(), code = code.as_u64(), reason = ?e.to_string(), "closing connection");
        conn.close(
            quinn::VarInt::from_u64(code.as_u64()).unwrap_or(quinn::VarInt::from_u32(6)),
            msg.as_bytes(),
        );
    }
    writer.abort();
    let mut sessions = lock(&inner.sessions);
    if sessions.get(&peer).is_some_and(|s| s.id == id) {
        sessions.remove(&peer);
    }
    clean
}

async fn write_frames(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Message>) {
    while let Some(m) = rx.recv().await {
        let fatal = matches!(m, Message::Error(_));
        if send.write_all(&m.to_frame()).await.is_err() {
            return;
        }
        if fatal {
            let _ = send.shutdown().await;
            return;
        }
    }
}

/// The node's store as a session's [`Replica`], under the store lock.
struct NodeReplica<'a> {
    store: &'a mut Store,
    inner: &'a Arc<Inner>,
}

impl Replica for NodeReplica<'_> {
    type Error = StoreError;

    fn may_serve(&mut self, peer: &AgencyId) -> bool {
        may_serve(self.store, self.inner, peer)
    }

    fn cases(&self) -> Vec<CaseId> {
        self.store.cases().copied().collect()
    }

    fn case(&self, case: &CaseId) -> Option<&custodia_protocol::Validator> {
        self.store.case(case)
    }

    fn heads(&self, case: &CaseId) -> Vec<Head> {
        self.store.heads(case)
    }

    fn row_heads_after(
        &mut self,
        case: &CaseId,
        pos: i64,
        limit: usize,
    ) -> Result<Vec<store::RowHead>, StoreError> {
        self.store.row_heads_after(case, pos, limit)
    }

    fn row_bytes(
        &mut self,
        pos: i64,
        id: &custodia_protocol::EntryId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.row_bytes(pos, id)
    }

    fn receive(
        &mut self,
        batches: Vec<(CaseId, Vec<Checked>)>,
        from: &AgencyId,
        now_ms: u64,
    ) -> Result<Vec<store::BatchOutcome>, StoreError> {
        // A withheld marker is unsigned: it is taken only from an agency
        // that is a member of the case here. Signed entries are validated
        // whoever relays them.
        let outcomes = self.store.receive_checked(batches, Some(*from), now_ms)?;
        // Own entries a peer was ahead by may have arrived (SPEC.md §9.14).
        self.store.settle_holds(&self.inner.me)?;
        Ok(outcomes)
    }

    fn receive_proof(
        &mut self,
        case: &CaseId,
        proof: &EquivocationProof,
        from: &AgencyId,
    ) -> Result<Result<bool, custodia_protocol::ProofRefusal>, StoreError> {
        self.store.receive_proof(case, proof, from)
    }

    fn proofs(&mut self, case: &CaseId) -> Result<Vec<EquivocationProof>, StoreError> {
        self.store.proofs(case)
    }

    fn own_head_seen(
        &mut self,
        case: &CaseId,
        peer: &AgencyId,
        head: Option<(u64, custodia_protocol::EntryId)>,
    ) -> Result<(), StoreError> {
        // A failure here loses a comparison, not data: logged, not fatal.
        if let Err(e) = self.store.own_head_seen(case, &self.inner.me, peer, head) {
            warn!(error = %e, "store failed while checking this agency's head");
        }
        Ok(())
    }

    fn key_log(&self, agency: &AgencyId) -> Option<&custodia_protocol::keylog::KeyLog> {
        self.store.cached_key_log(agency)
    }

    fn receive_key_statements(
        &mut self,
        agency: &AgencyId,
        items: &[Vec<u8>],
    ) -> Result<custodia_protocol::keylog::Received, StoreError> {
        let got = self.store.receive_key_statements(agency, items)?;
        if got.changed() {
            sync_pins(self.inner, self.store);
        }
        if let Some((held, _)) = &got.fork {
            warn!(
                agency = %agency.fingerprint(),
                seq = held.seq(),
                "key log forked: its root signed two statements at one position (proof kept)"
            );
        }
        Ok(got)
    }

    fn pins(&self, agency: &AgencyId) -> bool {
        self.inner.pins.contains(&agency.0)
    }

    fn own_key_head_seen(
        &mut self,
        peer: &AgencyId,
        len: u64,
        head: &custodia_protocol::StatementId,
    ) -> Result<(), StoreError> {
        // A failure here loses a comparison, not data: logged, not fatal.
        match self.store.own_key_head_seen(&self.inner.me, len, head) {
            Ok(true) => {
                info!(peer = %peer.fingerprint(), len, "this agency's key log confirmed by a peer holding it: statements may be written again");
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "store failed while checking this agency's key log"),
        }
        Ok(())
    }

    fn peer_acknowledged(
        &mut self,
        case: &CaseId,
        peer: &AgencyId,
        seq: u64,
    ) -> Result<(), StoreError> {
        if let Err(e) = self.store.record_peer_view(case, peer, Some(seq)) {
            warn!(error = %e, "store failed while recording a peer's acknowledgement");
        }
        Ok(())
    }
}

/// What the reader hands the session: a message, or a batch of entries
/// already decoded and verified (outside the store lock), or the end of
/// the stream.
enum Incoming {
    Message(Message),
    Entries(CaseId, u64, Vec<Checked>),
    Closed,
}

type Frame = Result<Incoming, SessionError>;

/// Drives one session: the state machine ([`Session`]) with its input
/// from the peer's stream, the store's revision and a one-second tick,
/// and its output to the writer. Returns Ok(false) when the peer
/// reported an error.
async fn session(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    peer: AgencyId,
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<Message>,
) -> Result<bool, SessionError> {
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut link = Link {
        inner: inner.clone(),
        conn: conn.clone(),
        peer,
        out,
        acked: acked.clone(),
        session: Some(Session::new(inner.me, peer)),
        peer_error: false,
    };
    link.flush().await?;
    let mut revision = inner.revision.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (frames_tx, mut frames) = mpsc::channel::<Frame>(INBOX);
    let counter = inner.clone();
    // The reader decodes and verifies each batch of entries (on the
    // blocking pool, without the store lock) while the session commits
    // the ones before it.
    let reader = tokio::spawn(async move {
        let mut received: u64 = 0;
        loop {
            let r = read_frame(&mut recv).await;
            if let Ok(Some((m, size))) = &r {
                count(&counter, &peer, m, *size);
            }
            let r: Frame = match r {
                Ok(None) => Ok(Incoming::Closed),
                Ok(Some((Message::Entries(e), _))) => {
                    received += 1;
                    let unacked =
                        received.saturating_sub(acked.load(std::sync::atomic::Ordering::SeqCst));
                    if unacked > MAX_UNACKED_BATCHES as u64 {
                        Err(SessionError::FlowControl(unacked))
                    } else {
                        let (case, batch) = (e.case, e.batch);
                        match tokio::task::spawn_blocking(move || store::check(e.items)).await {
                            Ok(items) => Ok(Incoming::Entries(case, batch, items)),
                            Err(e) => Err(SessionError::Storage(format!("checking a batch: {e}"))),
                        }
                    }
                }
                Ok(Some((m, _))) => Ok(Incoming::Message(m)),
                Err(e) => Err(e),
            };
            let stop = !matches!(r, Ok(Incoming::Message(_)) | Ok(Incoming::Entries(..)));
            if frames_tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    let result: Result<(), SessionError> = async {
        // A frame taken from the queue that did not join a group commit.
        let mut pending: Option<Frame> = None;
        loop {
            if link.over() {
                return Ok(());
            }
            let frame = match pending.take() {
                Some(f) => f,
                None => tokio::select! {
                    frame = frames.recv() => match frame {
                        Some(f) => f,
                        None => return Ok(()),
                    },
                    changed = revision.changed() => {
                        if changed.is_err() { return Ok(()) }
                        link.step(|s, r| s.changed(r)).await?;
                        continue;
                    }
                    _ = tick.tick() => {
                        link.step(|s, r| s.tick(r, now_ms())).await?;
                        continue;
                    }
                    _ = conn.closed() => return Ok(()),
                },
            };
            match frame? {
                Incoming::Closed => return Ok(()),
                Incoming::Message(m) => link.step(move |s, r| s.handle(m, r, now_ms())).await?,
                Incoming::Entries(case, batch, items) => {
                    // The batches queued behind this one join its commit
                    // (one transaction, one fsync), each acknowledged
                    // after it. An ack frees a place in our own window;
                    // it does not depend on the store, so it does not end
                    // the group.
                    let mut group = vec![(case, batch, items)];
                    while pending.is_none() {
                        match frames.try_recv() {
                            Ok(Ok(Incoming::Entries(c, b, i))) => group.push((c, b, i)),
                            Ok(Ok(Incoming::Message(Message::Ack(a)))) => {
                                if let Some(s) = link.session.as_mut() {
                                    s.ack(&a)?;
                                }
                            }
                            Ok(other) => pending = Some(other),
                            Err(_) => break,
                        }
                    }
                    link.step(move |s, r| s.receive_entries(group, r, now_ms()))
                        .await?;
                }
            }
        }
    }
    .await;
    reader.abort();
    let peer_error = link.peer_error;
    result.map(|()| !peer_error)
}

/// Counts a received frame in the peer's statistics.
fn count(inner: &Arc<Inner>, peer: &AgencyId, m: &Message, size: usize) {
    let mut stats = lock(&inner.stats);
    let s = stats.entry(*peer).or_default();
    s.frames += 1;
    s.bytes += size as u64 + 4;
    match m {
        // A summary covers only the cases shared with the peer: for any other
        // peer it is the digest of nothing, as for a peer with no case.
        Message::Heads(_) | Message::Equivocation(_) => s.case_bytes += size as u64 + 4,
        Message::Entries(e) => {
            s.case_bytes += size as u64 + 4;
            s.items += e.items.len() as u64;
        }
        _ => {}
    }
}

/// One session's state machine and the I/O around it.
struct Link {
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: AgencyId,
    out: mpsc::Sender<Message>,
    /// `entries` messages acknowledged to the peer (the reader compares it
    /// with those received to enforce the peer's flow-control window).
    acked: Arc<std::sync::atomic::AtomicU64>,
    /// Taken while a step runs on the blocking pool.
    session: Option<Session>,
    peer_error: bool,
}

impl Link {
    /// Whether the session is over (peer removed or peer error).
    fn over(&self) -> bool {
        self.session.as_ref().is_none_or(Session::is_closed)
    }

    /// Runs one input of the state machine on the blocking pool, under the
    /// store lock, then sends its output and acts on its events.
    async fn step(
        &mut self,
        f: impl FnOnce(&mut Session, &mut NodeReplica<'_>) -> Result<(), SessionError> + Send + 'static,
    ) -> Result<(), SessionError> {
        let Some(mut session) = self.session.take() else {
            return Ok(());
        };
        let i = self.inner.clone();
        let (session, result, rev) = tokio::task::spawn_blocking(move || {
            let mut store = lock(&i.store);
            let mut replica = NodeReplica {
                store: &mut store,
                inner: &i,
            };
            let result = f(&mut session, &mut replica);
            let rev = store.revision();
            (session, result, rev)
        })
        .await
        .map_err(|e| SessionError::Storage(format!("internal: {e}")))?;
        self.session = Some(session);
        if let Err(SessionError::Storage(why)) = &result {
            warn!(peer = %self.peer.fingerprint(), error = %why, "store failed during a session");
        }
        self.flush().await?;
        self.events(rev).await;
        result
    }

    /// Sends what the state machine queued, counting acks before they go
    /// (the peer's next batch can only follow an ack's arrival).
    async fn flush(&mut self) -> Result<(), SessionError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let mut queued = Vec::with_capacity(session.queued());
        while let Some(m) = session.poll_transmit() {
            queued.push(m);
        }
        for m in queued {
            if matches!(m, Message::Ack(_)) {
                self.acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.out
                .send(m)
                .await
                .map_err(|_| SessionError::Storage("writer closed".into()))?;
        }
        Ok(())
    }

    /// Acts on the state machine's events: logs, witnesses due, proofs to
    /// the other sessions, a removed peer's connection closed.
    async fn events(&mut self, rev: i64) {
        let peer = self.peer.fingerprint();
        let mut stored = false;
        let mut proofs = Vec::new();
        while let Some(ev) = self.session.as_mut().and_then(Session::poll_event) {
            match ev {
                Event::Stored {
                    case,
                    ids,
                    of,
                    witness_due,
                } => {
                    debug!(%peer, case = %case, new = ids.len(), of, "stored");
                    stored = true;
                    if witness_due {
                        lock(&self.inner.witness).entry(case).or_default().due = true;
                    }
                }
                Event::Refused {
                    rejection: r,
                    transient: true,
                    ..
                } => {
                    debug!(%peer, entry = ?r.entry, rule = r.rule(), reason = ?r.to_string(), "entry deferred");
                }
                Event::Refused { rejection: r, .. } => {
                    warn!(%peer, entry = ?r.entry, rule = r.rule(), reason = ?r.to_string(), "entry refused");
                }
                Event::MarkersIgnored { case, count } => {
                    warn!(%peer, case = %case, dropped = count, "withheld markers from a non-member ignored");
                }
                Event::Proof {
                    case,
                    proof,
                    from_peer,
                } => {
                    if from_peer {
                        warn!(case = %case, %peer, "equivocation proof received and stored");
                    }
                    warn_if_own(&self.inner, &case, &proof);
                    proofs.push((case, proof));
                }
                Event::ProofRefused { case, refusal } => {
                    info!(%peer, case = %case, class = refusal.class(), reason = ?refusal.to_string(), "equivocation proof refused");
                }
                Event::ProofLimit => {
                    warn!(%peer, limit = MAX_REFUSED_PROOFS, "too many refused proofs; this connection's further proofs are dropped");
                }
                Event::PeerError { code, message } => {
                    // The peer's text is escaped (Debug): a newline in it
                    // cannot forge a log line.
                    warn!(%peer, code, message = ?message, "peer reported an error");
                    self.peer_error = true;
                }
                Event::PeerRemoved => {
                    self.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                }
                Event::KeysStored {
                    agency,
                    new,
                    superseded,
                } => {
                    info!(%peer, agency = %agency.fingerprint(), new, superseded, "key statements stored");
                    if superseded > 0 {
                        warn!(agency = %agency.fingerprint(), superseded, "a recovery rotation superseded key statements: what the old root signed there is void");
                    }
                    stored = true;
                }
                Event::KeysRefused {
                    agency,
                    error,
                    unchecked,
                } => {
                    // The error's text may quote the peer's strings:
                    // escaped (Debug), so it cannot forge a log line.
                    warn!(%peer, agency = %agency.fingerprint(), rule = error.rule(), reason = ?error.to_string(), unchecked, "key statement refused");
                }
                Event::KeysIgnored { agency, count } => {
                    info!(%peer, agency = %agency.fingerprint(), count, "key log of an agency in no case held, not pinned: ignored");
                }
                Event::KeysOverLimit { agency, held } => {
                    warn!(%peer, agency = %agency.fingerprint(), held, limit = custodia_protocol::session::MAX_KEPT_KEY_LOG, "another agency's key log is at the limit this node keeps: its further statements are not taken");
                }
                Event::KeyLimit => {
                    warn!(%peer, limit = custodia_protocol::session::MAX_REFUSED_KEY_MESSAGES, "too many refused key statements; this connection's further key statements are dropped");
                }
                _ => {}
            }
        }
        if stored {
            self.inner.revision.send_replace(rev);
        }
        for (case, proof) in proofs {
            // This session's peer was offered it by the state machine.
            broadcast_proof(&self.inner, case, proof, self.peer).await;
        }
    }
}

/// Reads one frame; None when the stream ended cleanly between frames.
async fn read_frame(
    recv: &mut quinn::RecvStream,
) -> Result<Option<(Message, usize)>, SessionError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) if n > 0 => {
            return Err(SyncError::Malformed("stream ended inside a frame length".into()).into())
        }
        Err(_) => return Ok(None),
    }
    let n = Message::frame_len(prefix)?;
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body)
        .await
        .map_err(|_| SyncError::Malformed("frame truncated".into()))?;
    Ok(Some((Message::decode(&body)?, n)))
}

/// Says so prominently when a proof shows that this agency itself signed
/// two entries at one position (SPEC.md §9.14).
fn warn_if_own(inner: &Arc<Inner>, case: &CaseId, proof: &custodia_protocol::EquivocationProof) {
    if let Ok(eq) = proof.claims() {
        if eq.author == inner.me {
            warn!(case = %case, seq = eq.seq, "THIS AGENCY HAS EQUIVOCATED: it signed two different entries at one position (a copied key or node folder, or a restored store written in); the node writes nothing more in the case until people decide how the record goes on");
        }
    }
}

/// Sends a new proof to every other connected peer that may see it.
async fn broadcast_proof(
    inner: &Arc<Inner>,
    case: CaseId,
    proof: EquivocationProof,
    except: AgencyId,
) {
    let i = inner.clone();
    let _ = tokio::task::spawn_blocking(move || reload_config(&i)).await;
    let sessions: Vec<(AgencyId, Live)> = lock(&inner.sessions)
        .iter()
        .map(|(k, s)| (*k, s.clone()))
        .collect();
    for (peer, s) in sessions {
        if peer == except || !inner.pins.contains(&peer.0) {
            continue;
        }
        let p = proof.clone();
        let i = inner.clone();
        let visible = tokio::task::spawn_blocking(move || {
            lock(&i.store)
                .case(&case)
                .is_some_and(|v| proof_visible(v, &p, &peer))
        })
        .await
        .unwrap_or(false);
        if visible {
            let _ = s
                .out
                .send(Message::Equivocation(EquivocationNotice {
                    case,
                    proof: proof.clone(),
                }))
                .await;
        }
    }
}
