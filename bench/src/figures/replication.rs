//! Replication: a second node receives, verifies and durably stores a case
//! over QUIC on 127.0.0.1; entries per second from its start to its store
//! holding everything the first node holds. The reference is Hypercore 11
//! replicating as many entries of the same mean size between two processes
//! over TCP on 127.0.0.1 ([`crate::hypercore`]), measured in the same run,
//! in rounds that alternate which of the two goes first.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use custodia_node::Draft;
use custodia_protocol::{Role, Tlp, MAX_BATCH};
use custodia_tests::{link, Agency};

use super::{
    agency_below, holds_heads, max_pos, read_only, receive_all, size_note, store_path,
    verify_strict_rate, wait_for, Ctx,
};
use crate::gen::{note, triples};
use crate::hypercore::{install_dir, Hypercore, Use};
use crate::measure::{timed, Stat};
use crate::report::{Quantity, Row};
use crate::TARGET_SIZES;

/// DESIGN.md: ≥ 5× the rate of Hypercore 11 measured in the same run.
const TARGET_RATIO: f64 = 5.0;

/// Measures the replication figure.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Vec<Row>> {
    let s = ctx.cfg.sizes.clone();
    let a = Agency::new("origin", "PH");
    // One fresh receiver per repetition, each dialling A. Distinct names:
    // a pinned peer replaces any other of the same name.
    let receivers: Vec<Agency> = (0..s.reps)
        .map(|i| agency_below(&a, &format!("receiver-{i}")))
        .collect();
    for b in &receivers {
        link(&a, b);
    }
    let mut l = a.local();
    let case = l
        .open_case("Replication", "BENCH-REPL", Some("PH"), Tlp::Amber)?
        .id();
    for b in &receivers {
        l.share(&case, &b.id.to_hex(), Role::Investigator)?;
    }
    ctx.say(&format!("authoring {} entries at the origin", s.replicate));
    let mut i = 0;
    while (l.store().count()? as usize) < s.replicate {
        let left = s.replicate - l.store().count()? as usize;
        let drafts: Vec<Draft> = (0..left.min(1000))
            .map(|k| Draft::new(Tlp::Amber, note(i + k)))
            .collect();
        i += drafts.len();
        l.write_many(&case, drafts)?;
    }
    let all = l.store().entries(&case)?;
    let refs = triples(all.iter().take(s.verify_ref.max(1)));
    drop(l);
    let entry_bytes = all.iter().map(|e| e.bytes().len()).sum::<usize>() / all.len().max(1);

    let mut hypercore = match &ctx.cfg.hypercore {
        Use::Skip(why) => Err(why.clone()),
        Use::IfPresent => {
            ctx.say("installing the Hypercore reference (npm ci, once)");
            Hypercore::prepare(&install_dir(ctx.cfg.bench_bin.as_deref()))
        }
    };
    if let Err(why) = &hypercore {
        ctx.say(&format!("Hypercore is not run: {why}"));
    }
    let (mut hyper, mut hyper_append, mut hyper_version) = (Vec::new(), Vec::new(), None);
    let mut hyper_round = |ctx: &Ctx, rep: usize, hypercore: &mut Result<Hypercore, String>| {
        let Ok(h) = hypercore.as_ref() else { return };
        match h.replicate(s.replicate, entry_bytes) {
            Ok(run) => {
                ctx.say(&format!(
                    "rep {rep}: Hypercore {} replicated {} entries of {} bytes at {:.0}/s",
                    run.hypercore, run.entries, run.entry_bytes, run.replicate_per_s
                ));
                hyper.push(run.replicate_per_s);
                hyper_append.push(run.append_per_s);
                hyper_version = Some(format!("Hypercore {} on Node.js {}", run.hypercore, h.node));
            }
            Err(e) => {
                ctx.say(&format!("Hypercore failed: {e:#}"));
                *hypercore = Err(format!("it failed in round {rep}: {e:#}"));
            }
        }
    };

    let (mut rates, mut reference) = (Vec::new(), Vec::new());
    let (mut store_only, mut store_big) = (Vec::new(), Vec::new());
    for (rep, b) in receivers.iter().enumerate() {
        // Alternate which goes first, so a drift in the machine's load
        // does not favour one side.
        let hypercore_first = rep % 2 == 0;
        if hypercore_first {
            hyper_round(ctx, rep, &mut hypercore);
        }
        reference.push(verify_strict_rate(&refs, s.verify_ref));
        // What B must end up holding: A's rows now, and A's chain head.
        let (rows, head) = {
            let l = a.local();
            let v = l.store().case(&case).context("case at A")?;
            let me = l.me();
            (l.store().count()?, (me, v.next_seq(&me) - 1))
        };
        let ra = ctx.rt.block_on(custodia_node::start(&a.dir))?;
        let t0 = Instant::now();
        let rb = ctx.rt.block_on(custodia_node::start(&b.dir))?;
        let b_store = store_path(&b.dir)?;
        let conn = read_only(&b_store)?;
        let timeout = Duration::from_secs(30).max(Duration::from_millis(rows * 5)) * s.wait_scale;
        let done = wait_for(timeout, Duration::from_millis(10), || {
            holds_heads(&conn, &case, &[head])
        })?;
        let secs = t0.elapsed().as_secs_f64();
        let got = max_pos(&conn)?;
        ctx.rt.block_on(rb.shutdown());
        ctx.rt.block_on(ra.shutdown());
        anyhow::ensure!(
            done,
            "receiver {rep} held {got} of {rows} rows after {secs:.1} s"
        );
        let rate = rows as f64 / secs;
        ctx.say(&format!(
            "rep {rep}: {rows} entries in {secs:.2} s = {rate:.0}/s (verify_strict {:.0}/s)",
            reference[rep]
        ));
        rates.push(rate);
        if !hypercore_first {
            hyper_round(ctx, rep, &mut hypercore);
        }
        // The receiving store alone, no network: the sync's batch size per
        // transaction, then 8 times as many.
        for (per_tx, out) in [
            (MAX_BATCH, &mut store_only),
            (8 * MAX_BATCH, &mut store_big),
        ] {
            let c = Agency::new(&format!("store-only-{rep}"), "DE");
            let (r, secs) = timed(|| receive_all(&c.dir, &case, &all, per_tx));
            r?;
            out.push(all.len() as f64 / secs);
        }
        ctx.say(&format!(
            "rep {rep}: Store::receive alone {:.0}/s at {MAX_BATCH} per transaction, {:.0}/s at {}",
            store_only[rep],
            store_big[rep],
            8 * MAX_BATCH
        ));
    }
    let q = Quantity::of(&rates, "/s");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut notes = vec![format!(
        "{} entries (mean {entry_bytes} bytes) authored at A (Store::author_many), a fresh node B started in-process, dialling A over QUIC on 127.0.0.1; timed from B's start until B's store holds A's chain head (read-only SQLite polling every 10 ms); every signature checked, every batch fsynced; both daemons share the machine's {cores} cores",
        s.replicate,
    )];
    let hyper_ok = hypercore.is_ok() && hyper.len() == rates.len();
    match &hypercore {
        Ok(_) if hyper_ok => notes.push(format!(
            "{}: the same number of entries of {entry_bytes} bytes appended in one process (batches of 1,000; {} appends/s), then replicated to a second process over TCP on 127.0.0.1 (Noise-encrypted, every block checked against the signed tree; Hypercore's default storage, no fsync per batch); timed in the second process from opening its core to holding every entry (bench/hypercore/replicate.js). Rounds alternate which system runs first; the ratio is per round",
            hyper_version.as_deref().unwrap_or("Hypercore"),
            Quantity::of(&hyper_append, "/s").show()
        )),
        Ok(_) => notes.push("Hypercore did not run in every round; no ratio".into()),
        Err(why) => notes.push(format!(
            "Hypercore was not run ({why}), so this row has no reference: install node and npm to measure it"
        )),
    }
    notes.extend(size_note(
        "replicated entries",
        s.replicate,
        TARGET_SIZES.replicate,
    ));
    let ratio = hyper_ok.then(|| Stat::ratio_of(&rates, &hyper));
    let ref_q = Quantity::of(&reference, "/s");
    let store_rows = vec![
        Row {
            name: "replication_store_only".into(),
            figure: format!("receive path alone (Store::receive, no network), {MAX_BATCH} per transaction"),
            custodia: Quantity::of(&store_only, "/s"),
            reference_label: "verify_strict, 1 core".into(),
            reference: Some(ref_q.clone()),
            ratio: Some(Stat::ratio_of(&store_only, &reference)),
            target: "— (decomposition)".into(),
            met: None,
            notes: vec![format!(
                "the same {} entries stored into a fresh store through Store::receive (decode and verify on all cores, validate, insert, one fsynced commit per transaction), as the daemon does for each received batch",
                all.len()
            )],
        },
        Row {
            name: "replication_store_only_big_tx".into(),
            figure: format!("receive path alone, {} per transaction", 8 * MAX_BATCH),
            custodia: Quantity::of(&store_big, "/s"),
            reference_label: "verify_strict, 1 core".into(),
            reference: Some(ref_q),
            ratio: Some(Stat::ratio_of(&store_big, &reference)),
            target: "— (decomposition)".into(),
            met: None,
            notes: Vec::new(),
        },
    ];
    let mut rows = vec![
        Row {
            name: "replication".into(),
            figure: "replication over QUIC: entries/s received, verified, stored".into(),
            custodia: q.clone(),
            reference_label: if hyper_ok {
                "Hypercore 11, 2 processes, TCP".into()
            } else {
                "Hypercore 11 (not run)".into()
            },
            reference: hyper_ok.then(|| Quantity::of(&hyper, "/s")),
            ratio,
            target: format!("≥ {TARGET_RATIO}× Hypercore 11 (same run)"),
            met: ratio.map(|r| r.median >= TARGET_RATIO),
            notes,
        },
        Row {
            name: "replication_vs_verify".into(),
            figure: "replication over QUIC, against one core's signature checking".into(),
            custodia: q,
            reference_label: "verify_strict, 1 core".into(),
            reference: Some(Quantity::of(&reference, "/s")),
            ratio: Some(Stat::ratio_of(&rates, &reference)),
            target: "— (cryptographic reference)".into(),
            met: None,
            notes: vec!["the same rounds as the row above; the reference is single-core Ed25519 verify_strict over the same entries (keys already decompressed), one signature at a time".into()],
        },
    ];
    rows.extend(store_rows);
    Ok(rows)
}
