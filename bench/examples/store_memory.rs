//! Where a node's memory goes when it holds a large case: the resident
//! size of a process that opens a store holding one generated case of N
//! entries (three writers), measured in a fresh child process, before and
//! after `Store::open` (which reads, verifies and indexes every row).
//!
//! ```text
//! cargo run --release -p custodia-bench --example store_memory -- N DIR [REPS]
//! ```
//!
//! The store is written once into `DIR` (kept, so that two builds can be
//! compared on the same file); each repetition opens it in a new process
//! and prints VmRSS and VmHWM (peak) in MB, then their medians.

use std::path::Path;
use std::process::Command;

use custodia_bench::gen::generate_case;
use custodia_bench::measure::{proc_status_kb, Stat};
use custodia_node::Store;
use custodia_protocol::{Identity, SyncItem};

fn mb(kb: Option<u64>) -> f64 {
    kb.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// In the child: open the store and report what it took.
fn open_and_report(path: &Path) -> anyhow::Result<()> {
    let before = mb(proc_status_kb(None, "VmRSS"));
    let store = Store::open(path)?;
    let count = store.count()?;
    let after = mb(proc_status_kb(None, "VmRSS"));
    let peak = mb(proc_status_kb(None, "VmHWM"));
    println!("{count} {before:.1} {after:.1} {peak:.1}");
    drop(store);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--open") {
        return open_and_report(Path::new(args.get(1).map_or("", String::as_str)));
    }
    let n: usize = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = Path::new(
        args.get(1)
            .map_or("/tmp/custodia-store-memory", String::as_str),
    );
    let reps: usize = args.get(2).map_or(Ok(3), |a| a.parse())?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("store-{n}.sqlite"));
    if !path.exists() {
        eprintln!("generating and storing {n} entries in {}", path.display());
        let lead = Identity::from_seed([1; 32]);
        let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
        let g = generate_case(&lead, &writers, &[], n, 1_795_000_000_000);
        let tmp = path.with_extension("partial");
        {
            let mut store = Store::open(&tmp)?;
            for part in g.entries.chunks(4096) {
                let items = part
                    .iter()
                    .map(|e| SyncItem::Entry(e.bytes().to_vec()))
                    .collect();
                let out = store.receive(&g.case, items, 1_795_000_000_000)?;
                anyhow::ensure!(out.refused.is_empty(), "refused: {:?}", out.refused[0]);
            }
        }
        // Fold the WAL into the file before it is renamed.
        rusqlite::Connection::open(&tmp)?.query_row(
            "PRAGMA wal_checkpoint(TRUNCATE)",
            [],
            |_| Ok(()),
        )?;
        std::fs::rename(&tmp, &path)?;
    }
    let exe = std::env::current_exe()?;
    let (mut after, mut peak) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let out = Command::new(&exe).arg("--open").arg(&path).output()?;
        anyhow::ensure!(
            out.status.success(),
            "child: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("rows, VmRSS before and after Store::open, VmHWM (MB): {line}");
        let f: Vec<f64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        after.push(f.get(2).copied().unwrap_or(f64::NAN));
        peak.push(f.get(3).copied().unwrap_or(f64::NAN));
    }
    let (a, p) = (Stat::of(&after), Stat::of(&peak));
    println!(
        "{n} entries: resident after open {:.1} MB ({:.1}–{:.1}), peak {:.1} MB ({:.1}–{:.1}), {} opens",
        a.median, a.min, a.max, p.median, p.min, p.max, reps
    );
    Ok(())
}
