//! `custodia case …`

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use std::collections::HashMap;

use custodia_node::Quarantined;
use custodia_node::{Local, LocalError, TimelineRow};
use custodia_protocol::{
    AgencyId, Body, CaseId, CaseState, Conflict, CustodyAction, Entry, EntryId, ItemId, Role, Tlp,
};

use crate::output::{iso_time, Out, JSON_SCHEMA_VERSION_2};
use crate::untrusted::safe;

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
        #[arg(long, value_parser = crate::country_code)]
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
    /// The case's timeline, oldest first: time, author, kind and what each entry says.
    ///
    /// Entries are in causal order (each after everything it references); times are each author's own clock.
    ///
    /// Example: custodia --dir ./nbi case log 5f3a9c
    Log {
        /// Case id (or a unique prefix of at least 6 hex characters, or its reference).
        case: String,
    },
    /// Share a case with an agency (a signed member-added entry).
    ///
    /// Example: custodia --dir ./nbi case share 5f3a9c --with bka --role investigator
    Share {
        /// Case id, prefix or reference.
        case: String,
        /// The agency: peer name, agency name, fingerprint or full key.
        #[arg(long)]
        with: String,
        /// Its role: lead, investigator, examiner, liaison, observer.
        #[arg(long, default_value = "investigator", value_parser = parse_role)]
        role: Role,
        /// The agency's name as the case records it (default: the name this node knows).
        #[arg(long)]
        name: Option<String>,
        /// The agency's country as the case records it (ISO 3166-1 alpha-2).
        #[arg(long, value_parser = crate::country_code)]
        country: Option<String>,
    },
    /// Remove an agency from a case (a signed member-removed entry).
    ///
    /// Example: custodia --dir ./nbi case unshare 5f3a9c --with bka --reason "left the task force"
    Unshare {
        /// Case id, prefix or reference.
        case: String,
        /// The agency: peer name, agency name, fingerprint or full key.
        #[arg(long)]
        with: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release a case's hold without a peer's confirmation: only for a case
    /// no other agency holds (no peer can confirm it). The reason is logged
    /// with the release. While a case is on hold this node writes nothing
    /// in it (`custodia status` says why).
    ///
    /// Example: custodia --dir ./nbi case release-hold 5f3a9c --reason "restored after a disk failure; the case was never shared"
    ReleaseHold {
        /// Case id, prefix or reference.
        case: String,
        /// Why it is safe: logged with the release.
        #[arg(long, value_parser = crate::evidence::non_empty)]
        reason: String,
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
    let mut l = crate::passphrase::open(dir)?;
    match cmd {
        CaseCommand::Open {
            title,
            reference,
            jurisdiction,
            tlp,
        } => {
            let e = l.open_case(&title, &reference, jurisdiction.as_deref(), tlp)?;
            out.record(
                &format!(
                    "Opened case {} ({}), {tlp}\ncase id: {}",
                    safe(&title),
                    safe(&reference),
                    e.id()
                ),
                serde_json::json!({"case": e.id().to_hex(), "title": title, "reference": reference, "jurisdiction": jurisdiction, "tlp": tlp.as_str()}),
            );
        }
        CaseCommand::List => {
            let quarantined = crate::quarantine::warn(&l, None, out);
            let mut rows = Vec::new();
            let mut text = String::new();
            for c in l.store().cases().copied().collect::<Vec<_>>() {
                let Some(s) = l.store().state(&c) else {
                    continue;
                };
                let members = s.members.values().filter(|m| m.is_active()).count();
                let held: Vec<Quarantined> = quarantined
                    .iter()
                    .filter(|q| q.case.is_none_or(|qc| qc == c))
                    .cloned()
                    .collect();
                text.push_str(&format!(
                    "{}  {:<28} {:<18} {} members, {} items, {} entries\n",
                    c.short(),
                    safe(&s.title),
                    safe(&s.reference),
                    members,
                    s.items.len(),
                    s.entries
                ));
                if !held.is_empty() {
                    text.truncate(text.trim_end().len());
                    text.push_str(&format!(", {} quarantined\n", held.len()));
                }
                // `quarantined`: the rows themselves, as `case show` gives them.
                rows.push(serde_json::json!({"case": c.to_hex(), "title": s.title, "reference": s.reference, "members": members, "items": s.items.len(), "entries": s.entries, "quarantined": crate::quarantine::json(&held)}));
            }
            if rows.is_empty() {
                text = "No cases yet. Open one with `custodia case open --title T --reference R`."
                    .into();
            }
            let mut doc = serde_json::Map::new();
            doc.insert("cases".into(), rows.into());
            out.record_version(JSON_SCHEMA_VERSION_2, text.trim_end(), doc.into());
        }
        CaseCommand::Show { case } => {
            let c = l.resolve_case(&case)?;
            crate::quarantine::warn(&l, Some(&c), out);
            let Some(s) = l.store().state(&c).cloned() else {
                return Err(LocalError::NotFound(format!("no case {case:?}")).into());
            };
            let (text, json) = show(&l, &s)?;
            out.record_version(JSON_SCHEMA_VERSION_2, &text, json);
        }
        CaseCommand::Log { case } => {
            let c = l.resolve_case(&case)?;
            crate::quarantine::warn(&l, Some(&c), out);
            let (text, json) = log(&l, &c)?;
            out.record(&text, json);
        }
        CaseCommand::Share {
            case,
            with,
            role,
            name,
            country,
        } => {
            let c = l.resolve_case(&case)?;
            crate::quarantine::warn(&l, Some(&c), out);
            let mut who = l.resolve_agency(&with)?;
            if let Some(n) = name {
                who.name = n;
            }
            if let Some(cc) = country {
                who.country = cc;
            }
            let e = l.share_agency(&c, &who, role)?;
            let source = if who.signed {
                "the name the agency signed in its key log"
            } else {
                "the agency has not signed its name to this node yet (its key log arrives once the nodes have synced): the name recorded is the one given here"
            };
            out.record(
                &format!(
                    "Shared case {} with {} ({}) as {}\nname: {}\nentry: {}",
                    c.short(),
                    safe(&who.name),
                    who.agency.fingerprint(),
                    role.as_str(),
                    source,
                    e.id()
                ),
                serde_json::json!({"case": c.to_hex(), "agency": who.agency.to_hex(), "role": role.as_str(), "entry": e.id().to_hex(),
                    "name": who.name, "country": who.country, "signed": who.signed}),
            );
        }
        CaseCommand::ReleaseHold { case, reason } => {
            let c = l.resolve_case(&case)?;
            let released = l.release_hold(&c, &format!("by the operator: {reason}"))?;
            if !released {
                return Err(
                    LocalError::NotFound(format!("case {} is not on hold", c.short())).into(),
                );
            }
            out.record(
                &format!("Hold on case {} released (logged: {}). This node writes in it again; if another agency holds later entries of this agency in the case, the next write is an equivocation.", c.short(), safe(&reason)),
                serde_json::json!({"case": c.to_hex(), "released": true, "reason": reason}),
            );
        }
        CaseCommand::Unshare { case, with, reason } => {
            let c = l.resolve_case(&case)?;
            crate::quarantine::warn(&l, Some(&c), out);
            let who = l.resolve_agency(&with)?;
            let e = l.unshare(&c, &with, reason.as_deref())?;
            out.record(
                &format!(
                    "Removed {} ({}) from case {}\nentry: {}",
                    safe(&who.name),
                    who.agency.fingerprint(),
                    c.short(),
                    e.id()
                ),
                serde_json::json!({"case": c.to_hex(), "agency": who.agency.to_hex(), "entry": e.id().to_hex()}),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text and JSON of `case show`.
pub(crate) fn show(l: &Local, s: &CaseState) -> Result<(String, serde_json::Value), LocalError> {
    let case = s.case.map(|c| c.to_hex()).unwrap_or_default();
    let mut t = format!(
        "Case {}  {}\nreference {}   jurisdiction {}   {}   {} entries\n",
        safe(&s.title),
        case,
        safe(&s.reference),
        safe(s.jurisdiction.as_deref().unwrap_or("-")),
        s.tlp.map_or("-".into(), |t| t.to_string()),
        s.entries
    );
    // This node's own standing in the case first (SPEC.md §9.14).
    let hold = s
        .case
        .and_then(|c| l.store().holds(Some(&c)).ok())
        .and_then(|mut h| h.pop());
    let equivocated = s
        .case
        .and_then(|c| l.store().self_equivocation(&l.me(), &c));
    if let Some(seq) = equivocated {
        t.push_str(&format!(
            "\n!! THIS AGENCY HAS EQUIVOCATED: it signed two different entries as #{seq} of its history here (a copied key or node folder, or a restored store written in). Every court bundle shows it. This node writes nothing more in the case until people decide how the record goes on.\n"
        ));
    }
    if let Some(h) = &hold {
        t.push_str(&format!(
            "\n!! ON HOLD since {}: {}. This node writes nothing in the case until it is resolved; see `custodia status`.\n",
            iso_time(h.since),
            h.reason
        ));
    }
    t.push_str("\nMembers\n");
    let mut members = Vec::new();
    for m in s.members.values() {
        // Where the agency's own signed name differs from the one the
        // record holds, both are shown.
        let signed = l
            .signed_profile(&m.agency)
            .filter(|p| p.name != m.name || p.country != m.country);
        t.push_str(&format!(
            "  {:<30} {}  {:<12} {}{}{}\n",
            safe(&m.name),
            safe(&m.country),
            m.role.as_str(),
            m.agency.fingerprint(),
            if m.is_active() { "" } else { "  (removed)" },
            signed
                .as_ref()
                .map(|p| format!("  (signs as {} ({}))", safe(&p.name), safe(&p.country)))
                .unwrap_or_default()
        ));
        members.push(serde_json::json!({"agency": m.agency.to_hex(), "fingerprint": m.agency.fingerprint(), "name": m.name, "country": m.country, "role": m.role.as_str(), "active": m.is_active(),
            "signed_name": signed.as_ref().map(|p| &p.name), "signed_country": signed.as_ref().map(|p| &p.country)}));
    }
    // Entries a removed agency wrote without knowing of its removal
    // (SPEC.md §11.1, §17.2): valid, but never to be read as a member's.
    let late = match s.case {
        Some(c) => l.after_removal(&c)?,
        None => Vec::new(),
    };
    let mut after_removal = Vec::new();
    if !late.is_empty() {
        t.push_str(&format!(
            "\nWritten after removal, without knowing of it ({})\n",
            late.len()
        ));
        for x in &late {
            t.push_str(&format!(
                "  {}  entry {}  concurrent with its removal by entry {}\n",
                l.name_of(&x.agency),
                x.entry.short(),
                x.removal.short()
            ));
            after_removal.push(serde_json::json!({"agency": x.agency.to_hex(), "entry": x.entry.to_hex(), "removal": x.removal.to_hex()}));
        }
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
            format!("in transit to {}", safe(&l.name_of(&tr.to)))
        } else {
            format!("held by {}", safe(&holder))
        };
        t.push_str(&format!(
            "  {}  {:<10} {:<40} {}{}\n      sha256 {}  {} bytes  {}\n",
            i.id.to_uuid_string(),
            safe(i.exhibit.as_deref().unwrap_or("-")),
            safe(i.description.as_deref().unwrap_or("")),
            status,
            if i.incomplete {
                "  (history partly withheld)"
            } else {
                ""
            },
            hex::encode(i.digests.sha256),
            i.size,
            safe(&i.media_type)
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
                "  {}  item {}  {} -> {}, sent {} (the sender's clock)\n",
                tr.entry.short(),
                tr.item.to_uuid_string(),
                safe(&l.name_of(&tr.from)),
                safe(&l.name_of(&tr.to)),
                iso_time(tr.time)
            ));
            transfers.push(serde_json::json!({"transfer": tr.entry.to_hex(), "item": tr.item.to_uuid_string(), "from": tr.from.to_hex(), "to": tr.to.to_hex(), "sent": iso_time(tr.time)}));
        }
    }
    let mut conflicts = Vec::new();
    if !s.conflicts.is_empty() {
        t.push_str("\nConflicts\n");
        for c in &s.conflicts {
            // Each conflict as the verification report gives it: its kind,
            // who and what it is about, and the sentence.
            let (kind, author, item, entry, line) = match c {
                Conflict::Equivocation { author, seq, .. } => (
                    "equivocation",
                    Some(author),
                    None,
                    None,
                    format!(
                        "equivocation: {} signed two different entries at sequence {seq}",
                        safe(&l.name_of(author))
                    ),
                ),
                Conflict::DigestMismatch {
                    entry,
                    item,
                    author,
                } => (
                    "digest-mismatch",
                    Some(author),
                    Some(item),
                    Some(entry),
                    format!(
                        "digest mismatch: {} observed a different digest for item {} (entry {})",
                        safe(&l.name_of(author)),
                        item.to_uuid_string(),
                        entry.short()
                    ),
                ),
                Conflict::DuplicateDigest {
                    first,
                    second,
                    entry,
                } => (
                    "duplicate-digest",
                    None,
                    Some(second),
                    Some(entry),
                    format!(
                        "same SHA-256 registered as two items: {} and {}",
                        first.to_uuid_string(),
                        second.to_uuid_string()
                    ),
                ),
                Conflict::DuplicateRegistration { item, entry } => (
                    "duplicate-registration",
                    None,
                    Some(item),
                    Some(entry),
                    format!(
                        "item {} registered twice concurrently (entry {})",
                        item.to_uuid_string(),
                        entry.short()
                    ),
                ),
                _ => ("other", None, None, None, format!("{c:?}")),
            };
            t.push_str(&format!("  {line}\n"));
            conflicts.push(serde_json::json!({
                "kind": kind, "author": author.map(|a| a.to_hex()),
                "item": item.map(|i| i.to_uuid_string()), "entry": entry.map(|e| e.to_hex()),
                "sentence": line,
            }));
        }
    }
    let mut withheld = Vec::new();
    if !s.withheld.is_empty() {
        t.push_str("\nWithheld from this agency (TLP:RED, position and id only)\n");
        for w in &s.withheld {
            t.push_str(&format!(
                "  {} #{}  {}\n",
                safe(&l.name_of(&w.author)),
                w.seq,
                w.id
            ));
            withheld.push(
                serde_json::json!({"author": w.author.to_hex(), "seq": w.seq, "id": w.id.to_hex()}),
            );
        }
    }
    let mut proofs = Vec::new();
    let stored = s
        .case
        .and_then(|c| l.store().proofs(&c).ok())
        .unwrap_or_default();
    if !stored.is_empty() {
        t.push_str("\nEquivocation proofs (two entries one author signed for one position)\n");
    }
    for p in &stored {
        let Ok(eq) = p.check() else { continue };
        let (first, second) = (EntryId::of(&p.0), EntryId::of(&p.1));
        t.push_str(&format!(
            "  {} signed two different entries at sequence {}: {} and {}\n",
            l.name_of(&eq.author),
            eq.seq,
            first.short(),
            second.short()
        ));
        proofs.push(serde_json::json!({"author": eq.author.to_hex(), "author_name": l.name_of(&eq.author), "seq": eq.seq, "first": first.to_hex(), "second": second.to_hex()}));
    }
    let quarantined: Vec<Quarantined> = s
        .case
        .and_then(|c| l.store().quarantined(Some(&c)).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|q| !q.recovered)
        .collect();
    if !quarantined.is_empty() {
        t.push_str("\nQuarantined (failed verification in this store; not shown, never served or exported)\n");
        for q in &quarantined {
            t.push_str(&format!("  {}\n", quarantined_line(l, q)));
        }
    }
    let json = serde_json::json!({
        "case": case, "title": s.title, "reference": s.reference, "jurisdiction": s.jurisdiction,
        "tlp": s.tlp.map(|t| t.as_str()), "entries": s.entries, "members": members, "items": items,
        "open_transfers": transfers, "conflicts": conflicts, "withheld": withheld,
        "after_removal": after_removal,
        "equivocated_at": equivocated,
        "hold": hold.map(|h| serde_json::json!({"reason": h.reason, "since": iso_time(h.since), "behind": h.behind, "peer": h.peer.map(|p| p.to_hex())})),
        "equivocation_proofs": proofs, "quarantined": crate::quarantine::json(&quarantined),
    });
    Ok((t.trim_end().to_string(), json))
}

/// The text and JSON of `case log`: one line (one object) per position,
/// in store order, which is causal order.
pub(crate) fn log(l: &Local, case: &CaseId) -> Result<(String, serde_json::Value), LocalError> {
    let s = l
        .store()
        .state(case)
        .ok_or_else(|| LocalError::NotFound(format!("no case {case}")))?;
    let rows = l.timeline(case)?;
    let late: std::collections::HashSet<custodia_protocol::EntryId> = l
        .after_removal(case)?
        .into_iter()
        .map(|x| x.entry)
        .collect();
    let known: HashMap<AgencyId, String> = l
        .agencies()
        .into_iter()
        .map(|k| (k.agency, k.name))
        .collect();
    let name = |a: &AgencyId| -> String {
        s.agency_name(a)
            .map(str::to_owned)
            .or_else(|| known.get(a).cloned())
            .unwrap_or_else(|| a.fingerprint())
    };
    // Who signed: the agency, and for an entry of format version 2 the
    // officer (or node key) its key log certifies.
    let who_signed = |e: &custodia_protocol::Entry| -> (String, serde_json::Value) {
        let agency = name(&e.author());
        match l.signer_of(e) {
            Some((key, c)) => {
                let who = crate::keylog::signed_by(&agency, &key, c.officer.as_ref());
                let officer = c
                    .officer
                    .as_ref()
                    .map(|o| serde_json::json!({"name": o.name, "number": o.number}));
                (
                    who,
                    serde_json::json!({"key": key.to_hex(), "role": c.role.as_str(), "officer": officer}),
                )
            }
            None => (agency, serde_json::Value::Null),
        }
    };
    let width = rows
        .iter()
        .map(|r| match r {
            TimelineRow::Entry(e) => safe(&who_signed(e).0).chars().count(),
            TimelineRow::Withheld(_) | TimelineRow::Quarantined(_) => 0,
        })
        .max()
        .unwrap_or(0)
        .min(36);
    let mut text = String::new();
    let mut json = Vec::new();
    for row in rows {
        match row {
            TimelineRow::Entry(e) => {
                let p = e.payload();
                let who = name(&p.author);
                let (signed_by, signer) = who_signed(&e);
                let kind = p.body.kind();
                let mut summary = summarize(&e, s, &name);
                let (tlp, to) = s.effective_tlp(&e);
                if Some(tlp) != s.tlp {
                    summary.push_str(&format!("  [{tlp}"));
                    if let Some(to) = &to {
                        let names: Vec<String> = to.iter().map(&name).collect();
                        summary.push_str(&format!(" to {}", names.join(", ")));
                    }
                    summary.push(']');
                }
                let retracted = s.retracted.get(&e.id()).map(|(_, why)| why.clone());
                if let Some(why) = &retracted {
                    summary.push_str(&format!("  (retracted: {why})"));
                }
                let after_removal = late.contains(&e.id());
                if after_removal {
                    summary
                        .push_str("  (written after its author's removal, without knowing of it)");
                }
                // The summary quotes the entry's own text: one line, inert.
                text.push_str(&format!(
                    "{}  {:<width$}  {kind:<19}  {}\n",
                    iso_time(p.time),
                    safe(&signed_by),
                    safe(&summary)
                ));
                json.push(serde_json::json!({
                    "entry": e.id().to_hex(), "author": p.author.to_hex(), "author_name": who,
                    "signer": signer,
                    "seq": p.seq, "time": iso_time(p.time), "time_ms": p.time, "kind": kind,
                    "summary": summary, "tlp": tlp.as_str(), "retracted": retracted, "withheld": false,
                    "after_removal": after_removal,
                    "quarantined": false, "position": null, "reason": null,
                }));
            }
            TimelineRow::Withheld(w) => {
                let who = name(&w.author);
                let summary = format!("withheld (TLP:RED) by {who} #{}", w.seq);
                text.push_str(&format!(
                    "{:<20}  {}  entry {}\n",
                    "(time not shown)",
                    safe(&summary),
                    w.id.short()
                ));
                json.push(serde_json::json!({
                    "entry": w.id.to_hex(), "author": w.author.to_hex(), "author_name": who,
                    "signer": null,
                    "seq": w.seq, "time": null, "time_ms": null, "kind": null,
                    "summary": summary, "tlp": "RED", "retracted": null, "withheld": true,
                    "after_removal": false, "quarantined": false, "position": null, "reason": null,
                }));
            }
            TimelineRow::Quarantined(q) => {
                let line = quarantined_line(l, &q);
                text.push_str(&format!("{:<20}  {line}\n", "(quarantined)"));
                json.push(serde_json::json!({
                    "entry": q.id.map(|i| i.to_hex()), "author": q.author.map(|a| a.to_hex()),
                    "author_name": q.author.as_ref().map(&name), "signer": null, "seq": q.seq, "time": null,
                    "time_ms": null, "kind": null, "summary": line, "tlp": null, "retracted": null,
                    "withheld": false, "after_removal": false, "quarantined": true,
                    "position": q.pos, "reason": q.reason,
                }));
            }
        }
    }
    if text.is_empty() {
        text.push_str("(no entries)");
    }
    // This node's own standing first (SPEC.md §9.14); `case show --json`
    // carries it as data.
    let mut head = String::new();
    if let Some(seq) = l.store().self_equivocation(&l.me(), case) {
        head.push_str(&format!("!! THIS AGENCY HAS EQUIVOCATED: it signed two different entries as #{seq} of its history here; this node writes nothing more in the case until people decide (see `custodia case show`).\n"));
    }
    if let Some(h) = l.store().holds(Some(case)).ok().and_then(|mut h| h.pop()) {
        head.push_str(&format!(
            "!! ON HOLD: {}; this node writes nothing in the case until it is resolved (see `custodia status`).\n",
            h.reason
        ));
    }
    Ok((
        format!("{head}{}", text.trim_end()),
        serde_json::json!({"case": case.to_hex(), "entries": json}),
    ))
}

/// One quarantined row for people: what the row recorded and why it
/// failed verification.
fn quarantined_line(l: &Local, q: &Quarantined) -> String {
    format!(
        "position {}: entry {} by {} #{}: {}",
        q.pos,
        q.id.map_or_else(|| "?".to_owned(), |i| i.short()),
        q.author.map_or_else(|| "?".to_owned(), |a| l.name_of(&a)),
        q.seq.map_or_else(|| "?".to_owned(), |s| s.to_string()),
        q.reason
    )
}

/// A person-readable summary of what an entry says.
fn summarize(e: &Entry, s: &CaseState, name: &dyn Fn(&AgencyId) -> String) -> String {
    let item = |id: &ItemId| -> String {
        let uuid = id.to_uuid_string();
        match s.items.get(id).and_then(|i| i.exhibit.as_deref()) {
            Some(x) => format!("{x} ({})", &uuid[..8]),
            None => uuid[..8].to_owned(),
        }
    };
    match &e.payload().body {
        Body::CaseOpened(c) => format!(
            "opened case \u{2018}{}\u{2019} ({}{})",
            c.title,
            c.reference,
            c.jurisdiction
                .as_deref()
                .map(|j| format!(", jurisdiction {j}"))
                .unwrap_or_default()
        ),
        Body::MemberAdded(m) => format!("added {} ({}) as {}", m.name, m.country, m.role.as_str()),
        Body::MemberRemoved(m) => format!(
            "removed {}{}",
            name(&m.agency),
            m.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        Body::EvidenceRegistered(r) => {
            let mut t = format!("registered {}", r.exhibit.as_deref().unwrap_or("an item"));
            if let Some(d) = &r.description {
                t.push_str(&format!(" \u{2018}{d}\u{2019}"));
            }
            t.push_str(&format!(
                " sha256 {}\u{2026} {} bytes {}, item {}",
                &hex::encode(r.digests.sha256)[..12],
                r.size,
                r.media_type,
                &r.item.to_uuid_string()[..8]
            ));
            if let Some(from) = &r.derived_from {
                t.push_str(&format!(", derived from {}", item(from)));
            }
            t
        }
        Body::Custody(ev) => {
            let mut t = match ev.action {
                CustodyAction::Transferred => format!(
                    "transferred item {} to {}",
                    item(&ev.item),
                    ev.to.as_ref().map(name).unwrap_or_default()
                ),
                CustodyAction::Received => format!(
                    "received transfer {} of item {} ({})",
                    ev.transfer.map(|t| t.short()).unwrap_or_default(),
                    item(&ev.item),
                    match (ev.accepted, &ev.reason) {
                        (Some(true), _) => "accepted".to_owned(),
                        (_, Some(r)) => format!("rejected: {r}"),
                        _ => "rejected".to_owned(),
                    }
                ),
                CustodyAction::Copied => format!(
                    "copied item {} to new item {}",
                    item(&ev.item),
                    ev.copy.as_ref().map(item).unwrap_or_default()
                ),
                a => format!("{} item {}", a.as_str(), item(&ev.item)),
            };
            match ev.digest_matched {
                Some(true) => t.push_str(", digest matched"),
                Some(false) => t.push_str(", DIGEST DID NOT MATCH"),
                None => {}
            }
            if let Some(p) = &ev.purpose {
                t.push_str(&format!(", purpose: {p}"));
            }
            if let Some(a) = &ev.actor {
                t.push_str(&format!(", by {a}"));
            }
            if let Some(x) = &ev.tool {
                t.push_str(&format!(", with {x}"));
            }
            if let Some(x) = &ev.place {
                t.push_str(&format!(", at {x}"));
            }
            if ev.action != CustodyAction::Received {
                if let Some(r) = &ev.reason {
                    t.push_str(&format!(", reason: {r}"));
                }
            }
            t
        }
        Body::Witness(w) => {
            let heads: Vec<String> = w
                .heads
                .iter()
                .map(|h| format!("{} #{}", name(&h.0), h.1))
                .collect();
            format!("countersigned the chains of {}", heads.join(", "))
        }
        Body::Note(n) => match &n.item {
            Some(i) => format!("note on item {}: {}", item(i), n.text),
            None => format!("note: {}", n.text),
        },
        Body::HandlingChanged(h) => format!(
            "changed the handling of entry {} to {}",
            h.entry.short(),
            h.tlp
        ),
        Body::Retracted(r) => format!("retracted entry {}: {}", r.entry.short(), r.reason),
        _ => e.payload().body.kind().to_owned(),
    }
}
