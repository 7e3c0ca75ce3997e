//! Memory: the resident size of a node (`custodia node run`, a child
//! process) that holds a large case while it serves a sync to a fresh peer.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::process::NodeProcess;
use super::{fill_store, holds_heads, max_pos, read_only, size_note, store_path, wipe_store, Ctx};
use crate::measure::{proc_status_kb, timed, Stat};
use crate::report::{Quantity, Row};
use crate::TARGET_SIZES;

/// DESIGN.md: a node holding a million entries stays under 64 MB
/// resident (the first wave's target was 200 MB).
const TARGET_MB: f64 = 64.0;

/// Measures the memory figure.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let s = ctx.cfg.sizes.clone();
    let custodia = ctx
        .cfg
        .custodia_bin
        .clone()
        .context("the `custodia` binary was not found (build it with `cargo build --release -p custodia-cli`)")?;
    let (n, a_dir, b_dir, case, heads, data_mb) = {
        let big = ctx.big_case(s.memory_entries)?;
        let g = &big.gen;
        let data: usize = g.entries.iter().map(|e| e.bytes().len()).sum();
        (
            g.entries.len(),
            big.a.dir.clone(),
            big.b.dir.clone(),
            g.case,
            g.heads.clone(),
            data as f64 / 1e6,
        )
    };
    if !ctx.big_case(s.memory_entries)?.a_filled {
        ctx.say(&format!(
            "storing {n} entries at the serving node (Store::receive)"
        ));
        let big = ctx.big_case(s.memory_entries)?;
        let (r, secs) = timed(|| fill_store(&big.a.dir, &big.gen, 10_000));
        r?;
        big.a_filled = true;
        ctx.say(&format!("stored in {secs:.1} s"));
    }
    // The heads B must reach: the whole generated case's.
    let heads_wanted = heads;
    let (mut peaks, mut loaded, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    let mut progress_notes = Vec::new();
    for rep in 0..s.reps {
        wipe_store(&b_dir)?;
        let node = NodeProcess::spawn(&custodia, &a_dir)?;
        let pid = node.pid();
        let t_spawn = Instant::now();
        let result = (|| -> anyhow::Result<(f64, u64, bool, f64)> {
            node.wait_started(Duration::from_secs(900) * s.wait_scale)?;
            let load_secs = t_spawn.elapsed().as_secs_f64();
            let rss_loaded = proc_status_kb(Some(pid), "VmRSS").unwrap_or(0);
            let rb = ctx.rt.block_on(custodia_node::start(&b_dir))?;
            let conn = read_only(&store_path(&b_dir)?)?;
            let t0 = Instant::now();
            let done = super::wait_for(s.memory_cap, Duration::from_millis(100), || {
                holds_heads(&conn, &case, &heads_wanted)
            });
            let got = max_pos(&conn).unwrap_or(0);
            ctx.rt.block_on(rb.shutdown());
            let done = done?;
            ctx.say(&format!(
                "rep {rep}: node loaded in {load_secs:.1} s at {:.1} MB; peer held {got} of {n} rows after {:.1} s{}",
                rss_loaded as f64 / 1024.0,
                t0.elapsed().as_secs_f64(),
                if done { " (complete)" } else { " (sampling cap reached)" }
            ));
            Ok((
                rss_loaded as f64 / 1024.0,
                got as u64,
                done,
                t0.elapsed().as_secs_f64(),
            ))
        })();
        let (peak_mb, tail) = node.kill();
        let (rss_loaded, got, done, secs) =
            result.with_context(|| format!("node log: {}", tail.join(" / ")))?;
        peaks.push(peak_mb);
        loaded.push(rss_loaded);
        reference.push(data_mb);
        if !done {
            progress_notes.push(format!(
                "repetition {rep}: sampling stopped after {secs:.0} s with the peer holding {got} of {n} rows"
            ));
        }
    }
    let q = Quantity::of(&peaks, "MB");
    let mut notes = vec![
        format!(
            "`custodia node run` holding {n} entries (3 writers, stored through Store::receive), VmRSS sampled every 100 ms from spawn (loading included) and VmHWM read before it is stopped, the larger shown, while a fresh in-process peer syncs the case; resident right after loading: {}",
            Quantity::of(&loaded, "MB").show()
        ),
        "reference: the entries' own bytes (sum of their sizes)".into(),
    ];
    notes.extend(progress_notes);
    notes.extend(size_note("entries held", n, TARGET_SIZES.memory_entries));
    Ok(vec![Row {
        name: "memory".into(),
        figure: "node memory holding the case while serving a sync (peak RSS)".into(),
        custodia: q.clone(),
        reference_label: "raw entry bytes".into(),
        reference: Some(Quantity::of(&reference, "MB")),
        ratio: Some(Stat::ratio_of(&peaks, &reference)),
        target: format!("< {TARGET_MB} MB"),
        met: Some(q.stat.median < TARGET_MB),
        notes,
    }])
}
