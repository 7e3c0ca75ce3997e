//! Identity key files encrypted at rest, through the real binary: the
//! passphrase from `CUSTODIA_PASSPHRASE`, `--passphrase-fd N` or nowhere;
//! a wrong one; `init`, `key protect`, `key passphrase`, backup and
//! restore; and no plaintext key anywhere in the node folder afterwards.
//! OpenSSL and Python's `cryptography` must read the encrypted file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::Run;
use custodia_node::Passphrase;

const SECRET: &str = "correct horse battery staple";

/// Runs `custodia --dir DIR ARGS` with `env` added, without a controlling
/// terminal (under `setsid`, where it is installed): no test may prompt on
/// the terminal of whoever runs the tests.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let bin = env!("CARGO_BIN_EXE_custodia");
    let mut c = if Path::new("/usr/bin/setsid").exists() {
        let mut c = Command::new("/usr/bin/setsid");
        c.args(["--wait", bin]);
        c
    } else {
        Command::new(bin)
    };
    c.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("the custodia binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a `bash` line (for file-descriptor redirections) with `$BIN` the
/// binary, without a controlling terminal.
fn bash(line: &str, env: &[(&str, &str)]) -> Run {
    let mut c = Command::new("/usr/bin/setsid");
    c.args(["--wait", "bash", "-c", line])
        .env("BIN", env!("CARGO_BIN_EXE_custodia"))
        .env_remove("CUSTODIA_DIR")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("bash runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with(pass: &str) -> [(&'static str, &str); 1] {
    [("CUSTODIA_PASSPHRASE", pass)]
}

/// `init` with the passphrase in the environment; the agency id.
fn init_encrypted(dir: &Path, pass: &str) -> String {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let r = run(
        dir,
        &[
            "--json",
            "init",
            "--agency",
            "Unit",
            "--country",
            "PH",
            "--listen",
            &listen,
        ],
        &with(pass),
    );
    let v: serde_json::Value = serde_json::from_str(&r.code(0).stdout).expect("JSON");
    v["agency"].as_str().expect("an agency id").to_owned()
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("identity.key")
}

fn agency_of(dir: &Path, env: &[(&str, &str)]) -> String {
    let r = run(dir, &["--json", "id"], env).code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    v["agency"].as_str().expect("an agency id").to_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` (recursively), its bytes.
fn every_file(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                todo.push(p);
            } else if meta.is_file() {
                out.push((p.clone(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that no file under `dir` holds the key's seed: not its bytes,
/// not its base64 or hex, not an unencrypted PKCS#8 PEM; and that the key
/// file is encrypted.
fn assert_no_plaintext_key(dir: &Path, seed: &[u8; 32]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("the seed", seed.to_vec()),
        ("the seed in base64", b64.encode(seed).into_bytes()),
        (
            "the seed in base64 without padding",
            b64.encode(seed).trim_end_matches('=').as_bytes().to_vec(),
        ),
        ("the seed in hex", hex::encode(seed).into_bytes()),
        ("the PKCS#8 DER", der.clone()),
        ("the PKCS#8 DER in base64", b64.encode(&der).into_bytes()),
        ("an unencrypted PEM key", b"BEGIN PRIVATE KEY".to_vec()),
    ];
    let files = every_file(dir);
    assert!(files.len() >= 3, "{files:?}");
    for (path, bytes) in &files {
        for (what, needle) in &needles {
            assert!(!contains(bytes, needle), "{} holds {what}", path.display());
        }
    }
    let key = std::fs::read_to_string(key_path(dir)).expect("the key file");
    assert!(
        key.starts_with("# custodia agency ")
            && key.contains("\n-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
        "{key}"
    );
    assert_eq!(mode(&key_path(dir)), 0o600);
}

/// The seed of the key in `dir`, decrypted with the node library.
fn seed(dir: &Path, pass: &str) -> [u8; 32] {
    custodia_node::read_key_file_with(&key_path(dir), &Passphrase::from(pass.to_owned()))
        .expect("the key decrypts")
        .seed()
}

#[test]
fn a_wrong_passphrase_exits_2_and_says_so_without_the_secret() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let agency = init_encrypted(&dir, SECRET);
    assert_eq!(agency_of(&dir, &with(SECRET)), agency);
    for wrong in [
        "correct horse battery stapl",
        "",
        "Correct horse battery staple",
    ] {
        let r = run(&dir, &["id"], &with(wrong)).code(2);
        assert_eq!(
            r.stderr.trim(),
            format!(
                "error: wrong passphrase for key file {}",
                key_path(&dir).display()
            ),
            "{r:?}"
        );
        assert!(r.stdout.is_empty(), "{r:?}");
    }
    // Every command that needs the key says the same.
    for args in [
        &["case", "list"][..],
        &["status"],
        &["store", "check"],
        &["node", "run"],
    ] {
        let r = run(&dir, args, &with("nope")).code(2);
        assert!(
            r.stderr.contains(&format!(
                "wrong passphrase for key file {}",
                key_path(&dir).display()
            )),
            "{args:?}: {r:?}"
        );
        assert!(!r.stderr.contains("nope"), "{r:?}");
    }
    // In JSON too.
    let r = run(&dir, &["--json", "id"], &with("nope")).code(2);
    assert!(r.stderr.contains("wrong passphrase"), "{r:?}");
}

#[test]
fn an_encrypted_key_and_no_passphrase_exits_2_naming_the_three_ways() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    init_encrypted(&dir, SECRET);
    for args in [&["id"][..], &["case", "list"], &["node", "run"]] {
        let r = run(&dir, args, &[]).code(2);
        for way in ["CUSTODIA_PASSPHRASE", "--passphrase-fd", "terminal"] {
            assert!(r.stderr.contains(way), "{args:?}: {way} in {r:?}");
        }
        assert!(
            r.stderr.contains(&key_path(&dir).display().to_string()),
            "{r:?}"
        );
    }
    // Commands that do not need the key do not ask for it.
    run(&dir, &["peer", "list"], &[]).code(0);
}

#[test]
fn init_without_a_passphrase_source_refuses_unless_told_to_write_plaintext() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let r = run(&dir, &["init", "--agency", "Unit", "--country", "PH"], &[]).code(2);
    for way in [
        "CUSTODIA_PASSPHRASE",
        "--passphrase-fd",
        "terminal",
        "--no-passphrase",
    ] {
        assert!(r.stderr.contains(way), "{way} in {r:?}");
    }
    assert!(!dir.exists(), "a refused init left {}", dir.display());
    // --no-passphrase and a passphrase: which one is meant?
    let r = run(
        &dir,
        &[
            "init",
            "--no-passphrase",
            "--agency",
            "Unit",
            "--country",
            "PH",
        ],
        &with(SECRET),
    )
    .code(2);
    assert!(r.stderr.contains("--no-passphrase"), "{r:?}");
    assert!(!dir.exists());
    // An empty passphrase protects nothing.
    let r = run(
        &dir,
        &["init", "--agency", "Unit", "--country", "PH"],
        &with(""),
    )
    .code(2);
    assert!(r.stderr.contains("empty passphrase"), "{r:?}");
    assert!(!dir.exists());
    run(
        &dir,
        &[
            "init",
            "--no-passphrase",
            "--agency",
            "Unit",
            "--country",
            "PH",
        ],
        &[],
    )
    .code(0);
    let key = std::fs::read_to_string(key_path(&dir)).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    // An unencrypted key needs no passphrase, and a stray one is ignored.
    run(&dir, &["id"], &[]).code(0);
    run(&dir, &["id"], &with("anything")).code(0);
}

#[test]
fn nothing_in_an_encrypted_node_folder_holds_the_key_in_the_clear() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    init_encrypted(&dir, SECRET);
    let env = with(SECRET);
    let case = {
        let r = run(
            &dir,
            &[
                "--json",
                "case",
                "open",
                "--title",
                "Lantern",
                "--reference",
                "L-1",
            ],
            &env,
        )
        .code(0);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
        v["case"].as_str().expect("case").to_owned()
    };
    let evidence = tmp.path().join("phone.img");
    std::fs::write(&evidence, b"an image").expect("write");
    run(
        &dir,
        &[
            "evidence",
            "add",
            &case,
            evidence.to_str().expect("utf-8"),
            "--exhibit",
            "EX-1",
        ],
        &env,
    )
    .code(0);
    let backup = dir.join("backups");
    std::fs::create_dir(&backup).expect("mkdir");
    let file = backup.join("unit.custodia-backup");
    run(
        &dir,
        &["backup", "--out", file.to_str().expect("utf-8")],
        &env,
    )
    .code(0);
    let seed = seed(&dir, SECRET);
    assert_no_plaintext_key(&dir, &seed);
    // Again while the node runs: the store's write-ahead log and shared
    // memory exist only while it is open.
    let (node, log) = start_node(&dir, SECRET);
    assert!(node.is_some(), "{log:#?}");
    assert!(dir.join("store.sqlite-wal").exists());
    assert_no_plaintext_key(&dir, &seed);
    drop(node);

    // Restored from the backup: the key file is copied as it is, still
    // encrypted under the same passphrase; nothing in the clear.
    let restored = tmp.path().join("restored");
    let r = run(
        &restored,
        &[
            "restore",
            file.to_str().expect("utf-8"),
            "--key",
            key_path(&dir).to_str().expect("utf-8"),
        ],
        &env,
    )
    .code(0);
    assert!(r.stdout.contains("Restored"), "{r:?}");
    assert!(
        std::fs::read(key_path(&restored)).expect("restored key")
            == std::fs::read(key_path(&dir)).expect("key"),
        "the restored key file is not a copy of the encrypted original"
    );
    assert_no_plaintext_key(&restored, &seed);
    // Restoring needs the passphrase, and a wrong one restores nothing.
    let again = tmp.path().join("again");
    let r = run(
        &again,
        &[
            "restore",
            file.to_str().expect("utf-8"),
            "--key",
            key_path(&dir).to_str().expect("utf-8"),
        ],
        &with("wrong"),
    )
    .code(2);
    assert!(r.stderr.contains("wrong passphrase"), "{r:?}");
    assert!(!again.exists() || every_file(&again).is_empty());
}

#[test]
fn key_protect_encrypts_a_plaintext_key_in_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let agency = common::init(&dir, "Unit", "PH");
    let seed = custodia_node::read_key_file(&key_path(&dir))
        .expect("plaintext")
        .seed();
    // Without a passphrase source: refused, the file untouched.
    let before = std::fs::read(key_path(&dir)).expect("key");
    let r = run(&dir, &["key", "protect"], &[]).code(2);
    assert!(r.stderr.contains("CUSTODIA_PASSPHRASE"), "{r:?}");
    assert_eq!(std::fs::read(key_path(&dir)).expect("key"), before);

    let r = run(&dir, &["key", "protect"], &with(SECRET)).code(0);
    assert!(r.stdout.contains("Encrypted key file"), "{r:?}");
    assert!(r.stdout.contains("may remain on the disk"), "{r:?}");
    assert_no_plaintext_key(&dir, &seed);
    assert_eq!(agency_of(&dir, &with(SECRET)), agency);
    run(&dir, &["id"], &[]).code(2);
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("identity"))
        .collect();
    assert_eq!(names, ["identity.key"]);
    // Protecting twice is refused, and says what to do instead.
    let r = run(&dir, &["key", "protect"], &with(SECRET)).code(2);
    assert!(r.stderr.contains("key passphrase"), "{r:?}");
}

#[test]
fn key_passphrase_changes_it_the_old_one_fails_the_new_one_works() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let agency = init_encrypted(&dir, "old passphrase");
    let seed = seed(&dir, "old passphrase");
    let new_file = tmp.path().join("new-pass");
    std::fs::write(&new_file, "new passphrase\n").expect("write");
    let line = format!(
        "\"$BIN\" --dir '{}' key passphrase --new-passphrase-fd 3 3<'{}'",
        dir.display(),
        new_file.display()
    );
    // The current passphrase must be right first.
    let r = bash(&line, &with("not it")).code(2);
    assert!(r.stderr.contains("wrong passphrase"), "{r:?}");
    let r = bash(&line, &with("old passphrase")).code(0);
    assert!(r.stdout.contains("Changed the passphrase"), "{r:?}");
    let r = run(&dir, &["id"], &with("old passphrase")).code(2);
    assert!(r.stderr.contains("wrong passphrase"), "{r:?}");
    assert_eq!(agency_of(&dir, &with("new passphrase")), agency);
    assert_no_plaintext_key(&dir, &seed);
    // The passphrase from a file descriptor, for every command.
    let pass_file = tmp.path().join("pass");
    std::fs::write(&pass_file, "new passphrase\r\n").expect("write");
    let r = bash(
        &format!(
            "\"$BIN\" --dir '{}' --passphrase-fd 4 id 4<'{}'",
            dir.display(),
            pass_file.display()
        ),
        &[],
    )
    .code(0);
    assert!(r.stdout.contains(&agency), "{r:?}");
    // The flag wins over the environment.
    let r = bash(
        &format!(
            "\"$BIN\" --dir '{}' --passphrase-fd 4 id 4<'{}'",
            dir.display(),
            pass_file.display()
        ),
        &with("old passphrase"),
    )
    .code(0);
    assert!(r.stdout.contains(&agency), "{r:?}");
    // A file descriptor that is not open.
    let r = run(&dir, &["--passphrase-fd", "9", "id"], &[]).code(2);
    assert!(r.stderr.contains("--passphrase-fd 9"), "{r:?}");
    // A plaintext key has no passphrase to change.
    let plain = tmp.path().join("plain");
    common::init(&plain, "Plain", "PH");
    let r = run(&plain, &["key", "passphrase"], &with(SECRET)).code(2);
    assert!(r.stderr.contains("key protect"), "{r:?}");
}

/// A running `custodia node run`, killed when dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `custodia node run` with the passphrase in the environment and
/// waits for it to say it started; the node (None if it did not start
/// within a minute) and its log lines so far.
fn start_node(dir: &Path, pass: &str) -> (Option<Node>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("--dir")
        .arg(dir)
        .args(["node", "run"])
        .env_remove("CUSTODIA_DIR")
        .env("CUSTODIA_PASSPHRASE", pass)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let stderr = child.stderr.take().expect("stderr");
    let node = Node(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        let started = l.contains("node started");
        seen.push(l);
        if started {
            return (Some(node), seen);
        }
    }
    (None, seen)
}

#[test]
fn a_node_starts_with_the_passphrase_and_not_without_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    init_encrypted(&dir, SECRET);
    let r = run(&dir, &["node", "run"], &with("wrong")).code(2);
    assert!(r.stderr.contains("wrong passphrase for key file"), "{r:?}");
    let (node, seen) = start_node(&dir, SECRET);
    let started = node.is_some();
    drop(node);
    assert!(started, "{seen:#?}");
    assert!(
        !seen.iter().any(|l| l.contains("not encrypted")),
        "{seen:#?}"
    );
}

#[test]
fn a_node_with_a_plaintext_key_logs_a_warning() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let listen = format!("127.0.0.1:{}", common::free_port());
    run(
        &dir,
        &[
            "init",
            "--no-passphrase",
            "--agency",
            "Unit",
            "--country",
            "PH",
            "--listen",
            &listen,
        ],
        &[],
    )
    .code(0);
    let node = common::spawn_node(&dir);
    let log = dir.with_file_name("unit.log");
    let mut text = String::new();
    for _ in 0..600 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("node started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(node);
    assert!(
        text.contains("the identity key file is not encrypted")
            && text.contains("custodia key protect"),
        "{text}"
    );
}

/// The public key in a PEM "PUBLIC KEY" (SPKI) block: its last 32 bytes.
fn spki_key(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    assert_eq!(der.len(), 44, "an Ed25519 SubjectPublicKeyInfo");
    hex::encode(&der[12..])
}

#[test]
fn openssl_reads_the_encrypted_key_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let agency = init_encrypted(&dir, SECRET);
    let Ok(out) = Command::new("openssl")
        .args(["pkey", "-pubout", "-passin", "env:KEY_PASS", "-in"])
        .arg(key_path(&dir))
        .env("KEY_PASS", SECRET)
        .output()
    else {
        println!("note: no `openssl` binary on this machine; the OpenSSL check is skipped");
        return;
    };
    assert!(
        out.status.success(),
        "openssl pkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(spki_key(&String::from_utf8_lossy(&out.stdout)), agency);
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-passin", "env:KEY_PASS", "-in"])
        .arg(key_path(&dir))
        .env("KEY_PASS", "wrong")
        .output()
        .expect("openssl runs");
    assert!(!out.status.success(), "openssl took a wrong passphrase");
    // And what OpenSSL encrypts (its own choice of PBES2 parameters),
    // custodia reads.
    let other = tmp.path().join("other");
    common::init(&other, "Other", "DE");
    let plain = key_path(&other);
    let enc = tmp.path().join("openssl.key");
    let out = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "env:KEY_PASS",
            "-in",
        ])
        .arg(&plain)
        .arg("-out")
        .arg(&enc)
        .env("KEY_PASS", SECRET)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&plain).expect("rm");
    std::fs::copy(&enc, &plain).expect("cp");
    let expected = agency_of(&other, &with(SECRET));
    assert_eq!(
        expected,
        custodia_node::read_key_file_with(&plain, &Passphrase::from(SECRET.to_owned()))
            .expect("decrypts")
            .agency()
            .to_hex()
    );
}

#[test]
fn python_cryptography_reads_the_encrypted_key_file() {
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("note: no python3 with `cryptography` on this machine; the check is skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let agency = init_encrypted(&dir, SECRET);
    let script = r#"
import os, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), os.environb[b"KEY_PASS"])
print(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(key_path(&dir))
        .env("KEY_PASS", SECRET)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), agency);
}

#[test]
fn a_damaged_encrypted_key_file_exits_2_with_a_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    init_encrypted(&dir, SECRET);
    let good = std::fs::read_to_string(key_path(&dir)).expect("key");
    let lines: Vec<&str> = good.lines().collect();
    assert!(lines[0].starts_with("# custodia agency "), "{good}");
    let damaged = [
        // Cut after the header.
        format!("{}\n{}\n", lines[0], lines[1]),
        // Cut in the middle.
        format!("{}\n", lines[..lines.len() / 2].join("\n")),
        // The last base64 line gone.
        format!(
            "{}\n{}\n",
            lines[..lines.len() - 2].join("\n"),
            lines[lines.len() - 1]
        ),
        // A character changed in the middle of the base64.
        {
            let mut t = good.clone().into_bytes();
            let i = t.len() / 2;
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).expect("ascii")
        },
    ];
    for (n, text) in damaged.iter().enumerate() {
        let p = key_path(&dir);
        std::fs::remove_file(&p).expect("rm");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .expect("write");
        }
        let r = run(&dir, &["id"], &with(SECRET)).code(2);
        assert!(
            r.stderr
                .starts_with(&format!("error: key file {}", p.display()))
                || r.stderr.starts_with(&format!(
                    "error: wrong passphrase for key file {}",
                    p.display()
                )),
            "damage {n}: {r:?}"
        );
        assert!(!r.stderr.contains("panicked"), "damage {n}: {r:?}");
    }
}

/// Runs a shell line on a pseudo-terminal (`script`), typing `input`; the
/// terminal's output (standard output and error together) and the exit
/// code. None where `script` is not installed.
fn on_terminal(line: &str, input: &str) -> Option<Run> {
    use std::io::Write as _;
    if !Path::new("/usr/bin/script").exists() {
        println!("note: no `script` (util-linux) on this machine; the terminal check is skipped");
        return None;
    }
    let mut child = Command::new("/usr/bin/script")
        .args(["-q", "-e", "-c", line, "/dev/null"])
        .env("BIN", env!("CARGO_BIN_EXE_custodia"))
        .env_remove("CUSTODIA_DIR")
        .env_remove("CUSTODIA_PASSPHRASE")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("type");
    let out = child.wait_with_output().expect("script ends");
    Some(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn on_a_terminal_init_asks_twice_and_commands_ask_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    let init = format!(
        "\"$BIN\" --dir '{}' init --agency Unit --country PH",
        dir.display()
    );
    let Some(r) = on_terminal(&init, "one thing\nanother\n") else {
        return;
    };
    let r = r.code(2);
    assert!(r.stdout.contains("New passphrase for key file"), "{r:?}");
    assert!(r.stdout.contains("the two passphrases differ"), "{r:?}");
    assert!(!dir.exists());
    let r = on_terminal(&init, "\n").expect("script").code(2);
    assert!(r.stdout.contains("empty passphrase"), "{r:?}");
    assert!(!dir.exists());
    let r = on_terminal(&init, "same words\nsame words\n")
        .expect("script")
        .code(0);
    assert!(
        r.stdout.contains("Enter the same passphrase again"),
        "{r:?}"
    );
    assert!(r.stdout.contains("Created node"), "{r:?}");
    let agency = agency_of(&dir, &with("same words"));
    let id = format!("\"$BIN\" --dir '{}' id", dir.display());
    let r = on_terminal(&id, "same words\n").expect("script").code(0);
    assert!(r.stdout.contains("Passphrase for key file"), "{r:?}");
    assert!(r.stdout.contains(&agency), "{r:?}");
    let r = on_terminal(&id, "other words\n").expect("script").code(2);
    assert!(r.stdout.contains("wrong passphrase for key file"), "{r:?}");
    // The environment is used before the terminal: no prompt.
    let r = on_terminal(&format!("CUSTODIA_PASSPHRASE='same words' {id}"), "")
        .expect("script")
        .code(0);
    assert!(!r.stdout.contains("Passphrase for"), "{r:?}");
}

#[test]
fn on_a_terminal_an_unencrypted_key_gets_a_one_line_warning() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("unit");
    common::init(&dir, "Unit", "PH");
    let Some(r) = on_terminal(&format!("\"$BIN\" --dir '{}' id", dir.display()), "") else {
        return;
    };
    let r = r.code(0);
    let warnings: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "warning: key file {} is not encrypted; encrypt it with `custodia key protect`",
            key_path(&dir).display()
        )
        .as_str()],
        "{r:?}"
    );
    // Not in a pipe (the other tests' output stays as it was), nor in JSON.
    let r = run(&dir, &["id"], &[]).code(0);
    assert!(!r.stderr.contains("warning"), "{r:?}");
    let r = on_terminal(&format!("\"$BIN\" --dir '{}' --json id", dir.display()), "")
        .expect("script")
        .code(0);
    assert!(!r.stdout.contains("warning"), "{r:?}");
}
