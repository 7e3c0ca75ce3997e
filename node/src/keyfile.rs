//! The agency's identity key file.
//!
//! Stored as PEM "PRIVATE KEY" in the PKCS#8 v1 form (RFC 8410 §7: the
//! 32-byte seed only), which OpenSSL 3 and Python's `cryptography` read, so
//! operators can inspect it with the tools they know. The PKCS#8 v2 form
//! (seed plus public key) is read too. The file is created with mode 0600
//! and its content is never printed or logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use custodia_protocol::Identity;

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows.
const V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

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

/// Reads an identity key file (PKCS#8 v1 or v2, PEM).
pub fn read(path: &Path) -> Result<Identity, KeyFileError> {
    let invalid = |what| KeyFileError::Invalid {
        path: path.to_owned(),
        what,
    };
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
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
        std::fs::write(&p, pem).expect("write");
        assert_eq!(read(&p).expect("v2").agency(), id.agency());
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "hello").expect("write");
        let err = read(&bad).expect_err("garbage");
        assert!(err.to_string().contains("no PEM"));
    }
}
