//! `custodia`: the command-line front of a Custodia node.
//!
//! Thin by design: parsing, output and exit codes live here; every
//! operation is in `custodia-node` (`local`, `daemon`, `store`).

mod agency;
mod case;
mod case_uco;
mod custody;
mod demo;
mod evidence;
mod export;
mod export_case_uco;
mod generate;
mod keylog;
mod output;
mod passphrase;
mod progress;
mod quarantine;
mod report;
mod status;
mod token;
mod untrusted;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use custodia_node::LocalError;
use custodia_node::Peer;
use custodia_protocol::AgencyId;

use crate::output::{Out, EXIT_REFUSED, EXIT_USAGE};
use crate::untrusted::safe;

const AFTER_HELP: &str = "\
Exit codes: 0 success; 1 the thing checked is wrong or the rules refuse the request;
2 usage, configuration or I/O error.

Every command takes --dir DIR (or CUSTODIA_DIR) naming the node directory.
An encrypted key file's passphrase comes from --passphrase-fd N, CUSTODIA_PASSPHRASE
or the terminal.
New here? Run `custodia demo` first.";

/// Custodia: signed, hash-chained chain of custody shared between agencies.
#[derive(Parser, Debug)]
#[command(name = "custodia", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The node directory (created by `init`).
    #[arg(
        long,
        global = true,
        env = "CUSTODIA_DIR",
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath
    )]
    dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text: one object per command, with
    /// `schema_version` (lists are an object too: {"agencies": [...]}, {"cases": [...]},
    /// {"peers": [...]}, {"registered": [...]}, `case log` {"case", "entries": [...]}).
    /// Each command's shape is a JSON Schema in docs/schemas/ (docs/json.md). An error is
    /// {"error": "...", "schema_version": 1} on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// Read the identity key file's passphrase from this open file
    /// descriptor (one line), e.g. `--passphrase-fd 3 3<secret-file`. Without
    /// it: CUSTODIA_PASSPHRASE, else the terminal.
    #[arg(long, global = true, value_name = "N")]
    passphrase_fd: Option<u32>,
    /// Act as this officer: the officer's key file, certified by `custodia key
    /// certify-officer`. What the command writes is signed by the officer's key
    /// (entries of format version 2, which name the officer in every report);
    /// `case open --as` opens a case whose every entry is signed by an officer.
    /// An encrypted key file is unlocked with the same passphrase sources.
    #[arg(
        long = "as",
        global = true,
        env = "CUSTODIA_OFFICER_KEY",
        value_name = "FILE",
        value_hint = clap::ValueHint::FilePath
    )]
    officer: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node directory: identity key (mode 0600, encrypted), configuration, store.
    ///
    /// The key file is encrypted under a passphrase from --passphrase-fd N, CUSTODIA_PASSPHRASE
    /// or the terminal (asked twice). With none of them (a script, a service) init refuses
    /// unless --no-passphrase says to write the key unencrypted.
    ///
    /// Example: custodia --dir ./nbi init --agency "NBI Cybercrime Division" --country PH --listen 127.0.0.1:7400
    Init {
        /// The agency's name.
        #[arg(long)]
        agency: String,
        /// The agency's country (ISO 3166-1 alpha-2, e.g. PH).
        #[arg(long, value_parser = country_code)]
        country: String,
        /// UDP address to listen on, HOST:PORT: an IP address or a DNS name (resolved when the node starts).
        #[arg(long, default_value = custodia_node::DEFAULT_LISTEN, value_parser = addr)]
        listen: String,
        /// Write the identity key unencrypted (anyone who can read the file can sign as the agency); `custodia key protect` encrypts it later.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// The agency's keys: protect the key file, and the key log (root, officers, revocations).
    Key(KeyArgs),
    /// Print this agency's id (public key) and fingerprint.
    ///
    /// Example: custodia --dir ./nbi id
    Id,
    /// Manage pinned peers.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Run the node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Check the store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Per case: this agency's head, what each peer holds of it, whether the
    /// case is on hold (recovering) or can be written in, quarantined rows,
    /// transfers awaiting receipts. Exit 1 if a case cannot be written in.
    ///
    /// Example: custodia --dir ./nbi status --json
    Status {
        /// Only this case (id, prefix or reference).
        case: Option<String>,
    },
    /// Write a consistent copy of the store and the configuration to one
    /// file (mode 0600), safe while the node runs. The identity key is not
    /// in it: keep the key file apart.
    ///
    /// Example: custodia --dir ./nbi backup --out /backups/nbi-2026-12-02.custodia-backup
    Backup {
        /// The backup file to create (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Make a node directory from a backup and the agency's key file. Every
    /// shared case stays on hold until a peer confirms this agency's head or
    /// the node has recovered what it wrote after the backup: restoring an
    /// old backup never makes the agency sign a position twice.
    ///
    /// Example: custodia --dir ./nbi restore /backups/nbi-2026-12-02.custodia-backup --key /secure/identity.key
    Restore {
        /// The backup file (`custodia backup`).
        file: PathBuf,
        /// The agency's key file.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
    },
    /// Open, list, show, log and share cases.
    #[command(subcommand)]
    Case(case::CaseCommand),
    /// Register evidence files and check files against the record.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Transfer, receive and record custody of evidence items.
    #[command(subcommand)]
    Custody(custody::CustodyCommand),
    /// The agencies this node knows.
    #[command(subcommand)]
    Agency(agency::AgencyCommand),
    /// Export a case for a court or another tool: a signed bundle (custodia) or its chain of custody in CASE/UCO JSON-LD (case-uco).
    ///
    /// Example: custodia --dir ./nbi export 5f3a9c --format case-uco --out case.jsonld
    Export {
        /// Case id, prefix or reference.
        case: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The format: custodia (signed bundle) or case-uco (CASE/UCO ontology, JSON-LD).
        #[arg(long, value_parser = ["custodia", "case-uco"], default_value = "custodia")]
        format: String,
        /// Only these items (UUIDs or unique prefixes) and what happened to them.
        #[arg(long, value_name = "ITEM", num_args = 1..)]
        items: Vec<String>,
    },
    /// Verify a court bundle offline (needs no --dir and no node): verdict, members, every item's custody timeline, problems.
    ///
    /// Exit codes: 0 the bundle is valid; 1 it is invalid (every problem is counted, and
    /// the first 1,000 at the source and 1,000 consequences are listed with the entry, the
    /// rule and what it means); 2 the file is unreadable or not a bundle.
    ///
    /// The file is read twice. A pipe or device (e.g. /dev/stdin) is read once and what it
    /// gives is kept in a temporary file for the second reading, up to 4 GiB; save a larger
    /// bundle to a file first. Input that is not a bundle is refused at its first bytes.
    ///
    /// The HTML report is written readable by its owner only (mode 0600), like a bundle.
    ///
    /// Example: custodia verify lantern.custodia --trust court-keys.txt --html report.html
    Verify {
        /// The bundle file (written by `custodia export`).
        file: PathBuf,
        /// A file of agency keys obtained independently: one line per agency: its 64-hex key, a space, its name; '#' starts a comment.
        #[arg(long, value_name = "KEYS")]
        trust: Option<PathBuf>,
        /// Also write the report as one self-contained HTML page (prints well too).
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
    },
    /// Run three agencies on this machine and walk through a shared case, step by step (needs no --dir).
    ///
    /// Creates three nodes on 127.0.0.1 under a temporary folder (or under --dir), opens a case,
    /// shares it, registers evidence, transfers custody with a receipt through a liaison desk,
    /// and shows the case as each agency sees it.
    ///
    /// Example: custodia demo --keep
    Demo {
        /// Keep the temporary folder with the three node directories afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell (needs no --dir).
    ///
    /// Install it where your shell looks for completions, e.g. for bash:
    /// custodia completions bash > ~/.local/share/bash-completion/completions/custodia
    ///
    /// Example: custodia completions zsh > ~/.zfunc/_custodia
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of custodia or of one command; with --dir, write the pages of every command into that folder.
    ///
    /// Without --dir the page goes to standard output (`custodia man verify | man -l -`).
    /// With --dir DIR (on the command line; CUSTODIA_DIR is not used here) the folder is made
    /// if missing and gets custodia.1 and one page per command (custodia-case-show.1, …).
    ///
    /// Example: custodia man --dir ~/.local/share/man/man1
    Man {
        /// The command whose page to print, e.g. `case show` (default: custodia itself).
        command: Vec<String>,
    },
}

/// `custodia key`: its subcommand, and where keys in a hardware token are.
#[derive(clap::Args, Debug)]
struct KeyArgs {
    /// The PKCS#11 module (the token vendor's library) for keys named
    /// pkcs11:token=LABEL;object=LABEL, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(
        long,
        global = true,
        env = "CUSTODIA_PKCS11_MODULE",
        value_name = "PATH"
    )]
    pkcs11_module: Option<PathBuf>,
    /// Read the token's PIN from this open file descriptor (one line). Without it:
    /// CUSTODIA_PKCS11_PIN, else the terminal.
    #[arg(long, global = true, value_name = "N")]
    pin_fd: Option<u32>,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Encrypt the unencrypted identity key file in place, under a passphrase from
    /// --passphrase-fd N, CUSTODIA_PASSPHRASE or the terminal (asked twice).
    ///
    /// The encrypted key goes to a new file (mode 0600) that replaces the old one. The old
    /// unencrypted blocks may remain on the disk until reused: treat a key that was ever
    /// stored unencrypted on a disk that leaves your control as exposed.
    ///
    /// Example: custodia --dir ./nbi key protect
    Protect,
    /// Change the passphrase of the encrypted identity key file. The current one comes from
    /// --passphrase-fd N, CUSTODIA_PASSPHRASE or the terminal; the new one from
    /// --new-passphrase-fd N or the terminal (asked twice).
    ///
    /// Example: custodia --dir ./nbi key passphrase
    Passphrase {
        /// Read the new passphrase from this open file descriptor (one line).
        #[arg(long, value_name = "N")]
        new_passphrase_fd: Option<u32>,
    },
    /// Start this agency's key log (SPEC 3.4): the agency key becomes its first root, and a
    /// new next root key is written to FILE (or generated in a token), to be kept offline.
    /// Only that key can rotate the root; with it the agency takes its identity back if the
    /// agency key is stolen.
    ///
    /// Example: custodia --dir ./nbi key start --next-key /media/usb/nbi-next-root.key
    Start {
        /// Where the next root key goes: a new key file (encrypted like the agency key), or
        /// pkcs11:token=LABEL;object=LABEL to generate it in a hardware token.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        next_key: token::KeyRef,
        /// Write the new key file unencrypted.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Rotate the agency's root (SPEC 3.4) to the next root committed to (the key `key start`
    /// or the last rotation wrote), which signs the rotation and commits to a new next root.
    /// With --at SEQ it is a recovery: the agency, whose root was stolen, rotates at the
    /// position after the last statement it still owns, and every statement from SEQ on is
    /// superseded (void).
    ///
    /// Example: custodia --dir ./nbi key rotate-root --root /media/usb/nbi-next-root.key --next-key /media/usb2/nbi-next-root-2.key
    RotateRoot {
        /// The pre-committed next root: its key file, or pkcs11:token=LABEL;object=LABEL.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        root: token::KeyRef,
        /// Where the root after it goes: a new key file, or pkcs11:token=LABEL;object=LABEL to
        /// generate it in a token.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        next_key: token::KeyRef,
        /// Recovery: rotate at this position (from 1), superseding the statements from it on.
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
        /// Write the new key file unencrypted.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Certify the node's key: a new key, written to node.key in the node directory (or
    /// --out), and a statement in the key log giving it the role node. The node signs the
    /// witnesses of cases of format version 2 (cases opened with --as) with it.
    ///
    /// Example: custodia --dir ./nbi key certify-node
    CertifyNode {
        /// Where to write the node's new key (default: node.key in the node directory,
        /// where the node reads it).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Write the new key file unencrypted.
        #[arg(long)]
        no_passphrase: bool,
        /// The root in force, if it is no longer the agency key (after `key rotate-root`): its
        /// key file, or pkcs11:token=LABEL;object=LABEL.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        root: Option<token::KeyRef>,
    },
    /// Certify an officer: a new key for the officer, written to FILE, and a statement in
    /// the key log naming the officer and service number, signed by the root.
    ///
    /// Example: custodia --dir ./nbi key certify-officer --name "Insp. R. Santos" --number PNP-0042 --out santos.key
    CertifyOfficer {
        /// The officer's name, as the agency's records give it.
        #[arg(long)]
        name: String,
        /// The officer's service number.
        #[arg(long)]
        number: String,
        /// Where to write the officer's new key (a new file, encrypted like the agency key).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write the new key file unencrypted.
        #[arg(long)]
        no_passphrase: bool,
        /// The root in force, if it is no longer the agency key (after `key rotate-root`): its
        /// key file, or pkcs11:token=LABEL;object=LABEL.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        root: Option<token::KeyRef>,
    },
    /// Revoke a certified key from now on, with the reason (SPEC 3.4): retired (out of
    /// service), lost, or compromised.
    ///
    /// Example: custodia --dir ./nbi key revoke 5f1c…(64 hex) --reason lost
    Revoke {
        /// The key (64 hex characters, as `key log` shows it).
        key: custodia_protocol::KeyId,
        /// Why.
        #[arg(long, value_enum)]
        reason: keylog::Reason,
        /// The root in force, if it is no longer the agency key (after `key rotate-root`): its
        /// key file, or pkcs11:token=LABEL;object=LABEL.
        #[arg(long, value_name = "FILE|URI", value_parser = token::KeyRef::parse)]
        root: Option<token::KeyRef>,
    },
    /// List the keys a key log names (roots, node keys, officers' keys) and what each is
    /// now: in force, replaced, active, not yet valid, expired or revoked; this agency's,
    /// or a partner's as it reached this node.
    ///
    /// Example: custodia --dir ./nbi key list
    /// Example: custodia --dir ./nbi key list berlin --json
    List {
        /// Whose keys: a peer name, an agency name, a fingerprint or a key (default: this
        /// agency).
        agency: Option<String>,
    },
    /// Show a key log: every statement, checked; this agency's, or a partner's as it
    /// reached this node (its key history: certifications, revocations, rotations,
    /// recoveries, and any fork of its root).
    ///
    /// Example: custodia --dir ./nbi key log --json
    /// Example: custodia --dir ./nbi key log berlin
    Log {
        /// Whose log: a peer name, an agency name, a fingerprint or a key (default: this
        /// agency).
        agency: Option<String>,
    },
    /// Confirm the key log after a restore or a copy: the store was found possibly older
    /// than the agency's log, and no statement is written until you have compared `key log`
    /// with the agency's records.
    ///
    /// Example: custodia --dir ./nbi key confirm
    Confirm,
}

#[derive(Subcommand, Debug)]
enum PeerCommand {
    /// Pin a peer agency: its address and public key.
    ///
    /// Example: custodia --dir ./nbi peer add bka --addr 127.0.0.1:7401 --key 3b6a27bc…(64 hex) --country DE
    Add {
        /// A short local name for the peer.
        name: String,
        /// Its address, HOST:PORT: a DNS name (resolved each time the node dials it) or an IP address.
        #[arg(long, value_parser = addr)]
        addr: String,
        /// Its agency public key: 64 hex characters (the `agency id` line of `custodia id` on its node).
        #[arg(long, value_parser = agency_key)]
        key: AgencyId,
        /// Its country (ISO 3166-1 alpha-2); ZZ if unknown.
        #[arg(long, default_value = "ZZ", value_parser = country_code)]
        country: String,
    },
    /// List pinned peers.
    ///
    /// Example: custodia --dir ./nbi peer list
    List,
    /// Unpin a peer (a running node drops its connection).
    ///
    /// Example: custodia --dir ./nbi peer remove bka
    Remove {
        /// The peer's local name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Serve until SIGINT or SIGTERM; then finish the batch in flight, close
    /// the store and exit 0.
    ///
    /// Example: custodia --dir ./nbi node run --log-format json
    Run {
        /// Log format.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        log_format: String,
    },
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Re-verify every stored entry: bytes, ids, signatures, chains, rules.
    ///
    /// Example: custodia --dir ./nbi store check
    Check,
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            // A script that asked for --json gets the error as the JSON
            // error document on stderr, a mistyped option included.
            if e.use_stderr() && json_asked() {
                let text = e.render().to_string();
                Out::new(true).error(text.trim().trim_start_matches("error: "));
                return ExitCode::from(EXIT_USAGE);
            }
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let out = Out::new(cli.json);
    // `node run` logs an unencrypted key itself; JSON output stays JSON.
    let is_node = matches!(cli.command, Command::Node(_));
    passphrase::set(cli.passphrase_fd, !cli.json && !is_node);
    passphrase::set_officer(cli.officer.clone());
    // The demo uses --dir only when it is given on the command line: a
    // CUSTODIA_DIR naming a real node must not receive demo nodes.
    let dir_given = matches.value_source("dir") == Some(ValueSource::CommandLine);
    let result = match cli.command {
        Command::Demo { keep } => demo::run(cli.dir.filter(|_| dir_given), keep, &out),
        Command::Verify { file, trust, html } => {
            verify::run(&file, trust.as_deref(), html.as_deref(), &out)
        }
        Command::Completions { shell } => Ok(generate::completions(Cli::command(), shell)),
        // Like the demo, pages go into --dir only when it is given on the
        // command line, never into the node folder CUSTODIA_DIR names.
        Command::Man { command } => generate::man(
            Cli::command(),
            cli.dir.as_deref().filter(|_| dir_given),
            &command,
            &out,
        ),
        _ => run(cli, &out),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let refused = e
                .downcast_ref::<LocalError>()
                .is_some_and(LocalError::is_refusal);
            out.error(&message(&e));
            ExitCode::from(if refused { EXIT_REFUSED } else { EXIT_USAGE })
        }
    };
    // Output lost to a full disk or a failing device is an I/O error (a
    // closed pipe is not: the reader had what it wanted).
    match output::write_failure() {
        Some(why) => {
            out.error(why);
            ExitCode::from(EXIT_USAGE)
        }
        None => code,
    }
}

/// Whether `--json` is on the command line (before a `--`): for an error
/// found while parsing it, when the parsed flag is not there yet.
fn json_asked() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// The error and its causes, each cause once: errors that already show
/// their source (`{path}: {source}`) are not followed by it again.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

fn dir(cli_dir: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    cli_dir
        .clone()
        .context("no node directory: pass --dir DIR or set CUSTODIA_DIR")
}

fn run(cli: Cli, out: &Out) -> anyhow::Result<ExitCode> {
    let d = dir(&cli.dir)?;
    match cli.command {
        Command::Init {
            agency,
            country,
            listen,
            no_passphrase,
        } => {
            let pass = new_key_passphrase(&d, no_passphrase)?;
            let l = custodia_node::Local::init_with(
                &d,
                &agency,
                &country,
                Some(&listen),
                pass.as_ref(),
            )?;
            let me = l.me();
            out.record(
                &format!(
                    "Created node for {} ({}) in {}\nagency id:   {me}\nfingerprint: {}\nlistening:   {}\nGive the agency id to your partners: they pin it with `custodia peer add`.",
                    safe(&agency),
                    safe(&country),
                    d.display(),
                    me.fingerprint(),
                    safe(&listen)
                ),
                serde_json::json!({"agency": me.to_hex(), "fingerprint": me.fingerprint(), "name": agency, "country": country, "listen": listen, "dir": d}),
            );
        }
        Command::Key(k) => key(&d, k, out)?,
        Command::Id => {
            let (config, identity) = passphrase::open_config(&d)?;
            let me = identity.agency();
            out.record(
                &format!(
                    "{} ({})\nagency id:   {me}\nfingerprint: {}",
                    safe(&config.agency.name),
                    safe(&config.agency.country),
                    me.fingerprint()
                ),
                serde_json::json!({"agency": me.to_hex(), "fingerprint": me.fingerprint(), "name": config.agency.name, "country": config.agency.country, "listen": config.node.listen}),
            );
        }
        Command::Peer(p) => peer(&d, p, out)?,
        Command::Node(NodeCommand::Run { log_format }) => {
            init_logging(&log_format);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(async {
                let stop = shutdown_signal();
                custodia_node::run_with(&d, stop, passphrase::source()).await
            })?;
        }
        Command::Store(StoreCommand::Check) => {
            let l = passphrase::open(&d)?;
            let problems = l.store().check()?;
            let count = l.store().count()?;
            if problems.is_empty() {
                out.record(
                    &format!("store check: {count} entries verified, no problems"),
                    serde_json::json!({"entries": count, "problems": []}),
                );
            } else {
                let list: Vec<serde_json::Value> = problems
                    .iter()
                    .map(|p| serde_json::json!({"position": p.pos, "entry": p.id.map(|i| i.to_hex()), "problem": p.what}))
                    .collect();
                let mut text = format!(
                    "store check: {} problem(s) in {count} entries",
                    problems.len()
                );
                for p in &problems {
                    text.push_str(&format!(
                        "\n  position {}{}: {}",
                        p.pos.map_or("-".into(), |x| x.to_string()),
                        p.id.filter(|i| !p.what.contains(&i.to_hex()))
                            .map_or_else(String::new, |i| format!(" (entry {i})")),
                        safe(&p.what)
                    ));
                }
                out.record(
                    &text,
                    serde_json::json!({"entries": count, "problems": list}),
                );
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
        Command::Case(c) => return case::run(&d, c, out),
        Command::Status { case } => return status::status(&d, case.as_deref(), out),
        Command::Backup { out: file } => return status::backup(&d, &file, out),
        Command::Restore { file, key } => return status::restore(&file, &d, &key, out),
        Command::Evidence(c) => return evidence::run(&d, c, out),
        Command::Custody(c) => return custody::run(&d, c, out),
        Command::Agency(c) => return agency::run(&d, c, out),
        Command::Export {
            case,
            out: file,
            format,
            items,
        } => {
            if format == "case-uco" {
                return export_case_uco::run(&d, &case, &file, &items, out);
            }
            return export::run(&d, &case, &file, &items, out);
        }
        Command::Demo { .. }
        | Command::Verify { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The passphrase a new key is encrypted under: `None` with
/// `--no-passphrase`; else from `--passphrase-fd`, `CUSTODIA_PASSPHRASE` or
/// the terminal; with none of them, a refusal that names them all.
fn new_key_passphrase(
    d: &std::path::Path,
    no_passphrase: bool,
) -> anyhow::Result<Option<custodia_node::Passphrase>> {
    let source = passphrase::source();
    if no_passphrase {
        if source.given() {
            return Err(LocalError::Usage(format!(
                "--no-passphrase, and a passphrase is given too (--passphrase-fd or {}): say which you mean",
                passphrase::ENV
            ))
            .into());
        }
        return Ok(None);
    }
    if d.join(custodia_node::CONFIG_FILE).exists() {
        return Err(LocalError::AlreadyInitialised(d.to_owned()).into());
    }
    let key = d.join(custodia_node::KEY_FILE);
    match source.new_passphrase(&key)? {
        Some(p) => Ok(Some(p)),
        None => Err(LocalError::Usage(format!(
            "no passphrase for the new identity key: set {}, pass --passphrase-fd N, or run init on a terminal; or pass --no-passphrase to write the key unencrypted",
            passphrase::ENV
        ))
        .into()),
    }
}

fn key(d: &std::path::Path, k: KeyArgs, out: &Out) -> anyhow::Result<()> {
    let tokens = token::Tokens::new(k.pkcs11_module, k.pin_fd);
    match k.command {
        KeyCommand::Protect => {
            let config = custodia_node::load_config(d)?;
            let path = config.key_path(d);
            // Check first: no passphrase is asked for a key that cannot
            // be protected.
            if custodia_node::key_protection(&path)? == custodia_node::Protection::Encrypted {
                return Err(LocalError::Usage(format!(
                    "key file {} is encrypted already; change its passphrase with `custodia key passphrase`",
                    path.display()
                ))
                .into());
            }
            let pass = passphrase::source().new_passphrase(&path)?.ok_or_else(|| {
                LocalError::Usage(format!(
                    "no passphrase to encrypt key file {} with: set {}, pass --passphrase-fd N, or run the command on a terminal",
                    path.display(),
                    passphrase::ENV
                ))
            })?;
            let path = custodia_node::protect_key(d, &pass)?;
            out.record(
                &format!(
                    "Encrypted key file {}. Every command and `custodia node run` now need its passphrase.
The old unencrypted file's blocks may remain on the disk until reused.",
                    path.display()
                ),
                serde_json::json!({"key_file": path, "encrypted": true}),
            );
        }
        KeyCommand::Passphrase { new_passphrase_fd } => {
            let config = custodia_node::load_config(d)?;
            let path = config.key_path(d);
            if custodia_node::key_protection(&path)? == custodia_node::Protection::Unencrypted {
                return Err(LocalError::Usage(format!(
                    "key file {} is not encrypted; encrypt it with `custodia key protect`",
                    path.display()
                ))
                .into());
            }
            // Unlock with the current passphrase before asking for a new one.
            custodia_node::read_key_file_with(&path, passphrase::source())?;
            let new = passphrase::new_from(new_passphrase_fd, &path)?;
            let path = custodia_node::change_passphrase(d, passphrase::source(), &new)?;
            out.record(
                &format!("Changed the passphrase of key file {}.", path.display()),
                serde_json::json!({"key_file": path, "encrypted": true}),
            );
        }
        KeyCommand::Start {
            next_key,
            no_passphrase,
        } => keylog::start(d, &next_key, no_passphrase, &tokens, out)?,
        KeyCommand::RotateRoot {
            root,
            next_key,
            at,
            no_passphrase,
        } => keylog::rotate_root(d, &root, &next_key, at, no_passphrase, &tokens, out)?,
        KeyCommand::CertifyOfficer {
            name,
            number,
            out: key_out,
            no_passphrase,
            root,
        } => keylog::certify_officer(
            d,
            &name,
            &number,
            &key_out,
            no_passphrase,
            root.as_ref(),
            &tokens,
            out,
        )?,
        KeyCommand::CertifyNode {
            out: key_out,
            no_passphrase,
            root,
        } => keylog::certify_node(
            d,
            key_out.as_deref(),
            no_passphrase,
            root.as_ref(),
            &tokens,
            out,
        )?,
        KeyCommand::Revoke { key, reason, root } => {
            keylog::revoke(d, key, reason, root.as_ref(), &tokens, out)?
        }
        KeyCommand::List { agency } => keylog::list(d, agency.as_deref(), out)?,
        KeyCommand::Log { agency } => keylog::show(d, agency.as_deref(), out)?,
        KeyCommand::Confirm => keylog::confirm(d, out)?,
    }
    Ok(())
}

fn peer(d: &std::path::Path, p: PeerCommand, out: &Out) -> anyhow::Result<()> {
    match p {
        PeerCommand::Add {
            name,
            addr,
            key,
            country,
        } => {
            let agency = key;
            let (mut config, identity) = passphrase::open_config(d)?;
            // A node never pins itself: its own key as a peer would make it
            // accept connections that claim to be this agency.
            if agency == identity.agency() {
                return Err(LocalError::Usage(format!(
                    "--key {} is this node's own agency id; a peer is another agency (its id is the `agency id` line of `custodia id` on that agency's node)",
                    agency.fingerprint()
                ))
                .into());
            }
            let peer = Peer {
                name: name.clone(),
                addr,
                key: agency.to_hex(),
                country,
            };
            config
                .peers
                .retain(|x| x.name != peer.name && x.key != peer.key);
            config.peers.push(peer.clone());
            let text = toml::to_string_pretty(&config).context("encoding the configuration")?;
            custodia_node::Config::parse(&text, &d.join("custodia.toml"))?;
            config.save(d)?;
            // The name the agency signed for itself, if its key log has
            // reached this node already (a partner's node may have sent it).
            let read = signed_profile(&config.store_path(d), &agency);
            let signed = read.as_ref().ok().cloned().flatten();
            let said = match (&read, &signed) {
                (Err(why), _) => format!(
                    "\nits signed name could not be read from this node's store ({}); `custodia key log {}` says more",
                    safe(why),
                    safe(&name)
                ),
                // ZZ: the operator gave no country.
                (_, Some(p)) if p.country != peer.country && peer.country != "ZZ" => format!(
                    "\nit signs as:  {} ({}) in its key log; the country given here, {}, is not the one it signed",
                    safe(&p.name),
                    safe(&p.country),
                    safe(&peer.country)
                ),
                (_, Some(p)) => format!("\nit signs as:  {} ({}) in its key log", safe(&p.name), safe(&p.country)),
                (_, None) => "\nits signed name has not reached this node yet: it comes with the agency's key log once the nodes have synced (`custodia peer list` shows it then)".into(),
            };
            out.record(
                &format!(
                    "Pinned peer {} at {} with fingerprint {}{said}",
                    safe(&name),
                    safe(&peer.addr),
                    agency.fingerprint()
                ),
                serde_json::json!({"name": name, "addr": peer.addr, "key": agency.to_hex(), "fingerprint": agency.fingerprint(), "country": peer.country,
                    "signed": signed.as_ref().map(|p| serde_json::json!({"name": p.name, "country": p.country}))}),
            );
        }
        PeerCommand::List => {
            let config = custodia_node::load_config(d)?;
            let mut text = String::new();
            if config.peers.is_empty() {
                text.push_str("No peers pinned. Add one with `custodia peer add NAME --addr HOST:PORT --key HEX`.");
            }
            let mut list = Vec::new();
            let store = config.store_path(d);
            for p in &config.peers {
                let agency = p.agency();
                let fp = agency.map(|a| a.fingerprint()).unwrap_or_default();
                let signed = agency.and_then(|a| signed_profile(&store, &a).ok().flatten());
                text.push_str(&format!(
                    "{:<16} {:<22} {}  {}  {}\n",
                    safe(&p.name),
                    safe(&p.addr),
                    safe(&p.country),
                    fp,
                    signed.as_ref().map_or_else(
                        || "(signed name not received yet)".to_string(),
                        |s| format!("signs as {} ({})", safe(&s.name), safe(&s.country))
                    )
                ));
                list.push(serde_json::json!({"name": p.name, "addr": p.addr, "key": p.key, "fingerprint": fp, "country": p.country,
                    "signed": signed.as_ref().map(|s| serde_json::json!({"name": s.name, "country": s.country}))}));
            }
            out.record_list(text.trim_end(), "peers", list);
        }
        PeerCommand::Remove { name } => {
            let mut config = custodia_node::load_config(d)?;
            let before = config.peers.len();
            config.peers.retain(|p| p.name != name);
            if config.peers.len() == before {
                return Err(LocalError::NotFound(format!("no peer called {name:?}")).into());
            }
            config.save(d)?;
            out.record(
                &format!("Removed peer {name}"),
                serde_json::json!({"removed": name}),
            );
        }
    }
    Ok(())
}

/// The name and country an agency last signed for itself in its key log
/// (SPEC.md §3.4), read from the store file without loading it; None if
/// the log has not reached this node or signs no profile; why not, if the
/// store cannot be read or the log does not check.
fn signed_profile(
    store: &std::path::Path,
    agency: &AgencyId,
) -> Result<Option<custodia_protocol::keylog::Profile>, String> {
    let log = custodia_node::Store::peek_key_log(store, agency).map_err(|e| e.to_string())?;
    Ok(log.and_then(|l| l.profile(l.len()).cloned()))
}

/// The QUIC and TLS libraries log every packet and alert at the debug
/// level: kilobytes for each handshake a stranger attempts. Unless
/// `CUSTODIA_LOG` names them, they log warnings only.
const QUIET_LIBRARIES: &[&str] = &["quinn", "quinn_proto", "quinn_udp", "rustls"];

/// `--country`, `--jurisdiction`: a country code, in either case.
pub(crate) fn country_code(s: &str) -> Result<String, String> {
    custodia_node::country_code(s)
}

/// `--listen`, `--addr`: host:port.
fn addr(s: &str) -> Result<String, String> {
    custodia_node::check_addr(s).map(|()| s.to_owned())
}

/// `--key`: an agency id that can be a peer's key.
fn agency_key(s: &str) -> Result<AgencyId, String> {
    let key = AgencyId::from_hex(s.trim()).map_err(|_| {
        format!(
            "must be the peer's agency id: 64 hex characters (got {} characters)",
            s.trim().chars().count()
        )
    })?;
    if !custodia_protocol::is_valid_agency_key(&key) {
        return Err("not a usable Ed25519 public key (not a canonical point, or of small order): check the agency id you were given".into());
    }
    Ok(key)
}

fn init_logging(format: &str) {
    let spec = std::env::var("CUSTODIA_LOG").unwrap_or_else(|_| "info".to_string());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for lib in QUIET_LIBRARIES {
        if !spec.contains(lib) {
            if let Ok(d) = format!("{lib}=warn").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    // Colour only on a terminal, and not there either when NO_COLOR is
    // set to anything (https://no-color.org): a log file, a journal or a
    // reader who turned colour off gets plain text.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM. Both are caught from the moment this is
/// called (inside the runtime, before the node starts), not from the
/// future's first poll: a node told to stop while it starts stops cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
