//! Latency: from an append at one node (Store::author on its store file,
//! as the CLI writes while the node runs) to durable storage at a
//! connected peer. The peer runs in this process, so its arrival is seen
//! the moment its node publishes the commit ([`custodia_node::Running::revision`]),
//! not when a poll of its store file happens to look.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use custodia_node::Draft;
use custodia_protocol::{EntryId, Role, Tlp};
use custodia_tests::{link, Agency};
use rusqlite::params;
use tokio::sync::watch;

use super::{agency_below, max_pos, read_only, size_note, store_path, wait_for, Ctx};
use crate::gen::note;
use crate::measure::{percentile, Stat};
use crate::report::{Quantity, Row};
use crate::TARGET_SIZES;

/// DESIGN.md: append at one node to durable at a peer, p99 ≤ 3 ms on
/// loopback.
const TARGET_P99_MS: f64 = 3.0;

/// Measures the latency figures.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let s = ctx.cfg.sizes.clone();
    let a = Agency::new("writer", "PH");
    let b = agency_below(&a, "peer");
    link(&a, &b);
    let case = {
        let mut l = a.local();
        let case = l
            .open_case("Latency", "BENCH-LAT", Some("PH"), Tlp::Amber)?
            .id();
        l.share(&case, &b.id.to_hex(), Role::Investigator)?;
        case
    };
    let ra = ctx.rt.block_on(custodia_node::start(&a.dir))?;
    let rb = ctx.rt.block_on(custodia_node::start(&b.dir))?;
    let result = measure(ctx, &a, &b, case, rb.revision());
    ctx.rt.block_on(rb.shutdown());
    ctx.rt.block_on(ra.shutdown());
    let reps = result?;

    let med: Vec<f64> = reps.iter().map(|r| r.median).collect();
    let p99: Vec<f64> = reps.iter().map(|r| r.p99).collect();
    let local_med: Vec<f64> = reps.iter().map(|r| r.local_median).collect();
    let local_p99: Vec<f64> = reps.iter().map(|r| r.local_p99).collect();
    let mut notes = vec![format!(
        "{} appends per repetition at A via Store::author on A's store file (a second handle, like the CLI), {} ms apart; arrival seen when B's node publishes the commit of the received rows (Running::revision, B in-process; the rows then read from B's store); latency from A's commit returning to B's commit",
        s.latency_appends,
        s.latency_spacing.as_millis()
    )];
    notes.extend(size_note(
        "appends",
        s.latency_appends,
        TARGET_SIZES.latency_appends,
    ));
    let lost: usize = reps.iter().map(|r| r.missing).sum();
    if lost > 0 {
        notes.push(format!("{lost} appends never arrived within the wait"));
    }
    Ok(vec![
        Row {
            name: "latency_median".into(),
            figure: "latency append → durable at peer, median".into(),
            custodia: Quantity::of(&med, "ms"),
            reference_label: "local durable append (Store::author), median".into(),
            reference: Some(Quantity::of(&local_med, "ms")),
            ratio: Some(Stat::ratio_of(&med, &local_med)),
            target: "— (reported)".into(),
            met: None,
            notes,
        },
        Row {
            name: "latency_p99".into(),
            figure: "latency append → durable at peer, p99".into(),
            custodia: Quantity::of(&p99, "ms"),
            reference_label: "local durable append, p99".into(),
            reference: Some(Quantity::of(&local_p99, "ms")),
            ratio: Some(Stat::ratio_of(&p99, &local_p99)),
            target: format!("≤ {TARGET_P99_MS} ms (loopback)"),
            met: Some(Stat::of(&p99).median <= TARGET_P99_MS),
            notes: Vec::new(),
        },
    ])
}

/// How long the arrival loop waits for a commit at B before it looks
/// anyway (to notice that the writer finished).
const WAKE_AT_LEAST: Duration = Duration::from_millis(50);

struct Rep {
    median: f64,
    p99: f64,
    local_median: f64,
    local_p99: f64,
    missing: usize,
}

fn measure(
    ctx: &Ctx,
    a: &Agency,
    b: &Agency,
    case: EntryId,
    mut committed: watch::Receiver<i64>,
) -> anyhow::Result<Vec<Rep>> {
    let s = &ctx.cfg.sizes;
    let conn = read_only(&store_path(&b.dir)?)?;
    // The session is up and B holds the case.
    let up = wait_for(
        Duration::from_secs(30) * s.wait_scale,
        Duration::from_millis(20),
        || Ok(max_pos(&conn)? >= 2),
    )?;
    anyhow::ensure!(up, "the peer did not receive the case");
    let mut out = Vec::new();
    let mut n = 0usize;
    for rep in 0..s.reps {
        let appended: Mutex<Vec<(EntryId, Instant, f64)>> = Mutex::new(Vec::new());
        let finished = AtomicBool::new(false);
        let mut arrived: HashMap<[u8; 32], Instant> = HashMap::new();
        let mut last = max_pos(&conn)?;
        let write_result = std::thread::scope(|scope| {
            let writer = scope.spawn(|| -> anyhow::Result<()> {
                let mut l = a.local();
                let r = (|| {
                    for i in 0..s.latency_appends {
                        let t = Instant::now();
                        let e = l.write(&case, Draft::new(Tlp::Amber, note(n + i)))?;
                        let done = Instant::now();
                        appended.lock().map_err(|_| anyhow::anyhow!("lock"))?.push((
                            e.id(),
                            done,
                            (done - t).as_secs_f64() * 1e3,
                        ));
                        std::thread::sleep(s.latency_spacing);
                    }
                    Ok(())
                })();
                finished.store(true, Ordering::SeqCst);
                r
            });
            let mut stmt =
                conn.prepare("SELECT pos, id FROM entries WHERE pos > ?1 ORDER BY pos")?;
            let mut deadline: Option<Instant> = None;
            loop {
                // Woken by B's next commit (or after a while, to notice
                // the end); the time of the wake is the arrival.
                let _ = ctx.rt.block_on(async {
                    tokio::time::timeout(WAKE_AT_LEAST, committed.changed()).await
                });
                let rows: Vec<(i64, Vec<u8>)> = stmt
                    .query_map(params![last], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let now = Instant::now();
                for (pos, id) in rows {
                    last = last.max(pos);
                    if let Ok(id) = <[u8; 32]>::try_from(id) {
                        arrived.entry(id).or_insert(now);
                    }
                }
                if finished.load(Ordering::SeqCst) {
                    let all = appended
                        .lock()
                        .map_err(|_| anyhow::anyhow!("lock"))?
                        .iter()
                        .all(|(id, _, _)| arrived.contains_key(&id.0));
                    let d = *deadline.get_or_insert(now + Duration::from_secs(20) * s.wait_scale);
                    if all || now > d {
                        break;
                    }
                }
            }
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("the writer panicked"))?
        });
        write_result.context("appending at A")?;
        let appended = appended.into_inner().map_err(|_| anyhow::anyhow!("lock"))?;
        n += appended.len();
        let mut lat: Vec<f64> = appended
            .iter()
            .filter_map(|(id, done, _)| {
                arrived
                    .get(&id.0)
                    .map(|t| t.saturating_duration_since(*done).as_secs_f64() * 1e3)
            })
            .collect();
        let missing = appended.len() - lat.len();
        lat.sort_by(f64::total_cmp);
        let mut local: Vec<f64> = appended.iter().map(|(_, _, ms)| *ms).collect();
        local.sort_by(f64::total_cmp);
        let r = Rep {
            median: percentile(&lat, 50.0),
            p99: percentile(&lat, 99.0),
            local_median: percentile(&local, 50.0),
            local_p99: percentile(&local, 99.0),
            missing,
        };
        ctx.say(&format!(
            "rep {rep}: median {:.1} ms, p99 {:.1} ms (local append median {:.2} ms), {missing} missing",
            r.median, r.p99, r.local_median
        ));
        out.push(r);
    }
    Ok(out)
}
