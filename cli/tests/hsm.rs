//! Root keys in a hardware token (docs/design/identity-lifecycle.md §6),
//! through the real binary and a real PKCS#11 module: SoftHSM2, with a
//! fresh token in a temporary directory. The next root is generated in
//! the token, the root rotates to it, it certifies an officer, and its
//! private key is nowhere but in the token: no key file holds it, and the
//! token refuses to export it.
//!
//! SoftHSM2 must be installed (Debian: `apt-get install softhsm2`; `.ci/run`
//! installs it). Without it this test fails, saying so: it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{init, stored_log, Run};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use custodia_protocol::keylog::Statement;
use custodia_protocol::{KeyDigest, KeyId};

/// Where Debian's softhsm2 package puts the module.
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "NBI Roots";
const PIN: &str = "314159";
const SO_PIN: &str = "27182818";

/// A SoftHSM2 configuration of its own, with an empty token initialised
/// in `t/tokens`; the configuration file.
fn fresh_token(t: &Path) -> PathBuf {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed ({MODULE} is missing): install it (Debian: apt-get install softhsm2); .ci/run installs it"
    );
    let tokens = t.join("tokens");
    std::fs::create_dir(&tokens).expect("mkdir tokens");
    let conf = t.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs (Debian: apt-get install softhsm2)");
    assert!(out.status.success(), "init-token: {out:?}");
    conf
}

/// Runs `custodia --dir DIR ARGS` against the token, with its module and
/// `pin` in the environment.
fn run(dir: &Path, conf: &Path, pin: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .env("NO_COLOR", "1")
        .env("SOFTHSM2_CONF", conf)
        .env("CUSTODIA_PKCS11_MODULE", MODULE)
        .env("CUSTODIA_PKCS11_PIN", pin)
        .output()
        .expect("the custodia binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `custodia --dir DIR ARGS` with no module nor PIN in the
/// environment, and `stdin` on standard input.
fn run_bare(dir: &Path, conf: &Path, stdin: &str, args: &[&str]) -> Run {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .env_remove("CUSTODIA_PKCS11_MODULE")
        .env_remove("CUSTODIA_PKCS11_PIN")
        .env("NO_COLOR", "1")
        .env("SOFTHSM2_CONF", conf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the custodia binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn uri(object: &str) -> String {
    format!("pkcs11:token=NBI%20Roots;object={object}")
}

/// What the token itself says of the key pair labelled `object`, asked
/// directly through PKCS#11 (not through Custodia): its public key, and
/// the private key's protection attributes and whether its value can be
/// read.
struct InToken {
    key: KeyId,
    sensitive: bool,
    extractable: bool,
    always_sensitive: bool,
    never_extractable: bool,
    value_readable: bool,
}

fn in_token(conf: &Path, object: &str) -> InToken {
    // The module reads SOFTHSM2_CONF when it is initialised, once per
    // process: this file holds one test, so nothing else in this test
    // binary reads the environment or the module meanwhile.
    std::env::set_var("SOFTHSM2_CONF", conf);
    let ctx = Pkcs11::new(MODULE).expect("module");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("initialize");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).expect("info").label().trim_end() == TOKEN)
        .expect("the token");
    let session = ctx.open_ro_session(slot).expect("session");
    session
        .login(UserType::User, Some(&AuthPin::from(PIN)))
        .expect("login");
    let find = |class| {
        let found = session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(object.as_bytes().to_vec()),
            ])
            .expect("find");
        assert_eq!(found.len(), 1, "one {class} labelled {object}");
        found[0]
    };
    let public = find(ObjectClass::PUBLIC_KEY);
    let private = find(ObjectClass::PRIVATE_KEY);
    let point = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .expect("public key")
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .expect("CKA_EC_POINT");
    let raw = point.strip_prefix(&[0x04, 0x20][..]).unwrap_or(&point);
    let key = KeyId(raw.try_into().expect("32 bytes"));
    let flag = |t| {
        session
            .get_attributes(private, &[t])
            .expect("attribute")
            .into_iter()
            .find_map(|a| match a {
                Attribute::Sensitive(b)
                | Attribute::Extractable(b)
                | Attribute::AlwaysSensitive(b)
                | Attribute::NeverExtractable(b) => Some(b),
                _ => None,
            })
            .expect("the attribute is given")
    };
    // The export attempt: the private key's value (CKA_VALUE).
    let value_readable = session
        .get_attributes(private, &[AttributeType::Value])
        .map(|attrs| attrs.iter().any(|a| matches!(a, Attribute::Value(_))))
        .unwrap_or(false);
    InToken {
        key,
        sensitive: flag(AttributeType::Sensitive),
        extractable: flag(AttributeType::Extractable),
        always_sensitive: flag(AttributeType::AlwaysSensitive),
        never_extractable: flag(AttributeType::NeverExtractable),
        value_readable,
    }
}

/// Every file under `root`, except under `skip`.
fn files(root: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(root).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.starts_with(skip) {
            continue;
        }
        if p.is_dir() {
            files(&p, skip, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_root_generated_in_a_token_rotates_in_certifies_and_never_leaves_the_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let conf = fresh_token(t);
    let dir = t.join("nbi");
    init(&dir, "NBI Cybercrime Division", "PH");

    // The next root is generated in the token.
    let v = run(
        &dir,
        &conf,
        PIN,
        &["--json", "key", "start", "--next-key", &uri("root-1")],
    );
    let v: serde_json::Value = serde_json::from_str(&v.code(0).stdout).expect("json");
    assert_eq!(v["next_root_key"], uri("root-1"));
    assert!(v["next_root_key_file"].is_null());

    // A wrong PIN opens nothing (a usage error, 2).
    let r = run(
        &dir,
        &conf,
        "000000",
        &[
            "key",
            "rotate-root",
            "--root",
            &uri("root-1"),
            "--next-key",
            &uri("root-2"),
        ],
    )
    .code(2);
    assert!(r.stderr.contains("refused the PIN"), "{}", r.stderr);
    // A label the token does not hold.
    let r = run(
        &dir,
        &conf,
        PIN,
        &[
            "key",
            "rotate-root",
            "--root",
            &uri("no-such-key"),
            "--next-key",
            &uri("root-2"),
        ],
    )
    .code(2);
    assert!(r.stderr.contains("no Ed25519 key pair"), "{}", r.stderr);
    // A new next key whose label is taken: never a second key with it, and
    // no statement.
    let r = run(
        &dir,
        &conf,
        PIN,
        &[
            "key",
            "rotate-root",
            "--root",
            &uri("root-1"),
            "--next-key",
            &uri("root-1"),
        ],
    )
    .code(2);
    assert!(r.stderr.contains("already"), "{}", r.stderr);
    assert_eq!(stored_log(&dir).len(), 2);

    // The rotation, signed in the token, to a next root also in it.
    let v = run(
        &dir,
        &conf,
        PIN,
        &[
            "--json",
            "key",
            "rotate-root",
            "--root",
            &uri("root-1"),
            "--next-key",
            &uri("root-2"),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&v.code(0).stdout).expect("json");
    assert_eq!(v["seq"], 2);

    // Without a module, a token key cannot be had: said, and nothing made.
    let r = run_bare(
        &dir,
        &conf,
        "",
        &[
            "key",
            "certify-officer",
            "--name",
            "X",
            "--number",
            "X-1",
            "--out",
            t.join("x.key").to_str().expect("utf-8"),
            "--no-passphrase",
            "--root",
            &uri("root-1"),
        ],
    )
    .code(2);
    assert!(
        r.stderr.contains("--pkcs11-module") && r.stderr.contains("CUSTODIA_PKCS11_MODULE"),
        "{}",
        r.stderr
    );
    assert!(!t.join("x.key").exists());

    // An officer, certified by the token's root; the module from the
    // command line, the PIN from a file descriptor.
    let officer = t.join("santos.key");
    run_bare(
        &dir,
        &conf,
        &format!("{PIN}\n"),
        &[
            "key",
            "certify-officer",
            "--name",
            "Insp. R. Santos",
            "--number",
            "PNP-0042",
            "--out",
            officer.to_str().expect("utf-8"),
            "--no-passphrase",
            "--root",
            &uri("root-1"),
            "--pkcs11-module",
            MODULE,
            "--pin-fd",
            "0",
        ],
    )
    .code(0);

    // What the token holds, asked directly.
    let root1 = in_token(&conf, "root-1");
    // The log verifies from its bytes, and names the token's keys.
    let log = stored_log(&dir);
    assert_eq!(log.len(), 4);
    match &log.statements()[0].payload().st {
        Statement::Inception(r) => assert_eq!(r.next, KeyDigest::of(&root1.key)),
        other => panic!("inception first, got {other:?}"),
    }
    assert_eq!(log.current_root(), root1.key);
    assert_eq!(log.statements()[2].signer(), root1.key, "the rotation");
    assert_eq!(log.statements()[3].signer(), root1.key, "the certification");
    let officer_key = KeyId(
        custodia_node::read_key_file(&officer)
            .expect("officer key")
            .agency()
            .0,
    );
    assert!(matches!(
        log.status(&officer_key, log.len()),
        custodia_protocol::keylog::KeyStatus::Certified { .. }
    ));

    // The private key never left the token: generated sensitive and not
    // extractable, and the token refuses its value.
    assert!(root1.sensitive && root1.always_sensitive, "sensitive");
    assert!(
        !root1.extractable && root1.never_extractable,
        "not extractable"
    );
    assert!(!root1.value_readable, "the token gave out the private key");

    // No key file anywhere outside the token's own store holds a root: the
    // only key files are the node's and the officer's.
    let mut all = Vec::new();
    files(t, &t.join("tokens"), &mut all);
    let mut key_files: Vec<PathBuf> = all
        .iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(11).any(|w| w == b"PRIVATE KEY"))
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    key_files.sort();
    let mut want = vec![dir.join("identity.key"), officer.clone()];
    want.sort();
    assert_eq!(key_files, want);
    for p in &key_files {
        let k = KeyId(
            custodia_node::read_key_file(p)
                .expect("key file")
                .agency()
                .0,
        );
        assert_ne!(k, root1.key, "{} holds the token's root", p.display());
    }
}
