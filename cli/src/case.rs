//! `custodia case …`

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use custodia_node::local::{self, Local, LocalError};
use custodia_protocol::{CaseState, Conflict, Role, Tlp};

use crate::output::Out;

#[derive(Subcommand, Debug)]
pub(crate) enum CaseCommand {
    /// Open a new case; prints its id.
    ///
    /// Example: custodia --dir ./nbi case open --title "Operation Lantern" --reference NBI-2026-0042 --jurisdiction PH --tlp amber
    Open {
        /// A short title.
        #[arg(long)]
        title: String,
        /// Your agency's own case reference.
        #[arg(long)]
        reference: String,
        /// Leading jurisdiction (ISO 3166-1 alpha-2).
        #[arg(long)]
        jurisdiction: Option<String>,
        /// TLP 2.0 handling label: clear, green, amber, amber+strict (red is for single entries).
        #[arg(long, default_value = "amber", value_parser = parse_tlp)]
        tlp: Tlp,
    },
    /// List the cases in this node's store.
    ///
    /// Example: custodia --dir ./nbi case list
    List,
    /// Show a case: members, items and their holders, open transfers, conflicts, withheld positions.
    ///
    /// Example: custodia --dir ./nbi case show 5f3a9c
    Show {
        /// Case id (or a unique prefix of at least 6 hex characters, or its reference).
        case: String,
    },
    /// Share a case with an agency (a signed member-added entry).
    ///
    /// Example: custodia --dir ./nbi case share 5f3a9c --with bka --role investigator
    Share {
        /// Case id, prefix or reference.
        case: String,
        /// The agency: peer name, fingerprint or full key.
        #[arg(long)]
        with: String,
        /// Its role: lead, investigator, examiner, liaison, observer.
        #[arg(long, default_value = "investigator", value_parser = parse_role)]
        role: Role,
    },
    /// Remove an agency from a case (a signed member-removed entry).
    ///
    /// Example: custodia --dir ./nbi case unshare 5f3a9c --with bka --reason "left the task force"
    Unshare {
        /// Case id, prefix or reference.
        case: String,
        /// The agency: peer name, fingerprint or full key.
        #[arg(long)]
        with: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(crate) fn parse_tlp(s: &str) -> Result<Tlp, String> {
    Tlp::parse(s).ok_or_else(|| {
        format!("{s:?} is not a TLP 2.0 label: use clear, green, amber, amber+strict or red")
    })
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(&s.to_lowercase()).ok_or_else(|| {
        format!("{s:?} is not a role: use lead, investigator, examiner, liaison or observer")
    })
}

pub(crate) fn run(dir: &Path, cmd: CaseCommand, out: &Out) -> anyhow::Result<ExitCode> {
    let mut l = local::open(dir)?;
    match cmd {
        CaseCommand::Open {
            title,
            reference,
            jurisdiction,
            tlp,
        } => {
            if let Some(j) = &jurisdiction {
                if j.len() != 2 || !j.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(LocalError::Refused(format!(
                        "--jurisdiction {j:?} is not an ISO 3166-1 alpha-2 code (two capital letters)"
                    ))
                    .into());
                }
            }
            let e = l.open_case(&title, &reference, jurisdiction.as_deref(), tlp)?;
            out.record(
                &format!(
                    "Opened case {title} ({reference}), {tlp}\ncase id: {}",
                    e.id()
                ),
                serde_json::json!({"case": e.id().to_hex(), "title": title, "reference": reference, "tlp": tlp.as_str()}),
            );
        }
        CaseCommand::List => {
            let mut rows = Vec::new();
            let mut text = String::new();
            for c in l.store.cases().copied().collect::<Vec<_>>() {
                let Some(s) = l.store.state(&c) else { continue };
                let members = s.members.values().filter(|m| m.is_active()).count();
                text.push_str(&format!(
                    "{}  {:<28} {:<18} {} members, {} items, {} entries\n",
                    &c.to_hex()[..12],
                    s.title,
                    s.reference,
                    members,
                    s.items.len(),
                    s.entries
                ));
                rows.push(serde_json::json!({"case": c.to_hex(), "title": s.title, "reference": s.reference, "members": members, "items": s.items.len(), "entries": s.entries}));
            }
            if rows.is_empty() {
                text = "No cases yet. Open one with `custodia case open --title T --reference R`."
                    .into();
            }
            out.record(text.trim_end(), serde_json::json!(rows));
        }
        CaseCommand::Show { case } => {
            let c = l.resolve_case(&case)?;
            let Some(s) = l.store.state(&c).cloned() else {
                return Err(LocalError::NotFound(format!("no case {case:?}")).into());
            };
            let (text, json) = show(&l, &s);
            out.record(&text, json);
        }
        CaseCommand::Share { case, with, role } => {
            let c = l.resolve_case(&case)?;
            let who = l.resolve_agency(&with)?;
            let e = l.share(&c, &with, role)?;
            out.record(
                &format!(
                    "Shared case {} with {} ({}) as {}\nentry: {}",
                    &c.to_hex()[..12],
                    who.name,
                    who.agency.fingerprint(),
                    role.as_str(),
                    e.id()
                ),
                serde_json::json!({"case": c.to_hex(), "agency": who.agency.to_hex(), "role": role.as_str(), "entry": e.id().to_hex()}),
            );
        }
        CaseCommand::Unshare { case, with, reason } => {
            let c = l.resolve_case(&case)?;
            let who = l.resolve_agency(&with)?;
            let e = l.unshare(&c, &with, reason.as_deref())?;
            out.record(
                &format!(
                    "Removed {} ({}) from case {}\nentry: {}",
                    who.name,
                    who.agency.fingerprint(),
                    &c.to_hex()[..12],
                    e.id()
                ),
                serde_json::json!({"case": c.to_hex(), "agency": who.agency.to_hex(), "entry": e.id().to_hex()}),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text and JSON of `case show`.
pub(crate) fn show(l: &Local, s: &CaseState) -> (String, serde_json::Value) {
    let case = s.case.map(|c| c.to_hex()).unwrap_or_default();
    let mut t = format!(
        "Case {}  {}\nreference {}   jurisdiction {}   {}   {} entries\n",
        s.title,
        case,
        s.reference,
        s.jurisdiction.as_deref().unwrap_or("-"),
        s.tlp.map_or("-".into(), |t| t.to_string()),
        s.entries
    );
    t.push_str("\nMembers\n");
    let mut members = Vec::new();
    for m in s.members.values() {
        t.push_str(&format!(
            "  {:<30} {}  {:<12} {}{}\n",
            m.name,
            m.country,
            m.role.as_str(),
            m.agency.fingerprint(),
            if m.is_active() { "" } else { "  (removed)" }
        ));
        members.push(serde_json::json!({"agency": m.agency.to_hex(), "fingerprint": m.agency.fingerprint(), "name": m.name, "country": m.country, "role": m.role.as_str(), "active": m.is_active()}));
    }
    t.push_str("\nEvidence items\n");
    if s.items.is_empty() {
        t.push_str("  (none)\n");
    }
    let mut items = Vec::new();
    for i in s.items.values() {
        let holder = l.name_of(&i.holder);
        let status = if i.destroyed {
            "destroyed".to_string()
        } else if let Some(tr) = i.open_transfer.and_then(|t| s.open_transfers.get(&t)) {
            format!("in transit to {}", l.name_of(&tr.to))
        } else {
            format!("held by {holder}")
        };
        t.push_str(&format!(
            "  {}  {:<10} {:<40} {}{}\n      sha256 {}  {} bytes  {}\n",
            i.id.to_uuid_string(),
            i.exhibit.as_deref().unwrap_or("-"),
            i.description.as_deref().unwrap_or(""),
            status,
            if i.incomplete {
                "  (history partly withheld)"
            } else {
                ""
            },
            hex::encode(i.digests.sha256),
            i.size,
            i.media_type
        ));
        items.push(serde_json::json!({
            "item": i.id.to_uuid_string(), "exhibit": i.exhibit, "description": i.description,
            "sha256": hex::encode(i.digests.sha256), "sha1": i.digests.sha1.map(hex::encode),
            "md5": i.digests.md5.map(hex::encode), "size": i.size, "media_type": i.media_type,
            "holder": i.holder.to_hex(), "holder_name": holder, "destroyed": i.destroyed,
            "open_transfer": i.open_transfer.map(|t| t.to_hex()), "incomplete": i.incomplete,
            "events": i.events.len(),
        }));
    }
    let mut transfers = Vec::new();
    if !s.open_transfers.is_empty() {
        t.push_str("\nOpen transfers\n");
        for tr in s.open_transfers.values() {
            t.push_str(&format!(
                "  {}  item {}  {} -> {}\n",
                &tr.entry.to_hex()[..12],
                tr.item.to_uuid_string(),
                l.name_of(&tr.from),
                l.name_of(&tr.to)
            ));
            transfers.push(serde_json::json!({"transfer": tr.entry.to_hex(), "item": tr.item.to_uuid_string(), "from": tr.from.to_hex(), "to": tr.to.to_hex()}));
        }
    }
    let mut conflicts = Vec::new();
    if !s.conflicts.is_empty() {
        t.push_str("\nConflicts\n");
        for c in &s.conflicts {
            let line = match c {
                Conflict::Equivocation { author, seq, .. } => format!(
                    "equivocation: {} signed two different entries at sequence {seq}",
                    l.name_of(author)
                ),
                Conflict::DigestMismatch {
                    entry,
                    item,
                    author,
                } => format!(
                    "digest mismatch: {} observed a different digest for item {} (entry {})",
                    l.name_of(author),
                    item.to_uuid_string(),
                    &entry.to_hex()[..12]
                ),
                Conflict::DuplicateDigest { first, second, .. } => format!(
                    "same SHA-256 registered as two items: {} and {}",
                    first.to_uuid_string(),
                    second.to_uuid_string()
                ),
                Conflict::DuplicateRegistration { item, entry } => format!(
                    "item {} registered twice concurrently (entry {})",
                    item.to_uuid_string(),
                    &entry.to_hex()[..12]
                ),
                _ => format!("{c:?}"),
            };
            t.push_str(&format!("  {line}\n"));
            conflicts.push(serde_json::json!(line));
        }
    }
    let mut withheld = Vec::new();
    if !s.withheld.is_empty() {
        t.push_str("\nWithheld from this agency (TLP:RED, position and id only)\n");
        for w in &s.withheld {
            t.push_str(&format!(
                "  {} #{}  {}\n",
                l.name_of(&w.author),
                w.seq,
                w.id
            ));
            withheld.push(
                serde_json::json!({"author": w.author.to_hex(), "seq": w.seq, "id": w.id.to_hex()}),
            );
        }
    }
    let json = serde_json::json!({
        "case": case, "title": s.title, "reference": s.reference, "jurisdiction": s.jurisdiction,
        "tlp": s.tlp.map(|t| t.as_str()), "entries": s.entries, "members": members, "items": items,
        "open_transfers": transfers, "conflicts": conflicts, "withheld": withheld,
    });
    (t.trim_end().to_string(), json)
}
