//! The node's log is coloured only on a terminal, and not even there when
//! NO_COLOR is set (https://no-color.org): a log file, a journal or a
//! terminal of someone who turned colour off never gets escape sequences.
//! The terminal is a real pseudo-terminal (`script` from util-linux).

mod common;

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::init;

/// Starts `custodia --dir DIR node run`, on a pseudo-terminal when `tty`,
/// with NO_COLOR=1 when `no_color`, until it has logged that it started;
/// what it wrote.
fn first_log_lines(dir: &Path, tty: bool, no_color: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_custodia");
    let d = dir.to_str().expect("UTF-8");
    let mut cmd = if tty {
        let mut c = Command::new("script");
        c.args([
            "-qefc",
            &format!("'{bin}' --dir '{d}' node run 2>&1"),
            "/dev/null",
        ]);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(["--dir", d, "node", "run"]);
        c
    };
    cmd.env_remove("CUSTODIA_DIR")
        .env_remove("NO_COLOR")
        .env("CUSTODIA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let mut child = cmd.spawn().expect("starts");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    for mut pipe in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err) as Box<dyn std::io::Read + Send>,
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&seen).contains("node started") && Instant::now() < deadline {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(b);
        }
    }
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--", &group])
        .status();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.contains("node started"),
        "the node did not start: {text}"
    );
    text
}

#[test]
fn the_log_has_colour_only_on_a_terminal_without_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("note: no `script` (util-linux): the terminal half of this test is skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().join("node");
    init(&dir, "Unit", "PH");
    let port = common::free_port();
    let config = dir.join("custodia.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("127.0.0.1:7400", &format!("127.0.0.1:{port}")),
    )
    .expect("config");
    // Piped: plain.
    let piped = first_log_lines(&dir, false, false);
    assert!(!piped.contains('\u{1b}'), "colour in a pipe: {piped:?}");
    // A terminal: colour (so the check below can see it).
    let tty = first_log_lines(&dir, true, false);
    assert!(tty.contains("\u{1b}["), "no colour on a terminal: {tty:?}");
    // A terminal with NO_COLOR: plain.
    let tty = first_log_lines(&dir, true, true);
    assert!(!tty.contains('\u{1b}'), "colour despite NO_COLOR: {tty:?}");
}
