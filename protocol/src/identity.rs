//! Agency identity: an Ed25519 key pair (RFC 8032).
//!
//! The protocol crate never creates randomness: a new identity is made from a
//! 32-byte seed the caller obtained from the operating system.

use ed25519_dalek::{Signer, SigningKey};

use crate::ids::AgencyId;

/// An agency's signing identity. The secret never leaves this type except
/// through [`Identity::seed`], which key storage needs.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// The identity whose secret key is `seed` (RFC 8032 §5.1.5).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for writing the key file.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The agency id (public key).
    pub fn agency(&self) -> AgencyId {
        AgencyId(self.key.verifying_key().to_bytes())
    }

    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The underlying dalek key, for TLS certificate creation.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.agency().fingerprint())
    }
}

/// Whether 32 bytes are an acceptable agency key: a canonical encoding of a
/// curve point that is not of small order (such a key could "verify"
/// signatures it never made). The same test V8 applies to every author
/// (SPEC.md §3.3); check it before pinning or admitting a key.
pub fn is_valid_agency_key(agency: &AgencyId) -> bool {
    crate::signature::strict_point(agency.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::signature::verify;
    use ed25519_dalek::VerifyingKey;

    #[test]
    fn sign_and_verify() {
        let id = Identity::from_seed([1; 32]);
        let sig = id.sign(b"hello");
        assert!(verify(&id.agency(), b"hello", &sig));
        assert!(!verify(&id.agency(), b"hellO", &sig));
        let other = Identity::from_seed([2; 32]);
        assert!(!verify(&other.agency(), b"hello", &sig));
    }

    #[test]
    fn agency_keys_are_checked() {
        assert!(is_valid_agency_key(&Identity::from_seed([3; 32]).agency()));
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert!(!is_valid_agency_key(&AgencyId(identity_point)));
        // A non-canonical encoding (y = 2^255 - 17 + 2 >= p) of a point
        // that is not of small order must be refused too.
        let mut found = 0;
        for low in 0xEDu8..=0xFF {
            let mut k = [0xFF; 32];
            k[0] = low;
            k[31] = 0x7F;
            if VerifyingKey::from_bytes(&k).is_ok_and(|v| !v.is_weak()) {
                found += 1;
                assert!(!is_valid_agency_key(&AgencyId(k)), "{}", hex::encode(k));
            }
        }
        assert!(found > 0, "the loop tested at least one non-canonical key");
    }

    #[test]
    fn small_order_key_is_refused() {
        // The identity point (small order) with an all-zero signature.
        let mut a = [0u8; 32];
        a[0] = 1;
        assert!(!verify(&AgencyId(a), b"x", &[0; 64]));
    }
}
