//! `custodia-sim`: runs the federation simulator at full size.
//!
//! ```text
//! cargo run -p custodia-sim --release -- sim --agencies 196 --seed 1 [--members 5,50,196]
//!     [--topology mesh|liaisons:H|chain:H] [--writes N] [--calm] [--json]
//! cargo run -p custodia-sim --release -- scale [--seed S]
//! ```
//!
//! `sim` runs one federation (one case per `--members` element) with every
//! fault unless `--calm`, and exits 1 if an invariant broke. `scale` prints
//! the tables of bench/RESULTS.md: delivery time and messages per entry
//! per member as cases grow, with and without liaison relays.

use std::process::ExitCode;
use std::time::Instant;

use custodia_sim::{run, Config, Faults, Report, Topology};

const USAGE: &str = "\
usage: custodia-sim sim [--agencies N] [--seed S] [--members A,B,...] [--topology mesh|liaisons:H|chain:H]
                        [--writes N] [--calm] [--json]
       custodia-sim scale [--seed S] [--agencies N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sim") => match parse(&args[1..]) {
            Ok((cfg, json)) => one(cfg, json),
            Err(e) => usage(&e),
        },
        Some("scale") => match parse(&args[1..]) {
            Ok((cfg, _)) => scale(cfg.seed, cfg.agencies),
            Err(e) => usage(&e),
        },
        _ => usage("a command: sim or scale"),
    }
}

fn usage(e: &str) -> ExitCode {
    eprintln!("custodia-sim: {e}\n{USAGE}");
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Result<(Config, bool), String> {
    let mut cfg = Config {
        agencies: 196,
        cases: vec![5, 50, 196],
        writes: 20,
        write_interval_ms: 500,
        faults: Faults {
            disconnects: 20,
            partitions: 2,
            crashes: 6,
            rollback: true,
            lost_stores: 2,
            garble: 0.0005,
            equivocators: 1,
            intruders: 2,
            removals: 1,
            unpins: 2,
        },
        ..Config::small(1)
    };
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--agencies" => cfg.agencies = num(&value(a)?)?,
            "--seed" => cfg.seed = num(&value(a)?)? as u64,
            "--writes" => cfg.writes = num(&value(a)?)?,
            "--members" => cfg.cases = value(a)?.split(',').map(num).collect::<Result<_, _>>()?,
            "--topology" => {
                let v = value(a)?;
                cfg.topology = match v.split_once(':') {
                    None if v == "mesh" => Topology::Mesh,
                    Some(("liaisons", h)) => Topology::Liaisons { hubs: num(h)? },
                    Some(("chain", h)) => Topology::DeskChain { hubs: num(h)? },
                    _ => return Err(format!("unknown topology {v:?}")),
                };
            }
            "--calm" => cfg.faults = Faults::default(),
            "--json" => json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if cfg.agencies < 2 || cfg.cases.iter().any(|&m| m < 2 || m > cfg.agencies) {
        return Err("cases need 2 to --agencies members".into());
    }
    Ok((cfg, json))
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn one(cfg: Config, json: bool) -> ExitCode {
    let began = Instant::now();
    let seed = cfg.seed;
    let r = run(cfg);
    if json {
        println!(
            "{{\"seed\":{seed},\"entries\":{},\"reach_all_ms_p50\":{},\"reach_all_ms_p99\":{},\"frames_per_delivery\":{:.2},\"bytes_per_delivery\":{:.0},\"connections\":{},\"max_hops\":{},\"violations\":{}}}",
            r.entries,
            r.reach_percentile(50.0),
            r.reach_percentile(99.0),
            r.frames_per_delivery(),
            r.bytes_per_delivery(),
            r.connections,
            r.max_hops,
            r.violations.len()
        );
    } else {
        summary(&r);
        eprintln!(
            "(seed {seed}, {:.1} s of real time)",
            began.elapsed().as_secs_f64()
        );
        for v in &r.violations {
            println!("VIOLATION: {v}");
        }
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn summary(r: &Report) {
    println!(
        "entries {}  reach-all p50 {} ms  p99 {} ms  frames/entry/member {:.2}  bytes/entry/member {:.0}  connections {}  max hops {}  session errors {:?}  max queue {}",
        r.entries,
        r.reach_percentile(50.0),
        r.reach_percentile(99.0),
        r.frames_per_delivery(),
        r.bytes_per_delivery(),
        r.connections,
        r.max_hops,
        r.session_errors,
        r.max_queue
    );
    let seen: Vec<String> = r
        .faults_seen
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    println!("faults that happened: {}", seen.join(", "));
}

/// The scale tables: one calm run per case size and topology, then one
/// per relay depth. Each run lets the case's setup spread first (20 s
/// simulated) and counts only the traffic of the 20 notes written after.
fn scale(seed: u64, agencies: usize) -> ExitCode {
    println!("| members | topology | notes | reach all p50 (ms, simulated) | p99 | frames per note per member | bytes per note per member | of which entries | deepest path (hops) | violations |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(usize, Topology)> = Vec::new();
    for members in [5usize, 50, 196] {
        runs.push((members, Topology::Mesh));
        runs.push((members, Topology::Liaisons { hubs: 14 }));
    }
    for hubs in [2usize, 4, 8, 16] {
        runs.push((50, Topology::DeskChain { hubs }));
    }
    let mut bad = false;
    for (members, topology) in runs {
        let cfg = Config {
            agencies,
            seed,
            cases: vec![members.min(agencies)],
            topology,
            latency_ms: (5, 60),
            writes: 20,
            write_interval_ms: 500,
            faults: Faults::default(),
            session_hook: None,
            old_nodes: 0,
            warmup_ms: 20_000,
        };
        let began = Instant::now();
        let r = run(cfg);
        bad |= !r.violations.is_empty();
        println!(
            "| {members} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} |",
            match topology {
                Topology::Mesh => "mesh".to_string(),
                Topology::Liaisons { hubs } => format!("{hubs} liaison desks"),
                Topology::DeskChain { hubs } => format!("{hubs} desks in a line"),
            },
            r.entries,
            r.reach_percentile(50.0),
            r.reach_percentile(99.0),
            r.frames_per_delivery(),
            r.bytes_per_delivery(),
            r.entry_bytes as f64 / r.deliveries.max(1) as f64,
            r.max_hops,
            r.violations.len()
        );
        eprintln!(
            "  ({members} members: {:.1} s real)",
            began.elapsed().as_secs_f64()
        );
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
