//! Helpers for the CLI's golden tests: run the real binary, normalise what
//! varies between runs (keys, ids, UUIDs, times, temporary paths), and move
//! entries between two node directories without a network.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use custodia_node::Store;
use custodia_protocol::{CaseId, SyncItem, WithheldPosition};

/// What a run of the binary produced.
#[derive(Debug)]
pub(crate) struct Run {
    /// Exit code.
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts the exit code, showing everything on failure.
    #[track_caller]
    pub(crate) fn code(self, want: i32) -> Run {
        assert_eq!(self.code, want, "exit code; the run was {self:#?}");
        self
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub(crate) fn json(self) -> serde_json::Value {
        let r = self.code(0);
        serde_json::from_str(&r.stdout).expect("stdout is JSON")
    }
}

/// Runs `custodia ARGS` with no CUSTODIA_DIR in the environment.
pub(crate) fn custodia(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .env("NO_COLOR", "1")
        .output()
        .expect("the custodia binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `custodia --dir DIR ARGS`.
pub(crate) fn at(dir: &Path, args: &[&str]) -> Run {
    let d = dir.to_str().expect("a UTF-8 path");
    let mut all = vec!["--dir", d];
    all.extend_from_slice(args);
    custodia(&all)
}

/// An initialised node (its key unencrypted: unlocking an encrypted key
/// costs a second per command); its agency id.
pub(crate) fn init(dir: &Path, name: &str, country: &str) -> String {
    let v = at(
        dir,
        &[
            "--json",
            "init",
            "--no-passphrase",
            "--agency",
            name,
            "--country",
            country,
        ],
    )
    .json();
    v["agency"].as_str().expect("an agency id").to_owned()
}

/// Opens a case; its id.
pub(crate) fn open_case(dir: &Path, title: &str, reference: &str) -> String {
    let v = at(
        dir,
        &[
            "--json",
            "case",
            "open",
            "--title",
            title,
            "--reference",
            reference,
        ],
    )
    .json();
    v["case"].as_str().expect("a case id").to_owned()
}

/// Copies every entry of a case from one node's store to another's, as
/// replication would (validated by the receiving store).
pub(crate) fn sync(from: &Path, to: &Path, case: &str) {
    let case = CaseId::from_hex(case).expect("a case id");
    let src = Store::open(&from.join("store.sqlite")).expect("source store");
    let rows = src.rows_after(&case, 0, 1 << 20).expect("rows of the case");
    let items: Vec<SyncItem> = rows
        .into_iter()
        .map(|r| match r.bytes {
            Some(b) => SyncItem::Entry(b),
            None => SyncItem::Withheld(WithheldPosition {
                author: r.author,
                seq: r.seq,
                id: r.id,
            }),
        })
        .collect();
    let mut dst = Store::open(&to.join("store.sqlite")).expect("destination store");
    let outcome = dst.receive(&case, items, now_ms()).expect("receive");
    assert!(
        outcome.refused.is_empty(),
        "entries refused: {:?}",
        outcome.refused
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Replaces what varies between runs with placeholders: `literal` pairs
/// first (e.g. a temporary directory → `<TMP>`), then any UUID (`<UUID>`),
/// fingerprint (`<FP>`), ISO time (`<TIME>`), 64-hex id (`<ID>`), 12-hex
/// short id (`<SHORT>`) and 8-hex UUID prefix (`<U8>`), except the
/// tokens in `keep` (for instance the digests of known files).
pub(crate) fn normalize(text: &str, literal: &[(&str, &str)], keep: &[&str]) -> String {
    let mut t = text.to_owned();
    for (from, to) in literal {
        t = t.replace(from, to);
    }
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(&classify(token, keep));
        token.clear();
    };
    for c in t.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn classify(token: &str, keep: &[&str]) -> String {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let groups: Vec<&str> = token.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if keep.contains(&token) {
        token.to_owned()
    } else if lens == [8, 4, 4, 4, 12] && groups.iter().all(|g| hex(g)) {
        "<UUID>".into()
    } else if lens == [4, 4, 4, 4, 4] && groups.iter().all(|g| hex(g)) {
        "<FP>".into()
    } else if token.len() == 20
        && token.as_bytes()[10] == b'T'
        && token.ends_with('Z')
        && token.starts_with("20")
    {
        "<TIME>".into()
    } else if hex(token) && token.len() == 64 {
        "<ID>".into()
    } else if hex(token) && token.len() == 12 {
        "<SHORT>".into()
    } else if hex(token) && token.len() == 8 {
        "<U8>".into()
    } else {
        token.to_owned()
    }
}

/// A `custodia node run` process, stopped (and waited for) when dropped.
pub(crate) struct NodeProcess(std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `custodia --dir DIR node run` in the background; its log goes
/// to DIR/../NAME.log.
pub(crate) fn spawn_node(dir: &Path) -> NodeProcess {
    let name = dir.file_name().expect("a folder name").to_owned();
    let mut log_name = name;
    log_name.push(".log");
    let log = std::fs::File::create(dir.with_file_name(log_name)).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("--dir")
        .arg(dir)
        .args(["node", "run"])
        .env_remove("CUSTODIA_DIR")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("custodia node run starts");
    NodeProcess(child)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `check` every 100 ms until it holds; panics with `what` after a
/// minute (a bound against a hang, not a timing assertion).
#[track_caller]
pub(crate) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("still waiting, after a minute, for {what}");
}

pub(crate) mod hostile;

/// The node's key log, read straight from its store file (as an
/// independent reader would: statement bytes, checked from scratch). For a
/// store that holds only its own agency's log (no partner's has synced).
pub(crate) fn stored_log(dir: &Path) -> custodia_protocol::keylog::KeyLog {
    use custodia_protocol::keylog::{KeyLog, KeyStatement};
    let conn = rusqlite::Connection::open(dir.join("store.sqlite")).expect("store");
    let mut q = conn
        .prepare("SELECT bytes FROM key_statements ORDER BY seq")
        .expect("query");
    let rows: Vec<Vec<u8>> = q
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let mut it = rows
        .iter()
        .map(|b| KeyStatement::decode(b).expect("decodes"));
    let mut log = KeyLog::from_inception(it.next().expect("an inception")).expect("inception");
    for s in it {
        log.append(s).expect("appends");
    }
    log
}
