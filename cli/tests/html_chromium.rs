//! The HTML report of `custodia verify --html`, rendered by a real
//! browser: headless Chromium loads the file, runs whatever it would run,
//! and dumps the DOM it ends with. A bundle whose members wrote
//! `<script>`, event handlers, escape sequences and bidirectional
//! controls into every field they control must not run a line of script
//! (the page declares a Content-Security-Policy that forbids scripts, and
//! every text is escaped), and the verdict must be in the rendered page,
//! with its class, for a clean, a conflicting and an invalid bundle.
//!
//! Chromium is found as `chromium`, `chromium-browser` or
//! `google-chrome` on the PATH. Without one the tests print a note and
//! pass, unless CUSTODIA_REQUIRE_CHROMIUM is set (CI sets it, and
//! `.ci/run` installs Chromium), where a missing browser fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{at, custodia, init, open_case};

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The browser, or None (after a note) when there is none and none is
/// required.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    assert!(
        std::env::var_os("CUSTODIA_REQUIRE_CHROMIUM").is_none(),
        "CUSTODIA_REQUIRE_CHROMIUM is set but no chromium, chromium-browser or google-chrome is on the PATH (Debian: apt-get install chromium)"
    );
    eprintln!("note: no Chromium on the PATH: the HTML rendering test is skipped (set CUSTODIA_REQUIRE_CHROMIUM=1 to make this a failure)");
    None
}

/// Whether this process runs as root (Chromium's sandbox refuses root).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs headless Chromium on `page` with `args` (e.g. `--dump-dom`), a
/// fresh profile in a temporary folder; its standard output.
fn headless(browser: &Path, page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a temp dir");
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
    ])
    .arg(format!("--user-data-dir={}", s(profile.path())));
    if is_root() {
        cmd.arg("--no-sandbox");
    }
    let out = cmd
        .args(args)
        .arg(format!("file://{}", s(page)))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// The page's DOM after loading (and running anything it would run).
fn rendered(browser: &Path, page: &Path) -> String {
    let dom = headless(browser, page, &["--dump-dom"]);
    assert!(dom.contains("</html>"), "not a page: {dom}");
    dom
}

/// The verdict box of a rendered page: its class and the word in it.
fn verdict(dom: &str) -> (String, String) {
    let start = dom
        .find("<div class=\"verdict ")
        .unwrap_or_else(|| panic!("no verdict in the rendered page:\n{dom}"));
    let rest = &dom[start + "<div class=\"verdict ".len()..];
    let class = rest[..rest.find('"').expect("a class")].to_owned();
    let word = rest
        .split("<div class=\"word\">")
        .nth(1)
        .and_then(|w| w.split("</div>").next())
        .expect("the verdict's word")
        .to_owned();
    (class, word)
}

/// The Content-Security-Policy the page declares, from the rendered DOM.
fn csp(dom: &str) -> String {
    let at = dom
        .find("http-equiv=\"Content-Security-Policy\"")
        .unwrap_or_else(|| {
            panic!(
                "the page declares no Content-Security-Policy:\n{}",
                &dom[..dom.len().min(600)]
            )
        });
    let head = &dom[..dom.find("</head>").expect("a head")];
    assert!(at < head.len(), "the policy is not in the head");
    let tag_start = dom[..at].rfind('<').expect("a tag");
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>').expect("a tag end")];
    tag.split("content=\"")
        .nth(1)
        .and_then(|c| c.split('"').next())
        .expect("the policy's content")
        .to_owned()
}

/// The `<title>` of the rendered DOM.
fn title(dom: &str) -> &str {
    let a = dom.find("<title>").expect("a title") + "<title>".len();
    &dom[a..a + dom[a..].find("</title>").expect("a title end")]
}

/// Writes the HTML report of `bundle` to `dir/name.html`; its path and the
/// exit code of `verify`.
fn report(bundle: &Path, dir: &Path, name: &str) -> (PathBuf, i32) {
    let html = dir.join(format!("{name}.html"));
    let r = custodia(&["verify", s(bundle), "--html", s(&html)]);
    assert!(html.exists(), "no report written: {r:?}");
    (html, r.code)
}

/// Whether a hostile script or handler ran: it sets an attribute on the
/// root element (the text of the script, shown escaped, has the name but
/// never `="`).
fn pwned(dom: &str) -> bool {
    dom.contains("data-pwned=\"")
}

/// Text that runs script if it reaches a page unescaped, and that a
/// terminal would act on.
const SCRIPT: &str = "<script>document.title='pwned';document.documentElement.setAttribute('data-pwned','1')</script>";
const HANDLER: &str =
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">";
const TERMINAL: &str = "\u{1b}[2J\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{202e}DILAV\u{202c}\u{2066}";

/// A case whose hostile member wrote script into its name, the title, the
/// reference, an exhibit label, a description, custody fields and a note,
/// exported by the honest member that received it all.
fn hostile_bundle(tmp: &Path) -> PathBuf {
    let mallory = tmp.join("mallory");
    let honest = tmp.join("honest");
    init(&mallory, &format!("Mallory {SCRIPT}{TERMINAL}"), "ZZ");
    let honest_key = init(&honest, "Honest Unit", "PH");
    let v = at(
        &mallory,
        &[
            "--json",
            "case",
            "open",
            "--title",
            &format!("Lantern {SCRIPT}"),
            "--reference",
            &format!("R-1 {HANDLER}{TERMINAL}"),
        ],
    )
    .json();
    let case = v["case"].as_str().expect("a case id").to_owned();
    at(
        &mallory,
        &[
            "case",
            "share",
            &case,
            "--with",
            &honest_key,
            "--name",
            &format!("Honest Unit {SCRIPT}"),
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
            &format!("EX-1{SCRIPT}"),
            "--description",
            &format!("phone {HANDLER}{TERMINAL}"),
            "--acquired-by",
            SCRIPT,
            "--place",
            HANDLER,
            "--tool",
            TERMINAL,
            "--authority",
            SCRIPT,
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("an item")
        .to_owned();
    at(
        &mallory,
        &[
            "custody",
            "record",
            &item,
            "--action",
            "examined",
            "--actor",
            SCRIPT,
            "--place",
            HANDLER,
            "--tool",
            TERMINAL,
            "--note",
            &format!("seal intact {SCRIPT}{HANDLER}{TERMINAL}"),
        ],
    )
    .code(0);
    common::sync(&mallory, &honest, &case);
    let bundle = tmp.join("hostile.custodia");
    at(&honest, &["export", &case, "--out", s(&bundle)]).code(0);
    bundle
}

#[test]
fn a_hostile_bundle_runs_no_script_in_a_browser() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let bundle = hostile_bundle(tmp.path());
    let (html, code) = report(&bundle, tmp.path(), "hostile");
    assert_eq!(code, 0, "the hostile record is still a valid record");
    let dom = rendered(&browser, &html);
    // No script ran: the title and the root element are as written.
    assert!(!pwned(&dom), "a script ran:\n{dom}");
    assert!(
        title(&dom).starts_with("Custodia verification report: Lantern &lt;script&gt;"),
        "the title: {}",
        title(&dom)
    );
    assert!(!title(&dom).contains("pwned") || title(&dom).contains("&lt;script&gt;"));
    // Every script element in the page is none of the bundle's: the page
    // has no script of its own, so there is none at all.
    assert!(!dom.contains("<script"), "a script element in the DOM");
    assert!(
        !dom.contains("<img src=\"x\""),
        "an element from the bundle"
    );
    // The hostile text is there, as text.
    assert!(dom.contains("&lt;script&gt;document.title"), "{dom}");
    assert!(dom.contains("onerror="), "the handler's text is shown");
    // No raw terminal or direction control reaches the page.
    for c in ['\u{1b}', '\u{7}', '\u{202e}', '\u{2066}'] {
        assert!(!dom.contains(c), "raw {c:?} in the page");
    }
    let (class, word) = verdict(&dom);
    assert_eq!((class.as_str(), word.as_str()), ("valid", "VALID"));
    let policy = csp(&dom);
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(
        !policy.contains("script-src") || policy.contains("script-src 'none'"),
        "{policy}"
    );
}

/// The policy itself forbids inline script: a page with the report's
/// policy and an inline script of its own (as if escaping had failed)
/// runs nothing.
#[test]
fn the_reports_policy_stops_an_inline_script() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().join("n");
    init(&dir, "Unit", "PH");
    let case = open_case(&dir, "Lantern", "R-1");
    let bundle = tmp.path().join("b.custodia");
    at(&dir, &["export", &case, "--out", s(&bundle)]).code(0);
    let (html, _) = report(&bundle, tmp.path(), "plain");
    let page = std::fs::read_to_string(&html).expect("read");
    let policy = csp(&page);
    // The same page with a script injected after the policy.
    let injected = tmp.path().join("injected.html");
    std::fs::write(
        &injected,
        page.replacen("</head>", &format!("</head>{SCRIPT}"), 1),
    )
    .expect("write");
    let dom = rendered(&browser, &injected);
    assert!(!pwned(&dom), "the policy {policy:?} let a script run");
    // And the test would see a script that ran: without the policy it does.
    let open = tmp.path().join("open.html");
    std::fs::write(
        &open,
        page.replacen("Content-Security-Policy", "X-Not-A-Policy", 1)
            .replacen("</head>", &format!("</head>{SCRIPT}"), 1),
    )
    .expect("write");
    assert!(
        pwned(&rendered(&browser, &open)),
        "a script without the policy did not run: the check is blind"
    );
}

#[test]
fn the_demo_bundle_renders_valid_and_a_tampered_copy_invalid() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("demo");
    custodia(&["--dir", s(&root), "demo"]).code(0);
    let bundle = root.join("berlin").join("case.custodia");
    let (html, code) = report(&bundle, tmp.path(), "demo");
    assert_eq!(code, 0);
    let dom = rendered(&browser, &html);
    assert_eq!(verdict(&dom), ("valid".into(), "VALID".into()));
    assert!(!csp(&dom).is_empty());
    for want in [
        "Operation Harbour Light",
        "EX-1",
        "EX-2",
        "Berlin Partner Unit",
        "seal intact on arrival",
    ] {
        assert!(dom.contains(want), "{want:?} not in the rendered report");
    }
    // The file's SHA-256 is on the page, whole.
    let r = custodia(&["--json", "verify", s(&bundle)]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let sha = v["bundle"]["sha256"]
        .as_str()
        .expect("the bundle's SHA-256 in the JSON");
    assert!(dom.contains(sha), "the bundle's SHA-256 is not on the page");

    // One byte changed inside the signed payload: INVALID, in red.
    let mut bytes = std::fs::read(&bundle).expect("read");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    let tampered = tmp.path().join("tampered.custodia");
    std::fs::write(&tampered, &bytes).expect("write");
    let (html, code) = report(&tampered, tmp.path(), "tampered");
    assert_eq!(code, 1, "a tampered bundle is invalid");
    let dom = rendered(&browser, &html);
    assert_eq!(verdict(&dom), ("invalid".into(), "INVALID".into()));

    // Printed, the two-item report stays a few pages.
    let pdf = tmp.path().join("demo.pdf");
    let (html, _) = report(&bundle, tmp.path(), "demo-print");
    headless(
        &browser,
        &html,
        &[
            &format!("--print-to-pdf={}", s(&pdf)),
            "--no-pdf-header-footer",
        ],
    );
    let pages = pdf_pages(&std::fs::read(&pdf).expect("the PDF was written"));
    assert!((1..=8).contains(&pages), "{pages} pages");
}

/// The pages of a PDF: its `/Type /Page` objects (not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> usize {
    let needle = b"/Type /Page";
    pdf.windows(needle.len() + 1)
        .filter(|w| w.starts_with(needle) && w[needle.len()] != b's')
        .count()
}

#[test]
fn a_record_with_conflicts_renders_as_such() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().join("n");
    init(&dir, "Unit", "PH");
    let case = open_case(&dir, "Lantern", "R-1");
    let f = tmp.path().join("phone.img");
    std::fs::write(&f, b"image").expect("write");
    let v = at(
        &dir,
        &[
            "--json",
            "evidence",
            "add",
            &case,
            s(&f),
            "--exhibit",
            "EX-1",
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("an item")
        .to_owned();
    // The examiner found another digest: a conflict the record must show.
    at(
        &dir,
        &[
            "custody",
            "record",
            &item,
            "--action",
            "examined",
            "--digest-matched",
            "no",
        ],
    )
    .code(0);
    let bundle = tmp.path().join("b.custodia");
    at(&dir, &["export", &case, "--out", s(&bundle)]).code(0);
    let (html, code) = report(&bundle, tmp.path(), "conflicts");
    assert_eq!(code, 0, "a record with conflicts is intact");
    let dom = rendered(&browser, &html);
    assert_eq!(
        verdict(&dom),
        ("conflicts".into(), "VALID, WITH CONFLICTS".into())
    );
    assert!(dom.contains("digest"), "the conflict is not on the page");
}

/// Counts, in the rendered page at a given width, the `.mono` elements
/// (ids, fingerprints, digests) whose text is laid out on more than one
/// line. The report itself runs no script; a copy of it without the
/// policy carries a measuring script that writes the count into the
/// page's title.
fn broken_ids(browser: &Path, page: &str, dir: &Path, width: u32) -> String {
    let measure = "<script>addEventListener('load',()=>{let n=0,w=[];\
        for(const e of document.querySelectorAll('.mono')){const r=document.createRange();\
        r.selectNodeContents(e);const tops=new Set([...r.getClientRects()].map(x=>Math.round(x.top)));\
        if(tops.size>1){n++;w.push(e.textContent.slice(0,16));}}\
        document.title='broken:'+n+':'+w.join(',');});</script>";
    let probe = dir.join(format!("probe-{width}.html"));
    std::fs::write(
        &probe,
        page.replacen("Content-Security-Policy", "X-Not-A-Policy", 1)
            .replacen("</body>", &format!("{measure}</body>"), 1),
    )
    .expect("write");
    let dom = headless(
        browser,
        &probe,
        &[&format!("--window-size={width},900"), "--dump-dom"],
    );
    title(&dom).to_owned()
}

#[test]
fn ids_are_never_broken_across_lines() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path().join("demo");
    custodia(&["--dir", s(&root), "demo"]).code(0);
    let bundle = root.join("berlin").join("case.custodia");
    let (html, _) = report(&bundle, tmp.path(), "demo");
    let page = std::fs::read_to_string(&html).expect("read");
    for width in [1200, 800, 400] {
        let t = broken_ids(&browser, &page, tmp.path(), width);
        assert!(t.starts_with("broken:"), "the probe did not run: {t:?}");
        assert!(t.starts_with("broken:0:"), "at {width} px: {t}");
    }
}
