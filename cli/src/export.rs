//! `custodia export CASE --out FILE [--items ITEM...]`: a signed court
//! bundle (SPEC.md §10).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use custodia_protocol::bundle::{self, Bundle};

use crate::output::{iso_time, Out};
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
    let withheld = b
        .elements()
        .filter(|e| matches!(e, bundle::Element::Withheld(_)))
        .count();
    let s = l.store().state(&c);
    let title = s.map(|s| s.title.clone()).unwrap_or_default();
    let selective = b.items().map(|i| i.len());
    out.record(
        &format!(
            "Exported case {} ({}) to {}\n{} positions ({} disclosed, {withheld} withheld){}, {} equivocation proof(s), {} bytes, signed by {} at {}\nVerify it anywhere with: custodia verify {}",
            safe(&title),
            c.short(),
            file.display(),
            b.len(),
            b.len() - withheld,
            selective.map_or_else(String::new, |n| format!(" for {n} item(s)")),
            b.proof_count(),
            bytes.len(),
            safe(&l.config().agency.name),
            iso_time(b.exported_at()),
            file.display()
        ),
        serde_json::json!({
            "case": c.to_hex(),
            "file": file,
            "bytes": bytes.len(),
            "positions": b.len(),
            "withheld": withheld,
            "proofs": b.proof_count(),
            "items": b.items().map(|i| i.iter().map(|x| x.to_uuid_string()).collect::<Vec<_>>()),
            "exported_at": b.exported_at(),
            "exporter": b.exporter().to_hex(),
            "quarantined": crate::quarantine::json(&quarantined),
        }),
    );
    Ok(ExitCode::SUCCESS)
}
