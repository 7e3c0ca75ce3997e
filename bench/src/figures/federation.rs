//! Federation: thirty real nodes (QUIC on loopback, a SQLite store each,
//! the daemon in this process) in one case, connected through three
//! liaison desks; members write notes and every other member's store is
//! watched until it holds each. The simulator's tables (`custodia-sim
//! scale`) are the same figures for 196 agencies in memory.

use std::time::{Duration, Instant};

use custodia_protocol::{Entry, EntryId};
use custodia_tests::{desk_federation, note, Agency};
use rusqlite::{params, Connection};

use super::{read_only, store_path, wait_for, Ctx};
use crate::measure::{percentile, Stat};
use crate::report::{Quantity, Row};

/// Nodes and desks (full run; the quick run uses 8 and 2).
const NODES: usize = 30;
const DESKS: usize = 3;
/// Notes written, one at a time.
const NOTES: usize = 20;

/// Measures the federation figures.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let quick = ctx.cfg.sizes.replicate < 10_000;
    let (nodes, desks) = if quick { (8, 2) } else { (NODES, DESKS) };
    ctx.say(&format!("federation: {nodes} real nodes, {desks} desks"));
    let (agencies, case) = desk_federation(nodes, desks);
    let mut running = Vec::new();
    for a in &agencies {
        running.push(ctx.rt.block_on(custodia_node::start(&a.dir))?);
    }
    let result = measure(ctx, &agencies, case, desks, &running);
    for r in running {
        ctx.rt.block_on(r.shutdown());
    }
    let m = result?;
    let members = nodes - 1;
    let per = |x: u64| x as f64 / (m.reach.len() * members) as f64;
    let note = format!(
        "{nodes} nodes in one process on this machine's 2 cores, {desks} liaison desks (agency i pinned to desk i % {desks}, desks to each other), one case of {nodes} members; {} notes written one at a time by non-desk members; arrival seen by polling every member's store read-only every 1 ms",
        m.reach.len()
    );
    let mut notes = vec![note];
    if m.missing > 0 {
        notes.push(format!(
            "{} (note, member) arrivals not seen within 30 s",
            m.missing
        ));
    }
    Ok(vec![
        Row {
            name: "federation_reach_median".into(),
            figure: format!("note → stored by all {members} other members, median"),
            custodia: Quantity::of(&[percentile(&m.reach, 50.0)], "ms"),
            reference_label: "note → stored by the first member, median".into(),
            reference: Some(Quantity::of(&[percentile(&m.first, 50.0)], "ms")),
            ratio: Some(Stat::ratio_of(
                &[percentile(&m.reach, 50.0)],
                &[percentile(&m.first, 50.0)],
            )),
            target: "— (reported)".into(),
            met: None,
            notes,
        },
        Row {
            name: "federation_reach_p99".into(),
            figure: format!("note → stored by all {members} other members, p99"),
            custodia: Quantity::of(&[percentile(&m.reach, 99.0)], "ms"),
            reference_label: "note → stored by the first member, p99".into(),
            reference: Some(Quantity::of(&[percentile(&m.first, 99.0)], "ms")),
            ratio: Some(Stat::ratio_of(
                &[percentile(&m.reach, 99.0)],
                &[percentile(&m.first, 99.0)],
            )),
            target: "— (reported)".into(),
            met: None,
            notes: Vec::new(),
        },
        Row {
            name: "federation_frames".into(),
            figure: "frames received per note per member".into(),
            custodia: Quantity::of(&[per(m.frames)], "frames"),
            reference_label: "—".into(),
            reference: None,
            ratio: None,
            target: "— (reported)".into(),
            met: None,
            notes: vec![format!(
                "bytes received per note per member: {:.0} (all frames, witnesses included)",
                per(m.bytes)
            )],
        },
    ])
}

struct Measured {
    reach: Vec<f64>,
    first: Vec<f64>,
    frames: u64,
    bytes: u64,
    missing: usize,
}

fn totals(running: &[custodia_node::Running], agencies: &[Agency]) -> (u64, u64) {
    let mut t = (0, 0);
    for r in running {
        for a in agencies {
            let s = r.peer_stats(&a.id);
            t.0 += s.frames;
            t.1 += s.bytes;
        }
    }
    t
}

/// Whether the store holds entry `e` (found by its position: the store
/// has no index on entry ids).
fn holds(c: &Connection, e: &Entry) -> bool {
    c.query_row(
        "SELECT 1 FROM entries WHERE case_id = ?1 AND author = ?2 AND seq = ?3 AND id = ?4",
        params![
            &e.case_id().0[..],
            &e.author().0[..],
            e.seq() as i64,
            &e.id().0[..]
        ],
        |_| Ok(()),
    )
    .is_ok()
}

fn measure(
    ctx: &Ctx,
    agencies: &[Agency],
    case: EntryId,
    desks: usize,
    running: &[custodia_node::Running],
) -> anyhow::Result<Measured> {
    let n = agencies.len() as u64;
    let up = wait_for(Duration::from_secs(120), Duration::from_millis(50), || {
        Ok(agencies.iter().all(|a| a.case_count(&case) >= n))
    })?;
    anyhow::ensure!(up, "the case did not reach every member");
    let conns: Vec<Connection> = agencies
        .iter()
        .map(|a| read_only(&store_path(&a.dir)?))
        .collect::<anyhow::Result<_>>()?;
    let before = totals(running, agencies);
    let mut m = Measured {
        reach: Vec::new(),
        first: Vec::new(),
        frames: 0,
        bytes: 0,
        missing: 0,
    };
    let writers: Vec<usize> = (desks..agencies.len()).collect();
    for k in 0..NOTES {
        let w = writers[(k * 7) % writers.len()];
        let began = Instant::now();
        let e = agencies[w]
            .local()
            .write(&case, note(&format!("federation note {k}")))?;
        let mut pending: Vec<usize> = (0..agencies.len()).filter(|i| *i != w).collect();
        let mut first = None;
        while !pending.is_empty() && began.elapsed() < Duration::from_secs(30) {
            pending.retain(|i| !holds(&conns[*i], &e));
            if first.is_none() && pending.len() < agencies.len() - 1 {
                first = Some(began.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        m.missing += pending.len();
        if pending.is_empty() {
            m.reach.push(began.elapsed().as_secs_f64() * 1e3);
        }
        if let Some(f) = first {
            m.first.push(f.as_secs_f64() * 1e3);
        }
        ctx.say(&format!("federation: note {k} reached all"));
    }
    m.reach.sort_by(f64::total_cmp);
    m.first.sort_by(f64::total_cmp);
    let after = totals(running, agencies);
    (m.frames, m.bytes) = (after.0 - before.0, after.1 - before.1);
    Ok(m)
}
