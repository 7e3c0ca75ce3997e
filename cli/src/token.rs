//! Keys named on the command line: a key file, or a key in a hardware
//! token (`pkcs11:token=LABEL;object=LABEL`, RFC 7512). The PKCS#11 module
//! comes from `--pkcs11-module` or `CUSTODIA_PKCS11_MODULE`; the token's
//! PIN from `--pin-fd N`, `CUSTODIA_PKCS11_PIN` or the terminal, asked
//! once per run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use custodia_node::{LocalError, Passphrase, Pkcs11Module, TokenKey, TokenUri, PKCS11_SCHEME};
use custodia_protocol::keylog::{key_of, StatementSigner};
use custodia_protocol::{Identity, KeyId};

use crate::passphrase;

/// The environment variable naming the PKCS#11 module.
pub(crate) const MODULE_ENV: &str = "CUSTODIA_PKCS11_MODULE";
/// The environment variable a service passes the token's PIN in.
pub(crate) const PIN_ENV: &str = "CUSTODIA_PKCS11_PIN";

/// A key as the command line names it.
#[derive(Debug, Clone)]
pub(crate) enum KeyRef {
    /// A key file.
    File(PathBuf),
    /// A key in a token.
    Token(TokenUri),
}

impl KeyRef {
    /// Parses `pkcs11:...` as a token key, anything else as a file path
    /// (clap's value parser).
    pub(crate) fn parse(s: &str) -> Result<KeyRef, String> {
        if TokenUri::is_uri(s) {
            TokenUri::parse(s)
                .map(KeyRef::Token)
                .map_err(|e| e.to_string())
        } else if s.is_empty() {
            Err(format!(
                "empty: give a key file, or a {PKCS11_SCHEME}token=LABEL;object=LABEL URI"
            ))
        } else {
            Ok(KeyRef::File(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::File(p) => write!(f, "{}", p.display()),
            KeyRef::Token(u) => write!(f, "{u}"),
        }
    }
}

/// The token settings of one run.
pub(crate) struct Tokens {
    module: Option<PathBuf>,
    pin_fd: Option<u32>,
    loaded: OnceLock<Pkcs11Module>,
    pin: OnceLock<Passphrase>,
}

impl Tokens {
    /// `--pkcs11-module` (or its environment variable) and `--pin-fd`.
    pub(crate) fn new(module: Option<PathBuf>, pin_fd: Option<u32>) -> Self {
        Tokens {
            module,
            pin_fd,
            loaded: OnceLock::new(),
            pin: OnceLock::new(),
        }
    }

    /// The module, loaded once.
    fn module(&self) -> anyhow::Result<&Pkcs11Module> {
        if let Some(m) = self.loaded.get() {
            return Ok(m);
        }
        let path = self.module.as_deref().ok_or_else(|| {
            LocalError::Usage(format!(
                "a key in a token needs its PKCS#11 module: pass --pkcs11-module PATH or set {MODULE_ENV} (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
            ))
        })?;
        let m = Pkcs11Module::load(path).map_err(LocalError::from)?;
        Ok(self.loaded.get_or_init(|| m))
    }

    /// The token's PIN: `--pin-fd N`, the environment, else the terminal.
    fn pin(&self, uri: &TokenUri) -> anyhow::Result<Passphrase> {
        if let Some(p) = self.pin.get() {
            return Ok(p.clone());
        }
        let label = Path::new(&uri.token);
        let pin = if let Some(fd) = self.pin_fd {
            passphrase::read_fd(fd, "--pin-fd", label).map_err(LocalError::from)?
        } else if let Some(v) = std::env::var_os(PIN_ENV) {
            Passphrase::new(v.into_encoded_bytes())
        } else {
            passphrase::ask(&format!("PIN of token {:?}: ", uri.token), label)
                .map_err(LocalError::from)?
                .ok_or_else(|| {
                    LocalError::Usage(format!(
                        "no PIN for token {:?}: pass --pin-fd N, set {PIN_ENV}, or run the command on a terminal",
                        uri.token
                    ))
                })?
        };
        Ok(self.pin.get_or_init(|| pin).clone())
    }

    /// The key `uri` names, logged in.
    pub(crate) fn open(&self, uri: &TokenUri) -> anyhow::Result<TokenKey> {
        // The module first: no PIN is asked for a token that cannot be had.
        let module = self.module()?;
        let pin = self.pin(uri)?;
        Ok(TokenKey::open(module, uri, &pin).map_err(LocalError::from)?)
    }

    /// A new key pair in the token `uri` names.
    pub(crate) fn generate(&self, uri: &TokenUri) -> anyhow::Result<TokenKey> {
        let module = self.module()?;
        let pin = self.pin(uri)?;
        Ok(TokenKey::generate(module, uri, &pin).map_err(LocalError::from)?)
    }
}

/// An existing key that signs: a key file read, or a token key logged in.
pub(crate) enum Signer {
    /// From a key file.
    File(Identity),
    /// In a token.
    Token(TokenKey),
}

impl Signer {
    /// Opens the key `r` names.
    pub(crate) fn open(r: &KeyRef, tokens: &Tokens) -> anyhow::Result<Signer> {
        Ok(match r {
            KeyRef::File(p) => Signer::File(
                custodia_node::read_key_file_with(p, passphrase::source())
                    .map_err(LocalError::from)?,
            ),
            KeyRef::Token(u) => Signer::Token(tokens.open(u)?),
        })
    }

    /// As the key log's signer.
    pub(crate) fn as_signer(&self) -> &dyn StatementSigner {
        match self {
            Signer::File(i) => i,
            Signer::Token(t) => t,
        }
    }
}

/// A key made for a statement not yet written: undone if the statement
/// is not, so that a refusal leaves nothing behind.
pub(crate) enum NewKey {
    /// A new key file.
    File(PathBuf, Identity),
    /// A new key pair in a token.
    Token(TokenKey),
}

impl NewKey {
    /// Makes the key `r` names: a new key file (encrypted under `pass`),
    /// or a key pair generated in the token. An existing file or token
    /// object is never overwritten.
    pub(crate) fn create(
        r: &KeyRef,
        pass: Option<&Passphrase>,
        tokens: &Tokens,
    ) -> anyhow::Result<NewKey> {
        Ok(match r {
            KeyRef::File(p) => NewKey::File(
                p.clone(),
                custodia_node::create_key_file_with(p, pass).map_err(LocalError::from)?,
            ),
            KeyRef::Token(u) => NewKey::Token(tokens.generate(u)?),
        })
    }

    /// Its public key.
    pub(crate) fn key(&self) -> KeyId {
        match self {
            NewKey::File(_, i) => key_of(i),
            NewKey::Token(t) => t.key(),
        }
    }

    /// Deletes it: nothing refers to it.
    pub(crate) fn undo(self) {
        match self {
            NewKey::File(p, _) => {
                let _ = std::fs::remove_file(p);
            }
            NewKey::Token(t) => {
                let _ = t.destroy();
            }
        }
    }
}
