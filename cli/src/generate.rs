//! `custodia completions SHELL` and `custodia man`: shell completion
//! scripts (clap_complete) and roff manual pages (clap_mangen), both
//! generated from the argument definitions that `--help` shows, so an
//! installed page or script says what the binary it came from accepts.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use custodia_node::LocalError;

use crate::output::{self, Out};

/// The manual the pages belong to (the centre of a page's footer).
const MANUAL: &str = "Custodia Manual";

/// Writes `bytes` to standard output as they are (a script or a roff page
/// is not text from another agency: no character is made visible).
fn print_raw(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    output::written(o.write_all(bytes).and_then(|()| o.flush()));
}

/// `custodia completions SHELL`: the script on standard output.
pub(crate) fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    print_raw(&script);
    ExitCode::SUCCESS
}

/// The page of one command (already built, so that a subcommand's
/// display name is `custodia-case-show`).
fn page(cmd: &clap::Command) -> anyhow::Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut roff = Vec::new();
    man.render(&mut roff).context("rendering a manual page")?;
    Ok((man.get_filename(), title_line(&roff, cmd)))
}

/// The page in ASCII, with its `.TH` line written in full: clap_mangen
/// leaves an empty date unquoted, which shifts the source into the date's
/// place and drops the manual's name. The footer names the program and
/// version on every page (a subcommand has no version of its own); there
/// is no date, so the same binary always writes the same pages.
fn title_line(roff: &[u8], cmd: &clap::Command) -> Vec<u8> {
    let title = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let th = format!(
        ".TH {title} 1 \"\" \"custodia {}\" \"{MANUAL}\"",
        env!("CARGO_PKG_VERSION")
    );
    let text = String::from_utf8_lossy(roff);
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        if line.starts_with(".TH ") {
            out.push_str(&th);
            out.push('\n');
            continue;
        }
        // roff input is ASCII: a character beyond it (the `…` of an
        // example) is written as groff's and mandoc's `\[uXXXX]` escape,
        // which every formatter reads whatever its input encoding.
        for c in line.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
            }
        }
    }
    out.into_bytes()
}

/// Every command (the top one first), each once, depth first; `help` has
/// no page of its own.
fn all(cmd: &clap::Command, into: &mut Vec<clap::Command>) {
    into.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all(sub, into);
    }
}

/// `custodia man [COMMAND…]` prints the page of `custodia` or of the
/// command named; `custodia man --dir DIR` writes every page into DIR
/// (made if missing), one file per command (`custodia-case-show.1`).
pub(crate) fn man(
    cmd: clap::Command,
    dir: Option<&Path>,
    command: &[String],
    out: &Out,
) -> anyhow::Result<ExitCode> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        let mut at = &cmd;
        for (i, name) in command.iter().enumerate() {
            at = at.find_subcommand(name).ok_or_else(|| {
                let path = command[..i].join(" ");
                let known: Vec<&str> = at.get_subcommands().map(clap::Command::get_name).collect();
                LocalError::Usage(format!(
                    "`custodia {path}{}{name}` is not a command; the commands there are: {}",
                    if path.is_empty() { "" } else { " " },
                    known.join(", ")
                ))
            })?;
        }
        print_raw(&page(at)?.1);
        return Ok(ExitCode::SUCCESS);
    };
    if !command.is_empty() {
        return Err(
            LocalError::Usage("with --dir every page is written; name no command".into()).into(),
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
    let mut commands = Vec::new();
    all(&cmd, &mut commands);
    let mut files = Vec::new();
    for c in &commands {
        let (name, roff) = page(c)?;
        let file = dir.join(&name);
        std::fs::write(&file, roff).with_context(|| format!("writing {}", file.display()))?;
        files.push(name);
    }
    out.record(
        &format!(
            "Wrote {} pages to {} (custodia.1 and one per command, e.g. custodia-verify.1).\nRead one with `man -l {}`, or put the folder on MANPATH as a man1 directory.",
            files.len(),
            dir.display(),
            dir.join("custodia.1").display()
        ),
        serde_json::json!({"dir": dir, "pages": files}),
    );
    Ok(ExitCode::SUCCESS)
}
