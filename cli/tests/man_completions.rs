//! `custodia completions SHELL` and `custodia man`: generated from the
//! same argument definitions as `--help`, so they cannot drift from the
//! binary. The list of commands they must cover is read from the
//! binary's own `--help` output, independently of the generators.

mod common;

use std::path::Path;
use std::process::Command;

use common::custodia;

/// Every command path (`["case", "show"]`), read from the "Commands:"
/// sections of `custodia [PATH] --help`, recursively.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(path: &[String], all: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = custodia(&args).code(0).stdout;
        let Some(start) = help.find("\nCommands:\n") else {
            return;
        };
        for line in help[start + "\nCommands:\n".len()..].lines() {
            // The section ends at the first line that is not an indented
            // command (an empty line before "Options:").
            let Some(rest) = line.strip_prefix("  ") else {
                break;
            };
            if rest.starts_with(' ') {
                continue; // a wrapped description
            }
            let name = rest.split_whitespace().next().unwrap_or_default();
            if name.is_empty() || name == "help" {
                continue;
            }
            let mut sub = path.to_vec();
            sub.push(name.to_owned());
            all.push(sub.clone());
            walk(&sub, all);
        }
    }
    let mut all = Vec::new();
    walk(&[], &mut all);
    all
}

#[test]
fn the_help_lists_the_commands_this_test_relies_on() {
    let paths = command_paths();
    for want in [
        vec!["verify"],
        vec!["case", "show"],
        vec!["node", "run"],
        vec!["completions"],
        vec!["man"],
    ] {
        assert!(
            paths.iter().any(|p| *p == want),
            "{want:?} not among {paths:?}"
        );
    }
}

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    let paths = command_paths();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = custodia(&["completions", shell]).code(0);
        assert!(r.stderr.is_empty(), "{shell}: {}", r.stderr);
        assert!(r.stdout.len() > 1000, "{shell}: a short script");
        for p in &paths {
            let name = p.last().expect("a name");
            assert!(
                r.stdout.contains(name.as_str()),
                "the {shell} script does not mention `{}`",
                p.join(" ")
            );
        }
        // Options of a nested command are completed too.
        assert!(r.stdout.contains("reference"), "{shell}: no --reference");
    }
    // The node folder completes as a folder (zsh and fish say so).
    let zsh = custodia(&["completions", "zsh"]).code(0).stdout;
    assert!(zsh.contains(":DIR:_files -/"), "zsh: --dir is not a folder");
    let fish = custodia(&["completions", "fish"]).code(0).stdout;
    assert!(
        fish.lines()
            .any(|l| l.contains("-l dir") && l.contains("-a \"(__fish_complete_directories)\"")),
        "fish: --dir is not a folder"
    );
    let r = custodia(&["completions", "tcsh"]).code(2);
    assert!(r.stderr.contains("bash"), "{}", r.stderr);
}

#[test]
fn the_bash_script_is_valid_bash() {
    let r = custodia(&["completions", "bash"]).code(0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("custodia.bash");
    std::fs::write(&file, r.stdout).expect("written");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The page file for a command path: `custodia-case-show.1`.
fn page_name(path: &[String]) -> String {
    let mut name = "custodia".to_owned();
    for p in path {
        name.push('-');
        name.push_str(p);
    }
    name + ".1"
}

/// The structure `man` needs: a title line for this page, NAME and
/// SYNOPSIS sections, the command's name in NAME.
#[track_caller]
fn assert_page(text: &str, path: &[String]) {
    let title = page_name(path);
    let title = title.trim_end_matches(".1");
    assert!(
        text.starts_with(".ie \\n(.g .ds Aq") || text.starts_with(".TH"),
        "{title}: not a roff page: {}",
        &text[..text.len().min(200)]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(".TH ") && l.to_lowercase().contains(&title.to_lowercase())),
        "{title}: no .TH line naming it"
    );
    let name = text
        .find(".SH NAME")
        .unwrap_or_else(|| panic!("{title}: no NAME"));
    let synopsis = text
        .find(".SH SYNOPSIS")
        .unwrap_or_else(|| panic!("{title}: no SYNOPSIS"));
    assert!(name < synopsis, "{title}: NAME after SYNOPSIS");
    assert!(
        text[name..synopsis].contains(&title.replace('-', "\\-")),
        "{title}: NAME does not name the command: {}",
        &text[name..synopsis]
    );
}

/// `man -l` renders the page without a warning.
fn man_accepts(file: &Path) {
    let Ok(out) = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(file)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .env_remove("MANPAGER")
        .env("PAGER", "cat")
        .output()
    else {
        // groff checks the same below where man is missing.
        return;
    };
    // Bold and underline come as overstrikes (`N\bN`): drop them.
    let mut stdout = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            stdout.pop();
        } else {
            stdout.push(c);
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l {}: {stderr}", file.display());
    assert!(
        stdout.contains("Custodia Manual")
            && stdout.contains(concat!("custodia ", env!("CARGO_PKG_VERSION"))),
        "{}: the header and footer lack the manual or the version: {stdout}",
        file.display()
    );
    assert!(
        stderr.trim().is_empty(),
        "man -l {} warns: {stderr}",
        file.display()
    );
    assert!(stdout.contains("NAME"), "{}: {stdout}", file.display());
}

/// groff parses the page with every warning on, and warns about nothing.
fn groff_accepts(file: &Path) {
    let Ok(out) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(file)
        .output()
    else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "groff {}: {stderr}",
        file.display()
    );
}

#[test]
fn man_writes_a_page_for_every_command() {
    let paths = command_paths();
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("man1");
    let d = out.to_str().expect("UTF-8");
    let r = custodia(&["man", "--dir", d]).code(0);
    let mut want: Vec<String> = paths.iter().map(|p| page_name(p)).collect();
    want.push("custodia.1".into());
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(&out)
        .expect("the folder was made")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect();
    have.sort();
    assert_eq!(have, want, "the pages written");
    // It says where they went and how many.
    assert!(
        r.stdout.contains(&format!("{} pages", want.len())),
        "{}",
        r.stdout
    );
    assert_page(
        &std::fs::read_to_string(out.join("custodia.1")).expect("read"),
        &[],
    );
    for p in &paths {
        let file = out.join(page_name(p));
        let text = std::fs::read_to_string(&file).expect("read");
        assert_page(&text, p);
        man_accepts(&file);
        groff_accepts(&file);
    }
    // The top page lists the commands; a command's page its options.
    let top = std::fs::read_to_string(out.join("custodia.1")).expect("read");
    assert!(top.contains("custodia\\-verify(1)"), "no SEE ALSO / list");
    let verify = std::fs::read_to_string(out.join("custodia-verify.1")).expect("read");
    assert!(verify.contains("trust"), "custodia-verify.1 lacks --trust");
}

#[test]
fn man_prints_one_page_without_a_folder() {
    let top = custodia(&["man"]).code(0).stdout;
    assert_page(&top, &[]);
    let show = custodia(&["man", "case", "show"]).code(0).stdout;
    assert_page(&show, &["case".into(), "show".into()]);
    let r = custodia(&["man", "case", "nosuch"]).code(2);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

#[test]
fn man_does_not_write_into_the_node_directory_from_the_environment() {
    // CUSTODIA_DIR names a node; `custodia man` prints instead of
    // writing pages into it.
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .arg("man")
        .env("CUSTODIA_DIR", dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".SH NAME"));
    assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
}
