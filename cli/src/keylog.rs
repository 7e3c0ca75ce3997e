//! `custodia key start|certify-officer|revoke|log`: this agency's key log
//! (SPEC.md §3.4). The node signs each statement with the agency key, the
//! root in force; new keys are written as key files like the agency's.

use std::path::Path;

use custodia_node::{LocalError, Passphrase};
use custodia_protocol::keylog::{
    key_of, Certify, KeyRole, KeyStatement, Officer, PublicKey, Revoke, RevokeReason, Statement,
};
use custodia_protocol::utc::iso_millis;
use custodia_protocol::KeyId;

use crate::output::{json_time, Out, JSON_SCHEMA_VERSION_2};
use crate::passphrase;
use crate::untrusted::safe;

/// A revocation reason on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Reason {
    /// Taken out of service; never out of the holder's control.
    Retired,
    /// Lost: someone else may hold it.
    Lost,
    /// Known or suspected to be in someone else's hands.
    Compromised,
}

impl From<Reason> for RevokeReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Retired => RevokeReason::Retired,
            Reason::Lost => RevokeReason::Lost,
            Reason::Compromised => RevokeReason::Compromised,
        }
    }
}

/// The passphrase for a new key file: from the usual sources, or none
/// with `--no-passphrase`.
fn new_key_passphrase(path: &Path, no_passphrase: bool) -> anyhow::Result<Option<Passphrase>> {
    if no_passphrase {
        return Ok(None);
    }
    let pass = passphrase::source().new_passphrase(path)?.ok_or_else(|| {
        LocalError::Usage(format!(
            "no passphrase to encrypt the new key file {} with: set {}, pass --passphrase-fd N, run the command on a terminal, or give --no-passphrase",
            path.display(),
            passphrase::ENV
        ))
    })?;
    Ok(Some(pass))
}

/// `key start --next-key FILE`.
pub(crate) fn start(
    dir: &Path,
    next_key: &Path,
    no_passphrase: bool,
    out: &Out,
) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    if l.key_log()?.is_some() {
        return Err(LocalError::Refused(
            "this agency's key log is started already (`custodia key log` shows it)".into(),
        )
        .into());
    }
    let pass = new_key_passphrase(next_key, no_passphrase)?;
    let next = custodia_node::create_key_file_with(next_key, pass.as_ref())?;
    let log = match l.start_key_log(&next) {
        Ok(log) => log,
        Err(e) => {
            // Nothing refers to the new file: leave nothing behind.
            let _ = std::fs::remove_file(next_key);
            return Err(e.into());
        }
    };
    out.record(
        &format!(
            "Started the key log of {} ({}): the agency key is its root.\nThe next root key is in {}: move it offline now (a USB key in a safe). Only it can rotate the root, and it is how the agency takes its identity back if the agency key is stolen.",
            safe(&l.config().agency.name),
            l.me().fingerprint(),
            next_key.display()
        ),
        serde_json::json!({
            "agency": l.me().to_hex(),
            "statements": log.len(),
            "next_root_key_file": next_key,
        }),
    );
    Ok(())
}

/// `key certify-officer --name --number --out FILE`.
pub(crate) fn certify_officer(
    dir: &Path,
    name: &str,
    number: &str,
    key_out: &Path,
    no_passphrase: bool,
    out: &Out,
) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    if l.key_log()?.is_none() {
        return Err(LocalError::Refused(
            "this agency has no key log yet: start it with `custodia key start`".into(),
        )
        .into());
    }
    let pass = new_key_passphrase(key_out, no_passphrase)?;
    let officer = custodia_node::create_key_file_with(key_out, pass.as_ref())?;
    let st = Statement::Certify(Certify {
        key: PublicKey::ed25519(key_of(&officer)),
        role: KeyRole::Officer,
        officer: Some(Officer {
            name: name.to_owned(),
            number: number.to_owned(),
        }),
        not_before: custodia_node::now_ms(),
        not_after: None,
    });
    let s = match l.add_key_statement(st) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(key_out);
            return Err(e.into());
        }
    };
    out.record(
        &format!(
            "Certified officer {} ({}) with key {} (statement #{}).\nThe officer's key file is {}: hand it to the officer.",
            safe(name),
            safe(number),
            key_of(&officer),
            s.seq(),
            key_out.display()
        ),
        serde_json::json!({
            "key": key_of(&officer).to_hex(),
            "role": "officer",
            "officer": {"name": name, "number": number},
            "seq": s.seq(),
            "statement": s.id().to_hex(),
            "key_file": key_out,
        }),
    );
    Ok(())
}

/// `key revoke KEY --reason R`.
pub(crate) fn revoke(dir: &Path, key: KeyId, reason: Reason, out: &Out) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    let effective = custodia_node::now_ms();
    let s = l.add_key_statement(Statement::Revoke(Revoke {
        key,
        effective,
        reason: reason.into(),
    }))?;
    let reason = RevokeReason::from(reason).as_str();
    let mut doc = serde_json::json!({
        "key": key.to_hex(),
        "reason": reason,
        "seq": s.seq(),
        "statement": s.id().to_hex(),
    });
    json_time(&mut doc, "effective", Some(effective));
    out.record_version(
        JSON_SCHEMA_VERSION_2,
        &format!(
            "Revoked key {key} ({reason}) from {} (statement #{}).",
            iso_millis(effective),
            s.seq()
        ),
        doc,
    );
    Ok(())
}

/// One statement as a line of `key log`.
fn describe(s: &KeyStatement) -> (String, serde_json::Value) {
    let p = s.payload();
    let (text, mut json) = match &p.st {
        Statement::Inception(r) => (
            format!("inception: root {}", r.root.key),
            serde_json::json!({"root": r.root.key.to_hex(), "next": r.next.to_hex()}),
        ),
        Statement::RotateRoot(r) => (
            format!("rotate-root: root {}", r.root.key),
            serde_json::json!({"root": r.root.key.to_hex(), "next": r.next.to_hex()}),
        ),
        Statement::Certify(c) => {
            let who = c
                .officer
                .as_ref()
                .map(|o| format!(" {} ({})", safe(&o.name), safe(&o.number)))
                .unwrap_or_default();
            let mut json = serde_json::json!({
                "key": c.key.key.to_hex(),
                "role": c.role.as_str(),
                "officer": c.officer.as_ref().map(|o| serde_json::json!({"name": o.name, "number": o.number})),
            });
            json_time(&mut json, "not_before", Some(c.not_before));
            json_time(&mut json, "not_after", c.not_after);
            (
                format!("certify {}{who}: key {}", c.role.as_str(), c.key.key),
                json,
            )
        }
        Statement::Revoke(r) => {
            let mut json = serde_json::json!({
                "key": r.key.to_hex(),
                "reason": r.reason.as_str(),
            });
            json_time(&mut json, "effective", Some(r.effective));
            (
                format!(
                    "revoke {}: key {} from {}",
                    r.reason.as_str(),
                    r.key,
                    iso_millis(r.effective)
                ),
                json,
            )
        }
        Statement::Profile(pr) => (
            format!("profile: {} ({})", safe(&pr.name), safe(&pr.country)),
            serde_json::json!({"name": pr.name, "country": pr.country}),
        ),
        _ => (p.st.kind().to_owned(), serde_json::json!({})),
    };
    if let serde_json::Value::Object(m) = &mut json {
        m.insert("seq".into(), p.seq.into());
        m.insert("kind".into(), p.st.kind().into());
        m.insert("statement".into(), s.id().to_hex().into());
    }
    json_time(&mut json, "time", Some(p.time));
    (
        format!("#{:<3} {}  {text}", p.seq, iso_millis(p.time)),
        json,
    )
}

/// `key log`: every statement of this agency's key log, checked.
pub(crate) fn show(dir: &Path, out: &Out) -> anyhow::Result<()> {
    let l = passphrase::open(dir)?;
    let Some(log) = l.key_log()? else {
        out.record_version(
            JSON_SCHEMA_VERSION_2,
            "This agency has no key log yet: start it with `custodia key start --next-key FILE`.",
            serde_json::json!({"agency": l.me().to_hex(), "root": null, "unconfirmed": null, "statements": []}),
        );
        return Ok(());
    };
    let lines: Vec<(String, serde_json::Value)> = log.statements().iter().map(describe).collect();
    let unconfirmed = l.store().key_log_unconfirmed()?;
    let mut text = format!(
        "Key log of {} ({}): {} statements, root {}\n",
        safe(&l.config().agency.name),
        l.me().fingerprint(),
        log.len(),
        log.current_root()
    );
    if let Some(why) = &unconfirmed {
        text.push_str(&format!(
            "Waiting for confirmation ({}): this store may be older than the agency's log; compare it with your records, then `custodia key confirm`.\n",
            safe(why)
        ));
    }
    for (t, _) in &lines {
        text.push_str(t);
        text.push('\n');
    }
    out.record_version(
        JSON_SCHEMA_VERSION_2,
        text.trim_end(),
        serde_json::json!({
            "agency": l.me().to_hex(),
            "root": log.current_root().to_hex(),
            "unconfirmed": unconfirmed,
            "statements": lines.into_iter().map(|(_, j)| j).collect::<Vec<_>>(),
        }),
    );
    Ok(())
}

/// `key confirm`: the operator has compared the log with the records.
pub(crate) fn confirm(dir: &Path, out: &Out) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    let was = l.confirm_key_log()?;
    out.record(
        if was {
            "Key log confirmed: this node writes key statements again."
        } else {
            "The key log was not waiting for a confirmation."
        },
        serde_json::json!({"confirmed": was}),
    );
    Ok(())
}
