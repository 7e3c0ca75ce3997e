//! The local node directory: configuration, identity and store together,
//! and the operations an investigator performs on them.
//!
//! The CLI is a thin front over this module; a running daemon picks up what
//! it writes from the shared store file within a poll interval.

use std::path::{Path, PathBuf};

use custodia_protocol::{
    AgencyId, Body, CaseId, CaseOpened, Entry, Identity, MemberAdded, MemberRemoved, Role, Tlp,
};

use crate::config::{AgencySection, Config, ConfigError, NodeSection, Peer, CONFIG_FILE};
use crate::daemon::now_ms;
use crate::keyfile::{self, KeyFileError};
use crate::store::{Draft, Store, StoreError};

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
}

impl LocalError {
    /// Whether this is a refusal of the thing checked (exit 1) rather than
    /// a usage or I/O problem (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(self, LocalError::Refused(_))
            || matches!(self, LocalError::Store(StoreError::Refused(_)))
    }
}

/// An opened node directory.
pub struct Local {
    /// The directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: Config,
    /// The agency's identity.
    pub identity: Identity,
    /// The store.
    pub store: Store,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("dir", &self.dir).finish()
    }
}

/// Creates a node directory: key (mode 0600), configuration and store.
pub fn init(
    dir: &Path,
    name: &str,
    country: &str,
    listen: Option<&str>,
) -> Result<Local, LocalError> {
    if dir.join(CONFIG_FILE).exists() {
        return Err(LocalError::AlreadyInitialised(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(|source| LocalError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let config = Config {
        agency: AgencySection {
            name: name.to_owned(),
            country: country.to_owned(),
            key: "identity.key".into(),
        },
        node: NodeSection {
            listen: listen.unwrap_or(DEFAULT_LISTEN).to_owned(),
            data: "store.sqlite".into(),
            witness_interval_secs: 10,
        },
        peers: Vec::new(),
    };
    // Check before writing anything.
    let text = toml::to_string_pretty(&config).map_err(|e| LocalError::Refused(e.to_string()))?;
    Config::parse(&text, &dir.join(CONFIG_FILE))?;
    let identity = keyfile::create(&config.key_path(dir))?;
    config.save(dir)?;
    let store = Store::open(&config.store_path(dir))?;
    Ok(Local {
        dir: dir.to_owned(),
        config,
        identity,
        store,
    })
}

/// Opens an existing node directory.
pub fn open(dir: &Path) -> Result<Local, LocalError> {
    if !dir.join(CONFIG_FILE).exists() {
        return Err(LocalError::NotInitialised(dir.to_owned()));
    }
    let config = Config::load(dir)?;
    let identity = keyfile::read(&config.key_path(dir))?;
    let store = Store::open(&config.store_path(dir))?;
    Ok(Local {
        dir: dir.to_owned(),
        config,
        identity,
        store,
    })
}

/// Reads only the configuration and identity (no store), for commands that
/// do not need the store.
pub fn open_config(dir: &Path) -> Result<(Config, Identity), LocalError> {
    if !dir.join(CONFIG_FILE).exists() {
        return Err(LocalError::NotInitialised(dir.to_owned()));
    }
    let config = Config::load(dir)?;
    let identity = keyfile::read(&config.key_path(dir))?;
    Ok((config, identity))
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
}

impl Local {
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
        }];
        for p in &self.config.peers {
            if let Some(a) = p.agency() {
                out.push(KnownAgency {
                    agency: a,
                    name: p.name.clone(),
                    country: p.country.clone(),
                    peer: Some(p.name.clone()),
                    me: false,
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
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.agency.cmp(&b.agency)));
        out
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
            return Ok(all
                .into_iter()
                .find(|k| k.agency == key)
                .unwrap_or(KnownAgency {
                    agency: key,
                    name: key.fingerprint(),
                    country: "ZZ".into(),
                    peer: None,
                    me: false,
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
        match hits.as_slice() {
            [one] => Ok(*one),
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
        Ok(self
            .store
            .author(&self.identity, None, Draft::new(tlp, body), now_ms())?)
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
        Ok(self
            .store
            .author(&self.identity, Some(*case), draft, now_ms())?)
    }

    /// Shares a case with an agency.
    pub fn share(&mut self, case: &CaseId, with: &str, role: Role) -> Result<Entry, LocalError> {
        let who = self.resolve_agency(with)?;
        if who.me {
            return Err(LocalError::Refused(
                "this agency is already a member of its own cases".into(),
            ));
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
