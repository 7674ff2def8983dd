//! A development certificate authority: issues server certificates for XMPP domains.
//!
//! Used by the test suites (valid, expired, wrong-domain, serverAuth-only certificates against
//! real servers) and by standalone mode when the user asks for a dev CA. Never for production:
//! keys live in memory and in the files the caller writes.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, OtherNameValue, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Which extended key usages an issued certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eku {
    /// serverAuth and clientAuth, as certificates used to be issued.
    #[default]
    ServerAndClient,
    /// serverAuth only, as public CAs issue since 2026.
    ServerOnly,
    /// No EKU extension at all.
    None,
}

/// What to put in a certificate.
#[derive(Debug, Clone, Default)]
pub struct CertSpec {
    /// dNSName SANs.
    pub dns: Vec<String>,
    /// id-on-xmppAddr SANs.
    pub xmpp_addr: Vec<String>,
    /// Subject CN (never used for identity; tests prove it).
    pub common_name: Option<String>,
    pub eku: Eku,
    /// Valid only in 2020: expired today.
    pub expired: bool,
}

impl CertSpec {
    /// A certificate for one domain by DNS-ID.
    pub fn for_domain(domain: &str) -> Self {
        Self {
            dns: vec![domain.to_string()],
            ..Self::default()
        }
    }
}

/// A certificate and its private key, in DER and PEM.
#[derive(Debug)]
pub struct Issued {
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivatePkcs8KeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

/// From yesterday for `days`, as a real CA would. rcgen's default runs to the year 4096,
/// which real servers choke on (ejabberd's expiry timers overflow and its TLS setup fails).
fn realistic_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

/// The CA: its certificate and an issuer for leaf certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
}

#[derive(Debug, thiserror::Error)]
#[error("certificate generation failed: {0}")]
pub struct DevCaError(#[from] rcgen::Error);

impl DevCa {
    pub fn new(name: &str) -> Result<Self, DevCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        realistic_validity(&mut params, 3650);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn issue(&self, spec: &CertSpec) -> Result<Issued, DevCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(spec.dns.clone())?;
        for addr in &spec.xmpp_addr {
            params.subject_alt_names.push(SanType::OtherName((
                vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
                OtherNameValue::Utf8String(addr.clone()),
            )));
        }
        let mut dn = DistinguishedName::new();
        if let Some(cn) = &spec.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        params.extended_key_usages = match spec.eku {
            Eku::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Eku::ServerOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::None => Vec::new(),
        };
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        } else {
            realistic_validity(&mut params, 825);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
