//! Peer certificate judgement for server-to-server streams (RFC 6120 §13.7.2, RFC 9525).
//!
//! The peer's XMPP domain is known only after `<stream:stream from=…>`, so TLS handshakes
//! accept any certificate (see [`crate::tls`]) and the certificate is judged here, against a
//! domain, afterwards. Identity comes from DNS-ID, SRV-ID (`_xmpp-server.<domain>`, also
//! `_xmpps-server`) and id-on-xmppAddr subject alternative names — never the subject CN.
//! A peer acting as TLS client may carry a serverAuth-only certificate (public CAs stopped
//! issuing clientAuth in 2026), so either purpose, or none, is accepted.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use std::fmt;
use x509_parser::der_parser::asn1_rs::{Any, FromDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

/// OID of id-on-xmppAddr (RFC 6120 §13.7.1.4).
const OID_XMPP_ADDR: &str = "1.3.6.1.5.5.7.8.5";
/// OID of id-on-dnsSRV (RFC 4985).
const OID_DNS_SRV: &str = "1.3.6.1.5.5.7.8.7";

/// The identities a certificate presents, lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentities {
    /// DNS-IDs (dNSName), possibly with a left-most wildcard label.
    pub dns: Vec<String>,
    /// SRV-IDs as `(service, domain)`, e.g. `("_xmpp-server", "example.com")`.
    pub srv: Vec<(String, String)>,
    /// id-on-xmppAddr values (bare domains for servers).
    pub xmpp_addr: Vec<String>,
}

impl CertIdentities {
    /// Reads the subject alternative names of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertProblem> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertProblem::Malformed(format!("cannot parse the certificate: {e}")))?;
        Self::from_cert(&cert)
    }

    fn from_cert(cert: &X509Certificate<'_>) -> Result<Self, CertProblem> {
        let mut ids = CertIdentities::default();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CertProblem::Malformed(format!("cannot parse subjectAltName: {e}")))?;
        let Some(san) = san else {
            return Ok(ids);
        };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => ids.dns.push(d.trim_end_matches('.').to_lowercase()),
                GeneralName::OtherName(oid, value) => {
                    let oid = oid.to_id_string();
                    let Some(text) = other_name_string(value) else {
                        continue;
                    };
                    if oid == OID_XMPP_ADDR {
                        ids.xmpp_addr.push(text.to_lowercase());
                    } else if oid == OID_DNS_SRV
                        && let Some((service, domain)) = text.split_once('.')
                    {
                        ids.srv.push((
                            service.to_lowercase(),
                            domain.trim_end_matches('.').to_lowercase(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(ids)
    }

    /// Whether these identities prove `domain` (already normalised) for server-to-server use.
    pub fn proves(&self, domain: &str) -> bool {
        self.matching(domain).is_some()
    }

    /// The identity that proves `domain`, for diagnostics; `None` when none does. DNS-IDs are
    /// tried first, then SRV-IDs, then id-on-xmppAddr.
    pub fn matching(&self, domain: &str) -> Option<IdentityMatch<'_>> {
        if let Some(pattern) = self.dns.iter().find(|p| dns_id_matches(p, domain)) {
            return Some(IdentityMatch::DnsId(pattern));
        }
        if let Some((service, d)) = self.srv.iter().find(|(service, d)| {
            (service == "_xmpp-server" || service == "_xmpps-server") && d == domain
        }) {
            return Some(IdentityMatch::SrvId { service, domain: d });
        }
        self.xmpp_addr
            .iter()
            .find(|a| *a == domain)
            .map(|a| IdentityMatch::XmppAddr(a))
    }

    /// Every identity, for diagnostics.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.dns.iter().map(|d| format!("DNS:{d}")).collect();
        parts.extend(self.srv.iter().map(|(s, d)| format!("SRV:{s}.{d}")));
        parts.extend(self.xmpp_addr.iter().map(|a| format!("xmppAddr:{a}")));
        if parts.is_empty() {
            "no subjectAltName identities".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Which subject alternative name proved a domain ([`CertIdentities::matching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMatch<'a> {
    /// A dNSName, possibly a wildcard (`*.example.com`).
    DnsId(&'a str),
    /// An id-on-dnsSRV name for `_xmpp-server` or `_xmpps-server`.
    SrvId { service: &'a str, domain: &'a str },
    /// An id-on-xmppAddr.
    XmppAddr(&'a str),
}

impl fmt::Display for IdentityMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityMatch::DnsId(p) if p.starts_with("*.") => write!(f, "DNS-ID {p} (wildcard)"),
            IdentityMatch::DnsId(p) => write!(f, "DNS-ID {p}"),
            IdentityMatch::SrvId { service, domain } => write!(f, "SRV-ID {service}.{domain}"),
            IdentityMatch::XmppAddr(a) => write!(f, "xmppAddr {a}"),
        }
    }
}

/// The extended key usages a certificate allows (its extendedKeyUsage extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPurposes {
    pub server_auth: bool,
    pub client_auth: bool,
    /// anyExtendedKeyUsage.
    pub any: bool,
}

/// What a certificate says about itself, for diagnostics (`xmppfed probe`): subject and
/// issuer, validity, purposes and identities. Judging it is [`TrustStore::judge`]'s job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Distinguished names as RFC 4514 text (empty when the certificate has none).
    pub subject: String,
    pub issuer: String,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// `None` when the certificate has no extendedKeyUsage extension (any purpose).
    pub purposes: Option<KeyPurposes>,
    pub identities: CertIdentities,
}

impl CertFacts {
    /// Reads the facts of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertProblem> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertProblem::Malformed(format!("cannot parse the certificate: {e}")))?;
        let purposes = cert
            .extended_key_usage()
            .map_err(|e| CertProblem::Malformed(format!("cannot parse extendedKeyUsage: {e}")))?
            .map(|eku| KeyPurposes {
                server_auth: eku.value.server_auth,
                client_auth: eku.value.client_auth,
                any: eku.value.any,
            });
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            purposes,
            identities: CertIdentities::from_cert(&cert)?,
        })
    }
}

/// The string inside an otherName value: `[0] EXPLICIT` around a UTF8String or IA5String.
fn other_name_string(value: &[u8]) -> Option<String> {
    let (_, explicit) = Any::from_der(value).ok()?;
    let (_, inner) = Any::from_der(explicit.data).ok()?;
    std::str::from_utf8(inner.data).ok().map(str::to_string)
}

/// RFC 9525 §6.3: a wildcard only as the whole left-most label, matching exactly one label.
fn dns_id_matches(pattern: &str, domain: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        match domain.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix && suffix.contains('.'),
            None => false,
        }
    } else {
        pattern == domain
    }
}

/// Why a certificate does not authenticate a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// The peer sent no certificate.
    Missing,
    /// The certificate cannot be parsed.
    Malformed(String),
    /// The chain does not lead to a trusted CA, has expired, or is otherwise invalid.
    Untrusted(String),
    /// The chain is valid but names other domains.
    WrongIdentity { domain: String, presented: String },
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::Missing => f.write_str("no certificate was presented"),
            CertProblem::Malformed(m) => f.write_str(m),
            CertProblem::Untrusted(m) => write!(f, "the certificate is not trusted: {m}"),
            CertProblem::WrongIdentity { domain, presented } => write!(
                f,
                "the certificate is not valid for {domain} (it presents {presented}; the subject CN is never used)"
            ),
        }
    }
}

/// The verdict on a peer's certificate for one domain.
pub type CertVerdict = Result<(), CertProblem>;

/// Trust anchors against which peer certificates are checked.
#[derive(Debug, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a CA certificate (DER).
    /// The anchors of a PEM bundle file. Certificates webpki cannot use as anchors (a system
    /// bundle may hold some) are skipped.
    pub fn from_pem_bundle(path: &std::path::Path) -> Result<Self, crate::tls::TlsSetupError> {
        Self::from_pem_bundles(std::slice::from_ref(&path))
    }

    /// The anchors of several PEM bundle files, as [`Self::from_pem_bundle`].
    pub fn from_pem_bundles(
        paths: &[impl AsRef<std::path::Path>],
    ) -> Result<Self, crate::tls::TlsSetupError> {
        let mut store = Self::new();
        for path in paths {
            for ca in crate::tls::load_certs(path.as_ref())? {
                let _ = store.add(&ca);
            }
        }
        Ok(store)
    }

    pub fn add(&mut self, der: &CertificateDer<'_>) -> Result<(), CertProblem> {
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|e| CertProblem::Malformed(format!("unusable CA certificate: {e}")))?;
        self.anchors.push(anchor.to_owned());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Judges a peer's chain (end entity first) for `domain` (normalised) at `now`.
    pub fn judge(&self, chain: &[CertificateDer<'_>], domain: &str, now: UnixTime) -> CertVerdict {
        let Some(end_entity) = chain.first() else {
            return Err(CertProblem::Missing);
        };
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| CertProblem::Malformed(format!("cannot parse the certificate: {e}")))?;
        let intermediates = &chain[1..];
        let verify = |usage| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .map(|_| ())
        };
        // Either purpose will do: the peer may be the TLS client or server of this stream.
        verify(webpki::KeyUsage::server_auth())
            .or_else(|_| verify(webpki::KeyUsage::client_auth()))
            .map_err(|e| CertProblem::Untrusted(describe_webpki_error(&e)))?;
        let ids = CertIdentities::from_der(end_entity)?;
        if ids.proves(domain) {
            Ok(())
        } else {
            Err(CertProblem::WrongIdentity {
                domain: domain.to_string(),
                presented: ids.describe(),
            })
        }
    }
}

fn describe_webpki_error(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => "it has expired".to_string(),
        webpki::Error::CertNotValidYet { .. } => "it is not valid yet".to_string(),
        webpki::Error::UnknownIssuer => "it was not issued by a trusted CA".to_string(),
        // An issuer with a trusted CA's name but another key (an impostor CA, or a CA that
        // was re-keyed): to the peer's operator this is the same problem.
        webpki::Error::InvalidSignatureForPublicKey => {
            "it was not issued by a trusted CA (its issuer has a trusted CA's name but not its key)"
                .to_string()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "its extended key usage allows neither serverAuth nor clientAuth".to_string()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;

/// The diagnostic helpers ([`CertFacts`], [`CertIdentities::matching`]) used by `xmppfed probe`.
#[cfg(test)]
mod facts_tests {
    use super::*;
    use crate::devca::{CertSpec, DevCa, Eku};

    #[test]
    fn matching_names_the_identity_that_proves_the_domain() {
        let ids = CertIdentities {
            dns: vec!["*.example.com".into(), "chat.example".into()],
            srv: vec![("_xmpp-server".into(), "srv.example".into())],
            xmpp_addr: vec!["addr.example".into()],
        };
        let shown = |d: &str| ids.matching(d).map(|m| m.to_string());
        assert_eq!(
            shown("chat.example").as_deref(),
            Some("DNS-ID chat.example")
        );
        assert_eq!(
            shown("a.example.com").as_deref(),
            Some("DNS-ID *.example.com (wildcard)")
        );
        assert_eq!(
            shown("srv.example").as_deref(),
            Some("SRV-ID _xmpp-server.srv.example")
        );
        assert_eq!(
            shown("addr.example").as_deref(),
            Some("xmppAddr addr.example")
        );
        assert_eq!(shown("other.example"), None);
        assert!(!ids.proves("example.com"));
    }

    #[test]
    fn facts_report_names_validity_and_purposes() {
        let ca = DevCa::new("facts CA").unwrap();
        let server_only = ca
            .issue(&CertSpec {
                eku: Eku::ServerOnly,
                common_name: Some("ignored.example".into()),
                ..CertSpec::for_domain("partner.example")
            })
            .unwrap();
        let f = CertFacts::from_der(&server_only.cert_der).unwrap();
        assert_eq!(f.issuer, "CN=facts CA");
        assert_eq!(f.subject, "CN=ignored.example");
        assert_eq!(
            f.purposes,
            Some(KeyPurposes {
                server_auth: true,
                client_auth: false,
                any: false
            })
        );
        assert_eq!(f.identities.dns, vec!["partner.example".to_string()]);
        let now = UnixTime::now().as_secs() as i64;
        assert!(f.not_before < now && f.not_after > now + 800 * 86_400);

        let none = ca
            .issue(&CertSpec {
                eku: Eku::None,
                expired: true,
                ..CertSpec::for_domain("partner.example")
            })
            .unwrap();
        let f = CertFacts::from_der(&none.cert_der).unwrap();
        assert_eq!(f.purposes, None);
        assert!(f.not_after < now);
        assert!(CertFacts::from_der(b"not a certificate").is_err());
    }
}
