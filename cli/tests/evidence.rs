//! Golden tests of `custodia evidence add` and `custodia evidence check`.

mod common;

use std::path::{Path, PathBuf};

use common::{at, init, normalize, open_case};
use custodia_node::{hash_reader, Wanted};

const NOTES: &[u8] = b"hello evidence\n";
const NOTES_SHA256: &str = "fe482b5e524c67728f4f2b4f430cd10d9a25659641f995ae537b282ccd181e0b";
const NOTES_SHA1: &str = "0996ce4c94b8d5abc403a98babe81e009252d8c5";
const NOTES_MD5: &str = "512af7a35be826965f52a7b0fed2511e";

fn sha256(bytes: &[u8]) -> String {
    hex::encode(
        hash_reader(bytes, Wanted::default(), &mut |_| {})
            .expect("hashing a slice")
            .digests
            .sha256,
    )
}

struct Setup {
    tmp: tempfile::TempDir,
    node: PathBuf,
    case: String,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let node = tmp.path().join("manila");
        init(&node, "Manila Cybercrime Unit", "PH");
        let case = open_case(&node, "Operation Test", "MCU-T-1");
        Setup { tmp, node, case }
    }

    fn file(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }

    fn tmp(&self) -> &str {
        self.tmp.path().to_str().expect("UTF-8")
    }

    fn items(&self) -> Vec<serde_json::Value> {
        let show = at(&self.node, &["--json", "case", "show", &self.case]).json();
        show["items"].as_array().expect("items").clone()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8")
}

const PNG: &[u8] = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0";

#[test]
fn add_registers_each_file_of_a_directory_sorted_in_one_go() {
    let t = Setup::new();
    let notes = t.file("seized/notes.txt", NOTES);
    t.file("seized/photos/p2.jpg", JPEG);
    t.file("seized/photos/p1.png", PNG);
    let before = std::fs::metadata(&notes).expect("stat");
    let dir = t.tmp.path().join("seized");
    let r = at(
        &t.node,
        &[
            "evidence",
            "add",
            &t.case[..8],
            s(&dir),
            "--exhibit",
            "EX-7",
            "--description",
            "Seized laptop",
            "--also",
            "md5,sha1",
        ],
    )
    .code(0);
    let png = sha256(PNG);
    let jpeg = sha256(JPEG);
    assert_eq!(
        normalize(
            &r.stdout,
            &[(t.tmp(), "<TMP>")],
            &[NOTES_SHA256, &png, &jpeg]
        ),
        format!(
            "<UUID>  EX-7.1  {NOTES_SHA256}  <TMP>/seized/notes.txt\n\
             <UUID>  EX-7.2  {png}  <TMP>/seized/photos/p1.png\n\
             <UUID>  EX-7.3  {jpeg}  <TMP>/seized/photos/p2.jpg\n"
        )
    );
    assert_eq!(
        r.stderr, "",
        "no progress bar when stderr is not a terminal"
    );
    // The file is untouched.
    let after = std::fs::metadata(&notes).expect("stat");
    assert_eq!(std::fs::read(&notes).expect("read"), NOTES);
    assert_eq!(before.modified().ok(), after.modified().ok());
    assert_eq!(before.len(), after.len());
    // What the case now records.
    let items = t.items();
    assert_eq!(items.len(), 3);
    let by_exhibit = |x: &str| {
        items
            .iter()
            .find(|i| i["exhibit"] == x)
            .cloned()
            .expect("the exhibit")
    };
    let n = by_exhibit("EX-7.1");
    assert_eq!(n["sha256"], NOTES_SHA256);
    assert_eq!(n["sha1"], NOTES_SHA1);
    assert_eq!(n["md5"], NOTES_MD5);
    assert_eq!(n["size"], 15);
    assert_eq!(n["media_type"], "text/plain");
    assert_eq!(n["description"], "Seized laptop");
    assert_eq!(n["holder_name"], "Manila Cybercrime Unit");
    assert_eq!(by_exhibit("EX-7.2")["media_type"], "image/png");
    assert_eq!(by_exhibit("EX-7.3")["media_type"], "image/jpeg");
    let uuid = n["item"].as_str().expect("uuid");
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "a version-4 UUID: {uuid}");
}

#[test]
fn add_json_is_an_array_and_sha256_only_by_default() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let v = at(
        &t.node,
        &[
            "--json",
            "evidence",
            "add",
            &t.case,
            s(&notes),
            "--exhibit",
            "EX-1",
        ],
    )
    .json();
    let a = v["registered"].as_array().expect("an array");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["exhibit"], "EX-1");
    assert_eq!(a[0]["sha256"], NOTES_SHA256);
    assert_eq!(a[0]["sha1"], serde_json::Value::Null);
    assert_eq!(a[0]["md5"], serde_json::Value::Null);
    assert_eq!(a[0]["size"], 15);
    assert_eq!(a[0]["case"], t.case.as_str());
    assert_eq!(a[0]["entry"].as_str().map(str::len), Some(64));
}

#[test]
fn a_missing_file_is_an_error_naming_it_and_nothing_is_registered() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let missing = t.tmp.path().join("missing.img");
    let r = at(
        &t.node,
        &["evidence", "add", &t.case, s(&notes), s(&missing)],
    )
    .code(2);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .starts_with(&format!("error: {}: ", missing.display())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
    assert!(t.items().is_empty());
}

#[test]
fn a_file_that_cannot_be_read_is_an_error_and_nothing_is_registered() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    // Opens, but every read fails (EIO): the failure comes while hashing,
    // after the first file was hashed, and still nothing is written.
    let proc_mem = Path::new("/proc/self/mem");
    if proc_mem.exists() {
        let r = at(
            &t.node,
            &["evidence", "add", &t.case, s(&notes), "/proc/self/mem"],
        )
        .code(2);
        assert!(r.stderr.contains("/proc/self/mem"), "{}", r.stderr);
        assert!(t.items().is_empty());
    }
    // Permission denied (root reads anything, so only checked otherwise).
    let locked = t.file("locked.img", b"secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    if std::fs::File::open(&locked).is_err() {
        let r = at(
            &t.node,
            &["evidence", "add", &t.case, s(&notes), s(&locked)],
        )
        .code(2);
        assert!(r.stderr.contains("locked.img"), "{}", r.stderr);
        assert!(r.stderr.contains("ermission denied"), "{}", r.stderr);
        assert!(t.items().is_empty());
    }
}

#[test]
fn an_unknown_case_is_exit_2() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let r = at(&t.node, &["evidence", "add", "deadbeef00", s(&notes)]).code(2);
    assert_eq!(
        r.stderr,
        "error: no case \"deadbeef00\" in this node's store (see `custodia case list`)\n"
    );
}

fn register(t: &Setup, path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--json", "evidence", "add", &t.case, s(path)];
    args.extend_from_slice(extra);
    let v = at(&t.node, &args).json();
    v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned()
}

#[test]
fn check_says_match_and_exits_0() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let item = register(&t, &notes, &["--exhibit", "EX-1", "--also", "sha1,md5"]);
    // By prefix, by UUID without dashes, by UUID.
    let compact = item.replace('-', "");
    for id in [&item[..8], compact.as_str(), item.as_str()] {
        let r = at(&t.node, &["evidence", "check", id, s(&notes)]).code(0);
        assert_eq!(
            normalize(
                &r.stdout,
                &[(t.tmp(), "<TMP>")],
                &[NOTES_SHA256, NOTES_SHA1, NOTES_MD5]
            ),
            format!(
                "MATCH: <TMP>/notes.txt is item EX-1 (<UUID>)\n  \
                 sha256  matches     {NOTES_SHA256}\n  \
                 sha1    matches     {NOTES_SHA1}\n  \
                 md5     matches     {NOTES_MD5}\n  \
                 size    matches     15 bytes\n\
                 Record it: custodia custody record <UUID> --action examined --digest-matched yes\n"
            )
        );
    }
    let v = at(&t.node, &["--json", "evidence", "check", &item, s(&notes)]).json();
    assert_eq!(v["matches"], true);
    assert_eq!(v["differs"], serde_json::json!([]));
}

#[test]
fn check_says_what_differs_and_exits_1() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let item = register(&t, &notes, &["--exhibit", "EX-1"]);
    let changed = t.file("changed.txt", b"hello evidencE\n");
    let r = at(&t.node, &["evidence", "check", &item, s(&changed)]).code(1);
    let now = sha256(b"hello evidencE\n");
    assert_eq!(
        normalize(&r.stdout, &[(t.tmp(), "<TMP>")], &[NOTES_SHA256, &now]),
        format!(
            "MISMATCH: <TMP>/changed.txt is not item EX-1 (<UUID>)\n  \
             sha256  DIFFERS     registered {NOTES_SHA256}\n                      \
             file       {now}\n  \
             size    matches     15 bytes\n\
             Record it: custodia custody record <UUID> --action examined --digest-matched no\n"
        )
    );
    let longer = t.file("longer.txt", b"hello evidence\n\n");
    let v = custodia_json_code(
        &t.node,
        &["--json", "evidence", "check", &item, s(&longer)],
        1,
    );
    assert_eq!(v["matches"], false);
    assert_eq!(v["differs"], serde_json::json!(["size", "sha256"]));
    assert_eq!(v["registered"]["size"], 15);
    assert_eq!(v["file"]["size"], 16);
    let r = at(&t.node, &["evidence", "check", &item, s(&longer)]).code(1);
    assert!(
        r.stdout
            .contains("  size    DIFFERS     registered 15 bytes, file 16 bytes\n"),
        "{}",
        r.stdout
    );
}

fn custodia_json_code(dir: &Path, args: &[&str], code: i32) -> serde_json::Value {
    let r = at(dir, args).code(code);
    serde_json::from_str(&r.stdout).expect("JSON")
}

#[test]
fn check_of_an_unknown_item_or_missing_file_is_exit_2() {
    let t = Setup::new();
    let notes = t.file("notes.txt", NOTES);
    let item = register(&t, &notes, &[]);
    let r = at(&t.node, &["evidence", "check", "abcdef12", s(&notes)]).code(2);
    assert_eq!(
        r.stderr,
        "error: no item \"abcdef12\" in this node's cases (see `custodia case show CASE`)\n"
    );
    let r = at(&t.node, &["evidence", "check", "ab", s(&notes)]).code(2);
    assert!(
        r.stderr.contains("at least 6 hex characters"),
        "{}",
        r.stderr
    );
    let gone = t.tmp.path().join("gone.txt");
    let r = at(&t.node, &["evidence", "check", &item, s(&gone)]).code(2);
    assert!(r.stderr.contains("gone.txt"), "{}", r.stderr);
}

/// Registering the same file twice in a case is refused (exit 1, naming
/// the item that has its SHA-256, nothing written) unless the operator
/// says why with --allow-duplicate; the reason is signed as a note about
/// the new item, in the same transaction.
#[test]
fn the_same_file_twice_is_refused_unless_the_reason_is_given() {
    let t = Setup::new();
    let notes = t.file("seized/notes.txt", NOTES);
    let first = register(&t, &notes, &["--exhibit", "EX-1"]);
    let log_before = at(&t.node, &["--json", "case", "log", &t.case]).json();

    let r = at(
        &t.node,
        &["evidence", "add", &t.case, s(&notes), "--exhibit", "EX-1"],
    )
    .code(1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        normalize(&r.stderr, &[(t.tmp(), "<TMP>")], &[]),
        "error: <TMP>/seized/notes.txt has the SHA-256 of item EX-1 (<UUID>), registered by Manila Cybercrime Unit; nothing was registered. To register it again as a separate item, say why: --allow-duplicate REASON\n"
    );
    assert!(r.stderr.contains(&first), "{}", r.stderr);
    // Nothing was written, and the case shows no conflict.
    let log_after = at(&t.node, &["--json", "case", "log", &t.case]).json();
    assert_eq!(log_before, log_after);
    assert_eq!(t.items().len(), 1);

    // A copy under another name, and two equal files in one directory, are
    // the same evidence too.
    let copy = t.file("elsewhere/copy-of-notes.txt", NOTES);
    at(&t.node, &["evidence", "add", &t.case, s(&copy)]).code(1);
    t.file("twins/a.bin", b"twin");
    t.file("twins/b.bin", b"twin");
    let twins = t.tmp.path().join("twins");
    let r = at(&t.node, &["evidence", "add", &t.case, s(&twins)]).code(1);
    assert_eq!(
        normalize(&r.stderr, &[(t.tmp(), "<TMP>")], &[]),
        "error: <TMP>/twins/b.bin has the SHA-256 of <TMP>/twins/a.bin, in the same registration; nothing was registered. To register it again as a separate item, say why: --allow-duplicate REASON\n"
    );
    assert_eq!(t.items().len(), 1);

    // An empty reason is a usage error.
    at(
        &t.node,
        &[
            "evidence",
            "add",
            &t.case,
            s(&notes),
            "--allow-duplicate",
            " ",
        ],
    )
    .code(2);

    // With a reason: a second item, and a signed note saying why.
    let v = at(
        &t.node,
        &[
            "--json",
            "evidence",
            "add",
            &t.case,
            s(&notes),
            "--exhibit",
            "EX-1B",
            "--allow-duplicate",
            "second seizure of the same file from another device",
        ],
    )
    .json();
    let second = v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(v["registered"][0]["duplicate_of"], first.as_str());
    assert!(
        v["registered"][0]["note"]
            .as_str()
            .is_some_and(|n| n.len() == 64),
        "{v}"
    );
    let log = at(&t.node, &["case", "log", &t.case]).code(0);
    assert!(
        log.stdout.contains(&format!(
            "note on item EX-1B ({}): registered again although item EX-1 ({first}) has the same SHA-256: second seizure of the same file from another device",
            &second[..8]
        )),
        "{}",
        log.stdout
    );
    assert_eq!(t.items().len(), 2);
}

/// A working copy registered with `--derived-from` its source shares the
/// source's SHA-256 legitimately: it is registered, and the case records
/// no duplicate-digest conflict.
#[test]
fn a_working_copy_derived_from_its_source_is_no_duplicate() {
    let t = Setup::new();
    let notes = t.file("seized/notes.txt", NOTES);
    let first = register(&t, &notes, &["--exhibit", "EX-1"]);
    let copy = t.file("lab/working-copy.txt", NOTES);
    let v = at(
        &t.node,
        &[
            "--json",
            "evidence",
            "add",
            &t.case,
            s(&copy),
            "--exhibit",
            "EX-1-WC",
            "--derived-from",
            &first,
        ],
    )
    .code(0)
    .json();
    assert!(v.to_string().contains("EX-1-WC"), "{v}");
    assert_eq!(t.items().len(), 2);
    let show = at(&t.node, &["--json", "case", "show", &t.case])
        .code(0)
        .json();
    assert_eq!(
        show["conflicts"].as_array().map(Vec::len),
        Some(0),
        "no conflict for a derived copy: {show}"
    );
    // Without --derived-from the same copy is refused as a duplicate.
    let again = t.file("lab/another-copy.txt", NOTES);
    at(&t.node, &["evidence", "add", &t.case, s(&again)]).code(1);
}
