//! `custodia key start|rotate-root|certify-officer|revoke|list|log`: this
//! agency's key log (SPEC.md §3.4). Each statement is signed by the root
//! in force: the agency key until the first rotation, then the root given
//! with `--root` (a key file or a key in a token). New keys are written as
//! key files like the agency's, or generated in a token.

use std::path::Path;

use custodia_node::{LocalError, Passphrase};
use custodia_protocol::keylog::{
    key_of, Certify, KeyRole, KeyStatement, Officer, PublicKey, Revoke, RevokeReason, Statement,
};
use custodia_protocol::utc::iso_millis;
use custodia_protocol::KeyId;

use crate::output::{json_time, Out, JSON_SCHEMA_VERSION_2};
use crate::passphrase;
use crate::token::{KeyRef, NewKey, Signer, Tokens};
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

/// Who signed an entry of format version 2, as reports and logs name it
/// (raw: the caller makes it safe for its output): the agency's name, then
/// the officer (name and service number) or the node key.
pub(crate) fn signed_by(agency: &str, key: &KeyId, officer: Option<&Officer>) -> String {
    match officer {
        Some(o) => format!("{agency}, officer {} ({})", o.name, o.number),
        None => format!("{agency}, node key {}", &key.to_hex()[..16]),
    }
}

/// The passphrase for a new key file: from the usual sources, or none
/// with `--no-passphrase` (or for a key in a token, which its PIN guards).
fn new_key_passphrase(key: &KeyRef, no_passphrase: bool) -> anyhow::Result<Option<Passphrase>> {
    let KeyRef::File(path) = key else {
        return Ok(None);
    };
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

/// What to tell about a new next root key: where it is.
fn next_key_advice(next: &KeyRef) -> String {
    match next {
        KeyRef::File(p) => format!(
            "The next root key is in {}: move it offline now (a USB key in a safe).",
            p.display()
        ),
        KeyRef::Token(u) => format!(
            "The next root key was generated in the token as {u}; its secret cannot leave the token: keep the token offline."
        ),
    }
}

/// `key start --next-key FILE|URI`.
pub(crate) fn start(
    dir: &Path,
    next_key: &KeyRef,
    no_passphrase: bool,
    tokens: &Tokens,
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
    let next = NewKey::create(next_key, pass.as_ref(), tokens)?;
    let log = match l.start_key_log_committing(next.key()) {
        Ok(log) => log,
        Err(e) => {
            // Nothing refers to the new key: leave nothing behind.
            next.undo();
            return Err(e.into());
        }
    };
    out.record(
        &format!(
            "Started the key log of {} ({}): the agency key is its root.\n{} Only it can rotate the root, and it is how the agency takes its identity back if the agency key is stolen.",
            safe(&l.config().agency.name),
            l.me().fingerprint(),
            next_key_advice(next_key),
        ),
        serde_json::json!({
            "agency": l.me().to_hex(),
            "statements": log.len(),
            "next_root_key": next_key.to_string(),
            "next_root_key_file": match next_key { KeyRef::File(p) => Some(p), KeyRef::Token(_) => None },
        }),
    );
    Ok(())
}

/// `key rotate-root --root NEXT --next-key NEW [--at SEQ]`: the
/// pre-committed next root signs its own rotation, committing to a new
/// next root; at an earlier position, a recovery.
pub(crate) fn rotate_root(
    dir: &Path,
    root: &KeyRef,
    next_key: &KeyRef,
    at: Option<u64>,
    no_passphrase: bool,
    tokens: &Tokens,
    out: &Out,
) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    let new_root = Signer::open(root, tokens)?;
    // Refused before the new next key exists: a refusal leaves nothing.
    let (log, at) = l.rotation_ready(new_root.as_signer().key(), at)?;
    let before = log.len();
    let pass = new_key_passphrase(next_key, no_passphrase)?;
    let next = NewKey::create(next_key, pass.as_ref(), tokens)?;
    let (s, superseded) = match l.rotate_root(new_root.as_signer(), next.key(), Some(at)) {
        Ok(r) => r,
        Err(e) => {
            next.undo();
            return Err(e.into());
        }
    };
    let mut text = format!(
        "Rotated the root of {} to {} (statement #{}).",
        l.me().fingerprint(),
        s.signer(),
        s.seq()
    );
    match superseded {
        0 => {}
        1 => text.push_str(&format!(
            "\nRecovery: statement #{at} is superseded (void); `custodia key log` lists it."
        )),
        n => text.push_str(&format!(
            "\nRecovery: {n} statements, #{at} to #{}, are superseded (void); `custodia key log` lists them.",
            before - 1
        )),
    }
    text.push_str(&format!(
        "\n{} From now on the root is {root}: pass it with --root to certify-officer and revoke.",
        next_key_advice(next_key)
    ));
    out.record(
        &text,
        serde_json::json!({
            "root": s.signer().to_hex(),
            "seq": s.seq(),
            "statement": s.id().to_hex(),
            "superseded": superseded,
            "next_root_key": next_key.to_string(),
        }),
    );
    Ok(())
}

/// The root given with `--root`, opened and checked to be the root in
/// force; `None` (the agency key) if none was given and the agency key is
/// the root. Refused before anything is made for the statement.
fn root_signer(
    l: &custodia_node::Local,
    root: Option<&KeyRef>,
    tokens: &Tokens,
) -> anyhow::Result<Option<Signer>> {
    let signer = root.map(|r| Signer::open(r, tokens)).transpose()?;
    l.key_log_ready(signer.as_ref().map(|s| s.as_signer().key()))?;
    Ok(signer)
}

/// Writes a new key file at `key_out` and certifies its key in the key
/// log: an officer's when `officer` is given, else the node's. The file is
/// removed again if the statement is refused.
fn certify(
    dir: &Path,
    officer: Option<Officer>,
    key_out: &Path,
    no_passphrase: bool,
    root: Option<&KeyRef>,
    tokens: &Tokens,
) -> anyhow::Result<(custodia_protocol::Identity, KeyStatement)> {
    let mut l = passphrase::open(dir)?;
    let root = root_signer(&l, root, tokens)?;
    let key_ref = KeyRef::File(key_out.to_owned());
    // A node key is read by the node unattended, with the passphrase it
    // was started with: it is written under the agency key's (none if
    // that one is not encrypted). An officer's key gets a passphrase of
    // its own, from the usual sources.
    let pass = if officer.is_none() && !no_passphrase {
        passphrase::unlocked()
    } else {
        new_key_passphrase(&key_ref, no_passphrase)?
    };
    let key = custodia_node::create_key_file_with(key_out, pass.as_ref())?;
    let st = Statement::Certify(Certify {
        key: PublicKey::ed25519(key_of(&key)),
        role: if officer.is_some() {
            KeyRole::Officer
        } else {
            KeyRole::Node
        },
        officer,
        not_before: custodia_node::now_ms(),
        not_after: None,
    });
    match l.add_key_statement_with(root.as_ref().map(Signer::as_signer), st) {
        Ok(s) => Ok((key, s)),
        Err(e) => {
            let _ = std::fs::remove_file(key_out);
            Err(e.into())
        }
    }
}

/// `key certify-node [--out FILE] [--root KEY]`: the key that signs the
/// witnesses of cases of format version 2 (SPEC.md §5.7), written where
/// the node reads it (`node.key` in its directory) unless `--out` says
/// otherwise.
pub(crate) fn certify_node(
    dir: &Path,
    key_out: Option<&Path>,
    no_passphrase: bool,
    root: Option<&KeyRef>,
    tokens: &Tokens,
    out: &Out,
) -> anyhow::Result<()> {
    let path = key_out.map_or_else(|| dir.join(custodia_node::NODE_KEY_FILE), Path::to_owned);
    if path.exists() {
        return Err(LocalError::Usage(format!(
            "{} exists: a node has one node key. To replace it (lost, stolen or due), revoke the old key with `custodia key revoke KEY --reason ...`, move the file away, and run certify-node again",
            path.display()
        ))
        .into());
    }
    let (key, s) = certify(dir, None, &path, no_passphrase, root, tokens)?;
    out.record(
        &format!(
            "Certified node key {} (statement #{}), written to {}.\nThe node signs the witnesses of cases of format version 2 with it (a running node picks it up before its next witness).",
            key_of(&key),
            s.seq(),
            path.display()
        ),
        serde_json::json!({
            "key": key_of(&key).to_hex(),
            "role": "node",
            "seq": s.seq(),
            "statement": s.id().to_hex(),
            "key_file": path,
        }),
    );
    Ok(())
}

/// `key certify-officer --name --number --out FILE [--root KEY]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn certify_officer(
    dir: &Path,
    name: &str,
    number: &str,
    key_out: &Path,
    no_passphrase: bool,
    root: Option<&KeyRef>,
    tokens: &Tokens,
    out: &Out,
) -> anyhow::Result<()> {
    let officer = Officer {
        name: name.to_owned(),
        number: number.to_owned(),
    };
    let (officer, s) = certify(dir, Some(officer), key_out, no_passphrase, root, tokens)?;
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

/// `key revoke KEY --reason R [--root KEY]`.
pub(crate) fn revoke(
    dir: &Path,
    key: KeyId,
    reason: Reason,
    root: Option<&KeyRef>,
    tokens: &Tokens,
    out: &Out,
) -> anyhow::Result<()> {
    let mut l = passphrase::open(dir)?;
    let root = root_signer(&l, root, tokens)?;
    let effective = custodia_node::now_ms();
    let s = l.add_key_statement_with(
        root.as_ref().map(Signer::as_signer),
        Statement::Revoke(Revoke {
            key,
            effective,
            reason: reason.into(),
        }),
    )?;
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
        m.insert("signer".into(), s.signer().to_hex().into());
    }
    json_time(&mut json, "time", Some(p.time));
    (
        format!("#{:<3} {}  {text}", p.seq, iso_millis(p.time)),
        json,
    )
}

/// Whose key log a command shows: `agency` as typed (a peer name, an
/// agency name, a fingerprint or a key), this agency by default.
struct Whose {
    l: custodia_node::Local,
    agency: custodia_protocol::AgencyId,
    name: String,
    me: bool,
}

impl Whose {
    fn open(dir: &Path, agency: Option<&str>) -> anyhow::Result<Whose> {
        let l = passphrase::open(dir)?;
        let who = match agency {
            Some(a) => l.resolve_agency(a)?,
            None => l
                .resolve_agency(&l.me().to_hex())
                .map_err(anyhow::Error::from)?,
        };
        let me = who.agency == l.me();
        let name = if me {
            l.config().agency.name.clone()
        } else {
            who.name
        };
        Ok(Whose {
            l,
            agency: who.agency,
            name,
            me,
        })
    }

    /// Why there is nothing to show.
    fn no_log(&self) -> String {
        if self.me {
            "This agency has no key log yet: start it with `custodia key start --next-key FILE`."
                .to_string()
        } else {
            format!(
                "No key log of {} ({}) has reached this node: it arrives from the agency's node, or a partner's, once they have synced (sync version 3), if the agency started one.",
                safe(&self.name),
                self.agency.fingerprint()
            )
        }
    }
}

/// One key a log names, and what it is at the log's end.
struct KeyRow<'a> {
    key: KeyId,
    /// "root", "node" or "officer".
    role: &'static str,
    /// The statement that named it.
    named: &'a KeyStatement,
    certify: Option<&'a Certify>,
    /// For a root rotated away: the rotation's position.
    replaced_at: Option<u64>,
    /// Its revocation, with its position.
    revoked: Option<(u64, &'a Revoke)>,
}

impl KeyRow<'_> {
    /// The status word (JSON) and its sentence (text), at `now`.
    fn status(&self, now: u64) -> (&'static str, String) {
        if let Some((at, r)) = self.revoked {
            return (
                "revoked",
                format!(
                    "REVOKED ({}) from {} (#{at})",
                    r.reason.as_str(),
                    iso_millis(r.effective)
                ),
            );
        }
        if let Some(at) = self.replaced_at {
            return ("former-root", format!("former root, replaced at #{at}"));
        }
        let Some(c) = self.certify else {
            return ("in-force", "root in force".into());
        };
        let to = c
            .not_after
            .map(|t| format!(" to {}", iso_millis(t)))
            .unwrap_or_default();
        if now < c.not_before {
            (
                "not-yet-valid",
                format!("not yet valid: from {}{to}", iso_millis(c.not_before)),
            )
        } else if c.not_after.is_some_and(|t| now > t) {
            (
                "expired",
                format!("expired: valid from {}{to}", iso_millis(c.not_before)),
            )
        } else {
            (
                "active",
                format!("active: valid from {}{to}", iso_millis(c.not_before)),
            )
        }
    }
}

/// Every key a log names, in the order it named them, in one pass.
fn key_rows(log: &custodia_protocol::keylog::KeyLog) -> Vec<KeyRow<'_>> {
    let mut rows: Vec<KeyRow<'_>> = Vec::new();
    let mut at: std::collections::HashMap<KeyId, usize> = std::collections::HashMap::new();
    let mut root: Option<usize> = None;
    for s in log.statements() {
        let p = s.payload();
        match &p.st {
            Statement::Inception(r) | Statement::RotateRoot(r) => {
                if let Some(old) = root {
                    rows[old].replaced_at = Some(p.seq);
                }
                root = Some(rows.len());
                at.insert(r.root.key, rows.len());
                rows.push(KeyRow {
                    key: r.root.key,
                    role: "root",
                    named: s,
                    certify: None,
                    replaced_at: None,
                    revoked: None,
                });
            }
            Statement::Certify(c) => {
                at.insert(c.key.key, rows.len());
                rows.push(KeyRow {
                    key: c.key.key,
                    role: c.role.as_str(),
                    named: s,
                    certify: Some(c),
                    replaced_at: None,
                    revoked: None,
                });
            }
            Statement::Revoke(r) => {
                if let Some(&k) = at.get(&r.key) {
                    rows[k].revoked = Some((p.seq, r));
                }
            }
            _ => {}
        }
    }
    rows
}

/// `key list`: every key an agency's log names (roots, node keys,
/// officers' keys), with what each is now: in force, replaced, active,
/// not yet valid, expired or revoked.
pub(crate) fn list(dir: &Path, agency: Option<&str>, out: &Out) -> anyhow::Result<()> {
    let w = Whose::open(dir, agency)?;
    let Some(log) = w.l.store().key_log(&w.agency)? else {
        out.record(
            &w.no_log(),
            serde_json::json!({"agency": w.agency.to_hex(), "name": w.name, "statements": 0, "keys": [],
                "forks": [], "unconfirmed": null}),
        );
        return Ok(());
    };
    let now = custodia_node::now_ms();
    let rows = key_rows(&log);
    let store = w.l.store();
    let forks: Vec<u64> = store.key_forks(&w.agency)?.iter().map(|f| f.seq).collect();
    let unconfirmed = if w.me {
        store.key_log_unconfirmed()?
    } else {
        None
    };
    // The positions of rotations that were recoveries: where a superseded
    // statement chained to the same predecessor as the log's statement.
    let recoveries: std::collections::BTreeSet<u64> = store
        .key_superseded(&w.agency)?
        .iter()
        .filter(|s| {
            usize::try_from(s.seq())
                .ok()
                .and_then(|at| log.statements().get(at))
                .is_some_and(|held| held.payload().prev == s.payload().prev)
        })
        .map(KeyStatement::seq)
        .collect();
    let mut text = format!(
        "Keys of {} ({}), from its key log ({} statements), as of {}:\n",
        safe(&w.name),
        w.agency.fingerprint(),
        log.len(),
        iso_millis(now)
    );
    if let Some(why) = &unconfirmed {
        text.push_str(&format!(
            "Waiting for confirmation ({}): this store may be older than the agency's log; see `custodia key log`.\n",
            safe(why)
        ));
    }
    for seq in &forks {
        text.push_str(&format!(
            "!! FORKED at position {seq}: the agency's root signed two different statements there; what this list says from there on cannot be relied on (`custodia key log` shows both).\n"
        ));
    }
    let mut keys = Vec::new();
    for r in &rows {
        let (word, mut sentence) = r.status(now);
        if let Some(at) = r.replaced_at.filter(|at| recoveries.contains(at)) {
            sentence = format!("former root, taken back by a recovery at #{at} (what it superseded: `custodia key log`)");
        }
        let holder = r
            .certify
            .and_then(|c| c.officer.as_ref())
            .map(|o| format!("{} ({}): ", safe(&o.name), safe(&o.number)))
            .unwrap_or_default();
        let p = r.named.payload();
        text.push_str(&format!(
            "  {:<8} {}\n           {holder}{sentence}; named at #{} ({})\n",
            r.role,
            r.key,
            p.seq,
            iso_millis(p.time)
        ));
        let mut json = serde_json::json!({
            "key": r.key.to_hex(),
            "role": r.role,
            "status": word,
            "named_at": p.seq,
            "officer": r.certify.and_then(|c| c.officer.as_ref()).map(|o| serde_json::json!({"name": o.name, "number": o.number})),
            "replaced_at": r.replaced_at,
            "recovered": r.replaced_at.is_some_and(|at| recoveries.contains(&at)),
            "revoked": r.revoked.map(|(at, v)| {
                let mut j = serde_json::json!({"at": at, "reason": v.reason.as_str()});
                json_time(&mut j, "effective", Some(v.effective));
                j
            }),
        });
        json_time(&mut json, "named_time", Some(p.time));
        json_time(&mut json, "not_before", r.certify.map(|c| c.not_before));
        json_time(&mut json, "not_after", r.certify.and_then(|c| c.not_after));
        keys.push(json);
    }
    out.record(
        text.trim_end(),
        serde_json::json!({"agency": w.agency.to_hex(), "name": w.name, "statements": log.len(), "keys": keys,
            "forks": forks, "unconfirmed": unconfirmed}),
    );
    Ok(())
}

/// `key log`: every statement of this agency's key log, checked.
pub(crate) fn show(dir: &Path, agency: Option<&str>, out: &Out) -> anyhow::Result<()> {
    let w = Whose::open(dir, agency)?;
    let Some(log) = w.l.store().key_log(&w.agency)? else {
        out.record_version(
            JSON_SCHEMA_VERSION_2,
            &w.no_log(),
            serde_json::json!({"agency": w.agency.to_hex(), "name": w.name, "root": null, "unconfirmed": null,
                "statements": [], "superseded": [], "forks": []}),
        );
        return Ok(());
    };
    let Whose {
        l,
        agency,
        name,
        me,
    } = w;
    let lines: Vec<(String, serde_json::Value)> = log.statements().iter().map(describe).collect();
    let unconfirmed = if me {
        l.store().key_log_unconfirmed()?
    } else {
        None
    };
    let mut text = format!(
        "Key log of {} ({}): {} statements, root {}\n",
        safe(&name),
        agency.fingerprint(),
        log.len(),
        log.current_root()
    );
    if let Some(why) = &unconfirmed {
        text.push_str(&format!(
            "Waiting for confirmation ({}): this store may be older than the agency's log; compare it with your records, then `custodia key confirm`.\n",
            safe(why)
        ));
    }
    // Proofs that the agency's root signed two statements at one position
    // (K12): first, since no statement of that log can be taken at face
    // value after it.
    let forks = l.store().key_forks(&agency)?;
    for f in &forks {
        text.push_str(&format!(
            "!! FORKED at position {}: the agency's root signed two different statements there (both kept as the proof); statements from there on cannot be relied on until the agency explains it.\n",
            f.seq
        ));
    }
    for (t, _) in &lines {
        text.push_str(t);
        text.push('\n');
    }
    let superseded: Vec<(String, serde_json::Value)> = l
        .store()
        .key_superseded(&agency)?
        .iter()
        .map(describe)
        .collect();
    if !superseded.is_empty() {
        text.push_str(&format!(
            "Superseded by a recovery rotation ({}): void, signed by a root the agency took back:\n",
            superseded.len()
        ));
        for (t, _) in &superseded {
            text.push_str("  superseded ");
            text.push_str(t);
            text.push('\n');
        }
    }
    out.record_version(
        JSON_SCHEMA_VERSION_2,
        text.trim_end(),
        serde_json::json!({
            "agency": agency.to_hex(),
            "name": name,
            "root": log.current_root().to_hex(),
            "unconfirmed": unconfirmed,
            "statements": lines.into_iter().map(|(_, j)| j).collect::<Vec<_>>(),
            "superseded": superseded.into_iter().map(|(_, j)| j).collect::<Vec<_>>(),
            "forks": forks.iter().map(|f| serde_json::json!({
                "seq": f.seq, "held": hex::encode(&f.held), "other": hex::encode(&f.other),
            })).collect::<Vec<_>>(),
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
