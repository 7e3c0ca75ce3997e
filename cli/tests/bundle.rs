//! Golden tests of `custodia export` (court bundle) and `custodia verify`:
//! exit codes 0 valid, 1 invalid, 2 unreadable; selective export; trust
//! files; the HTML report (well-formed, every item and problem, escaped).

mod common;

use std::path::{Path, PathBuf};

use common::{at, custodia, init, normalize, open_case, sync};

struct Case {
    tmp: tempfile::TempDir,
    manila: PathBuf,
    berlin: PathBuf,
    manila_key: String,
    berlin_key: String,
    case: String,
    phone: String,
    chat: String,
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Manila opens a case (with markup in its title), shares it with Berlin,
/// registers two files and transfers the phone to Berlin, which signs the
/// receipt; both nodes hold everything.
fn case() -> Case {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let manila = tmp.path().join("manila");
    let berlin = tmp.path().join("berlin");
    let manila_key = init(&manila, "Manila Cybercrime Unit", "PH");
    let berlin_key = init(&berlin, "Berlin <Partner> Unit", "DE");
    let case = open_case(&manila, "Operation <script>alert(1)</script>", "MCU-B-1");
    at(
        &manila,
        &[
            "case",
            "share",
            &case,
            "--with",
            &berlin_key,
            "--name",
            "Berlin <Partner> Unit",
            "--country",
            "DE",
        ],
    )
    .code(0);
    let mut items = Vec::new();
    for (name, body, exhibit) in [
        ("phone.img", &b"\0\x01 phone image"[..], "EX-1"),
        ("chat.txt", &b"chat export"[..], "EX-2"),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, body).expect("write");
        let v = at(
            &manila,
            &[
                "--json",
                "evidence",
                "add",
                &case,
                s(&f),
                "--exhibit",
                exhibit,
            ],
        )
        .json();
        items.push(
            v["registered"][0]["item"]
                .as_str()
                .expect("item")
                .to_owned(),
        );
    }
    let r = at(
        &manila,
        &[
            "--json",
            "custody",
            "transfer",
            &items[0],
            "--to",
            &berlin_key,
        ],
    )
    .json();
    let transfer = r["entry"].as_str().expect("transfer entry").to_owned();
    sync(&manila, &berlin, &case);
    at(&berlin, &["custody", "receive", &transfer]).code(0);
    sync(&berlin, &manila, &case);
    let chat = items.pop().expect("chat");
    let phone = items.pop().expect("phone");
    Case {
        tmp,
        manila,
        berlin,
        manila_key,
        berlin_key,
        case,
        phone,
        chat,
    }
}

fn uuid_bytes(uuid: &str) -> Vec<u8> {
    hex::decode(uuid.replace('-', "")).expect("a UUID")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_exported_case_verifies_anywhere_and_a_damaged_one_does_not() {
    let c = case();
    let file = c.tmp.path().join("case.custodia");
    let r = at(&c.berlin, &["export", &c.case[..10], "--out", s(&file)]).code(0);
    assert_eq!(
        normalize(&r.stdout, &[(s(&file), "<FILE>")], &[]),
        "Exported case Operation <script>alert(1)</script> (<SHORT>) to <FILE>\n\
         6 positions (6 disclosed, 0 withheld), 0 equivocation proof(s), BYTES bytes, signed by Berlin <Partner> Unit at <TIME>\n\
         Verify it anywhere with: custodia verify <FILE>\n"
            .replace("BYTES", &std::fs::metadata(&file).expect("file").len().to_string())
    );

    // Valid: exit 0, no node directory needed.
    let r = custodia(&["verify", s(&file)]).code(0);
    let first: Vec<&str> = r.stdout.lines().take(2).collect();
    assert_eq!(
        first,
        [
            "VALID: every signature and every link of the record checks (6 entries)",
            ""
        ]
    );
    assert!(r.stdout.contains("were NOT independently confirmed"));
    assert!(r.stdout.contains("EX-1"));
    assert!(r
        .stdout
        .contains("transferred  to Berlin <Partner> Unit; receipt [5] accepted"));
    let v = custodia(&["--json", "verify", s(&file)]).json();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2));

    // Invalid: an edited byte inside an entry; exit 1, the entry and rule named.
    let bytes = std::fs::read(&file).expect("bundle");
    let mut edited = bytes.clone();
    let at_text = edited
        .windows(b"EX-1".len())
        .position(|w| w == b"EX-1")
        .expect("the exhibit is in the registration");
    edited[at_text] ^= 0x20;
    let bad = c.tmp.path().join("edited.custodia");
    std::fs::write(&bad, &edited).expect("write");
    let r = custodia(&["verify", s(&bad)]).code(1);
    let head: Vec<&str> = r.stdout.lines().take(2).collect();
    assert_eq!(
        normalize(&head.join("\n"), &[], &[]),
        "INVALID: 5 problems (2 at the source, 3 consequences)\n\
         First problem: [2] V8 bad-signature: The digital signature on this entry does not match its content: the entry was altered after its author signed it, or it was not signed by the agency it names."
    );
    assert!(r.stdout.contains("  - B1 bundle-signature"));
    let v = custodia(&["--json", "verify", s(&bad)]);
    assert_eq!(v.code, 1);
    let v: serde_json::Value = serde_json::from_str(&v.stdout).expect("JSON");
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["problems"][0]["index"], 2);
    assert_eq!(v["problems"][0]["rule"], "V8");
    assert_eq!(v["problems"][0]["author_name"], "Manila Cybercrime Unit");

    // Unreadable: truncated, or not a bundle at all; exit 2.
    let cut = c.tmp.path().join("cut.custodia");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let r = custodia(&["verify", s(&cut)]).code(2);
    assert_eq!(
        normalize(&r.stderr, &[(s(&cut), "<FILE>")], &[]),
        format!(
            "error: <FILE>: truncated at byte {}: the file ends inside the payload (a complete file has at least {} bytes)\n",
            bytes.len() / 2,
            bytes.len() - 66
        )
    );
    let text = c.tmp.path().join("notes.txt");
    std::fs::write(&text, "meeting notes\n").expect("write");
    let r = custodia(&["verify", s(&text)]).code(2);
    assert_eq!(
        normalize(&r.stderr, &[(s(&text), "<FILE>")], &[]),
        "error: <FILE>: not a Custodia bundle: it does not start with the COSE_Sign1 tag 18 (byte d2); it starts with 6d 65 65 74 (text)\n"
    );
    let r = custodia(&["verify", s(&c.tmp.path().join("absent.custodia"))]).code(2);
    assert!(r.stderr.starts_with("error: reading "), "{}", r.stderr);
    let r = custodia(&["--json", "verify", s(&cut)]).code(2);
    assert_eq!(r.stdout, "", "errors never mix into standard output");
    let v: serde_json::Value = serde_json::from_str(&r.stderr).expect("a JSON error on stderr");
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(v["schema_version"], 1, "{v}");
}

/// A printed report can be tied to one file: the text, the JSON and the
/// HTML give the bundle's SHA-256 (as `sha256sum` computes it), its size
/// and the verifier's name and version.
#[test]
fn the_report_names_the_bundle_by_its_sha256_and_size_and_the_verifier() {
    let c = case();
    let file = c.tmp.path().join("case.custodia");
    at(&c.berlin, &["export", &c.case, "--out", s(&file)]).code(0);
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("sha256sum runs");
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned();
    assert_eq!(sum.len(), 64);
    let size = std::fs::metadata(&file).expect("file").len();
    let version = env!("CARGO_PKG_VERSION");
    let page = c.tmp.path().join("report.html");
    let r = custodia(&["verify", s(&file), "--html", s(&page)]).code(0);
    for want in [
        format!("SHA-256     {sum}"),
        format!("Size        {size} bytes"),
        format!("Verifier    custodia {version}"),
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "{want}\n{}", r.stdout);
    }
    let v = custodia(&["--json", "verify", s(&file)]).json();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["conflict_counts"], serde_json::json!({}));
    assert_eq!(v["bundle"]["sha256"], sum.as_str());
    assert_eq!(v["bundle"]["size"], size);
    assert_eq!(v["bundle"]["file"], s(&file));
    assert_eq!(v["verifier"]["name"], "custodia");
    assert_eq!(v["verifier"]["version"], version);
    let html = std::fs::read_to_string(&page).expect("report");
    assert!(
        html.contains(&format!(
            "SHA-256 <span class=\"mono\">{sum}</span>, {size} bytes; verified by custodia {version}"
        )),
        "{html}"
    );
    assert!(html.contains("<div class=\"verdict valid\"><div class=\"word\">VALID</div>"));

    // Piped in: the same digest and size.
    let bytes = std::fs::read(&file).expect("bundle");
    let (code, stdout, _) = verify_piped(&bytes);
    assert_eq!(code, Some(0));
    assert!(
        stdout.lines().any(|l| l == format!("SHA-256     {sum}")),
        "{stdout}"
    );
}

/// Notes signed with custody events (`--note`) are statements of the
/// record: each is in the item's timeline and in a Notes section, in the
/// text, the JSON and the HTML, escaped like all bundle text.
#[test]
fn notes_appear_in_every_output_of_verify() {
    let c = case();
    let text = "seal intact <b>on</b> arrival";
    at(
        &c.berlin,
        &[
            "custody", "record", &c.phone, "--action", "examined", "--note", text,
        ],
    )
    .code(0);
    let file = c.tmp.path().join("case.custodia");
    at(&c.berlin, &["export", &c.case, "--out", s(&file)]).code(0);
    let page = c.tmp.path().join("report.html");
    let r = custodia(&["verify", s(&file), "--html", s(&page)]).code(0);
    // Once in the phone's timeline, once in the Notes section.
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("Berlin <Partner> Unit   note ") && l.ends_with(text)),
        "{}",
        r.stdout
    );
    let notes = r
        .stdout
        .split("\nNotes (1)\n")
        .nth(1)
        .expect("a Notes section");
    let section = notes.split("\n\n").next().unwrap_or_default();
    assert!(
        section.starts_with("  [7] ")
            && section.contains("Berlin <Partner> Unit on item")
            && section.ends_with(text),
        "{section}"
    );

    let v = custodia(&["--json", "verify", s(&file)]).json();
    let notes = v["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{v}");
    assert_eq!(notes[0]["text"], text);
    assert_eq!(notes[0]["item"], c.phone.as_str());
    assert_eq!(notes[0]["author_name"], "Berlin <Partner> Unit");
    let phone = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == c.phone.as_str())
        .expect("the phone");
    let timeline = phone["timeline"].as_array().expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e["action"] == "note" && e["note"] == text),
        "{phone}"
    );
    let chat = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == c.chat.as_str())
        .expect("the chat");
    assert!(!chat.to_string().contains(text));

    let html = std::fs::read_to_string(&page).expect("report");
    well_formed(&html).expect("well-formed HTML");
    assert!(!html.contains("<b>on</b>"), "unescaped note");
    assert!(html.contains("<h2>Notes (1)</h2>"));
    assert!(
        html.matches("seal intact &lt;b&gt;on&lt;/b&gt; arrival")
            .count()
            >= 2,
        "{html}"
    );
}

#[test]
fn a_trust_file_confirms_keys_and_names_the_line_it_cannot_read() {
    let c = case();
    let file = c.tmp.path().join("case.custodia");
    at(&c.manila, &["export", &c.case, "--out", s(&file)]).code(0);
    let keys = c.tmp.path().join("court-keys.txt");
    std::fs::write(
        &keys,
        format!(
            "# confirmed by letter\n{} Manila Cybercrime Unit (letter of 2 March)\n",
            c.manila_key
        ),
    )
    .expect("write");
    let r = custodia(&["verify", s(&file), "--trust", s(&keys)]).code(0);
    assert!(r.stdout.contains(
        "1 of 2 members' keys are NOT confirmed by the trust file: Berlin <Partner> Unit."
    ));
    assert!(r
        .stdout
        .contains("confirmed (Manila Cybercrime Unit (letter of 2 March))"));
    std::fs::write(
        &keys,
        format!("{} Manila\n{}\n", c.manila_key, c.berlin_key),
    )
    .expect("write");
    let r = custodia(&["verify", s(&file), "--trust", s(&keys)]).code(2);
    assert_eq!(
        normalize(&r.stderr, &[(s(&keys), "<KEYS>")], &[]),
        "error: trust file <KEYS>: line 2: the key has no agency name after it\n"
    );
}

#[test]
fn a_bundle_for_some_items_verifies_and_holds_nothing_of_the_others() {
    let c = case();
    let file = c.tmp.path().join("phone.custodia");
    let r = at(
        &c.manila,
        &[
            "export",
            &c.case,
            "--out",
            s(&file),
            "--items",
            &c.phone[..8],
        ],
    )
    .code(0);
    assert!(r
        .stdout
        .contains("6 positions (5 disclosed, 1 withheld) for 1 item(s)"));
    let bytes = std::fs::read(&file).expect("bundle");
    assert!(contains(&bytes, &uuid_bytes(&c.phone)));
    assert!(!contains(&bytes, &uuid_bytes(&c.chat)));
    assert!(!contains(&bytes, b"EX-2"));
    let v = custodia(&["--json", "verify", s(&file)]).json();
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["selective_items"][0], c.phone.as_str());
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["withheld"].as_array().map(Vec::len), Some(1));
    let r = custodia(&["verify", s(&file)]).code(0);
    assert!(r
        .stdout
        .contains("Withheld positions (1): disclosed as withheld, not missing"));
    // An item of no case of this node is refused.
    let r = at(
        &c.manila,
        &["export", &c.case, "--out", s(&file), "--items", "abcdef12"],
    )
    .code(2);
    assert!(r.stderr.contains("no item \"abcdef12\""), "{}", r.stderr);
}

/// Element names that have no closing tag.
const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];

/// Checks that every element is closed in order (a small well-formedness
/// check: tags balance, `<style>` content skipped, SVG `/>` allowed).
fn well_formed(html: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with("!DOCTYPE") || rest.starts_with("!--") {
            continue;
        }
        let end = rest.find('>').ok_or("a tag is not closed")?;
        let tag = &rest[..end];
        let self_closing = tag.ends_with('/');
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() {
                return Err(format!("bad tag <{tag}>"));
            }
            if !self_closing && !VOID.contains(&name.as_str()) {
                stack.push(name.clone());
            }
            if name == "style" {
                let close = rest.find("</style>").ok_or("<style> not closed")?;
                rest = &rest[close..];
                continue;
            }
        }
        rest = &rest[end + 1..];
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("not closed: {stack:?}"))
    }
}

#[test]
fn the_html_report_is_well_formed_escaped_and_complete() {
    let c = case();
    let file = c.tmp.path().join("case.custodia");
    at(&c.manila, &["export", &c.case, "--out", s(&file)]).code(0);
    let page = c.tmp.path().join("report.html");
    custodia(&["verify", s(&file), "--html", s(&page)]).code(0);
    let html = std::fs::read_to_string(&page).expect("report");
    well_formed(&html).expect("well-formed HTML");
    assert!(
        !html.contains("<script"),
        "bundle text reached the page unescaped"
    );
    assert!(html.contains("Operation &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Berlin &lt;Partner&gt; Unit"));
    assert!(!html.contains("http://") || !html.contains("src="));
    for item in [&c.phone, &c.chat] {
        assert!(html.contains(item.as_str()), "item {item} is in the report");
    }
    assert!(html.contains("<svg class=\"timeline\""));
    assert!(html.contains("@media print"));

    // A damaged bundle: every problem is on the page.
    let mut bytes = std::fs::read(&file).expect("bundle");
    let at_text = bytes
        .windows(b"EX-2".len())
        .position(|w| w == b"EX-2")
        .expect("the exhibit is in the registration");
    bytes[at_text] ^= 0x20;
    let bad = c.tmp.path().join("edited.custodia");
    std::fs::write(&bad, &bytes).expect("write");
    let v = custodia(&["--json", "verify", s(&bad)]);
    let v: serde_json::Value = serde_json::from_str(&v.stdout).expect("JSON");
    custodia(&["verify", s(&bad), "--html", s(&page)]).code(1);
    let html = std::fs::read_to_string(&page).expect("report");
    well_formed(&html).expect("well-formed HTML");
    assert!(html.contains("INVALID"));
    let problems = v["problems"].as_array().expect("problems");
    assert!(problems.len() >= 2);
    for p in problems {
        let class = p["class"].as_str().expect("class");
        let place = match p["index"].as_u64() {
            Some(i) => format!("[{i}]"),
            None => "The bundle".into(),
        };
        assert!(html.contains(&place), "problem at {place} is on the page");
        assert!(html.contains(class), "class {class} is on the page");
    }
}

/// `custodia verify /dev/stdin` with the bundle piped in: a pipe cannot
/// be read twice, so it is copied to a temporary file first.
fn verify_piped(bytes: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["verify", "/dev/stdin"])
        .env_remove("CUSTODIA_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the custodia binary runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        // The verifier may stop reading early (an unreadable file).
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("custodia verify ends");
    writer.join().expect("the writer ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bundle_piped_in_verifies_like_the_file() {
    let c = case();
    let file = c.tmp.path().join("case.custodia");
    at(&c.manila, &["export", &c.case[..10], "--out", s(&file)]).code(0);
    let bytes = std::fs::read(&file).expect("bundle");
    let from_file = custodia(&["verify", s(&file)]).code(0);
    let (code, stdout, stderr) = verify_piped(&bytes);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.replace("/dev/stdin", "<FILE>"),
        from_file.stdout.replace(s(&file), "<FILE>")
    );
    let (code, _, stderr) = verify_piped(&bytes[..bytes.len() - 10]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("truncated at byte {}", bytes.len() - 10)),
        "{stderr}"
    );
}
