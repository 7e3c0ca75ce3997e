//! Pinned mutual TLS 1.3 over QUIC.
//!
//! A node presents a self-signed X.509 certificate for one Ed25519 key: its
//! node key when its agency's key log certifies one, else its agency key
//! (the agency id). A node key's certificate carries, in an extension, the
//! statements of the agency's log that end with the key's certification.
//! A peer (in either direction) is accepted only when its certificate key
//! speaks for an agency in the node's [`PinSet`], as
//! [`custodia_protocol::transport::speaks_for`] judges it from the pins,
//! the key logs the node holds and the carried statements (SPEC.md §9.1).
//! There are no certificate authorities, no chains, no validity periods
//! and no host names: the pinned agency *is* the identity, and the TLS 1.3
//! `CertificateVerify` signature proves possession of the matching private
//! key. That signature is checked before any carried statement is, so
//! only the holder of a key can make the node check statements.
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

use std::collections::{BTreeMap, HashSet};
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

use custodia_protocol::keylog::KeyLog;
use custodia_protocol::transport::{self, Refusal};
use custodia_protocol::{AgencyId, KeyId};

use crate::daemon::now_ms;

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

/// The agencies (their 32-byte ids) this node accepts as peers, and the
/// key logs it holds, which say which node keys speak for them.
///
/// Cloning is cheap and clones share the same state: pins inserted or
/// removed, and logs replaced, at run time take effect for every later
/// handshake of every configuration built from this set. Connections that
/// are already established are not affected; closing them is the
/// caller's business.
#[derive(Clone, Default)]
pub struct PinSet(Arc<RwLock<Pins>>);

#[derive(Default)]
struct Pins {
    agencies: HashSet<[u8; 32]>,
    logs: BTreeMap<AgencyId, KeyLog>,
}

impl PinSet {
    /// A pin set holding the agency ids `keys`, and no key logs.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self(Arc::new(RwLock::new(Pins {
            agencies: keys.into_iter().collect(),
            logs: BTreeMap::new(),
        })))
    }

    // A poisoned lock still guards consistent maps (no operation on them
    // can leave them half-modified), so the guard is recovered.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Pins> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Pins> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accept agency `k` as a peer from now on.
    pub fn insert(&self, k: [u8; 32]) {
        self.write().agencies.insert(k);
    }

    /// Refuse agency `k` as a peer from now on.
    pub fn remove(&self, k: &[u8; 32]) {
        self.write().agencies.remove(k);
    }

    /// Whether agency `k` is currently accepted as a peer.
    pub fn contains(&self, k: &[u8; 32]) -> bool {
        self.read().agencies.contains(k)
    }

    /// The key logs held from now on (all of them; only pinned agencies'
    /// are consulted).
    pub fn set_key_logs(&self, logs: BTreeMap<AgencyId, KeyLog>) {
        self.write().logs = logs;
    }

    /// The agency certificate key `key` speaks for, given the statements
    /// its certificate carries, at `now_ms` (SPEC.md §9.1).
    pub fn speaks_for(
        &self,
        key: &KeyId,
        carried: &[Vec<u8>],
        now_ms: u64,
    ) -> Result<AgencyId, Refusal> {
        let pins = self.read();
        transport::speaks_for(
            key,
            carried,
            &|a: &AgencyId| pins.agencies.contains(&a.0),
            &pins.logs,
            now_ms,
        )
    }
}

impl fmt::Debug for PinSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pins = self.read();
        f.debug_struct("PinSet")
            .field("len", &pins.agencies.len())
            .field("logs", &pins.logs.len())
            .finish()
    }
}

/// The key a node authenticates with, and the key statements its
/// certificate carries (none for the agency key).
#[derive(Clone)]
pub struct Presented {
    /// The node key, or the agency key.
    pub key: ed25519_dalek::SigningKey,
    /// For a node key: the statements of the agency's log ending with its
    /// certification ([`transport::carried_for`]).
    pub carried: Vec<Vec<u8>>,
}

impl Presented {
    /// The agency key, carrying nothing.
    pub fn agency(key: &ed25519_dalek::SigningKey) -> Self {
        Presented {
            key: key.clone(),
            carried: Vec::new(),
        }
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("key", &hex::encode(self.key.verifying_key().as_bytes()))
            .field("carried", &self.carried.len())
            .finish()
    }
}

/// Self-signed X.509 certificate for an Ed25519 key carrying no key
/// statements (see [`certificate_carrying`]).
#[cfg(test)]
pub(crate) fn certificate(
    key: &ed25519_dalek::SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    certificate_carrying(key, &[])
}

/// Self-signed X.509 certificate for an Ed25519 key, together with the key
/// in the PKCS#8 form rustls expects. When `carried` is not empty, the
/// certificate has a non-critical extension ([`transport::CARRIED_OID`])
/// whose value is a DER OCTET STRING holding the statements' CBOR array.
///
/// The certificate's subject alternative name is [`SERVER_NAME`]; its
/// validity period is irrelevant (peers are identified by key only).
pub(crate) fn certificate_carrying(
    key: &ed25519_dalek::SigningKey,
    carried: &[Vec<u8>],
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
    if !carried.is_empty() {
        let cbor = transport::encode_carried(carried);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                transport::CARRIED_OID,
                der_octet_string(&cbor),
            ));
    }
    let cert = params
        .self_signed(&key_pair)
        .map_err(TlsError::Certificate)?;

    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// QUIC server configuration: presents the certificate of `me` and
/// requires a client certificate whose key speaks for an agency in `pins`.
pub(crate) fn server_config(me: &Presented, pins: PinSet) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, private_key) = certificate_carrying(&me.key, &me.carried)?;
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

/// QUIC client configuration: presents the certificate of agency key
/// `key` and accepts only a server whose key speaks for an agency in
/// `pins` (see [`client_config_presenting`]).
///
/// Use it with [`quinn::Endpoint::connect_with`] and [`SERVER_NAME`].
pub fn client_config(
    key: &ed25519_dalek::SigningKey,
    pins: PinSet,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config_presenting(&Presented::agency(key), pins)
}

/// QUIC client configuration: presents the certificate of `me` (a node
/// key with its carried statements, or the agency key) and accepts only a
/// server whose key speaks for an agency in `pins`.
pub fn client_config_presenting(
    me: &Presented,
    pins: PinSet,
) -> Result<quinn::ClientConfig, TlsError> {
    let (cert, private_key) = certificate_carrying(&me.key, &me.carried)?;
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
#[cfg(test)]
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certs.as_slice() {
        [end_entity] => ed25519_key(end_entity),
        _ => None,
    }
}

/// The peer of `conn`: the agency its certificate key speaks for now, by
/// the pins and the held key logs, with the key and the statements its
/// certificate carries. `None` if it speaks for none (any more).
pub(crate) fn peer_agency(conn: &quinn::Connection, pins: &PinSet) -> Option<PeerIdentity> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let [end_entity] = certs.as_slice() else {
        return None;
    };
    let key = KeyId(ed25519_key(end_entity)?);
    let carried = carried_statements(end_entity).ok()?;
    let agency = pins.speaks_for(&key, &carried, now_ms()).ok()?;
    Some(PeerIdentity {
        agency,
        key,
        carried,
    })
}

/// Who a connection's peer is (see [`peer_agency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The agency.
    pub agency: AgencyId,
    /// The certificate's key: the agency id or a node key.
    pub key: KeyId,
    /// The key statements the certificate carries.
    pub carried: Vec<Vec<u8>>,
}

/// A DER OCTET STRING holding `bytes` (the extension's value).
fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let n = bytes.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = (n as u64).to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

/// One DER element at the start of `b`: its tag, its contents and what
/// follows it. `None` unless well formed (definite length, at most 4
/// length bytes, within `b`).
fn der_element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The DER of the carried-statements OID's contents (2.25.N).
const CARRIED_OID_DER: [u8; 10] = [0x69, 0xd0, 0xaf, 0xbf, 0xf5, 0xb8, 0xe3, 0xf3, 0xe3, 0x59];

/// The key statements a certificate carries: none when it has no such
/// extension; an error when the certificate's structure up to the
/// extension, or the extension itself, is malformed. A refused peer is
/// refused the same way whatever the reason, so the error is only logged.
pub(crate) fn carried_statements(cert: &CertificateDer<'_>) -> Result<Vec<Vec<u8>>, Refusal> {
    let bad = |what: &str| Refusal::Malformed(what.to_owned());
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { ... }, ... }
    let (0x30, certificate, _) = der_element(cert.as_ref()).ok_or_else(|| bad("certificate"))?
    else {
        return Err(bad("certificate"));
    };
    let (0x30, mut tbs, _) = der_element(certificate).ok_or_else(|| bad("tbsCertificate"))? else {
        return Err(bad("tbsCertificate"));
    };
    // The extensions are the [3] EXPLICIT element, the last of the TBS.
    while !tbs.is_empty() {
        let (tag, contents, rest) = der_element(tbs).ok_or_else(|| bad("tbsCertificate"))?;
        tbs = rest;
        if tag != 0xa3 {
            continue;
        }
        let (0x30, mut extensions, _) = der_element(contents).ok_or_else(|| bad("extensions"))?
        else {
            return Err(bad("extensions"));
        };
        while !extensions.is_empty() {
            let (0x30, extension, rest) =
                der_element(extensions).ok_or_else(|| bad("extension"))?
            else {
                return Err(bad("extension"));
            };
            extensions = rest;
            let (0x06, oid, fields) = der_element(extension).ok_or_else(|| bad("extension"))?
            else {
                return Err(bad("extension"));
            };
            if oid != CARRIED_OID_DER {
                continue;
            }
            // An optional `critical` BOOLEAN, then the OCTET STRING value,
            // which holds an OCTET STRING of the CBOR.
            let (mut tag, mut value, rest) = der_element(fields).ok_or_else(|| bad("extension"))?;
            if tag == 0x01 {
                (tag, value, _) = der_element(rest).ok_or_else(|| bad("extension"))?;
            }
            let inner = der_element(value).ok_or_else(|| bad("extension value"))?;
            let (0x04, (0x04, cbor, [])) = (tag, inner) else {
                return Err(bad("extension value"));
            };
            return transport::decode_carried(cbor);
        }
        return Ok(Vec::new());
    }
    Ok(Vec::new())
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

    /// Accept the certificate chain only if it is a lone certificate for an
    /// Ed25519 key; whether that key speaks for a pinned agency is judged
    /// after its handshake signature ([`Self::check_signature`]). Every
    /// refusal looks the same to the peer.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            tracing::trace!("refusing peer: certificate chain has intermediates");
            return Err(refused());
        }
        if ed25519_key(end_entity).is_none() {
            tracing::trace!("refusing peer: certificate holds no Ed25519 key");
            return Err(refused());
        }
        Ok(())
    }

    /// Check a TLS 1.3 `CertificateVerify` signature (only Ed25519 is
    /// allowed), then whether the certificate's key speaks for a pinned
    /// agency: the carried statements are checked only once the peer has
    /// proven it holds the key, so a stranger replaying an agency's
    /// statements costs the node one signature check, not thirty-two.
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
        let valid = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
            .map_err(|_| {
                tracing::trace!("refusing peer: bad handshake signature");
                refused()
            })?;
        let key = KeyId(ed25519_key(cert).ok_or_else(refused)?);
        let judged = carried_statements(cert)
            .and_then(|carried| self.pins.speaks_for(&key, &carried, now_ms()));
        if let Err(why) = judged {
            // trace, like every refusal here: a peer retrying a refused
            // handshake must not fill the log (the daemon logs refused
            // handshakes rate-limited).
            tracing::trace!(peer = %key, reason = %why, "refusing peer");
            return Err(refused());
        }
        Ok(valid)
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
        server_presenting(&Presented::agency(key), pins)
    }

    fn server_presenting(me: &Presented, pins: PinSet) -> (Endpoint, SocketAddr) {
        let config = server_config(me, pins).expect("server config");
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
        assert_eq!(format!("{pins:?}"), "PinSet { len: 1, logs: 0 }");
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

        // An unknown key passes this stage: whose key it is is judged after
        // its handshake signature (the handshake tests refuse it).
        assert!(ClientCertVerifier::verify_client_cert(&verifier, &unknown, &[], now).is_ok());
        let bad: [(&CertificateDer<'_>, &[CertificateDer<'_>]); 3] = [
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

    // Node keys (SPEC.md §9.1): a node key speaks for its agency through
    // the key statements its certificate carries, checked against the
    // key log the partner holds.

    use custodia_protocol::keylog::{
        key_of, Certify, KeyRole, KeyStatement, PublicKey, Revoke, RevokeReason, Root, Statement,
        StatementPayload,
    };
    use custodia_protocol::{Identity, KeyDigest};

    fn identity() -> Identity {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("OS randomness");
        Identity::from_seed(seed)
    }

    /// An agency's log: inception, then its node key certified.
    fn log_certifying(root: &Identity, node: &Identity) -> KeyLog {
        let now = now_ms();
        let inception = StatementPayload::inception(root, &identity(), now);
        let mut log = KeyLog::from_inception(KeyStatement::sign(root, &inception)).expect("log");
        let certify = Statement::Certify(Certify {
            key: PublicKey::ed25519(key_of(node)),
            role: KeyRole::Node,
            officer: None,
            not_before: now,
            not_after: None,
        });
        let s = KeyStatement::sign(root, &StatementPayload::after(&log, now, certify));
        log.append(s).expect("certify");
        log
    }

    fn node_presenting(node: &Identity, log: &KeyLog) -> Presented {
        Presented {
            key: node.signing_key().clone(),
            carried: transport::carried_for(log, &key_of(node)).expect("certified"),
        }
    }

    fn pins_holding(agency: AgencyId, logs: &[&KeyLog]) -> PinSet {
        let pins = PinSet::new([agency.0]);
        pins.set_key_logs(logs.iter().map(|l| (l.agency(), (*l).clone())).collect());
        pins
    }

    #[tokio::test]
    async fn node_keys_speak_for_their_agencies_at_partners_that_lack_their_logs() {
        bounded(async {
            let (s_root, s_node) = (identity(), identity());
            let (c_root, c_node) = (identity(), identity());
            let (s_log, c_log) = (
                log_certifying(&s_root, &s_node),
                log_certifying(&c_root, &c_node),
            );
            // Each side pins the other's agency and holds no key log.
            let server_pins = PinSet::new([c_root.agency().0]);
            let (server_ep, addr) =
                server_presenting(&node_presenting(&s_node, &s_log), server_pins.clone());
            let server_task = spawn_echo_server(&server_ep);
            let client_pins = PinSet::new([s_root.agency().0]);
            let config =
                client_config_presenting(&node_presenting(&c_node, &c_log), client_pins.clone())
                    .expect("client config");
            let (conn, reply) = exchange(&client(), config, addr)
                .await
                .expect("node keys exchange");
            assert_eq!(reply, b"pong:ping");
            let seen = peer_agency(&conn, &client_pins).expect("the server speaks for S");
            assert_eq!(seen.agency, s_root.agency());
            assert_eq!(seen.key, key_of(&s_node));
            assert_eq!(seen.carried.len(), 2);
            conn.close(0u32.into(), b"done");
            let (seen_by_server, _) = server_task.await.expect("server task");
            assert_eq!(seen_by_server, Some(key_of(&c_node).0));
        })
        .await;
    }

    #[tokio::test]
    async fn a_node_key_the_partner_holds_revoked_is_refused() {
        bounded(async {
            let server_key = new_key();
            let (c_root, c_node) = (identity(), identity());
            let mut c_log = log_certifying(&c_root, &c_node);
            // The thief kept a certificate from before the revocation.
            let thief = node_presenting(&c_node, &c_log);
            let revoke = Statement::Revoke(Revoke {
                key: key_of(&c_node),
                effective: now_ms(),
                reason: RevokeReason::Compromised,
            });
            let s = KeyStatement::sign(&c_root, &StatementPayload::after(&c_log, now_ms(), revoke));
            c_log.append(s).expect("revoke");
            let (server_ep, addr) = server(&server_key, pins_holding(c_root.agency(), &[&c_log]));
            let server_task = spawn_refusing_server(&server_ep);
            let config = client_config_presenting(&thief, PinSet::new([public(&server_key)]))
                .expect("client config");
            let err = exchange(&client(), config, addr)
                .await
                .expect_err("a revoked node key must be refused");
            assert_alert(&err, ACCESS_DENIED);
            assert_alert(&server_task.await.expect("server task"), ACCESS_DENIED);
        })
        .await;
    }

    #[tokio::test]
    async fn the_agency_key_is_refused_once_the_partner_holds_the_root_rotation() {
        bounded(async {
            let server_key = new_key();
            let (c_root, next) = (identity(), identity());
            let inception = StatementPayload::inception(&c_root, &next, now_ms());
            let mut c_log =
                KeyLog::from_inception(KeyStatement::sign(&c_root, &inception)).expect("log");
            // Before the rotation, the agency key is accepted.
            let pins = pins_holding(c_root.agency(), &[&c_log]);
            let (server_ep, addr) = server(&server_key, pins.clone());
            let server_task = spawn_echo_server(&server_ep);
            let thief = client_config(c_root.signing_key(), PinSet::new([public(&server_key)]))
                .expect("client config");
            let (conn, _) = exchange(&client(), thief.clone(), addr)
                .await
                .expect("the root in force is accepted");
            conn.close(0u32.into(), b"done");
            server_task.await.expect("server task");
            // The agency rotates to its pre-committed key.
            let rotate = Statement::RotateRoot(Root {
                root: PublicKey::ed25519(key_of(&next)),
                next: KeyDigest::of(&key_of(&identity())),
            });
            let s = KeyStatement::sign(&next, &StatementPayload::after(&c_log, now_ms(), rotate));
            c_log.append(s).expect("rotation");
            pins.set_key_logs([(c_root.agency(), c_log)].into_iter().collect());
            let server_task = spawn_refusing_server(&server_ep);
            let err = exchange(&client(), thief, addr)
                .await
                .expect_err("a former root must be refused");
            assert_alert(&err, ACCESS_DENIED);
            assert_alert(&server_task.await.expect("server task"), ACCESS_DENIED);
        })
        .await;
    }

    #[test]
    fn carried_statements_round_trip_and_broken_certificates_never_panic() {
        let (root, node) = (identity(), identity());
        let log = log_certifying(&root, &node);
        let me = node_presenting(&node, &log);
        let (cert, _) = certificate_carrying(&me.key, &me.carried).expect("certificate");
        assert_eq!(carried_statements(&cert), Ok(me.carried.clone()));
        assert_eq!(ed25519_key(&cert), Some(key_of(&node).0));
        let (plain, _) = certificate(&me.key).expect("certificate");
        assert_eq!(carried_statements(&plain), Ok(Vec::new()));
        // Every truncation and every single-byte change of the certificate
        // is judged without a panic; a cut one is refused.
        let der = cert.as_ref().to_vec();
        for n in 0..der.len() {
            let cut = CertificateDer::from(der[..n].to_vec());
            assert!(carried_statements(&cut).is_err(), "cut at {n}");
            let mut changed = der.clone();
            changed[n] ^= 0x80;
            let _ = carried_statements(&CertificateDer::from(changed));
        }
        // An extension whose value is not the CBOR array is malformed.
        let at = der
            .windows(CARRIED_OID_DER.len())
            .position(|w| w == CARRIED_OID_DER)
            .expect("the extension's OID");
        let mut bad = der.clone();
        let cbor_at = at + CARRIED_OID_DER.len() + 8;
        bad[cbor_at] = 0xff;
        assert!(matches!(
            carried_statements(&CertificateDer::from(bad)),
            Err(Refusal::Malformed(_))
        ));
    }
}
