//! The figures, and what they share: the run's context, node directories,
//! read-only looks into a store file, and the Ed25519 references.

pub mod append;
pub mod catchup;
pub mod federation;
pub mod hashing;
pub mod latency;
pub mod memory;
pub mod process;
pub mod replication;
pub mod resync;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use custodia_node::Config as NodeConfig;
use custodia_protocol::{AgencyId, CaseId, Identity, SyncItem};
use custodia_tests::{link, Agency};
use ed25519_dalek::{Signer, SigningKey};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::gen::{self, Generated, Triple};
use crate::measure::timed;
use crate::Config;

/// The run's context: configuration, the async runtime the in-process
/// daemons run on, and the large case shared by the figures that need it.
pub struct Ctx<'c> {
    /// The configuration.
    pub cfg: &'c Config,
    /// The runtime for in-process daemons.
    pub rt: tokio::runtime::Runtime,
    big: Option<BigCase>,
    started: Instant,
}

/// A large generated case: its lead agency `a` (a node directory whose
/// identity opened the case), a reader agency `b` whose key sorts below
/// `a`'s (so `b` dials `a`), two more writers, and the entries.
pub struct BigCase {
    /// The lead agency.
    pub a: Agency,
    /// The reader (a fresh peer for the memory figure).
    pub b: Agency,
    /// The case.
    pub gen: Generated,
    /// Whether `a`'s store holds the entries yet.
    pub a_filled: bool,
}

impl<'c> Ctx<'c> {
    /// A context.
    pub fn new(cfg: &'c Config) -> anyhow::Result<Ctx<'c>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Ctx {
            cfg,
            rt,
            big: None,
            started: Instant::now(),
        })
    }

    /// Progress on standard error.
    pub fn say(&self, what: &str) {
        if self.cfg.progress {
            eprintln!("[{:7.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }

    /// The large case, generated once with at least `n` entries.
    pub fn big_case(&mut self, n: usize) -> anyhow::Result<&mut BigCase> {
        let have = self.big.as_ref().map_or(0, |b| b.gen.entries.len());
        if have < n {
            self.say(&format!("generating a case of {n} signed entries"));
            let a = Agency::new("lead", "PH");
            let b = agency_below(&a, "reader");
            link(&a, &b);
            let writers = [Identity::from_seed([11; 32]), Identity::from_seed([12; 32])];
            let (g, secs) = timed(|| {
                gen::generate_case(&a.identity(), &writers, &[b.id], n, custodia_node::now_ms())
            });
            self.say(&format!("generated in {secs:.1} s"));
            self.big = Some(BigCase {
                a,
                b,
                gen: g,
                a_filled: false,
            });
        }
        self.big.as_mut().context("the large case")
    }
}

/// A new agency whose key sorts below `a`'s: it dials `a` (the agency with
/// the lower key dials), so a sync starts as soon as it starts.
pub fn agency_below(a: &Agency, name: &str) -> Agency {
    loop {
        let b = Agency::new(name, "DE");
        if b.id < a.id {
            return b;
        }
    }
}

/// The store file of a node directory.
pub fn store_path(dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(NodeConfig::load(dir)?.store_path(dir))
}

/// Removes a store file and its WAL companions (a fresh peer).
pub fn wipe_store(dir: &Path) -> anyhow::Result<()> {
    let p = store_path(dir)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut s = p.clone().into_os_string();
        s.push(suffix);
        match std::fs::remove_file(&s) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A read-only connection to a store file another process writes (WAL
/// readers never block the writer).
pub fn read_only(path: &Path) -> anyhow::Result<Connection> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

/// The highest row position in a store (its row count: rows are never
/// deleted). O(log n).
pub fn max_pos(c: &Connection) -> anyhow::Result<i64> {
    Ok(
        c.query_row("SELECT COALESCE(MAX(pos), 0) FROM entries", [], |r| {
            r.get(0)
        })?,
    )
}

/// Whether a store holds every author's chain up to the given sequence
/// numbers (entries are stored in dependency order, so holding the head
/// means holding the chain). O(log n) per author.
pub fn holds_heads(
    c: &Connection,
    case: &CaseId,
    heads: &[(AgencyId, u64)],
) -> anyhow::Result<bool> {
    let mut stmt = c.prepare_cached(
        "SELECT MAX(seq) FROM entries WHERE case_id = ?1 AND author = ?2 AND bytes IS NOT NULL",
    )?;
    for (a, seq) in heads {
        let have: Option<i64> = stmt
            .query_row(params![&case.0[..], &a.0[..]], |r| r.get(0))
            .optional()?
            .flatten();
        if have.is_none_or(|h| (h as u64) < *seq) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Polls `cond` every `every` until it holds or `timeout` passes.
pub fn wait_for(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let start = Instant::now();
    loop {
        if cond()? {
            return Ok(true);
        }
        if start.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(every);
    }
}

/// Fills a node's store with a generated case through the store's own
/// receive path (decode, verify, validate, insert; one transaction per
/// chunk), as if a peer had sent it.
pub fn fill_store(dir: &Path, g: &Generated, chunk: usize) -> anyhow::Result<()> {
    receive_all(dir, &g.case, &g.entries, chunk)
}

/// Stores entries through `Store::receive`, `chunk` per transaction.
pub fn receive_all(
    dir: &Path,
    case: &CaseId,
    entries: &[custodia_protocol::Entry],
    chunk: usize,
) -> anyhow::Result<()> {
    // Loaded straight into the store, as sync would (no Local: nothing is
    // authored here).
    let (config, _) = custodia_node::open_config(dir)?;
    let mut store = custodia_node::Store::open(&config.store_path(dir))?;
    for part in entries.chunks(chunk.max(1)) {
        let items = part
            .iter()
            .map(|e| SyncItem::Entry(e.bytes().to_vec()))
            .collect();
        let out = store.receive(case, items, custodia_node::now_ms())?;
        if let Some(r) = out.refused.first() {
            anyhow::bail!("the generated case was refused: {r}");
        }
    }
    Ok(())
}

/// Ed25519 signing alone on one core: signatures per second over a
/// message the size of an entry's Sig_structure.
pub fn sign_rate(n: usize, message: &[u8]) -> f64 {
    let key = SigningKey::from_bytes(&[42; 32]);
    let mut msg = message.to_vec();
    let (_, secs) = timed(|| {
        for i in 0..n {
            // Vary the message so nothing can be reused.
            if let Some(b) = msg.last_mut() {
                *b = i as u8;
            }
            std::hint::black_box(key.sign(std::hint::black_box(&msg)));
        }
    });
    n as f64 / secs
}

/// Single-core `verify_strict` (what V8 requires): verifications per
/// second over real entries (keys already decompressed).
pub fn verify_strict_rate(triples: &[Triple], n: usize) -> f64 {
    let (ok, secs) = timed(|| {
        (0..n)
            .filter(|i| {
                let (k, m, s) = &triples[i % triples.len()];
                k.verify_strict(m, s).is_ok()
            })
            .count()
    });
    assert_eq!(ok, n, "every reference signature verifies");
    n as f64 / secs
}

/// Ed25519 batch verification (ed25519-dalek `verify_batch`, 64 per
/// batch) on `threads` threads: signatures per second over real entries.
pub fn batch_verify_rate(triples: &[Triple], n: usize, threads: usize) -> f64 {
    const BATCH: usize = 64;
    let batches = n.div_ceil(BATCH);
    let next = AtomicUsize::new(0);
    let (_, secs) = timed(|| {
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let mut msgs: Vec<&[u8]> = Vec::with_capacity(BATCH);
                    let mut sigs = Vec::with_capacity(BATCH);
                    let mut keys = Vec::with_capacity(BATCH);
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            break;
                        }
                        msgs.clear();
                        sigs.clear();
                        keys.clear();
                        for i in b * BATCH..((b + 1) * BATCH).min(n) {
                            let (k, m, sig) = &triples[i % triples.len()];
                            msgs.push(m);
                            sigs.push(*sig);
                            keys.push(*k);
                        }
                        let ok = ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok();
                        assert!(ok, "every reference batch verifies");
                    }
                });
            }
        });
    });
    n as f64 / secs
}

/// A note's Sig_structure, for the signing reference.
pub fn sample_message() -> Vec<u8> {
    let lead = Identity::from_seed([5; 32]);
    let g = gen::generate_case(&lead, &[], &[], 3, 1_795_000_000_000);
    gen::triples(g.entries.last())
        .pop()
        .map(|(_, m, _)| m)
        .unwrap_or_else(|| vec![0; 250])
}

/// "measured at N, target stated at M" when the sizes differ.
pub fn size_note(what: &str, measured: usize, target: usize) -> Option<String> {
    (measured != target)
        .then(|| format!("{what}: measured at {measured}, target stated at {target}"))
}
