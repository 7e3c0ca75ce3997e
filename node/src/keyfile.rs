//! The agency's identity key file.
//!
//! Two forms are read and written (SPEC.md §17.7):
//!
//! - **Encrypted** (what `custodia init` writes when it has a passphrase):
//!   PEM "ENCRYPTED PRIVATE KEY", an RFC 5958 `EncryptedPrivateKeyInfo`
//!   with PBES2 (RFC 8018): scrypt (RFC 7914) derives an AES-256-CBC key
//!   from the passphrase, and the ciphertext is the unencrypted form's DER.
//!   OpenSSL 3 (`openssl pkey -passin …`) and Python's `cryptography` read
//!   it.
//! - **Unencrypted**: PEM "PRIVATE KEY" in the PKCS#8 v1 form (RFC 8410 §7:
//!   the 32-byte seed only). The PKCS#8 v2 form (seed plus public key) is
//!   read too. Files made by earlier versions are of this form; they keep
//!   being read, and `custodia key protect` encrypts them.
//!
//! The file is created with mode 0600 and its content is never printed or
//! logged; nor is a passphrase ([`Passphrase`] has no `Display` and its
//! `Debug` shows nothing of it, and it is wiped from memory when dropped).
//!
//! Reading is as careful as ssh's: a key file group or others may read is
//! refused (its secret may have leaked; `chmod 600` fixes the mode), a path
//! that is not a regular file (a FIFO, a device) is refused without reading
//! from it, and at most [`MAX_KEY_FILE`] bytes are read. The cost an
//! encrypted file asks of the key derivation is bounded ([`MAX_SCRYPT_MEMORY`],
//! [`MAX_KDF_WORK`]) before any is spent: a damaged or hostile file is
//! refused, it cannot make the program exhaust the machine's memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use custodia_protocol::{AgencyId, Identity};
use pkcs8::der::{Decode, Encode};
use pkcs8::pkcs5::{self, pbes2};
use zeroize::Zeroizing;

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// PEM label of an unencrypted key (RFC 7468 §10).
const PLAIN_LABEL: &str = "PRIVATE KEY";
/// PEM label of an encrypted key (RFC 7468 §11).
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// The most of a key file that is read: a PEM Ed25519 key is under 400
/// bytes, encrypted; comments and line endings leave room to spare.
pub const MAX_KEY_FILE: u64 = 8192;

/// scrypt cost parameter N of a key this program encrypts: 2^14.
///
/// With r = 8 the derivation needs 16 MiB: OpenSSL 3 refuses to derive a
/// key that needs more than 32 MiB (its `EVP_PBE_scrypt` default limit,
/// which `openssl pkey` cannot raise), so N = 2^15 or more would make files
/// OpenSSL cannot read. The work is raised with p instead ([`SCRYPT_P`]).
pub const SCRYPT_LOG_N: u8 = 14;
/// scrypt block size r of a key this program encrypts.
pub const SCRYPT_R: u32 = 8;
/// scrypt parallelisation p of a key this program encrypts: 16 rounds of
/// the 16 MiB derivation, one after the other, the work of N = 2^18 in
/// the memory OpenSSL accepts.
pub const SCRYPT_P: u32 = 16;

/// The most memory an encrypted key file may ask scrypt for
/// (128 · r · N bytes): 256 MiB, 16 times what this program asks for.
pub const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
/// The most work an encrypted key file may ask of its key derivation, in
/// scrypt's units N · r · p (2^24; this program writes 2^21), or PBKDF2
/// iterations (10 million).
pub const MAX_KDF_WORK: u64 = 1 << 24;
/// The most PBKDF2 iterations an encrypted key file may ask for.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// A passphrase for an encrypted key file.
///
/// Wiped from memory when dropped; never printed (`Debug` shows only that
/// it is one). The bytes are used as they are (UTF-8, no normalisation),
/// as OpenSSL uses them.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// A passphrase of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Passphrase(Zeroizing::new(bytes))
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Passphrase {
    fn from(s: String) -> Self {
        Passphrase::new(s.into_bytes())
    }
}

impl PartialEq for Passphrase {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice() == other.0.as_slice()
    }
}

impl Eq for Passphrase {}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Where the passphrase of an encrypted key file comes from. It is asked
/// for only when a key file is encrypted, so a source that prompts on a
/// terminal prompts only then.
pub trait PassphraseSource {
    /// The passphrase to unlock the encrypted key file `path`.
    fn passphrase(&self, path: &Path) -> Result<Passphrase, KeyFileError>;

    /// Told when `path` turned out to hold an unencrypted key (to warn the
    /// operator, for instance). Does nothing unless overridden.
    fn unencrypted(&self, path: &Path) {
        let _ = path;
    }
}

/// No passphrase: unencrypted key files only. An encrypted one fails with
/// [`KeyFileError::NoPassphrase`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPassphrase;

impl PassphraseSource for NoPassphrase {
    fn passphrase(&self, path: &Path) -> Result<Passphrase, KeyFileError> {
        Err(KeyFileError::NoPassphrase(path.to_owned()))
    }
}

impl PassphraseSource for Passphrase {
    fn passphrase(&self, _path: &Path) -> Result<Passphrase, KeyFileError> {
        Ok(self.clone())
    }
}

/// Whether a key file is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// PEM "PRIVATE KEY": anyone who can read the file has the key.
    Unencrypted,
    /// PEM "ENCRYPTED PRIVATE KEY": the passphrase is needed too.
    Encrypted,
}

/// A key file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 PEM key.
    #[error("key file {path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key material).
        what: &'static str,
    },
    /// The file exists already (never overwritten).
    #[error("key file {0} exists already; refusing to overwrite an identity")]
    Exists(PathBuf),
    /// Group or others may read or write the file.
    #[error("key file {} is accessible to group or others (mode {mode:03o}); an identity key must be private: run `chmod 600 {}`", .path.display(), .path.display())]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a FIFO, a device, a directory or a socket.
    #[error("key file {}: not a regular file (a {kind}); [agency] key must name the identity key file", .path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file is larger than any key file.
    #[error("key file {}: over {MAX_KEY_FILE} bytes, not an identity key file", .0.display())]
    TooLarge(PathBuf),
    /// The file is encrypted and no passphrase could be had.
    #[error("key file {} is encrypted and no passphrase is available: set CUSTODIA_PASSPHRASE, pass --passphrase-fd N, or run the command on a terminal", .0.display())]
    NoPassphrase(PathBuf),
    /// The passphrase could not be read from where it was to come from.
    #[error("reading the passphrase for key file {}: {why}", .path.display())]
    PassphraseInput {
        /// The key file.
        path: PathBuf,
        /// Why (never the passphrase).
        why: String,
    },
    /// The passphrase does not decrypt the file (or the encrypted part of
    /// the file is damaged: AES-CBC cannot tell the two apart).
    #[error("wrong passphrase for key file {}", .0.display())]
    WrongPassphrase(PathBuf),
    /// The file decrypted to a key that is not the agency it names: the
    /// encrypted part is damaged (AES-CBC does not detect it by itself).
    #[error("key file {} is damaged: it decrypts to a key that is not agency {agency}, which it names; restore it from a copy", .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The fingerprint of the agency the file names.
        agency: String,
    },
    /// An empty passphrase for a new encrypted key.
    #[error("key file {}: an empty passphrase protects nothing; choose one (or leave the key unencrypted on purpose with --no-passphrase)", .0.display())]
    EmptyPassphrase(PathBuf),
}

/// What a file that is not a regular file is, for messages.
fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Checks what `meta` describes is a regular file only its owner may
/// access.
fn check_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::NotPrivate {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge(path.to_owned()));
    }
    Ok(())
}

/// Reads a key file's text: a private regular file of at most
/// [`MAX_KEY_FILE`] bytes. The path is looked at before it is opened (a
/// FIFO or a device is never opened), and the opened file again (it may
/// have been swapped meanwhile); it is opened without blocking.
fn read_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    check_meta(path, &std::fs::metadata(path).map_err(io)?)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path).map_err(io)?;
    check_meta(path, &file.metadata().map_err(io)?)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge(path.to_owned()));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(KeyFileError::Invalid {
            path: path.to_owned(),
            what: "not text (a PEM key file is ASCII)",
        }),
    }
}

/// The base64 body of the first PEM block labelled `label`, decoded; None
/// if there is no such block.
fn pem_block(
    path: &Path,
    text: &str,
    label: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyFileError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|l| l == begin) {
        return Ok(None);
    }
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for l in lines {
        if l == end {
            ended = true;
            break;
        }
        body.push_str(l);
    }
    if !ended {
        return Err(KeyFileError::Invalid {
            path: path.to_owned(),
            what: "the PEM block has no END line (is the file cut short?)",
        });
    }
    let mut der = Zeroizing::new(Vec::new());
    base64::engine::general_purpose::STANDARD
        .decode_vec(body.as_bytes(), &mut der)
        .map_err(|_| KeyFileError::Invalid {
            path: path.to_owned(),
            what: "the PEM block is not valid base64",
        })?;
    if der.is_empty() {
        return Err(KeyFileError::Invalid {
            path: path.to_owned(),
            what: "the PEM block is empty",
        });
    }
    Ok(Some(der))
}

/// The identity in an unencrypted PKCS#8 DER key (v1 or v2).
fn from_pkcs8(der: &[u8]) -> Option<Identity> {
    if der.len() == 48 && der[..16] == V1_PREFIX {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&der[16..]);
        return Some(Identity::from_seed(*seed));
    }
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).ok()?;
    let seed = Zeroizing::new(key.to_bytes());
    Some(Identity::from_seed(*seed))
}

/// The PKCS#8 v1 DER of an identity (RFC 8410 §7).
fn to_pkcs8(identity: &Identity) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(V1_PREFIX.to_vec());
    let seed = Zeroizing::new(identity.seed());
    der.extend_from_slice(&*seed);
    der
}

/// Checks what an encrypted key's derivation would cost before paying it.
fn check_cost(path: &Path, params: &pbes2::Parameters) -> Result<(), KeyFileError> {
    let refuse = |what| {
        Err(KeyFileError::Invalid {
            path: path.to_owned(),
            what,
        })
    };
    match &params.kdf {
        pbes2::Kdf::Scrypt(s) => {
            let n = s.cost_parameter;
            let (r, p) = (u64::from(s.block_size), u64::from(s.parallelization));
            let memory = 128u64.saturating_mul(r).saturating_mul(n);
            let work = n.saturating_mul(r).saturating_mul(p);
            if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
                return refuse("invalid scrypt parameters");
            }
            if memory > MAX_SCRYPT_MEMORY || work > MAX_KDF_WORK {
                return refuse("its scrypt parameters ask for more memory or work than this program spends on a key file (256 MiB, N·r·p 2^24)");
            }
        }
        pbes2::Kdf::Pbkdf2(k) => {
            if k.iteration_count > MAX_PBKDF2_ITERATIONS {
                return refuse("its PBKDF2 iteration count is over 10 million");
            }
        }
        _ => {
            return refuse(
                "the key is encrypted with a key derivation this program does not support",
            )
        }
    }
    Ok(())
}

/// Decrypts an `EncryptedPrivateKeyInfo`.
fn decrypt(path: &Path, der: &[u8], pass: &Passphrase) -> Result<Identity, KeyFileError> {
    let invalid = |what| KeyFileError::Invalid {
        path: path.to_owned(),
        what,
    };
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|_| invalid("the encrypted key is not a PKCS#8 EncryptedPrivateKeyInfo"))?;
    let params = match &info.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(p) => p,
        _ => {
            return Err(invalid(
                "the key is encrypted with PBES1, which is not supported (PBES2 is)",
            ))
        }
    };
    check_cost(path, params)?;
    let mut buffer = Zeroizing::new(info.encrypted_data.as_bytes().to_vec());
    let plain = match params.decrypt_in_place(pass.expose(), &mut buffer) {
        Ok(plain) => plain,
        Err(pkcs5::Error::DecryptFailed) => {
            return Err(KeyFileError::WrongPassphrase(path.to_owned()))
        }
        Err(pkcs5::Error::UnsupportedAlgorithm { .. }) => {
            return Err(invalid(
                "the key is encrypted with an algorithm this program does not support",
            ))
        }
        Err(_) => return Err(invalid("invalid encryption parameters")),
    };
    // CBC padding that happens to check out under a wrong passphrase
    // (about one time in 256) leaves bytes that are not a key; a damaged
    // file may decrypt to a seed that does not match the public key beside
    // it (files this program writes carry it; OpenSSL's carry only the
    // seed).
    from_pkcs8(plain).ok_or_else(|| KeyFileError::WrongPassphrase(path.to_owned()))
}

/// The encrypted PEM text of an identity.
fn encrypt(path: &Path, identity: &Identity, pass: &Passphrase) -> Result<String, KeyFileError> {
    encrypt_scrypt(path, identity, pass, (SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P))
}

/// The encrypted PEM text of an identity, with these scrypt parameters
/// (log2 N, r, p).
fn encrypt_scrypt(
    path: &Path,
    identity: &Identity,
    pass: &Passphrase,
    (log_n, r, p): (u8, u32, u32),
) -> Result<String, KeyFileError> {
    if pass.is_empty() {
        return Err(KeyFileError::EmptyPassphrase(path.to_owned()));
    }
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    random(path, &mut salt)?;
    random(path, &mut iv)?;
    let failed = |what| KeyFileError::Invalid {
        path: path.to_owned(),
        what,
    };
    let scrypt =
        pkcs5::scrypt::Params::new(log_n, r, p).map_err(|_| failed("invalid scrypt parameters"))?;
    let params = pbes2::Parameters::generate_scrypt_aes256cbc(scrypt, &salt, iv)
        .map_err(|_| failed("invalid scrypt parameters"))?;
    let plain = to_pkcs8(identity);
    let ciphertext = params
        .encrypt(pass.expose(), &plain)
        .map_err(|_| failed("encrypting the key failed"))?;
    let info = pkcs8::EncryptedPrivateKeyInfoRef {
        encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
        encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ciphertext)
            .map_err(|_| failed("encoding the encrypted key failed"))?,
    };
    let der = info
        .to_der()
        .map_err(|_| failed("encoding the encrypted key failed"))?;
    let pem = pkcs8::der::pem::encode_string(ENCRYPTED_LABEL, pkcs8::LineEnding::LF, &der)
        .map_err(|_| failed("encoding the encrypted key failed"))?;
    Ok(format!(
        "{AGENCY_LINE}{}\n{pem}",
        identity.agency().to_hex()
    ))
}

/// The line before the PEM block of an encrypted key file that names the
/// agency (its public key, 64 hex). PEM allows text before the block
/// (RFC 7468 §5.2); OpenSSL and `cryptography` skip it. AES-CBC does not
/// authenticate what it decrypts: a damaged file can decrypt to another,
/// valid-looking seed, which this line catches.
const AGENCY_LINE: &str = "# custodia agency ";

/// The agency an encrypted key file names before its PEM block, if it
/// names one.
fn named_agency(path: &Path, text: &str) -> Result<Option<AgencyId>, KeyFileError> {
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            break;
        }
        if let Some(hex) = line.strip_prefix(AGENCY_LINE.trim_end()) {
            return AgencyId::from_hex(hex.trim())
                .map(Some)
                .map_err(|_| KeyFileError::Invalid {
                    path: path.to_owned(),
                    what: "the agency line before the PEM block is not 64 hex characters",
                });
        }
    }
    Ok(None)
}

/// Fills `buf` from the operating system's randomness.
fn random(path: &Path, buf: &mut [u8]) -> Result<(), KeyFileError> {
    getrandom::fill(buf).map_err(|e| KeyFileError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The PEM text of an identity: encrypted under `pass`, or not.
fn key_text(
    path: &Path,
    identity: &Identity,
    pass: Option<&Passphrase>,
) -> Result<Zeroizing<String>, KeyFileError> {
    match pass {
        Some(pass) => encrypt(path, identity, pass).map(Zeroizing::new),
        None => {
            let der = to_pkcs8(identity);
            let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*der));
            Ok(Zeroizing::new(format!(
                "-----BEGIN {PLAIN_LABEL}-----\n{}\n-----END {PLAIN_LABEL}-----\n",
                &*b64
            )))
        }
    }
}

/// Creates a new identity from the operating system's randomness and
/// writes it, unencrypted, to `path` with mode 0600. Refuses to overwrite
/// a file.
pub fn create(path: &Path) -> Result<Identity, KeyFileError> {
    create_with(path, None)
}

/// Creates a new identity from the operating system's randomness and
/// writes it to `path` with mode 0600, encrypted under `pass` if given.
/// Refuses to overwrite a file.
pub fn create_with(path: &Path, pass: Option<&Passphrase>) -> Result<Identity, KeyFileError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    random(path, &mut *seed)?;
    let identity = Identity::from_seed(*seed);
    write_with(path, &identity, pass)?;
    Ok(identity)
}

/// Writes an identity, unencrypted, to a new file with mode 0600.
pub fn write(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    write_with(path, identity, None)
}

/// Writes an identity to a new file with mode 0600, encrypted under `pass`
/// if given.
pub fn write_with(
    path: &Path,
    identity: &Identity,
    pass: Option<&Passphrase>,
) -> Result<(), KeyFileError> {
    let text = key_text(path, identity, pass)?;
    write_new(path, text.as_bytes())
}

/// Writes `bytes` to a new file with mode 0600 and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Replaces the key file at `path` by `identity`, encrypted under `pass`
/// if given: the new text goes to a new file with mode 0600 in the same
/// folder, is synced, read back (it must give the same agency), and is
/// renamed over the old one (then the folder is synced), so a crash leaves
/// the old file or the new one, never half of either. A symbolic link is
/// followed: the file it names is replaced, the link stays. The old file's
/// blocks are not overwritten: on most file systems (and on any SSD) they
/// may stay readable on the disk until reused.
pub(crate) fn replace(
    path: &Path,
    identity: &Identity,
    pass: Option<&Passphrase>,
) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    // The file itself, not a link to it: renaming over a link would leave
    // the old key where the link pointed.
    let real = std::fs::canonicalize(path).map_err(io)?;
    let text = key_text(path, identity, pass)?;
    let folder = match real.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let mut tag = [0u8; 8];
    random(path, &mut tag)?;
    let temp = folder.join(format!(".{name}.{}.new", hex::encode(tag)));
    let written = write_new(&temp, text.as_bytes()).and_then(|()| {
        let again = match pass {
            Some(p) => read_with(&temp, p)?,
            None => read(&temp)?,
        };
        if again.agency() == identity.agency() {
            Ok(())
        } else {
            Err(KeyFileError::Invalid {
                path: temp.clone(),
                what: "the new key file does not read back as the same key",
            })
        }
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&temp, &real) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(&folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Whether the key file at `path` is encrypted (read with the same care as
/// [`read`]; nothing is decrypted).
pub fn protection(path: &Path) -> Result<Protection, KeyFileError> {
    let text = read_text(path)?;
    if pem_block(path, &text, ENCRYPTED_LABEL)?.is_some() {
        Ok(Protection::Encrypted)
    } else if pem_block(path, &text, PLAIN_LABEL)?.is_some() {
        Ok(Protection::Unencrypted)
    } else {
        Err(no_block(path))
    }
}

fn no_block(path: &Path) -> KeyFileError {
    KeyFileError::Invalid {
        path: path.to_owned(),
        what: "no PEM \"PRIVATE KEY\" or \"ENCRYPTED PRIVATE KEY\" block",
    }
}

/// A key file as read: the identity, whether the file is encrypted, and
/// its text as it is on disk (to copy it without re-encrypting).
pub(crate) struct Loaded {
    /// The identity.
    pub identity: Identity,
    /// Whether the file is encrypted.
    pub protection: Protection,
    /// The file's text, wiped from memory when dropped.
    pub text: Zeroizing<String>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("agency", &self.identity.agency())
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

/// Reads an unencrypted identity key file (PKCS#8 v1 or v2, PEM): a
/// regular file only its owner may access, of at most [`MAX_KEY_FILE`]
/// bytes. An encrypted one fails with [`KeyFileError::NoPassphrase`]; see
/// [`read_with`].
pub fn read(path: &Path) -> Result<Identity, KeyFileError> {
    read_with(path, &NoPassphrase)
}

/// Reads an identity key file, encrypted or not; the passphrase is asked
/// of `source` only if the file is encrypted.
pub fn read_with(path: &Path, source: &dyn PassphraseSource) -> Result<Identity, KeyFileError> {
    load(path, source).map(|l| l.identity)
}

/// Reads an identity key file, encrypted or not, and tells how it is
/// stored; the passphrase is asked of `source` only if the file is
/// encrypted.
pub(crate) fn load(path: &Path, source: &dyn PassphraseSource) -> Result<Loaded, KeyFileError> {
    let invalid = |what| KeyFileError::Invalid {
        path: path.to_owned(),
        what,
    };
    let text = read_text(path)?;
    if let Some(der) = pem_block(path, &text, ENCRYPTED_LABEL)? {
        // Check the structure before asking for a passphrase: a damaged
        // file is reported as damaged, without a prompt.
        pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der)
            .map_err(|_| invalid("the encrypted key is not a PKCS#8 EncryptedPrivateKeyInfo"))?;
        let named = named_agency(path, &text)?;
        let pass = source.passphrase(path)?;
        let identity = decrypt(path, &der, &pass)?;
        if let Some(agency) = named {
            if agency != identity.agency() {
                return Err(KeyFileError::Damaged {
                    path: path.to_owned(),
                    agency: agency.fingerprint(),
                });
            }
        }
        return Ok(Loaded {
            identity,
            protection: Protection::Encrypted,
            text,
        });
    }
    let der = pem_block(path, &text, PLAIN_LABEL)?.ok_or_else(|| no_block(path))?;
    let identity = from_pkcs8(&der).ok_or_else(|| invalid("not an Ed25519 PKCS#8 private key"))?;
    source.unencrypted(path);
    Ok(Loaded {
        identity,
        protection: Protection::Unencrypted,
        text,
    })
}

/// Writes a key file's text as read by [`load`] to a new file with mode
/// 0600 (a copy that keeps its encryption).
pub(crate) fn copy_to(loaded: &Loaded, path: &Path) -> Result<(), KeyFileError> {
    write_new(path, loaded.text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_read_and_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let id = create(&path).expect("create");
        let again = read(&path).expect("read");
        assert_eq!(id.agency(), again.agency());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(create(&path), Err(KeyFileError::Exists(_))));
    }

    /// Writes a file only its owner may read, as a key file must be.
    fn write_private(path: &Path, text: &str) {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write");
    }

    /// Reads in another thread: a read that blocks fails the test after
    /// a minute instead of hanging it.
    fn read_bounded(path: &Path) -> Result<Identity, KeyFileError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(read(&p));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("reading the key file returns")
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_may_access_and_says_how_to_fix_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let id = create(&path).expect("create");
        for mode in [0o644, 0o640, 0o620, 0o604, 0o602, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = read(&path).expect_err("exposed");
            assert!(
                matches!(e, KeyFileError::NotPrivate { mode: m, .. } if m == mode),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .contains(&format!("run `chmod 600 {}`", path.display())),
                "{e}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(read(&path).expect("private").agency(), id.agency());
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_fifo_and_a_device_without_reading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("key.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        for (path, kind) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
        ] {
            let e = read_bounded(path).expect_err("not a regular file");
            assert!(
                matches!(&e, KeyFileError::NotRegular { kind: k, .. } if *k == kind),
                "{e:?}"
            );
        }
        // A symbolic link to a key file is followed.
        let key = dir.path().join("identity.key");
        let id = create(&key).expect("create");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&key, &link).expect("symlink");
        assert_eq!(read(&link).expect("through the link").agency(), id.agency());
    }

    #[test]
    fn reads_at_most_a_few_kilobytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.key");
        let mut text = "# comment\n".repeat(1000);
        text.push_str("-----BEGIN PRIVATE KEY-----\n");
        write_private(&big, &text);
        assert!(matches!(read(&big), Err(KeyFileError::TooLarge(_))));
    }

    fn pass(s: &str) -> Passphrase {
        Passphrase::from(s.to_owned())
    }

    #[test]
    fn encrypted_round_trip_wrong_passphrase_and_no_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let id = create_with(&path, Some(&pass("right"))).expect("create");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(&format!(
            "{AGENCY_LINE}{}\n-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
            id.agency().to_hex()
        )));
        assert!(text.lines().skip(1).all(|l| l.len() <= 64), "{text}");
        assert_eq!(
            protection(&path).expect("protection"),
            Protection::Encrypted
        );
        let again = read_with(&path, &pass("right")).expect("decrypt");
        assert_eq!(again.agency(), id.agency());
        assert!(again.seed() == id.seed());
        for wrong in ["wrong", "", "right ", "Right"] {
            let e = read_with(&path, &pass(wrong)).expect_err("wrong passphrase");
            assert!(matches!(e, KeyFileError::WrongPassphrase(_)), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!("wrong passphrase for key file {}", path.display())
            );
        }
        let e = read(&path).expect_err("no passphrase");
        assert!(matches!(e, KeyFileError::NoPassphrase(_)), "{e:?}");
        // Two encryptions of one key differ (fresh salt and IV).
        let other = dir.path().join("other.key");
        write_with(&other, &id, Some(&pass("right"))).expect("write");
        assert_ne!(std::fs::read(&other).expect("read"), text.as_bytes());
        // An empty passphrase is refused for a new key.
        let empty = dir.path().join("empty.key");
        assert!(matches!(
            create_with(&empty, Some(&pass(""))),
            Err(KeyFileError::EmptyPassphrase(_))
        ));
        assert!(!empty.exists());
    }

    #[test]
    fn the_parameters_written_are_the_documented_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        create_with(&path, Some(&pass("p"))).expect("create");
        let text = read_text(&path).expect("text");
        let der = pem_block(&path, &text, ENCRYPTED_LABEL)
            .expect("pem")
            .expect("block");
        let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der).expect("der");
        let pkcs5::EncryptionScheme::Pbes2(p) = &info.encryption_algorithm else {
            panic!("not PBES2");
        };
        let pbes2::Kdf::Scrypt(s) = &p.kdf else {
            panic!("not scrypt");
        };
        assert_eq!(s.cost_parameter, 1 << SCRYPT_LOG_N);
        assert_eq!(u32::from(s.block_size), SCRYPT_R);
        assert_eq!(u32::from(s.parallelization), SCRYPT_P);
        assert_eq!(s.salt.as_bytes().len(), 16);
        assert!(matches!(
            p.encryption,
            pbes2::EncryptionScheme::Aes256Cbc { .. }
        ));
        // The memory OpenSSL 3 accepts by default (32 MiB).
        assert!(128 * u64::from(SCRYPT_R) * (1u64 << SCRYPT_LOG_N) < 32 << 20);
        // The PKCS#8 v1 DER (48 bytes; OpenSSL 3.0 and `cryptography`
        // read no other form encrypted) padded to 64.
        assert_eq!(info.encrypted_data.as_bytes().len(), 64);
        let plain = p
            .decrypt(b"p", info.encrypted_data.as_bytes())
            .expect("decrypt");
        assert_eq!(&plain[..16], &V1_PREFIX);
        assert_eq!(plain.len(), 48);
        // The agency line before the block.
        let id = read_with(&path, &pass("p")).expect("read");
        assert!(text.starts_with(&format!(
            "{AGENCY_LINE}{}\n-----BEGIN ",
            id.agency().to_hex()
        )));
    }

    /// Writes an encrypted key file whose scrypt parameters are these.
    fn with_scrypt(path: &Path, log_n: u8, r: u32, p: u32) {
        let params = pbes2::Parameters::generate_scrypt_aes256cbc(
            pkcs5::scrypt::Params::new(log_n, r, p).expect("params"),
            &[1; 16],
            [2; 16],
        )
        .expect("params");
        let info = pkcs8::EncryptedPrivateKeyInfoRef {
            encryption_algorithm: pkcs5::EncryptionScheme::Pbes2(params),
            encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&[0u8; 64]).expect("octets"),
        };
        let der = info.to_der().expect("der");
        let pem = pkcs8::der::pem::encode_string(ENCRYPTED_LABEL, pkcs8::LineEnding::LF, &der)
            .expect("pem");
        write_private(path, &pem);
    }

    #[test]
    fn refuses_a_costly_derivation_before_spending_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (n, (log_n, r, p)) in [(24, 8, 1), (20, 8, 1), (14, 8, 1024)]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("costly-{n}.key"));
            with_scrypt(&path, log_n, r, p);
            let started = std::time::Instant::now();
            let e = read_with(&path, &pass("x")).expect_err("too costly");
            assert!(
                matches!(&e, KeyFileError::Invalid { what, .. } if what.contains("scrypt")),
                "{e:?}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
    }

    #[test]
    fn damaged_encrypted_files_give_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Cheap parameters: the same code decrypts, hundreds of times.
        let text = encrypt_scrypt(
            Path::new("good.key"),
            &Identity::from_seed([5; 32]),
            &pass("p"),
            (4, 8, 1),
        )
        .expect("encrypt");
        let agency_line = text.lines().next().expect("a first line").to_owned();
        assert!(agency_line.starts_with(AGENCY_LINE));
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.starts_with('#'))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .expect("b64");
        let as_pem = |der: &[u8]| {
            let pem = pkcs8::der::pem::encode_string(ENCRYPTED_LABEL, pkcs8::LineEnding::LF, der)
                .unwrap_or_else(|_| {
                    format!("-----BEGIN {ENCRYPTED_LABEL}-----\n-----END {ENCRYPTED_LABEL}-----\n")
                });
            format!("{agency_line}\n{pem}")
        };
        let mut n = 0;
        let mut check = |text: &str| {
            n += 1;
            let p = dir.path().join(format!("bad-{n}.key"));
            write_private(&p, text);
            // A source that counts: asked only for a well-formed file.
            let e = read_with(&p, &pass("p")).expect_err("damaged");
            assert!(
                matches!(
                    e,
                    KeyFileError::Invalid { .. }
                        | KeyFileError::WrongPassphrase(_)
                        | KeyFileError::Damaged { .. }
                ),
                "{e:?}"
            );
        };
        // Every truncation of the DER (re-armoured), and of the text.
        let good = dir.path().join("good.key");
        write_private(&good, &text);
        assert_eq!(
            read_with(&good, &pass("p")).expect("intact").agency(),
            Identity::from_seed([5; 32]).agency()
        );
        for len in 0..der.len() {
            check(&as_pem(&der[..len]));
        }
        for len in 30..text.len() - 1 {
            check(&text[..len]);
        }
        // A byte changed anywhere in the ciphertext (the last 64 bytes):
        // the CBC padding, the key's structure or the agency the file
        // names no longer checks out. Changes in the block that holds the
        // seed's first half decrypt to another valid-looking seed: only the
        // agency line catches those.
        let mut damaged = 0;
        for i in der.len() - 64..der.len() {
            let mut d = der.clone();
            d[i] ^= 0x55;
            let p = dir.path().join(format!("flip-{i}.key"));
            write_private(&p, &as_pem(&d));
            match read_with(&p, &pass("p")) {
                Err(KeyFileError::Damaged { .. }) => damaged += 1,
                Err(KeyFileError::WrongPassphrase(_) | KeyFileError::Invalid { .. }) => {}
                other => panic!("byte {i}: {other:?}"),
            }
        }
        assert!(damaged >= 16, "{damaged}");
        // A byte changed in the parameters.
        for i in 0..der.len() - 64 {
            let mut d = der.clone();
            d[i] ^= 0x55;
            let p = dir.path().join(format!("param-{i}.key"));
            write_private(&p, &as_pem(&d));
            // Either refused, or (a changed salt or IV byte) decrypted to
            // something that is not the key: never a panic.
            let _ = read_with(&p, &pass("p"));
        }
    }

    #[test]
    fn a_passphrase_is_never_printed() {
        let p = pass("hunter2 secret");
        assert_eq!(format!("{p:?}"), "Passphrase(..)");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        create_with(&path, Some(&p)).expect("create");
        let e = read_with(&path, &pass("hunter2 wrong")).expect_err("wrong");
        assert!(!format!("{e} {e:?}").contains("hunter2"));
        let loaded = load(&path, &p).expect("load");
        assert!(!format!("{loaded:?}").contains("BEGIN"));
    }

    #[test]
    fn replace_swaps_the_file_atomically_and_keeps_it_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.key");
        let id = create(&path).expect("create");
        assert_eq!(protection(&path).expect("p"), Protection::Unencrypted);
        replace(&path, &id, Some(&pass("new"))).expect("replace");
        assert_eq!(protection(&path).expect("p"), Protection::Encrypted);
        assert_eq!(
            read_with(&path, &pass("new")).expect("read").agency(),
            id.agency()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["identity.key"]);
        // Through a symbolic link: the file it names is replaced, the link
        // stays a link (renaming over the link would leave the old key).
        #[cfg(unix)]
        {
            let secure = tempfile::tempdir().expect("tempdir");
            let real = secure.path().join("real.key");
            let id = create(&real).expect("create");
            let link = dir.path().join("link.key");
            std::os::unix::fs::symlink(&real, &link).expect("symlink");
            replace(&link, &id, Some(&pass("p"))).expect("replace");
            assert!(std::fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink());
            assert_eq!(protection(&real).expect("p"), Protection::Encrypted);
        }
    }

    #[test]
    fn reads_v2_and_refuses_garbage() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Identity::from_seed([4; 32]);
        let v2 = id.signing_key().to_pkcs8_der().expect("der");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(v2.as_bytes())
        );
        let p = dir.path().join("v2.key");
        write_private(&p, &pem);
        assert_eq!(read(&p).expect("v2").agency(), id.agency());
        let bad = dir.path().join("bad.key");
        write_private(&bad, "hello");
        let err = read(&bad).expect_err("garbage");
        assert!(err.to_string().contains("no PEM"));
    }
}
