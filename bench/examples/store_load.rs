//! What loading a store costs: `Store::open` of a store that holds one
//! generated case of N entries (default 100,000; three writers), which
//! reads and verifies every row (SPEC.md §8.8). The store is filled once
//! through `Store::receive`, as if a peer had sent the case; then it is
//! opened `REPS` times (default 5) and the median, fastest and slowest
//! open are printed, with entries per second.
//!
//! ```text
//! cargo run --release -p custodia-bench --example store_load -- [N] [REPS]
//! ```

use std::time::Instant;

use custodia_bench::gen::generate_case;
use custodia_node::Store;
use custodia_protocol::{Identity, SyncItem};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let reps: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let lead = Identity::from_seed([1; 32]);
    let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
    let g = generate_case(&lead, &writers, &[], n, 1_795_000_000_000);
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("store.sqlite");
    {
        let mut store = Store::open(&path)?;
        for part in g.entries.chunks(4096) {
            let items = part
                .iter()
                .map(|e| SyncItem::Entry(e.bytes().to_vec()))
                .collect();
            let out = store.receive(&g.case, items, 1_795_000_000_000)?;
            anyhow::ensure!(out.refused.is_empty(), "refused: {:?}", out.refused[0]);
        }
    }
    // One open first: it migrates and warms the page cache.
    drop(Store::open(&path)?);
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let store = Store::open(&path)?;
        times.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(
            store.count()? as usize == g.entries.len(),
            "all rows loaded"
        );
        anyhow::ensure!(store.damaged().is_empty(), "no damaged rows");
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "Store::open of {} entries: median {:.3} s ({:.0} entries/s), fastest {:.3} s, slowest {:.3} s, {} opens, {} cores",
        g.entries.len(),
        median,
        g.entries.len() as f64 / median,
        times[0],
        times[times.len() - 1],
        reps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
