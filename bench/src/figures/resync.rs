//! Resync: two real nodes that share many cases and hold the same entries
//! reconnect (the dialling node restarts); how long until the session
//! knows nothing is new, and how many bytes crossed (sync version 2's
//! summary, SPEC.md §9.5.1). The reference is the same reconnect with one
//! shared case, measured in the same run.

use std::time::{Duration, Instant};

use custodia_node::PeerStats;
use custodia_protocol::{Role, Tlp};
use custodia_tests::{link, Agency};

use super::{agency_below, wait_for, Ctx};
use crate::measure::Stat;
use crate::report::{Quantity, Row};

/// Shared cases (full run; the quick run uses 50).
const CASES: usize = 1000;

/// Measures the resync figures.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let quick = ctx.cfg.sizes.replicate < 10_000;
    let many = if quick { 50 } else { CASES };
    let reps = ctx.cfg.sizes.reps.max(1);
    let mut times = (Vec::new(), Vec::new());
    let mut bytes = (Vec::new(), Vec::new());
    for (n, t, b) in [
        (many, &mut times.0, &mut bytes.0),
        (1, &mut times.1, &mut bytes.1),
    ] {
        ctx.say(&format!("resync: {n} shared cases"));
        let (a, b_agency) = pair(n)?;
        for _ in 0..reps {
            let (ms, wire) = reconnect(ctx, &a, &b_agency, n)?;
            t.push(ms);
            b.push(wire as f64);
        }
    }
    Ok(vec![
        Row {
            name: "resync_time".into(),
            figure: format!("no-op resync of {many} shared cases: restart → nothing new known"),
            custodia: Quantity::of(&times.0, "ms"),
            reference_label: "the same with 1 shared case".into(),
            reference: Some(Quantity::of(&times.1, "ms")),
            ratio: Some(Stat::ratio_of(&times.0, &times.1)),
            target: "< 100 ms".into(),
            met: Some(Stat::of(&times.0).median < 100.0),
            notes: vec![format!(
                "two real nodes (QUIC on loopback, SQLite stores) holding the same {many} two-member cases; the dialling node's daemon is stopped and started again; timed from the call that starts it (its store opened and loaded included) until each node has received the other's hello and summary (polled every 1 ms), connection set-up included"
            )],
        },
        Row {
            name: "resync_bytes".into(),
            figure: format!("no-op resync of {many} shared cases: bytes on the wire (frames, both ways)"),
            custodia: Quantity::of(&bytes.0, "B"),
            reference_label: "the same with 1 shared case".into(),
            reference: Some(Quantity::of(&bytes.1, "B")),
            ratio: Some(Stat::ratio_of(&bytes.0, &bytes.1)),
            target: "< 64 KB".into(),
            met: Some(Stat::of(&bytes.0).median < 64.0 * 1024.0),
            notes: vec!["frame bytes counted by both daemons (length prefixes included; QUIC and TLS overhead not counted)".into()],
        },
    ])
}

/// Two linked agencies sharing `n` cases opened by `a`; `b` dials.
fn pair(n: usize) -> anyhow::Result<(Agency, Agency)> {
    let a = Agency::new("holder", "PH");
    let b = agency_below(&a, "partner");
    link(&a, &b);
    let mut l = a.local();
    for i in 0..n {
        let case = l
            .open_case(&format!("Case {i}"), &format!("REF-{i}"), None, Tlp::Amber)?
            .id();
        l.share(&case, &b.id.to_hex(), Role::Investigator)?;
    }
    Ok((a, b))
}

fn sum(r: &custodia_node::Running, peer: &Agency) -> PeerStats {
    r.peer_stats(&peer.id)
}

/// Brings both nodes in step, restarts `b`, and measures the reconnect.
fn reconnect(ctx: &Ctx, a: &Agency, b: &Agency, n: usize) -> anyhow::Result<(f64, u64)> {
    let rows = 2 * n as u64;
    let ra = ctx.rt.block_on(custodia_node::start(&a.dir))?;
    let rb = ctx.rt.block_on(custodia_node::start(&b.dir))?;
    // In step: the partner holds the cases, and both hold the same rows
    // (the witnesses each writes in answer to the other's entries
    // included) for a second in a row.
    let mut last = (0, 0, Instant::now());
    let synced = wait_for(Duration::from_secs(300), Duration::from_millis(50), || {
        let now = (a.count(), b.count());
        if now != (last.0, last.1) {
            last = (now.0, now.1, Instant::now());
        }
        Ok(now.1 >= rows && now.0 == now.1 && last.2.elapsed() > Duration::from_secs(1))
    })?;
    ctx.rt.block_on(rb.shutdown());
    anyhow::ensure!(synced, "the partner did not receive the {n} cases");
    // Let the first session's close settle on both sides.
    std::thread::sleep(Duration::from_millis(300));
    let before = sum(&ra, b);
    let began = Instant::now();
    let rb = ctx.rt.block_on(custodia_node::start(&b.dir))?;
    let settled = wait_for(Duration::from_secs(30), Duration::from_millis(1), || {
        Ok(sum(&ra, b).frames >= before.frames + 2 && sum(&rb, a).frames >= 2)
    })?;
    let ms = began.elapsed().as_secs_f64() * 1e3;
    // Anything more that would cross (there should be nothing).
    std::thread::sleep(Duration::from_millis(500));
    let wire = sum(&ra, b).bytes - before.bytes + sum(&rb, a).bytes;
    ctx.rt.block_on(rb.shutdown());
    ctx.rt.block_on(ra.shutdown());
    anyhow::ensure!(settled, "the reconnect did not settle");
    Ok((ms, wire))
}
