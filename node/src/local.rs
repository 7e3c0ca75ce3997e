//! The local node directory: configuration, identity and store together,
//! and the operations an investigator performs on them.
//!
//! The CLI is a thin front over this module; a running daemon picks up what
//! it writes from the shared store file within a poll interval.

use std::path::{Path, PathBuf};

use custodia_protocol::bundle;
use custodia_protocol::{
    Acquisition, AgencyId, Body, CaseId, CaseOpened, CustodyAction, CustodyEvent, Digests, Entry,
    EntryId, EvidenceRegistered, Identity, Item, ItemId, MemberAdded, MemberRemoved, Note, Role,
    Tlp, Transfer, WithheldPosition,
};

use crate::config::{AgencySection, Config, ConfigError, NodeSection, Peer, CONFIG_FILE};
use crate::daemon::now_ms;
use crate::hashing::{self, Wanted};
use crate::keyfile::{self, KeyFileError, NoPassphrase, Passphrase, PassphraseSource, Protection};
use crate::mediatype;
use crate::store::{Draft, Quarantined, Store, StoreError};
use custodia_protocol::keylog::{
    self, Appended, KeyLog, KeyLogError, KeyStatement, Profile, PublicKey, Root, SignWithError,
    Statement, StatementPayload, StatementSigner,
};
use custodia_protocol::{KeyDigest, KeyId};

/// The identity key file of a new node, in its directory.
pub const KEY_FILE: &str = "identity.key";
/// The node key file, in the node's directory: a key the agency's key log
/// certifies with role node (`custodia key certify-node`), which signs the
/// witnesses of cases of format version 2. Optional.
pub const NODE_KEY_FILE: &str = "node.key";

/// Default listening address of a new node.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Why a local operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The directory is not a node directory.
    #[error("{0} is not a Custodia node directory (no {CONFIG_FILE}); create one with `custodia --dir {0} init`")]
    NotInitialised(PathBuf),
    /// The directory is a node already.
    #[error("{0} is already a Custodia node directory")]
    AlreadyInitialised(PathBuf),
    /// I/O on the directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Identity key.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user named something that does not exist or is ambiguous.
    #[error("{0}")]
    NotFound(String),
    /// The request is refused by the rules or is invalid.
    #[error("{0}")]
    Refused(String),
    /// The request is malformed: an argument that cannot mean anything
    /// (exit 2, like any usage error).
    #[error("{0}")]
    Usage(String),
    /// A key in a hardware token (PKCS#11).
    #[error(transparent)]
    Token(#[from] crate::pkcs11::TokenError),
    /// A signing key (a token) could not sign, or signed wrongly.
    #[error(transparent)]
    Sign(#[from] SignWithError),
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl LocalError {
    /// Whether this is a refusal of the thing checked (exit 1) rather than
    /// a usage or I/O problem (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, LocalError::Refused(_))
            || matches!(
                self,
                LocalError::Store(
                    StoreError::Refused(_) | StoreError::OnHold(_) | StoreError::Equivocated { .. }
                )
            )
    }
}

/// An opened node directory.
pub struct Local {
    dir: PathBuf,
    config: Config,
    identity: Identity,
    /// The officer who acts (`--as`): entries are then of format version 2,
    /// signed by the officer's key (SPEC.md §5.7).
    officer: Option<Identity>,
    store: Store,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("dir", &self.dir).finish()
    }
}

impl Local {
    /// Creates a node directory: key (mode 0600, unencrypted), configuration
    /// and store. See [`Local::init_with`] for an encrypted key.
    pub fn init(
        dir: &Path,
        name: &str,
        country: &str,
        listen: Option<&str>,
    ) -> Result<Local, LocalError> {
        Self::init_with(dir, name, country, listen, None)
    }

    /// Creates a node directory: key (mode 0600, encrypted under `pass` if
    /// given), configuration and store.
    pub fn init_with(
        dir: &Path,
        name: &str,
        country: &str,
        listen: Option<&str>,
        pass: Option<&Passphrase>,
    ) -> Result<Local, LocalError> {
        if dir.join(CONFIG_FILE).exists() {
            return Err(LocalError::AlreadyInitialised(dir.to_owned()));
        }
        let config = Config {
            agency: AgencySection {
                name: name.to_owned(),
                country: country.to_owned(),
                key: KEY_FILE.into(),
            },
            node: NodeSection {
                listen: listen.unwrap_or(DEFAULT_LISTEN).to_owned(),
                data: "store.sqlite".into(),
                witness_interval_secs: 10,
            },
            peers: Vec::new(),
        };
        // Check before writing anything.
        let text =
            toml::to_string_pretty(&config).map_err(|e| LocalError::Refused(e.to_string()))?;
        Config::parse(&text, &dir.join(CONFIG_FILE))?;
        // A failed init leaves nothing behind: the first folder it created
        // (the node folder or a missing parent) is removed again.
        let created = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .last()
            .map(Path::to_owned);
        let made = (|| {
            create_private_dir(dir).map_err(|source| LocalError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let identity = keyfile::create_with(&config.key_path(dir), pass)?;
            config.save(dir)?;
            let store = Store::open(&config.store_path(dir))?;
            Ok((identity, store))
        })();
        match made {
            Ok((identity, store)) => Ok(Local {
                dir: dir.to_owned(),
                config,
                identity,
                officer: None,
                store,
            }),
            Err(e) => {
                if let Some(top) = created {
                    let _ = std::fs::remove_dir_all(top);
                }
                Err(e)
            }
        }
    }

    /// Opens an existing node directory whose key file is unencrypted. See
    /// [`Local::open_with`] for an encrypted one.
    pub fn open(dir: &Path) -> Result<Local, LocalError> {
        Self::open_with(dir, &NoPassphrase)
    }

    /// Opens an existing node directory; if its key file is encrypted, the
    /// passphrase is asked of `source`.
    pub fn open_with(dir: &Path, source: &dyn PassphraseSource) -> Result<Local, LocalError> {
        if !dir.join(CONFIG_FILE).exists() {
            return Err(LocalError::NotInitialised(dir.to_owned()));
        }
        let config = Config::load(dir)?;
        let identity = keyfile::read_with(&config.key_path(dir), source)?;
        tighten_dir(dir);
        let store = Store::open(&config.store_path(dir))?;
        Ok(Local {
            dir: dir.to_owned(),
            config,
            identity,
            officer: None,
            store,
        })
    }

    /// `custodia restore` with an unencrypted key file; see [`Local::restore_with`].
    pub fn restore(file: &Path, dir: &Path, key: &Path) -> Result<Local, LocalError> {
        Self::restore_with(file, dir, key, &NoPassphrase)
    }

    /// `custodia restore`: makes a node directory from a backup file and the
    /// agency's key file (its passphrase, if it is encrypted, asked of
    /// `source`). The key file is copied as it is: an encrypted key stays
    /// encrypted under the same passphrase. The restored store is marked so that the node puts
    /// every shared case on hold until its peers confirm this agency's heads,
    /// or it has recovered from them what it authored after the backup
    /// (SPEC.md §9.14): restoring an old backup never makes the agency sign
    /// a position twice.
    pub fn restore_with(
        file: &Path,
        dir: &Path,
        key: &Path,
        source: &dyn PassphraseSource,
    ) -> Result<Local, LocalError> {
        let info = Store::backup_info(file)?;
        if dir.exists()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(LocalError::Refused(format!(
                "{} exists and is not empty; restore into a new directory",
                dir.display()
            )));
        }
        let loaded = keyfile::load(key, source)?;
        let identity = &loaded.identity;
        if identity.agency() != info.agency {
            return Err(LocalError::Refused(format!(
                "the key file {} is agency {}, the backup is of agency {}",
                key.display(),
                identity.agency().fingerprint(),
                info.agency.fingerprint()
            )));
        }
        let config = Config::parse(&info.config, &dir.join(CONFIG_FILE))?;
        create_private_dir(dir).map_err(|source| LocalError::Io {
            path: dir.to_owned(),
            source,
        })?;
        keyfile::copy_to(&loaded, &config.key_path(dir))?;
        config.save(dir)?;
        let store = config.store_path(dir);
        std::fs::copy(file, &store).map_err(|source| LocalError::Io {
            path: store.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600));
        }
        Store::adopt_backup(
            &store,
            &format!(
                "restored from a backup made at {}",
                custodia_protocol::utc::iso_seconds(info.made_at)
            ),
        )?;
        let config = Config::load(dir)?;
        tighten_dir(dir);
        let store = Store::open(&config.store_path(dir))?;
        Ok(Local {
            dir: dir.to_owned(),
            config,
            identity: loaded.identity,
            officer: None,
            store,
        })
    }
}

/// The signer of an agency key and the officer acting, if any (a free
/// function so that callers can borrow the store mutably beside it).
fn signer_of<'k>(agency: &'k Identity, officer: Option<&'k Identity>) -> crate::Signer<'k> {
    match officer {
        Some(o) => crate::Signer::certified(agency.agency(), o),
        None => crate::Signer::from(agency),
    }
}

/// Creates the node directory (and missing parents) with mode 0700: it
/// holds the identity key and the store, TLP:RED text included. A
/// directory that exists already is tightened to 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tighten_dir(dir);
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Makes the node directory 0700 if group or others may enter or read it
/// (older versions created it with the umask's mode). A directory this
/// user cannot change is left as it is; the files inside are private.
fn tighten_dir(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode();
            if meta.is_dir() && mode & 0o077 != 0 {
                let tightened = std::fs::Permissions::from_mode(mode & 0o7700);
                if let Err(e) = std::fs::set_permissions(dir, tightened) {
                    tracing::warn!(dir = %dir.display(), error = %e, "node directory is open to others and cannot be tightened");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Reads only the configuration and identity (no store), for commands that
/// do not need the store; the key file must be unencrypted (see
/// [`open_config_with`]).
pub fn open_config(dir: &Path) -> Result<(Config, Identity), LocalError> {
    open_config_with(dir, &NoPassphrase)
}

/// Reads only the configuration and identity (no store); if the key file
/// is encrypted, the passphrase is asked of `source`.
pub fn open_config_with(
    dir: &Path,
    source: &dyn PassphraseSource,
) -> Result<(Config, Identity), LocalError> {
    let config = load_config(dir)?;
    let identity = keyfile::read_with(&config.key_path(dir), source)?;
    Ok((config, identity))
}

/// Reads only the configuration (no key, no store).
pub fn load_config(dir: &Path) -> Result<Config, LocalError> {
    if !dir.join(CONFIG_FILE).exists() {
        return Err(LocalError::NotInitialised(dir.to_owned()));
    }
    Ok(Config::load(dir)?)
}

/// `custodia key protect`: encrypts the node's unencrypted key file under
/// `pass`, in place (a new file, mode 0600, fsynced and read back, renamed over the
/// old one). The key file's path.
pub fn protect_key(dir: &Path, pass: &Passphrase) -> Result<PathBuf, LocalError> {
    let config = load_config(dir)?;
    let path = config.key_path(dir);
    if keyfile::protection(&path)? == Protection::Encrypted {
        return Err(LocalError::Usage(format!(
            "key file {} is encrypted already; change its passphrase with `custodia key passphrase`",
            path.display()
        )));
    }
    let loaded = keyfile::load(&path, &NoPassphrase)?;
    keyfile::replace(&path, &loaded.identity, Some(pass))?;
    Ok(path)
}

/// `custodia key passphrase`: re-encrypts the node's encrypted key file
/// under `new`, unlocking it with the passphrase `old` gives. The key
/// file's path.
pub fn change_passphrase(
    dir: &Path,
    old: &dyn PassphraseSource,
    new: &Passphrase,
) -> Result<PathBuf, LocalError> {
    let config = load_config(dir)?;
    let path = config.key_path(dir);
    if keyfile::protection(&path)? == Protection::Unencrypted {
        return Err(LocalError::Usage(format!(
            "key file {} is not encrypted; encrypt it with `custodia key protect`",
            path.display()
        )));
    }
    let loaded = keyfile::load(&path, old)?;
    keyfile::replace(&path, &loaded.identity, Some(new))?;
    Ok(path)
}

/// A key statement the rules refuse, as the operator sees it.
fn refused(e: KeyLogError) -> LocalError {
    LocalError::Refused(format!("key log: {e}"))
}

/// The position of the statement that made the root in force.
fn root_since(log: &KeyLog) -> u64 {
    log.statements()
        .iter()
        .rev()
        .find(|s| {
            matches!(
                s.payload().st,
                Statement::Inception(_) | Statement::RotateRoot(_)
            )
        })
        .map_or(0, KeyStatement::seq)
}

/// An agency this node knows: from its peers, its own config, and the
/// members of its cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAgency {
    /// Its key.
    pub agency: AgencyId,
    /// Its name (the case's name if known, else the peer name).
    pub name: String,
    /// Its country.
    pub country: String,
    /// The local peer name, if it is a configured peer.
    pub peer: Option<String>,
    /// Whether this is this node's own agency.
    pub me: bool,
    /// Whether `name` and `country` are the ones the agency signed in its
    /// key log's latest profile statement (SPEC.md §3.4), replicated to
    /// this node; otherwise they are what a case recorded or the local
    /// peer name.
    pub signed: bool,
}

impl Local {
    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's configuration, as read from `custodia.toml`.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, read-only: its queries (cases, heads, holds, proofs,
    /// quarantine, checks). Every write goes through this `Local`.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The case's entries concurrent with a removal of their author
    /// (SPEC.md §11.1); none for a case not held. An error instead of a
    /// list missing some when a record kept out of memory could not be
    /// read back (SPEC.md §8.7).
    pub fn after_removal(
        &self,
        case: &CaseId,
    ) -> Result<Vec<custodia_protocol::AfterRemoval>, LocalError> {
        let Some(v) = self.store.case(case) else {
            return Ok(Vec::new());
        };
        let late = v.after_removal();
        match v.failure() {
            None => Ok(late),
            Some(why) => Err(StoreError::Records {
                path: self.store.path().to_owned(),
                case: *case,
                why: why.to_string(),
            }
            .into()),
        }
    }

    /// Writes several entries into a case in one transaction (one commit,
    /// one fsync), as [`Local::write`] writes one.
    pub fn write_many(
        &mut self,
        case: &CaseId,
        drafts: Vec<Draft>,
    ) -> Result<Vec<Entry>, LocalError> {
        Ok(self.store.author_many(
            signer_of(&self.identity, self.officer.as_ref()),
            Some(*case),
            drafts,
            now_ms(),
        )?)
    }

    /// Releases this node's hold on a case (SPEC.md §9.14), with the
    /// operator's reason, which the store logs. False if the case was not
    /// on hold.
    pub fn release_hold(&mut self, case: &CaseId, why: &str) -> Result<bool, LocalError> {
        Ok(self.store.release_hold(case, why)?)
    }

    /// This agency's key log (SPEC.md §3.4), if it has started one,
    /// checked in full.
    pub fn key_log(&self) -> Result<Option<KeyLog>, LocalError> {
        Ok(self.store.key_log(&self.me())?)
    }

    /// Starts this agency's key log: the inception, by the agency key as
    /// the first root, committing to `next` as the next root (kept
    /// offline: only it can rotate the root, SPEC.md §3.4), then the
    /// agency's profile, its name and country from the configuration.
    pub fn start_key_log(&mut self, next: &Identity) -> Result<KeyLog, LocalError> {
        self.start_key_log_committing(keylog::key_of(next))
    }

    /// [`Local::start_key_log`] for a next root known by its public key
    /// only (a key generated in a token).
    pub fn start_key_log_committing(&mut self, next: KeyId) -> Result<KeyLog, LocalError> {
        if self.key_log()?.is_some() {
            return Err(LocalError::Refused(
                "this agency's key log is started already (`custodia key log` shows it)".into(),
            ));
        }
        if next.0 == self.me().0 {
            return Err(LocalError::Refused(
                "the next root key must be another key than the agency key".into(),
            ));
        }
        let now = now_ms();
        let inception = KeyStatement::sign(
            &self.identity,
            &StatementPayload {
                v: 1,
                agency: self.me(),
                seq: 0,
                prev: None,
                time: now,
                st: Statement::Inception(Root {
                    root: PublicKey::ed25519(keylog::key_of(&self.identity)),
                    next: KeyDigest::of(&next),
                }),
            },
        );
        let mut log = KeyLog::from_inception(inception).map_err(refused)?;
        let profile = Statement::Profile(Profile {
            name: self.config.agency.name.clone(),
            country: self.config.agency.country.clone(),
        });
        log.append(KeyStatement::sign(
            &self.identity,
            &StatementPayload::after(&log, now, profile),
        ))
        .map_err(refused)?;
        self.store.save_key_log_over(&log, None, 0)?;
        Ok(log)
    }

    /// The operator has compared the key log with the agency's records:
    /// statements may be written again. False if nothing was waiting.
    pub fn confirm_key_log(&mut self) -> Result<bool, LocalError> {
        Ok(self.store.confirm_key_log()?)
    }

    /// This agency's key log, if a new statement may be written to it now:
    /// the log is started, and the store is not waiting for the operator
    /// to confirm it (SPEC.md §9.14: a store restored from an older backup
    /// could sign at a position the agency has used).
    fn key_log_for_writing(&self) -> Result<KeyLog, LocalError> {
        let log = self.key_log()?.ok_or_else(|| {
            LocalError::Refused(
                "this agency has no key log yet: start it with `custodia key start`".into(),
            )
        })?;
        if let Some(why) = self.store.key_log_unconfirmed()? {
            return Err(LocalError::Refused(format!(
                "this node's store may be older than the agency's key log ({why}): a statement now could take a position the agency has used; compare `custodia key log` with your records, then run `custodia key confirm`"
            )));
        }
        Ok(log)
    }

    /// This agency's key log, if `root` (with `None`, the agency key) can
    /// sign its next statement now: the log is started, the store is not
    /// waiting for a confirmation, and the key is the root in force.
    /// Checked before anything is created for the statement (a key file, a
    /// token key), so that a refusal leaves nothing behind.
    pub fn key_log_ready(&self, root: Option<KeyId>) -> Result<KeyLog, LocalError> {
        let log = self.key_log_for_writing()?;
        let current = log.current_root();
        let since = root_since(&log);
        match root {
            Some(k) if k != current => Err(LocalError::Refused(format!(
                "key {k} is not the agency's root in force: the root is {current} (since statement #{since}); statements are signed by the root"
            ))),
            None if current != keylog::key_of(&self.identity) => Err(LocalError::Refused(format!(
                "the agency key is no longer the agency's root: the root in force is {current} (since statement #{since}); pass the root key with --root FILE, or --root pkcs11:token=LABEL;object=LABEL for a key in a token"
            ))),
            _ => Ok(log),
        }
    }

    /// Signs `st` as the next statement of this agency's key log, with the
    /// agency key, which must be the root in force.
    pub fn add_key_statement(&mut self, st: Statement) -> Result<KeyStatement, LocalError> {
        self.add_key_statement_with(None, st)
    }

    /// Signs `st` as the next statement of this agency's key log with
    /// `root`, the root in force (a key file or a key in a token); with
    /// `None`, with the agency key if it is the root.
    pub fn add_key_statement_with(
        &mut self,
        root: Option<&dyn StatementSigner>,
        st: Statement,
    ) -> Result<KeyStatement, LocalError> {
        let mut log = self.key_log_ready(root.map(StatementSigner::key))?;
        let base = (log.len(), log.head());
        let signer: &dyn StatementSigner = root.unwrap_or(&self.identity);
        let s = KeyStatement::sign_with(signer, &StatementPayload::after(&log, now_ms(), st))?;
        log.append(s.clone()).map_err(refused)?;
        self.store.save_key_log_over(&log, Some(base), base.0)?;
        Ok(s)
    }

    /// This agency's key log and the position a rotation to `new_root`
    /// goes at, if it may: `at`, or the next position; `new_root` must be
    /// the key the root in force before that position committed to (the
    /// next root, SPEC.md §3.4). Checked before the new next key is made.
    pub fn rotation_ready(
        &self,
        new_root: KeyId,
        at: Option<u64>,
    ) -> Result<(KeyLog, u64), LocalError> {
        let log = self.key_log_for_writing()?;
        let at = at.unwrap_or(log.len());
        if at == 0 || at > log.len() {
            return Err(LocalError::Refused(format!(
                "a rotation goes at a position from 1 to {} (the next one): position 0 is the inception, and a log has no gaps",
                log.len()
            )));
        }
        if log.committed_next(at) != Some(KeyDigest::of(&new_root)) {
            return Err(LocalError::Refused(format!(
                "key {new_root} is not the next root this log committed to before position {at}: only the key written by `custodia key start --next-key` (or by the last rotation's --next-key) can rotate the root"
            )));
        }
        Ok((log, at))
    }

    /// Rotates this agency's root to `new_root`, the pre-committed next
    /// root, which signs the rotation and commits to `next` as the root
    /// after it. At the next position by default; at an earlier position
    /// `at`, it is a recovery (SPEC.md §3.4): the statements from `at` on,
    /// which a thief of the old root may have signed, are superseded.
    /// Returns the rotation and how many statements it superseded.
    pub fn rotate_root(
        &mut self,
        new_root: &dyn StatementSigner,
        next: KeyId,
        at: Option<u64>,
    ) -> Result<(KeyStatement, usize), LocalError> {
        let (mut log, at) = self.rotation_ready(new_root.key(), at)?;
        if next == new_root.key() {
            return Err(LocalError::Refused(
                "the next root must be another key than the new root".into(),
            ));
        }
        let st = Statement::RotateRoot(Root {
            root: PublicKey::ed25519(new_root.key()),
            next: KeyDigest::of(&next),
        });
        let payload = StatementPayload::at(&log, at, now_ms(), st).ok_or_else(|| {
            LocalError::Refused(format!("no position {at} in this agency's key log"))
        })?;
        let s = KeyStatement::sign_with(new_root, &payload)?;
        let base = (log.len(), log.head());
        let superseded = match log.append(s.clone()).map_err(refused)? {
            Appended::Recovered { superseded } => superseded,
            _ => 0,
        };
        self.store.save_key_log_over(&log, Some(base), at)?;
        Ok((s, superseded))
    }

    /// Acts as an officer from now on: what this directory writes is
    /// signed by the officer's key, certified in the agency's key log, in
    /// entries of format version 2 (SPEC.md §5.7). Refused if the agency's
    /// log, as held, does not certify the key as an officer's now.
    pub fn act_as(&mut self, officer: Identity) -> Result<(), LocalError> {
        let key = keylog::key_of(&officer);
        let log = self.key_log()?.ok_or_else(|| {
            LocalError::Refused(
                "this agency has no key log, so no officer of it is certified: start one with `custodia key start`, then `custodia key certify-officer`".into(),
            )
        })?;
        match log.status(&key, log.len()) {
            keylog::KeyStatus::Certified { certify, .. }
                if certify.role == keylog::KeyRole::Officer =>
            {
                self.officer = Some(officer);
                Ok(())
            }
            keylog::KeyStatus::Certified { .. } => Err(LocalError::Refused(format!(
                "key {key} is certified as this agency's node key, not an officer's: pass an officer's key file with --as"
            ))),
            keylog::KeyStatus::Revoked { revoke, .. } => Err(LocalError::Refused(format!(
                "the officer key {key} was revoked ({}, effective {}): it signs nothing more",
                revoke.reason.as_str(),
                custodia_protocol::utc::iso_seconds(revoke.effective)
            ))),
            _ => Err(LocalError::Refused(format!(
                "key {key} is not an officer key of this agency: `custodia key log` lists the certified keys"
            ))),
        }
    }

    /// Who signs what this directory writes: the officer acting, or the
    /// agency's own key.
    pub fn signer(&self) -> crate::Signer<'_> {
        signer_of(&self.identity, self.officer.as_ref())
    }

    /// For an entry of format version 2: the key that signed it and what
    /// the author's key log, as this node holds it, certifies it as (its
    /// role, and the officer for an officer's key). None for an entry of
    /// format version 1 (signed by its author's agency key) or a key the
    /// held log does not certify.
    pub fn signer_of(&self, e: &Entry) -> Option<(KeyId, keylog::Certify)> {
        e.payload().keys?;
        let key = KeyId(e.signer().0);
        let c = self
            .store
            .cached_key_log(&e.author())?
            .certification(&key, u64::MAX)?;
        Some((key, c.certify.clone()))
    }

    /// This node's agency id.
    pub fn me(&self) -> AgencyId {
        self.identity.agency()
    }

    /// Every agency this node knows, sorted by name.
    pub fn agencies(&self) -> Vec<KnownAgency> {
        let mut out: Vec<KnownAgency> = vec![KnownAgency {
            agency: self.me(),
            name: self.config.agency.name.clone(),
            country: self.config.agency.country.clone(),
            peer: None,
            me: true,
            signed: false,
        }];
        for p in &self.config.peers {
            if let Some(a) = p.agency() {
                out.push(KnownAgency {
                    agency: a,
                    name: p.name.clone(),
                    country: p.country.clone(),
                    peer: Some(p.name.clone()),
                    me: false,
                    signed: false,
                });
            }
        }
        for case in self.store.cases() {
            if let Some(state) = self.store.state(case) {
                for m in state.members.values() {
                    if let Some(k) = out.iter_mut().find(|k| k.agency == m.agency) {
                        if !k.me {
                            k.name = m.name.clone();
                            k.country = m.country.clone();
                        }
                    } else {
                        out.push(KnownAgency {
                            agency: m.agency,
                            name: m.name.clone(),
                            country: m.country.clone(),
                            peer: None,
                            me: false,
                            signed: false,
                        });
                    }
                }
            }
        }
        // The agency's own word, where its key log has reached this node.
        for k in &mut out {
            if let Some(p) = self.signed_profile(&k.agency) {
                k.name = p.name;
                k.country = p.country;
                k.signed = true;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.agency.cmp(&b.agency)));
        out
    }

    /// The name and country `agency` signed in its key log (its latest
    /// profile statement), if this node holds its log.
    pub fn signed_profile(&self, agency: &AgencyId) -> Option<Profile> {
        self.store
            .cached_key_log(agency)
            .and_then(|l| l.profile(l.len()).cloned())
    }

    /// A display name for an agency: its name, or its fingerprint.
    pub fn name_of(&self, agency: &AgencyId) -> String {
        self.agencies()
            .into_iter()
            .find(|k| k.agency == *agency)
            .map_or_else(|| agency.fingerprint(), |k| k.name)
    }

    /// Resolves what a user typed for an agency: a peer name, an agency
    /// name, a fingerprint (or a unique prefix of it), or a full key.
    pub fn resolve_agency(&self, what: &str) -> Result<KnownAgency, LocalError> {
        let all = self.agencies();
        if let Ok(key) = AgencyId::from_hex(what) {
            if !custodia_protocol::is_valid_agency_key(&key) {
                return Err(LocalError::Usage(format!(
                    "{key} is not a usable Ed25519 public key (not a canonical point, or of small order)"
                )));
            }
            return Ok(all
                .into_iter()
                .find(|k| k.agency == key)
                .unwrap_or(KnownAgency {
                    agency: key,
                    name: key.fingerprint(),
                    country: "ZZ".into(),
                    peer: None,
                    me: false,
                    signed: false,
                }));
        }
        let w = what.trim().to_lowercase();
        let hits: Vec<&KnownAgency> = all
            .iter()
            .filter(|k| {
                k.peer.as_deref().is_some_and(|p| p.to_lowercase() == w)
                    || k.name.to_lowercase() == w
                    || (w.len() >= 4 && k.agency.fingerprint().starts_with(&w))
            })
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(LocalError::NotFound(format!(
                "no agency called {what:?}: give a peer name, a fingerprint or a 64-hex-character key (see `custodia agency list`)"
            ))),
            _ => Err(LocalError::NotFound(format!(
                "{what:?} names {} agencies; give a full fingerprint or key",
                hits.len()
            ))),
        }
    }

    /// Resolves a case id or a unique prefix of its hex, or a reference.
    pub fn resolve_case(&self, what: &str) -> Result<CaseId, LocalError> {
        let w = what.trim().to_lowercase();
        let hits: Vec<CaseId> = self
            .store
            .cases()
            .copied()
            .filter(|c| {
                (w.len() >= 6 && c.to_hex().starts_with(&w))
                    || self
                        .store
                        .state(c)
                        .is_some_and(|s| s.reference.to_lowercase() == w)
            })
            .collect();
        let short_hex = !w.is_empty() && w.len() < 6 && w.bytes().all(|b| b.is_ascii_hexdigit());
        match hits.as_slice() {
            [one] => Ok(*one),
            [] if short_hex => Err(LocalError::NotFound(format!(
                "no case {what:?}: a case id prefix needs at least 6 hex characters (or give the case's reference; see `custodia case list`)"
            ))),
            [] => Err(LocalError::NotFound(format!(
                "no case {what:?} in this node's store (see `custodia case list`)"
            ))),
            _ => Err(LocalError::NotFound(format!(
                "{what:?} matches {} cases; give more of the case id",
                hits.len()
            ))),
        }
    }

    /// Opens a new case; returns the genesis entry (its id is the case id).
    pub fn open_case(
        &mut self,
        title: &str,
        reference: &str,
        jurisdiction: Option<&str>,
        tlp: Tlp,
    ) -> Result<Entry, LocalError> {
        if tlp == Tlp::Red {
            return Err(LocalError::Refused(
                "a case cannot be opened as TLP:RED (the genesis must reach every member); mark single entries RED instead".into(),
            ));
        }
        let body = Body::CaseOpened(CaseOpened {
            title: title.to_owned(),
            reference: reference.to_owned(),
            jurisdiction: jurisdiction.map(str::to_owned),
            name: self.config.agency.name.clone(),
            country: self.config.agency.country.clone(),
        });
        Ok(self.store.author(
            signer_of(&self.identity, self.officer.as_ref()),
            None,
            Draft::new(tlp, body),
            now_ms(),
        )?)
    }

    /// The case's handling label, for entries written into it.
    pub fn case_tlp(&self, case: &CaseId) -> Tlp {
        self.store
            .state(case)
            .and_then(|s| s.tlp)
            .unwrap_or(Tlp::Amber)
    }

    /// Writes an entry into a case.
    pub fn write(&mut self, case: &CaseId, draft: Draft) -> Result<Entry, LocalError> {
        Ok(self.store.author(
            signer_of(&self.identity, self.officer.as_ref()),
            Some(*case),
            draft,
            now_ms(),
        )?)
    }

    /// Shares a case with an agency.
    pub fn share(&mut self, case: &CaseId, with: &str, role: Role) -> Result<Entry, LocalError> {
        let who = self.resolve_agency(with)?;
        self.share_agency(case, &who, role)
    }

    /// Shares a case with an agency whose name and country the caller
    /// gives (for an agency this node knows only by key).
    pub fn share_agency(
        &mut self,
        case: &CaseId,
        who: &KnownAgency,
        role: Role,
    ) -> Result<Entry, LocalError> {
        if who.me {
            return Err(LocalError::Refused(
                "this agency is already a member of its own cases".into(),
            ));
        }
        // The record names an agency as it names itself: where its signed
        // profile is known, no other name or country goes in.
        if let Some(p) = self.signed_profile(&who.agency) {
            if p.name != who.name || p.country != who.country {
                return Err(LocalError::Refused(format!(
                    "agency {} signed its name as {:?} ({}) in its key log; the case records the agency's own name, not {:?} ({}): leave out --name and --country",
                    who.agency.fingerprint(),
                    p.name,
                    p.country,
                    who.name,
                    who.country
                )));
            }
        }
        let tlp = self.case_tlp(case);
        let body = Body::MemberAdded(MemberAdded {
            agency: who.agency,
            name: who.name.clone(),
            country: who.country.clone(),
            role,
        });
        self.write(case, Draft::new(tlp, body))
    }

    /// Removes an agency from a case.
    pub fn unshare(
        &mut self,
        case: &CaseId,
        with: &str,
        reason: Option<&str>,
    ) -> Result<Entry, LocalError> {
        let who = self.resolve_agency(with)?;
        let tlp = self.case_tlp(case);
        let body = Body::MemberRemoved(MemberRemoved {
            agency: who.agency,
            reason: reason.map(str::to_owned),
        });
        self.write(case, Draft::new(tlp, body))
    }

    /// Adds or replaces a peer in the configuration.
    pub fn add_peer(&mut self, peer: Peer) -> Result<(), LocalError> {
        // A node never pins itself: its own key as a peer would make it
        // accept connections that claim to be this agency.
        if peer.agency() == Some(self.me()) {
            return Err(LocalError::Refused(format!(
                "{} is this node's own agency key; a peer is another agency (its id is the `agency id` line of `custodia id` on that agency's node)",
                self.me().fingerprint()
            )));
        }
        let mut config = self.config.clone();
        config
            .peers
            .retain(|p| p.name != peer.name && p.key != peer.key);
        config.peers.push(peer);
        let text =
            toml::to_string_pretty(&config).map_err(|e| LocalError::Refused(e.to_string()))?;
        Config::parse(&text, &self.dir.join(CONFIG_FILE))?;
        config.save(&self.dir)?;
        self.config = config;
        Ok(())
    }

    /// Removes a peer by name.
    pub fn remove_peer(&mut self, name: &str) -> Result<Peer, LocalError> {
        let mut config = self.config.clone();
        let Some(i) = config.peers.iter().position(|p| p.name == name) else {
            return Err(LocalError::NotFound(format!("no peer called {name:?}")));
        };
        let removed = config.peers.remove(i);
        config.save(&self.dir)?;
        self.config = config;
        Ok(removed)
    }
}

/// What to record about evidence being registered, besides what the files
/// themselves say (digests, size, media type).
#[derive(Debug, Clone, Default)]
pub struct EvidenceInfo {
    /// Exhibit number. With several files, each gets `N.1`, `N.2`, ….
    pub exhibit: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Legal authority (warrant, EIO, MLA request).
    pub authority: Option<String>,
    /// Who acquired it (defaults to the agency's name).
    pub acquired_by: Option<String>,
    /// Where.
    pub place: Option<String>,
    /// How.
    pub method: Option<String>,
    /// With which tool.
    pub tool: Option<String>,
    /// The optional digests to compute besides SHA-256.
    pub also: Wanted,
    /// Why a file whose SHA-256 the case already holds (or another file of
    /// the same registration has) is registered as a separate item anyway.
    /// `None` refuses such a file: registering the same evidence twice by
    /// mistake would leave a permanent duplicate-digest conflict in the
    /// case. The reason is signed as a note about the new item, in the
    /// same transaction.
    pub allow_duplicate: Option<String>,
    /// The item these files were copied or derived from (`derived-from`,
    /// SPEC.md §6.4): an exact working copy of it shares its digest
    /// legitimately, so it is neither refused nor a conflict.
    pub derived_from: Option<ItemId>,
}

/// An item that already has the SHA-256 of a file being registered.
struct Duplicate {
    item: ItemId,
    /// How the refusal names it.
    said: String,
    /// How the note names it.
    label: String,
}

/// A file found for registration, checked to be readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceFile {
    /// Its path as found.
    pub path: PathBuf,
    /// Its size when it was found.
    pub size: u64,
}

/// One registered evidence file.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The file.
    pub path: PathBuf,
    /// The signed entry.
    pub entry: Entry,
    /// What it registered.
    pub item: EvidenceRegistered,
    /// The item that already had its SHA-256 (registered anyway, with
    /// [`EvidenceInfo::allow_duplicate`]).
    pub duplicate_of: Option<ItemId>,
    /// The note that records why the duplicate was registered.
    pub note: Option<Entry>,
}

/// What re-hashing a file against a registered item found.
#[derive(Debug, Clone)]
pub struct EvidenceCheck {
    /// The case the item is in.
    pub case: CaseId,
    /// The registered item.
    pub item: Item,
    /// The digests of the file now.
    pub digests: Digests,
    /// The file's size now.
    pub size: u64,
    /// What differs: any of "size", "sha256", "sha1", "md5". Empty when the
    /// file is the registered item.
    pub differs: Vec<&'static str>,
}

impl EvidenceCheck {
    /// Whether the file is the registered item.
    pub fn matches(&self) -> bool {
        self.differs.is_empty()
    }
}

/// Optional details of a custody event.
#[derive(Debug, Clone, Default)]
pub struct CustodyInfo {
    /// Who did it (a person).
    pub actor: Option<String>,
    /// Where.
    pub place: Option<String>,
    /// Why.
    pub purpose: Option<String>,
    /// With which tool.
    pub tool: Option<String>,
    /// Whether the observed digest matched the registered one.
    pub digest_matched: Option<bool>,
    /// The new item (copied only): its UUID, or an id prefix of a
    /// registered item.
    pub copy: Option<String>,
    /// Free text, written as a note entry about the item in the same
    /// transaction.
    pub note: Option<String>,
}

/// What a custody command wrote.
#[derive(Debug, Clone)]
pub struct CustodyWritten {
    /// The case.
    pub case: CaseId,
    /// The item.
    pub item: ItemId,
    /// The custody entry.
    pub entry: Entry,
    /// The note entry, when a note was given.
    pub note: Option<Entry>,
}

/// One position of a case's record, in store (dependency) order.
#[derive(Debug, Clone)]
pub enum TimelineRow {
    /// An entry this node holds.
    Entry(Entry),
    /// A position whose content was withheld from this node.
    Withheld(WithheldPosition),
    /// A stored row that failed verification (SPEC.md §8.8): what the row
    /// recorded and why it failed, never its content.
    Quarantined(Quarantined),
}

/// Finds the files to register: each path that is a file, and each
/// regular file under each path that is a directory (recursively, sorted
/// by path; symbolic links inside directories are not followed). Every
/// file is opened once for reading to check it can be read, so that a
/// registration either covers every file or fails before anything is
/// hashed or written. A file named twice is registered once.
pub fn evidence_files(paths: &[PathBuf]) -> Result<Vec<EvidenceFile>, LocalError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LocalError::Io { path, source }
    };
    let mut out: Vec<EvidenceFile> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io(p))?;
        let mut found = Vec::new();
        if meta.is_dir() {
            walk(p, &mut found)?;
            if found.is_empty() {
                return Err(LocalError::Io {
                    path: p.clone(),
                    source: std::io::Error::other("the directory holds no regular file"),
                });
            }
        } else if meta.is_file() {
            found.push(p.clone());
        } else {
            return Err(LocalError::Io {
                path: p.clone(),
                source: std::io::Error::other("not a regular file or a directory"),
            });
        }
        for f in found {
            let file = std::fs::File::open(&f).map_err(io(&f))?;
            let size = file.metadata().map_err(io(&f))?.len();
            let key = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if seen.insert(key) {
                out.push(EvidenceFile { path: f, size });
            }
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LocalError> {
    let io = |source| LocalError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        entries.push((e.path(), e.file_type().map_err(io)?));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The lowercase hex of what a user typed for an id: dashes removed;
/// None unless it is at least 6 hex characters.
fn hex_prefix(what: &str) -> Option<String> {
    let w: String = what
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    (w.len() >= 6 && w.bytes().all(|b| b.is_ascii_hexdigit())).then_some(w)
}

fn random_item() -> Result<ItemId, LocalError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| LocalError::Random(e.to_string()))?;
    Ok(ItemId::new_v4(b))
}

impl Local {
    /// Re-reads what other processes (a running node) wrote to the store.
    pub fn refresh(&mut self) -> Result<(), LocalError> {
        self.store.refresh()?;
        Ok(())
    }

    /// A short label for an item in messages: its exhibit number and UUID.
    pub fn item_label(item: &Item) -> String {
        match &item.exhibit {
            Some(x) => format!("{x} ({})", item.id.to_uuid_string()),
            None => item.id.to_uuid_string(),
        }
    }

    fn check_writer(&self, case: &CaseId) -> Result<(), LocalError> {
        let v = self
            .store
            .case(case)
            .ok_or(StoreError::UnknownCase(*case))?;
        match v.role(&self.me()) {
            None => Err(LocalError::Refused(format!(
                "this agency is not a member of case {}",
                case.short()
            ))),
            Some(Role::Observer) => Err(LocalError::Refused(format!(
                "this agency is an observer of case {}: observers may only write notes and witnesses",
                case.short()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Registers evidence files in a case, in one transaction: every file
    /// is hashed first (each read exactly once, for every digest wanted),
    /// then all the entries are written together, or none if any file
    /// fails. `progress` gets the file being read and the bytes read so far
    /// over all files.
    pub fn register_evidence(
        &mut self,
        case: &CaseId,
        files: &[EvidenceFile],
        info: &EvidenceInfo,
        progress: &mut dyn FnMut(&Path, u64),
    ) -> Result<Vec<Registered>, LocalError> {
        self.check_writer(case)?;
        let tlp = self.case_tlp(case);
        let mut done = 0u64;
        let mut regs = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let h = hashing::hash_file(&f.path, info.also, &mut |n| progress(&f.path, done + n))
                .map_err(|source| LocalError::Io {
                    path: f.path.clone(),
                    source,
                })?;
            done += h.size;
            let exhibit = match (&info.exhibit, files.len()) {
                (Some(x), 1) => Some(x.clone()),
                (Some(x), _) => Some(format!("{x}.{}", i + 1)),
                (None, _) => None,
            };
            regs.push((
                f.path.clone(),
                EvidenceRegistered {
                    item: random_item()?,
                    exhibit,
                    media_type: mediatype::detect(&h.head, h.size <= h.head.len() as u64)
                        .to_owned(),
                    digests: h.digests,
                    size: h.size,
                    description: info.description.clone(),
                    acquired: Acquisition {
                        by: info
                            .acquired_by
                            .clone()
                            .unwrap_or_else(|| self.config.agency.name.clone()),
                        at: now_ms(),
                        place: info.place.clone(),
                        method: info.method.clone(),
                        tool: info.tool.clone(),
                    },
                    authority: info.authority.clone(),
                    derived_from: info.derived_from,
                },
            ));
        }
        let duplicates = self.duplicates(case, &regs);
        let reason = info
            .allow_duplicate
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if reason.is_none() && duplicates.iter().any(Option::is_some) {
            let found: Vec<String> = regs
                .iter()
                .zip(&duplicates)
                .filter_map(|((path, _), d)| {
                    d.as_ref()
                        .map(|d| format!("{} has the SHA-256 of {}", path.display(), d.said))
                })
                .collect();
            return Err(LocalError::Refused(format!(
                "{}; nothing was registered. To register it again as a separate item, say why: --allow-duplicate REASON",
                found.join("; ")
            )));
        }
        let mut drafts: Vec<Draft> = regs
            .iter()
            .map(|(_, r)| Draft::new(tlp, Body::EvidenceRegistered(r.clone())))
            .collect();
        if let Some(reason) = reason {
            for ((_, r), d) in regs.iter().zip(&duplicates) {
                if let Some(d) = d {
                    drafts.push(Draft::new(
                        tlp,
                        Body::Note(Note {
                            text: format!(
                                "registered again although item {} has the same SHA-256: {reason}",
                                d.label
                            ),
                            item: Some(r.item),
                        }),
                    ));
                }
            }
        }
        let mut entries = self
            .store
            .author_many(
                signer_of(&self.identity, self.officer.as_ref()),
                Some(*case),
                drafts,
                now_ms(),
            )?
            .into_iter();
        let mut out = Vec::with_capacity(regs.len());
        for (path, item) in regs {
            let entry = entries
                .next()
                .ok_or_else(|| LocalError::Refused("nothing was written".into()))?;
            out.push(Registered {
                path,
                entry,
                item,
                duplicate_of: None,
                note: None,
            });
        }
        for (r, d) in out.iter_mut().zip(duplicates) {
            if let Some(d) = d {
                r.duplicate_of = Some(d.item);
                r.note = entries.next();
            }
        }
        Ok(out)
    }

    /// For each file about to be registered, the item that already has its
    /// SHA-256: one of the case's items, or an earlier file of the same
    /// registration.
    fn duplicates(
        &self,
        case: &CaseId,
        regs: &[(PathBuf, EvidenceRegistered)],
    ) -> Vec<Option<Duplicate>> {
        let state = self.store.state(case);
        regs.iter()
            .enumerate()
            .map(|(i, (_, r))| {
                // A copy of the item it derives from (or of another copy
                // of it) shares the digest legitimately (SPEC.md §11.7).
                let same_origin = |x: &custodia_protocol::Item| {
                    r.derived_from
                        .is_some_and(|d| x.id == d || x.derived_from == Some(d))
                };
                let known = state.and_then(|s| {
                    s.items
                        .values()
                        .filter(|x| x.digests.sha256 == r.digests.sha256 && !same_origin(x))
                        .min_by_key(|x| x.id)
                });
                if let Some(x) = known {
                    let label = Self::item_label(x);
                    return Some(Duplicate {
                        item: x.id,
                        said: format!(
                            "item {label}, registered by {}",
                            self.name_of(&x.registered_by)
                        ),
                        label,
                    });
                }
                regs[..i]
                    .iter()
                    .find(|(_, e)| e.digests.sha256 == r.digests.sha256)
                    .map(|(path, e)| {
                        let uuid = e.item.to_uuid_string();
                        Duplicate {
                            item: e.item,
                            said: format!("{}, in the same registration", path.display()),
                            label: match &e.exhibit {
                                Some(x) => format!("{x} ({uuid})"),
                                None => uuid,
                            },
                        }
                    })
            })
            .collect()
    }

    /// Finds an item by its UUID (with or without dashes) or a unique
    /// prefix of at least 6 hex characters, across every case.
    pub fn resolve_item(&self, what: &str) -> Result<(CaseId, Item), LocalError> {
        let Some(w) = hex_prefix(what) else {
            return Err(LocalError::NotFound(format!(
                "{what:?} is not an item id: give its UUID or at least 6 hex characters of it"
            )));
        };
        let mut hits = Vec::new();
        for c in self.store.cases() {
            if let Some(s) = self.store.state(c) {
                for i in s.items.values() {
                    if i.id.to_hex().starts_with(&w) {
                        hits.push((*c, i.clone()));
                    }
                }
            }
        }
        match hits.len() {
            1 => Ok(hits.remove(0)),
            0 => Err(LocalError::NotFound(format!(
                "no item {what:?} in this node's cases (see `custodia case show CASE`)"
            ))),
            n => Err(LocalError::NotFound(format!(
                "{what:?} matches {n} items; give more of the item's UUID"
            ))),
        }
    }

    /// Re-hashes a file with the digests the item was registered with and
    /// compares. Writes nothing.
    pub fn check_evidence(
        &self,
        item: &str,
        path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<EvidenceCheck, LocalError> {
        let (case, item) = self.resolve_item(item)?;
        let io = |source| LocalError::Io {
            path: path.to_owned(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            return Err(io(std::io::Error::other(
                "is a directory; give the file of the item",
            )));
        }
        let h = hashing::hash_file(path, Wanted::like(&item.digests), progress).map_err(io)?;
        let mut differs = Vec::new();
        if h.size != item.size {
            differs.push("size");
        }
        if h.digests.sha256 != item.digests.sha256 {
            differs.push("sha256");
        }
        if h.digests.sha1 != item.digests.sha1 {
            differs.push("sha1");
        }
        if h.digests.md5 != item.digests.md5 {
            differs.push("md5");
        }
        Ok(EvidenceCheck {
            case,
            item,
            digests: h.digests,
            size: h.size,
            differs,
        })
    }

    /// The rules for an event by the holder, checked here for a clear
    /// message (the validator checks them again when writing).
    fn check_holder(&self, item: &Item, verb: &str) -> Result<(), LocalError> {
        let label = Self::item_label(item);
        if item.destroyed {
            return Err(LocalError::Refused(format!(
                "item {label} was destroyed; nothing more can happen to it"
            )));
        }
        if item.holder != self.me() {
            return Err(LocalError::Refused(format!(
                "only the current holder ({}) may {verb} item {label}",
                self.name_of(&item.holder)
            )));
        }
        if let Some(t) = item.open_transfer {
            return Err(LocalError::Refused(format!(
                "item {label} is in transit: transfer {} awaits its receipt",
                t.short()
            )));
        }
        Ok(())
    }

    fn write_custody(
        &mut self,
        case: CaseId,
        ev: CustodyEvent,
        refs: Vec<EntryId>,
        note: Option<&str>,
    ) -> Result<CustodyWritten, LocalError> {
        let tlp = self.case_tlp(&case);
        let item = ev.item;
        let mut draft = Draft::new(tlp, Body::Custody(ev));
        draft.refs = refs;
        let mut drafts = vec![draft];
        if let Some(text) = note {
            drafts.push(Draft::new(
                tlp,
                Body::Note(Note {
                    text: text.to_owned(),
                    item: Some(item),
                }),
            ));
        }
        let mut entries = self
            .store
            .author_many(
                signer_of(&self.identity, self.officer.as_ref()),
                Some(case),
                drafts,
                now_ms(),
            )?
            .into_iter();
        let entry = entries
            .next()
            .ok_or_else(|| LocalError::Refused("nothing was written".into()))?;
        Ok(CustodyWritten {
            case,
            item,
            entry,
            note: entries.next(),
        })
    }

    /// Transfers an item to another member agency (opens a transfer that
    /// the addressee answers with a receipt).
    pub fn transfer(
        &mut self,
        item: &str,
        to: &str,
        info: &CustodyInfo,
    ) -> Result<CustodyWritten, LocalError> {
        let (case, item) = self.resolve_item(item)?;
        let who = self.resolve_agency(to)?;
        self.check_holder(&item, "transfer")?;
        if who.me {
            return Err(LocalError::Refused(
                "an agency cannot transfer an item to itself".into(),
            ));
        }
        let member = self
            .store
            .case(&case)
            .is_some_and(|v| v.is_member(&who.agency));
        if !member {
            return Err(LocalError::Refused(format!(
                "{} is not a member of case {}: share the case with it first (`custodia case share {} --with …`)",
                who.name,
                case.short(),
                case.short()
            )));
        }
        let mut ev = CustodyEvent::new(item.id, CustodyAction::Transferred);
        ev.to = Some(who.agency);
        ev.purpose = info.purpose.clone();
        ev.actor = info.actor.clone();
        ev.place = info.place.clone();
        ev.tool = info.tool.clone();
        self.write_custody(case, ev, Vec::new(), info.note.as_deref())
    }

    /// Finds an open transfer by its entry id (or a unique prefix of at
    /// least 6 hex characters), or by its item when exactly one transfer of
    /// it is open to this agency.
    pub fn resolve_transfer(&self, what: &str) -> Result<(CaseId, Transfer), LocalError> {
        let Some(w) = hex_prefix(what) else {
            return Err(LocalError::NotFound(format!(
                "{what:?} is not a transfer: give the transfer entry's id (at least 6 hex characters) or the item's UUID"
            )));
        };
        let states: Vec<(CaseId, &custodia_protocol::CaseState)> = self
            .store
            .cases()
            .filter_map(|c| self.store.state(c).map(|s| (*c, s)))
            .collect();
        let by_entry: Vec<(CaseId, Transfer)> = states
            .iter()
            .flat_map(|(c, s)| {
                s.open_transfers
                    .values()
                    .filter(|t| t.entry.to_hex().starts_with(&w))
                    .map(|t| (*c, *t))
            })
            .collect();
        match by_entry.len() {
            1 => return Ok(by_entry[0]),
            0 => {}
            n => {
                return Err(LocalError::NotFound(format!(
                    "{what:?} matches {n} open transfers; give more of the transfer id"
                )))
            }
        }
        // A transfer that was already answered?
        for (c, s) in &states {
            let v = self.store.case(c);
            for i in s.items.values() {
                for e in &i.events {
                    if !e.to_hex().starts_with(&w) {
                        continue;
                    }
                    let _ = v;
                    let transferred = self.store.entry(e).ok().flatten().is_some_and(|e| {
                        matches!(&e.payload().body, Body::Custody(ev) if ev.action == CustodyAction::Transferred)
                    });
                    if transferred {
                        return Err(LocalError::Refused(format!(
                            "transfer {} of item {} is not open: it was already answered with a receipt",
                            e.short(),
                            Self::item_label(i)
                        )));
                    }
                }
            }
        }
        // An item with an open transfer.
        let items: Vec<(CaseId, &Item)> = states
            .iter()
            .flat_map(|(c, s)| {
                s.items
                    .values()
                    .filter(|i| i.id.to_hex().starts_with(&w))
                    .map(|i| (*c, i))
            })
            .collect();
        match items.as_slice() {
            [] => Err(LocalError::NotFound(format!(
                "no open transfer and no item {what:?} in this node's cases (see `custodia case show CASE`)"
            ))),
            [(c, item)] => {
                let s = states.iter().find(|(k, _)| k == c).map(|(_, s)| *s);
                let open: Vec<Transfer> = s
                    .map(|s| {
                        s.open_transfers
                            .values()
                            .filter(|t| t.item == item.id)
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                let mine: Vec<&Transfer> = open.iter().filter(|t| t.to == self.me()).collect();
                match (mine.as_slice(), open.first()) {
                    ([t], _) => Ok((*c, **t)),
                    ([], Some(t)) => Err(LocalError::Refused(format!(
                        "transfer {} of item {} is addressed to {}, not to this agency",
                        t.entry.short(),
                        Self::item_label(item),
                        self.name_of(&t.to)
                    ))),
                    ([], None) => Err(LocalError::NotFound(format!(
                        "item {} has no open transfer",
                        Self::item_label(item)
                    ))),
                    (_, _) => Err(LocalError::NotFound(format!(
                        "item {} has {} open transfers to this agency; give the transfer id",
                        Self::item_label(item),
                        mine.len()
                    ))),
                }
            }
            _ => Err(LocalError::NotFound(format!(
                "{what:?} matches {} items; give more of the UUID or the transfer id",
                items.len()
            ))),
        }
    }

    /// Answers a transfer addressed to this agency with a signed receipt:
    /// accepted (this agency becomes the holder), or rejected with a reason.
    /// The receipt references the transfer, so it is in its causal past.
    pub fn receive(
        &mut self,
        transfer: &str,
        reject: Option<&str>,
        info: &CustodyInfo,
    ) -> Result<CustodyWritten, LocalError> {
        let (case, t) = self.resolve_transfer(transfer)?;
        if t.to != self.me() {
            return Err(LocalError::Refused(format!(
                "transfer {} is addressed to {}, not to this agency",
                t.entry.short(),
                self.name_of(&t.to)
            )));
        }
        let mut ev = CustodyEvent::new(t.item, CustodyAction::Received);
        ev.transfer = Some(t.entry);
        ev.accepted = Some(reject.is_none());
        ev.reason = reject.map(str::to_owned);
        ev.actor = info.actor.clone();
        ev.place = info.place.clone();
        self.write_custody(case, ev, vec![t.entry], info.note.as_deref())
    }

    /// Records a custody event by the holder: examined, sealed, unsealed,
    /// copied, returned, destroyed or acquired (transfers and receipts have
    /// their own operations).
    pub fn record(
        &mut self,
        item: &str,
        action: CustodyAction,
        info: &CustodyInfo,
    ) -> Result<CustodyWritten, LocalError> {
        let (case, item) = self.resolve_item(item)?;
        match action {
            CustodyAction::Transferred | CustodyAction::Received => {
                return Err(LocalError::Usage(format!(
                    "{} is recorded with `custodia custody {}`",
                    action.as_str(),
                    if action == CustodyAction::Transferred {
                        "transfer"
                    } else {
                        "receive"
                    }
                )))
            }
            _ => {}
        }
        let copy = match (&info.copy, action) {
            (Some(c), CustodyAction::Copied) => Some(match ItemId::parse(c) {
                Ok(id) => id,
                Err(_) => self.resolve_item(c)?.1.id,
            }),
            (None, CustodyAction::Copied) => {
                return Err(LocalError::Usage(
                    "a copied event names the new item: --copy NEW_ITEM (register the copy with `custodia evidence add` first)".into(),
                ))
            }
            (Some(_), _) => {
                return Err(LocalError::Usage(
                    "--copy is only for --action copied".into(),
                ))
            }
            (None, _) => None,
        };
        self.check_holder(&item, &format!("record {} of", action.as_str()))?;
        let mut ev = CustodyEvent::new(item.id, action);
        ev.copy = copy;
        ev.actor = info.actor.clone();
        ev.place = info.place.clone();
        ev.purpose = info.purpose.clone();
        ev.tool = info.tool.clone();
        ev.digest_matched = info.digest_matched;
        self.write_custody(case, ev, Vec::new(), info.note.as_deref())
    }

    /// A case's record in store order, which is a causal order: every
    /// entry comes after everything it references. Rows quarantined (not
    /// recovered since) are at the positions they had.
    pub fn timeline(&self, case: &CaseId) -> Result<Vec<TimelineRow>, LocalError> {
        let v = self
            .store
            .case(case)
            .ok_or(StoreError::UnknownCase(*case))?;
        let rows = self.store.rows_after(case, 0, usize::MAX >> 1)?;
        let mut quarantined = self
            .store
            .quarantined(Some(case))?
            .into_iter()
            .filter(|q| !q.recovered)
            .peekable();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.into_iter().filter(|r| v.knows(&r.id)) {
            while let Some(q) = quarantined.next_if(|q| q.pos < r.pos) {
                out.push(TimelineRow::Quarantined(q));
            }
            out.push(
                match r
                    .bytes
                    .as_deref()
                    .and_then(|b| Entry::decode_unverified(b).ok())
                {
                    Some(e) => TimelineRow::Entry(e.assume_verified()),
                    None => TimelineRow::Withheld(WithheldPosition {
                        author: r.author,
                        seq: r.seq,
                        id: r.id,
                    }),
                },
            );
        }
        out.extend(quarantined.map(TimelineRow::Quarantined));
        Ok(out)
    }
}

impl Local {
    /// Exports a case as a signed court bundle (SPEC.md §10): every
    /// position this node holds, in dependency order, its equivocation
    /// proofs and the members' names, signed by this agency as of now.
    /// With `items` (UUIDs or unique prefixes of items of this case), only
    /// what establishes those items' custody is disclosed; the rest travels
    /// as withheld markers, and the bundle is verified before it is
    /// returned.
    pub fn export_bundle(&self, case: &CaseId, items: &[String]) -> Result<Vec<u8>, LocalError> {
        let v = self
            .store
            .case(case)
            .ok_or(StoreError::UnknownCase(*case))?;
        let mut chosen = Vec::with_capacity(items.len());
        for what in items {
            let (in_case, item) = self.resolve_item(what)?;
            if in_case != *case {
                return Err(LocalError::NotFound(format!(
                    "item {what:?} belongs to case {}, not to case {}",
                    in_case.short(),
                    case.short()
                )));
            }
            chosen.push(item.id);
        }
        let rows = self.store.rows_after(case, 0, usize::MAX >> 1)?;
        // Only what the validator accepted: a row that failed verification
        // is never exported (SPEC.md §8.8).
        let elements: Vec<bundle::Element<'_>> = rows
            .iter()
            .filter(|r| v.knows(&r.id))
            .map(|r| match &r.bytes {
                Some(b) => bundle::Element::Entry(b),
                None => bundle::Element::Withheld(WithheldPosition {
                    author: r.author,
                    seq: r.seq,
                    id: r.id,
                }),
            })
            .collect();
        let proofs = self.store.proofs(case)?;
        // The key log of every agency of the case this node holds (its
        // own, and partners' that reached it, SPEC.md §9.15): the bundle
        // carries them (§10.1 "keys"), checked in full as they are read.
        // With them, the statements their recoveries superseded that this
        // node holds (§3.4): a court then sees what a thief of a root
        // signed and that the agency took it back (a version 3 bundle).
        let mut key_logs = Vec::new();
        for agency in v.state().members.keys() {
            if let Some(log) = self.store.key_log(agency)? {
                let superseded = self.store.key_superseded(agency)?;
                let log = log.with_superseded(&superseded);
                if log.superseded().len() < superseded.len() {
                    tracing::warn!(
                        agency = %agency.fingerprint(),
                        held = superseded.len(),
                        carried = log.superseded().len(),
                        "statements a recovery superseded that have no place in the agency's key history are left out of the bundle"
                    );
                }
                key_logs.push(log);
            }
        }
        bundle::export(
            &self.identity,
            v,
            &elements,
            &proofs,
            &key_logs,
            now_ms(),
            (!chosen.is_empty()).then_some(chosen.as_slice()),
        )
        .map_err(|e| LocalError::Refused(e.to_string()))
    }
}

impl Local {
    /// `custodia backup`: a consistent copy of the store (taken while a
    /// node may be writing) and the configuration, in one file created
    /// with mode 0600. The identity key is not in it: keys are kept apart
    /// from backups.
    pub fn backup(&self, out: &Path, now_ms: u64) -> Result<crate::store::BackupInfo, LocalError> {
        let config = std::fs::read_to_string(self.dir.join(CONFIG_FILE)).map_err(|source| {
            LocalError::Io {
                path: self.dir.join(CONFIG_FILE),
                source,
            }
        })?;
        let info = crate::store::BackupInfo {
            made_at: now_ms,
            agency: self.me(),
            config,
        };
        self.store.backup_into(out, &info)?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_files_walks_sorted_dedups_and_names_failures() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for (rel, body) in [("d/b.txt", "b"), ("d/a/z.txt", "zz"), ("d/c.txt", "ccc")] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("d/c.txt"), root.join("d/link.txt")).expect("link");
        let found = evidence_files(&[root.join("d"), root.join("d/b.txt")]).expect("files");
        let names: Vec<(String, u64)> = found
            .iter()
            .map(|f| {
                let rel = f.path.strip_prefix(root).expect("under root");
                (rel.to_string_lossy().into_owned(), f.size)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("d/a/z.txt".to_owned(), 2),
                ("d/b.txt".to_owned(), 1),
                ("d/c.txt".to_owned(), 3)
            ]
        );
        let missing = root.join("nope.img");
        match evidence_files(&[root.join("d"), missing.clone()]) {
            Err(LocalError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected an I/O error naming the path, got {other:?}"),
        }
        std::fs::create_dir(root.join("empty")).expect("mkdir");
        let e = evidence_files(&[root.join("empty")]).expect_err("an empty directory");
        assert!(e.to_string().contains("no regular file"), "{e}");
    }
}
