//! Writes a hostile bundle for measuring `custodia verify` (bench/RESULTS.md,
//! "Verification under hostile input").
//!
//! ```text
//! cargo run --release -p custodia-cli --example hostile_bundle -- SHAPE N FILE
//! ```
//!
//! SHAPE is `garbage` (N one-byte elements: N problems), `same-id` (N
//! withheld markers carrying one id) or `markers` (N distinct withheld
//! markers: a valid bundle).

#[path = "../tests/common/hostile.rs"]
mod hostile;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(shape), Some(n), Some(file)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
        args.get(2),
    ) else {
        eprintln!(
            "usage: hostile_bundle SHAPE N FILE   (SHAPE: {})",
            hostile::SHAPES.join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(bytes) = hostile::bundle(shape, n) else {
        eprintln!(
            "unknown shape {shape:?}: use {}",
            hostile::SHAPES.join(", ")
        );
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::write(file, &bytes) {
        eprintln!("{file}: {e}");
        return ExitCode::from(2);
    }
    eprintln!(
        "{file}: {shape}, {n} hostile elements, {} bytes",
        bytes.len()
    );
    ExitCode::SUCCESS
}
