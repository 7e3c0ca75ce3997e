//! `custodia evidence …`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use custodia_node::Wanted;
use custodia_node::{EvidenceInfo, Local};

use crate::output::{Out, EXIT_REFUSED};
use crate::progress::Progress;
use crate::untrusted::safe;

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum EvidenceCommand {
    /// Register evidence files in a case: their digests, size and media type are signed in; the files are read once, never changed.
    ///
    /// A directory registers each regular file under it (recursively, sorted by path).
    /// Either every file is registered, in one transaction, or none is.
    ///
    /// Example: custodia --dir ./nbi evidence add 5f3a9c ./seized/phone.img --exhibit EX-1 --description "Seized phone, full image" --also md5,sha1
    Add {
        /// Case id, prefix or reference.
        case: String,
        /// Files or directories to register.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Exhibit number (several files get N.1, N.2, …).
        #[arg(long)]
        exhibit: Option<String>,
        /// A description of the item.
        #[arg(long)]
        description: Option<String>,
        /// The legal authority: warrant, European Investigation Order, MLA request.
        #[arg(long)]
        authority: Option<String>,
        /// Optional digests besides SHA-256, from the same read: md5, sha1 or md5,sha1.
        #[arg(long, value_name = "LIST", value_parser = Wanted::parse)]
        also: Option<Wanted>,
        /// Who acquired it (default: this agency's name).
        #[arg(long, value_name = "NAME")]
        acquired_by: Option<String>,
        /// Where it was acquired.
        #[arg(long)]
        place: Option<String>,
        /// How it was acquired (e.g. seizure, logical extraction).
        #[arg(long)]
        method: Option<String>,
        /// With which tool and version.
        #[arg(long)]
        tool: Option<String>,
        /// Register a file even though the case already has an item with its
        /// SHA-256 (or another file of this registration has it), saying why.
        /// Without it such a file is refused (exit 1, naming the item). The
        /// reason is signed as a note about the new item; the case still
        /// lists the two items' shared digest as a conflict, and the note says why.
        #[arg(long, value_name = "REASON", value_parser = non_empty)]
        allow_duplicate: Option<String>,
        /// The item these files are copies of or were derived from (a UUID or
        /// a unique prefix of at least 6 hex characters), recorded as
        /// `derived-from`: an exact working copy shares its source's SHA-256
        /// without being a duplicate. Record the copying itself with
        /// `custody record SOURCE --action copied --copy NEW`.
        #[arg(long, value_name = "ITEM")]
        derived_from: Option<String>,
    },
    /// Re-hash a file and say whether it is the registered item (exit 1 if not); writes nothing.
    ///
    /// Record the outcome with `custodia custody record ITEM --action examined --digest-matched yes|no`.
    ///
    /// Example: custodia --dir ./nbi evidence check 1b4e28ba ./seized/phone.img
    Check {
        /// The item: its UUID (with or without dashes) or a unique prefix of at least 6 hex characters.
        item: String,
        /// The file to check.
        path: PathBuf,
    },
}

pub(crate) fn run(dir: &Path, cmd: EvidenceCommand, out: &Out) -> anyhow::Result<ExitCode> {
    let mut l = crate::passphrase::open(dir)?;
    crate::quarantine::warn(&l, None, out);
    match cmd {
        EvidenceCommand::Add {
            case,
            paths,
            exhibit,
            description,
            authority,
            also,
            acquired_by,
            place,
            method,
            tool,
            allow_duplicate,
            derived_from,
        } => {
            let c = l.resolve_case(&case)?;
            let derived_from = match derived_from {
                Some(d) => {
                    let (dc, item) = l.resolve_item(&d)?;
                    if dc != c {
                        return Err(custodia_node::LocalError::Refused(format!(
                            "item {d} is in another case; --derived-from names an item of this case"
                        ))
                        .into());
                    }
                    Some(item.id)
                }
                None => None,
            };
            let files = custodia_node::evidence_files(&paths)?;
            let info = EvidenceInfo {
                exhibit,
                description,
                authority,
                acquired_by,
                place,
                method,
                tool,
                also: also.unwrap_or_default(),
                allow_duplicate,
                derived_from,
            };
            let total = files.iter().map(|f| f.size).sum();
            let bar = Progress::bytes(total);
            let regs = l.register_evidence(&c, &files, &info, &mut |p, done| {
                bar.set(done, &p.file_name().unwrap_or_default().to_string_lossy());
            })?;
            bar.finish();
            let mut text = String::new();
            let mut rows = Vec::new();
            for r in &regs {
                let i = &r.item;
                let sha256 = hex::encode(i.digests.sha256);
                text.push_str(&format!(
                    "{}  {}  {}  {}\n",
                    i.item.to_uuid_string(),
                    safe(i.exhibit.as_deref().unwrap_or("-")),
                    sha256,
                    r.path.display()
                ));
                if let Some(d) = r.duplicate_of {
                    text.push_str(&format!(
                        "  same SHA-256 as item {}; the reason is signed as note {}\n",
                        d.to_uuid_string(),
                        r.note.as_ref().map_or("-".into(), |n| n.id().short())
                    ));
                }
                rows.push(serde_json::json!({
                    "item": i.item.to_uuid_string(), "case": c.to_hex(), "entry": r.entry.id().to_hex(),
                    "exhibit": i.exhibit, "sha256": sha256, "sha1": i.digests.sha1.map(hex::encode),
                    "md5": i.digests.md5.map(hex::encode), "size": i.size, "media_type": i.media_type,
                    "path": r.path,
                    "duplicate_of": r.duplicate_of.map(|d| d.to_uuid_string()),
                    "note": r.note.as_ref().map(|n| n.id().to_hex()),
                }));
            }
            out.record_list(text.trim_end(), "registered", rows);
        }
        EvidenceCommand::Check { item, path } => {
            let (_, registered) = l.resolve_item(&item)?;
            let bar = Progress::bytes(registered.size);
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let check = l.check_evidence(&item, &path, &mut |done| bar.set(done, &name))?;
            bar.finish();
            let i = &check.item;
            let label = safe(&Local::item_label(i)).into_owned();
            let pairs = [
                (
                    "sha256",
                    Some(hex::encode(i.digests.sha256)),
                    Some(hex::encode(check.digests.sha256)),
                ),
                (
                    "sha1",
                    i.digests.sha1.map(hex::encode),
                    check.digests.sha1.map(hex::encode),
                ),
                (
                    "md5",
                    i.digests.md5.map(hex::encode),
                    check.digests.md5.map(hex::encode),
                ),
            ];
            let mut text = if check.matches() {
                format!("MATCH: {} is item {label}\n", path.display())
            } else {
                format!("MISMATCH: {} is not item {label}\n", path.display())
            };
            for (name, reg, now) in &pairs {
                let (Some(reg), Some(now)) = (reg, now) else {
                    continue;
                };
                if reg == now {
                    text.push_str(&format!("  {name:<7} matches     {reg}\n"));
                } else {
                    text.push_str(&format!(
                        "  {name:<7} DIFFERS     registered {reg}\n                      file       {now}\n"
                    ));
                }
            }
            if check.size == i.size {
                text.push_str(&format!("  size    matches     {} bytes\n", i.size));
            } else {
                text.push_str(&format!(
                    "  size    DIFFERS     registered {} bytes, file {} bytes\n",
                    i.size, check.size
                ));
            }
            text.push_str(&format!(
                "Record it: custodia custody record {} --action examined --digest-matched {}",
                i.id.to_uuid_string(),
                if check.matches() { "yes" } else { "no" }
            ));
            out.record(
                &text,
                serde_json::json!({
                    "item": i.id.to_uuid_string(), "case": check.case.to_hex(), "path": path,
                    "matches": check.matches(), "differs": check.differs,
                    "registered": {"size": i.size, "sha256": pairs[0].1, "sha1": pairs[1].1, "md5": pairs[2].1},
                    "file": {"size": check.size, "sha256": pairs[0].2, "sha1": pairs[1].2, "md5": pairs[2].2},
                }),
            );
            if !check.matches() {
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A reason that says something.
pub(crate) fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("give a reason: it is kept with the record".into())
    } else {
        Ok(s.to_owned())
    }
}
