//! What each step of receiving an entry costs in CPU time, one thread,
//! against single-signature `verify_strict` measured in the same run: the
//! strict decoder (a `serde_cbor::Value` tree, re-encoded to prove the
//! bytes deterministic, and the Sig_structure copied into one buffer, as
//! every entry was decoded before the fast path) against the fast path
//! (one walk over the bytes, the payload decoded straight into its type),
//! and batch verification over a copied Sig_structure against hashing it
//! where it lies in the entry.
//!
//! CPU time of this thread (`/proc/thread-self/schedstat`), not wall time,
//! so that other work on a shared machine disturbs the figures less;
//! rounds alternate the order of the steps; medians with the spread.
//!
//! ```text
//! cargo run --release -p custodia-bench --example decode_cost -- [N] [ROUNDS]
//! ```

use custodia_bench::gen::{generate_case, triples};
use custodia_bench::measure::Stat;
use custodia_protocol::signature::Batch;
use custodia_protocol::{Entry, Identity};

/// Nanoseconds this thread has run on a CPU.
fn cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

fn cpu<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = cpu_ns();
    let out = f();
    (out, cpu_ns() - t)
}

const BATCH: usize = 128;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let lead = Identity::from_seed([1; 32]);
    let writers = [Identity::from_seed([2; 32]), Identity::from_seed([3; 32])];
    let g = generate_case(&lead, &writers, &[], n, 1_795_000_000_000);
    let all: Vec<Vec<u8>> = g.entries.iter().map(|e| e.bytes().to_vec()).collect();
    let refs = triples(&g.entries);
    let per = |ns: f64| ns / all.len() as f64 / 1000.0;

    let names = [
        "strict decode + Sig_structure copy",
        "fast-path decode",
        "batch verify, Sig_structure copied",
        "batch verify, Sig_structure in parts",
        "verify_strict (reference)",
    ];
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..names.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for step in order {
            let (ok, ns) = match step {
                0 => cpu(|| {
                    all.iter()
                        .filter(|b| {
                            Entry::decode_unverified_strict(b)
                                .map(|u| std::hint::black_box(u.signed_message()).len())
                                .is_ok()
                        })
                        .count()
                }),
                1 => cpu(|| {
                    all.iter()
                        .filter(|b| Entry::decode_unverified(b).is_ok())
                        .count()
                }),
                2 | 3 => {
                    let decoded: Vec<_> = all
                        .iter()
                        .filter_map(|b| Entry::decode_unverified(b).ok())
                        .collect();
                    cpu(|| {
                        let mut good = 0;
                        for chunk in decoded.chunks(BATCH) {
                            let mut batch = Batch::with_capacity(chunk.len());
                            for u in chunk {
                                if step == 2 {
                                    batch.push(&u.author(), &u.signed_message(), u.signature());
                                } else {
                                    batch.push_parts(&u.author(), &u.signed_parts(), u.signature());
                                }
                            }
                            good += batch.verify().into_iter().filter(|&v| v).count();
                        }
                        good
                    })
                }
                _ => cpu(|| {
                    refs.iter()
                        .filter(|(k, m, s)| k.verify_strict(m, s).is_ok())
                        .count()
                }),
            };
            anyhow::ensure!(
                ok == all.len(),
                "{}: {ok} of {} passed",
                names[step],
                all.len()
            );
            us[step].push(per(ns));
        }
    }
    println!(
        "{} entries of {} writers, mean {} bytes; CPU µs per entry, one thread, {rounds} rounds (median, min–max), and the ratio to verify_strict per round",
        all.len(),
        1 + writers.len(),
        all.iter().map(Vec::len).sum::<usize>() / all.len().max(1)
    );
    let reference = &us[names.len() - 1];
    for (name, v) in names.iter().zip(&us) {
        let s = Stat::of(v);
        let r = Stat::ratio_of(v, reference);
        println!(
            "{name:40} {:7.2} µs ({:.2}–{:.2})  {:.3}× verify_strict ({:.3}–{:.3})",
            s.median, s.min, s.max, r.median, r.min, r.max
        );
    }
    Ok(())
}
