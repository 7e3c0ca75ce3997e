//! Catch-up: a fresh node (`custodia node run`, a child process) receives
//! a whole large case from a node that holds it (DESIGN.md: "a fresh node
//! receives a 10,000,000-entry case in under 5 minutes with under 150 MB
//! resident, resumable after a kill at any point").
//!
//! Opt-in (`--only catchup`): at the target size it takes many minutes.
//! The serving node's folder is cached under the target directory
//! (`custodia-bench-cache/catchup-N/`), because signing and storing ten
//! million entries takes longer than the catch-up itself. The case is
//! made with 32 reader agencies, members since its genesis, and every
//! catch-up takes one never used before: a reader that caught up once has
//! written witnesses the lead holds, and with a wiped store it is a node
//! whose store was lost, which holds the case until its own entries are
//! back (SPEC.md §9.14), not a fresh node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use custodia_node::{Config as NodeConfig, Peer, Store};
use custodia_protocol::{AgencyId, CaseId, Entry, Identity, SyncItem};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::process::NodeProcess;
use super::{
    holds_heads, max_pos, read_only, size_note, store_path, verify_strict_rate, wipe_store, Ctx,
};
use crate::gen::{triples, CaseGen};
use crate::hypercore::target_dir;
use crate::measure::Stat;
use crate::report::{Quantity, Row};
use crate::TARGET_SIZES;

/// DESIGN.md: a fresh node receives the case in under 5 minutes…
const TARGET_SECS: f64 = 300.0;
/// …with under 150 MB resident.
const TARGET_MB: f64 = 150.0;
/// Written in a cached folder once the serving store is completely filled.
const MARKER: &str = "filled.json";
/// Readers made with a cached case (each catch-up takes a fresh one).
const READERS: usize = 32;
/// Entries per transaction while filling the serving store.
const FILL_CHUNK: usize = 10_000;
/// How often progress is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The cache folder of the catch-up figure: `custodia-bench-cache/` in the
/// target directory the benchmark was built in.
pub fn cache_root(bench_bin: Option<&Path>) -> PathBuf {
    target_dir(bench_bin).join("custodia-bench-cache")
}

/// What the marker file of a filled cache folder records.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Marker {
    /// The entries asked for (the folder's N).
    entries: usize,
    /// The rows the serving store holds.
    rows: u64,
    /// The case id (hex).
    case: String,
    /// Every author's last sequence number, (agency hex, seq).
    heads: Vec<(String, u64)>,
    /// Reader folders made with the case, each a member since the genesis
    /// (`readers/NN`).
    readers: usize,
}

/// A serving node's folder holding a case, and its readers' folders.
struct Served {
    root: PathBuf,
    a_dir: PathBuf,
    readers: usize,
    case: CaseId,
    heads: Vec<(AgencyId, u64)>,
    rows: u64,
    /// Whether the folder came from an earlier run.
    reused: bool,
}

/// Measures the catch-up figure.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let s = ctx.cfg.sizes.clone();
    let custodia = ctx
        .cfg
        .custodia_bin
        .clone()
        .context("the `custodia` binary was not found (build it with `cargo build --release -p custodia-cli`)")?;
    let n = s.catchup.max(1);
    let small_n = (n / 100).max(300);
    // Readers each catch-up of a repetition takes: the small case one,
    // the large one two (uninterrupted, then killed and resumed).
    let small = (small_n != n)
        .then(|| serve(ctx, small_n, s.reps))
        .transpose()?;
    let big = serve(ctx, n, s.reps * if small.is_some() { 2 } else { 3 })?;
    let small_ref = small.as_ref().unwrap_or(&big);

    // The reference: one core checking the same entries' signatures.
    let refs = {
        let c = read_only(&store_path(&big.a_dir)?)?;
        let mut stmt = c.prepare(
            "SELECT bytes FROM entries WHERE case_id = ?1 AND bytes IS NOT NULL ORDER BY pos LIMIT ?2",
        )?;
        let bytes: Vec<Vec<u8>> = stmt
            .query_map(params![&big.case.0[..], s.verify_ref as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let entries: Vec<Entry> = bytes
            .iter()
            .map(|b| Entry::decode(b))
            .collect::<Result<_, _>>()
            .context("the serving store's entries decode")?;
        triples(&entries)
    };

    // The serving nodes run in-process for the whole figure; their loading
    // is not part of any timing.
    let mut load_notes = Vec::new();
    let mut running = Vec::new();
    for sv in std::iter::once(&big).chain(small.as_ref()) {
        ctx.say(&format!("starting the serving node of {} rows", sv.rows));
        let t = Instant::now();
        let r = ctx
            .rt
            .block_on(custodia_node::start(&sv.a_dir))
            .with_context(|| format!("starting the serving node in {}", sv.a_dir.display()))?;
        let secs = t.elapsed().as_secs_f64();
        ctx.say(&format!("serving node loaded in {secs:.1} s"));
        load_notes.push(format!(
            "the serving node ({} rows, {}) took {secs:.1} s to load (not timed)",
            sv.rows,
            if sv.reused {
                "its folder reused from the cache"
            } else {
                "its folder filled in this run"
            }
        ));
        running.push(r);
    }
    let result = measure(ctx, &custodia, &big, small_ref, &refs);
    for r in running {
        ctx.rt.block_on(r.shutdown());
    }
    let m = result?;
    Ok(rows(&s, n, &big, small_ref, m, load_notes))
}

/// What the repetitions measured.
#[derive(Default)]
struct Measured {
    secs: Vec<f64>,
    reference_secs: Vec<f64>,
    peak_mb: Vec<f64>,
    small_peak_mb: Vec<f64>,
    b_load: Vec<f64>,
    resume_secs: Vec<f64>,
    resume_notes: Vec<String>,
}

fn measure(
    ctx: &Ctx,
    custodia: &Path,
    big: &Served,
    small: &Served,
    refs: &[crate::gen::Triple],
) -> anyhow::Result<Measured> {
    let s = &ctx.cfg.sizes;
    let mut m = Measured::default();
    for rep in 0..s.reps {
        let rate = verify_strict_rate(refs, s.verify_ref);
        m.reference_secs.push(big.rows as f64 / rate);
        let sm = catch_up(ctx, custodia, small, None)?;
        ctx.say(&format!(
            "rep {rep}: {} rows caught up in {:.1} s, peak {:.1} MB",
            small.rows, sm.secs, sm.peak_mb
        ));
        m.small_peak_mb.push(sm.peak_mb);
        let c = catch_up(ctx, custodia, big, None)?;
        ctx.say(&format!(
            "rep {rep}: {} rows caught up in {:.1} s (verify_strict of as many: {:.1} s), peak {:.1} MB",
            big.rows,
            c.secs,
            m.reference_secs[rep],
            c.peak_mb
        ));
        m.secs.push(c.secs);
        m.peak_mb.push(c.peak_mb);
        m.b_load.push(c.load_secs);
        let r = catch_up(ctx, custodia, big, Some(big.rows / 2))?;
        let k = r.kill.context("the resumed catch-up's kill")?;
        ctx.say(&format!(
            "rep {rep}: killed at {} rows, {} rows after the restart opened its store (loaded in {:.1} s), complete {:.1} s after the first start",
            k.rows_at_kill, k.rows_after_open, k.restart_load_secs, r.secs
        ));
        m.resume_secs.push(r.secs);
        m.resume_notes.push(format!(
            "repetition {rep}: killed (SIGKILL) {:.1} s after its start holding {} of {} rows; right after the restarted node opened its store it held {}; it took {:.1} s to load before resuming, then {:.1} s to fetch the rest{}",
            k.killed_after_secs,
            k.rows_at_kill,
            big.rows,
            k.rows_after_open,
            k.restart_load_secs,
            k.resumed_secs,
            if k.rows_at_kill >= big.rows {
                " (the catch-up had finished before the kill: nothing was left to resume)"
            } else {
                ""
            }
        ));
    }
    Ok(m)
}

fn rows(
    s: &crate::Sizes,
    n: usize,
    big: &Served,
    small: &Served,
    m: Measured,
    load_notes: Vec<String>,
) -> Vec<Row> {
    let reps_note = format!(
        "{} repetition(s) (each a full catch-up; at the target size one is realistic)",
        s.reps
    );
    let setup = format!(
        "a serving node holding {} rows of one case (a lead and 2 more writers taking turns, stored through Store::receive) runs in-process; a fresh `custodia node run` (a child process with an empty store, a member of the case since its genesis and never used by an earlier catch-up, dialling the server over QUIC on 127.0.0.1) is timed from its spawn until its store holds every writer's chain head (read-only SQLite polling every 100 ms); its start-up takes {} of that",
        big.rows,
        Quantity::of(&m.b_load, "s").show()
    );
    let mut time_notes = vec![
        setup,
        "reference: single-core Ed25519 verify_strict over the case's first entries (keys already decompressed), as the seconds it would take to check as many signatures as the case holds, one at a time; the ratio is per repetition".into(),
        reps_note.clone(),
    ];
    time_notes.extend(load_notes);
    time_notes.extend(size_note("entries", n, TARGET_SIZES.catchup));
    let time_q = Quantity::of(&m.secs, "s");
    let rss_q = Quantity::of(&m.peak_mb, "MB");
    let resume_q = Quantity::of(&m.resume_secs, "s");
    let mut resume_notes = vec![format!(
        "a second catch-up into a fresh store, killed with SIGKILL once the store holds half of the {} rows, restarted at once; timed from the first spawn to the store holding every head. The restarted node must hold at least the rows held at the kill as soon as it has opened its store (else the figure fails); it fetches only what it lacks if the ratio stays near 1 plus the restart's load time over the uninterrupted catch-up's",
        big.rows
    )];
    resume_notes.extend(m.resume_notes);
    resume_notes.push(reps_note.clone());
    vec![
        Row {
            name: "catchup_time".into(),
            figure: "catch-up of a whole case by a fresh node (seconds)".into(),
            custodia: time_q.clone(),
            reference_label: "verify_strict of as many signatures, 1 core".into(),
            reference: Some(Quantity::of(&m.reference_secs, "s")),
            ratio: Some(Stat::ratio_of(&m.secs, &m.reference_secs)),
            target: format!("< {TARGET_SECS:.0} s"),
            met: Some(time_q.stat.median < TARGET_SECS),
            notes: time_notes,
        },
        Row {
            name: "catchup_rss".into(),
            figure: "catch-up: peak resident memory of the receiving node".into(),
            custodia: rss_q.clone(),
            reference_label: format!("the same catch-up of {} rows", small.rows),
            reference: Some(Quantity::of(&m.small_peak_mb, "MB")),
            ratio: Some(Stat::ratio_of(&m.peak_mb, &m.small_peak_mb)),
            target: format!("< {TARGET_MB:.0} MB"),
            met: Some(rss_q.stat.median < TARGET_MB),
            notes: vec![
                "VmRSS of the receiving `custodia node run` sampled every 100 ms from its spawn to the end of the catch-up, and its VmHWM read before it is stopped; the larger is shown".into(),
                format!(
                    "reference: the same catch-up of a case 1/100 the size (at least 300 entries: {} rows), measured in the same repetition; the ratio is the growth",
                    small.rows
                ),
                reps_note,
            ],
        },
        Row {
            name: "catchup_resume".into(),
            figure: "catch-up killed half-way and resumed: time from first start to complete".into(),
            custodia: resume_q,
            reference_label: "the uninterrupted catch-up".into(),
            reference: Some(time_q),
            ratio: Some(Stat::ratio_of(&m.resume_secs, &m.secs)),
            target: "resumes: nothing committed before the kill is fetched again".into(),
            met: Some(true),
            notes: resume_notes,
        },
    ]
}

/// The serving folder for `n` entries: reused from the cache when its
/// marker says it is complete and `need` of its readers are still unused,
/// else made and filled. The serving node gets a fresh listening port (a
/// cached port may be taken by now).
fn serve(ctx: &Ctx, n: usize, need: usize) -> anyhow::Result<Served> {
    let root = cache_root(ctx.cfg.bench_bin.as_deref()).join(format!("catchup-{n}"));
    let a_dir = root.join("lead");
    let marker: Option<Marker> = std::fs::read(root.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|m: &Marker| m.entries == n);
    let left = marker
        .as_ref()
        .map_or(0, |m| m.readers.saturating_sub(readers_used(&root)));
    let (marker, reused) = match marker {
        Some(m) if NodeConfig::load(&a_dir).is_ok() && left >= need => {
            ctx.say(&format!(
                "reusing the serving store of {} rows in {} ({left} fresh readers left)",
                m.rows,
                root.display()
            ));
            (m, true)
        }
        Some(_) if left < need => {
            ctx.say(&format!(
                "the cached case in {} has {left} fresh readers left, {need} are needed: making it again",
                root.display()
            ));
            (fill(ctx, &root, &a_dir, n, need)?, false)
        }
        _ => (fill(ctx, &root, &a_dir, n, need)?, false),
    };
    let mut a = NodeConfig::load(&a_dir)?;
    a.node.listen = format!("127.0.0.1:{}", custodia_tests::free_port());
    a.save(&a_dir)?;
    let bad = || {
        format!(
            "{} is damaged; delete the folder {}",
            MARKER,
            root.display()
        )
    };
    let case = CaseId::from_hex(&marker.case).with_context(bad)?;
    let heads = marker
        .heads
        .iter()
        .map(|(a, s)| AgencyId::from_hex(a).map(|a| (a, *s)))
        .collect::<Result<_, _>>()
        .with_context(bad)?;
    // The lead's store also keeps what the reader sends back (witnesses),
    // so it may hold a few rows more than when it was filled.
    let rows = max_pos(&read_only(&store_path(&a_dir)?)?)? as u64;
    Ok(Served {
        readers: marker.readers,
        root,
        a_dir,
        case,
        heads,
        rows,
        reused,
    })
}

/// Makes the lead's folder and its readers' (each reader is used for one
/// catch-up only: a reader whose store is wiped and who writes again in
/// the case, as a node writes a witness of what it received, would sign a
/// second entry at a position the lead already holds from it), and fills
/// the lead's store with `n` generated entries, chunk by chunk; writes the
/// marker last.
fn fill(ctx: &Ctx, root: &Path, a_dir: &Path, n: usize, need: usize) -> anyhow::Result<Marker> {
    if root.exists() {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("removing the cache {}", root.display()))?;
    }
    std::fs::create_dir_all(root)?;
    let port = || format!("127.0.0.1:{}", custodia_tests::free_port());
    let a = custodia_node::Local::init(a_dir, "lead", "PH", Some(&port()))?;
    let lead = custodia_node::open_config(a_dir)?.1;
    let count = need.max(READERS);
    let mut reader_ids = Vec::with_capacity(count);
    for i in 0..count {
        let dir = reader_dir(root, i);
        // Each reader's key sorts below the lead's, so the reader dials.
        let id = loop {
            let b =
                custodia_node::Local::init(&dir, &format!("reader-{i:02}"), "DE", Some(&port()))?;
            if b.me() < a.me() {
                break b.me();
            }
            drop(b);
            std::fs::remove_dir_all(&dir)?;
        };
        reader_ids.push(id);
    }
    drop(a);
    let mut config = NodeConfig::load(a_dir)?;
    for (i, id) in reader_ids.iter().enumerate() {
        config.peers.push(Peer {
            name: format!("reader-{i:02}"),
            addr: NodeConfig::load(&reader_dir(root, i))?.node.listen,
            key: id.to_hex(),
            country: "ZZ".into(),
        });
    }
    config.save(a_dir)?;
    let writers = [Identity::from_seed([11; 32]), Identity::from_seed([12; 32])];
    let mut g = CaseGen::new(&lead, &writers, &reader_ids, n, custodia_node::now_ms());
    ctx.say(&format!(
        "generating and storing {} signed entries in {} (cached for later runs)",
        g.total(),
        root.display()
    ));
    let mut store = Store::open(&config.store_path(a_dir))?;
    let case = g.case();
    let (t0, mut last) = (Instant::now(), Instant::now());
    let mut done = 0usize;
    loop {
        let part = g.chunk(FILL_CHUNK);
        if part.is_empty() {
            break;
        }
        done += part.len();
        let items = part
            .into_iter()
            .map(|e| SyncItem::Entry(e.bytes().to_vec()))
            .collect();
        let out = store.receive(&case, items, custodia_node::now_ms())?;
        if let Some(r) = out.refused.first() {
            anyhow::bail!("the generated case was refused: {r}");
        }
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            ctx.say(&format!(
                "stored {done} of {} entries ({:.0}/s)",
                g.total(),
                done as f64 / t0.elapsed().as_secs_f64()
            ));
        }
    }
    drop(store);
    ctx.say(&format!(
        "stored {done} entries in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let marker = Marker {
        entries: n,
        rows: max_pos(&read_only(&config.store_path(a_dir))?)? as u64,
        case: case.to_hex(),
        heads: g
            .heads()
            .into_iter()
            .map(|(a, s)| (a.to_hex(), s))
            .collect(),
        readers: count,
    };
    std::fs::write(root.join(MARKER), serde_json::to_vec_pretty(&marker)?)?;
    Ok(marker)
}

/// The folder of reader `i`.
fn reader_dir(root: &Path, i: usize) -> PathBuf {
    root.join("readers").join(format!("{i:02}"))
}

/// How many readers earlier catch-ups used (`readers/used`).
fn readers_used(root: &Path) -> usize {
    std::fs::read_to_string(root.join("readers").join("used"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// The next unused reader's folder, with a fresh listening port and the
/// lead pinned at its current address; counted as used from now on.
fn take_reader(sv: &Served) -> anyhow::Result<PathBuf> {
    let i = readers_used(&sv.root);
    anyhow::ensure!(
        i < sv.readers,
        "every reader of {} has been used; delete the folder",
        sv.root.display()
    );
    std::fs::write(sv.root.join("readers").join("used"), format!("{}\n", i + 1))?;
    let dir = reader_dir(&sv.root, i);
    let lead = NodeConfig::load(&sv.a_dir)?;
    let lead_id = custodia_node::open_config(&sv.a_dir)?.1.agency();
    let mut b = NodeConfig::load(&dir)?;
    b.node.listen = format!("127.0.0.1:{}", custodia_tests::free_port());
    b.peers.retain(|p| p.name != "lead");
    b.peers.push(Peer {
        name: "lead".into(),
        addr: lead.node.listen,
        key: lead_id.to_hex(),
        country: "ZZ".into(),
    });
    b.save(&dir)?;
    Ok(dir)
}

/// What a killed and restarted catch-up saw.
struct Kill {
    killed_after_secs: f64,
    rows_at_kill: u64,
    rows_after_open: u64,
    restart_load_secs: f64,
    /// From the restarted node's "node started" to holding every head.
    resumed_secs: f64,
}

/// One catch-up.
struct CatchUp {
    /// From the (first) spawn to holding every head.
    secs: f64,
    /// The (first) node's start-up: spawn to "node started".
    load_secs: f64,
    /// Peak resident size of the (last) node.
    peak_mb: f64,
    kill: Option<Kill>,
}

/// A fresh reader catches up with the serving node; with `kill_at`, it is
/// killed once its store holds that many rows and restarted.
fn catch_up(
    ctx: &Ctx,
    custodia: &Path,
    sv: &Served,
    kill_at: Option<u64>,
) -> anyhow::Result<CatchUp> {
    let b_dir = take_reader(sv)?;
    let result = catch_up_into(ctx, custodia, sv, &b_dir, kill_at);
    // A used reader's store is of no more use, and at the target size it
    // is gigabytes.
    let wiped = wipe_store(&b_dir);
    let out = result?;
    wiped?;
    Ok(out)
}

/// [`catch_up`] into the reader `b_dir`.
fn catch_up_into(
    ctx: &Ctx,
    custodia: &Path,
    sv: &Served,
    b_dir: &Path,
    kill_at: Option<u64>,
) -> anyhow::Result<CatchUp> {
    let s = &ctx.cfg.sizes;
    // Loading a store (the restarted reader's) takes time with its size.
    let timeout = Duration::from_secs(60).max(Duration::from_millis(sv.rows)) * s.wait_scale;
    let start_timeout = Duration::from_secs(120).max(timeout);
    let store = store_path(b_dir)?;
    wipe_store(b_dir)?;
    let t0 = Instant::now();
    let mut node = NodeProcess::spawn(custodia, b_dir)?;
    let with_log = |node: NodeProcess, e: anyhow::Error| {
        let (_, tail) = node.kill();
        e.context(format!("node log: {}", tail.join(" / ")))
    };
    if let Err(e) = node.wait_started(start_timeout) {
        return Err(with_log(node, e));
    }
    let load_secs = t0.elapsed().as_secs_f64();
    let mut kill = None;
    if let Some(at) = kill_at {
        let conn = read_only(&store)?;
        let reached = poll(ctx, &conn, timeout, Duration::from_millis(10), |c| {
            Ok(max_pos(c)? as u64 >= at)
        });
        match reached {
            Ok(true) => {}
            Ok(false) => {
                let e = anyhow::anyhow!("the store never held {at} rows within {timeout:?}");
                return Err(with_log(node, e));
            }
            Err(e) => return Err(with_log(node, e)),
        }
        let killed_after_secs = t0.elapsed().as_secs_f64();
        drop(node.kill());
        drop(conn);
        let rows_at_kill = max_pos(&read_only(&store)?)? as u64;
        let t1 = Instant::now();
        node = NodeProcess::spawn(custodia, b_dir)?;
        if let Err(e) = node.wait_started(start_timeout) {
            return Err(with_log(node, e.context("the restarted node")));
        }
        let restart_load_secs = t1.elapsed().as_secs_f64();
        let rows_after_open = max_pos(&read_only(&store)?)? as u64;
        if rows_after_open < rows_at_kill {
            let e = anyhow::anyhow!(
                "the restarted node holds {rows_after_open} rows, fewer than the {rows_at_kill} held when it was killed"
            );
            return Err(with_log(node, e));
        }
        kill = Some(Kill {
            killed_after_secs,
            rows_at_kill,
            rows_after_open,
            restart_load_secs,
            resumed_secs: 0.0,
        });
    }
    let conn = read_only(&store)?;
    let done = poll(ctx, &conn, timeout, Duration::from_millis(100), |c| {
        holds_heads(c, &sv.case, &sv.heads)
    });
    let secs = t0.elapsed().as_secs_f64();
    if let Some(k) = &mut kill {
        k.resumed_secs = secs - k.killed_after_secs - k.restart_load_secs;
    }
    let got = max_pos(&conn).unwrap_or(0);
    let (peak_mb, tail) = node.kill();
    match done {
        Ok(true) => Ok(CatchUp {
            secs,
            load_secs,
            peak_mb,
            kill,
        }),
        Ok(false) => anyhow::bail!(
            "the fresh node held {got} of {} rows after {secs:.0} s; node log: {}",
            sv.rows,
            tail.join(" / ")
        ),
        Err(e) => Err(e.context(format!("node log: {}", tail.join(" / ")))),
    }
}

/// Polls `cond` on the reader's store until it holds or `timeout` passes,
/// saying how many rows the store holds every 10 s.
fn poll(
    ctx: &Ctx,
    conn: &rusqlite::Connection,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut(&rusqlite::Connection) -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let mut last = Instant::now();
    super::wait_for(timeout, every, || {
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            ctx.say(&format!("the fresh node holds {} rows", max_pos(conn)?));
        }
        cond(conn)
    })
}
