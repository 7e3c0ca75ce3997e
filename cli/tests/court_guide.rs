//! docs/court-guide.md's worked example, run as written: its `sh` blocks
//! are taken from the guide and each line runs in `bash` in a temporary
//! folder, with the binary under test first on the PATH. A line that says
//! `# exits 1` must exit 1, every other line 0. Every line of the report
//! excerpts the guide shows (its `text` blocks after a command) must be a
//! line the command printed, up to what varies between runs (ids, keys,
//! times, counts).
//! And every command the rest of the guide shows is a real command of
//! this binary, with options it accepts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::normalize;

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("docs/court-guide.md");
    std::fs::read_to_string(path).expect("docs/court-guide.md")
}

/// The fenced blocks of `text` in order: (language, lines).
fn blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), Vec::new())),
            (Some(_), Some("")) => out.extend(current.take()),
            (Some((_, b)), _) => b.push(line.to_owned()),
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    out
}

/// The worked example: the section from its heading to the end.
fn worked_example(text: &str) -> &str {
    let start = text
        .find("## 7. A worked example")
        .expect("the guide has its worked example");
    &text[start..]
}

/// What varies between two runs of the demo: ids, keys, times, paths,
/// and every number (entry counts depend on how many witnesses the nodes
/// wrote).
fn loose(text: &str, tmp: &str) -> String {
    let t = normalize(text, &[(tmp, "<TMP>")], &[]);
    let mut out = String::new();
    let mut digits = false;
    for c in t.chars() {
        if c.is_ascii_digit() || (digits && c == ',') {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    // Column widths follow the numbers: spaces count as one.
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The directory holding the binary under test.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_custodia"))
        .parent()
        .expect("a folder")
        .to_owned()
}

/// Runs one line of the guide in bash in `dir`; (exit code, stdout).
fn run(dir: &Path, line: &str) -> (i32, String, String) {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("CUSTODIA_DIR")
        .env("NO_COLOR", "1")
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_worked_example_runs_as_written_and_prints_what_it_shows() {
    let text = guide();
    let example = worked_example(&text);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    let tmp_s = dir.to_str().expect("UTF-8");
    let mut last_output: Option<(String, String)> = None;
    let mut commands = 0;
    let mut compared = 0;
    let mut sha = None;
    for (lang, lines) in blocks(example) {
        match lang.as_str() {
            "sh" => {
                for line in lines
                    .iter()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                {
                    let want = if line.contains("# exits 1") { 1 } else { 0 };
                    let (code, stdout, stderr) = run(dir, line);
                    assert_eq!(
                        code, want,
                        "`{line}` exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
                    );
                    if line.starts_with("sha256sum ") {
                        sha = stdout.split_whitespace().next().map(str::to_owned);
                    }
                    if line.starts_with("custodia verify case.custodia")
                        && line.ends_with("case.custodia")
                    {
                        let sha = sha.as_deref().expect("sha256sum ran before verify");
                        assert!(
                            stdout.contains(&format!("SHA-256     {sha}")),
                            "the report does not show the file's SHA-256 {sha}:\n{stdout}"
                        );
                    }
                    last_output = Some((line.clone(), stdout));
                    commands += 1;
                }
            }
            "text" => {
                // An excerpt of what the command before it printed (`…`
                // stands for lines left out): every line of it is a line
                // of the output. Members are listed in key order, which
                // differs between runs, so the order is not compared.
                let Some((command, stdout)) = &last_output else {
                    continue; // a file's content, not output
                };
                let got = loose(stdout, tmp_s);
                let got: Vec<&str> = got.lines().collect();
                for line in lines
                    .iter()
                    .filter(|l| l.trim() != "…" && !l.trim().is_empty())
                {
                    let want = loose(line, tmp_s);
                    assert!(
                        got.contains(&want.as_str()),
                        "the guide shows, after `{command}`:\n{line}\n({want})\nbut it printed:\n{stdout}"
                    );
                }
                compared += 1;
                last_output = None;
            }
            _ => {}
        }
    }
    assert!(
        commands >= 8,
        "only {commands} commands in the worked example"
    );
    assert!(compared >= 2, "only {compared} outputs compared");
    assert!(
        dir.join("report.html").exists(),
        "the HTML report was not written"
    );
}

/// Every `custodia …` command the guide shows anywhere (outside the
/// worked example too) parses: its subcommand and options exist.
#[test]
fn every_command_in_the_guide_is_a_real_command() {
    let text = guide();
    let mut checked = 0;
    for (lang, lines) in blocks(&text) {
        if lang != "sh" {
            continue;
        }
        for line in lines {
            let Some(rest) = line.trim().strip_prefix("custodia ") else {
                continue;
            };
            // The words before a redirection or a comment; `--help` after
            // them makes clap check the subcommand and every option
            // without running anything.
            let words: Vec<&str> = rest
                .split_whitespace()
                .take_while(|w| !w.starts_with('>') && !w.starts_with('#') && *w != "|")
                .collect();
            if words == ["--version"] {
                continue;
            }
            let options: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| w.starts_with("--") && !w.contains('='))
                .collect();
            // The subcommand: the leading words, past the global options
            // (`--json`, `--dir DIR`), up to the first option or path.
            let mut args: Vec<&str> = Vec::new();
            let mut it = words.iter().copied();
            while let Some(w) = it.next() {
                match w {
                    "--json" => {}
                    "--dir" => {
                        it.next();
                    }
                    w if w.starts_with('-') || w.contains(['.', '/', '$']) => break,
                    w => args.push(w),
                }
            }
            args.push("--help");
            let r = common::custodia(&args);
            assert_eq!(r.code, 0, "`custodia {}`: {}", args.join(" "), r.stderr);
            for o in options {
                // As help shows it: `--trust <KEYS>`, `--keep` at a line's end.
                assert!(
                    r.stdout.contains(&format!("{o} ")) || r.stdout.contains(&format!("{o}\n")),
                    "`{line}`: {o} is not an option of `custodia {}`",
                    args[..args.len() - 1].join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} commands found in the guide");
}
