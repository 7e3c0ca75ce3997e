//! # custodia-bench
//!
//! The benchmark command behind `cargo run --release -p custodia-bench`:
//! every figure of DESIGN.md's "Targets" measured against a reference
//! taken on the same machine in the same run (machines here are shared and
//! noisy, so no figure is an absolute time alone). Each measurement is
//! repeated (3 times by default) and reported as its median with the
//! spread; the ratio is computed per repetition from paired measurements.
//!
//! The same code runs tiny in the smoke test (`tests/smoke.rs`), so a
//! change that breaks a code path the benchmark uses fails CI without the
//! real benchmark being run.

pub mod figures;
pub mod gen;
pub mod hypercore;
pub mod measure;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use report::{Report, Row};

/// The sizes of a run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Repetitions of each measurement.
    pub reps: usize,
    /// Evidence file size in bytes.
    pub hash_bytes: u64,
    /// Entries appended in batches.
    pub append_batched: usize,
    /// Entries per batch (transaction).
    pub append_batch: usize,
    /// Entries appended one per transaction.
    pub append_single: usize,
    /// Signatures for the signing reference.
    pub sign_ref: usize,
    /// Signatures for the single-core verify_strict reference.
    pub verify_ref: usize,
    /// Signatures for the all-cores batch verification reference.
    pub batch_ref: usize,
    /// Entries replicated.
    pub replicate: usize,
    /// The smaller bundle (memory comparison).
    pub verify_small: usize,
    /// The larger bundle.
    pub verify_large: usize,
    /// Entries held by the node whose memory is sampled.
    pub memory_entries: usize,
    /// How long the sync is sampled at most.
    pub memory_cap: Duration,
    /// Appends whose latency is measured.
    pub latency_appends: usize,
    /// Pause between two appends.
    pub latency_spacing: Duration,
    /// Multiplies every wait's timeout (for runs under valgrind).
    pub wait_scale: u32,
    /// Entries of the case a fresh node catches up with (the opt-in
    /// `catchup` figure).
    pub catchup: usize,
}

/// The sizes DESIGN.md's targets are stated at.
pub const TARGET_SIZES: Sizes = Sizes {
    reps: 3,
    hash_bytes: 1 << 30,
    append_batched: 50_000,
    append_batch: 1_000,
    append_single: 1_000,
    sign_ref: 20_000,
    verify_ref: 20_000,
    batch_ref: 128_000,
    replicate: 100_000,
    verify_small: 100_000,
    verify_large: 1_000_000,
    memory_entries: 1_000_000,
    memory_cap: Duration::from_secs(120),
    latency_appends: 1_000,
    latency_spacing: Duration::from_millis(5),
    wait_scale: 1,
    catchup: 10_000_000,
};

impl Sizes {
    /// The full run.
    pub fn full() -> Sizes {
        TARGET_SIZES
    }

    /// A small run (seconds; the smoke test uses it).
    pub fn quick() -> Sizes {
        Sizes {
            reps: 1,
            hash_bytes: 4 << 20,
            append_batched: 400,
            append_batch: 100,
            append_single: 20,
            sign_ref: 200,
            verify_ref: 200,
            batch_ref: 640,
            replicate: 300,
            verify_small: 100,
            verify_large: 400,
            memory_entries: 400,
            memory_cap: Duration::from_secs(20),
            latency_appends: 10,
            latency_spacing: Duration::from_millis(5),
            wait_scale: 1,
            catchup: 300,
        }
    }
}

/// What to run and with what.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sizes.
    pub sizes: Sizes,
    /// "full" or "quick".
    pub mode: String,
    /// Only these figures (names from [`FIGURES`]).
    pub only: Option<Vec<String>>,
    /// The `custodia` binary, for the figures that run it as a process.
    pub custodia_bin: Option<PathBuf>,
    /// This benchmark's own binary, for work done in a child process.
    pub bench_bin: Option<PathBuf>,
    /// Print progress on standard error.
    pub progress: bool,
    /// Whether the replication figure runs Hypercore as its reference.
    pub hypercore: hypercore::Use,
}

/// A figure: its name and the function that measures it.
pub type Figure = (
    &'static str,
    fn(&mut figures::Ctx) -> anyhow::Result<Vec<Row>>,
);

/// Every figure, in the order they run.
pub const FIGURES: &[Figure] = &[
    ("hashing", figures::hashing::run),
    ("append", figures::append::run),
    ("replication", figures::replication::run),
    ("latency", figures::latency::run),
    ("verify", figures::verify::run),
    ("memory", figures::memory::run),
    ("federation", figures::federation::run),
    ("resync", figures::resync::run),
    ("catchup", figures::catchup::run),
];

/// Figures that run only when named in `--only` (they take minutes at the
/// target sizes), not in a full run.
pub const OPT_IN: &[&str] = &["catchup"];

/// Runs the selected figures. A figure that fails is reported in
/// [`Report::failed`]; the others still run.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    if let Some(only) = &cfg.only {
        for name in only {
            if !FIGURES.iter().any(|(n, _)| n == name) {
                anyhow::bail!(
                    "no figure called {name:?}; the figures are: {}",
                    FIGURES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    let machine = measure::Machine::describe();
    let mut ctx = figures::Ctx::new(cfg)?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, f) in FIGURES {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == name))
        {
            continue;
        }
        if cfg.only.is_none() && OPT_IN.contains(name) {
            continue;
        }
        ctx.say(&format!("== {name}"));
        match f(&mut ctx) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                ctx.say(&format!("{name} failed: {e:#}"));
                failed.push((name.to_string(), format!("{e:#}")));
            }
        }
    }
    Ok(Report {
        mode: cfg.mode.clone(),
        repetitions: cfg.sizes.reps,
        machine,
        rows,
        failed,
    })
}
