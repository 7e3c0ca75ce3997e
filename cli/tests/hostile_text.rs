//! Text that another agency wrote never reaches the terminal raw: a
//! member that puts escape sequences (clear screen, OSC 52 clipboard
//! write), a CSI in C1 form, bidirectional overrides and newlines in its
//! name, the case title, an exhibit label, a description and custody
//! fields cannot clear the screen, write the clipboard, forge a line or
//! hide the verdict of `case show`, `case log`, `case list`,
//! `agency list`, `export` and `verify`. The verdict of `verify` is its
//! first and its last line. The HTML report is written 0600.

mod common;

use std::path::Path;

use common::{at, custodia, init, sync};

/// Clears the screen, homes the cursor and draws a green "VALID", then
/// writes the clipboard (OSC 52).
const TITLE: &str = "Lantern\u{1b}[2J\u{1b}[H\u{1b}[32mVALID: every signature and every link of the record checks\u{1b}]52;c;cm0gLXJmIH4K\u{7}";
/// A right-to-left override, a C1 CSI (clear screen), DEL and a newline.
const NAME: &str = "Mallory \u{202e}tinU\u{202c}\u{2066}\u{9b}2J\u{7f}\nVALID";
/// Forged lines.
const REFERENCE: &str = "M-1\r\nVALID: forged";
const EXHIBIT: &str = "EX\u{1b}[8m-1";
const DESCRIPTION: &str = "phone\u{200f}\u{61c}\u{200e}\u{2067}\u{2069}\u{2028}image\tfull";
const ACTOR: &str = "J. Doe\u{1b}]0;window title\u{7}";
const PLACE: &str = "Lab\u{1b}[1A\u{1b}[2K";
const TOOL: &str = "dd\u{8}\u{8}\u{8}";

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// No character a terminal would act on: C0 (newline apart), DEL, C1,
/// bidirectional marks, overrides and isolates, line separators.
#[track_caller]
fn inert(what: &str, out: &str) {
    for (i, c) in out.char_indices() {
        let bad = (c.is_control() && c != '\n')
            || matches!(
                c,
                '\u{061C}'
                    | '\u{200E}'
                    | '\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{2028}'
                    | '\u{2029}'
            );
        assert!(
            !bad,
            "{what}: raw {c:?} at byte {i}: {:?}",
            &out[i.saturating_sub(40)..(i + 40).min(out.len())]
        );
    }
    assert!(
        !out.lines().any(|l| l.starts_with("VALID")) || what.starts_with("verify valid"),
        "{what}: a forged line: {out}"
    );
}

/// A hostile agency opens a case with crafted text everywhere it may
/// write, shares it with an honest agency, registers an item and records
/// custody; the honest node receives it all.
fn hostile_case(tmp: &Path) -> (std::path::PathBuf, String) {
    let mallory = tmp.join("mallory");
    let honest = tmp.join("honest");
    init(&mallory, NAME, "ZZ");
    let honest_key = init(&honest, "Honest Unit", "PH");
    let v = at(
        &mallory,
        &[
            "--json",
            "case",
            "open",
            "--title",
            TITLE,
            "--reference",
            REFERENCE,
        ],
    )
    .json();
    let case = v["case"].as_str().expect("case id").to_owned();
    at(
        &mallory,
        &[
            "case",
            "share",
            &case,
            "--with",
            &honest_key,
            "--name",
            "Honest Unit",
            "--country",
            "PH",
        ],
    )
    .code(0);
    let f = tmp.join("phone.img");
    std::fs::write(&f, b"image").expect("write");
    let v = at(
        &mallory,
        &[
            "--json",
            "evidence",
            "add",
            &case,
            s(&f),
            "--exhibit",
            EXHIBIT,
            "--description",
            DESCRIPTION,
            "--acquired-by",
            ACTOR,
            "--place",
            PLACE,
            "--tool",
            TOOL,
            "--authority",
            TITLE,
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("item")
        .to_owned();
    at(
        &mallory,
        &[
            "custody", "record", &item, "--action", "examined", "--actor", ACTOR, "--place", PLACE,
            "--tool", TOOL, "--note", TITLE,
        ],
    )
    .code(0);
    sync(&mallory, &honest, &case);
    (honest, case)
}

#[test]
fn text_from_another_agency_is_shown_inert_everywhere() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (honest, case) = hostile_case(tmp.path());
    for args in [
        &["case", "list"][..],
        &["case", "show", &case],
        &["case", "log", &case],
        &["agency", "list"],
    ] {
        let r = at(&honest, args).code(0);
        inert(&args.join(" "), &r.stdout);
        inert(&args.join(" "), &r.stderr);
        // Still readable: the crafted text is shown, escaped.
        assert!(
            r.stdout.contains("\\u{202e}") || r.stdout.contains("\\u{1b}"),
            "{args:?}: {}",
            r.stdout
        );
    }
    let log = at(&honest, &["case", "log", &case]).code(0).stdout;
    assert!(log.contains("Lantern\\u{1b}[2J\\u{1b}[H"), "{log}");
    assert!(log.contains("\\u{1b}]52;c;"), "{log}");
    assert!(log.contains("M-1\\r\\nVALID: forged"), "{log}");

    // The bundle carries the same text to a court.
    let file = tmp.path().join("case.custodia");
    let r = at(&honest, &["export", &case, "--out", s(&file)]).code(0);
    inert("export", &r.stdout);
    let html = tmp.path().join("report.html");
    let r = custodia(&["verify", s(&file), "--html", s(&html)]).code(0);
    inert("verify valid", &r.stdout);
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("VALID: "), "{}", r.stdout);
    assert_eq!(
        lines.last(),
        lines.first(),
        "the verdict is the last line too"
    );
    assert!(
        r.stdout.contains("Case        Lantern\\u{1b}[2J"),
        "{}",
        r.stdout
    );
    // JSON is data: the text as written, escaped by JSON itself.
    let v = custodia(&["--json", "verify", s(&file)]).json();
    assert_eq!(v["case"]["title"], TITLE);
    assert!(!custodia(&["--json", "verify", s(&file)])
        .stdout
        .contains('\u{1b}'));

    // The HTML report: TLP-labelled text, readable by its owner only;
    // no control character or direction override in the page.
    let page = std::fs::read_to_string(&html).expect("report");
    for (i, c) in page.char_indices() {
        let control = c.is_control() && c != '\n' && c != '\t';
        let direction = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        assert!(!control && !direction, "raw {c:?} in the HTML at byte {i}");
    }
    assert!(page.contains("\\u{202e}"), "the override is shown, escaped");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&html)
            .expect("report")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the HTML report's mode is {mode:o}");
    }

    // An invalid bundle: a crafted title cannot hide the INVALID verdict,
    // which is printed last as well as first.
    let mut bytes = std::fs::read(&file).expect("bundle");
    let at_text = bytes
        .windows(b"image".len())
        .position(|w| w == b"image")
        .expect("the description is in the registration");
    bytes[at_text] ^= 0x20;
    let bad = tmp.path().join("edited.custodia");
    std::fs::write(&bad, &bytes).expect("write");
    let r = custodia(&["verify", s(&bad)]).code(1);
    inert("verify invalid", &r.stdout);
    inert("verify invalid", &r.stderr);
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("INVALID: "), "{}", r.stdout);
    assert_eq!(
        lines.last(),
        lines.first(),
        "the verdict is the last line too"
    );
}

#[test]
fn an_html_report_is_replaced_with_mode_0600() {
    // An existing report left readable by everyone is rewritten 0600.
    let tmp = tempfile::tempdir().expect("tmp");
    let (honest, case) = hostile_case(tmp.path());
    let file = tmp.path().join("case.custodia");
    at(&honest, &["export", &case, "--out", s(&file)]).code(0);
    let html = tmp.path().join("report.html");
    std::fs::write(&html, "old").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&html, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        custodia(&["verify", s(&file), "--html", s(&html)]).code(0);
        let mode = std::fs::metadata(&html)
            .expect("report")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert!(std::fs::read_to_string(&html)
            .expect("report")
            .starts_with("<!DOCTYPE html>"));
    }
}
