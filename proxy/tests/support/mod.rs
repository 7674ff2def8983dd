//! Test fixtures: a test CA, policy documents compiled from the same CR YAML users apply,
//! proxies on chosen loopback addresses, and a test gateway end of the internal link.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use xmppfed_api::admission::Admission;
use xmppfed_api::validate::{Source, validate_sources};
use xmppfed_xmpp::conn::{Transport, XmppConn, connect_tls};
use xmppfed_xmpp::devca::{CertSpec, DevCa};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::link;
use xmppfed_xmpp::tls::{Identity, link_client_config};

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
        }
    }
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
    let mut yaml = format!(
        "apiVersion: xmppfed.io/v1alpha1\nkind: XmppFederation\nmetadata: {{name: test, namespace: t}}\nspec:\n  domains: [{domain}]\n  edge: {{hostname: xmpp.{domain}}}\n  gateway:\n    internalServers: [{{host: internal.{domain}}}]\n  limits: {{{limits}}}\n  tls: {{secretName: edge-tls}}\n"
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
    }
    let report = validate_sources(
        &[Source {
            path: "test.yaml".into(),
            text: yaml.clone(),
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

/// A proxy serving `domain` on `ip` (5269 STARTTLS, 5270 direct TLS; link and HTTP ports
/// chosen by the kernel).
pub struct TestProxy {
    pub proxy: xmppfed_proxy::RunningProxy,
    pub policy_file: PathBuf,
    pub link_identity: Identity,
    pub link_ca: rustls::pki_types::CertificateDer<'static>,
}

pub async fn start_proxy(
    dir: &Path,
    pki: &Pki,
    ip: IpAddr,
    domain: &str,
    partners: &[PartnerSpec<'_>],
    dns: Option<SocketAddr>,
) -> TestProxy {
    start_proxy_with(dir, pki, ip, domain, partners, dns, DEFAULT_LIMITS).await
}

/// The federation `limits` tests use unless they test limits.
pub const DEFAULT_LIMITS: &str = "maxStanzaBytes: 262144, streamEstablishmentTimeout: 10s";

/// As [`start_proxy`], with the federation's `limits` as YAML flow entries.
pub async fn start_proxy_with(
    dir: &Path,
    pki: &Pki,
    ip: IpAddr,
    domain: &str,
    partners: &[PartnerSpec<'_>],
    dns: Option<SocketAddr>,
    limits: &str,
) -> TestProxy {
    let policy_file = dir.join(format!("policy-{domain}.json"));
    write_policy_with(&policy_file, domain, partners, limits);
    let config = xmppfed_proxy::ProxyConfig {
        starttls_listen: SocketAddr::new(ip, 5269),
        direct_tls_listen: Some(SocketAddr::new(ip, 5270)),
        link_listen: SocketAddr::new(ip, 0),
        http_listen: Some(SocketAddr::new(ip, 0)),
        policy: xmppfed_policy_source::Source::File {
            path: policy_file.clone(),
            poll: Duration::from_millis(100),
        },
        identity: pki.identity(&CertSpec::for_domain(domain)),
        peer_trust: pki.trust(),
        dialback_secret: DialbackSecret::new(format!("secret of {domain}")),
        link_identity: pki.identity(&CertSpec::for_domain("proxy.link")),
        link_ca: vec![pki.ca.cert_der.clone()],
        dns_server: dns,
        link_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
    };
    let proxy = xmppfed_proxy::start(config).await.expect("proxy starts");
    TestProxy {
        proxy,
        policy_file,
        link_identity: pki.identity(&CertSpec::for_domain("gateway.link")),
        link_ca: pki.ca.cert_der.clone(),
    }
}

/// The gateway's end of the internal link, as the gateway will speak it.
pub struct TestGateway {
    conn: XmppConn,
    received: u64,
}

impl TestGateway {
    pub async fn connect(proxy: &TestProxy) -> Self {
        let config = link_client_config(&proxy.link_identity, std::slice::from_ref(&proxy.link_ca))
            .expect("link client config");
        let tcp = TcpStream::connect(proxy.proxy.link_addr)
            .await
            .expect("link connect");
        let tls = connect_tls(tcp, config, "proxy.link")
            .await
            .expect("link TLS");
        let mut conn = XmppConn::new(
            Transport::ClientTls(Box::new(tls)),
            FramerLimits::authenticated(1 << 20),
        );
        conn.send(&link::client_header("test-gateway"))
            .await
            .expect("header");
        assert!(matches!(
            conn.next_frame().await,
            Ok(Some(Frame::Header(_)))
        ));
        let Ok(Some(Frame::Element(features))) = conn.next_frame().await else {
            panic!("link features expected")
        };
        assert!(features.get_child(link::NS, "link").is_some());
        // Wait until the proxy has registered the link.
        for _ in 0..100 {
            if proxy.proxy.shared.hub.connected() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { conn, received: 0 }
    }

    pub async fn send(&mut self, stanza: &Element) {
        self.conn
            .send(&stanza.to_xml_in(xmppfed_xmpp::ns::SERVER))
            .await
            .expect("send over link");
    }

    /// The next stanza from the proxy (acknowledging it), or `None` after `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<Element> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.conn.next_frame())
                .await
                .ok()?;
            match frame {
                Ok(Some(Frame::Element(e))) if link::parse_ack(&e).is_some() => continue,
                Ok(Some(Frame::Element(e))) => {
                    self.received += 1;
                    self.conn.send(&link::ack(self.received)).await.ok()?;
                    return Some(e);
                }
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
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

pub fn metric(proxy: &TestProxy, needle: &str) -> Vec<String> {
    proxy
        .proxy
        .shared
        .metrics
        .encode()
        .lines()
        .filter(|l| l.contains(needle) && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

pub fn shared_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub type Shared = Arc<xmppfed_proxy::Shared>;

pub mod servers;
