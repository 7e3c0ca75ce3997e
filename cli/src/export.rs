//! `custodia export CASE --out FILE [--items ITEM...]`: a signed court
//! bundle (SPEC.md §10).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use custodia_protocol::bundle::{self, Bundle};

use crate::output::{iso_time, json_time, Out, JSON_SCHEMA_VERSION_2};
use crate::untrusted::safe;

/// Writes the bundle of a case (or of some of its items) to `file`.
pub(crate) fn run(
    dir: &Path,
    case: &str,
    file: &Path,
    items: &[String],
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let l = crate::passphrase::open(dir)?;
    let c = l.resolve_case(case)?;
    let quarantined = crate::quarantine::warn(&l, Some(&c), out);
    let bytes = l.export_bundle(&c, items)?;
    // Write to a temporary file beside the target, then rename: a bundle
    // is never left half written under its final name.
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("{}: cannot create a file there", parent.display()))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", file.display()))?;
    tmp.persist(file)
        .with_context(|| format!("writing {}", file.display()))?;
    let b = Bundle::decode(&bytes).context("reading back the bundle just written")?;
    // The positions the bundle discloses as [author, seq, id] only, listed
    // like `case show` lists those withheld from this agency.
    let withheld: Vec<serde_json::Value> = b
        .elements()
        .filter_map(|e| match e {
            bundle::Element::Withheld(w) => Some(
                serde_json::json!({"author": w.author.to_hex(), "seq": w.seq, "id": w.id.to_hex()}),
            ),
            bundle::Element::Entry(_) => None,
        })
        .collect();
    let s = l.store().state(&c);
    let title = s.map(|s| s.title.clone()).unwrap_or_default();
    let selective = b.items().map(|i| i.len());
    let mut doc = serde_json::json!({
        "case": c.to_hex(),
        "format": "custodia",
        "file": file,
        "bytes": bytes.len(),
        "positions": b.len(),
        "withheld": withheld,
        "proofs": b.proof_count(),
        "items": b.items().map(|i| i.iter().map(|x| x.to_uuid_string()).collect::<Vec<_>>()),
        "exporter": b.exporter().to_hex(),
        "quarantined": crate::quarantine::json(&quarantined),
    });
    json_time(&mut doc, "exported_at", Some(b.exported_at()));
    out.record_version(
        JSON_SCHEMA_VERSION_2,
        &format!(
            "Exported case {} ({}) to {}\n{} positions ({} disclosed, {} withheld){}, {} equivocation proof(s), {} bytes, signed by {} at {}\nVerify it anywhere with: custodia verify {}",
            safe(&title),
            c.short(),
            file.display(),
            b.len(),
            b.len() - withheld.len(),
            withheld.len(),
            selective.map_or_else(String::new, |n| format!(" for {n} item(s)")),
            b.proof_count(),
            bytes.len(),
            safe(&l.config().agency.name),
            iso_time(b.exported_at()),
            file.display()
        ),
        doc,
    );
    Ok(ExitCode::SUCCESS)
}
