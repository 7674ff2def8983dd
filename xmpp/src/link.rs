//! The internal link between proxy and gateway (Lync's "MTLS 23456"): one mutual-TLS
//! connection per gateway and proxy, carrying an XMPP stream that multiplexes every domain
//! pair, with XEP-0198-style acknowledgements so the sender knows what it may forget.
//!
//! The gateway opens the TLS connection and the stream; the proxy answers with features that
//! name the link protocol. Stanzas then flow both ways, unchanged (full `from`/`to`). Each side
//! counts the stanzas it has *handled* (see [`Receipt`]) and sends
//! `<a xmlns='urn:xmppfed:link:0' h='N'/>`; unacknowledged stanzas are re-sent over another
//! link, or bounced, when a link drops.
//! See `docs/internal-link.md`.

use crate::conn::{BATCH_BYTES, ConnError, XmppConn};
use crate::element::Element;
use crate::framer::{Frame, StreamHeader};
use crate::stream;
use crate::{StreamError, StreamErrorCondition as C, addr, ns, stanza};
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// `<a h='N'/>`: the first N stanzas received have been handled.
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

/// Stanzas waiting for a link's writer.
pub const LINK_QUEUE: usize = 256;

/// A stanza handed to a link: its tree, or — when the framer found that the bytes it
/// received mean the same in the link's stream ([`StanzaFramer::take_verbatim`]) — those
/// bytes alone. The link writes them as they are instead of serialising the tree again, and
/// the tree is freed at once by the task that built it (a tree freed on the link's task, after
/// the acknowledgement, costs the allocator more than building it did).
///
/// [`StanzaFramer::take_verbatim`]: crate::framer::StanzaFramer::take_verbatim
#[derive(Debug)]
pub struct Outgoing(Carried);

#[derive(Debug)]
enum Carried {
    Tree(Element),
    Verbatim {
        bytes: String,
        /// [`pair_hash`] of the stanza, taken from the tree before it was dropped.
        pair: u64,
    },
}

impl Outgoing {
    /// `verbatim` must be what the framer's `take_verbatim` returned for `stanza`, which must
    /// not have been changed since; `from` and `to` are its normalised domains (policing
    /// found them already).
    pub fn verbatim(stanza: Element, verbatim: Option<String>, from: &str, to: &str) -> Self {
        match verbatim {
            Some(bytes) => Self(Carried::Verbatim {
                pair: pair_hash_of(from, to),
                bytes,
            }),
            None => Self(Carried::Tree(stanza)),
        }
    }

    /// The stanza as a tree again (to bounce it). `None` only if verbatim bytes did not
    /// parse, which the framer that produced them rules out.
    pub fn into_element(self) -> Option<Element> {
        match self.0 {
            Carried::Tree(e) => Some(e),
            Carried::Verbatim { bytes, .. } => {
                let parsed = stanza::parse_standalone(&bytes);
                if parsed.is_none() {
                    tracing::error!("verbatim stanza bytes failed to parse again");
                }
                parsed
            }
        }
    }

    fn pair(&self) -> u64 {
        match &self.0 {
            Carried::Tree(e) => pair_hash(e),
            Carried::Verbatim { pair, .. } => *pair,
        }
    }

    fn write_to(&self, out: &mut String) {
        match &self.0 {
            Carried::Tree(e) => e.write_to(out, ns::SERVER),
            Carried::Verbatim { bytes, .. } => out.push_str(bytes),
        }
    }
}

impl From<Element> for Outgoing {
    fn from(stanza: Element) -> Self {
        Self(Carried::Tree(stanza))
    }
}

struct Entry {
    id: u64,
    tx: mpsc::Sender<Outgoing>,
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

/// Spreads domain pairs over links. Stanzas reaching a hub have been policed, so their
/// addresses are valid JIDs; what matters here is only that every spelling of one domain
/// lands on the same link, which hashing ASCII domains lower-cased and without a trailing dot
/// achieves at a fraction of a full parse (other domains take the full normalisation).
fn pair_hash(stanza: &Element) -> u64 {
    let domain = |attr: &str| {
        let jid = stanza.get_attr(attr).unwrap_or("");
        let without_resource = jid.split_once('/').map_or(jid, |(bare, _)| bare);
        let domain = without_resource
            .rsplit_once('@')
            .map_or(without_resource, |(_, d)| d);
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_ascii() {
            std::borrow::Cow::Borrowed(domain)
        } else {
            std::borrow::Cow::Owned(addr::domain(domain).unwrap_or_default())
        }
    };
    pair_hash_of(&domain("from"), &domain("to"))
}

/// [`pair_hash`] of two domains (normalised, or ASCII in any case).
fn pair_hash_of(from: &str, to: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for domain in [from, to] {
        for b in domain.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.write_u8(0xff);
    }
    h.finish()
}

impl LinkHub {
    pub fn connected(&self) -> usize {
        self.links.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Adds a link whose writer reads from the returned queue; `remove` it when it ends.
    pub fn register(&self) -> (u64, mpsc::Receiver<Outgoing>) {
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

    fn pick(&self, stanza: &Outgoing) -> Option<(u64, mpsc::Sender<Outgoing>)> {
        let links = self.links.lock().ok()?;
        if links.is_empty() {
            return None;
        }
        let e = match links.len() {
            1 => &links[0],
            n => &links[(stanza.pair() % n as u64) as usize],
        };
        Some((e.id, e.tx.clone()))
    }

    /// Hands a stanza to a link, waiting up to `wait` for one to connect; gives it back when
    /// none did. Waiting for queue space is the backpressure towards the sender.
    pub async fn try_deliver(
        &self,
        stanza: impl Into<Outgoing>,
        wait: Duration,
    ) -> Result<(), Outgoing> {
        let mut stanza = stanza.into();
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

/// Stanzas received on one link that have been handled, counted contiguously from the first:
/// the value the link may acknowledge.
#[derive(Default)]
struct Handled {
    state: Mutex<HandledState>,
    /// Woken each time the count crosses a multiple of [`ACK_EVERY`].
    advanced: Notify,
}

#[derive(Default)]
struct HandledState {
    /// Every stanza numbered below this is handled.
    watermark: u64,
    /// Handled stanzas above the watermark (handled out of order: different domain pairs).
    ahead: BTreeSet<u64>,
}

impl Handled {
    fn watermark(&self) -> u64 {
        self.state.lock().map(|s| s.watermark).unwrap_or(0)
    }

    fn done(&self, seq: u64) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let s = &mut *guard;
        if seq != s.watermark {
            s.ahead.insert(seq);
            return;
        }
        let before = s.watermark;
        s.watermark += 1;
        while s.ahead.remove(&s.watermark) {
            s.watermark += 1;
        }
        if before / ACK_EVERY != s.watermark / ACK_EVERY {
            self.advanced.notify_one();
        }
    }
}

/// Travels with a stanza received on a link until the receiver is done with it: written on
/// to its next hop, or answered with an error. Dropping it marks the stanza handled; the link
/// acknowledges a stanza only once it and every earlier one are handled, so a receiver that
/// crashes with stanzas still queued has not acknowledged them and the sender delivers them
/// again (at-least-once, as XEP-0198).
pub struct Receipt(Option<(Arc<Handled>, u64)>);

impl Receipt {
    /// For stanzas that did not arrive on a link.
    pub fn none() -> Self {
        Receipt(None)
    }

    /// Whether the stanza came over a link (whose sender still holds it).
    pub fn is_tracked(&self) -> bool {
        self.0.is_some()
    }

    /// Gives the stanza back unacknowledged — the receiver is going away and the sender will
    /// deliver it again elsewhere. No later stanza of the link is acknowledged either.
    pub fn abandon(mut self) {
        self.0 = None;
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some((handled, seq)) = self.0.take() {
            handled.done(seq);
        }
    }
}

/// How long a draining link waits for its received stanzas to be handled before it sends its
/// last acknowledgement (what is still unhandled then is delivered again by the other side).
const DRAIN_HANDLED_WAIT: Duration = Duration::from_secs(1);

/// Acknowledges what has been handled, once that is at least `at_least` more than the last
/// acknowledgement.
async fn acknowledge(
    conn: &mut XmppConn,
    handled: &Handled,
    ack_sent: &mut u64,
    at_least: u64,
) -> std::io::Result<()> {
    let h = handled.watermark();
    if h >= *ack_sent + at_least {
        *ack_sent = h;
        conn.send(&ack(h)).await?;
    }
    Ok(())
}

/// How a link ended, and the stanzas the other side has not acknowledged (with those still
/// queued for it): the caller re-delivers or bounces them.
pub struct LinkEnded {
    pub reason: String,
    pub unacked: VecDeque<Outgoing>,
    pub sent: u64,
}

/// Relays over an established link until it fails or `shutdown` fires: stanzas from `rx` go
/// out in batches with at most [`WINDOW`] unacknowledged; received stanzas go to `deliver`
/// with a [`Receipt`] (awaited: a slow receiver slows the link, which is the backpressure) and
/// are acknowledged once handled, every [`ACK_EVERY`] stanzas or 50 ms. Both ends of the link
/// run this.
pub async fn relay<F, Fut>(
    conn: &mut XmppConn,
    mut rx: mpsc::Receiver<Outgoing>,
    mut deliver: F,
    mut shutdown: watch::Receiver<bool>,
    shutdown_text: &str,
) -> LinkEnded
where
    F: FnMut(Element, Receipt) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut unacked: VecDeque<Outgoing> = VecDeque::new();
    let mut acked_total = 0u64;
    let mut sent = 0u64;
    let mut received = 0u64;
    let handled = Arc::new(Handled::default());
    let mut ack_sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let reason = loop {
        tokio::select! {
            next = rx.recv(), if unacked.len() < WINDOW => {
                let Some(first) = next else { break "the link was dropped".to_string() };
                // Whatever else is already queued goes in the same write: one TLS record and
                // one syscall for a burst instead of one per stanza, and no added wait.
                let mut batch = String::with_capacity(1024);
                first.write_to(&mut batch);
                unacked.push_back(first);
                let mut count = 1u64;
                while batch.len() < BATCH_BYTES && unacked.len() < WINDOW {
                    let Ok(s) = rx.try_recv() else { break };
                    s.write_to(&mut batch);
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
                        let receipt = Receipt(Some((handled.clone(), received)));
                        received += 1;
                        deliver(e, receipt).await;
                        if acknowledge(conn, &handled, &mut ack_sent, ACK_EVERY).await.is_err() {
                            break "ack write failed".into();
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
            _ = handled.advanced.notified() => {
                if acknowledge(conn, &handled, &mut ack_sent, 1).await.is_err() {
                    break "ack write failed".into();
                }
            }
            _ = tick.tick() => {
                if acknowledge(conn, &handled, &mut ack_sent, 1).await.is_err() {
                    break "ack write failed".into();
                }
            }
            _ = shutdown.changed() => {
                // Acknowledge what has been handled so the other side forgets it (waiting a
                // little for what is in hand), then say why.
                let deadline = tokio::time::Instant::now() + DRAIN_HANDLED_WAIT;
                while handled.watermark() < received && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = conn.send(&ack(handled.watermark())).await;
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
    fn every_spelling_of_a_domain_pair_hashes_alike() {
        let msg = |from: &str, to: &str| {
            Element::new(ns::SERVER, "message")
                .attr("from", from)
                .attr("to", to)
        };
        let a = pair_hash(&msg("bob@partner.example/phone", "alice@example.com"));
        for (from, to) in [
            ("carol@Partner.Example./x", "example.com"),
            ("partner.example", "Dave@EXAMPLE.com/a/b@c"),
        ] {
            assert_eq!(pair_hash(&msg(from, to)), a, "{from} {to}");
        }
        assert_eq!(
            pair_hash(&msg("a@bücher.example", "b@example.com")),
            pair_hash(&msg("a@xn--bcher-kva.example", "b@example.com"))
        );
        assert_ne!(pair_hash(&msg("bob@other.example", "alice@example.com")), a);
        assert_ne!(
            pair_hash(&msg("alice@example.com", "bob@partner.example")),
            a,
            "a pair has a direction"
        );
    }

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

    /// Two link ends over loopback TCP, streams opened (plain: the relay does not care).
    async fn link_pair() -> (XmppConn, XmppConn) {
        use crate::conn::Transport;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = tokio::join!(a, l.accept());
        let limits = FramerLimits::authenticated(65_536);
        let mut a = XmppConn::new(Transport::Plain(a.unwrap()), limits);
        let mut b = XmppConn::new(Transport::Plain(b.unwrap().0), limits);
        a.send(&client_header("gw-0")).await.unwrap();
        b.send(&server_header("gw-0", "sid")).await.unwrap();
        for c in [&mut a, &mut b] {
            assert!(matches!(c.next_frame().await, Ok(Some(Frame::Header(_)))));
        }
        assert!(matches!(a.next_frame().await, Ok(Some(Frame::Element(_)))));
        (a, b)
    }

    fn stanza(i: usize) -> Element {
        Element::new(ns::SERVER, "message")
            .attr("from", "a@partner.example")
            .attr("to", "b@org.example")
            .attr("id", i.to_string())
    }

    #[test]
    fn the_verbatim_and_tree_forms_of_a_stanza_agree() {
        let tree = stanza(7).child(Element::new(ns::SERVER, "body").text("a & b"));
        let verbatim = Outgoing::verbatim(
            tree.clone(),
            Some(tree.to_xml_in(ns::SERVER)),
            "partner.example",
            "org.example",
        );
        let plain = Outgoing::from(tree.clone());
        assert_eq!(verbatim.pair(), plain.pair());
        assert_eq!(verbatim.into_element(), Some(tree.clone()));
        assert_eq!(plain.into_element(), Some(tree));
    }

    /// A stanza with verbatim bytes goes out as those bytes; one without, serialised.
    #[tokio::test]
    async fn verbatim_bytes_are_written_as_received() {
        use crate::conn::Transport;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = tokio::join!(a, l.accept());
        let mut a = XmppConn::new(
            Transport::Plain(a.unwrap()),
            FramerLimits::authenticated(65_536),
        );
        let mut b = b.unwrap().0;
        a.send(&client_header("gw-0")).await.unwrap();
        b.write_all(server_header("gw-0", "sid").as_bytes())
            .await
            .unwrap();
        assert!(matches!(a.next_frame().await, Ok(Some(Frame::Header(_)))));
        assert!(matches!(a.next_frame().await, Ok(Some(Frame::Element(_)))));

        // Double quotes and an end tag: not how the tree would be serialised.
        let verbatim =
            "<message from=\"a@partner.example\" to=\"b@org.example\" id=\"0\"></message>";
        let expected = format!("{verbatim}{}", stanza(1).to_xml_in(ns::SERVER));
        let (tx, rx) = mpsc::channel(4);
        tx.send(Outgoing::verbatim(
            stanza(0),
            Some(verbatim.into()),
            "partner.example",
            "org.example",
        ))
        .await
        .unwrap();
        tx.send(stanza(1).into()).await.unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        let _sending =
            tokio::spawn(async move { relay(&mut a, rx, |_, _| async {}, stop_rx, "bye").await });
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains(&expected) {
            let n = tokio::time::timeout(Duration::from_secs(5), b.read(&mut buf))
                .await
                .expect("the stanzas arrive")
                .unwrap();
            assert!(
                n > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buf[..n]);
        }
    }

    /// A receiver that still holds receipts when it goes away has not acknowledged those
    /// stanzas: the sender gets them back to deliver again.
    #[tokio::test]
    async fn stanzas_are_acknowledged_only_once_handled() {
        let (mut sender, mut receiver) = link_pair().await;
        let (tx, rx) = mpsc::channel(16);
        let (_keep_tx, keep_rx) = mpsc::channel::<Outgoing>(1);
        let (stop_sender, stop_sender_rx) = watch::channel(false);
        let (stop_receiver, stop_receiver_rx) = watch::channel(false);
        let held = Arc::new(Mutex::new(Vec::new()));
        let sending = tokio::spawn(async move {
            relay(&mut sender, rx, |_, _| async {}, stop_sender_rx, "bye").await
        });
        let holder = held.clone();
        let receiving = tokio::spawn(async move {
            // Stanzas 0..3 are handled at once; 3..6 stay in hand.
            relay(
                &mut receiver,
                keep_rx,
                move |s: Element, r: Receipt| {
                    if s.get_attr("id").is_some_and(|i| i >= "3") {
                        holder.lock().unwrap().push(r);
                    }
                    async {}
                },
                stop_receiver_rx,
                "bye",
            )
            .await
        });
        for i in 0..6 {
            tx.send(stanza(i).into()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(held.lock().unwrap().len(), 3);
        // One of the held stanzas is handled, but 3 (before it) is not: still no ack for it.
        drop(held.lock().unwrap().remove(1));
        stop_receiver.send_replace(true);
        let ended = receiving.await.unwrap();
        assert_eq!(ended.reason, "draining");
        let ended = sending.await.unwrap();
        drop(stop_sender);
        let back: Vec<_> = ended
            .unacked
            .into_iter()
            .filter_map(|s| s.into_element()?.get_attr("id").map(str::to_string))
            .collect();
        assert_eq!(back, ["3", "4", "5"], "{}", ended.reason);
    }

    fn receipt(h: &Arc<Handled>, seq: u64) -> Receipt {
        Receipt(Some((h.clone(), seq)))
    }

    #[test]
    fn only_contiguously_handled_stanzas_count() {
        let h = Arc::new(Handled::default());
        let (r0, r1, r2) = (receipt(&h, 0), receipt(&h, 1), receipt(&h, 2));
        drop(r2);
        assert_eq!(h.watermark(), 0, "stanza 2 is handled but 0 and 1 are not");
        drop(r0);
        assert_eq!(h.watermark(), 1);
        drop(r1);
        assert_eq!(h.watermark(), 3, "1 completes the run up to 2");
    }

    #[test]
    fn abandoned_stanzas_are_never_acknowledged() {
        let h = Arc::new(Handled::default());
        let (r0, r1) = (receipt(&h, 0), receipt(&h, 1));
        r0.abandon();
        drop(r1);
        assert_eq!(h.watermark(), 0);
        drop(Receipt::none());
        assert_eq!(h.watermark(), 0);
    }
}
