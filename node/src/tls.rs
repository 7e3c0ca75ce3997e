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
pub(crate) fn certificate(
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
pub(crate) fn server_config(
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

/// The key of the node's stateless resets (RFC 9000 §10.3), derived from
/// the agency's identity key: the same across restarts, so a restarted
/// node's reset for a connection it has forgotten is one the peer
/// recognises. HMAC-SHA256 with the identity seed as key over a fixed
/// label: the seed is never used for anything else this way, and the
/// derived key reveals nothing of it.
pub(crate) fn reset_key(identity: &ed25519_dalek::SigningKey) -> Arc<dyn quinn::crypto::HmacKey> {
    let derived = derive(identity, b"custodia/1 QUIC stateless reset key");
    Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        derived.as_ref(),
    ))
}

/// The key of the node's connection-id check, derived from the agency's
/// identity key like [`reset_key`] (the node answers a packet for a
/// forgotten connection only if its connection id passes this check).
pub(crate) fn cid_key(identity: &ed25519_dalek::SigningKey) -> u64 {
    let derived = derive(identity, b"custodia/1 QUIC connection id key");
    let mut k = [0u8; 8];
    k.copy_from_slice(&derived.as_ref()[..8]);
    u64::from_le_bytes(k)
}

/// HMAC-SHA256 keyed by the identity seed over a fixed label: one derived
/// secret per purpose, none revealing the seed or another.
fn derive(identity: &ed25519_dalek::SigningKey, label: &[u8]) -> ring::hmac::Tag {
    let seed = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &identity.to_bytes());
    ring::hmac::sign(&seed, label)
}

/// The Ed25519 public key of the authenticated peer of `conn`, or `None` if
/// the peer has presented no (usable) certificate.
///
/// Connections produced by [`server_config`] / [`client_config`] only
/// complete their handshake with a peer whose key was pinned at handshake
/// time.
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
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
            tracing::trace!("refusing peer: certificate chain has intermediates");
            return Err(refused());
        }
        let Some(key) = ed25519_key(end_entity) else {
            tracing::trace!("refusing peer: certificate holds no Ed25519 key");
            return Err(refused());
        };
        if !self.pins.contains(&key) {
            tracing::trace!(peer = %hex::encode(key), "refusing peer: key not pinned");
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
            tracing::trace!(scheme = ?dss.scheme, "refusing peer: handshake signature scheme");
            return Err(refused());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms).map_err(|_| {
            tracing::trace!("refusing peer: bad handshake signature");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    use ed25519_dalek::SigningKey;
    use quinn::{Connection, ConnectionError, Endpoint, TransportErrorCode};

    /// Bound on every test.
    const LIMIT: Duration = Duration::from_secs(5);
    /// TLS alerts (RFC 8446 §6), carried in QUIC as CRYPTO_ERROR 0x100 + alert.
    const ACCESS_DENIED: u8 = 49;
    const CERTIFICATE_REQUIRED: u8 = 116;
    const NO_APPLICATION_PROTOCOL: u8 = 120;

    fn new_key() -> SigningKey {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("OS randomness");
        SigningKey::from_bytes(&seed)
    }

    fn public(key: &SigningKey) -> [u8; 32] {
        key.verifying_key().to_bytes()
    }

    fn localhost() -> SocketAddr {
        (Ipv4Addr::LOCALHOST, 0).into()
    }

    fn server(key: &SigningKey, pins: PinSet) -> (Endpoint, SocketAddr) {
        let config = server_config(key, pins).expect("server config");
        let endpoint = Endpoint::server(config, localhost()).expect("server endpoint");
        let addr = endpoint.local_addr().expect("server address");
        (endpoint, addr)
    }

    fn client() -> Endpoint {
        Endpoint::client(localhost()).expect("client endpoint")
    }

    /// A client configuration built by hand, to misbehave: optional client
    /// certificate and arbitrary ALPN, but the same pinned server verifier.
    fn custom_client(
        key: Option<&SigningKey>,
        server_pins: PinSet,
        alpn: Vec<Vec<u8>>,
    ) -> quinn::ClientConfig {
        let provider = provider();
        let verifier = Arc::new(PinnedVerifier::new(server_pins, &provider));
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match key {
            Some(key) => {
                let (cert, private_key) = certificate(key).expect("certificate");
                builder
                    .with_client_auth_cert(vec![cert], private_key)
                    .expect("client cert")
            }
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = alpn;
        tls.resumption = Resumption::disabled();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC");
        quinn::ClientConfig::new(Arc::new(quic))
    }

    /// Server side of one connection attempt.
    async fn accept_one(endpoint: &Endpoint) -> Result<Connection, ConnectionError> {
        let incoming = endpoint.accept().await.expect("endpoint open");
        incoming.await
    }

    /// Server side of one attempt that must be refused: returns the error,
    /// and fails the test if an authenticated connection comes out.
    fn spawn_refusing_server(endpoint: &Endpoint) -> tokio::task::JoinHandle<ConnectionError> {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            match accept_one(&endpoint).await {
                Ok(conn) => panic!(
                    "server yielded a connection with peer {:?}",
                    peer_key(&conn).map(hex::encode)
                ),
                Err(e) => e,
            }
        })
    }

    /// Server side of one accepted exchange: answers one bi stream with
    /// `pong:` + request, waits for the client to close, and returns the
    /// client's key and request.
    fn spawn_echo_server(
        endpoint: &Endpoint,
    ) -> tokio::task::JoinHandle<(Option<[u8; 32]>, Vec<u8>)> {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let conn = accept_one(&endpoint).await.expect("server handshake");
            let key = peer_key(&conn);
            let (mut send, mut recv) = conn.accept_bi().await.expect("accept stream");
            let request = recv.read_to_end(1024).await.expect("read request");
            send.write_all(&[b"pong:".as_slice(), &request].concat())
                .await
                .expect("write reply");
            send.finish().expect("finish");
            let _ = conn.closed().await;
            (key, request)
        })
    }

    /// Client side of a whole exchange: handshake, then one request and
    /// reply on a bi stream. On failure, the reason the connection died.
    async fn exchange(
        endpoint: &Endpoint,
        config: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> Result<(Connection, Vec<u8>), ConnectionError> {
        let conn = endpoint
            .connect_with(config, addr, SERVER_NAME)
            .expect("connect parameters")
            .await?;
        let result: Result<Vec<u8>, Box<dyn std::error::Error>> = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"ping").await?;
            send.finish()?;
            Ok(recv.read_to_end(1024).await?)
        }
        .await;
        match result {
            Ok(reply) => Ok((conn, reply)),
            Err(_) => Err(conn.closed().await),
        }
    }

    /// The connection died of TLS alert `alert` (sent or received).
    fn assert_alert(err: &ConnectionError, alert: u8) {
        let code = match err {
            ConnectionError::ConnectionClosed(close) => close.error_code,
            ConnectionError::TransportError(e) => e.code,
            other => panic!("expected TLS alert {alert}, got {other:?}"),
        };
        assert_eq!(code, TransportErrorCode::crypto(alert), "{err:?}");
    }

    async fn bounded<F: std::future::Future>(test: F) -> F::Output {
        tokio::time::timeout(LIMIT, test)
            .await
            .expect("test timed out")
    }

    #[test]
    fn restart_keys_are_stable_per_agency_and_distinct() {
        let (a, b) = (new_key(), new_key());
        assert_eq!(cid_key(&a), cid_key(&SigningKey::from_bytes(&a.to_bytes())));
        assert_ne!(cid_key(&a), cid_key(&b));
        assert_ne!(
            derive(&a, b"custodia/1 QUIC stateless reset key").as_ref(),
            derive(&a, b"custodia/1 QUIC connection id key").as_ref()
        );
    }

    #[test]
    fn certificate_carries_the_agency_key() {
        let key = new_key();
        let (cert, private_key) = certificate(&key).expect("certificate");
        assert_eq!(ed25519_key(&cert), Some(public(&key)));
        assert!(matches!(private_key, PrivateKeyDer::Pkcs8(_)));
        // Deterministic key, fresh certificate each time, same key inside.
        let (again, _) = certificate(&key).expect("certificate");
        assert_eq!(ed25519_key(&again), Some(public(&key)));
    }

    #[test]
    fn pin_set_is_shared_between_clones() {
        let (a, b) = (public(&new_key()), public(&new_key()));
        let pins = PinSet::new([a]);
        let clone = pins.clone();
        assert!(clone.contains(&a) && !clone.contains(&b));
        pins.insert(b);
        assert!(clone.contains(&b));
        clone.remove(&a);
        assert!(!pins.contains(&a));
        assert_eq!(format!("{pins:?}"), "PinSet { len: 1 }");
    }

    #[test]
    fn every_refusal_looks_the_same() {
        let pinned = new_key();
        let provider = provider();
        let verifier = PinnedVerifier::new(PinSet::new([public(&pinned)]), &provider);
        let now = UnixTime::now();
        let name = ServerName::try_from(SERVER_NAME).expect("name");

        let (good, _) = certificate(&pinned).expect("certificate");
        let (unknown, _) = certificate(&new_key()).expect("certificate");
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let ecdsa_key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let ecdsa = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .expect("params")
            .self_signed(&ecdsa_key)
            .expect("P-256 certificate")
            .der()
            .clone();

        assert!(
            ServerCertVerifier::verify_server_cert(&verifier, &good, &[], &name, &[], now).is_ok()
        );
        assert!(ClientCertVerifier::verify_client_cert(&verifier, &good, &[], now).is_ok());

        let bad: [(&CertificateDer<'_>, &[CertificateDer<'_>]); 4] = [
            (&unknown, &[]),
            (&garbage, &[]),
            (&ecdsa, &[]),
            (&good, std::slice::from_ref(&good)),
        ];
        for (cert, chain) in bad {
            let server_side =
                ServerCertVerifier::verify_server_cert(&verifier, cert, chain, &name, &[], now)
                    .expect_err("server cert must be refused");
            let client_side = ClientCertVerifier::verify_client_cert(&verifier, cert, chain, now)
                .expect_err("client cert must be refused");
            assert_eq!(server_side, refused());
            assert_eq!(client_side, refused());
        }

        assert!(ClientCertVerifier::client_auth_mandatory(&verifier));
        assert!(ClientCertVerifier::root_hint_subjects(&verifier).is_empty());
        assert_eq!(
            ServerCertVerifier::supported_verify_schemes(&verifier),
            vec![SignatureScheme::ED25519]
        );
    }

    /// (1) Two pinned peers connect, see each other's key, and talk both ways.
    #[tokio::test]
    async fn pinned_peers_connect_and_exchange() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let (server_ep, addr) = server(&server_key, PinSet::new([public(&client_key)]));
            let server_task = spawn_echo_server(&server_ep);

            let config = client_config(&client_key, PinSet::new([public(&server_key)]))
                .expect("client config");
            let (conn, reply) = exchange(&client(), config, addr)
                .await
                .expect("pinned exchange");
            assert_eq!(peer_key(&conn), Some(public(&server_key)));
            assert_eq!(
                conn.handshake_data().and_then(|d| {
                    d.downcast::<quinn::crypto::rustls::HandshakeData>()
                        .ok()
                        .and_then(|d| d.protocol)
                }),
                Some(ALPN.to_vec())
            );
            assert_eq!(reply, b"pong:ping");
            conn.close(0u32.into(), b"done");

            let (seen_by_server, request) = server_task.await.expect("server task");
            assert_eq!(seen_by_server, Some(public(&client_key)));
            assert_eq!(request, b"ping");
        })
        .await;
    }

    /// (2) A client whose key the server does not pin is refused: whatever
    /// the client's handshake says, its first exchange fails, and the server
    /// never yields a connection.
    #[tokio::test]
    async fn unpinned_client_is_refused() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let stranger = new_key();
            let (server_ep, addr) = server(&server_key, PinSet::new([public(&stranger)]));
            let server_task = spawn_refusing_server(&server_ep);

            let config = client_config(&client_key, PinSet::new([public(&server_key)]))
                .expect("client config");
            let err = exchange(&client(), config, addr)
                .await
                .expect_err("unpinned client must be refused");
            assert_alert(&err, ACCESS_DENIED);
            // The reason the client is given says nothing about the key.
            if let ConnectionError::ConnectionClosed(close) = &err {
                let reason = String::from_utf8_lossy(&close.reason).to_lowercase();
                assert!(
                    !reason.contains(&hex::encode(public(&client_key))),
                    "{reason}"
                );
                assert!(!reason.contains("pin"), "{reason}");
            }

            assert_alert(&server_task.await.expect("server task"), ACCESS_DENIED);
        })
        .await;
    }

    /// (3) A server whose key the client does not pin is refused.
    #[tokio::test]
    async fn unpinned_server_is_refused() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let (server_ep, addr) = server(&server_key, PinSet::new([public(&client_key)]));
            let server_task = spawn_refusing_server(&server_ep);

            let config = client_config(&client_key, PinSet::new([public(&new_key())]))
                .expect("client config");
            let err = exchange(&client(), config, addr)
                .await
                .expect_err("unpinned server must be refused");
            assert_alert(&err, ACCESS_DENIED);
            assert_alert(&server_task.await.expect("server task"), ACCESS_DENIED);
        })
        .await;
    }

    /// (4) A client without any certificate is refused.
    #[tokio::test]
    async fn client_without_certificate_is_refused() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let (server_ep, addr) = server(&server_key, PinSet::new([public(&client_key)]));
            let server_task = spawn_refusing_server(&server_ep);

            let config = custom_client(
                None,
                PinSet::new([public(&server_key)]),
                vec![ALPN.to_vec()],
            );
            let err = exchange(&client(), config, addr)
                .await
                .expect_err("certificate-less client must be refused");
            assert_alert(&err, CERTIFICATE_REQUIRED);
            assert_alert(
                &server_task.await.expect("server task"),
                CERTIFICATE_REQUIRED,
            );
        })
        .await;
    }

    /// (5) A client speaking another application protocol (or none) is
    /// refused, even with a pinned key.
    #[tokio::test]
    async fn alpn_mismatch_is_refused() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let (server_ep, addr) = server(&server_key, PinSet::new([public(&client_key)]));
            let client_ep = client();
            for alpn in [vec![b"custodia/0".to_vec()], vec![]] {
                let server_task = spawn_refusing_server(&server_ep);
                let config = custom_client(
                    Some(&client_key),
                    PinSet::new([public(&server_key)]),
                    alpn.clone(),
                );
                let err = exchange(&client_ep, config, addr)
                    .await
                    .expect_err("ALPN mismatch must be refused");
                assert_alert(&err, NO_APPLICATION_PROTOCOL);
                assert_alert(
                    &server_task.await.expect("server task"),
                    NO_APPLICATION_PROTOCOL,
                );
            }
        })
        .await;
    }

    /// Pins change at run time and take effect on the next handshake: with
    /// resumption disabled, a removed client cannot come back on an old
    /// session, and a re-added one is accepted again.
    #[tokio::test]
    async fn pin_changes_apply_to_the_next_handshake() {
        bounded(async {
            let (server_key, client_key) = (new_key(), new_key());
            let server_pins = PinSet::new([public(&client_key)]);
            let (server_ep, addr) = server(&server_key, server_pins.clone());
            let client_ep = client();
            let config = client_config(&client_key, PinSet::new([public(&server_key)]))
                .expect("client config");

            let server_task = spawn_echo_server(&server_ep);
            let (conn, _) = exchange(&client_ep, config.clone(), addr)
                .await
                .expect("first exchange");
            conn.close(0u32.into(), b"done");
            server_task.await.expect("server task");

            server_pins.remove(&public(&client_key));
            let server_task = spawn_refusing_server(&server_ep);
            let err = exchange(&client_ep, config.clone(), addr)
                .await
                .expect_err("removed client must be refused");
            assert_alert(&err, ACCESS_DENIED);
            assert_alert(&server_task.await.expect("server task"), ACCESS_DENIED);

            server_pins.insert(public(&client_key));
            let server_task = spawn_echo_server(&server_ep);
            let (conn, reply) = exchange(&client_ep, config, addr)
                .await
                .expect("exchange after re-pinning");
            assert_eq!(reply, b"pong:ping");
            conn.close(0u32.into(), b"done");
            server_task.await.expect("server task");
        })
        .await;
    }
}
