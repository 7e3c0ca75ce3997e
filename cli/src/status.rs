//! `custodia status`, `custodia backup` and `custodia restore`: what an
//! operator needs to know and do about the node's own record (SPEC.md
//! §9.14).

use std::path::Path;
use std::process::ExitCode;

use custodia_node::{Local, LocalError};
use custodia_protocol::CaseId;

use crate::output::{iso_time, Out, EXIT_REFUSED};

/// One case's lines and JSON object; whether it can be written in now.
fn case_status(l: &Local, case: &CaseId) -> Result<(String, serde_json::Value, bool), LocalError> {
    let me = l.me();
    let Some(v) = l.store().case(case) else {
        return Err(LocalError::NotFound(format!("no case {case}")));
    };
    let s = v.state();
    let next = v.next_seq(&me);
    let head = next.checked_sub(1);
    let hold = l.store().holds(Some(case))?.pop();
    let equivocated = l.store().self_equivocation(&me, case);
    let views = l.store().peer_views(case)?;
    // Rows repaired since (a peer sent the genuine entry again) are not
    // counted, as every other command counts them.
    let quarantined: Vec<_> = l
        .store()
        .quarantined(Some(case))?
        .into_iter()
        .filter(|q| !q.recovered)
        .collect();
    let awaiting: Vec<_> = s.open_transfers.values().filter(|t| t.from == me).collect();
    let ready = hold.is_none() && equivocated.is_none();
    let mut t = format!(
        "{}  {}\n  own head: {}\n",
        case.short(),
        crate::untrusted::safe(&s.title),
        head.map_or(
            "none (this agency has written nothing)".into(),
            |h| format!("#{h}")
        )
    );
    let state = if let Some(seq) = equivocated {
        format!("EQUIVOCATED: this agency signed two entries as #{seq}; writes refused until people decide")
    } else if let Some(h) = &hold {
        format!(
            "ON HOLD since {}: {}{}",
            iso_time(h.since),
            h.reason,
            h.peer.map_or(String::new(), |p| format!(
                "; recovering from {}",
                crate::untrusted::safe(&l.name_of(&p))
            ))
        )
    } else {
        "ready".to_string()
    };
    t.push_str(&format!("  state: {state}\n"));
    for pv in &views {
        t.push_str(&format!(
            "  {} holds this agency's chain up to {} (as of {})\n",
            crate::untrusted::safe(&l.name_of(&pv.peer)),
            pv.seq.map_or("nothing".into(), |s| format!("#{s}")),
            iso_time(pv.at)
        ));
    }
    if !quarantined.is_empty() {
        t.push_str(&format!("  quarantined rows: {}\n", quarantined.len()));
    }
    for tr in &awaiting {
        t.push_str(&format!(
            "  transfer {} to {} awaits its receipt (sent {})\n",
            tr.entry.short(),
            crate::untrusted::safe(&l.name_of(&tr.to)),
            iso_time(tr.time)
        ));
    }
    let json = serde_json::json!({
        "case": case.to_hex(),
        "title": s.title,
        "own_head": head,
        "ready": ready,
        "equivocated_at": equivocated,
        "hold": hold.as_ref().map(|h| serde_json::json!({
            "reason": h.reason, "since": iso_time(h.since), "behind": h.behind,
            "peer": h.peer.map(|p| p.to_hex()),
        })),
        "peers": views.iter().map(|pv| serde_json::json!({
            "agency": pv.peer.to_hex(), "name": l.name_of(&pv.peer),
            "holds_up_to": pv.seq, "as_of": iso_time(pv.at),
        })).collect::<Vec<_>>(),
        "quarantined": crate::quarantine::json(&quarantined),
        "awaiting_receipt": awaiting.iter().map(|tr| serde_json::json!({
            "entry": tr.entry.to_hex(), "item": tr.item.to_uuid_string(),
            "to": tr.to.to_hex(), "sent": iso_time(tr.time),
        })).collect::<Vec<_>>(),
    });
    Ok((t, json, ready))
}

/// `custodia status [CASE]`: exit 0 when every case shown can be written
/// in, 1 when one is on hold or equivocated.
pub(crate) fn status(dir: &Path, case: Option<&str>, out: &Out) -> anyhow::Result<ExitCode> {
    let l = crate::passphrase::open(dir)?;
    let cases: Vec<CaseId> = match case {
        Some(c) => vec![l.resolve_case(c)?],
        None => l.store().cases().copied().collect(),
    };
    let mut text = format!(
        "{} ({})\n",
        crate::untrusted::safe(&l.config().agency.name),
        l.me().fingerprint()
    );
    if cases.is_empty() {
        text.push_str("no cases\n");
    }
    let mut rows = Vec::new();
    let mut all_ready = true;
    for c in &cases {
        let (t, j, ready) = case_status(&l, c)?;
        text.push_str(&t);
        rows.push(j);
        all_ready &= ready;
    }
    out.record_version(
        crate::output::JSON_SCHEMA_VERSION_2,
        text.trim_end(),
        serde_json::json!({"agency": l.me().to_hex(), "cases": rows, "ready": all_ready}),
    );
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

/// `custodia backup --out FILE`.
pub(crate) fn backup(dir: &Path, file: &Path, out: &Out) -> anyhow::Result<ExitCode> {
    let l = crate::passphrase::open(dir)?;
    let info = l.backup(file, custodia_node::now_ms())?;
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    out.record(
        &format!(
            "Backup of {} written to {} ({size} bytes, mode 0600), made {}.\nThe identity key is not in it: keep the key file apart. Restoring puts shared cases on hold until peers confirm them (`custodia restore`).",
            crate::untrusted::safe(&l.config().agency.name),
            file.display(),
            iso_time(info.made_at)
        ),
        serde_json::json!({"file": file, "bytes": size, "made_at": iso_time(info.made_at), "agency": info.agency.to_hex()}),
    );
    Ok(ExitCode::SUCCESS)
}

/// `custodia restore FILE --dir DIR --key KEYFILE`.
pub(crate) fn restore(file: &Path, dir: &Path, key: &Path, out: &Out) -> anyhow::Result<ExitCode> {
    let l = custodia_node::Local::restore_with(file, dir, key, crate::passphrase::source())?;
    let held = l.store().holds(None)?;
    out.record(
        &format!(
            "Restored {} into {}. {} shared case(s) on hold until a peer confirms this agency's heads or the node has recovered what it wrote after the backup: start the node (`custodia node run`) and watch `custodia status`.",
            crate::untrusted::safe(&l.config().agency.name),
            dir.display(),
            held.len()
        ),
        serde_json::json!({"dir": dir, "agency": l.me().to_hex(), "held": held.iter().map(|h| h.case.to_hex()).collect::<Vec<_>>()}),
    );
    Ok(ExitCode::SUCCESS)
}
