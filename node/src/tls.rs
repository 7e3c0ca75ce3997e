//! Pinned mutual TLS 1.3 over QUIC.
//!
//! Every node owns an agency Ed25519 signing key. It presents a self-signed
//! X.509 certificate for that key, and accepts a peer (in either direction)
//! only when the peer's end-entity certificate carries an Ed25519 public key
//! that is present in the node's [`PinSet`]. There are no certificate
//! authorities, no chains, no validity periods and no host names: the pinned
//! key *is* the identity, and the TLS 1.3 `CertificateVerify` signature proves
//! possession of the matching private key.
//!
//! Hardening choices:
//!
//! * TLS 1.3 only, a single explicit crypto provider (ring), no process-wide
//!   provider is installed.
//! * Only `ed25519` is advertised and accepted for handshake signatures.
//! * Session resumption and 0-RTT are disabled on both sides, because resumed
//!   sessions bypass the certificate verifiers: a peer removed from the
//!   [`PinSet`] must be refused on its very next handshake.
//! * Any rejection of a peer certificate (unknown key, wrong key type,
//!   malformed certificate, unexpected chain, bad signature) is reported to
//!   the peer with one and the same generic error (`access_denied`), so a
//!   prober learns nothing about why it was refused.
//! * Client certificates are mandatory.
//!
//! Note that with TLS 1.3 the *client* may see its handshake complete before
//! the server has judged the client certificate; a refused client notices
//! only at its first read or write on the connection.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// ALPN protocol id spoken between Custodia nodes.
pub const ALPN: &[u8] = b"custodia/1";

/// Server name to pass to [`quinn::Endpoint::connect_with`].
///
/// Any syntactically valid name works: the pinned verifier ignores it. It is
/// also the subject alternative name written into node certificates. The
/// client does not send it (SNI is disabled).
pub const SERVER_NAME: &str = "custodia.invalid";

/// QUIC idle timeout, in milliseconds (30 s).
const IDLE_TIMEOUT_MS: u32 = 30_000;
/// QUIC keep-alive interval (well below the idle timeout).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Maximum number of concurrently open bidirectional streams a peer may open.
const MAX_BIDI_STREAMS: u32 = 16;

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): a SEQUENCE
/// holding the algorithm identifier 1.3.101.112 and a 33-byte BIT STRING
/// (no unused bits) which is followed by the 32-byte public key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Errors raised while building node certificates and TLS/QUIC configurations.
///
/// None of these errors ever carries private key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The node signing key could not be encoded as PKCS#8.
    ///
    /// No detail is kept, so that nothing about the key can leak into logs.
    #[error("could not encode the node signing key as PKCS#8")]
    KeyEncoding,
    /// The crypto backend refused the PKCS#8-encoded node signing key.
    ///
    /// No detail is kept, so that nothing about the key can leak into logs.
    #[error("the crypto backend rejected the node signing key")]
    KeyRejected,
    /// The self-signed node certificate could not be generated.
    #[error("could not generate the node certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the TLS configuration (protocol versions, certificate
    /// or key).
    #[error("invalid TLS configuration")]
    Config(#[source] rustls::Error),
    /// The TLS configuration cannot be used for QUIC (it lacks the TLS 1.3
    /// cipher suite QUIC needs for its initial packets).
    #[error("TLS configuration is not usable for QUIC")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The set of agency public keys (32-byte Ed25519) this node accepts as
/// peers.
///
/// Cloning is cheap and clones share the same set: keys inserted or removed
/// at run time take effect for every later handshake of every configuration
/// built from this set. Connections that are already established are not
/// affected; closing them is the caller's business.
#[derive(Clone, Default)]
pub struct PinSet(Arc<RwLock<HashSet<[u8; 32]>>>);

impl PinSet {
    /// A pin set holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self(Arc::new(RwLock::new(keys.into_iter().collect())))
    }

    /// Accept `k` as a peer from now on.
    pub fn insert(&self, k: [u8; 32]) {
        // A poisoned lock still guards a consistent `HashSet` (no operation
        // on it can leave it half-modified), so recover the guard.
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(k);
    }

    /// Refuse `k` as a peer from now on.
    pub fn remove(&self, k: &[u8; 32]) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(k);
    }

    /// Whether `k` is currently accepted as a peer.
    pub fn contains(&self, k: &[u8; 32]) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(k)
    }
}

impl fmt::Debug for PinSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("PinSet").field("len", &len).finish()
    }
}

/// Self-signed X.509 certificate for the agency's Ed25519 key, together with
/// the key in the PKCS#8 form rustls expects.
///
/// The certificate's subject alternative name is [`SERVER_NAME`]; its
/// validity period is irrelevant (peers are identified by key only).
pub fn certificate(
    key: &ed25519_dalek::SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8_doc = key.to_pkcs8_der().map_err(|_| TlsError::KeyEncoding)?;
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8_doc.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|_| TlsError::KeyRejected)?;

    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(TlsError::Certificate)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "custodia node");
    params.distinguished_name = dn;
    let cert = params
        .self_signed(&key_pair)
        .map_err(TlsError::Certificate)?;

    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// QUIC server configuration: presents the node certificate for `key` and
/// requires a client certificate whose Ed25519 key is in `pins`.
pub fn server_config(
    key: &ed25519_dalek::SigningKey,
    pins: PinSet,
) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, private_key) = certificate(key)?;
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier::new(pins, &provider));

    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], private_key)
        .map_err(TlsError::Config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: resumed sessions would skip the pin check.
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    // No 0-RTT.
    tls.max_early_data_size = 0;
    tls.send_half_rtt_data = false;

    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(TlsError::Quic)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// QUIC client configuration: presents the node certificate for `key` and
/// accepts only a server whose Ed25519 key is in `pins`.
///
/// Use it with [`quinn::Endpoint::connect_with`] and [`SERVER_NAME`].
pub fn client_config(
    key: &ed25519_dalek::SigningKey,
    pins: PinSet,
) -> Result<quinn::ClientConfig, TlsError> {
    let (cert, private_key) = certificate(key)?;
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier::new(pins, &provider));

    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], private_key)
        .map_err(TlsError::Config)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: resumed sessions would skip the pin check.
    tls.resumption = Resumption::disabled();
    // No 0-RTT.
    tls.enable_early_data = false;
    // The server name is meaningless; don't send it in the clear.
    tls.enable_sni = false;

    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(TlsError::Quic)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// The Ed25519 public key of the authenticated peer of `conn`, or `None` if
/// the peer has presented no (usable) certificate.
///
/// Connections produced by [`server_config`] / [`client_config`] only
/// complete their handshake with a peer whose key was pinned at handshake
/// time.
pub fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certs.as_slice() {
        [end_entity] => ed25519_key(end_entity),
        _ => None,
    }
}

/// The ring provider, passed explicitly to every configuration.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport parameters shared by client and server.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            IDLE_TIMEOUT_MS,
        ))))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(transport)
}

/// The Ed25519 public key of an X.509 certificate, or `None` if the
/// certificate does not parse or does not hold an Ed25519 key.
fn ed25519_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(ED25519_SPKI_PREFIX.as_slice())?;
    key.try_into().ok()
}

/// The one error every refused peer sees (TLS alert `access_denied`).
fn refused() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// Verifier for both directions: the peer's single certificate must carry a
/// pinned Ed25519 key, and its handshake signature must be a valid Ed25519
/// signature by that key.
struct PinnedVerifier {
    pins: PinSet,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

impl PinnedVerifier {
    fn new(pins: PinSet, provider: &CryptoProvider) -> Self {
        Self {
            pins,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Accept the certificate chain only if it is a lone certificate for a
    /// pinned Ed25519 key. Every refusal looks the same to the peer.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            tracing::debug!("refusing peer: certificate chain has intermediates");
            return Err(refused());
        }
        let Some(key) = ed25519_key(end_entity) else {
            tracing::debug!("refusing peer: certificate holds no Ed25519 key");
            return Err(refused());
        };
        if !self.pins.contains(&key) {
            tracing::debug!(peer = %hex::encode(key), "refusing peer: key not pinned");
            return Err(refused());
        }
        Ok(())
    }

    /// Check a TLS 1.3 `CertificateVerify` signature; only Ed25519 is allowed.
    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            tracing::debug!(scheme = ?dss.scheme, "refusing peer: handshake signature scheme");
            return Err(refused());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms).map_err(|_| {
            tracing::debug!("refusing peer: bad handshake signature");
            refused()
        })
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
