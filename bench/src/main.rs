//! `custodia-bench`: measures every figure of DESIGN.md's targets against a
//! reference taken in the same run, prints a table and writes it as JSON.
//!
//! ```text
//! cargo run --release -p custodia-bench [-- --quick] [--json PATH] [--only NAME[,NAME…]]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use custodia_bench::figures::verify::{child_verify, write_bundle_file, CHILD_FLAG};
use custodia_bench::measure::sibling_binary;
use custodia_bench::{Config, Sizes, FIGURES, OPT_IN};

const USAGE: &str = "\
usage: custodia-bench [--quick] [--json PATH] [--only NAME[,NAME...]] [--reps N] [--quiet] [--no-hypercore]

  --quick        a small run (seconds), the sizes the smoke test uses
  --json PATH    where to write the results (default: bench/results.json)
  --only NAMES   run only these figures (comma-separated)
  --reps N       repetitions per measurement (default 3; 1 with --quick)
  --set K=V      override one size (repeatable), e.g. --set replicate=5000;
                 keys: hash_mib, append_batched, append_batch, append_single,
                 sign_ref, verify_ref, batch_ref, replicate, verify_small,
                 verify_large, memory_entries, memory_cap_secs,
                 latency_appends, latency_spacing_ms, wait_scale, catchup
  --quiet        no progress on standard error
  --no-hypercore do not run the Hypercore reference of the replication figure
                 (it runs when node and npm are on the PATH; bench/hypercore/)

Opt-in figures run only when named in --only (they take minutes):
  catchup        a fresh `custodia node run` catches up with a case of
                 10,000,000 entries (--set catchup=N for another size; 300
                 with --quick). The serving node's folder is cached in
                 target/custodia-bench-cache/catchup-N/ (signing and storing
                 the case takes longer than the catch-up); delete that folder
                 to make it again.

custodia-bench --write-bundle N FILE   writes a valid generated bundle (profiling)

Run it in release: cargo run --release -p custodia-bench";

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("custodia-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    // The in-process daemons log like `custodia node run` when asked to.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("CUSTODIA_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        let file = args
            .get(1)
            .ok_or_else(|| anyhow::anyhow!("{CHILD_FLAG} FILE"))?;
        let valid = child_verify(std::path::Path::new(file))?;
        return Ok(if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if args.first().map(String::as_str) == Some("--write-bundle") {
        let (Some(n), Some(file)) = (args.get(1).and_then(|n| n.parse().ok()), args.get(2)) else {
            anyhow::bail!("--write-bundle N FILE");
        };
        let size = write_bundle_file(n, std::path::Path::new(file))?;
        eprintln!("{file}: {n} entries, {size} bytes");
        return Ok(ExitCode::SUCCESS);
    }
    let mut quick = false;
    let mut json = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results.json");
    let mut only = None;
    let mut reps = None;
    let mut progress = true;
    let mut hypercore = custodia_bench::hypercore::Use::IfPresent;
    let mut sets: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--quiet" => progress = false,
            "--no-hypercore" => {
                hypercore = custodia_bench::hypercore::Use::Skip("--no-hypercore was given".into())
            }
            "--json" => {
                json = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!("--json PATH"))?
            }
            "--only" => {
                let list = it.next().ok_or_else(|| anyhow::anyhow!("--only NAME"))?;
                only = Some(list.split(',').map(|s| s.trim().to_string()).collect());
            }
            "--reps" => {
                reps = Some(
                    it.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| anyhow::anyhow!("--reps N (N ≥ 1)"))?,
                )
            }
            "--set" => sets.push(
                it.next()
                    .ok_or_else(|| anyhow::anyhow!("--set KEY=VALUE"))?,
            ),
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\nfigures: {}",
                    FIGURES
                        .iter()
                        .map(|(n, _)| *n)
                        .map(|n| if OPT_IN.contains(&n) {
                            format!("{n} (opt-in)")
                        } else {
                            n.to_string()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(ExitCode::SUCCESS);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if cfg!(debug_assertions) && !quick {
        eprintln!("custodia-bench: warning: a debug build; run it with --release for real figures");
    }
    let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
    if let Some(r) = reps {
        sizes.reps = r;
    }
    for kv in &sets {
        set_size(&mut sizes, kv)?;
    }
    let exe = std::env::current_exe()?;
    let custodia_bin = find_custodia(&exe);
    let cfg = Config {
        sizes,
        mode: if quick { "quick" } else { "full" }.into(),
        only,
        custodia_bin,
        bench_bin: Some(exe),
        progress,
        hypercore,
    };
    let report = custodia_bench::run(&cfg)?;
    println!("{}", report.machine_lines());
    println!("{}", report.table());
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("results written to {}", json.display());
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Applies one `KEY=VALUE` size override.
fn set_size(s: &mut Sizes, kv: &str) -> anyhow::Result<()> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--set {kv:?}: expected KEY=VALUE"))?;
    let n: u64 = v
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| anyhow::anyhow!("--set {kv:?}: {v:?} is not a whole number"))?;
    let u = n as usize;
    match k.trim() {
        "hash_mib" => s.hash_bytes = n << 20,
        "append_batched" => s.append_batched = u,
        "append_batch" => s.append_batch = u.max(1),
        "append_single" => s.append_single = u,
        "sign_ref" => s.sign_ref = u.max(1),
        "verify_ref" => s.verify_ref = u.max(1),
        "batch_ref" => s.batch_ref = u.max(1),
        "replicate" => s.replicate = u,
        "verify_small" => s.verify_small = u.max(1),
        "verify_large" => s.verify_large = u.max(1),
        "memory_entries" => s.memory_entries = u,
        "memory_cap_secs" => s.memory_cap = std::time::Duration::from_secs(n),
        "latency_appends" => s.latency_appends = u.max(1),
        "latency_spacing_ms" => s.latency_spacing = std::time::Duration::from_millis(n),
        "wait_scale" => s.wait_scale = (n as u32).max(1),
        "catchup" => s.catchup = u.max(1),
        other => anyhow::bail!("--set: no size called {other:?} (see --help)"),
    }
    Ok(())
}

/// The `custodia` binary of the same build profile, built first when this
/// runs under cargo (so it is never stale), else found next to this one.
fn find_custodia(exe: &std::path::Path) -> Option<PathBuf> {
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = exe
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "custodia-cli",
            "--bin",
            "custodia",
        ]);
        if release {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            _ => eprintln!(
                "custodia-bench: could not build the custodia binary; using what is there"
            ),
        }
    }
    sibling_binary(exe, "custodia")
}
