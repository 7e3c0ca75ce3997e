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

use custodia_protocol::{
    Ack, AgencyId, Body, CaseId, Entries, EquivocationNotice, ErrorCode, ErrorMessage, Head, Heads,
    Hello, Identity, Message, SyncItem, Tlp, Witness, MAX_BATCH, MAX_UNACKED_BATCHES,
    SYNC_VERSIONS,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError, CONFIG_FILE};
use crate::keyfile::{self, KeyFileError};
use crate::store::{self, Checked, Draft, Store, StoreError};
use crate::tls::{self, PinSet, TlsError};

/// How often the daemon looks for changes other processes made (the CLI
/// writes to the store file directly) when nothing wakes it. A process
/// that commits wakes the node through its wake-up socket
/// ([`crate::wake`]), so the poll is only the fallback for a wake-up that
/// did not arrive. Changes the daemon makes itself (received batches,
/// witnesses) wake the sessions at once.
const POLL: Duration = Duration::from_millis(100);
/// The poll interval where there is no wake-up socket.
const POLL_ALONE: Duration = Duration::from_millis(10);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the reconnect backoff even if it
/// ended with an error; a shorter one that failed keeps doubling it.
const STABLE: Duration = Duration::from_secs(10);
/// A batch is closed once it holds this many bytes of entries (a frame
/// stays far below `MAX_FRAME` whatever the entries' sizes).
const BATCH_BYTES: usize = 1024 * 1024;
/// Delay before asking a peer again for entries refused as transient.
const RESYNC: Duration = Duration::from_secs(2);
/// At most this many re-requests in a row without progress (an entry that
/// stays refused does not make a peer resend forever).
const MAX_RESYNCS: u32 = 5;
/// Equivocation proofs refused on one connection before the rest of its
/// proofs are dropped unchecked (SPEC.md §9.11).
const MAX_REFUSED_PROOFS: usize = 64;
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
    store: Mutex<Store>,
    pins: PinSet,
    peers: Mutex<Vec<crate::config::Peer>>,
    sessions: Mutex<HashMap<AgencyId, Session>>,
    revision: watch::Sender<i64>,
    witness_interval: Duration,
    witness: Mutex<HashMap<CaseId, WitnessClock>>,
    next_session: std::sync::atomic::AtomicU64,
    endpoint: quinn::Endpoint,
    stats: Mutex<HashMap<AgencyId, PeerStats>>,
    /// Every authenticated connection, from the end of its handshake to
    /// its close, by connection number: a pin removal closes each of the
    /// agency's, including one still waiting for its first stream.
    conns: Mutex<HashMap<u64, (AgencyId, quinn::Connection)>>,
    /// What the configuration file looked like when it was last applied.
    config_seen: Mutex<Option<FileStamp>>,
    shutdown: watch::Receiver<bool>,
    /// Refused handshakes, by remote address, for rate-limited logging.
    refused: Mutex<LogLimiter>,
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

#[derive(Clone)]
struct Session {
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

/// Starts the node in `dir` (which `custodia init` created).
pub async fn start(dir: &Path) -> Result<Running, NodeError> {
    let config = Config::load(dir)?;
    let identity = keyfile::read(&config.key_path(dir))?;
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
    let server = tls::server_config(identity.signing_key(), pins.clone())?;
    let client = tls::client_config(identity.signing_key(), pins.clone())?;
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
    let mut endpoint =
        quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime).map_err(listen_err)?;
    endpoint.set_default_client_config(client);
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

/// Runs the node until `stop` resolves, then shuts down cleanly.
pub async fn run(dir: &Path, stop: impl std::future::Future<Output = ()>) -> Result<(), NodeError> {
    let running = start(dir).await?;
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
                for (_, (a, c)) in lock(&inner.conns).iter() {
                    if *a == k {
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

/// Registers an authenticated connection until the guard is dropped.
struct Tracked {
    inner: Arc<Inner>,
    id: u64,
}

impl Tracked {
    fn new(inner: &Arc<Inner>, peer: AgencyId, conn: &quinn::Connection) -> Tracked {
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
            match to.map(|to| inner.endpoint.connect(to, tls::SERVER_NAME)) {
                Err(e) => debug!(peer = ?name, %addr, error = %e, "address not resolved"),
                Ok(Ok(connecting)) => match connecting.await {
                    Ok(conn) => {
                        if tls::peer_key(&conn) == Some(key.0) {
                            let _tracked = Tracked::new(&inner, key, &conn);
                            info!(peer = ?name, %addr, "connected");
                            let opened = conn.open_bi().await;
                            match opened {
                                Ok((send, recv)) => {
                                    let began = Instant::now();
                                    let clean =
                                        run_session(inner.clone(), conn, key, send, recv).await;
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
            let Some(key) = tls::peer_key(&conn).map(AgencyId) else {
                conn.close(quinn::VarInt::from_u32(0), b"");
                return;
            };
            // From here until it closes, a pin removal closes it.
            let _tracked = Tracked::new(&inner, key, &conn);
            if !inner.pins.contains(&key.0) {
                conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                return;
            }
            let accepted = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi()).await;
            match accepted {
                Ok(Ok((send, recv))) => {
                    info!(peer = %key.fingerprint(), "peer connected");
                    run_session(inner, conn, key, send, recv).await;
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
        let rev = tokio::task::spawn_blocking(move || {
            // The configuration first: a peer removed before an entry was
            // written is unpinned before that entry is loaded.
            reload_config(&i);
            let mut store = lock(&i.store);
            if let Err(e) = store.refresh() {
                warn!(error = %e, "store refresh failed");
            }
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
            let tlp = v.state().tlp.unwrap_or(Tlp::Amber);
            let tlp = if tlp == Tlp::Red { Tlp::Amber } else { tlp };
            let mut draft = Draft::new(tlp, Body::Witness(Witness { heads }));
            draft.refs.clear();
            Some(store.author(&i.identity, Some(case), draft, now_ms()))
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

/// Per-case sending state of one session.
#[derive(Default)]
struct CaseCursor {
    /// We sent our heads for this case.
    heads_sent: bool,
    /// The peer's heads arrived (or it told us it has nothing).
    peer_heads: Option<HashMap<AgencyId, u64>>,
    /// Store position up to which rows were considered.
    pos: i64,
    /// When to send our heads again so the peer re-offers refused entries.
    resync_at: Option<Instant>,
    /// Re-requests since the last batch that stored something new.
    resyncs: u32,
    /// The proofs held for this case were sent on this connection.
    proofs_sent: bool,
}

struct SessionState {
    peer: AgencyId,
    conn: quinn::Connection,
    /// Equivocation proofs refused on this connection (SPEC.md §9.11).
    refused_proofs: usize,
    /// The peer sent an `error` message.
    peer_error: bool,
    /// Batches sent and not yet acknowledged: (batch, case, the peer's
    /// head of this agency's chain once it stores the batch).
    unacked: std::collections::VecDeque<(u64, CaseId, Option<u64>)>,
    /// What the peer acknowledged of this agency's chain, per case, not
    /// yet recorded in the store (recorded on the session's tick).
    acked_own: HashMap<CaseId, u64>,
    cases: HashMap<CaseId, CaseCursor>,
    in_flight: usize,
    batch: u64,
    hello: bool,
    /// `entries` messages acknowledged to the peer (the reader compares it
    /// with those received to enforce the peer's flow-control window).
    acked: Arc<std::sync::atomic::AtomicU64>,
}

/// A received `entries` message, its items through [`store::check`].
struct CheckedEntries {
    case: CaseId,
    batch: u64,
    items: Vec<Checked>,
}

/// What the reader hands the session: a message, or a batch of entries
/// already decoded and verified (outside the store lock).
enum Incoming {
    Message(Message),
    Entries(CheckedEntries),
}

type Frame = Result<Incoming, (ErrorCode, String)>;

/// Runs one session; returns whether it ended without a protocol or
/// storage error.
async fn run_session(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    peer: AgencyId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> bool {
    // The pins at the start of every session, whatever they were at the
    // handshake.
    let pinned = {
        let i = inner.clone();
        tokio::task::spawn_blocking(move || {
            reload_config(&i);
            i.pins.contains(&peer.0)
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
        Session {
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
    if let Err((code, msg)) = result {
        // Tell the peer why (an error message), then close with the code.
        let notice = Message::Error(ErrorMessage {
            code: code.as_u64(),
            message: msg.clone(),
        });
        let _ = tokio::time::timeout(Duration::from_millis(200), out.send(notice)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        warn!(peer = %peer.fingerprint(), code = code.as_u64(), reason = ?msg, "closing connection");
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

type SessionResult = Result<(), (ErrorCode, String)>;

async fn session(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    peer: AgencyId,
    mut recv: quinn::RecvStream,
    out: mpsc::Sender<Message>,
) -> Result<bool, (ErrorCode, String)> {
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut st = SessionState {
        peer,
        conn: conn.clone(),
        refused_proofs: 0,
        peer_error: false,
        unacked: std::collections::VecDeque::new(),
        acked_own: HashMap::new(),
        cases: HashMap::new(),
        in_flight: 0,
        batch: 0,
        hello: false,
        acked: acked.clone(),
    };
    let send = |m: Message| {
        let out = out.clone();
        async move {
            out.send(m)
                .await
                .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))
        }
    };
    send(Message::Hello(Hello {
        versions: SYNC_VERSIONS.to_vec(),
        agency: inner.me,
    }))
    .await?;
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
            if let Ok((m, size)) = &r {
                let mut stats = lock(&counter.stats);
                let s = stats.entry(peer).or_default();
                s.frames += 1;
                s.bytes += *size as u64 + 4;
                match m {
                    Message::Heads(_) | Message::Equivocation(_) => {
                        s.case_bytes += *size as u64 + 4
                    }
                    Message::Entries(e) => {
                        s.case_bytes += *size as u64 + 4;
                        s.items += e.items.len() as u64;
                    }
                    _ => {}
                }
            }
            let r: Frame = match r {
                Ok((Message::Entries(e), _)) => {
                    received += 1;
                    let unacked =
                        received.saturating_sub(acked.load(std::sync::atomic::Ordering::SeqCst));
                    if unacked > MAX_UNACKED_BATCHES as u64 {
                        Err((
                            ErrorCode::FlowControl,
                            format!(
                                "{unacked} entries messages unacknowledged (limit {MAX_UNACKED_BATCHES})"
                            ),
                        ))
                    } else {
                        let (case, batch) = (e.case, e.batch);
                        match tokio::task::spawn_blocking(move || store::check(e.items)).await {
                            Ok(items) => {
                                Ok(Incoming::Entries(CheckedEntries { case, batch, items }))
                            }
                            Err(e) => Err((ErrorCode::Internal, format!("checking a batch: {e}"))),
                        }
                    }
                }
                Ok((m, _)) => Ok(Incoming::Message(m)),
                Err(e) => Err(e),
            };
            let stop = r.is_err();
            if frames_tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    let result: SessionResult = async {
        // A frame taken from the queue that did not join a group commit.
        let mut pending: Option<Frame> = None;
        loop {
            if let Some(frame) = pending.take() {
                match on_frame(inner, &mut st, frame, &mut frames, &out).await? {
                    Some(next) => pending = next,
                    None => return Ok(()),
                }
                pump(inner, &mut st, &out).await?;
                continue;
            }
            tokio::select! {
                frame = frames.recv() => {
                    let Some(frame) = frame else { return Ok(()) };
                    match on_frame(inner, &mut st, frame, &mut frames, &out).await? {
                        Some(next) => pending = next,
                        None => return Ok(()),
                    }
                    pump(inner, &mut st, &out).await?;
                }
                changed = revision.changed() => {
                    if changed.is_err() { return Ok(()) }
                    if st.hello {
                        announce(inner, &mut st, &out).await?;
                        pump(inner, &mut st, &out).await?;
                    }
                }
                _ = tick.tick() => {
                    resync(inner, &mut st, &out).await?;
                    record_acknowledged(inner, &mut st).await?;
                }
                _ = conn.closed() => return Ok(()),
            }
        }
    }
    .await;
    reader.abort();
    // Ok(false): the session ended because the peer reported an error.
    result.map(|()| !st.peer_error)
}

/// Handles one frame from the reader. A batch of entries is committed
/// together with the batches already queued behind it (one transaction,
/// one fsync), each acknowledged after that commit; the first queued frame
/// that is not a batch is returned, to be handled next. None ends the
/// session quietly (the stream closed).
async fn on_frame(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    frame: Frame,
    frames: &mut mpsc::Receiver<Frame>,
    out: &mpsc::Sender<Message>,
) -> Result<Option<Option<Frame>>, (ErrorCode, String)> {
    let first = match frame {
        Ok(m) => m,
        Err((ErrorCode::Internal, _)) => return Ok(None), // stream closed
        Err((code, why)) => return Err((code, why)),
    };
    match first {
        Incoming::Message(m) => {
            handle(inner, st, m, out).await?;
            Ok(Some(None))
        }
        Incoming::Entries(e) => {
            if !st.hello {
                return Err((ErrorCode::ProtocolViolation, "message before hello".into()));
            }
            let mut group = vec![e];
            let mut next = None;
            while next.is_none() {
                match frames.try_recv() {
                    Ok(Ok(Incoming::Entries(e))) => group.push(e),
                    // An ack frees a place in our own window; it does not
                    // depend on the store, so it does not end the group.
                    Ok(Ok(Incoming::Message(Message::Ack(a)))) => on_ack(st, &a),
                    Ok(other) => next = Some(other),
                    Err(_) => break,
                }
            }
            receive_group(inner, st, group, out).await?;
            Ok(Some(next))
        }
    }
}

/// Stores received batches in one transaction, then acknowledges each, in
/// order (nothing is acknowledged before the commit that stores it).
async fn receive_group(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    group: Vec<CheckedEntries>,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let me = inner.me;
    let peer = st.peer;
    let heads: Vec<(CaseId, u64, usize)> = group
        .iter()
        .map(|e| (e.case, e.batch, e.items.len()))
        .collect();
    let batches: Vec<(CaseId, Vec<Checked>)> =
        group.into_iter().map(|e| (e.case, e.items)).collect();
    let result = blocking(inner, move |s, _| {
        // A withheld marker is unsigned: it is taken only from an agency
        // that is a member of the case here. Signed entries are validated
        // whoever relays them.
        let outcomes = s.receive_checked(batches, Some(peer), now_ms())?;
        // Own entries a peer was ahead by may have arrived (SPEC.md §9.14).
        s.settle_holds(&me)?;
        // Others' entries arrived: a witness is due (not for witnesses
        // alone, or witnesses would answer witnesses).
        let due: Vec<bool> = outcomes
            .iter()
            .zip(&heads)
            .map(|(o, (case, _, _))| {
                let v = s.case(case);
                !o.stored.iter().all(|id| {
                    v.and_then(|v| v.meta(id))
                        .is_none_or(|m| m.witness || m.author == me)
                })
            })
            .collect();
        Ok::<_, StoreError>((outcomes, due, s.revision(), heads))
    })
    .await?;
    let (outcomes, due, rev, heads) = result.map_err(|err| {
        warn!(error = %err, "store failed while receiving");
        (ErrorCode::Internal, "storage failure".to_string())
    })?;
    let mut stored_any = false;
    let mut proofs = Vec::new();
    for ((outcome, due), (case, batch, n)) in outcomes.into_iter().zip(due).zip(heads) {
        if outcome.ignored > 0 {
            warn!(peer = %st.peer.fingerprint(), case = %case, dropped = outcome.ignored, "withheld markers from a non-member ignored");
        }
        // What the peer sent, it has: never echo it back.
        if let Some(next) = st.cases.get_mut(&case).and_then(|c| c.peer_heads.as_mut()) {
            for (a, seq) in &outcome.positions {
                let n = next.entry(*a).or_insert(0);
                *n = (*n).max(seq + 1);
            }
        }
        // Entries refused for now (out of order, ahead of our clock) are
        // asked for again later by re-sending our heads.
        let cursor = st.cases.entry(case).or_default();
        if !outcome.stored.is_empty() {
            cursor.resyncs = 0;
        }
        if outcome.refused.iter().any(|r| r.kind.is_transient()) && cursor.resyncs < MAX_RESYNCS {
            cursor.resyncs += 1;
            cursor.resync_at = Some(Instant::now() + RESYNC);
        }
        for r in &outcome.refused {
            if r.kind.is_transient() {
                debug!(peer = %st.peer.fingerprint(), entry = ?r.entry, rule = r.rule(), reason = ?r.to_string(), "entry deferred");
            } else {
                warn!(peer = %st.peer.fingerprint(), entry = ?r.entry, rule = r.rule(), reason = ?r.to_string(), "entry refused");
            }
        }
        // Counted before it is sent: the peer's next batch can only follow
        // its arrival.
        st.acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        out.send(Message::Ack(Ack {
            case,
            batch,
            stored: (outcome.stored.len() + outcome.duplicates) as u64,
            refused: (outcome.refused.len() + outcome.ignored) as u64,
        }))
        .await
        .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))?;
        if !outcome.stored.is_empty() {
            debug!(peer = %st.peer.fingerprint(), case = %case, new = outcome.stored.len(), of = n, "stored");
            stored_any = true;
            if due {
                lock(&inner.witness).entry(case).or_default().due = true;
            }
        }
        proofs.extend(outcome.proofs.into_iter().map(|p| (case, p)));
    }
    if stored_any {
        inner.revision.send_replace(rev);
    }
    for (case, proof) in proofs {
        warn_if_own(inner, &case, &proof);
        // Including the sender: it holds only its own version.
        broadcast_proof(inner, case, proof, None).await;
    }
    Ok(())
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<(Message, usize), (ErrorCode, String)> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) if n > 0 => {
            return Err((
                ErrorCode::MalformedMessage,
                "stream ended inside a frame length".into(),
            ))
        }
        Err(_) => return Err((ErrorCode::Internal, "stream closed".into())),
    }
    let n = Message::frame_len(prefix).map_err(|e| (e.code(), e.to_string()))?;
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body)
        .await
        .map_err(|_| (ErrorCode::MalformedMessage, "frame truncated".to_string()))?;
    Message::decode(&body)
        .map(|m| (m, n))
        .map_err(|e| (e.code(), e.to_string()))
}

async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    f: impl FnOnce(&mut Store, &Arc<Inner>) -> T + Send + 'static,
) -> Result<T, (ErrorCode, String)> {
    let i = inner.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = lock(&i.store);
        f(&mut store, &i)
    })
    .await
    .map_err(|e| (ErrorCode::Internal, e.to_string()))
}

async fn handle(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    msg: Message,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let send = |m: Message| async move {
        out.send(m)
            .await
            .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))
    };
    match msg {
        Message::Hello(h) => {
            if st.hello {
                return Err((ErrorCode::ProtocolViolation, "second hello".into()));
            }
            if h.agency != st.peer {
                return Err((
                    ErrorCode::ProtocolViolation,
                    "hello names another agency than the authenticated one".into(),
                ));
            }
            if !h.versions.iter().any(|v| SYNC_VERSIONS.contains(v)) {
                return Err((
                    ErrorCode::UnsupportedVersion,
                    format!("no common sync version (this node speaks {SYNC_VERSIONS:?})"),
                ));
            }
            st.hello = true;
            announce(inner, st, out).await?;
        }
        _ if !st.hello => {
            return Err((ErrorCode::ProtocolViolation, "message before hello".into()));
        }
        Message::Heads(h) => {
            let peer = st.peer;
            let case = h.case;
            // Answer with our heads if the peer may see the case, or with an
            // empty list if we do not have it (which reveals nothing).
            let theirs = h.heads.clone();
            let (ours, peer_next, serving) = blocking(inner, move |s, i| {
                let serving = may_serve(s, i, &peer);
                // What the peer holds, per author. Where its head names
                // another id than ours at the same position, the author
                // forked: send our entry at that position so the peer can
                // build the equivocation proof (and it sends us its own).
                let v = s.case(&case);
                let peer_next: HashMap<AgencyId, u64> = theirs
                    .iter()
                    .map(|Head(a, seq, id)| {
                        let forked = v
                            .and_then(|v| v.at(a, *seq))
                            .is_some_and(|ours| ours != *id);
                        (*a, if forked { *seq } else { seq + 1 })
                    })
                    .collect();
                // A non-member gets the same empty answer as for an unknown
                // case: it cannot tell whether this node holds the case.
                let member = v.is_some_and(|v| v.is_member(&peer));
                let ours = if serving && member {
                    s.heads(&case)
                } else {
                    Vec::new()
                };
                // What a member peer holds of this agency's own chain
                // confirms the store's head, or shows it behind (SPEC.md
                // §9.14).
                if member {
                    let me = i.me;
                    let mine = theirs
                        .iter()
                        .find(|h| h.0 == me)
                        .map(|Head(_, seq, id)| (*seq, *id));
                    if let Err(e) = s.own_head_seen(&case, &me, &peer, mine) {
                        warn!(error = %e, "store failed while checking this agency's head");
                    }
                }
                (ours, peer_next, serving)
            })
            .await?;
            if !serving {
                st.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                return Ok(());
            }
            let cursor = st.cases.entry(case).or_default();
            cursor.peer_heads = Some(peer_next);
            cursor.pos = 0;
            if !cursor.heads_sent {
                cursor.heads_sent = true;
                send(Message::Heads(Heads { case, heads: ours })).await?;
            }
        }
        // The reader hands batches of entries to `on_frame` checked; an
        // unchecked one cannot reach here.
        Message::Entries(_) => {}
        Message::Ack(a) => on_ack(st, &a),
        Message::Equivocation(n) => {
            // Past the bound, a connection's proofs are dropped unread: a
            // peer cannot make the node verify signatures without limit.
            if st.refused_proofs >= MAX_REFUSED_PROOFS {
                return Ok(());
            }
            let case = n.case;
            let proof = n.proof.clone();
            let peer = st.peer;
            let fresh = blocking(inner, move |s, _| s.receive_proof(&case, &proof, &peer)).await?;
            match fresh {
                Ok(Ok(true)) => {
                    warn!(case = %case, peer = %st.peer.fingerprint(), "equivocation proof received and stored");
                    warn_if_own(inner, &case, &n.proof);
                    broadcast_proof(inner, case, n.proof, Some(st.peer)).await;
                }
                Ok(Ok(false)) => {}
                Ok(Err(refusal)) => {
                    st.refused_proofs += 1;
                    if st.refused_proofs == MAX_REFUSED_PROOFS {
                        warn!(peer = %st.peer.fingerprint(), limit = MAX_REFUSED_PROOFS, "too many refused proofs; this connection's further proofs are dropped");
                    } else {
                        info!(peer = %st.peer.fingerprint(), case = %case, class = refusal.class(), reason = ?refusal.to_string(), "equivocation proof refused");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "store failed while receiving a proof");
                    return Err((ErrorCode::Internal, "storage failure".to_string()));
                }
            }
        }
        Message::Error(e) => {
            // The peer's text is escaped (Debug): a newline in it cannot
            // forge a log line.
            warn!(peer = %st.peer.fingerprint(), code = e.code, message = ?e.message, "peer reported an error");
            st.peer_error = true;
            return Ok(());
        }
        _ => {}
    }
    Ok(())
}

/// Says so prominently when a proof shows that this agency itself signed
/// two entries at one position (SPEC.md §9.14).
fn warn_if_own(inner: &Arc<Inner>, case: &CaseId, proof: &custodia_protocol::EquivocationProof) {
    if let Ok(eq) = proof.check() {
        if eq.author == inner.me {
            warn!(case = %case, seq = eq.seq, "THIS AGENCY HAS EQUIVOCATED: it signed two different entries at one position (a copied key or node folder, or a restored store written in); the node writes nothing more in the case until people decide how the record goes on");
        }
    }
}

async fn broadcast_proof(
    inner: &Arc<Inner>,
    case: CaseId,
    proof: custodia_protocol::EquivocationProof,
    except: Option<AgencyId>,
) {
    let i = inner.clone();
    let _ = tokio::task::spawn_blocking(move || reload_config(&i)).await;
    let sessions: Vec<(AgencyId, Session)> = lock(&inner.sessions)
        .iter()
        .map(|(k, s)| (*k, s.clone()))
        .collect();
    for (peer, s) in sessions {
        if Some(peer) == except {
            continue;
        }
        let p = proof.clone();
        let member = blocking(inner, move |st, _| {
            st.case(&case).is_some_and(|v| proof_visible(v, &p, &peer))
        })
        .await
        .unwrap_or(false);
        if member {
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

/// An `ack` frees a place in the window, and tells what the peer now holds
/// of this agency's chain.
fn on_ack(st: &mut SessionState, ack: &custodia_protocol::Ack) {
    st.in_flight = st.in_flight.saturating_sub(1);
    while let Some(&(batch, case, own)) = st.unacked.front() {
        if batch > ack.batch {
            break;
        }
        st.unacked.pop_front();
        if let (true, Some(seq)) = (batch == ack.batch && case == ack.case, own) {
            let e = st.acked_own.entry(case).or_insert(seq);
            *e = (*e).max(seq);
        }
    }
}

/// Records what the peer acknowledged of this agency's chains (at most
/// once per tick: one small write, not one per batch).
async fn record_acknowledged(inner: &Arc<Inner>, st: &mut SessionState) -> SessionResult {
    if st.acked_own.is_empty() {
        return Ok(());
    }
    let acked: Vec<(CaseId, u64)> = st.acked_own.drain().collect();
    let peer = st.peer;
    blocking(inner, move |s, _| {
        for (case, seq) in acked {
            if let Err(e) = s.record_peer_view(&case, &peer, Some(seq)) {
                warn!(error = %e, "store failed while recording a peer's acknowledgement");
            }
        }
    })
    .await
}

/// Sends our heads again for cases whose refused entries are due to be
/// offered again.
async fn resync(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let now = Instant::now();
    let due: Vec<CaseId> = st
        .cases
        .iter()
        .filter(|(_, c)| c.resync_at.is_some_and(|t| t <= now))
        .map(|(k, _)| *k)
        .collect();
    for case in due {
        if let Some(c) = st.cases.get_mut(&case) {
            c.resync_at = None;
        }
        let peer = st.peer;
        let heads = blocking(inner, move |s, i| {
            if !may_serve(s, i, &peer) {
                return None;
            }
            Some(match s.case(&case) {
                Some(v) if v.is_member(&peer) => s.heads(&case),
                _ => Vec::new(),
            })
        })
        .await?;
        let Some(heads) = heads else {
            st.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
            return Ok(());
        };
        out.send(Message::Heads(Heads { case, heads }))
            .await
            .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))?;
    }
    Ok(())
}

/// Sends our heads for every case the peer may see and has not heard of.
async fn announce(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let peer = st.peer;
    let shared: Option<Vec<(CaseId, Vec<Head>)>> = blocking(inner, move |s, i| {
        if !may_serve(s, i, &peer) {
            return None;
        }
        let shared = s
            .cases()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .filter(|c| s.case(c).is_some_and(|v| v.is_member(&peer)))
            .map(|c| {
                let h = s.heads(&c);
                (c, h)
            })
            .collect();
        Some(shared)
    })
    .await?;
    let Some(shared) = shared else {
        st.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
        return Ok(());
    };
    for (case, heads) in shared {
        let cursor = st.cases.entry(case).or_default();
        if !cursor.heads_sent {
            cursor.heads_sent = true;
            out.send(Message::Heads(Heads { case, heads }))
                .await
                .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))?;
        }
    }
    Ok(())
}

/// Sends the peer every proof held for a case that it may see. Proofs
/// found before this connection existed reach the peer this way (a proof
/// it already holds is ignored there).
async fn send_proofs(
    inner: &Arc<Inner>,
    peer: AgencyId,
    case: CaseId,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let proofs = blocking(inner, move |s, _| {
        let Some(v) = s.case(&case) else {
            return Vec::new();
        };
        s.proofs(&case)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| proof_visible(v, p, &peer))
            .collect::<Vec<_>>()
    })
    .await?;
    for proof in proofs {
        out.send(Message::Equivocation(EquivocationNotice { case, proof }))
            .await
            .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))?;
    }
    Ok(())
}

/// Whether a peer may receive a proof: it carries both entries in full, so
/// the peer must be a member allowed to see both (a RED entry stays with
/// its addressees).
fn proof_visible(
    v: &custodia_protocol::Validator,
    proof: &custodia_protocol::EquivocationProof,
    peer: &AgencyId,
) -> bool {
    v.is_member(peer)
        && [&proof.0, &proof.1].iter().all(|b| {
            custodia_protocol::Entry::decode_unverified(b)
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

/// Sends what the peer lacks, in bounded batches, while the flow-control
/// window allows.
async fn pump(
    inner: &Arc<Inner>,
    st: &mut SessionState,
    out: &mpsc::Sender<Message>,
) -> SessionResult {
    let cases: Vec<CaseId> = st
        .cases
        .iter()
        .filter(|(_, c)| c.heads_sent && c.peer_heads.is_some())
        .map(|(k, _)| *k)
        .collect();
    for case in cases {
        while st.in_flight < MAX_UNACKED_BATCHES {
            let Some(cursor) = st.cases.get_mut(&case) else {
                break;
            };
            let Some(peer_heads) = cursor.peer_heads.clone() else {
                break;
            };
            let pos = cursor.pos;
            let peer = st.peer;
            let Some((items, last, next)) = blocking(inner, move |s, i| {
                // Rows another process committed since the last poll are
                // loaded first: only what the validator knows is served;
                // and nothing to a peer removed meanwhile.
                if !may_serve(s, i, &peer) {
                    return None;
                }
                let v = s.case(&case)?;
                if !v.is_member(&peer) {
                    return None;
                }
                // The rows' places first; bytes are read (and checked
                // against their ids) only for the entries sent.
                let rows = s.row_heads_after(&case, pos, MAX_BATCH).ok()?;
                let mut next = peer_heads;
                let mut items = Vec::new();
                let mut bytes_in_batch = 0usize;
                let mut last = pos;
                for row in rows {
                    if !v.knows(&row.id) {
                        // Damaged (skipped at load): never served. Later
                        // entries of its author could not be validated by
                        // the peer either, so stop this batch here.
                        break;
                    }
                    last = row.pos;
                    let have = next.get(&row.author).copied().unwrap_or(0);
                    if row.seq < have {
                        continue;
                    }
                    let visible = v.may_see(&row.id, &peer);
                    let bytes = if visible && !row.withheld {
                        match s.row_bytes(row.pos, &row.id).ok()? {
                            Some(b) => Some(b),
                            // Damaged since it was loaded: never served.
                            None => continue,
                        }
                    } else {
                        None
                    };
                    next.insert(row.author, row.seq + 1);
                    items.push(match bytes {
                        Some(bytes) => SyncItem::Entry(bytes),
                        None => SyncItem::Withheld(custodia_protocol::WithheldPosition {
                            author: row.author,
                            seq: row.seq,
                            id: row.id,
                        }),
                    });
                    bytes_in_batch += match items.last() {
                        Some(SyncItem::Entry(b)) => b.len() + 8,
                        _ => 80,
                    };
                    if items.len() == MAX_BATCH || bytes_in_batch >= BATCH_BYTES {
                        break;
                    }
                }
                Some((items, last, next))
            })
            .await?
            else {
                if !inner.pins.contains(&st.peer.0) {
                    st.conn.close(quinn::VarInt::from_u32(0), b"peer removed");
                    return Ok(());
                }
                break;
            };
            let Some(cursor) = st.cases.get_mut(&case) else {
                break;
            };
            if last == cursor.pos {
                // Everything the peer lacked is sent. Once the peer has
                // acknowledged it all, it holds the case, its members and
                // every entry a proof's author needs: the proofs go now
                // (SPEC.md §9.11), not before, or the peer could not take
                // them.
                if st.in_flight == 0 && !cursor.proofs_sent {
                    cursor.proofs_sent = true;
                    send_proofs(inner, st.peer, case, out).await?;
                }
                break;
            }
            cursor.pos = last;
            cursor.peer_heads = Some(next);
            if items.is_empty() {
                continue;
            }
            st.in_flight += 1;
            st.batch += 1;
            // What the peer holds of this agency's chain once it
            // acknowledges the batch (for `custodia status`).
            let own = st
                .cases
                .get(&case)
                .and_then(|c| c.peer_heads.as_ref())
                .and_then(|h| h.get(&inner.me))
                .and_then(|n| n.checked_sub(1));
            if st.unacked.len() < MAX_UNACKED_BATCHES * 4 {
                st.unacked.push_back((st.batch, case, own));
            }
            out.send(Message::Entries(Entries {
                case,
                batch: st.batch,
                items,
            }))
            .await
            .map_err(|_| (ErrorCode::Internal, "writer closed".to_string()))?;
        }
    }
    Ok(())
}
