//! One time format and whole ids in what an investigator reads: every
//! time that `case list`, `case show`, `case log` and `status` print, in
//! text and in JSON, is RFC 3339 in UTC (`2026-11-20T09:41:07Z`), never
//! epoch milliseconds or a local format; the times an operator needs
//! (when a transfer was sent, since when a case is on hold) are shown;
//! and every id is printed whole or as the prefix the commands accept
//! back (12 hex characters of a case or an entry id, the first group of
//! an item's UUID), on one line, never broken or cut shorter.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{at, init, open_case, sync};

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Whether `t` is an RFC 3339 UTC time as Custodia writes it:
/// `YYYY-MM-DDTHH:MM:SSZ` or with `.mmm` before the `Z`.
fn rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let base = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    base && (t.len() == 20 && b[19] == b'Z'
        || t.len() == 24 && b[19] == b'.' && digits(20..23) && b[23] == b'Z')
}

/// Every time-like token of a text (it starts with `YYYY-MM-DD`), and
/// every run of 13 or more digits (epoch milliseconds).
fn times_in(text: &str) -> (Vec<String>, Vec<String>) {
    let mut times = Vec::new();
    let mut raw = Vec::new();
    let tokens = text.split(|c: char| c.is_whitespace() || "(),;[]\"'".contains(c));
    for t in tokens {
        let b = t.as_bytes();
        if b.len() >= 10
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
        {
            times.push(t.trim_end_matches(['.', ':']).to_owned());
        }
        // A hex id (case, entry, digest) can hold 13 decimal digits in a
        // row by chance (about one 64-digit id in 20): not a time.
        if t.len() >= 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let mut run = 0;
        for c in t.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            if run == 13 {
                raw.push(t.to_owned());
            }
        }
    }
    (times, raw)
}

/// Asserts the times of a text output.
#[track_caller]
fn text_times(what: &str, text: &str, at_least: usize) {
    let (times, raw) = times_in(text);
    assert!(
        raw.is_empty(),
        "{what}: epoch milliseconds {raw:?} in:\n{text}"
    );
    for t in &times {
        assert!(
            rfc3339_utc(t),
            "{what}: {t:?} is not RFC 3339 UTC in:\n{text}"
        );
    }
    assert!(
        times.len() >= at_least,
        "{what}: {} time(s), {at_least} expected, in:\n{text}",
        times.len()
    );
}

/// Asserts the times of a JSON output: a string that looks like a date is
/// RFC 3339 UTC; a key that names a time holds such a string (or null),
/// never a number, unless its name says milliseconds (`_ms`).
#[track_caller]
fn json_times(what: &str, v: &serde_json::Value, found: &mut usize) {
    const TIME_KEYS: [&str; 7] = ["time", "since", "as_of", "sent", "made_at", "at", "opened"];
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if TIME_KEYS.contains(&k.as_str()) {
                    assert!(
                        x.is_null() || x.as_str().is_some_and(rfc3339_utc),
                        "{what}: \"{k}\": {x} is not an RFC 3339 UTC string"
                    );
                    if !x.is_null() {
                        *found += 1;
                    }
                }
                json_times(what, x, found);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_times(what, x, found)),
        serde_json::Value::String(t) => {
            let (times, _) = times_in(t);
            for t in times {
                assert!(rfc3339_utc(&t), "{what}: {t:?} in a JSON string");
            }
        }
        _ => {}
    }
}

/// The ids of the scenario, as hex without dashes.
struct Known(BTreeSet<String>);

impl Known {
    /// Whether `token` (hex, dashes removed) is a known id whole, or a
    /// prefix of one the commands accept.
    fn accepts(&self, token: &str, uuid_group: bool) -> bool {
        self.0.iter().any(|id| {
            id == token
                || (id.starts_with(token)
                    && (token.len() >= 12 || (uuid_group && token.len() == 8 && id.len() == 32)))
        })
    }
}

/// Asserts that every hex token of 8 or more characters in `text` is a
/// known id, whole or as an accepted prefix, and that no line ends in the
/// middle of one (the next line going on with hex).
#[track_caller]
fn whole_ids(what: &str, text: &str, known: &Known) {
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        for token in line.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')) {
            let token = token.trim_matches('-');
            // A UUID or a fingerprint has dashes; a time or a date has
            // digits only between them and is not an id.
            let groups: Vec<&str> = token.split('-').collect();
            let is_uuid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
            let is_fingerprint = groups.len() == 5 && groups.iter().all(|g| g.len() == 4);
            if is_fingerprint {
                continue;
            }
            let candidates: Vec<String> = if is_uuid {
                vec![groups.concat()]
            } else {
                groups
                    .iter()
                    .filter(|g| g.len() >= 8 && g.bytes().any(|b| b.is_ascii_alphabetic()))
                    .map(|g| (*g).to_owned())
                    .collect()
            };
            for c in candidates {
                let lower = c.to_ascii_lowercase();
                let uuid_group = !is_uuid && c.len() == 8;
                assert!(
                    known.accepts(&lower, uuid_group),
                    "{what}: {c:?} is no id, or an id cut shorter than a usable prefix, in line {}: {line}",
                    n + 1
                );
            }
        }
        // A line ending in hex, and the next one starting with a word of
        // hex (not a time, not a name): one id broken in two.
        if let (Some(last), Some(next)) = (line.chars().last(), lines.get(n + 1)) {
            let next_word = next.split_whitespace().next().unwrap_or_default();
            let hex_word = !next.starts_with(' ')
                && !next_word.is_empty()
                && next_word.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            assert!(
                !(last.is_ascii_hexdigit() && hex_word),
                "{what}: an id may be broken across lines {} and {}",
                n + 1,
                n + 2
            );
        }
    }
}

#[test]
fn times_are_rfc3339_utc_and_ids_whole_in_what_people_read() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let manila = tmp.path().join("manila");
    let berlin = tmp.path().join("berlin");
    let manila_key = init(&manila, "Manila Unit", "PH");
    let berlin_key = init(&berlin, "Berlin Unit", "DE");
    at(
        &manila,
        &[
            "peer",
            "add",
            "berlin",
            "--addr",
            "127.0.0.1:7401",
            "--key",
            &berlin_key,
            "--country",
            "DE",
        ],
    )
    .code(0);
    let case = open_case(&manila, "Operation Lantern", "MCU-1");
    at(&manila, &["case", "share", &case, "--with", "berlin"]).code(0);
    let file = tmp.path().join("phone.img");
    std::fs::write(&file, b"a stand-in for a phone image").expect("write");
    let v = at(
        &manila,
        &[
            "--json",
            "evidence",
            "add",
            &case,
            s(&file),
            "--exhibit",
            "EX-1",
            "--also",
            "md5,sha1",
        ],
    )
    .json();
    let item = v["registered"][0]["item"]
        .as_str()
        .expect("an item")
        .to_owned();
    let t = at(
        &manila,
        &[
            "--json",
            "custody",
            "transfer",
            &item,
            "--to",
            "berlin",
            "--purpose",
            "examination",
        ],
    )
    .json();
    sync(&manila, &berlin, &case);

    // A backup restored: the shared case is on hold.
    let backup = tmp.path().join("manila.custodia-backup");
    at(&manila, &["backup", "--out", s(&backup)]).code(0);
    let restored = tmp.path().join("restored");
    at(
        &restored,
        &[
            "restore",
            s(&backup),
            "--key",
            s(&manila.join("identity.key")),
        ],
    )
    .code(0);

    let mut known = BTreeSet::new();
    known.insert(case.clone());
    known.insert(item.replace('-', ""));
    known.insert(manila_key.clone());
    known.insert(berlin_key.clone());
    for d in [
        &v["registered"][0]["sha256"],
        &v["registered"][0]["sha1"],
        &v["registered"][0]["md5"],
    ] {
        known.insert(d.as_str().expect("a digest").to_owned());
    }
    let log = at(&berlin, &["--json", "case", "log", &case]).json();
    for row in log["entries"].as_array().expect("rows") {
        known.insert(row["entry"].as_str().expect("an entry id").to_owned());
    }
    let _ = t;
    let known = Known(known);

    // (node, command, the fewest times its text shows)
    let runs: [(&Path, &[&str], usize); 10] = [
        (&manila, &["case", "list"], 0),
        (&berlin, &["case", "list"], 0),
        // The open transfer: when it was sent.
        (&manila, &["case", "show", &case], 1),
        (&berlin, &["case", "show", &case], 1),
        // On hold since when.
        (&restored, &["case", "show", &case], 2),
        // Every entry: genesis, share, registration, transfer.
        (&manila, &["case", "log", &case], 4),
        (&berlin, &["case", "log", &case], 4),
        // The transfer awaiting its receipt: when it was sent.
        (&manila, &["status"], 1),
        (&berlin, &["status"], 0),
        (&restored, &["status", &case], 1),
    ];
    for (dir, args, at_least) in runs {
        let what = format!(
            "{} {}",
            dir.file_name().expect("a name").to_string_lossy(),
            args.join(" ")
        );
        let r = common::at(dir, args);
        assert!(
            r.code == 0 || (r.code == 1 && args[0] == "status"),
            "{what}: {r:?}"
        );
        text_times(&what, &r.stdout, at_least);
        whole_ids(&what, &r.stdout, &known);
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        let r = common::at(dir, &json_args);
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.stdout));
        let mut found = 0;
        json_times(&what, &v, &mut found);
        assert!(
            found >= at_least,
            "{what} --json: {found} time(s), {at_least} expected: {v:#}"
        );
    }
}

#[test]
fn the_time_format_is_rfc3339() {
    for good in ["2026-11-20T09:41:07Z", "1970-01-01T00:00:00.007Z"] {
        assert!(rfc3339_utc(good), "{good}");
    }
    for bad in [
        "2026-11-20 09:41:07",
        "2026-11-20T09:41:07",
        "2026-11-20T09:41:07+00:00",
        "2026-11-20T09:41Z",
        "2026-11-20",
        "20261120T094107Z",
    ] {
        assert!(!rfc3339_utc(bad), "{bad}");
    }
    // What the CLI writes, and what protocol::utc makes.
    assert!(rfc3339_utc(&custodia_protocol::utc::iso_seconds(
        1_795_000_000_999
    )));
    assert!(rfc3339_utc(&custodia_protocol::utc::iso_millis(
        1_795_000_000_999
    )));
}
