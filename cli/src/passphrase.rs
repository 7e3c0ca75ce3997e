//! Where the passphrase of an encrypted identity key file comes from, in
//! this order: `--passphrase-fd N` (one line read from that file
//! descriptor), the environment variable `CUSTODIA_PASSPHRASE` (for
//! services), or the terminal (`/dev/tty`, echo off). It is asked for only
//! when a key file is encrypted, at most once per run, and handed to the
//! node library as a [`Passphrase`] (wiped from memory when dropped, never
//! printed).

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use custodia_node::{KeyFileError, Passphrase, PassphraseSource};
use zeroize::Zeroizing;

/// The environment variable a service passes the passphrase in.
pub(crate) const ENV: &str = "CUSTODIA_PASSPHRASE";

/// The longest passphrase read from a file descriptor.
const MAX_LINE: usize = 4096;

/// The sources of this run, set once by `main`.
static SOURCE: OnceLock<Source> = OnceLock::new();

/// Sets this run's sources (the first call wins).
pub(crate) fn set(fd: Option<u32>, warn: bool) {
    let _ = SOURCE.set(Source::new(fd, warn));
}

/// This run's sources (none but the environment and the terminal if
/// [`set`] was not called).
pub(crate) fn source() -> &'static Source {
    SOURCE.get_or_init(|| Source::new(None, false))
}

/// The officer's key file of this run (`--as`), set once by `main`.
static OFFICER: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();

/// Sets this run's officer key file (the first call wins).
pub(crate) fn set_officer(path: Option<std::path::PathBuf>) {
    let _ = OFFICER.set(path);
}

/// Opens the node directory, unlocking its key with this run's sources;
/// with `--as FILE`, the officer's key too, and acts as that officer.
pub(crate) fn open(dir: &Path) -> Result<custodia_node::Local, custodia_node::LocalError> {
    let mut l = custodia_node::Local::open_with(dir, source())?;
    if let Some(path) = OFFICER.get().and_then(Option::as_ref) {
        l.act_as(read_officer_key(path)?)?;
    }
    Ok(l)
}

/// The environment variable an officer's own passphrase comes in, when
/// the officer's key file is not under the agency key's.
pub(crate) const OFFICER_ENV: &str = "CUSTODIA_OFFICER_PASSPHRASE";

/// Reads the officer's key file of `--as`: with `CUSTODIA_OFFICER_PASSPHRASE`
/// if set; else with this run's passphrase (the agency key's, the usual
/// case of one passphrase for a node's files) and, if that is not the
/// officer's, asked on the terminal.
fn read_officer_key(path: &Path) -> Result<custodia_protocol::Identity, KeyFileError> {
    struct Given(Passphrase);
    impl PassphraseSource for Given {
        fn passphrase(&self, _: &Path) -> Result<Passphrase, KeyFileError> {
            Ok(self.0.clone())
        }
    }
    if let Some(p) = env_passphrase(OFFICER_ENV) {
        return custodia_node::read_key_file_with(path, &Given(p));
    }
    match custodia_node::read_key_file_with(path, source()) {
        Err(KeyFileError::WrongPassphrase(_)) => {
            let asked = ask(
                &format!("Passphrase for officer key file {}: ", path.display()),
                path,
            )?
            .ok_or_else(|| KeyFileError::WrongPassphrase(path.to_owned()))?;
            custodia_node::read_key_file_with(path, &Given(asked))
        }
        other => other,
    }
}

/// A passphrase from an environment variable, its bytes as they are.
fn env_passphrase(var: &str) -> Option<Passphrase> {
    std::env::var_os(var).map(|v| {
        #[cfg(unix)]
        let bytes = {
            use std::os::unix::ffi::OsStringExt as _;
            v.into_vec()
        };
        #[cfg(not(unix))]
        let bytes = v.to_string_lossy().into_owned().into_bytes();
        Passphrase::new(bytes)
    })
}

/// The passphrase that unlocked this run's agency key, if it was
/// encrypted (a node key is written under it, so the node can read it).
pub(crate) fn unlocked() -> Option<Passphrase> {
    source().cached.get().cloned()
}

/// Reads the node's configuration and identity, unlocking its key with
/// this run's sources.
pub(crate) fn open_config(
    dir: &Path,
) -> Result<(custodia_node::Config, custodia_protocol::Identity), custodia_node::LocalError> {
    custodia_node::open_config_with(dir, source())
}

/// The passphrase sources of one run of `custodia`.
pub(crate) struct Source {
    /// `--passphrase-fd N`.
    fd: Option<u32>,
    /// The passphrase, once it has been had (a file descriptor or the
    /// terminal is read once per run).
    cached: OnceLock<Passphrase>,
    /// Whether to warn, on a terminal, about an unencrypted key file.
    warn: bool,
    /// Whether the warning was given.
    warned: AtomicBool,
}

impl Source {
    /// The sources given on the command line and in the environment.
    /// `warn`: whether to warn on a terminal about an unencrypted key (not
    /// for `node run`, which logs it, nor for `--json`).
    pub(crate) fn new(fd: Option<u32>, warn: bool) -> Self {
        Source {
            fd,
            cached: OnceLock::new(),
            warn,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether `--passphrase-fd` or `CUSTODIA_PASSPHRASE` gives one.
    pub(crate) fn given(&self) -> bool {
        self.fd.is_some() || std::env::var_os(ENV).is_some()
    }

    /// The passphrase from `--passphrase-fd` or the environment, if one
    /// of them gives it.
    fn given_passphrase(&self, path: &Path) -> Result<Option<Passphrase>, KeyFileError> {
        if let Some(fd) = self.fd {
            return read_fd(fd, "--passphrase-fd", path).map(Some);
        }
        Ok(env_passphrase(ENV))
    }

    /// The passphrase for a new encrypted key file at `path`: from
    /// `--passphrase-fd` or the environment, else asked twice on the
    /// terminal (the two must match). `Ok(None)`: no source at all.
    pub(crate) fn new_passphrase(&self, path: &Path) -> Result<Option<Passphrase>, KeyFileError> {
        if let Some(p) = self.given_passphrase(path)? {
            return Ok(Some(p));
        }
        ask_new(path)
    }
}

impl PassphraseSource for Source {
    fn passphrase(&self, path: &Path) -> Result<Passphrase, KeyFileError> {
        if let Some(p) = self.cached.get() {
            return Ok(p.clone());
        }
        let p = match self.given_passphrase(path)? {
            Some(p) => p,
            None => ask(
                &format!("Passphrase for key file {}: ", path.display()),
                path,
            )?
            .ok_or_else(|| KeyFileError::NoPassphrase(path.to_owned()))?,
        };
        Ok(self.cached.get_or_init(|| p).clone())
    }

    fn unencrypted(&self, path: &Path) {
        if self.warn
            && std::io::stderr().is_terminal()
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: key file {} is not encrypted; encrypt it with `custodia key protect`",
                path.display()
            );
        }
    }
}

/// The passphrase for a new key, asked twice on the terminal; `Ok(None)`
/// if there is no terminal.
pub(crate) fn ask_new(path: &Path) -> Result<Option<Passphrase>, KeyFileError> {
    let Some(first) = ask(
        &format!("New passphrase for key file {}: ", path.display()),
        path,
    )?
    else {
        return Ok(None);
    };
    if first.is_empty() {
        return Err(KeyFileError::EmptyPassphrase(path.to_owned()));
    }
    let again = ask("Enter the same passphrase again: ", path)?
        .ok_or_else(|| KeyFileError::NoPassphrase(path.to_owned()))?;
    if again != first {
        return Err(KeyFileError::PassphraseInput {
            path: path.to_owned(),
            why: "the two passphrases differ; nothing was changed".into(),
        });
    }
    Ok(Some(first))
}

/// Asks on the controlling terminal with echo off; `Ok(None)` if the
/// process has no terminal.
pub(crate) fn ask(prompt: &str, path: &Path) -> Result<Option<Passphrase>, KeyFileError> {
    // rpassword opens /dev/tty itself; opening it here first tells "no
    // terminal" (ENXIO without a controlling terminal) from a failure.
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_err()
    {
        return Ok(None);
    }
    let line = rpassword::prompt_password(prompt).map_err(|e| KeyFileError::PassphraseInput {
        path: path.to_owned(),
        why: format!("the terminal: {e}"),
    })?;
    Ok(Some(Passphrase::from(line)))
}

/// One line (without its `\n` or `\r\n`) read from file descriptor `fd`,
/// through `/dev/fd/N`; `flag` names the option that gave it.
pub(crate) fn read_fd(fd: u32, flag: &str, path: &Path) -> Result<Passphrase, KeyFileError> {
    let failed = |why: String| KeyFileError::PassphraseInput {
        path: path.to_owned(),
        why,
    };
    let mut file = std::fs::File::open(format!("/dev/fd/{fd}"))
        .map_err(|e| failed(format!("{flag} {fd}: {e}")))?;
    // Room for the longest line: growing would leave copies behind.
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE + 1));
    let mut byte = [0u8; 1];
    loop {
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if line.len() == MAX_LINE {
                    return Err(failed(format!(
                        "{flag} {fd}: no end of line in the first {MAX_LINE} bytes"
                    )));
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(format!("{flag} {fd}: {e}"))),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Passphrase::new(std::mem::take(&mut *line)))
}

/// The new passphrase of `custodia key passphrase`: one line from
/// `--new-passphrase-fd N`, else asked twice on the terminal.
pub(crate) fn new_from(fd: Option<u32>, path: &Path) -> Result<Passphrase, KeyFileError> {
    match fd {
        Some(fd) => read_fd(fd, "--new-passphrase-fd", path),
        None => ask_new(path)?.ok_or_else(|| KeyFileError::PassphraseInput {
            path: path.to_owned(),
            why: "no new passphrase: pass --new-passphrase-fd N or run the command on a terminal"
                .into(),
        }),
    }
}
