//! `custodia … | head -1`: a reader that closes the pipe early ends the
//! output quietly. The command exits with its own code and prints no
//! panic message.

#![cfg(unix)]

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{init, open_case};

/// Runs `custodia ARGS` with standard output a stream whose reading end
/// is already closed (a socket pair: the same EPIPE as a pipe after
/// `head` exits): every write to it fails. The exit code and standard
/// error.
fn closed_stdout(args: &[&str]) -> (i32, String) {
    let (reader, writer) = UnixStream::pair().expect("a socket pair");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .env_remove("CUSTODIA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .expect("the custodia binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn a_closed_pipe_ends_every_output_quietly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let node = tmp.path().join("node");
    init(&node, "Manila Cybercrime Unit", "PH");
    let case = open_case(&node, "Operation Lantern", "MCU-1");
    let bundle = tmp.path().join("case.custodia");
    let d = s(&node);
    common::at(&node, &["export", &case, "--out", s(&bundle)]).code(0);
    for (args, code) in [
        (vec!["--dir", d, "id"], 0),
        (vec!["--dir", d, "--json", "id"], 0),
        (vec!["--dir", d, "store", "check"], 0),
        (vec!["--dir", d, "case", "list"], 0),
        (vec!["--dir", d, "case", "show", &case], 0),
        (vec!["--dir", d, "case", "log", &case], 0),
        (vec!["--dir", d, "agency", "list"], 0),
        (vec!["--dir", d, "peer", "list"], 0),
        (vec!["verify", s(&bundle)], 0),
        (vec!["--json", "verify", s(&bundle)], 0),
        (vec!["--help"], 0),
    ] {
        let (got, stderr) = closed_stdout(&args);
        assert_eq!(got, code, "{args:?}: exit code; stderr: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}
