//! Without cert-manager, the internal link still needs a private CA and two certificates. The
//! operator generates them once into one Secret `F-link` (keys `ca.crt`, `proxy.crt`,
//! `proxy.key`, `gateway.crt`, `gateway.key`), created — never re-applied — like the dialback
//! secret; each pod mounts only its own items. One Secret means one atomic creation: there is no
//! half-made PKI to repair. Rotation: delete the Secret; the next reconcile makes a new one and
//! the pods pick it up when they restart.

use super::{Inputs, Object};
use crate::labels::Component;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;

/// The generated link PKI, PEM-encoded.
pub struct LinkPki {
    pub ca_crt: String,
    pub proxy_crt: String,
    pub proxy_key: String,
    pub gateway_crt: String,
    pub gateway_key: String,
}

impl std::fmt::Debug for LinkPki {
    // Never print keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkPki { .. }")
    }
}

/// From yesterday for `years` (rcgen's default runs to 4096, which some TLS stacks refuse).
fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * years);
}

/// A CA (ECDSA P-256, 10 years) and the proxy's (server) and gateway's (client and server: it
/// also serves the internal servers) certificates for their Service names.
pub fn generate_link_pki(inputs: &Inputs) -> Result<LinkPki, rcgen::Error> {
    let names = inputs.names();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!(
            "xmppfed link CA of {}/{}",
            names.namespace, names.federation
        ),
    );
    ca.distinguished_name = dn;
    validity(&mut ca, 10);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_crt = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |host: String,
                ekus: Vec<ExtendedKeyUsagePurpose>|
     -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![host])?;
        params.extended_key_usages = ekus;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 10);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (proxy_crt, proxy_key) = leaf(
        names.service_host(&names.proxy()),
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    )?;
    let (gateway_crt, gateway_key) = leaf(
        names.service_host(&names.gateway()),
        vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    )?;
    Ok(LinkPki {
        ca_crt,
        proxy_crt,
        proxy_key,
        gateway_crt,
        gateway_key,
    })
}

/// The Secret holding `pki`; None when cert-manager issues the link certificates.
pub fn link_secret(inputs: &Inputs, pki: &LinkPki) -> Option<Object> {
    if inputs.observed.cert_manager {
        return None;
    }
    let names = inputs.names();
    let secret = Secret {
        metadata: inputs.meta(names.link_generated(), Component::Certificates),
        string_data: Some(BTreeMap::from([
            ("ca.crt".into(), pki.ca_crt.clone()),
            ("proxy.crt".into(), pki.proxy_crt.clone()),
            ("proxy.key".into(), pki.proxy_key.clone()),
            ("gateway.crt".into(), pki.gateway_crt.clone()),
            ("gateway.key".into(), pki.gateway_key.clone()),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    Some(Object::from_typed(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Observed, Settings};
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    fn federation() -> xmppfed_api::v1alpha1::XmppFederation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "xmppfed.io/v1alpha1", "kind": "XmppFederation",
            "metadata": {"name": "f", "namespace": "ns", "uid": "u"},
            "spec": {"domains": ["example.com"], "gateway": {"internalServers": [{"host": "chat.example.com"}]},
                     "tls": {"secretName": "edge"}},
        }))
        .expect("federation")
    }

    #[test]
    fn the_generated_link_certificates_chain_to_the_ca_and_name_the_services() {
        let fed = federation();
        let compiled = xmppfed_api::compile::compile(&fed, &[], &[]).expect("compiles");
        let (settings, observed) = (Settings::default(), Observed::default());
        let inputs = Inputs {
            federation: &fed,
            policy: &compiled.document,
            settings: &settings,
            observed: &observed,
        };
        let pki = generate_link_pki(&inputs).expect("generated");
        let (_, ca_pem) = parse_x509_pem(pki.ca_crt.as_bytes()).expect("CA PEM");
        let ca = ca_pem.parse_x509().expect("CA");
        assert!(ca.is_ca());
        for (pem, host, client) in [
            (&pki.proxy_crt, "f-proxy.ns.svc", false),
            (&pki.gateway_crt, "f-gateway.ns.svc", true),
        ] {
            let (_, p) = parse_x509_pem(pem.as_bytes()).expect("PEM");
            let cert = p.parse_x509().expect("cert");
            assert_eq!(cert.issuer(), ca.subject());
            // A real TLS verifier (rustls/webpki) accepts it for its Service name.
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(ca_pem.contents.clone().into())
                .expect("CA anchor");
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .expect("verifier");
            let name = rustls::pki_types::ServerName::try_from(host).expect("name");
            rustls::client::danger::ServerCertVerifier::verify_server_cert(
                verifier.as_ref(),
                &p.contents.clone().into(),
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("chains to the link CA for its Service name");
            let sans = cert.subject_alternative_name().expect("ext").expect("SAN");
            assert_eq!(sans.value.general_names, vec![GeneralName::DNSName(host)]);
            let eku = cert.extended_key_usage().expect("ext").expect("EKU");
            assert!(eku.value.server_auth);
            assert_eq!(eku.value.client_auth, client);
        }
        assert!(pki.proxy_key.contains("PRIVATE KEY"));
        assert_eq!(format!("{pki:?}"), "LinkPki { .. }", "keys never in logs");

        let secret = link_secret(&inputs, &pki).expect("without cert-manager");
        assert_eq!(secret.name, "f-link");
        let keys: Vec<&str> = secret.value["stringData"]
            .as_object()
            .expect("data")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "ca.crt",
                "gateway.crt",
                "gateway.key",
                "proxy.crt",
                "proxy.key"
            ]
        );
        let with_cert_manager = Observed {
            cert_manager: true,
            ..Observed::default()
        };
        let inputs = Inputs {
            observed: &with_cert_manager,
            ..inputs
        };
        assert!(link_secret(&inputs, &pki).is_none());
    }
}
