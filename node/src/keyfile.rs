//! The agency's identity key file.
//!
//! Stored as PEM "PRIVATE KEY" in the PKCS#8 v1 form (RFC 8410 §7: the
//! 32-byte seed only), which OpenSSL 3 and Python's `cryptography` read, so
//! operators can inspect it with the tools they know. The PKCS#8 v2 form
//! (seed plus public key) is read too. The file is created with mode 0600
//! and its content is never printed or logged.
//!
//! Reading is as careful as ssh's: a key file group or others may read is
//! refused (its secret may have leaked; `chmod 600` fixes the mode), a path
//! that is not a regular file (a FIFO, a device) is refused without reading
//! from it, and at most [`MAX_KEY_FILE`] bytes are read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use custodia_protocol::Identity;

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The most of a key file that is read: a PEM Ed25519 key is under 200
/// bytes; comments and line endings leave room to spare.
pub const MAX_KEY_FILE: u64 = 8192;

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
fn read_text(path: &Path) -> Result<String, KeyFileError> {
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
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge(path.to_owned()));
    }
    String::from_utf8(bytes).map_err(|_| KeyFileError::Invalid {
        path: path.to_owned(),
        what: "not text (a PEM key file is ASCII)",
    })
}

/// Creates a new identity from the operating system's randomness and
/// writes it to `path` with mode 0600. Refuses to overwrite a file.
pub fn create(path: &Path) -> Result<Identity, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let identity = Identity::from_seed(seed);
    write(path, &identity)?;
    Ok(identity)
}

/// Writes an identity to a new file with mode 0600.
pub fn write(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut der = V1_PREFIX.to_vec();
    der.extend_from_slice(&identity.seed());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
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
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads an identity key file (PKCS#8 v1 or v2, PEM): a regular file only
/// its owner may access, of at most [`MAX_KEY_FILE`] bytes.
pub fn read(path: &Path) -> Result<Identity, KeyFileError> {
    let invalid = |what| KeyFileError::Invalid {
        path: path.to_owned(),
        what,
    };
    let text = read_text(path)?;
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return Err(invalid("no PEM \"PRIVATE KEY\" block"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| invalid("the PEM block is not valid base64"))?;
    if der.len() == 48 && der[..16] == V1_PREFIX {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&der[16..]);
        return Ok(Identity::from_seed(seed));
    }
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
        .map_err(|_| invalid("not an Ed25519 PKCS#8 private key"))?;
    Ok(Identity::from_seed(key.to_bytes()))
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
