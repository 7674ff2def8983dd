//! The proxy's end of the internal link to the gateways (see `xmppfed_xmpp::link` and
//! `docs/internal-link.md`): gateways connect with mutual TLS; stanzas accepted from partners
//! go to one of them (the same one for a domain pair, for ordering), with backpressure; what a
//! gateway has not acknowledged when its link drops is re-delivered over another link or
//! bounced to the partner.

use crate::Shared;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use xmppfed_xmpp::conn::{Transport, XmppConn};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::link;
use xmppfed_xmpp::stream;
use xmppfed_xmpp::{StreamError, StreamErrorCondition as C, addr, ns, stanza};

static LINK_SEQ: AtomicU64 = AtomicU64::new(1);

struct Entry {
    id: u64,
    tx: mpsc::Sender<Element>,
}

#[derive(Default)]
pub struct LinkHub {
    links: Mutex<Vec<Entry>>,
    arrived: Notify,
}

fn pair_hash(stanza: &Element) -> u64 {
    let domain = |a: &str| {
        stanza
            .get_attr(a)
            .and_then(|v| addr::parse(v).ok())
            .map(|a| a.domain)
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    domain("from").hash(&mut h);
    domain("to").hash(&mut h);
    h.finish()
}

impl LinkHub {
    pub fn connected(&self) -> usize {
        self.links.lock().map(|l| l.len()).unwrap_or(0)
    }

    fn pick(&self, stanza: &Element) -> Option<(u64, mpsc::Sender<Element>)> {
        let links = self.links.lock().ok()?;
        if links.is_empty() {
            return None;
        }
        let e = &links[(pair_hash(stanza) % links.len() as u64) as usize];
        Some((e.id, e.tx.clone()))
    }

    fn remove(&self, id: u64) {
        if let Ok(mut links) = self.links.lock() {
            links.retain(|e| e.id != id);
        }
    }

    /// Tries to hand a stanza to a gateway, waiting up to `wait` for one to connect.
    async fn try_deliver(&self, mut stanza: Element, wait: Duration) -> Result<(), Element> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            match self.pick(&stanza) {
                Some((id, tx)) => match tx.send(stanza).await {
                    Ok(()) => return Ok(()),
                    Err(mpsc::error::SendError(s)) => {
                        self.remove(id);
                        stanza = s;
                    }
                },
                None => {
                    if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                        return Err(stanza);
                    }
                }
            }
        }
    }

    /// A stanza from a partner for the organisation: to a gateway, or bounced to the partner.
    pub async fn deliver(&self, shared: &Arc<Shared>, stanza: Element) {
        if let Err(stanza) = self.try_deliver(stanza, shared.link_wait).await {
            shared.metrics.bounce("service-unavailable");
            let text = "the organisation's XMPP service cannot be reached from the federation edge right now";
            tracing::warn!("no gateway link: bouncing a stanza to the partner");
            match stanza::bounce(&stanza, "service-unavailable", text) {
                Some(reply) => crate::outbound::send(shared, reply).await,
                None => tracing::warn!(
                    "undeliverable error stanza from a partner dropped (errors are never answered with errors)"
                ),
            }
        }
    }

    /// A reply the proxy itself generated for an internal sender (a bounce): to a gateway, or
    /// logged — answering it would loop.
    pub async fn deliver_internal(&self, shared: &Arc<Shared>, stanza: Element) {
        if self.try_deliver(stanza, shared.link_wait).await.is_err() {
            tracing::warn!(
                "no gateway link for a bounce to an internal sender; dropped and counted"
            );
            shared.metrics.bounce("undeliverable-bounce");
        }
    }
}

/// Bytes written to a gateway link in one go at most.
const BATCH_BYTES: usize = 64 * 1024;

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
    let (tx, mut rx) = mpsc::channel::<Element>(256);
    if let Ok(mut links) = shared.hub.links.lock() {
        links.push(Entry { id, tx });
    }
    shared.hub.arrived.notify_waiters();
    shared.metrics.gateway_links.inc();
    tracing::info!(%gateway, "gateway link up");

    let mut unacked: VecDeque<Element> = VecDeque::new();
    let mut acked_total = 0u64;
    let mut sent_total = 0u64;
    let mut received = 0u64;
    let mut ack_sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut shutdown = shared.shutdown.subscribe();
    let reason = loop {
        tokio::select! {
            next = rx.recv(), if unacked.len() < link::WINDOW => {
                let Some(first) = next else { break "hub dropped the link".to_string() };
                // Whatever else is already queued goes in the same write: one TLS record and
                // one syscall for a burst instead of one per stanza, and no added wait.
                let mut batch = first.to_xml_in(ns::SERVER);
                unacked.push_back(first);
                let mut count = 1u64;
                while batch.len() < BATCH_BYTES && unacked.len() < link::WINDOW {
                    let Ok(s) = rx.try_recv() else { break };
                    s.write_to(&mut batch, ns::SERVER);
                    unacked.push_back(s);
                    count += 1;
                }
                // On failure everything in the batch is unacknowledged: redelivered or bounced.
                if let Err(e) = conn.send(&batch).await {
                    break e.to_string();
                }
                sent_total += count;
            }
            frame = conn.next_frame() => match frame {
                Ok(Some(Frame::Element(e))) => {
                    if let Some(h) = link::parse_ack(&e) {
                        let newly = h.saturating_sub(acked_total).min(unacked.len() as u64);
                        unacked.drain(..newly as usize);
                        acked_total += newly;
                        continue;
                    }
                    if stanza::is_stanza(&e) {
                        received += 1;
                        crate::outbound::send(&shared, e).await;
                        if received - ack_sent >= link::ACK_EVERY {
                            ack_sent = received;
                            if conn.send(&link::ack(received)).await.is_err() {
                                break "ack write failed".into();
                            }
                        }
                    }
                }
                Ok(Some(Frame::KeepAlive | Frame::Header(_))) => {}
                Ok(Some(Frame::Close)) | Ok(None) => break "the gateway closed the link".into(),
                Err(e) => {
                    let err = e.to_string();
                    if let xmppfed_xmpp::conn::ConnError::Framing(f) = &e {
                        let _ = conn.close_with(&f.stream_error()).await;
                    }
                    break err;
                }
            },
            _ = tick.tick() => {
                if received > ack_sent {
                    ack_sent = received;
                    if conn.send(&link::ack(received)).await.is_err() {
                        break "ack write failed".into();
                    }
                }
            }
            _ = shutdown.changed() => {
                let err = StreamError::new(C::SystemShutdown, "the proxy is draining");
                // Give the gateway a moment to acknowledge what it has.
                let _ = conn.send(&link::ack(received)).await;
                let _ = conn.close_with(&err).await;
                break "draining".into();
            }
        }
    };
    shared.hub.remove(id);
    shared.metrics.gateway_links.dec();
    rx.close();
    while let Ok(s) = rx.try_recv() {
        unacked.push_back(s);
    }
    tracing::info!(%gateway, %reason, unacked = unacked.len(), sent = sent_total, "gateway link down");
    conn.shutdown().await;
    if !unacked.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for s in unacked {
                shared.hub.deliver(&shared, s).await;
            }
        });
    }
}
