//! A minimal XMPP client (RFC 6120 c2s: STARTTLS, SASL PLAIN, resource binding) for load: it
//! writes as fast as the server reads, which slixmpp cannot, and reads stanzas through the
//! product's own framer. For benchmarks and tests only.

use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use xmppfed_xmpp::conn::{Transport, XmppConn};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::ns;

const LIMITS: FramerLimits = FramerLimits::PRE_AUTH;

pub struct C2s {
    conn: XmppConn,
    /// The bound full JID.
    pub jid: String,
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{}' to='{domain}' version='1.0'>",
        ns::STREAMS
    )
}

impl C2s {
    /// Logs `user@domain` in at `addr` (STARTTLS against `ca_der`), binds resource `bench`
    /// and sends initial presence.
    pub async fn login(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
        ca_der: &[u8],
    ) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let conn = XmppConn::new(Transport::Plain(tcp), LIMITS);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca_der.to_vec().into())
            .map_err(|e| e.to_string())?;
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let mut c = C2s {
            conn,
            jid: String::new(),
        };
        c.open(domain).await?;
        c.conn
            .send(&format!("<starttls xmlns='{}'/>", ns::TLS))
            .await
            .map_err(|e| e.to_string())?;
        c.expect(ns::TLS, "proceed").await?;
        c.conn.framer_mut().reset(LIMITS);
        c.conn
            .upgrade_client(tls, domain)
            .await
            .map_err(|e| e.to_string())?;
        c.open(domain).await?;
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.conn
            .send(&format!(
                "<auth xmlns='{}' mechanism='PLAIN'>{plain}</auth>",
                ns::SASL
            ))
            .await
            .map_err(|e| e.to_string())?;
        c.expect(ns::SASL, "success").await?;
        c.conn
            .framer_mut()
            .reset(FramerLimits::authenticated(1 << 20));
        c.open(domain).await?;
        c.conn
            .send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq><presence/>")
            .await
            .map_err(|e| e.to_string())?;
        let bound = c.expect(ns::CLIENT, "iq").await?;
        c.jid = bound
            .get_child("urn:ietf:params:xml:ns:xmpp-bind", "bind")
            .and_then(|b| b.get_child("urn:ietf:params:xml:ns:xmpp-bind", "jid"))
            .map(Element::text_content)
            .ok_or("no JID bound")?;
        Ok(c)
    }

    /// Sends the header and reads the answer's header and features.
    async fn open(&mut self, domain: &str) -> Result<(), String> {
        self.conn
            .send(&header(domain))
            .await
            .map_err(|e| e.to_string())?;
        match self.conn.next_frame().await {
            Ok(Some(Frame::Header(_))) => {}
            other => return Err(format!("no stream header: {other:?}")),
        }
        self.expect(ns::STREAMS, "features").await.map(|_| ())
    }

    /// The next element, which must be `{ns}name`.
    async fn expect(&mut self, ns: &str, name: &str) -> Result<Element, String> {
        loop {
            match self.conn.next_frame().await {
                Ok(Some(Frame::Element(e))) if e.is(ns, name) => return Ok(e),
                Ok(Some(Frame::KeepAlive)) => {}
                other => return Err(format!("expected <{name}/>, got {other:?}")),
            }
        }
    }

    /// Writes raw XML (one or more stanzas) and flushes.
    pub async fn send(&mut self, xml: &str) -> Result<(), String> {
        self.conn.send(xml).await.map_err(|e| e.to_string())
    }

    /// The next stanza; `None` when the stream ended.
    pub async fn next_stanza(&mut self) -> Option<Element> {
        loop {
            match self.conn.next_frame().await {
                Ok(Some(Frame::Element(e))) => return Some(e),
                Ok(Some(Frame::KeepAlive | Frame::Header(_))) => {}
                _ => return None,
            }
        }
    }
}
