//! Root keys in a hardware token, through PKCS#11 (docs/design/identity-
//! lifecycle.md §6).
//!
//! A root key can be an Ed25519 key pair in a token (an HSM, a smart card,
//! SoftHSM2 in tests) instead of a key file. The private key is generated
//! inside the token as sensitive and not extractable, and is used there to
//! sign key statements (CKM_EDDSA, pure Ed25519): its secret is never in
//! this process, nor in any file the node writes. The key is named by a
//! PKCS#11 URI (RFC 7512), of which Custodia reads the subset
//! `pkcs11:token=LABEL;object=LABEL`: the token's label and the key's
//! label (both percent-encoded where needed).
//!
//! The module (the vendor's PKCS#11 library, e.g.
//! `/usr/lib/softhsm/libsofthsm2.so`) is loaded once per process as a
//! [`Pkcs11Module`]; a [`TokenKey`] is one logged-in key in it and a
//! [`StatementSigner`] for the key log.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use custodia_protocol::keylog::{SignerError, StatementSigner};
use custodia_protocol::KeyId;

use crate::keyfile::Passphrase;

/// The URI scheme of a key in a token.
pub const PKCS11_SCHEME: &str = "pkcs11:";

/// `CKA_EC_PARAMS` of an Ed25519 key: the DER of the object identifier
/// id-Ed25519, 1.3.101.112 (RFC 8410), as PKCS#11 3.0 §2.3.10 allows.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// The same curve as the printable string "edwards25519", the other form
/// PKCS#11 3.0 allows (older tokens know only this one).
const ED25519_NAME: [u8; 14] = [
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];

/// Why a token key could not be had or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text is not a `pkcs11:token=...;object=...` URI.
    #[error(
        "{uri:?} is not a usable PKCS#11 URI: {why} (expected pkcs11:token=LABEL;object=LABEL)"
    )]
    Uri {
        /// The text given.
        uri: String,
        /// What is wrong.
        why: String,
    },
    /// The module could not be loaded or initialised.
    #[error("PKCS#11 module {path}: {why}")]
    Module {
        /// The library's path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// No token with the label is present.
    #[error("no token labelled {0:?} in the PKCS#11 module (is it plugged in? `softhsm2-util --show-slots` lists SoftHSM2's)")]
    NoToken(String),
    /// The token holds no Ed25519 key pair with the label.
    #[error("token {token:?} holds no Ed25519 key pair labelled {object:?}")]
    NoKey {
        /// The token.
        token: String,
        /// The object label.
        object: String,
    },
    /// The token holds more than one key with the label: which one is
    /// meant cannot be told.
    #[error("token {token:?} holds {count} keys labelled {object:?}: give each key its own label")]
    Ambiguous {
        /// The token.
        token: String,
        /// The object label.
        object: String,
        /// How many.
        count: usize,
    },
    /// A key with the label exists already; generating would make two.
    #[error("token {token:?} holds a key labelled {object:?} already; refusing to make a second one with the same label")]
    Exists {
        /// The token.
        token: String,
        /// The object label.
        object: String,
    },
    /// The PIN was refused.
    #[error("token {0:?} refused the PIN")]
    Pin(String),
    /// The key is not an Ed25519 key, or the token cannot make one.
    #[error("{0}")]
    Unsupported(String),
    /// Any other failure the module reported.
    #[error("PKCS#11 {what}: {source}")]
    Pkcs11 {
        /// What was being done.
        what: &'static str,
        /// The module's answer.
        #[source]
        source: CkError,
    },
}

fn ck(what: &'static str) -> impl FnOnce(CkError) -> TokenError {
    move |source| TokenError::Pkcs11 { what, source }
}

/// A key in a token, as a PKCS#11 URI names it (RFC 7512, the subset
/// `pkcs11:token=LABEL;object=LABEL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUri {
    /// The token's label (`CKA_LABEL` of the token, `token=`).
    pub token: String,
    /// The key's label (`CKA_LABEL` of the key objects, `object=`).
    pub object: String,
}

impl TokenUri {
    /// Whether `s` names a key in a token rather than a key file.
    pub fn is_uri(s: &str) -> bool {
        s.starts_with(PKCS11_SCHEME)
    }

    /// Parses `pkcs11:token=LABEL;object=LABEL` (attributes in any order,
    /// percent-encoded; `type=private` is accepted; any other attribute and
    /// any query are refused, so nothing in the URI is silently ignored).
    pub fn parse(s: &str) -> Result<TokenUri, TokenError> {
        let bad = |why: &str| TokenError::Uri {
            uri: s.to_owned(),
            why: why.to_owned(),
        };
        let path = s
            .strip_prefix(PKCS11_SCHEME)
            .ok_or_else(|| bad("it does not start with pkcs11:"))?;
        if path.contains('?') {
            return Err(bad(
                "query attributes (module-path, pin-value...) are not read from the URI: use --pkcs11-module and the PIN sources",
            ));
        }
        let (mut token, mut object) = (None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| bad(&format!("attribute {attr:?} has no '='")))?;
            let value = percent_decode(value).ok_or_else(|| {
                bad(&format!(
                    "attribute {name:?}: bad percent-encoding, or not UTF-8"
                ))
            })?;
            let slot = match name {
                "token" => &mut token,
                "object" => &mut object,
                "type" if value == "private" => continue,
                _ => return Err(bad(&format!("attribute {name:?} is not supported"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(&format!("attribute {name:?} is given twice")));
            }
        }
        match (token, object) {
            (Some(token), Some(object)) if !token.is_empty() && !object.is_empty() => {
                Ok(TokenUri { token, object })
            }
            _ => Err(bad("both token= and object= are needed")),
        }
    }
}

impl fmt::Display for TokenUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PKCS11_SCHEME}token={};object={}",
            percent_encode(&self.token),
            percent_encode(&self.object)
        )
    }
}

impl std::str::FromStr for TokenUri {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenUri::parse(s)
    }
}

/// RFC 3986 percent-decoding, to UTF-8 text.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes all but RFC 7512's unreserved path characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&".contains(&c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// A loaded PKCS#11 module: one per process (a second `C_Initialize` of
/// the same library fails).
pub struct Pkcs11Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Pkcs11Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Module")
            .field("path", &self.path)
            .finish()
    }
}

impl Pkcs11Module {
    /// Loads and initialises the module at `path`.
    pub fn load(path: &Path) -> Result<Pkcs11Module, TokenError> {
        let failed = |why: String| TokenError::Module {
            path: path.to_owned(),
            why,
        };
        let ctx = Pkcs11::new(path).map_err(|e| failed(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(e.to_string())),
        }
        Ok(Pkcs11Module {
            ctx,
            path: path.to_owned(),
        })
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot holding the token labelled `label`.
    fn slot(&self, label: &str) -> Result<Slot, TokenError> {
        let mut found = None;
        for slot in self
            .ctx
            .get_slots_with_token()
            .map_err(ck("listing the slots"))?
        {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(ck("reading a token's information"))?;
            if info.label().trim_end() == label {
                if found.is_some() {
                    return Err(TokenError::Unsupported(format!(
                        "two tokens are labelled {label:?}: give each its own label"
                    )));
                }
                found = Some(slot);
            }
        }
        found.ok_or_else(|| TokenError::NoToken(label.to_owned()))
    }

    /// A read-write session on `uri`'s token, logged in as the user.
    fn session(&self, uri: &TokenUri, pin: &Passphrase) -> Result<Session, TokenError> {
        let slot = self.slot(&uri.token)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(ck("opening a session"))?;
        let raw = RawAuthPin::new(Box::new(pin.expose().to_vec()));
        match session.login_with_raw(UserType::User, &raw) {
            // Login is per application: another session of this process
            // (the rotation's new root and its next key in one token) did.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => Err(TokenError::Pin(uri.token.clone())),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::Unsupported(format!(
                "token {:?} is locked: too many wrong PINs (its security officer can unlock it)",
                uri.token
            ))),
            Err(e) => Err(ck("logging in")(e)),
        }
    }
}

/// An Ed25519 key pair in a token, logged in: it signs key statements
/// inside the token.
pub struct TokenKey {
    session: Session,
    private: ObjectHandle,
    public: ObjectHandle,
    key: KeyId,
    uri: TokenUri,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("uri", &self.uri.to_string())
            .field("key", &self.key)
            .finish()
    }
}

/// The objects of `class` labelled `label`.
fn labelled(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Vec<ObjectHandle>, TokenError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(ck("finding the key"))
}

/// The 32 public key bytes of an Ed25519 public key object: `CKA_EC_POINT`
/// holds them raw, or (as most tokens, SoftHSM2 included, give it) as a
/// DER OCTET STRING.
fn public_key(session: &Session, public: ObjectHandle) -> Result<KeyId, TokenError> {
    let attrs = session
        .get_attributes(public, &[AttributeType::KeyType, AttributeType::EcPoint])
        .map_err(ck("reading the public key"))?;
    let mut point = None;
    for a in attrs {
        match a {
            Attribute::KeyType(t) if t != KeyType::EC_EDWARDS => {
                return Err(TokenError::Unsupported(format!(
                    "the key is of type {t}, not an Edwards-curve (Ed25519) key"
                )))
            }
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let point = point.ok_or_else(|| {
        TokenError::Unsupported("the token gives no CKA_EC_POINT for the key".into())
    })?;
    let raw: &[u8] = match point.as_slice() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        p if p.len() == 32 => p,
        p => {
            return Err(TokenError::Unsupported(format!(
                "the key's CKA_EC_POINT is {} bytes, not an Ed25519 public key",
                p.len()
            )))
        }
    };
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| TokenError::Unsupported("the public key is not 32 bytes".into()))?;
    Ok(KeyId(bytes))
}

impl TokenKey {
    /// The key pair `uri` names, logged in with `pin`.
    pub fn open(
        module: &Pkcs11Module,
        uri: &TokenUri,
        pin: &Passphrase,
    ) -> Result<TokenKey, TokenError> {
        let session = module.session(uri, pin)?;
        let one = |class| {
            let found = labelled(&session, class, &uri.object)?;
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(TokenError::NoKey {
                    token: uri.token.clone(),
                    object: uri.object.clone(),
                }),
                many => Err(TokenError::Ambiguous {
                    token: uri.token.clone(),
                    object: uri.object.clone(),
                    count: many.len(),
                }),
            }
        };
        let private = one(ObjectClass::PRIVATE_KEY)?;
        let public = one(ObjectClass::PUBLIC_KEY)?;
        let key = public_key(&session, public)?;
        Ok(TokenKey {
            session,
            private,
            public,
            key,
            uri: uri.clone(),
        })
    }

    /// Generates a new Ed25519 key pair in the token, labelled as `uri`
    /// says: the private key sensitive and not extractable (its secret
    /// never leaves the token), both kept on the token. Refused if a key
    /// with the label exists already.
    pub fn generate(
        module: &Pkcs11Module,
        uri: &TokenUri,
        pin: &Passphrase,
    ) -> Result<TokenKey, TokenError> {
        let session = module.session(uri, pin)?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if !labelled(&session, class, &uri.object)?.is_empty() {
                return Err(TokenError::Exists {
                    token: uri.token.clone(),
                    object: uri.object.clone(),
                });
            }
        }
        let label = uri.object.as_bytes().to_vec();
        let mut last = None;
        // The OID form first, then the printable-string form some tokens
        // know instead.
        for params in [ED25519_OID.to_vec(), ED25519_NAME.to_vec()] {
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(params),
                Attribute::Label(label.clone()),
                Attribute::Id(label.clone()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Label(label.clone()),
                Attribute::Id(label.clone()),
            ];
            match session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private) {
                Ok((public, private)) => {
                    let key = match public_key(&session, public) {
                        Ok(key) => key,
                        Err(e) => {
                            let _ = session.destroy_object(private);
                            let _ = session.destroy_object(public);
                            return Err(e);
                        }
                    };
                    return Ok(TokenKey {
                        session,
                        private,
                        public,
                        key,
                        uri: uri.clone(),
                    });
                }
                Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
                    return Err(TokenError::Unsupported(format!(
                        "token {:?} cannot generate Ed25519 keys (CKM_EC_EDWARDS_KEY_PAIR_GEN)",
                        uri.token
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || TokenError::Unsupported("no Ed25519 key was generated".into()),
            |e| ck("generating an Ed25519 key pair")(e),
        ))
    }

    /// Deletes the key pair from the token: undoes a [`generate`] whose
    /// key no statement came to name.
    ///
    /// [`generate`]: TokenKey::generate
    pub fn destroy(self) -> Result<(), TokenError> {
        self.session
            .destroy_object(self.private)
            .map_err(ck("deleting the private key"))?;
        self.session
            .destroy_object(self.public)
            .map_err(ck("deleting the public key"))
    }

    /// The public key.
    pub fn key(&self) -> KeyId {
        self.key
    }

    /// The URI that names it.
    pub fn uri(&self) -> &TokenUri {
        &self.uri
    }
}

impl StatementSigner for TokenKey {
    fn key(&self) -> KeyId {
        self.key
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let sig = self
            .session
            .sign(&mechanism, self.private, message)
            .map_err(|e| SignerError(format!("token key {}: {e}", self.uri)))?;
        sig.as_slice().try_into().map_err(|_| {
            SignerError(format!(
                "token key {} returned a signature of {} bytes, not 64",
                self.uri,
                sig.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_a_token_and_an_object() {
        let u = TokenUri::parse("pkcs11:token=NBI%20Roots;object=next-root").expect("parses");
        assert_eq!(u.token, "NBI Roots");
        assert_eq!(u.object, "next-root");
        assert_eq!(u.to_string(), "pkcs11:token=NBI%20Roots;object=next-root");
        assert_eq!(TokenUri::parse(&u.to_string()).expect("round trip"), u);
        let u = TokenUri::parse("pkcs11:object=r;type=private;token=t").expect("any order");
        assert_eq!((u.token.as_str(), u.object.as_str()), ("t", "r"));
        for bad in [
            "token=t;object=o",
            "pkcs11:token=t",
            "pkcs11:object=o",
            "pkcs11:token=;object=o",
            "pkcs11:token=t;object=o;id=%01",
            "pkcs11:token=t;object=o?pin-value=1234",
            "pkcs11:token=t;token=u;object=o",
            "pkcs11:token=t;object=%zz",
            "pkcs11:token=t;object=%ff",
            "pkcs11:token=t;object",
        ] {
            assert!(
                matches!(TokenUri::parse(bad), Err(TokenError::Uri { .. })),
                "{bad}"
            );
        }
    }
}
