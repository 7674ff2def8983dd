//! Inbound partner streams: accept on 5269/5270, run the receiving state machine under the
//! live policy, enforce limits and timeouts, and hand policed stanzas to the gateway link.

use crate::link::GatewayLinks;
use crate::metrics::StreamLabels;
use crate::{PolicyView, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;
use xmppfed_xmpp::conn::{ConnError, Transport, XmppConn};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits, StreamHeader};
use xmppfed_xmpp::inbound::{Action, InboundSession, Input};
use xmppfed_xmpp::stream::{self, CLOSE_STREAM};
use xmppfed_xmpp::{StreamError, StreamErrorCondition as C, addr, ns};

static STREAM_SEQ: AtomicU64 = AtomicU64::new(1);

/// A per-stream id for logs.
pub fn next_log_id(prefix: &str) -> String {
    format!("{prefix}-{}", STREAM_SEQ.fetch_add(1, Ordering::Relaxed))
}

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, direct_tls: bool) {
    crate::accept_until_shutdown(&shared.clone(), listener, |tcp, peer| {
        let span =
            tracing::info_span!("stream", id = %next_log_id("in"), dir = "in", %peer, direct_tls);
        tokio::spawn(serve(shared.clone(), tcp, peer, direct_tls).instrument(span));
    })
    .await;
}

enum Control {
    DialbackChecked {
        from: String,
        to: String,
        result: Result<bool, String>,
    },
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let policy = shared.policy.current();
    let limits = policy.document().limits.clone();
    let establishment = Duration::from_secs(limits.stream_establishment_timeout_seconds);
    let slot = shared.counts.enter(limits.connection_limit as usize);
    let transport = if direct_tls {
        match tokio::time::timeout(establishment, shared.tls.direct.accept(tcp)).await {
            Ok(Ok(tls)) => Transport::ServerTls(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "direct TLS handshake failed");
                shared.metrics.reject("tls-handshake");
                return;
            }
            Err(_) => {
                shared.metrics.reject("connection-timeout");
                return;
            }
        }
    } else {
        Transport::Plain(tcp)
    };
    let chain = transport.peer_chain();
    let mut conn = XmppConn::new(transport, FramerLimits::PRE_AUTH);
    // Policed stanzas go on to the gateway as received when their bytes stand on their own.
    conn.framer_mut().capture_verbatim();
    let mut session = InboundSession::new(
        shared.trust.clone(),
        shared.secret.clone(),
        direct_tls,
        chain,
    );
    let Some(mut slot) = slot else {
        // Over the global limit: still speak XMPP so the peer learns why.
        let error = StreamError::new(
            C::ResourceConstraint,
            format!(
                "the federation edge is at its limit of {} connections; try again later",
                limits.connection_limit
            ),
        );
        refuse_before_header(&shared, &mut conn, error, establishment).await;
        return;
    };
    let (ctrl_tx, mut ctrl_rx) = mpsc::channel::<Control>(16);
    let mut policy_rx = shared.policy.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let started = Instant::now();
    let mut last_activity = Instant::now();
    let mut header_sent = false;
    let mut partner_label: Option<(String, &'static str)> = None;
    let mut reported_bytes = 0u64;
    // This stream's counters, looked up once rather than per stanza.
    let inbound = crate::metrics::DirectionLabels {
        direction: "inbound",
    };
    let bytes_in = shared.metrics.bytes.get_or_create(&inbound).clone();
    let stanzas_in = shared.metrics.stanzas.get_or_create(&inbound).clone();
    // XEP-0288: stanzas for the partner that come back over this stream. Made only when the
    // partner asks for bidi, so idle streams of other partners carry no queue.
    let mut bidi: Option<BidiReturn> = None;
    tracing::debug!(%peer, "connected");

    let outcome: Option<StreamError> = loop {
        let policy = shared.policy.current();
        let inactivity =
            Duration::from_secs(policy.document().limits.stream_inactivity_timeout_seconds);
        let authenticated = session.is_authenticated();
        // Frames already read are handled without a `select!` (whose timers and channels
        // cost more than policing a stanza); each read is bounded, so the other branches
        // are polled at least every `READ_CHUNK` bytes.
        let input = if let Some(frame) = conn.buffered_frame().transpose() {
            // Read with the last read: `last_activity` already says when.
            match on_frame(frame.map(Some), &mut conn, &shared, &mut slot, header_sent).await {
                Step::Input(input) => input,
                Step::Next => continue,
                Step::End(error) => break error,
            }
        } else {
            tokio::select! {
                frame = conn.next_frame() => {
                    last_activity = Instant::now();
                    match on_frame(frame, &mut conn, &shared, &mut slot, header_sent).await {
                        Step::Input(input) => input,
                        Step::Next => continue,
                        Step::End(error) => break error,
                    }
                }
                Some(stanza) = BidiReturn::recv(&mut bidi), if bidi.is_some() => {
                    if let Err(e) = conn.send(&stanza.to_xml_in(ns::SERVER)).await {
                        crate::outbound::bounce_to_gateway(&shared, &stanza, "remote-server-timeout", &format!("the bidirectional stream failed: {e}")).await;
                        break None;
                    }
                    shared.metrics.stanza("outbound");
                    continue;
                }
                Some(ctrl) = ctrl_rx.recv() => match ctrl {
                    Control::DialbackChecked { from, to, result } => Input::DialbackChecked { from, to, result },
                },
                _ = sleep_until(started + establishment), if !authenticated => {
                    let error = StreamError::new(C::ConnectionTimeout, format!("the stream was not authenticated within {} s", establishment.as_secs()));
                    if !header_sent {
                        let _ = conn.send(&stream::open_stream(&stream::default_header())).await;
                    }
                    let _ = conn.close_with(&error).await;
                    break Some(error);
                }
                _ = sleep_until(last_activity + inactivity), if authenticated => {
                    let error = StreamError::new(C::ConnectionTimeout, format!("no traffic for {} s (streamInactivityTimeout)", inactivity.as_secs()));
                    let _ = conn.close_with(&error).await;
                    break Some(error);
                }
                changed = policy_rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let policy = policy_rx.borrow_and_update().clone();
                    if let Some(error) = session.recheck(&PolicyView(&policy)) {
                        tracing::info!(%error, "closing after a policy change");
                        let _ = conn.close_with(&error).await;
                        break Some(error);
                    }
                    if session.is_authenticated() {
                        let max = policy.document().limits.max_stanza_bytes as usize;
                        conn.framer_mut().set_limits(FramerLimits::authenticated(max));
                    }
                    continue;
                }
                _ = shutdown.changed() => {
                    let error = StreamError::new(C::SystemShutdown, "this federation edge instance is shutting down; reconnect to reach another");
                    let _ = conn.close_with(&error).await;
                    break Some(error);
                }
            }
        };
        // The received bytes of the element in `input`, if it is one and they can be relayed.
        let mut verbatim = conn.framer_mut().take_verbatim();
        bytes_in.inc_by(conn.bytes_in - reported_bytes);
        reported_bytes = conn.bytes_in;

        let mut queue: std::collections::VecDeque<Action> =
            session.handle(input, &PolicyView(&policy)).into();
        let mut closing = None;
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(data) => {
                    header_sent = true;
                    if conn.send(&data).await.is_err() {
                        closing = Some(None);
                        break;
                    }
                }
                Action::StartTls => match conn.upgrade_server(&shared.tls.starttls).await {
                    Ok(()) => queue.extend(session.handle(
                        Input::TlsEstablished(conn.peer_chain()),
                        &PolicyView(&policy),
                    )),
                    Err(e) => {
                        tracing::info!(error = %e, "STARTTLS failed");
                        shared.metrics.reject("tls-handshake");
                        closing = Some(None);
                        break;
                    }
                },
                Action::ResetFramer(limits) => conn.framer_mut().reset(limits),
                Action::SetLimits(limits) => conn.framer_mut().set_limits(limits),
                Action::VerifyDialback {
                    from,
                    to,
                    stream_id,
                    key,
                } => {
                    let shared = shared.clone();
                    let tx = ctrl_tx.clone();
                    tokio::spawn(
                        async move {
                            let result = crate::outbound::verify_dialback(
                                &shared, &to, &from, &stream_id, &key,
                            )
                            .await;
                            let _ = tx.send(Control::DialbackChecked { from, to, result }).await;
                        }
                        .in_current_span(),
                    );
                }
                Action::Authenticated { from, to, method } => {
                    tracing::info!(%from, %to, method = method.as_str(), tls = session.is_tls(), bidi = session.is_bidi(), "authenticated");
                    if session.is_bidi() {
                        let back = bidi.get_or_insert_with(BidiReturn::new);
                        if shared.outbound.attach_bidi(&to, &from, &back.tx) {
                            let name = policy
                                .partner_for(&from)
                                .map(|p| p.name.clone())
                                .unwrap_or_default();
                            shared
                                .metrics
                                .streams
                                .get_or_create(&labels_for("outbound", &name, "bidi"))
                                .inc();
                            back.pairs.push(name);
                        }
                    }
                    if partner_label.is_none() {
                        let name = policy
                            .partner_for(&from)
                            .map(|p| p.name.clone())
                            .unwrap_or_default();
                        shared
                            .metrics
                            .streams
                            .get_or_create(&labels(&name, method.as_str()))
                            .inc();
                        partner_label = Some((name, method.as_str()));
                    }
                }
                Action::Deliver { stanza, from, to } => {
                    stanzas_in.inc();
                    tracing::trace!(%from, %to, kind = %stanza.name, "stanza");
                    let stanza =
                        crate::link::Outgoing::verbatim(stanza, verbatim.take(), &from, &to);
                    shared.hub.deliver(&shared, stanza).await;
                }
                Action::PeerError(e) => {
                    tracing::info!(error = ?e.map(|e| e.to_string()), "peer closed the stream with an error");
                }
                Action::Close(error) => {
                    if let Some(e) = &error {
                        let _ = conn.close_with(e).await;
                    } else {
                        let _ = conn.send(CLOSE_STREAM).await;
                    }
                    closing = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = closing {
            break error;
        }
    };
    if let Some(e) = &outcome {
        shared.metrics.reject(e.condition.as_str());
        tracing::info!(condition = %e.condition, text = %e.text, "stream closed with an error");
    } else {
        tracing::debug!("stream closed");
    }
    if let Some((name, method)) = partner_label {
        shared
            .metrics
            .streams
            .get_or_create(&labels(&name, method))
            .dec();
    }
    conn.shutdown().await;
    if let Some(back) = bidi {
        back.end(&shared).await;
    }
}

/// The return path of a bidi stream: the queue the outbound pool feeds for each of its pairs.
struct BidiReturn {
    tx: mpsc::Sender<Element>,
    rx: mpsc::Receiver<Element>,
    /// Partner name of each pair routed back over this stream (for the streams gauge).
    pairs: Vec<String>,
}

impl BidiReturn {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(crate::outbound::QUEUE_PER_PAIR);
        Self {
            tx,
            rx,
            pairs: Vec::new(),
        }
    }

    /// The next stanza to send back; never ready without a return path.
    async fn recv(back: &mut Option<Self>) -> Option<Element> {
        match back {
            Some(b) => b.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Leaves the pool; stanzas still queued take a stream of their own.
    async fn end(mut self, shared: &Arc<Shared>) {
        for name in &self.pairs {
            shared
                .metrics
                .streams
                .get_or_create(&labels_for("outbound", name, "bidi"))
                .dec();
        }
        shared.outbound.detach_bidi(&self.tx);
        self.rx.close();
        while let Ok(stanza) = self.rx.try_recv() {
            crate::outbound::send(shared, stanza).await;
        }
    }
}

fn labels(partner: &str, method: &'static str) -> StreamLabels {
    labels_for("inbound", partner, method)
}

fn labels_for(direction: &'static str, partner: &str, method: &'static str) -> StreamLabels {
    StreamLabels {
        direction,
        partner: partner.to_string(),
        method,
    }
}

/// What one frame from the partner means for the stream loop.
enum Step {
    Input(Input),
    /// Nothing to do (whitespace keepalive).
    Next,
    /// The stream is over, with the error it was closed with.
    End(Option<StreamError>),
}

async fn on_frame(
    frame: Result<Option<Frame>, ConnError>,
    conn: &mut XmppConn,
    shared: &Shared,
    slot: &mut crate::limits::Slot,
    header_sent: bool,
) -> Step {
    match frame {
        Ok(Some(Frame::Header(h))) => {
            if let Some(error) = admit(shared, slot, &h) {
                send_header_and_error(conn, &h, error.clone()).await;
                return Step::End(Some(error));
            }
            Step::Input(Input::Header(h))
        }
        Ok(Some(Frame::Element(e))) => Step::Input(Input::Element(e)),
        Ok(Some(Frame::KeepAlive)) => Step::Next,
        Ok(Some(Frame::Close)) => {
            let _ = conn.send(CLOSE_STREAM).await;
            Step::End(None)
        }
        Ok(None) => Step::End(None),
        Err(ConnError::Framing(e)) => {
            let error = e.stream_error();
            if !header_sent {
                let _ = conn
                    .send(&stream::open_stream(&stream::default_header()))
                    .await;
            }
            let _ = conn.close_with(&error).await;
            Step::End(Some(error))
        }
        Err(e) => {
            tracing::info!(error = %e, "connection failed");
            Step::End(None)
        }
    }
}

/// Per-partner connection limit, checked on the first header that names the partner.
fn admit(shared: &Shared, slot: &mut crate::limits::Slot, h: &StreamHeader) -> Option<StreamError> {
    let from = addr::domain(h.from.as_deref()?).ok()?;
    let policy = shared.policy.current();
    let partner = policy.partner_for(&from)?;
    if slot.claim_partner(&partner.name, partner.connection_limit as usize) {
        None
    } else {
        Some(StreamError::new(
            C::Conflict,
            format!(
                "{from} already has {} streams open to this federation edge (connectionLimit)",
                partner.connection_limit
            ),
        ))
    }
}

async fn send_header_and_error(conn: &mut XmppConn, h: &StreamHeader, error: StreamError) {
    let ours = StreamHeader {
        from: h.to.clone(),
        to: h.from.clone(),
        id: Some(stream::new_stream_id()),
        version: Some("1.0".into()),
        lang: None,
    };
    let _ = conn.send(&stream::open_stream(&ours)).await;
    let _ = conn.close_with(&error).await;
}

async fn refuse_before_header(
    shared: &Shared,
    conn: &mut XmppConn,
    error: StreamError,
    wait: Duration,
) {
    shared.metrics.reject(error.condition.as_str());
    if let Ok(Ok(Some(Frame::Header(h)))) = tokio::time::timeout(wait, conn.next_frame()).await {
        send_header_and_error(conn, &h, error).await;
    }
    conn.shutdown().await;
}
