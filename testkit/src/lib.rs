//! Test fixtures shared by the proxy's and the gateway's tests: a test CA, policy documents
//! compiled from the same CR YAML users apply, and (in [`servers`]) real XMPP servers and DNS
//! responders from Debian, each started in its own directory and stopped when dropped.
//!
//! Not part of the product: a dev-dependency only.

use std::path::{Path, PathBuf};
use xmppfed_api::admission::Admission;
use xmppfed_api::validate::{Source, validate_sources};
use xmppfed_xmpp::devca::{CertSpec, DevCa};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::tls::Identity;

pub mod c2s;
pub mod operator_args;
pub mod servers;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// One partner entry of a test federation.
pub struct PartnerSpec<'a> {
    pub domain: &'a str,
    pub tls: &'a str,
    pub sasl: &'a str,
    pub dialback: bool,
    /// Static route `host:port` (proxyFqdn).
    pub route: Option<String>,
    pub connection_limit: Option<u32>,
    /// `Federated`, `PublicVerified` or `PublicUnverified`; `None` keeps the default.
    pub partner_type: Option<&'a str>,
}

impl<'a> PartnerSpec<'a> {
    pub fn new(domain: &'a str) -> Self {
        Self {
            domain,
            tls: "Required",
            sasl: "Required",
            dialback: true,
            route: None,
            connection_limit: None,
            partner_type: None,
        }
    }
}

/// The federation `limits` tests use unless they test limits.
pub const DEFAULT_LIMITS: &str = "maxStanzaBytes: 262144, streamEstablishmentTimeout: 10s";

/// CR YAML for a federation `test` in namespace `t` serving `domain`, with its partners.
/// `gateway` is the YAML flow map of `spec.gateway`; `limits` the entries of `spec.limits`.
pub fn federation_yaml(
    domain: &str,
    partners: &[PartnerSpec],
    limits: &str,
    gateway: &str,
) -> String {
    let mut yaml = format!(
        "apiVersion: xmppfed.io/v1alpha1\nkind: XmppFederation\nmetadata: {{name: test, namespace: t}}\nspec:\n  domains: [{domain}]\n  edge: {{hostname: xmpp.{domain}}}\n  gateway: {gateway}\n  limits: {{{limits}}}\n  tls: {{secretName: edge-tls}}\n"
    );
    for (i, p) in partners.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {{name: p{i}, namespace: t}}\nspec:\n  domain: {}\n  tlsNegotiation: {}\n  saslNegotiation: {}\n  supportDialbackNegotiation: {}\n",
            p.domain, p.tls, p.sasl, p.dialback
        ));
        if let Some(route) = &p.route {
            yaml.push_str(&format!("  proxyFqdn: \"{route}\"\n"));
        }
        if let Some(limit) = p.connection_limit {
            yaml.push_str(&format!("  connectionLimit: {limit}\n"));
        }
        if let Some(t) = p.partner_type {
            yaml.push_str(&format!("  partnerType: {t}\n"));
        }
    }
    yaml
}

/// Compiles CR YAML for a federation serving `domain` with `partners` into a policy file.
pub fn write_policy(path: &Path, domain: &str, partners: &[PartnerSpec], max_stanza: u32) {
    write_policy_with(
        path,
        domain,
        partners,
        &format!("maxStanzaBytes: {max_stanza}, streamEstablishmentTimeout: 10s"),
    );
}

/// As [`write_policy`], with the federation's `limits` map given as YAML flow entries.
pub fn write_policy_with(path: &Path, domain: &str, partners: &[PartnerSpec], limits: &str) {
    let yaml = federation_yaml(
        domain,
        partners,
        limits,
        &format!("{{internalServers: [{{host: internal.{domain}}}]}}"),
    );
    write_policy_yaml(path, &yaml);
}

/// Validates and compiles CR YAML (one federation, its partners and access policies) the way
/// `xmppfed validate` does, and writes the policy document to `path` atomically.
pub fn write_policy_yaml(path: &Path, yaml: &str) {
    let report = validate_sources(
        &[Source {
            path: "test.yaml".into(),
            text: yaml.to_string(),
        }],
        &Admission::new(),
    );
    assert!(!report.has_errors(), "{yaml}\n{:#?}", report.problems);
    let fed = &report.objects.federations[0];
    let compiled =
        xmppfed_api::compile::compile(fed, &report.objects.partners, &report.objects.policies)
            .expect("compiles");
    let json = serde_json::to_vec(&compiled.document).expect("serialises");
    // Write then rename, as the kubelet swaps ConfigMap files: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).expect("write policy");
    std::fs::rename(&tmp, path).expect("rename policy");
}

/// The PKI of a test: one CA for S2S certificates and the link.
pub struct Pki {
    pub ca: DevCa,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Self {
        Self {
            ca: DevCa::new("xmppfed test CA").expect("CA"),
        }
    }

    pub fn trust(&self) -> TrustStore {
        let mut t = TrustStore::new();
        t.add(&self.ca.cert_der).expect("CA anchor");
        t
    }

    pub fn identity(&self, spec: &CertSpec) -> Identity {
        let issued = self.ca.issue(spec).expect("issue");
        Identity::new(vec![issued.cert_der.clone()], issued.key()).expect("identity")
    }

    /// Writes `<name>.crt`/`<name>.key` PEM files (for real servers).
    pub fn write(&self, dir: &Path, name: &str, spec: &CertSpec) -> (PathBuf, PathBuf) {
        let issued = self.ca.issue(spec).expect("issue");
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, &issued.cert_pem).expect("write cert");
        std::fs::write(&key, &issued.key_pem).expect("write key");
        (crt, key)
    }

    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.crt");
        std::fs::write(&p, &self.ca.cert_pem).expect("write CA");
        p
    }
}

pub fn message(from: &str, to: &str, body: &str) -> Element {
    Element::new(xmppfed_xmpp::ns::SERVER, "message")
        .attr("from", from)
        .attr("to", to)
        .attr("type", "chat")
        .attr(
            "id",
            format!("m-{}", body.chars().take(16).collect::<String>()),
        )
        .child(Element::new(xmppfed_xmpp::ns::SERVER, "body").text(body))
}

pub fn body(e: &Element) -> String {
    e.get_child(xmppfed_xmpp::ns::SERVER, "body")
        .map(Element::text_content)
        .unwrap_or_default()
}

pub fn shared_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
