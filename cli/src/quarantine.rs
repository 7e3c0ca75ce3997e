//! Rows of the store that failed verification when they were loaded
//! (SPEC.md §8.8): every command that reads a case with such rows says
//! so on stderr, and its `--json` carries them.

use custodia_node::Local;
use custodia_node::Quarantined;
use custodia_protocol::CaseId;

use crate::output::Out;

/// The quarantined rows of a case (or of the whole store) not recovered
/// since, with a warning on stderr if there are any.
pub(crate) fn warn(l: &Local, case: Option<&CaseId>, out: &Out) -> Vec<Quarantined> {
    let rows: Vec<Quarantined> = match l.store().quarantined(case) {
        Ok(rows) => rows.into_iter().filter(|q| !q.recovered).collect(),
        Err(e) => {
            out.warn(&format!("cannot list the quarantined rows: {e}"));
            return Vec::new();
        }
    };
    if !rows.is_empty() {
        let whose = case.map_or_else(
            || "this store".to_owned(),
            |c| format!("case {}", c.short()),
        );
        out.warn(&format!(
            "{whose}: {} stored row(s) failed verification and are quarantined: not shown, never served to peers, chained onto or exported (`custodia store check` lists them; a peer that holds the genuine entries sends them again)",
            rows.len()
        ));
    }
    rows
}

/// The rows as JSON: what each recorded and why it failed, never content.
/// `quarantined_at` is a time like every other (RFC 3339 UTC, with
/// `quarantined_at_ms`); null when the row could not be moved.
pub(crate) fn json(rows: &[Quarantined]) -> serde_json::Value {
    serde_json::json!(rows
        .iter()
        .map(|q| {
            let mut row = serde_json::json!({
                "position": q.pos,
                "entry": q.id.map(|i| i.to_hex()),
                "case": q.case.map(|c| c.to_hex()),
                "author": q.author.map(|a| a.to_hex()),
                "seq": q.seq,
                "reason": q.reason,
            });
            crate::output::json_time(&mut row, "quarantined_at", q.quarantined_at);
            row
        })
        .collect::<Vec<_>>())
}
