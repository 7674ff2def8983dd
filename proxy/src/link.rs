//! The proxy's end of the internal link to the gateways (see `xmppfed_xmpp::link` and
//! `docs/internal-link.md`): gateways connect with mutual TLS; stanzas accepted from partners
//! go to one of them (the same one for a domain pair, for ordering), with backpressure; what a
//! gateway has not acknowledged when its link drops is re-delivered over another link or
//! bounced to the partner.

use crate::Shared;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use xmppfed_xmpp::conn::{Transport, XmppConn};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::link;
pub use xmppfed_xmpp::link::{LinkHub, Outgoing};
use xmppfed_xmpp::{stanza, stream};

static LINK_SEQ: AtomicU64 = AtomicU64::new(1);

/// Where stanzas accepted from partners go (the gateways' links), and their bounces.
pub trait GatewayLinks {
    /// A stanza from a partner for the organisation: to a gateway, or bounced to the partner.
    fn deliver(&self, shared: &Arc<Shared>, stanza: Outgoing) -> impl Future<Output = ()> + Send;
    /// A reply the proxy itself generated for an internal sender (a bounce): to a gateway,
    /// or logged — answering it would loop.
    fn deliver_internal(
        &self,
        shared: &Arc<Shared>,
        stanza: Element,
    ) -> impl Future<Output = ()> + Send;
}

impl GatewayLinks for LinkHub {
    async fn deliver(&self, shared: &Arc<Shared>, stanza: Outgoing) {
        if let Err(stanza) = self.try_deliver(stanza, shared.link_wait).await {
            shared.metrics.bounce("service-unavailable");
            let text = "the organisation's XMPP service cannot be reached from the federation edge right now";
            tracing::warn!("no gateway link: bouncing a stanza to the partner");
            let bounce = stanza
                .into_element()
                .and_then(|s| stanza::bounce(&s, "service-unavailable", text));
            match bounce {
                Some(reply) => crate::outbound::send(shared, reply).await,
                None => tracing::warn!(
                    "undeliverable error stanza from a partner dropped (errors are never answered with errors)"
                ),
            }
        }
    }

    async fn deliver_internal(&self, shared: &Arc<Shared>, stanza: Element) {
        if self.try_deliver(stanza, shared.link_wait).await.is_err() {
            tracing::warn!(
                "no gateway link for a bounce to an internal sender; dropped and counted"
            );
            shared.metrics.bounce("undeliverable-bounce");
        }
    }
}

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    crate::accept_until_shutdown(&shared.clone(), listener, |tcp, peer| {
        let id = LINK_SEQ.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("link", id, %peer);
        tokio::spawn(serve(shared.clone(), acceptor.clone(), tcp, id).instrument(span));
    })
    .await;
}

async fn serve(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: tokio::net::TcpStream, id: u64) {
    let tls = match timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "link TLS handshake refused (a gateway must present a certificate from the link CA)");
            return;
        }
        Err(_) => return,
    };
    let max = shared.policy.current().document().limits.max_stanza_bytes as usize;
    let mut conn = XmppConn::new(
        Transport::ServerTls(Box::new(tls)),
        FramerLimits::authenticated(max + 65_536),
    );
    let gateway = match timeout(Duration::from_secs(10), conn.next_frame()).await {
        Ok(Ok(Some(Frame::Header(h)))) => h.from.unwrap_or_else(|| format!("gateway-{id}")),
        _ => return,
    };
    if conn
        .send(&link::server_header(&gateway, &stream::new_stream_id()))
        .await
        .is_err()
    {
        return;
    }
    let (hub_id, rx) = shared.hub.register();
    shared.metrics.gateway_links.inc();
    tracing::info!(%gateway, "gateway link up");
    let ended = link::relay(
        &mut conn,
        rx,
        // The proxy acknowledges once a stanza is queued for its partner stream (what
        // that queue cannot deliver is bounced back over a link).
        |stanza, _receipt| crate::outbound::send(&shared, stanza),
        shared.shutdown.subscribe(),
        "the proxy is draining",
    )
    .await;
    shared.hub.remove(hub_id);
    shared.metrics.gateway_links.dec();
    tracing::info!(%gateway, reason = %ended.reason, unacked = ended.unacked.len(), sent = ended.sent, "gateway link down");
    if !ended.unacked.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for s in ended.unacked {
                shared.hub.deliver(&shared, s).await;
            }
        });
    }
}
