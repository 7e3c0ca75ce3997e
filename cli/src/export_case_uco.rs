//! `custodia export CASE --format case-uco --out FILE.jsonld`: the case's
//! chain of custody in the CASE/UCO ontology, as JSON-LD. The mapping is
//! `crate::case_uco`; this module resolves the arguments, writes
//! the file and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::case_uco;
use anyhow::Context;
use custodia_node::LocalError;
use custodia_node::StoreError;
use serde_json::Value;

use crate::output::{Out, JSON_SCHEMA_VERSION_2};

/// Exports case `case` of the node in `dir` to `path`; with `items`, only
/// those items (UUIDs or unique prefixes) and what happened to them.
pub(crate) fn run(
    dir: &Path,
    case: &str,
    path: &Path,
    items: &[String],
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let l = crate::passphrase::open(dir)?;
    let c = l.resolve_case(case)?;
    crate::quarantine::warn(&l, Some(&c), out);
    let state = l.store().state(&c).ok_or(StoreError::UnknownCase(c))?;
    let mut selected = BTreeSet::new();
    for what in items {
        let (in_case, item) = l.resolve_item(what)?;
        if in_case != c {
            return Err(LocalError::NotFound(format!(
                "item {what:?} is not in case {}",
                c.short()
            ))
            .into());
        }
        selected.insert(item.id);
    }
    let entries = l.store().entries(&c)?;
    let names: BTreeMap<_, _> = l
        .agencies()
        .into_iter()
        .map(|k| (k.agency, k.name))
        .collect();
    let doc = case_uco::graph(
        &entries,
        state,
        &names,
        (!selected.is_empty()).then_some(&selected),
    );
    write_atomically(path, &doc)?;

    let count = |ty: &str| {
        doc["@graph"]
            .as_array()
            .map_or(0, |g| g.iter().filter(|n| n["@type"] == ty).count())
    };
    let (files, actions, agencies) = (
        count("uco-observable:File"),
        count("case-investigation:InvestigativeAction"),
        count("uco-identity:Organization"),
    );
    // The same members as a bundle's export where they mean the same:
    // `file` the path written, `items` the selection (null: the whole
    // case); the counts of what the graph holds apart.
    let selection = (!selected.is_empty()).then(|| {
        selected
            .iter()
            .map(|i| i.to_uuid_string())
            .collect::<Vec<_>>()
    });
    out.record_version(
        JSON_SCHEMA_VERSION_2,
        &format!(
            "Wrote case {} in CASE/UCO (JSON-LD) to {}: {files} item(s), {actions} investigative action(s), {agencies} agencies.\nCheck it with the ontology's validator: case_validate {}",
            c.short(),
            path.display(),
            path.display()
        ),
        serde_json::json!({
            "case": c.to_hex(),
            "format": "case-uco",
            "file": path,
            "items": selection,
            "counts": {"items": files, "actions": actions, "agencies": agencies},
        }),
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the document next to `path` and renames it into place, so a
/// reader never sees half a file.
fn write_atomically(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut text = serde_json::to_string_pretty(doc).context("encoding the export")?;
    text.push('\n');
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("{}: cannot write there", parent.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
