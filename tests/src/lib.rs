//! Harness for Custodia's end-to-end tests: agencies with real node
//! directories in temporary folders, real store files, daemons on
//! 127.0.0.1 (in-process or as `custodia node run` processes).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custodia_node::Local;
use custodia_node::Peer;
use custodia_node::{Draft, Store};
use custodia_protocol::{AgencyId, Body, CaseId, Identity, Note, Role, Tlp};

/// A free UDP port on 127.0.0.1, below the kernel's ephemeral range
/// (32768 and up) so that a client socket bound to port 0 in a parallel
/// test cannot take it between this check and the node's bind. Ports are
/// handed out from a per-process counter (spread by process id so parallel
/// test binaries do not collide) and checked by binding.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 30,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = if port >= 32_000 {
            20_000 + port % 12_000
        } else {
            port
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An agency: a node directory and its identity.
pub struct Agency {
    /// Keeps the temporary directory alive.
    _tmp: tempfile::TempDir,
    /// The node directory.
    pub dir: PathBuf,
    /// The agency id.
    pub id: AgencyId,
    /// The listening address.
    pub addr: SocketAddr,
    /// The agency's name.
    pub name: String,
}

impl Agency {
    /// Initialises a node directory (like `custodia init`).
    pub fn new(name: &str, country: &str) -> Agency {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(name);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let l =
            custodia_node::Local::init(&dir, name, country, Some(&addr.to_string())).expect("init");
        Agency {
            _tmp: tmp,
            dir,
            id: l.me(),
            addr,
            name: name.to_string(),
        }
    }

    /// The same agency in another node directory (a restored or cloned
    /// node): same key, name and address as `original`.
    pub fn at(dir: &Path, original: &Agency) -> Agency {
        Agency {
            _tmp: tempfile::tempdir().expect("tempdir"),
            dir: dir.to_owned(),
            id: original.id,
            addr: original.addr,
            name: original.name.clone(),
        }
    }

    /// Opens the node directory (config, identity, store).
    pub fn local(&self) -> Local {
        custodia_node::Local::open(&self.dir).expect("open node dir")
    }

    /// The agency's identity (read from its key file).
    pub fn identity(&self) -> Identity {
        custodia_node::open_config(&self.dir).expect("config").1
    }

    /// The agency's store, opened on its own: for tests that write what
    /// a `Local` never would (entries with chosen times, batches received
    /// as a peer would send them).
    pub fn store(&self) -> Store {
        let (config, _) = custodia_node::open_config(&self.dir).expect("config");
        Store::open(&config.store_path(&self.dir)).expect("store")
    }

    /// Pins `other` as a peer of this agency.
    pub fn pin(&self, other: &Agency, country: &str) {
        let mut l = self.local();
        l.add_peer(Peer {
            name: other.name.clone(),
            addr: other.addr.to_string(),
            key: other.id.to_hex(),
            country: country.to_string(),
        })
        .expect("add peer");
    }

    /// Number of stored rows.
    pub fn count(&self) -> u64 {
        self.local().store().count().expect("count")
    }

    /// Number of stored rows of one case.
    pub fn case_count(&self, case: &CaseId) -> u64 {
        self.local()
            .store()
            .state(case)
            .map_or(0, |s| s.entries + s.withheld.len() as u64)
    }

    /// The stored entry bytes of a case, in the store's order.
    pub fn case_bytes(&self, case: &CaseId) -> Vec<Vec<u8>> {
        let l = self.local();
        l.store()
            .rows_after(case, 0, 1 << 40)
            .expect("rows")
            .into_iter()
            .filter_map(|r| r.bytes)
            .collect()
    }

    /// Starts `custodia node run` as a separate process.
    pub fn spawn(&self) -> Child {
        self.spawn_with(&[])
    }

    /// [`Agency::spawn`] with more environment variables.
    pub fn spawn_with(&self, env: &[(&str, &str)]) -> Child {
        Command::new(custodia_binary())
            .arg("--dir")
            .arg(&self.dir)
            .args(["node", "run"])
            .env("CUSTODIA_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn custodia node run")
    }
}

impl Agency {
    /// Starts `custodia node run` as a separate process with its log, at
    /// `level` (the `CUSTODIA_LOG` filter), written to `log`.
    pub fn spawn_logging(&self, level: &str, log: &Path) -> Child {
        let file = std::fs::File::create(log).expect("log file");
        Command::new(custodia_binary())
            .arg("--dir")
            .arg(&self.dir)
            .args(["node", "run"])
            .env("CUSTODIA_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn custodia node run")
    }
}

/// Copies a folder with `cp -a` (what an operator's backup does).
pub fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Pins two agencies to each other.
pub fn link(a: &Agency, b: &Agency) {
    a.pin(b, "ZZ");
    b.pin(a, "ZZ");
}

/// The `custodia` binary built next to this test executable.
pub fn custodia_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join(format!("custodia{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p custodia-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns
/// whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLP:AMBER note.
pub fn note(text: &str) -> Draft {
    Draft::new(
        Tlp::Amber,
        Body::Note(Note {
            text: text.into(),
            item: None,
        }),
    )
}

/// `a` opens a case and shares it with each agency in its role.
pub fn open_shared(a: &Agency, with: &[(&Agency, Role)]) -> CaseId {
    let mut l = a.local();
    let case = l
        .open_case("Operation Lantern", "NBI-2026-0042", Some("PH"), Tlp::Amber)
        .expect("open")
        .id();
    for (b, role) in with {
        l.share(&case, &b.id.to_hex(), *role).expect("share");
    }
    case
}

/// A bare QUIC client endpoint that presents `who`'s key and pins only
/// `server`: for tests that speak the wire protocol by hand.
pub fn raw_client(who: &Agency, server: &Agency) -> quinn::Endpoint {
    let pins = custodia_node::PinSet::new([server.id.0]);
    let client =
        custodia_node::client_config(who.identity().signing_key(), pins).expect("client config");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    endpoint
}

/// One `custodia/1` stream spoken by hand: frames out, frames in. For
/// tests that play a hostile or removed peer at the wire level.
pub struct Wire {
    /// The connection.
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Wire {
    /// Opens the stream on an established connection.
    pub async fn open(conn: quinn::Connection) -> Option<Wire> {
        let (send, recv) = conn.open_bi().await.ok()?;
        Some(Wire { conn, send, recv })
    }

    /// Sends one message; false if the stream is gone.
    pub async fn send(&mut self, m: &custodia_protocol::Message) -> bool {
        self.send.write_all(&m.to_frame()).await.is_ok()
    }

    /// The next message, or None when the stream ends, the connection
    /// closes, or nothing arrives within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<custodia_protocol::Message> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.recv.read_exact(&mut prefix).await.ok()?;
            let n = custodia_protocol::Message::frame_len(prefix).ok()?;
            let mut body = vec![0u8; n];
            self.recv.read_exact(&mut body).await.ok()?;
            custodia_protocol::Message::decode(&body).ok()
        };
        tokio::time::timeout(wait, read).await.ok().flatten()
    }

    /// Reads until the stream ends or `wait` passes without a message,
    /// acknowledging every batch (so the node keeps sending), and returns
    /// everything received.
    pub async fn drain(&mut self, wait: Duration) -> Vec<custodia_protocol::Message> {
        use custodia_protocol::{Ack, Message};
        let mut got = Vec::new();
        while let Some(m) = self.recv(wait).await {
            if let Message::Entries(e) = &m {
                let ack = Message::Ack(Ack {
                    case: e.case,
                    batch: e.batch,
                    stored: e.items.len() as u64,
                    refused: 0,
                });
                let _ = self.send(&ack).await;
            }
            got.push(m);
        }
        got
    }
}

/// Whether any `entries` message in `got` carries these exact entry bytes.
pub fn carries(got: &[custodia_protocol::Message], bytes: &[u8]) -> bool {
    got.iter().any(|m| match m {
        custodia_protocol::Message::Entries(e) => e
            .items
            .iter()
            .any(|i| matches!(i, custodia_protocol::SyncItem::Entry(b) if b.as_slice() == bytes)),
        _ => false,
    })
}

/// A federation of real node folders connected through liaison desks:
/// agencies `0..desks` are desks pinned to each other; every other agency
/// `i` is pinned only to desk `i % desks`. Desk 0 opens one case and adds
/// every agency (desks as liaisons). Returns the agencies and the case.
pub fn desk_federation(n: usize, desks: usize) -> (Vec<Agency>, CaseId) {
    let agencies: Vec<Agency> = (0..n)
        .map(|i| Agency::new(&format!("agency{i:03}"), "PH"))
        .collect();
    for i in 0..n {
        for j in (i + 1)..n {
            let desk_pair = i < desks && j < desks;
            let to_desk = i < desks && j % desks == i;
            if desk_pair || to_desk {
                link(&agencies[i], &agencies[j]);
            }
        }
    }
    let mut l = agencies[0].local();
    let case = l
        .open_case("Operation Lantern", "NBI-2026-0042", Some("PH"), Tlp::Amber)
        .expect("open")
        .id();
    for (i, a) in agencies.iter().enumerate().skip(1) {
        let who = custodia_node::KnownAgency {
            agency: a.id,
            name: a.name.clone(),
            country: "PH".into(),
            peer: None,
            me: false,
            signed: false,
        };
        let role = if i < desks {
            Role::Liaison
        } else {
            Role::Investigator
        };
        l.share_agency(&case, &who, role).expect("share");
    }
    (agencies, case)
}
