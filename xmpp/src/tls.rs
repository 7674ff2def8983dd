//! rustls configurations for server-to-server streams and for the internal link.
//!
//! S2S handshakes verify signatures (the peer proves it holds the key of the certificate it
//! sent) but defer the *trust* decision: the peer's domain is known only from the stream
//! header, and whether an untrusted certificate is fatal depends on that partner's policy
//! (dialback may still be allowed). [`crate::identity::TrustStore::judge`] decides afterwards.
//! The internal link, in contrast, is ordinary mutual TLS against a private CA.
//!
//! One crypto provider across the workspace: ring.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol id for direct-TLS server-to-server streams (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// The one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no certificate for any served domain")]
    NoCertificates,
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_err = |message: String| TlsSetupError::File {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1). The key material is never logged.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsSetupError::File {
        path: path.display().to_string(),
        message: format!("cannot read a PEM private key: {e}"),
    })
}

/// A certificate with its key, for one or more local domains.
#[derive(Clone, Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<CertifiedKey>,
}

impl Identity {
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsSetupError> {
        let certified = CertifiedKey::from_der(chain.clone(), key, &provider())?;
        Ok(Self {
            chain,
            key: Arc::new(certified),
        })
    }

    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsSetupError> {
        Self::new(load_certs(cert)?, load_key(key)?)
    }
}

/// The certificates of the served domains, looked up by domain (exact, then `*.parent`).
#[derive(Clone, Debug, Default)]
pub struct CertStore {
    by_domain: BTreeMap<String, Identity>,
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `identity` for `domain` (normalised; `*.example.com` for a wildcard).
    pub fn insert(&mut self, domain: &str, identity: Identity) {
        self.by_domain.insert(domain.to_string(), identity);
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    pub fn get(&self, domain: &str) -> Option<&Identity> {
        self.by_domain.get(domain).or_else(|| {
            let (_, parent) = domain.split_once('.')?;
            self.by_domain.get(&format!("*.{parent}"))
        })
    }

    fn first(&self) -> Option<&Identity> {
        self.by_domain.values().next()
    }
}

/// Chooses the certificate by SNI; without SNI (common on STARTTLS), the one for the stream's
/// `to` domain.
#[derive(Debug)]
struct SniResolver {
    store: CertStore,
    fallback: Option<Identity>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.store.get(&name.to_ascii_lowercase()))
            .or(self.fallback.as_ref())
            .map(|id| id.key.clone())
    }
}

/// Requests a client certificate, never requires one, checks the handshake signature, and
/// leaves trust to [`crate::identity::TrustStore::judge`] once the peer's domain is known.
#[derive(Debug)]
struct DeferredClientAuth {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The outbound counterpart of [`DeferredClientAuth`]: the receiving server's certificate is
/// judged against the target domain right after the handshake, before anything is sent that
/// needs protection, so a failure can name its cause and policy can allow dialback instead.
#[derive(Debug)]
struct DeferredServerAuth {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DeferredServerAuth {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a stream reaches TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// In-band `<starttls/>` on the plaintext port (5269).
    StartTls,
    /// TLS from the first byte with ALPN `xmpp-server` (XEP-0368, port 5270).
    Direct,
}

/// Server configuration for inbound S2S: certificate by SNI, else `default_domain`'s.
pub fn s2s_server_config(
    store: &CertStore,
    default_domain: Option<&str>,
    mode: TlsMode,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = provider();
    let fallback = default_domain
        .and_then(|d| store.get(d))
        .or_else(|| store.first())
        .cloned();
    if fallback.is_none() {
        return Err(TlsSetupError::NoCertificates);
    }
    let verifier = DeferredClientAuth {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SniResolver {
            store: store.clone(),
            fallback,
        }));
    if mode == TlsMode::Direct {
        config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    }
    Ok(Arc::new(config))
}

/// Client configuration for outbound S2S from a local domain: presents that domain's
/// certificate (for SASL EXTERNAL) and defers judging the peer's.
pub fn s2s_client_config(
    identity: Option<&Identity>,
    mode: TlsMode,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let verifier = DeferredServerAuth {
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(id.key.clone()))),
        None => builder.with_no_client_auth(),
    };
    if mode == TlsMode::Direct {
        config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    }
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone())?;
    }
    Ok(Arc::new(roots))
}

/// Server side of the internal link: mutual TLS, clients must chain to the link CA.
pub fn link_server_config(
    identity: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = provider();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SniResolver {
            store: CertStore::new(),
            fallback: Some(identity.clone()),
        }));
    Ok(Arc::new(config))
}

/// Client side of the internal link: the proxy must chain to the link CA and carry the name
/// the gateway dials.
pub fn link_client_config(
    identity: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_cert_resolver(Arc::new(FixedClientCert(identity.key.clone())));
    Ok(Arc::new(config))
}
