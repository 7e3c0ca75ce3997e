//! The agency's key log through the real binary (SPEC.md §3.4): started
//! with a next root key kept apart, officers certified with their own key
//! files, keys revoked; what an operator gets wrong is refused with a
//! message, and a row changed on disk is caught, never believed.

mod common;

use std::path::Path;

use common::{at, init, stored_log};
use custodia_protocol::{AgencyId, Identity, KeyDigest, KeyId};

#[test]
fn an_agency_starts_its_key_log_certifies_an_officer_and_revokes_the_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("nbi");
    let agency = init(&dir, "NBI Cybercrime Division", "PH");
    // Nothing yet.
    let v = at(&dir, &["--json", "key", "log"]).json();
    assert_eq!(v["statements"].as_array().map(Vec::len), Some(0));
    // Certifying before the log exists is refused, and writes no key file.
    let santos = tmp.path().join("santos.key");
    let r = certify(&dir, "Insp. R. Santos", &santos).code(1);
    assert!(r.stderr.contains("key start"), "{}", r.stderr);
    assert!(
        !santos.exists(),
        "a refused certification leaves no key file"
    );

    let next = tmp.path().join("offline").join("next-root.key");
    std::fs::create_dir(next.parent().expect("parent")).expect("mkdir");
    let r = at(
        &dir,
        &[
            "key",
            "start",
            "--next-key",
            next.to_str().expect("utf-8"),
            "--no-passphrase",
        ],
    )
    .code(0);
    assert!(r.stdout.contains("offline"), "{}", r.stdout);
    // The inception commits to the key written to the offline file.
    let next_key = custodia_node::read_key_file(&next).expect("next root key");
    let log = stored_log(&dir);
    assert_eq!(log.agency(), AgencyId::from_hex(&agency).expect("hex"));
    match &log.statements()[0].payload().st {
        custodia_protocol::keylog::Statement::Inception(r) => {
            assert_eq!(r.next, KeyDigest::of(&KeyId(next_key.agency().0)));
        }
        other => panic!("inception first, got {other:?}"),
    }
    assert_eq!(
        log.profile(log.len())
            .map(|p| (p.name.as_str(), p.country.as_str())),
        Some(("NBI Cybercrime Division", "PH")),
        "the agency signs its own name"
    );
    // Starting twice is refused, and does not overwrite the offline key.
    let again = tmp.path().join("again.key");
    at(
        &dir,
        &[
            "key",
            "start",
            "--next-key",
            again.to_str().expect("utf-8"),
            "--no-passphrase",
        ],
    )
    .code(1);
    assert!(!again.exists());
    // An existing file is never overwritten (an operator's error: 2).
    let r = certify(&dir, "X", &next).code(2);
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
    assert_eq!(
        custodia_node::read_key_file(&next)
            .expect("still there")
            .agency(),
        next_key.agency()
    );

    // An officer, with a key file of their own.
    let v = at(
        &dir,
        &[
            "--json",
            "key",
            "certify-officer",
            "--name",
            "Insp. R. Santos",
            "--number",
            "PNP-0042",
            "--out",
            santos.to_str().expect("utf-8"),
            "--no-passphrase",
        ],
    )
    .json();
    let officer: Identity = custodia_node::read_key_file(&santos).expect("officer key");
    assert_eq!(
        v["key"].as_str(),
        Some(KeyId(officer.agency().0).to_hex().as_str())
    );
    assert_eq!(v["officer"]["number"], "PNP-0042");
    let key_hex = v["key"].as_str().expect("key").to_owned();

    // Revoked as lost; revoking again, or a key never certified, is refused.
    at(&dir, &["key", "revoke", &key_hex, "--reason", "lost"]).code(0);
    let r = at(
        &dir,
        &["key", "revoke", &key_hex, "--reason", "compromised"],
    )
    .code(1);
    assert!(r.stderr.contains("revoked already"), "{}", r.stderr);
    let r = at(
        &dir,
        &["key", "revoke", &"ab".repeat(32), "--reason", "retired"],
    )
    .code(1);
    assert!(r.stderr.contains("never certified"), "{}", r.stderr);
    let r = at(&dir, &["key", "revoke", &agency, "--reason", "compromised"]).code(1);
    assert!(
        r.stderr.contains("rotation"),
        "a root is rotated, not revoked: {}",
        r.stderr
    );
    at(&dir, &["key", "revoke", "not-hex", "--reason", "lost"]).code(2);

    // The log as shown, and as stored.
    let v = at(&dir, &["--json", "key", "log"]).json();
    let kinds: Vec<&str> = v["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["inception", "profile", "certify", "revoke"]);
    assert_eq!(v["statements"][3]["reason"], "lost");
    // Times as in every command's JSON: RFC 3339 UTC to the second, the
    // exact milliseconds beside them (a revocation is effective to the
    // millisecond).
    let revoke = &v["statements"][3];
    for name in ["time", "effective"] {
        let t = revoke[name].as_str().expect("a time string");
        assert!(t.len() == 20 && t.ends_with('Z'), "{name}: {t}");
        let ms = revoke[format!("{name}_ms")].as_u64().expect("milliseconds");
        assert!(
            t.starts_with(&custodia_protocol::utc::iso_seconds(ms)[..19]),
            "{t} {ms}"
        );
    }
    assert_eq!(v["schema_version"], 2);
    let log = stored_log(&dir);
    assert!(matches!(
        log.status(&KeyId(officer.agency().0), log.len()),
        custodia_protocol::keylog::KeyStatus::Revoked { .. }
    ));
    let text = at(&dir, &["key", "log"]).code(0).stdout;
    assert!(
        text.contains("certify officer Insp. R. Santos (PNP-0042)"),
        "{text}"
    );
    assert!(text.contains("revoke lost"), "{text}");
}

#[test]
fn a_key_log_row_changed_on_disk_is_refused_not_believed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("nbi");
    init(&dir, "NBI Cybercrime Division", "PH");
    let next = tmp.path().join("next.key");
    at(
        &dir,
        &[
            "key",
            "start",
            "--next-key",
            next.to_str().expect("utf-8"),
            "--no-passphrase",
        ],
    )
    .code(0);
    // Someone with the store file rewrites the profile: the name changes,
    // the signature no longer covers it.
    let conn = rusqlite::Connection::open(dir.join("store.sqlite")).expect("store");
    let bytes: Vec<u8> = conn
        .query_row("SELECT bytes FROM key_statements WHERE seq = 1", [], |r| {
            r.get(0)
        })
        .expect("profile row");
    let at_name = bytes
        .windows(3)
        .position(|w| w == b"NBI")
        .expect("the name is in the bytes");
    let mut forged = bytes.clone();
    forged[at_name..at_name + 3].copy_from_slice(b"FBI");
    conn.execute(
        "UPDATE key_statements SET bytes = ?1 WHERE seq = 1",
        rusqlite::params![forged],
    )
    .expect("update");
    drop(conn);
    let r = at(&dir, &["key", "log"]).code(2);
    assert!(
        r.stderr.contains("key log") && r.stderr.contains("damaged") && r.stderr.contains("K5"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stdout.contains("FBI"),
        "a forged name is never shown: {}",
        r.stdout
    );
}

/// Certifies an officer; the run.
fn certify(dir: &Path, name: &str, out: &Path) -> common::Run {
    certify_as(dir, name, out, None)
}

#[test]
fn a_node_restored_from_an_older_backup_writes_no_key_statement_until_the_log_is_confirmed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let dir = t.join("nbi");
    init(&dir, "NBI Cybercrime Division", "PH");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    at(
        &dir,
        &[
            "key",
            "start",
            "--next-key",
            &s(&t.join("next.key")),
            "--no-passphrase",
        ],
    )
    .code(0);
    certify(&dir, "Insp. A", &t.join("a.key")).code(0);
    let backup = t.join("nbi.custodia-backup");
    at(&dir, &["backup", "--out", &s(&backup)]).code(0);
    // After the backup the agency certifies B: statement 3.
    certify(&dir, "Insp. B", &t.join("b.key")).code(0);

    // The operator restores the older backup.
    let restored = t.join("nbi-restored");
    at(
        &restored,
        &[
            "restore",
            &s(&backup),
            "--key",
            &s(&dir.join("identity.key")),
        ],
    )
    .code(0);
    let v = at(&restored, &["--json", "key", "log"]).json();
    assert_eq!(
        v["statements"].as_array().map(Vec::len),
        Some(3),
        "the backup's log"
    );
    assert!(v["unconfirmed"].is_string(), "{v}");
    // Statement 3 would be a second statement at B's position: refused,
    // and no key file is left behind.
    let r = certify(&restored, "Insp. C", &t.join("c.key")).code(1);
    assert!(r.stderr.contains("key confirm"), "{}", r.stderr);
    assert!(!t.join("c.key").exists());
    // A rotation too: the guard is on every new statement.
    let r = rotate(&restored, &t.join("next.key"), &t.join("next-2.key"), None).code(1);
    assert!(r.stderr.contains("key confirm"), "{}", r.stderr);
    assert!(!t.join("next-2.key").exists());
    let text = at(&restored, &["key", "log"]).code(0).stdout;
    assert!(text.contains("Waiting for confirmation"), "{text}");
    // Once the operator has compared the log with the records.
    let v = at(&restored, &["--json", "key", "confirm"]).json();
    assert_eq!(v["confirmed"], true);
    certify(&restored, "Insp. C", &t.join("c.key")).code(0);
    let v = at(&restored, &["--json", "key", "confirm"]).json();
    assert_eq!(v["confirmed"], false, "nothing was waiting any more");
    // The node that was never restored was never held back.
    let v = at(&dir, &["--json", "key", "log"]).json();
    assert!(v["unconfirmed"].is_null(), "{v}");
}

/// `key rotate-root --root ROOT --next-key NEXT [--at SEQ] --json`; the run.
fn rotate(dir: &Path, root: &Path, next: &Path, at_seq: Option<u64>) -> common::Run {
    let seq = at_seq.map(|s| s.to_string());
    let mut args = vec![
        "--json",
        "key",
        "rotate-root",
        "--root",
        root.to_str().expect("utf-8"),
        "--next-key",
        next.to_str().expect("utf-8"),
        "--no-passphrase",
    ];
    if let Some(s) = &seq {
        args.extend(["--at", s.as_str()]);
    }
    at(dir, &args)
}

/// Certifies an officer with `--root ROOT`; the run.
fn certify_with_root(dir: &Path, name: &str, out: &Path, root: &Path) -> common::Run {
    certify_as(dir, name, out, Some(root))
}

/// Certifies an officer, signed by the agency key or by `root`; the run.
fn certify_as(dir: &Path, name: &str, out: &Path, root: Option<&Path>) -> common::Run {
    let mut args = vec![
        "key",
        "certify-officer",
        "--name",
        name,
        "--number",
        "PNP-1",
        "--out",
        out.to_str().expect("utf-8"),
        "--no-passphrase",
    ];
    if let Some(root) = root {
        args.extend(["--root", root.to_str().expect("utf-8")]);
    }
    at(dir, &args)
}

/// A node with its key log started; the next root key's file.
fn started(dir: &Path, t: &Path) -> std::path::PathBuf {
    init(dir, "NBI Cybercrime Division", "PH");
    let next = t.join("next-root.key");
    at(
        dir,
        &[
            "key",
            "start",
            "--next-key",
            next.to_str().expect("utf-8"),
            "--no-passphrase",
        ],
    )
    .code(0);
    next
}

fn key_in(path: &Path) -> KeyId {
    KeyId(
        custodia_node::read_key_file(path)
            .expect("a key file")
            .agency()
            .0,
    )
}

#[test]
fn the_committed_next_root_rotates_the_root_and_only_the_new_root_signs_after_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let dir = t.join("nbi");
    let next = started(&dir, t);
    let next2 = t.join("next-root-2.key");

    // A key the log never committed to cannot rotate: neither a stranger's
    // nor the agency key itself; and the refusal leaves no new file.
    let stranger = t.join("stranger.key");
    custodia_node::create_key_file_with(&stranger, None).expect("stranger");
    for wrong in [&stranger, &dir.join("identity.key")] {
        let r = rotate(&dir, wrong, &next2, None).code(1);
        assert!(r.stderr.contains("not the next root"), "{}", r.stderr);
        assert!(!next2.exists(), "a refused rotation leaves no key file");
    }
    // The new next key's file exists already: never overwritten (2), and
    // no statement was made.
    let taken = t.join("taken.key");
    std::fs::write(&taken, b"the operator's other file").expect("write");
    let r = rotate(&dir, &next, &taken, None).code(2);
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&taken).expect("still there"),
        b"the operator's other file"
    );
    assert_eq!(stored_log(&dir).len(), 2);

    // The rotation: signed by the committed key, committing to the next.
    let v = rotate(&dir, &next, &next2, None).json();
    assert_eq!(v["seq"], 2);
    assert_eq!(v["superseded"], 0);
    let log = stored_log(&dir);
    assert_eq!(log.current_root(), key_in(&next));
    assert_eq!(
        log.committed_next(log.len()),
        Some(KeyDigest::of(&key_in(&next2)))
    );
    // The same key cannot rotate twice: it committed to next2.
    let r = rotate(&dir, &next, &t.join("next-root-3.key"), None).code(1);
    assert!(r.stderr.contains("not the next root"), "{}", r.stderr);
    assert!(!t.join("next-root-3.key").exists());

    // The agency key is no longer the root: without --root, refused with
    // the root's key and how to pass it, and no officer key file is left.
    let a = t.join("a.key");
    let r = certify(&dir, "Insp. A", &a).code(1);
    assert!(
        r.stderr.contains("--root") && r.stderr.contains(&key_in(&next).to_hex()),
        "{}",
        r.stderr
    );
    assert!(!a.exists());
    // Nor with --root naming the old root.
    let r = certify_with_root(&dir, "Insp. A", &a, &dir.join("identity.key")).code(1);
    assert!(r.stderr.contains("not the agency's root"), "{}", r.stderr);
    assert!(!a.exists());
    // The new root certifies and revokes.
    certify_with_root(&dir, "Insp. A", &a, &next).code(0);
    let officer = key_in(&a).to_hex();
    let r = at(&dir, &["key", "revoke", &officer, "--reason", "retired"]).code(1);
    assert!(r.stderr.contains("--root"), "{}", r.stderr);
    at(
        &dir,
        &[
            "key",
            "revoke",
            &officer,
            "--reason",
            "retired",
            "--root",
            next.to_str().expect("utf-8"),
        ],
    )
    .code(0);
    // The log, read from the store by an independent reader, holds.
    let log = stored_log(&dir);
    assert_eq!(log.len(), 5);
    assert_eq!(log.statements()[3].signer(), key_in(&next));
    let text = at(&dir, &["key", "log"]).code(0).stdout;
    assert!(
        text.contains(&format!("rotate-root: root {}", key_in(&next))),
        "{text}"
    );
    // And the next rotation is the second committed key's.
    let v = rotate(&dir, &next2, &t.join("next-root-3.key"), None).json();
    assert_eq!(v["seq"], 5);
}

#[test]
fn a_recovery_rotation_supersedes_what_a_thief_signed_with_the_stolen_root() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let dir = t.join("nbi");
    let next = started(&dir, t);
    // The agency's own last statement: officer A, #2.
    let a = t.join("a.key");
    certify(&dir, "Insp. A", &a).code(0);
    // A thief copies the agency key file (the root in force) and signs
    // with it: an officer of its own (#3), and A revoked (#4).
    let thief = t.join("thief");
    std::fs::create_dir(&thief).expect("mkdir");
    let stolen = thief.join("stolen-root.key");
    std::fs::copy(dir.join("identity.key"), &stolen).expect("copy");
    let mallory = thief.join("mallory.key");
    certify_with_root(&dir, "Mallory", &mallory, &stolen).code(0);
    at(
        &dir,
        &[
            "key",
            "revoke",
            &key_in(&a).to_hex(),
            "--reason",
            "compromised",
            "--root",
            stolen.to_str().expect("utf-8"),
        ],
    )
    .code(0);
    assert_eq!(stored_log(&dir).len(), 5);

    // A recovery where no statement can go is refused, leaving nothing.
    let next2 = t.join("next-root-2.key");
    for bad in [0, 6] {
        let r = rotate(&dir, &next, &next2, Some(bad)).code(1);
        assert!(r.stderr.contains("position"), "{}", r.stderr);
        assert!(!next2.exists());
    }
    // The agency rotates with its offline key after #2, the last statement
    // it owns: the thief's two are superseded.
    let v = rotate(&dir, &next, &next2, Some(3)).json();
    assert_eq!(
        (v["seq"].as_u64(), v["superseded"].as_u64()),
        (Some(3), Some(2))
    );
    let log = stored_log(&dir);
    assert_eq!(log.len(), 4);
    assert_eq!(log.current_root(), key_in(&next));
    assert_eq!(
        log.status(&key_in(&mallory), log.len()),
        custodia_protocol::keylog::KeyStatus::Unknown,
        "the thief's officer was never certified"
    );
    assert!(matches!(
        log.status(&key_in(&a), log.len()),
        custodia_protocol::keylog::KeyStatus::Certified { .. }
    ));
    // The stolen root signs nothing more.
    let r = certify_with_root(&dir, "Mallory 2", &thief.join("m2.key"), &stolen).code(1);
    assert!(r.stderr.contains("not the agency's root"), "{}", r.stderr);

    // `key list` says the old root was taken back by a recovery, and
    // lists no key of the thief's.
    let v = at(&dir, &["--json", "key", "list"]).json();
    let roots: Vec<(String, bool)> = v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["role"] == "root")
        .map(|k| {
            (
                k["status"].as_str().expect("status").to_owned(),
                k["recovered"] == true,
            )
        })
        .collect();
    assert_eq!(
        roots,
        [
            ("former-root".to_owned(), true),
            ("in-force".to_owned(), false)
        ]
    );
    assert!(v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .all(|k| k["key"] != key_in(&mallory).to_hex().as_str()));
    assert_eq!(
        (v["forks"].clone(), v["unconfirmed"].clone()),
        (serde_json::json!([]), serde_json::Value::Null)
    );
    let text = at(&dir, &["key", "list"]).code(0).stdout;
    assert!(text.contains("taken back by a recovery at #3"), "{text}");

    // `key log` shows the superseded statements apart.
    let v = at(&dir, &["--json", "key", "log"]).json();
    let kinds = |k: &str| -> Vec<String> {
        v[k].as_array()
            .expect("a list")
            .iter()
            .map(|s| s["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(
        kinds("statements"),
        ["inception", "profile", "certify", "rotate-root"]
    );
    assert_eq!(kinds("superseded"), ["certify", "revoke"]);
    assert_eq!(v["superseded"][0]["officer"]["name"], "Mallory");
    assert_eq!(v["superseded"][1]["seq"], 4);
    let text = at(&dir, &["key", "log"]).code(0).stdout;
    assert!(
        text.contains("Superseded by a recovery rotation (2)")
            && text.contains("superseded #3")
            && text.contains("Mallory"),
        "{text}"
    );

    // A court bundle of a case of the agency carries the key history with
    // the thief's two statements (bundle format version 3), and its report
    // shows them apart as void: a court sees that the root was taken back
    // and what the thief signed with it.
    let opened = at(
        &dir,
        &[
            "--json",
            "case",
            "open",
            "--title",
            "Lantern",
            "--reference",
            "R-1",
        ],
    )
    .json();
    let case = opened["case"].as_str().expect("case").to_owned();
    let file = t.join("lantern.custodia");
    at(
        &dir,
        &["export", &case, "--out", file.to_str().expect("utf-8")],
    )
    .code(0);
    let bytes = std::fs::read(&file).expect("bundle");
    let bundle = custodia_protocol::bundle::Bundle::decode(&bytes).expect("readable");
    assert_eq!(
        bundle.version(),
        3,
        "a key history with superseded statements"
    );
    let report = at(&dir, &["--json", "verify", file.to_str().expect("utf-8")]).json();
    assert_eq!(report["verdict"], "valid", "{report:#}");
    let history = &report["key_logs"][0];
    let listed = |k: &str| -> Vec<(u64, String)> {
        history[k]
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| {
                (
                    s["seq"].as_u64().expect("seq"),
                    s["kind"].as_str().expect("kind").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        listed("superseded"),
        [(3, "certify".into()), (4, "revoke".into())]
    );
    assert_eq!(listed("statements").len(), 4);
    assert_eq!(history["superseded"][0]["officer"]["name"], "Mallory");
    let text = at(&dir, &["verify", file.to_str().expect("utf-8")])
        .code(0)
        .stdout;
    assert!(
        text.contains("SUPERSEDED by a recovery (2)") && text.contains("Mallory"),
        "{text}"
    );
}
