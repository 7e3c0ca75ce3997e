//! A careless operator and a damaged or tampered store, through the real
//! `custodia` binary on real SQLite files: entries the rules refuse are
//! never stored; rows that fail verification are quarantined (never shown,
//! chained onto, served or exported) and every command that reads their
//! case says so; `case show` lists the stored equivocation proofs; key
//! files and the store are private.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{at, init, open_case};
use custodia_node::Store;
use custodia_protocol::{
    Body, CaseId, Entry, EntryId, MemberAdded, Note, Payload, Role, SyncItem, Tlp, FORMAT_VERSION,
};

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Node {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    case: String,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("manila");
        init(&dir, "Manila Cybercrime Unit", "PH");
        let case = open_case(&dir, "Operation Test", "MCU-T-1");
        Node { tmp, dir, case }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("store.sqlite")
    }

    fn case_id(&self) -> CaseId {
        CaseId::from_hex(&self.case).expect("a case id")
    }

    fn file(&self, name: &str, body: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    fn add_evidence(&self, name: &str, description: &str) {
        let f = self.file(name, name.as_bytes());
        at(
            &self.dir,
            &[
                "evidence",
                "add",
                &self.case,
                s(&f),
                "--description",
                description,
            ],
        )
        .code(0);
    }

    /// This agency's entry at `seq` of the case, signed with its own key.
    fn sign(&self, seq: u64, prev: EntryId, body: Body) -> Entry {
        let me = custodia_node::read_key_file(&self.dir.join("identity.key")).expect("the key");
        Entry::sign(
            &me,
            &Payload {
                v: FORMAT_VERSION,
                keys: None,
                case: Some(self.case_id()),
                author: me.agency(),
                seq,
                prev: Some(prev),
                refs: Vec::new(),
                time: now_ms(),
                tlp: Tlp::Amber,
                to: None,
                body,
            },
        )
    }

    /// Writes a row straight into the SQLite file, as an intruder or a
    /// faulty tool would.
    fn insert_row(&self, id: &EntryId, seq: u64, bytes: &[u8]) {
        let conn = rusqlite::Connection::open(self.db()).expect("open the store file");
        let me = custodia_node::read_key_file(&self.dir.join("identity.key")).expect("the key");
        conn.execute(
            "INSERT INTO entries (rev, id, case_id, author, seq, bytes, stored_at)
             VALUES ((SELECT MAX(rev) + 1 FROM entries), ?1, ?2, ?3, ?4, ?5, 0)",
            rusqlite::params![
                &id.0[..],
                &self.case_id().0[..],
                &me.agency().0[..],
                seq as i64,
                bytes
            ],
        )
        .expect("insert");
    }
}

fn stored_entries(db: &Path, case: &CaseId) -> Vec<Entry> {
    Store::open(db)
        .expect("the store opens")
        .entries(case)
        .expect("entries")
}

/// `case open` with a 70,000-character title and `evidence add` with a
/// 70,000-character description: refused with the rule and its limit,
/// exit 1, nothing stored, and later writes of the agency still work.
#[test]
fn an_entry_over_the_size_limit_is_refused_and_never_stored() {
    let n = Node::new();
    let long = "x".repeat(70_000);
    let r = at(
        &n.dir,
        &["case", "open", "--title", &long, "--reference", "BIG-1"],
    )
    .code(1);
    assert!(
        r.stderr.contains("V1") && r.stderr.contains("65536"),
        "the rule and its limit are named: {}",
        r.stderr
    );
    let list = at(&n.dir, &["--json", "case", "list"]).json();
    assert_eq!(
        list["cases"].as_array().map(Vec::len),
        Some(1),
        "no second case"
    );

    let f = n.file("phone.img", b"phone");
    let r = at(
        &n.dir,
        &["evidence", "add", &n.case, s(&f), "--description", &long],
    )
    .code(1);
    assert!(
        r.stderr.contains("V1") && r.stderr.contains("65536"),
        "{}",
        r.stderr
    );
    assert_eq!(stored_entries(&n.db(), &n.case_id()).len(), 1);

    // The agency is not locked out of its case.
    n.add_evidence("chat.txt", "chat export");
    n.add_evidence("laptop.img", "seized laptop");
    let entries = stored_entries(&n.db(), &n.case_id());
    assert_eq!(
        entries.iter().map(Entry::seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    at(&n.dir, &["store", "check"]).code(0);
}

/// A row with a bad signature written into the SQLite file is quarantined:
/// not shown, not chained onto by the next write, not offered to peers,
/// not exported; `store check` lists it and every read of the case warns.
#[test]
fn a_row_with_a_bad_signature_is_quarantined() {
    let n = Node::new();
    let case = n.case_id();
    let genesis = EntryId(case.0);
    let forged = n.sign(
        1,
        genesis,
        Body::MemberAdded(MemberAdded {
            agency: custodia_protocol::Identity::from_seed([9; 32]).agency(),
            name: "Mallory Unit".into(),
            country: "ZZ".into(),
            role: Role::Lead,
        }),
    );
    let mut bytes = forged.bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last - 40] ^= 0x01; // inside the signature's R
    let id = EntryId::of(&bytes);
    n.insert_row(&id, 1, &bytes);

    let show = at(&n.dir, &["--json", "case", "show", &n.case]);
    assert!(
        show.stderr.contains("quarantined"),
        "a warning: {}",
        show.stderr
    );
    let show = show.json();
    assert!(
        !show.to_string().contains("Mallory"),
        "the forged member is not shown: {show}"
    );
    let q = show["quarantined"].as_array().expect("a quarantined list");
    assert_eq!(q.len(), 1, "{show}");
    assert_eq!(q[0]["entry"], id.to_hex());
    assert!(q[0]["reason"].as_str().is_some_and(|r| r.contains("V8")));

    // Not offered to peers.
    {
        let store = Store::open(&n.db()).expect("open");
        let heads = store.row_heads_after(&case, 0, 100).expect("heads");
        assert!(heads.iter().all(|h| h.id != id), "never served");
    }

    // The row was of this agency's own chain: it may be a genuine entry
    // that peers hold, so writing is refused until it is received again
    // or the operator releases the hold (SPEC.md §9.14).
    let bravo = custodia_protocol::Identity::from_seed([7; 32]).agency();
    let share = [
        "--json",
        "case",
        "share",
        &n.case,
        "--with",
        &bravo.to_hex(),
        "--name",
        "Berlin Partner Unit",
        "--country",
        "DE",
    ];
    let r = at(&n.dir, &share).code(1);
    assert!(r.stderr.contains("release-hold"), "{}", r.stderr);
    at(
        &n.dir,
        &[
            "case",
            "release-hold",
            &n.case,
            "--reason",
            "the row was forged; no peer holds it",
        ],
    )
    .code(0);
    // Then the next write takes the position; it chains onto the genuine
    // head.
    let r = at(&n.dir, &share);
    assert!(r.stderr.contains("quarantined"), "{}", r.stderr);
    let written = EntryId::from_hex(r.json()["entry"].as_str().expect("entry")).expect("an id");
    let entries = stored_entries(&n.db(), &case);
    let e = entries
        .iter()
        .find(|e| e.id() == written)
        .expect("the share is stored");
    assert_eq!(e.seq(), 1);
    assert_eq!(e.payload().prev, Some(genesis));

    // Export leaves it out, and the bundle verifies.
    let file = n.tmp.path().join("case.custodia");
    let r = at(&n.dir, &["export", &n.case, "--out", s(&file)]).code(0);
    assert!(r.stderr.contains("quarantined"), "{}", r.stderr);
    let bundle = std::fs::read(&file).expect("the bundle");
    assert!(!bundle.windows(bytes.len()).any(|w| w == bytes.as_slice()));
    common::custodia(&["verify", s(&file)]).code(0);

    // The store check lists it, with the rule.
    let r = at(&n.dir, &["--json", "store", "check"]).code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let problems = v["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["entry"] == id.to_hex()
            && p["problem"].as_str().is_some_and(|w| w.contains("V8"))),
        "{v}"
    );
}

/// One flipped byte in the store file: `case show`, `case list` and `case
/// log` each warn on stderr and carry a `quarantined` field in JSON.
#[test]
fn a_flipped_byte_in_the_store_file_is_reported_by_every_read_of_the_case() {
    let n = Node::new();
    n.add_evidence("phone.img", "seized phone");
    n.add_evidence("laptop.img", "seized laptop DAMAGED-HERE");
    n.add_evidence("chat.txt", "chat export");
    n.add_evidence("disk.img", "external disk");
    // Flip one byte of the third entry where it lies in the file (the
    // last process to close the store checkpointed its WAL).
    let db = n.db();
    let mut file = std::fs::read(&db).expect("read the store file");
    let needle = b"DAMAGED-HERE";
    let mut hits = 0;
    for i in 0..file.len().saturating_sub(needle.len()) {
        if &file[i..i + needle.len()] == needle {
            file[i] ^= 0x20;
            hits += 1;
        }
    }
    assert!(hits > 0, "the description is in the file");
    std::fs::write(&db, &file).expect("write the store file");

    for cmd in [&["case", "show", &n.case][..], &["case", "log", &n.case]] {
        let r = at(&n.dir, cmd).code(0);
        assert!(r.stderr.contains("quarantined"), "{cmd:?}: {}", r.stderr);
    }
    let r = at(&n.dir, &["case", "list"]).code(0);
    assert!(r.stderr.contains("quarantined"), "{}", r.stderr);

    let show = at(&n.dir, &["--json", "case", "show", &n.case]).json();
    let q = show["quarantined"].as_array().expect("quarantined");
    assert!(!q.is_empty(), "{show}");
    assert!(
        q.iter()
            .any(|x| x["reason"].as_str().is_some_and(|r| r.contains("hash"))),
        "{show}"
    );
    let list = at(&n.dir, &["--json", "case", "list"]).json();
    // The same rows in every document that lists them.
    assert_eq!(list["cases"][0]["quarantined"], show["quarantined"]);
    let log = at(&n.dir, &["--json", "case", "log", &n.case]).json();
    let rows = log["entries"].as_array().expect("rows");
    assert_eq!(
        rows.iter().filter(|r| r["quarantined"] == true).count(),
        q.len(),
        "{log}"
    );
    assert!(rows.iter().any(|r| r["quarantined"] == false));
}

/// An equivocation proof the store holds is shown by `case show`, as
/// `export` puts it into the bundle.
#[test]
fn case_show_lists_the_stored_equivocation_proofs() {
    let n = Node::new();
    let case = n.case_id();
    let genesis = EntryId(case.0);
    let note = |text: &str| {
        Body::Note(Note {
            text: text.into(),
            item: None,
        })
    };
    let one = n.sign(1, genesis, note("first version"));
    let two = n.sign(1, genesis, note("second version"));
    {
        let mut store = Store::open(&n.db()).expect("open");
        for e in [&one, &two] {
            store
                .receive(&case, vec![SyncItem::Entry(e.bytes().to_vec())], now_ms())
                .expect("receive");
        }
        assert_eq!(store.proofs(&case).expect("proofs").len(), 1);
    }
    let r = at(&n.dir, &["case", "show", &n.case]).code(0);
    assert!(
        r.stdout.contains("Equivocation proofs")
            && r.stdout
                .contains("Manila Cybercrime Unit signed two different entries at sequence 1"),
        "{}",
        r.stdout
    );
    let show = at(&n.dir, &["--json", "case", "show", &n.case]).json();
    let proofs = show["equivocation_proofs"].as_array().expect("proofs");
    assert_eq!(proofs.len(), 1, "{show}");
    assert_eq!(proofs[0]["seq"], 1);
    let ids = [one.id().to_hex(), two.id().to_hex()];
    assert!(ids.contains(&proofs[0]["first"].as_str().unwrap_or_default().to_owned()));
    assert!(ids.contains(&proofs[0]["second"].as_str().unwrap_or_default().to_owned()));
}

/// A bundle carrying an equivocation proof verifies, but its verdict says
/// so in every output: not the plain VALID of a clean record.
#[test]
fn an_equivocation_gives_a_valid_with_conflicts_verdict_in_every_output() {
    let n = Node::new();
    let case = n.case_id();
    let genesis = EntryId(case.0);
    let note = |text: &str| {
        Body::Note(Note {
            text: text.into(),
            item: None,
        })
    };
    let one = n.sign(1, genesis, note("first version"));
    let two = n.sign(1, genesis, note("second version"));
    {
        let mut store = Store::open(&n.db()).expect("open");
        for e in [&one, &two] {
            store
                .receive(&case, vec![SyncItem::Entry(e.bytes().to_vec())], now_ms())
                .expect("receive");
        }
    }
    let file = n.tmp.path().join("case.custodia");
    let html = n.tmp.path().join("report.html");
    at(&n.dir, &["export", &n.case, "--out", s(&file)]).code(0);
    let want = "VALID, WITH CONFLICTS: 1 equivocation; every signature and every link of the record checks (2 entries)";
    let r = at(&n.dir, &["verify", s(&file), "--html", s(&html)]).code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&want), "{}", r.stdout);
    assert_eq!(lines.last(), Some(&want), "{}", r.stdout);
    let v = at(&n.dir, &["--json", "verify", s(&file)]).json();
    assert_eq!(v["verdict"], "valid-with-conflicts", "{v}");
    assert_eq!(v["conflict_counts"], serde_json::json!({"equivocation": 1}));
    assert_eq!(v["summary"], want);
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(
        page.contains("<div class=\"verdict conflicts\"><div class=\"word\">VALID, WITH CONFLICTS</div><p><strong>VALID, WITH CONFLICTS: 1 equivocation;"),
        "{page}"
    );
    // What each version says, side by side: in the text, the JSON and the
    // page, with the one the record follows marked.
    for says in ["note: first version", "note: second version"] {
        assert!(r.stdout.contains(&format!("says: {says}")), "{}", r.stdout);
        assert!(page.contains(says), "{says} not on the page");
    }
    assert_eq!(
        r.stdout.matches("(the record here follows it)").count(),
        1,
        "{}",
        r.stdout
    );
    let versions = v["conflicts"][0]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{v}");
    let mut said: Vec<&str> = versions.iter().filter_map(|x| x["says"].as_str()).collect();
    said.sort_unstable();
    assert_eq!(said, ["note: first version", "note: second version"]);
    assert_eq!(
        versions.iter().filter(|x| x["in_record"] == true).count(),
        1
    );
    let ids: Vec<String> = versions
        .iter()
        .filter_map(|x| x["entry"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&one.id().to_hex()) && ids.contains(&two.id().to_hex()));
    assert!(page.contains("<table class=\"versions\">"), "{page}");
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Under the usual umask 022 the node folder is 0700 and the store, its
/// WAL and shared-memory files 0600; a folder an older version left
/// readable is tightened when it is opened.
#[cfg(unix)]
#[test]
fn the_node_folder_and_the_store_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("node");
    let run = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" --dir \"$1\" init --no-passphrase --agency Manila --country PH")
        .arg(env!("CARGO_BIN_EXE_custodia"))
        .arg(&dir)
        .env_remove("CUSTODIA_DIR")
        .output()
        .expect("init runs");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("identity.key")), 0o600);
    assert_eq!(mode(&dir.join("store.sqlite")), 0o600);
    // While a store is open its WAL and shared memory exist.
    let db = dir.join("store.sqlite");
    let store = Store::open(&db).expect("open");
    for f in ["store.sqlite-wal", "store.sqlite-shm"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    drop(store);

    // As an older version left them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    at(&dir, &["case", "list"]).code(0);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
}

/// A key file others may read is refused, with the fix.
#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("node");
    init(&dir, "Manila", "PH");
    let key = dir.join("identity.key");
    for m in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).expect("chmod");
        let r = at(&dir, &["id"]).code(2);
        assert!(
            r.stderr.contains(&format!("chmod 600 {}", key.display())),
            "{m:o}: {}",
            r.stderr
        );
        at(&dir, &["case", "list"]).code(2);
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    at(&dir, &["id"]).code(0);
}

/// Runs `custodia ARGS` and gives it at most `limit` to finish (a guard
/// against a hang: the test fails instead of blocking forever).
fn bounded(args: &[&str], limit: Duration) -> Option<std::process::Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("custodia starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A key path naming a FIFO or a device is refused at once, without
/// reading from it.
#[cfg(unix)]
#[test]
fn a_key_path_naming_a_fifo_or_a_device_is_refused_at_once() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("node");
    init(&dir, "Manila", "PH");
    let fifo = tmp.path().join("key.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let config = dir.join("custodia.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    for target in [fifo.as_path(), Path::new("/dev/zero")] {
        std::fs::write(
            &config,
            text.replace("\"identity.key\"", &format!("{:?}", s(target))),
        )
        .expect("write config");
        let out = bounded(&["--dir", s(&dir), "id"], Duration::from_secs(60))
            .unwrap_or_else(|| panic!("reading the key {} did not finish", target.display()));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{err}");
    }
}
