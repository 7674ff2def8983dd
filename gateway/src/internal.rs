//! S2S with the organisation's own XMPP servers (`gateway.internalServers`).
//!
//! For an internal server the gateway *is* every allowed partner domain: the internal server
//! reaches it through DNS answers meant for it alone ([`crate::dns`]) and opens streams
//! `from=<our domain> to=<partner domain>`; the gateway opens streams the other way, straight to
//! the server's `host:port`. Authentication uses the same state machines as the edge: SASL
//! EXTERNAL when certificates allow (the internal server's certificate from the internal CA;
//! the gateway's certificate naming the partner domains), else dialback inside TLS, whose
//! verification connections also come here (inbound) or go to the server's `host:port`
//! (outbound). TLS follows each server's `tls` setting.

use crate::{Shared, router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;
use xmppfed_policy::document::InternalServer;
use xmppfed_policy::{CompiledPolicy, Negotiation, NegotiationSettings};
use xmppfed_xmpp::conn::{BATCH_BYTES, ConnError, Transport, XmppConn, connect_s2s};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::inbound::{Action, InboundPolicy, InboundSession, Input};
use xmppfed_xmpp::link::Receipt;
use xmppfed_xmpp::outbound::{Negotiated, OutboundSession, Purpose, negotiate};
use xmppfed_xmpp::stream::{self, CLOSE_STREAM};
use xmppfed_xmpp::{StreamError, StreamErrorCondition as C, addr, ns};

/// Stanzas waiting per domain pair while its stream to the internal server opens.
pub const QUEUE_PER_PAIR: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 3;

/// The internal server hosting a local `domain`.
pub fn server_for<'a>(policy: &'a CompiledPolicy, domain: &str) -> Option<&'a InternalServer> {
    if !policy.serves(domain) {
        return None;
    }
    policy
        .document()
        .gateway
        .internal_servers
        .iter()
        .find(|s| s.domains.iter().any(|d| d == domain))
}

/// How the gateway and an internal server authenticate each other: TLS as configured,
/// SASL EXTERNAL when the certificates allow it, dialback otherwise.
fn settings(server: &InternalServer) -> NegotiationSettings {
    NegotiationSettings::new(server.tls, Negotiation::Optional, true)
}

/// The policy as the receiving state machine sees it on the internal side: the gateway
/// "serves" the partner domains, and its "partners" are the local domains of the internal
/// servers.
pub struct InternalView<'a>(pub &'a CompiledPolicy);

impl InboundPolicy for InternalView<'_> {
    fn serves(&self, domain: &str) -> bool {
        self.0.partner_for(domain).is_some()
    }
    fn partner(&self, domain: &str) -> Option<NegotiationSettings> {
        server_for(self.0, domain).map(settings)
    }
    fn max_stanza_bytes(&self) -> usize {
        self.0.document().limits.max_stanza_bytes as usize
    }
    fn idle_seconds(&self) -> u64 {
        self.0.document().limits.stream_inactivity_timeout_seconds
    }
}

// ---------------------------------------------------------------------------------------
// Inbound: streams the internal server opens to "partner domains".

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    seq += 1;
                    let span = tracing::info_span!("stream", id = %format!("int-in-{seq}"), dir = "in", %peer);
                    tokio::spawn(serve(shared.clone(), tcp, peer).instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let limits = shared.policy.current().document().limits.clone();
    let establishment = Duration::from_secs(limits.stream_establishment_timeout_seconds);
    let mut conn = XmppConn::new(Transport::Plain(tcp), FramerLimits::PRE_AUTH);
    let mut session = InboundSession::new(
        shared.trust.clone(),
        shared.secret.clone(),
        false,
        Vec::new(),
    );
    let (checked_tx, mut checked_rx) = mpsc::channel::<Input>(4);
    let mut policy_rx = shared.policy.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let started = Instant::now();
    let mut last_activity = Instant::now();
    let mut header_sent = false;
    let mut counted = false;
    tracing::debug!(%peer, "internal server connected");
    let outcome: Option<StreamError> = loop {
        let policy = shared.policy.current();
        let inactivity =
            Duration::from_secs(policy.document().limits.stream_inactivity_timeout_seconds);
        let authenticated = session.is_authenticated();
        let input = tokio::select! {
            frame = conn.next_frame() => {
                last_activity = Instant::now();
                match frame {
                    Ok(Some(Frame::Header(h))) => Input::Header(h),
                    Ok(Some(Frame::Element(e))) => Input::Element(e),
                    Ok(Some(Frame::KeepAlive)) => continue,
                    Ok(Some(Frame::Close)) => {
                        let _ = conn.send(CLOSE_STREAM).await;
                        break None;
                    }
                    Ok(None) => break None,
                    Err(ConnError::Framing(e)) => {
                        let error = e.stream_error();
                        if !header_sent {
                            let _ = conn.send(&stream::open_stream(&stream::default_header())).await;
                        }
                        let _ = conn.close_with(&error).await;
                        break Some(error);
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "connection failed");
                        break None;
                    }
                }
            }
            Some(input) = checked_rx.recv() => input,
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
                if let Some(error) = session.recheck(&InternalView(&policy)) {
                    let _ = conn.close_with(&error).await;
                    break Some(error);
                }
                continue;
            }
            _ = shutdown.changed() => {
                let error = StreamError::new(C::SystemShutdown, "this federation gateway is shutting down; reconnect to reach another");
                let _ = conn.close_with(&error).await;
                break Some(error);
            }
        };
        let mut queue: std::collections::VecDeque<Action> =
            session.handle(input, &InternalView(&policy)).into();
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
                Action::StartTls => match conn.upgrade_server(&shared.tls.acceptor).await {
                    Ok(()) => queue.extend(session.handle(
                        Input::TlsEstablished(conn.peer_chain()),
                        &InternalView(&policy),
                    )),
                    Err(e) => {
                        tracing::info!(error = %e, "STARTTLS failed");
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
                    let tx = checked_tx.clone();
                    tokio::spawn(
                        async move {
                            let result =
                                verify_dialback(&shared, &to, &from, &stream_id, &key).await;
                            let _ = tx.send(Input::DialbackChecked { from, to, result }).await;
                        }
                        .in_current_span(),
                    );
                }
                Action::Authenticated { from, to, method } => {
                    tracing::info!(%from, %to, method = method.as_str(), "internal server authenticated");
                    if !counted {
                        counted = true;
                        shared.metrics.internal_streams.get_or_create(&IN).inc();
                    }
                }
                Action::Deliver { stanza, .. } => router::to_partner(&shared, stanza).await,
                Action::PeerError(e) => {
                    tracing::info!(error = ?e.map(|e| e.to_string()), "internal server closed the stream with an error");
                }
                Action::Close(error) => {
                    match &error {
                        Some(e) => {
                            let _ = conn.close_with(e).await;
                        }
                        None => {
                            let _ = conn.send(CLOSE_STREAM).await;
                        }
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
        tracing::info!(condition = %e.condition, text = %e.text, "internal stream closed with an error");
    }
    if counted {
        shared.metrics.internal_streams.get_or_create(&IN).dec();
    }
    conn.shutdown().await;
}

const IN: crate::metrics::DirectionLabels = crate::metrics::DirectionLabels { direction: "in" };
const OUT: crate::metrics::DirectionLabels = crate::metrics::DirectionLabels { direction: "out" };

// ---------------------------------------------------------------------------------------
// Outbound: one stream per (partner domain, local domain) pair to the internal server.

/// A stanza for the internal server, with the link receipt it carries until written.
type Queued = (Element, Receipt);

#[derive(Default)]
pub struct Pool {
    pairs: Mutex<HashMap<(String, String), mpsc::Sender<Queued>>>,
}

impl Pool {
    /// Streams still open or still delivering their queue (a drain waits for none).
    pub fn active(&self) -> usize {
        self.pairs.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// Delivers a stanza for a local user (already policed) to its internal server, or answers
/// the partner's sender with an error. The receipt is dropped once the stanza is written.
pub fn send(
    shared: &Arc<Shared>,
    stanza: Element,
    receipt: Receipt,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(send_inner(shared, stanza, receipt))
}

/// Refuses a stanza the gateway cannot deliver because it is shutting down — unless it came
/// over a link, whose sender will deliver it again through another gateway (or this one
/// restarted) if it is left unacknowledged.
fn give_back(shared: &Arc<Shared>, stanza: Element, receipt: Receipt) {
    if receipt.is_tracked() {
        receipt.abandon();
    } else {
        router::refuse_from_partner(
            shared,
            &stanza,
            "remote-server-timeout",
            "the federation gateway is shutting down",
        );
    }
}

async fn send_inner(shared: &Arc<Shared>, stanza: Element, receipt: Receipt) {
    let pair = match (
        stanza.get_attr("from").map(addr::parse),
        stanza.get_attr("to").map(addr::parse),
    ) {
        (Some(Ok(f)), Some(Ok(t))) => (f.domain, t.domain),
        _ => {
            return router::refuse_from_partner(
                shared,
                &stanza,
                "jid-malformed",
                "the stanza needs valid 'from' and 'to' addresses",
            );
        }
    };
    if shared.shutting_down() {
        return give_back(shared, stanza, receipt);
    }
    let mut stanza = Some((stanza, receipt));
    for _ in 0..2 {
        let tx = {
            let Ok(mut pairs) = shared.pool.pairs.lock() else {
                break;
            };
            pairs
                .entry(pair.clone())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE_PER_PAIR);
                    let span = tracing::info_span!("stream", dir = "out", local = %pair.0, remote = %pair.1);
                    tokio::spawn(
                        run_pair(shared.clone(), pair.0.clone(), pair.1.clone(), rx).instrument(span),
                    );
                    tx
                })
                .clone()
        };
        let Some(s) = stanza.take() else { return };
        match tx.try_send(s) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full((s, _receipt))) => {
                let text = format!(
                    "more than {QUEUE_PER_PAIR} stanzas are waiting for {}",
                    pair.1
                );
                return router::refuse_from_partner(shared, &s, "resource-constraint", &text);
            }
            Err(mpsc::error::TrySendError::Closed(s)) => {
                if let Ok(mut pairs) = shared.pool.pairs.lock()
                    && pairs.get(&pair).is_some_and(|t| t.same_channel(&tx))
                {
                    pairs.remove(&pair);
                }
                stanza = Some(s);
            }
        }
    }
    if let Some((s, _receipt)) = stanza {
        router::refuse_from_partner(
            shared,
            &s,
            "internal-server-error",
            "could not queue the stanza",
        );
    }
}

fn drain_and_refuse(
    shared: &Arc<Shared>,
    rx: &mut mpsc::Receiver<Queued>,
    condition: &str,
    text: &str,
) {
    while let Ok((s, _receipt)) = rx.try_recv() {
        router::refuse_from_partner(shared, &s, condition, text);
    }
}

async fn run_pair(
    shared: Arc<Shared>,
    local: String,
    remote: String,
    mut rx: mpsc::Receiver<Queued>,
) {
    let mut failures = 0u32;
    loop {
        let policy = shared.policy.current();
        let Some(server) = server_for(&policy, &remote).cloned() else {
            drain_and_refuse(
                &shared,
                &mut rx,
                "service-unavailable",
                &format!("{remote} has no internal server configured"),
            );
            break;
        };
        match connect(&shared, &local, &remote, &server, Purpose::Stanzas).await {
            Ok(Connected::Stream(mut conn, method)) => {
                failures = 0;
                tracing::info!(
                    method = method.as_str(),
                    "stream to the internal server established"
                );
                shared.metrics.internal_streams.get_or_create(&OUT).inc();
                let ended = established(&shared, &mut conn, &mut rx).await;
                shared.metrics.internal_streams.get_or_create(&OUT).dec();
                conn.shutdown().await;
                if let Err(why) = ended {
                    tracing::info!(%why, "stream to the internal server ended");
                }
                if shared.shutting_down() {
                    while let Ok((s, receipt)) = rx.try_recv() {
                        give_back(&shared, s, receipt);
                    }
                    break;
                }
                if rx.is_empty() {
                    break;
                }
            }
            Ok(Connected::Verified(_)) => break,
            Err(why) => {
                failures += 1;
                tracing::warn!(attempt = failures, %why, "connection to the internal server failed");
                if failures >= ATTEMPTS {
                    drain_and_refuse(
                        &shared,
                        &mut rx,
                        "service-unavailable",
                        &format!("the organisation's server for {remote} cannot be reached"),
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(failures - 1))).await;
            }
        }
    }
    if let Ok(mut pairs) = shared.pool.pairs.lock() {
        pairs.remove(&(local.clone(), remote.clone()));
    }
    rx.close();
    while let Ok((s, receipt)) = rx.try_recv() {
        send(&shared, s, receipt).await;
    }
}

/// Writes `first` and whatever else is already queued in one write. Their receipts are
/// dropped (the link acknowledges them) once the write succeeded; on failure the stanzas come
/// back with the error.
async fn write_batch(
    conn: &mut XmppConn,
    first: Queued,
    rx: &mut mpsc::Receiver<Queued>,
) -> Result<(), (Vec<Queued>, std::io::Error)> {
    let mut batch = first.0.to_xml_in(ns::SERVER);
    let mut written = vec![first];
    while batch.len() < BATCH_BYTES {
        let Ok(next) = rx.try_recv() else { break };
        next.0.write_to(&mut batch, ns::SERVER);
        written.push(next);
    }
    conn.send(&batch).await.map_err(|e| (written, e))
}

/// Relays queued stanzas until the stream idles out, fails or the gateway drains (which
/// first writes out what is queued).
async fn established(
    shared: &Arc<Shared>,
    conn: &mut XmppConn,
    rx: &mut mpsc::Receiver<Queued>,
) -> Result<(), String> {
    let mut shutdown = shared.shutdown.subscribe();
    if shared.shutting_down() {
        // Connected after the drain began: flush at once.
        shutdown.mark_changed();
    }
    let mut last_sent = Instant::now();
    loop {
        let limits = shared.policy.current().document().limits.clone();
        let inactivity = Duration::from_secs(limits.stream_inactivity_timeout_seconds);
        tokio::select! {
            next = rx.recv() => {
                let Some(first) = next else { return Ok(()) };
                if let Err((unwritten, e)) = write_batch(conn, first, rx).await {
                    for (s, _receipt) in unwritten {
                        router::refuse_from_partner(shared, &s, "remote-server-timeout", "the stream to the organisation's server failed");
                    }
                    return Err(e.to_string());
                }
                last_sent = Instant::now();
            }
            frame = conn.next_frame() => match frame {
                // The internal server sends nothing on this direction but errors and pings'
                // whitespace; stanzas come on the streams it opens.
                Ok(Some(Frame::Element(_) | Frame::KeepAlive | Frame::Header(_))) => {}
                Ok(Some(Frame::Close)) | Ok(None) => {
                    let _ = conn.send(CLOSE_STREAM).await;
                    return Err("the internal server closed the stream".into());
                }
                Err(e) => return Err(e.to_string()),
            },
            _ = sleep_until(last_sent + inactivity) => {
                let _ = conn.send(CLOSE_STREAM).await;
                return Ok(());
            }
            _ = shutdown.changed() => {
                // The links stop taking stanzas on the same signal: what is queued now is all
                // there will be, and it was accepted, so it goes out before the stream closes.
                while let Ok(first) = rx.try_recv() {
                    if let Err((unwritten, _)) = write_batch(conn, first, rx).await {
                        for (s, receipt) in unwritten {
                            give_back(shared, s, receipt);
                        }
                        return Err("the stream failed while draining".into());
                    }
                }
                let err = StreamError::new(C::SystemShutdown, "this federation gateway is shutting down");
                let _ = conn.close_with(&err).await;
                return Ok(());
            }
        }
    }
}

/// Receiving side of dialback from an internal server: asks that server (by its configured
/// address, not DNS) whether it issued `key`.
async fn verify_dialback(
    shared: &Arc<Shared>,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, String> {
    let policy = shared.policy.current();
    let server = server_for(&policy, originating)
        .cloned()
        .ok_or_else(|| format!("{originating} is not a domain of an internal server"))?;
    let purpose = Purpose::Verify {
        stream_id: stream_id.to_string(),
        key: key.to_string(),
    };
    match timeout(
        Duration::from_secs(30),
        connect(shared, receiving, originating, &server, purpose),
    )
    .await
    {
        Ok(Ok(Connected::Verified(v))) => Ok(v),
        Ok(Ok(Connected::Stream(..))) => {
            Err("the internal server did not answer the verification".into())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".into()),
    }
}

enum Connected {
    Stream(Box<XmppConn>, xmppfed_xmpp::inbound::Method),
    Verified(bool),
}

async fn connect(
    shared: &Arc<Shared>,
    local: &str,
    remote: &str,
    server: &InternalServer,
    purpose: Purpose,
) -> Result<Connected, String> {
    let target = format!("{}:{}", server.host, server.port);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("resolving {target}: {e}"))?
        .collect();
    let mut last = format!("no address for {target}");
    for a in addrs {
        match attempt(shared, local, remote, server, &purpose, a).await {
            Ok(c) => return Ok(c),
            Err(e) => last = format!("{target} ({a}): {e}"),
        }
    }
    Err(last)
}

async fn attempt(
    shared: &Arc<Shared>,
    local: &str,
    remote: &str,
    server: &InternalServer,
    purpose: &Purpose,
    a: SocketAddr,
) -> Result<Connected, String> {
    let mut conn = connect_s2s(a, None, remote, CONNECT_TIMEOUT).await?;
    let mut session = OutboundSession::new(
        local,
        remote,
        settings(server),
        shared.trust.clone(),
        shared.secret.clone(),
        purpose.clone(),
        false,
        Vec::new(),
    );
    let establishment = Duration::from_secs(
        shared
            .policy
            .current()
            .document()
            .limits
            .stream_establishment_timeout_seconds,
    );
    let outcome = timeout(
        establishment,
        negotiate(&mut conn, &mut session, shared.tls.client.clone()),
    )
    .await
    .map_err(|_| format!("not established within {} s", establishment.as_secs()))??;
    Ok(match outcome {
        Negotiated::Established(method) => {
            let max = shared.policy.current().document().limits.max_stanza_bytes as usize;
            conn.framer_mut()
                .set_limits(FramerLimits::authenticated(max));
            Connected::Stream(Box::new(conn), method)
        }
        Negotiated::Verified(v) => Connected::Verified(v),
    })
}
