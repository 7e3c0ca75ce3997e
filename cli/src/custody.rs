//! `custodia custody …`

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use custodia_node::{CustodyInfo, CustodyWritten, Local};
use custodia_protocol::{Body, CustodyAction};

use crate::output::Out;
use crate::untrusted::safe;

#[derive(Subcommand, Debug)]
pub(crate) enum CustodyCommand {
    /// Transfer an item you hold to another member agency; it stays in transit until the addressee signs a receipt.
    ///
    /// Example: custodia --dir ./nbi custody transfer 1b4e28ba --to bka --purpose "forensic examination"
    Transfer {
        /// The item: its UUID (with or without dashes) or a unique prefix of at least 6 hex characters.
        item: String,
        /// The addressee: peer name, agency name, fingerprint or full key.
        #[arg(long)]
        to: String,
        /// Why.
        #[arg(long)]
        purpose: Option<String>,
        /// A note about the item, signed with the transfer.
        #[arg(long)]
        note: Option<String>,
        /// Who hands it over (a person).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
    },
    /// Sign the receipt of a transfer addressed to this agency: accept it (you become the holder) or --reject it.
    ///
    /// Example: custodia --dir ./bka custody receive 9c0ffe --note "seal intact on arrival"
    Receive {
        /// The transfer entry's id or a unique prefix of at least 6 hex characters, or the item's UUID when exactly one transfer of it is open to you.
        #[arg(value_name = "TRANSFER_OR_ITEM")]
        transfer: String,
        /// Refuse the transfer, giving the reason (the sender stays the holder).
        #[arg(long, value_name = "REASON")]
        reject: Option<String>,
        /// A note about the item, signed with the receipt.
        #[arg(long)]
        note: Option<String>,
        /// Who received it (a person).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Where.
        #[arg(long)]
        place: Option<String>,
    },
    /// Record a custody event on an item you hold: examined, sealed, unsealed, copied, returned, destroyed, acquired.
    ///
    /// Example: custodia --dir ./nbi custody record 1b4e28ba --action examined --digest-matched yes --tool "X-Ways 21.3" --actor "Insp. Reyes"
    Record {
        /// The item: its UUID (with or without dashes) or a unique prefix of at least 6 hex characters.
        item: String,
        /// What happened.
        #[arg(long, value_parser = parse_action)]
        action: CustodyAction,
        /// A note about the item, signed with the event.
        #[arg(long)]
        note: Option<String>,
        /// Where.
        #[arg(long)]
        place: Option<String>,
        /// With which tool.
        #[arg(long)]
        tool: Option<String>,
        /// Who did it (a person).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Whether the digest observed now matched the registered one (see `custodia evidence check`).
        #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
        digest_matched: Option<bool>,
        /// The new item a copy was registered as (--action copied).
        #[arg(long, value_name = "NEW_ITEM")]
        copy: Option<String>,
    },
}

fn parse_action(s: &str) -> Result<CustodyAction, String> {
    match CustodyAction::parse(&s.to_lowercase()) {
        Some(CustodyAction::Transferred) => {
            Err("a transfer is recorded with `custodia custody transfer`".into())
        }
        Some(CustodyAction::Received) => {
            Err("a receipt is recorded with `custodia custody receive`".into())
        }
        Some(a) => Ok(a),
        None => Err(format!(
            "{s:?} is not an action: use examined, sealed, unsealed, copied, returned, destroyed or acquired"
        )),
    }
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_lowercase().as_str() {
        "yes" | "true" | "y" => Ok(true),
        "no" | "false" | "n" => Ok(false),
        _ => Err(format!("{s:?}: use yes or no")),
    }
}

pub(crate) fn run(dir: &Path, cmd: CustodyCommand, out: &Out) -> anyhow::Result<ExitCode> {
    let mut l = crate::passphrase::open(dir)?;
    crate::quarantine::warn(&l, None, out);
    let (text, w) = match cmd {
        CustodyCommand::Transfer {
            item,
            to,
            purpose,
            note,
            actor,
        } => {
            let info = CustodyInfo {
                purpose,
                note,
                actor,
                ..CustodyInfo::default()
            };
            let w = l.transfer(&item, &to, &info)?;
            let to = match &w.entry.payload().body {
                Body::Custody(ev) => ev
                    .to
                    .map(|a| safe(&l.name_of(&a)).into_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let id = w.entry.id();
            (
                format!(
                    "Transferred item {} to {to}\ntransfer: {id}\nIt is in transit until {to} signs a receipt (`custodia custody receive {}` on their node).",
                    label(&l, &w),
                    id.short()
                ),
                w,
            )
        }
        CustodyCommand::Receive {
            transfer,
            reject,
            note,
            actor,
            place,
        } => {
            let info = CustodyInfo {
                note,
                actor,
                place,
                ..CustodyInfo::default()
            };
            let (case, t) = l.resolve_transfer(&transfer)?;
            let from = safe(&l.name_of(&t.from)).into_owned();
            let w = l.receive(&transfer, reject.as_deref(), &info)?;
            debug_assert_eq!(w.case, case);
            let text = match &reject {
                None => format!(
                    "Received item {} from {from} (accepted); this agency now holds it\nreceipt: {}",
                    label(&l, &w),
                    w.entry.id()
                ),
                Some(why) => format!(
                    "Rejected the transfer of item {} from {from}: {}; {from} remains the holder\nreceipt: {}",
                    label(&l, &w),
                    safe(why),
                    w.entry.id()
                ),
            };
            (text, w)
        }
        CustodyCommand::Record {
            item,
            action,
            note,
            place,
            tool,
            actor,
            digest_matched,
            copy,
        } => {
            let info = CustodyInfo {
                note,
                place,
                tool,
                actor,
                digest_matched,
                copy,
                ..CustodyInfo::default()
            };
            let w = l.record(&item, action, &info)?;
            (
                format!(
                    "Recorded {} of item {}\nentry: {}",
                    action.as_str(),
                    label(&l, &w),
                    w.entry.id()
                ),
                w,
            )
        }
    };
    let (action, to, transfer, accepted) = match &w.entry.payload().body {
        // "transfer" is the transfer a receipt answers, or the transfer
        // entry itself, so a script can pass it on to `custody receive`.
        Body::Custody(ev) => (
            ev.action.as_str(),
            ev.to.map(|a| a.to_hex()),
            match ev.action {
                CustodyAction::Transferred => Some(w.entry.id().to_hex()),
                _ => ev.transfer.map(|t| t.to_hex()),
            },
            ev.accepted,
        ),
        _ => ("", None, None, None),
    };
    out.record(
        &text,
        serde_json::json!({
            "case": w.case.to_hex(), "item": w.item.to_uuid_string(), "entry": w.entry.id().to_hex(),
            "action": action, "to": to, "transfer": transfer, "accepted": accepted,
            "note": w.note.as_ref().map(|n| n.id().to_hex()),
        }),
    );
    Ok(ExitCode::SUCCESS)
}

fn label(l: &Local, w: &CustodyWritten) -> String {
    l.store()
        .state(&w.case)
        .and_then(|s| s.items.get(&w.item))
        .map_or_else(
            || w.item.to_uuid_string(),
            |i| safe(&Local::item_label(i)).into_owned(),
        )
}
