//! Proxy test fixtures: proxies on chosen loopback addresses and a test gateway end of the
//! internal link. The shared ones (test CA, policy documents, real servers) are
//! `xmppfed-testkit`, re-exported here.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use xmppfed_xmpp::conn::{Transport, XmppConn, connect_tls};
use xmppfed_xmpp::devca::CertSpec;
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::link;
use xmppfed_xmpp::tls::{Identity, link_client_config};

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

/// A mutual-TLS connection to the proxy's link listener, as a gateway opens it.
pub async fn link_tls(proxy: &TestProxy) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = link_client_config(&proxy.link_identity, std::slice::from_ref(&proxy.link_ca))
        .expect("link client config");
    let tcp = TcpStream::connect(proxy.proxy.link_addr)
        .await
        .expect("link connect");
    connect_tls(tcp, config, "proxy.link")
        .await
        .expect("link TLS")
}

/// Waits (up to a second) until the proxy has registered a link.
pub async fn until_link_registered(proxy: &TestProxy) {
    for _ in 0..100 {
        if proxy.proxy.shared.hub.connected() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestGateway {
    pub async fn connect(proxy: &TestProxy) -> Self {
        let tls = link_tls(proxy).await;
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
        until_link_registered(proxy).await;
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

pub type Shared = Arc<xmppfed_proxy::Shared>;

pub use xmppfed_testkit::*;
