//! README.md's section "Doing it by hand", run exactly as written: its
//! `sh` blocks are taken from the README, the placeholders (`<berlin's
//! id>`, `<item id>`) are filled in from what the earlier commands printed,
//! as a reader would, each command runs in `bash` with the binary under
//! test on the PATH and a temporary HOME, and the `node run` blocks run in
//! the background, as in their own terminals. At the end Berlin must hold
//! the item. When the README and the binary drift apart, this fails.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{custodia, free_port};

/// The `sh` blocks of the README's by-hand section, each a list of lines.
fn by_hand_blocks() -> Vec<Vec<String>> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let start = text
        .find("## Doing it by hand")
        .expect("README.md has a section \"Doing it by hand\"");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), l) if !l.is_empty() && !l.starts_with('#') => b.push(l.to_owned()),
            _ => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block in the section");
    blocks
}

/// A `node run` block running in the background, in its own process
/// group; stopped with SIGTERM (as Ctrl-C would) when dropped.
struct Terminal(Child);

impl Drop for Terminal {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &group])
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}

struct Shell {
    home: PathBuf,
    cwd: PathBuf,
    path: String,
}

impl Shell {
    fn command(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(script)
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .env("NO_COLOR", "1")
            .env_remove("CUSTODIA_DIR")
            .stdin(Stdio::null());
        c
    }

    /// Runs one line in the current folder; follows a `cd`. Exit code and
    /// output.
    fn run(&mut self, line: &str) -> (i32, String, String) {
        let script = format!(
            "cd '{}' || exit 2\n{line}\nrc=$?\necho \"@@PWD=$(pwd)\"\nexit $rc",
            self.cwd.display()
        );
        let out = self.command(&script).output().expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut kept = String::new();
        for l in stdout.lines() {
            match l.strip_prefix("@@PWD=") {
                Some(p) => self.cwd = PathBuf::from(p),
                None => {
                    kept.push_str(l);
                    kept.push('\n');
                }
            }
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), kept, stderr)
    }

    /// Starts one line in the background, in a process group of its own.
    fn spawn(&self, line: &str, log: &Path) -> Terminal {
        use std::os::unix::process::CommandExt as _;
        let script = format!("cd '{}' || exit 2\n{line}", self.cwd.display());
        let child = self
            .command(&script)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("a log file"))
            .spawn()
            .expect("bash starts");
        Terminal(child)
    }
}

#[test]
fn the_readme_by_hand_section_runs_as_written() {
    let blocks = by_hand_blocks();
    assert!(blocks.len() >= 5, "the section's blocks: {blocks:#?}");
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let bin = Path::new(env!("CARGO_BIN_EXE_custodia"))
        .parent()
        .expect("the binary's folder");
    let mut shell = Shell {
        cwd: home.clone(),
        home: home.clone(),
        path: format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    };
    // The README's ports may be taken on this machine: the test's own.
    let ports = [
        (
            "127.0.0.1:7400".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "127.0.0.1:7401".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
    ];
    let mut values: HashMap<String, String> = HashMap::new();
    let mut terminals = Vec::new();
    let mut node_blocks = 0;
    for block in &blocks {
        if block.iter().any(|l| l.starts_with("cargo ")) {
            // Building and installing: the binary under test stands in.
            assert!(
                block.iter().all(|l| l.starts_with("cargo ")),
                "a block mixes building with other commands: {block:?}"
            );
            continue;
        }
        let runs_node = block.iter().any(|l| l.contains(" node run"));
        if runs_node {
            // Pasting a block stops at a command that does not return: a
            // node runs alone in its block.
            assert_eq!(
                block.len(),
                1,
                "a node must run alone in its block: {block:?}"
            );
        }
        for raw in block {
            let mut line = raw.clone();
            for (from, to) in ports.iter().map(|(f, t)| (f, t)).chain(values.iter()) {
                line = line.replace(from.as_str(), to);
            }
            if let (Some(a), Some(b)) = (line.find('<'), line.rfind('>')) {
                let between = &line[a..=b];
                assert!(
                    !between.contains("id>"),
                    "{between} has no value yet (the README must say where it comes from, before it is used): {raw}"
                );
            }
            if runs_node {
                let log = tmp.path().join(format!("node-{node_blocks}.log"));
                terminals.push(shell.spawn(&line, &log));
                node_blocks += 1;
                continue;
            }
            // Once nodes run, a command that needs what a partner sent is
            // tried again until it has arrived ("within a second").
            let mut tries = if terminals.is_empty() { 1 } else { 600 };
            let (stdout, _) = loop {
                let (code, stdout, stderr) = shell.run(&line);
                tries -= 1;
                if code == 0 {
                    break (stdout, stderr);
                }
                assert!(
                    tries > 0,
                    "README command failed (exit {code}): {line}\nstdout: {stdout}\nstderr: {stderr}"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            };
            // What a reader takes from the output.
            if line.contains(" init ") {
                let name = line
                    .split_whitespace()
                    .skip_while(|w| *w != "--dir")
                    .nth(1)
                    .and_then(|d| d.rsplit('/').next())
                    .expect("init names its folder");
                let id = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("agency id:"))
                    .map(str::trim)
                    .unwrap_or_else(|| panic!("init printed no `agency id:` line: {stdout}"));
                values.insert(format!("<{name}'s id>"), id.to_owned());
            }
            if line.contains("evidence add") {
                let item = stdout
                    .split_whitespace()
                    .next()
                    .unwrap_or_else(|| panic!("evidence add printed nothing: {line}"));
                values.insert("<item id>".into(), item.to_owned());
            }
        }
    }
    assert_eq!(node_blocks, 2, "the section runs two nodes");

    // Berlin holds the item, received with a signed receipt.
    let berlin = home.join("custodia-try").join("berlin");
    let berlin_id = values.get("<berlin's id>").expect("Berlin's id").clone();
    let show = custodia(&[
        "--dir",
        berlin.to_str().expect("UTF-8"),
        "--json",
        "case",
        "show",
        "MCU-2026-0042",
    ])
    .json();
    let items = show["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{show}");
    assert_eq!(items[0]["exhibit"], "EX-1", "{show}");
    assert_eq!(items[0]["holder"], berlin_id.as_str(), "{show}");
    assert_eq!(show["open_transfers"], serde_json::json!([]), "{show}");
    drop(terminals);
}
