//! `custodia verify` under hostile input: a device or a pipe that is not a
//! bundle is refused at its first bytes, having been read, not copied; and
//! crafted bundles (tens of thousands of one-byte problems, markers that
//! all carry one id, one problem with thousands of consequences, thousands
//! of withheld positions) give text and JSON whose size is bounded by the
//! listing limit where they are problems, and linear in the input where
//! they are the record. Sizes and counts are asserted, never times; the
//! times and peak memory are in bench/RESULTS.md.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::custodia;
use common::hostile;

/// The listing limit of the report (`custodia_protocol::bundle::LISTED`).
const LISTED: usize = custodia_protocol::bundle::LISTED;

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn dev_zero_is_refused_at_its_first_bytes() {
    let r = custodia(&["verify", "/dev/zero"]).code(2);
    assert!(
        r.stderr.starts_with(
            "error: /dev/zero: not a Custodia bundle: it does not start with the COSE_Sign1 tag 18 (byte d2); it starts with 00 00 00 00"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout, "");
}

/// Runs `custodia verify /dev/stdin`, writing `prefix` then zeros to its
/// standard input until it stops reading (or 64 MiB). The exit code, its
/// standard error and how many bytes it took.
fn verify_stream(prefix: &[u8], zeros: bool) -> (i32, String, String, usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["verify", "/dev/stdin"])
        .env_remove("CUSTODIA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the custodia binary runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let prefix = prefix.to_vec();
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        if stdin.write_all(&prefix).is_err() {
            return sent;
        }
        sent += prefix.len();
        let block = vec![0u8; 1 << 16];
        while zeros && sent < 64 << 20 {
            match stdin.write(&block) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let out = child.wait_with_output().expect("runs");
    let sent = writer.join().expect("the writer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        sent,
    )
}

#[test]
fn a_pipe_is_read_only_as_far_as_it_is_a_bundle() {
    let (code, _, stderr, sent) = verify_stream(b"", true);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not a Custodia bundle") && stderr.contains("starts with 00 00 00 00"),
        "{stderr}"
    );
    // Read up to the first bytes (plus what the pipe holds), not copied
    // to the end: 64 MiB were on offer.
    assert!(sent < 4 << 20, "{sent} bytes were taken from the pipe");

    // A bundle on a pipe still verifies (it is read twice: once from the
    // pipe, once from the copy).
    let bundle = hostile::bundle("markers", 50).expect("a shape");
    let (code, stdout, stderr, _) = verify_stream(&bundle, false);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("VALID: every signature and every link of the record checks (1 entries, 50 disclosed as withheld)"),
        "{stdout}"
    );
}

/// What `verify` printed for one hostile bundle.
struct Outputs {
    text: String,
    json: serde_json::Value,
    json_len: usize,
}

fn verify_shape(dir: &Path, shape: &str, n: usize) -> (usize, Outputs) {
    let bytes = hostile::bundle(shape, n).expect("a shape");
    let file = dir.join(format!("{shape}-{n}.custodia"));
    std::fs::write(&file, &bytes).expect("write");
    let text = custodia(&["verify", s(&file)]);
    let json = custodia(&["--json", "verify", s(&file)]);
    assert_eq!(text.code, json.code, "{shape} {n}");
    assert_eq!(text.stderr, "", "{shape} {n}");
    let json_len = json.stdout.len();
    (
        bytes.len(),
        Outputs {
            text: text.stdout,
            json: serde_json::from_str(&json.stdout).expect("JSON"),
            json_len,
        },
    )
}

/// Each problem is counted; at most LISTED at the source and LISTED
/// consequences are listed; the counts add up; the last line is the
/// verdict.
#[track_caller]
fn counted_and_bounded(shape: &str, n: usize, o: &Outputs, problems: usize, roots: usize) {
    let j = &o.json;
    assert_eq!(j["verdict"], "invalid", "{shape} {n}");
    assert_eq!(j["problem_count"], problems, "{shape} {n}");
    assert_eq!(j["root_problems"], roots, "{shape} {n}");
    let listed = j["problems"].as_array().map_or(0, Vec::len);
    assert_eq!(j["problems_listed"], listed);
    let listed_roots = j["problems"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|p| p["caused_by"].is_null()).count());
    assert!(
        listed_roots <= LISTED + 4,
        "{shape} {n}: {listed_roots} roots listed"
    );
    assert!(listed - listed_roots <= LISTED, "{shape} {n}");
    let unlisted: u64 = j["problems_not_listed"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|u| u["count"].as_u64()).sum());
    assert_eq!(listed as u64 + unlisted, problems as u64, "{shape} {n}");
    let head = o.text.lines().next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("INVALID: {problems} problems")),
        "{shape} {n}: {head}"
    );
    assert_eq!(
        o.text.lines().last(),
        Some(head),
        "{shape} {n}: the verdict is the last line"
    );
}

#[test]
fn problems_beyond_the_listing_limit_are_counted_and_the_output_stays_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sizes = [LISTED + 500, 2 * LISTED + 1_000, 4 * LISTED + 2_000];
    for shape in ["garbage", "same-id", "consequences"] {
        let mut outs = Vec::new();
        for n in sizes {
            let (_, o) = verify_shape(tmp.path(), shape, n);
            let (problems, roots) = match shape {
                // Each one-byte element is malformed (V2).
                "garbage" => (n, n),
                // Every marker after the first names the id of position 1
                // at another position (V10).
                "same-id" => (n - 1, n - 1),
                // The garbage byte, and each marker after it as its
                // consequence (V11).
                _ => (n + 1, 1),
            };
            counted_and_bounded(shape, n, &o, problems, roots);
            outs.push(o);
        }
        // Four times the problems, the same listing: only the counts'
        // digits differ.
        let (small, large) = (&outs[0], &outs[2]);
        assert!(
            large.text.len() <= small.text.len() + 1_000,
            "{shape}: text {} bytes for {} problems, {} for {}",
            large.text.len(),
            sizes[2],
            small.text.len(),
            sizes[0]
        );
        assert!(
            large.json_len <= small.json_len + 1_000,
            "{shape}: JSON {} bytes against {}",
            large.json_len,
            small.json_len
        );
    }
}

#[test]
fn a_long_record_gives_output_linear_in_the_bundle() {
    // Withheld positions are the record, not problems: each is listed,
    // and each costs the output a bounded number of bytes.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut runs = Vec::new();
    for n in [1_000, 2_000, 4_000] {
        let (bundle_len, o) = verify_shape(tmp.path(), "markers", n);
        assert_eq!(o.json["verdict"], "valid");
        assert_eq!(o.json["withheld"].as_array().map(Vec::len), Some(n));
        let head = o.text.lines().next().unwrap_or_default();
        assert_eq!(o.text.lines().last(), Some(head));
        runs.push((n, bundle_len, o.text.len(), o.json_len));
    }
    let (n0, b0, t0, j0) = runs[0];
    for &(n, b, t, j) in &runs[1..] {
        let per = |x: usize, x0: usize| (x - x0) as f64 / (n - n0) as f64;
        // Per position: the bundle holds about 72 bytes; the text line is
        // about 110 and the JSON object about 200. Linear, not more.
        assert!(per(t, t0) <= 2.0 * per(b, b0), "text {t} bytes at {n}");
        assert!(per(j, j0) <= 4.0 * per(b, b0), "JSON {j} bytes at {n}");
        assert!(
            (per(t, t0) - (runs[1].2 - t0) as f64 / (runs[1].0 - n0) as f64).abs() < 1.0,
            "the text grows by the same bytes per position"
        );
    }
}
