//! The internal link between proxy and gateway (Lync's "MTLS 23456"): one mutual-TLS
//! connection per gateway and proxy, carrying an XMPP stream that multiplexes every domain
//! pair, with XEP-0198-style acknowledgements so the sender knows what it may forget.
//!
//! The gateway opens the TLS connection and the stream; the proxy answers with features that
//! name the link protocol. Stanzas then flow both ways, unchanged (full `from`/`to`). Each side
//! counts the stanzas it has received and sends `<a xmlns='urn:xmppfed:link:0' h='N'/>`;
//! unacknowledged stanzas are re-sent over another link, or bounced, when a link drops.
//! See `docs/internal-link.md`.

use crate::conn::{ConnError, XmppConn};
use crate::element::Element;
use crate::framer::{Frame, StreamHeader};
use crate::stream;
use crate::{StreamError, StreamErrorCondition as C, addr, ns, stanza};
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

pub const NS: &str = "urn:xmppfed:link:0";
/// The `to` of the gateway's stream header.
pub const PROXY_NAME: &str = "xmppfed-proxy";
/// Acknowledge at least every this many stanzas.
pub const ACK_EVERY: u64 = 32;
/// Most stanzas in flight without acknowledgement; beyond it the sender waits (backpressure).
pub const WINDOW: usize = 4096;

/// The gateway's opening header.
pub fn client_header(gateway_name: &str) -> String {
    stream::open_stream(&StreamHeader {
        from: Some(gateway_name.to_string()),
        to: Some(PROXY_NAME.to_string()),
        id: None,
        version: Some("1.0".into()),
        lang: None,
    })
}

/// The proxy's answer: header and link features.
pub fn server_header(gateway_name: &str, stream_id: &str) -> String {
    let mut out = stream::open_stream(&StreamHeader {
        from: Some(PROXY_NAME.to_string()),
        to: Some(gateway_name.to_string()),
        id: Some(stream_id.to_string()),
        version: Some("1.0".into()),
        lang: None,
    });
    out.push_str(
        &Element::new(crate::ns::STREAMS, "features")
            .child(Element::new(NS, "link"))
            .to_xml_in(crate::ns::SERVER),
    );
    out
}

/// `<a h='N'/>`: N stanzas received so far.
pub fn ack(h: u64) -> String {
    Element::new(NS, "a")
        .attr("h", h.to_string())
        .to_xml_in(crate::ns::SERVER)
}

/// Reads an ack.
pub fn parse_ack(e: &Element) -> Option<u64> {
    if e.is(NS, "a") {
        e.get_attr("h")?.parse().ok()
    } else {
        None
    }
}

/// Bytes written to a link in one go at most.
const BATCH_BYTES: usize = 64 * 1024;
/// Stanzas waiting for a link's writer.
pub const LINK_QUEUE: usize = 256;

struct Entry {
    id: u64,
    tx: mpsc::Sender<Element>,
}

/// The connected links of one side (the proxy's gateways, or the gateway's proxies): picks
/// the link of a stanza's domain pair (same pair, same link: RFC 6120 §10.1 order) and waits
/// for one to connect when none is.
#[derive(Default)]
pub struct LinkHub {
    links: Mutex<Vec<Entry>>,
    arrived: Notify,
    next_id: AtomicU64,
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

    /// Adds a link whose writer reads from the returned queue; `remove` it when it ends.
    pub fn register(&self) -> (u64, mpsc::Receiver<Element>) {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            links.push(Entry { id, tx });
        }
        self.arrived.notify_waiters();
        (id, rx)
    }

    pub fn remove(&self, id: u64) {
        if let Ok(mut links) = self.links.lock() {
            links.retain(|e| e.id != id);
        }
    }

    fn pick(&self, stanza: &Element) -> Option<(u64, mpsc::Sender<Element>)> {
        let links = self.links.lock().ok()?;
        if links.is_empty() {
            return None;
        }
        let e = &links[(pair_hash(stanza) % links.len() as u64) as usize];
        Some((e.id, e.tx.clone()))
    }

    /// Hands a stanza to a link, waiting up to `wait` for one to connect; gives it back when
    /// none did. Waiting for queue space is the backpressure towards the sender.
    pub async fn try_deliver(&self, mut stanza: Element, wait: Duration) -> Result<(), Element> {
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
}

/// How a link ended, and the stanzas the other side has not acknowledged (with those still
/// queued for it): the caller re-delivers or bounces them.
pub struct LinkEnded {
    pub reason: String,
    pub unacked: VecDeque<Element>,
    pub sent: u64,
}

/// Relays over an established link until it fails or `shutdown` fires: stanzas from `rx` go
/// out in batches with at most [`WINDOW`] unacknowledged; received stanzas go to `deliver`
/// (awaited: a slow receiver slows the link, which is the backpressure) and are acknowledged
/// every [`ACK_EVERY`] stanzas or 50 ms. Both ends of the link run this.
pub async fn relay<F, Fut>(
    conn: &mut XmppConn,
    mut rx: mpsc::Receiver<Element>,
    mut deliver: F,
    mut shutdown: watch::Receiver<bool>,
    shutdown_text: &str,
) -> LinkEnded
where
    F: FnMut(Element) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut unacked: VecDeque<Element> = VecDeque::new();
    let mut acked_total = 0u64;
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut ack_sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let reason = loop {
        tokio::select! {
            next = rx.recv(), if unacked.len() < WINDOW => {
                let Some(first) = next else { break "the link was dropped".to_string() };
                // Whatever else is already queued goes in the same write: one TLS record and
                // one syscall for a burst instead of one per stanza, and no added wait.
                let mut batch = first.to_xml_in(ns::SERVER);
                unacked.push_back(first);
                let mut count = 1u64;
                while batch.len() < BATCH_BYTES && unacked.len() < WINDOW {
                    let Ok(s) = rx.try_recv() else { break };
                    s.write_to(&mut batch, ns::SERVER);
                    unacked.push_back(s);
                    count += 1;
                }
                // On failure everything in the batch is unacknowledged: redelivered or bounced.
                if let Err(e) = conn.send(&batch).await {
                    break e.to_string();
                }
                sent += count;
            }
            frame = conn.next_frame() => match frame {
                Ok(Some(Frame::Element(e))) => {
                    if let Some(h) = parse_ack(&e) {
                        let newly = h.saturating_sub(acked_total).min(unacked.len() as u64);
                        unacked.drain(..newly as usize);
                        acked_total += newly;
                        continue;
                    }
                    if stanza::is_stanza(&e) {
                        received += 1;
                        deliver(e).await;
                        if received - ack_sent >= ACK_EVERY {
                            ack_sent = received;
                            if conn.send(&ack(received)).await.is_err() {
                                break "ack write failed".into();
                            }
                        }
                    }
                }
                Ok(Some(Frame::KeepAlive | Frame::Header(_))) => {}
                Ok(Some(Frame::Close)) | Ok(None) => break "the other side closed the link".into(),
                Err(e) => {
                    let err = e.to_string();
                    if let ConnError::Framing(f) = &e {
                        let _ = conn.close_with(&f.stream_error()).await;
                    }
                    break err;
                }
            },
            _ = tick.tick() => {
                if received > ack_sent {
                    ack_sent = received;
                    if conn.send(&ack(received)).await.is_err() {
                        break "ack write failed".into();
                    }
                }
            }
            _ = shutdown.changed() => {
                // Acknowledge what we have so the other side forgets it, then say why.
                let _ = conn.send(&ack(received)).await;
                let _ = conn.close_with(&StreamError::new(C::SystemShutdown, shutdown_text)).await;
                break "draining".into();
            }
        }
    };
    rx.close();
    while let Ok(s) = rx.try_recv() {
        unacked.push_back(s);
    }
    conn.shutdown().await;
    LinkEnded {
        reason,
        unacked,
        sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer::{Frame, FramerLimits, StanzaFramer};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    #[test]
    fn acks_round_trip() {
        let mut f = StanzaFramer::new(FramerLimits::PRE_AUTH);
        let mut buf = BytesMut::from(server_header("gw-0", "sid").as_bytes());
        buf.extend_from_slice(ack(41).as_bytes());
        assert!(matches!(f.decode(&mut buf), Ok(Some(Frame::Header(_)))));
        let Ok(Some(Frame::Element(features))) = f.decode(&mut buf) else {
            panic!()
        };
        assert!(features.get_child(NS, "link").is_some());
        let Ok(Some(Frame::Element(a))) = f.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(parse_ack(&a), Some(41));
    }
}
