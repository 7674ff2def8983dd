//! Outbound streams to partners: one authenticated stream per domain pair (RFC 6120 §10.1
//! ordering), opened on demand through SRV or the partner's static route, with a bounded
//! queue while connecting, retries with backoff, and a bounce for every stanza that cannot
//! be delivered — nothing is dropped silently.

use crate::Shared;
use crate::dns::Target;
use crate::link::GatewayLinks;
use crate::metrics::StreamLabels;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;
use xmppfed_policy::Partner;
use xmppfed_xmpp::conn::{XmppConn, connect_s2s};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::inbound::Method;
use xmppfed_xmpp::outbound::{Action, Input, Negotiated, OutboundSession, Purpose, negotiate};
use xmppfed_xmpp::stream::CLOSE_STREAM;
use xmppfed_xmpp::{StreamError, StreamErrorCondition as C, addr, ns, stanza};

/// Stanzas waiting per destination while its stream is being opened.
pub const QUEUE_PER_PAIR: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 3;

/// Where stanzas for each `(local, remote)` domain pair go: the queue of our own outbound
/// stream task, or the sending half of an inbound stream the partner opened with XEP-0288
/// bidi (no second connection needed).
#[derive(Default)]
pub struct OutboundPool {
    pairs: Mutex<HashMap<(String, String), mpsc::Sender<Element>>>,
}

impl OutboundPool {
    /// Routes `local → remote` over a bidi inbound stream, unless a stream for that pair is
    /// already running (one stream per pair keeps stanzas in order). Returns whether it did.
    pub fn attach_bidi(&self, local: &str, remote: &str, tx: &mpsc::Sender<Element>) -> bool {
        let Ok(mut pairs) = self.pairs.lock() else {
            return false;
        };
        let key = (local.to_string(), remote.to_string());
        match pairs.get(&key) {
            Some(existing) if !existing.is_closed() => false,
            _ => {
                pairs.insert(key, tx.clone());
                true
            }
        }
    }

    /// Forgets every pair routed over the bidi stream whose sender is `tx`.
    pub fn detach_bidi(&self, tx: &mpsc::Sender<Element>) {
        if let Ok(mut pairs) = self.pairs.lock() {
            pairs.retain(|_, t| !t.same_channel(tx));
        }
    }
}

/// Sends a stanza from the internal side to a partner, or bounces it to its sender.
///
/// Boxed with an explicit `Send` bound: sending may start a stream task that itself re-sends
/// stanzas, and the compiler cannot infer `Send` through that cycle.
pub fn send(
    shared: &Arc<Shared>,
    stanza: Element,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(send_inner(shared, stanza))
}

async fn send_inner(shared: &Arc<Shared>, stanza: Element) {
    let (from, to) = match (
        stanza.get_attr("from").map(addr::parse),
        stanza.get_attr("to").map(addr::parse),
    ) {
        (Some(Ok(f)), Some(Ok(t))) => (f.domain, t.domain),
        _ => {
            return bounce_to_gateway(
                shared,
                &stanza,
                "jid-malformed",
                "the stanza needs valid 'from' and 'to' addresses",
            )
            .await;
        }
    };
    let policy = shared.policy.current();
    if !policy.serves(&from) {
        return bounce_to_gateway(
            shared,
            &stanza,
            "not-allowed",
            &format!("{from} is not a domain of this federation"),
        )
        .await;
    }
    if policy.partner_for(&to).is_none() {
        return bounce_to_gateway(
            shared,
            &stanza,
            "not-allowed",
            &format!("{to} is not an allowed partner of this federation"),
        )
        .await;
    }
    if shared.shutting_down() {
        return bounce_to_gateway(
            shared,
            &stanza,
            "remote-server-timeout",
            "the federation edge is shutting down",
        )
        .await;
    }
    let key = (from, to);
    let mut stanza = Some(stanza);
    for _ in 0..2 {
        let tx = {
            let Ok(mut pairs) = shared.outbound.pairs.lock() else {
                break;
            };
            pairs
                .entry(key.clone())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUE_PER_PAIR);
                    let span = tracing::info_span!("stream", id = %crate::inbound::next_log_id("out"), dir = "out", local = %key.0, remote = %key.1);
                    tokio::spawn(run_pair(shared.clone(), key.0.clone(), key.1.clone(), rx).instrument(span));
                    tx
                })
                .clone()
        };
        let Some(s) = stanza.take() else { return };
        match tx.try_send(s) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(s)) => {
                let text = format!(
                    "more than {QUEUE_PER_PAIR} stanzas are waiting for {}",
                    key.1
                );
                return bounce_to_gateway(shared, &s, "resource-constraint", &text).await;
            }
            Err(mpsc::error::TrySendError::Closed(s)) => {
                // The stream task ended between lookup and send: replace it.
                if let Ok(mut pairs) = shared.outbound.pairs.lock()
                    && pairs.get(&key).is_some_and(|t| t.same_channel(&tx))
                {
                    pairs.remove(&key);
                }
                stanza = Some(s);
            }
        }
    }
    if let Some(s) = stanza {
        bounce_to_gateway(
            shared,
            &s,
            "internal-server-error",
            "could not queue the stanza",
        )
        .await;
    }
}

/// Answers the internal sender with a stanza error (or counts the drop of an error stanza).
pub async fn bounce_to_gateway(
    shared: &Arc<Shared>,
    stanza: &Element,
    condition: &str,
    text: &str,
) {
    shared.metrics.bounce(condition);
    tracing::info!(condition, text, to = ?stanza.get_attr("to"), "bounced to the internal sender");
    match stanza::bounce(stanza, condition, text) {
        Some(reply) => shared.hub.deliver_internal(shared, reply).await,
        None => tracing::warn!(
            condition,
            "undeliverable error stanza dropped (errors are never answered with errors)"
        ),
    }
}

async fn run_pair(
    shared: Arc<Shared>,
    local: String,
    remote: String,
    mut rx: mpsc::Receiver<Element>,
) {
    let mut failures = 0u32;
    loop {
        let policy = shared.policy.current();
        let Some(partner) = policy.partner_for(&remote).cloned() else {
            drain_and_bounce(
                &shared,
                &mut rx,
                "not-allowed",
                &format!("{remote} is no longer an allowed partner"),
            )
            .await;
            break;
        };
        match connect(&shared, &local, &remote, &partner, Purpose::Stanzas).await {
            Ok(Connected::Stream(mut conn, session, method)) => {
                failures = 0;
                tracing::info!(method = method.as_str(), "outbound stream established");
                let label = StreamLabels {
                    direction: "outbound",
                    partner: partner.name.clone(),
                    method: method.as_str(),
                };
                shared.metrics.streams.get_or_create(&label).inc();
                let ended = established(&shared, &mut conn, session, &partner, &mut rx).await;
                shared.metrics.streams.get_or_create(&label).dec();
                conn.shutdown().await;
                match ended {
                    Ended::Idle | Ended::Shutdown => {}
                    Ended::Failed(why) => tracing::info!(%why, "outbound stream ended"),
                }
                if shared.shutting_down() {
                    drain_and_bounce(
                        &shared,
                        &mut rx,
                        "remote-server-timeout",
                        "the federation edge is shutting down",
                    )
                    .await;
                    break;
                }
                if rx.is_empty() {
                    break;
                }
            }
            Ok(Connected::Verified(_)) => break,
            Err(why) => {
                failures += 1;
                tracing::warn!(attempt = failures, %why, "outbound connection failed");
                if failures >= ATTEMPTS {
                    let condition = if why.contains("DNS") || why.contains("no XMPP") {
                        "remote-server-not-found"
                    } else {
                        "remote-server-timeout"
                    };
                    drain_and_bounce(
                        &shared,
                        &mut rx,
                        condition,
                        &format!("could not reach {remote}: {why}"),
                    )
                    .await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(failures - 1))).await;
            }
        }
    }
    // Leave the pool, then hand anything that raced in to a new stream.
    if let Ok(mut pairs) = shared.outbound.pairs.lock() {
        pairs.remove(&(local.clone(), remote.clone()));
    }
    rx.close();
    while let Ok(s) = rx.try_recv() {
        send(&shared, s).await;
    }
}

async fn drain_and_bounce(
    shared: &Arc<Shared>,
    rx: &mut mpsc::Receiver<Element>,
    condition: &str,
    text: &str,
) {
    while let Ok(s) = rx.try_recv() {
        bounce_to_gateway(shared, &s, condition, text).await;
    }
}

enum Ended {
    Idle,
    Shutdown,
    Failed(String),
}

/// Relays queued stanzas until the stream idles out, fails, the partner is removed, or the
/// proxy drains.
async fn established(
    shared: &Arc<Shared>,
    conn: &mut XmppConn,
    mut session: OutboundSession,
    partner: &Partner,
    rx: &mut mpsc::Receiver<Element>,
) -> Ended {
    let mut policy_rx = shared.policy.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut last_sent = Instant::now();
    // Over a bidi stream the partner's stanzas keep the stream in use, too.
    let mut last_received = Instant::now();
    loop {
        let limits = shared.policy.current().document().limits.clone();
        let inactivity = Duration::from_secs(limits.stream_inactivity_timeout_seconds);
        let keepalive = Duration::from_secs(limits.keep_alive_interval_seconds);
        tokio::select! {
            next = rx.recv() => {
                let Some(s) = next else { return Ended::Idle };
                let xml = s.to_xml_in(ns::SERVER);
                if let Err(e) = conn.send(&xml).await {
                    bounce_to_gateway(shared, &s, "remote-server-timeout", &format!("the stream to {} failed: {e}", partner.domain)).await;
                    return Ended::Failed(e.to_string());
                }
                shared.metrics.stanza("outbound");
                last_sent = Instant::now();
            }
            frame = conn.next_frame() => match frame {
                Ok(Some(Frame::Element(e))) => {
                    for a in session.handle(Input::Element(e)) {
                        match a {
                            Action::Received(stanza) => {
                                // XEP-0288: the partner's stanza to us over our stream, checked
                                // by the session to come from the partner and go to us.
                                shared.metrics.stanza("inbound");
                                last_received = Instant::now();
                                shared.hub.deliver(shared, stanza.into()).await;
                            }
                            Action::Fail { send, reason } => {
                                if let Some(err) = send {
                                    let _ = conn.close_with(&err).await;
                                }
                                return Ended::Failed(reason);
                            }
                            _ => {}
                        }
                    }
                }
                Ok(Some(Frame::KeepAlive | Frame::Header(_))) => {}
                Ok(Some(Frame::Close)) | Ok(None) => {
                    let _ = conn.send(CLOSE_STREAM).await;
                    return Ended::Failed(format!("{} closed the stream", partner.domain));
                }
                Err(e) => return Ended::Failed(e.to_string()),
            },
            _ = sleep_until(last_sent + keepalive), if partner.keep_alive => {
                // Whitespace keepalive (RFC 6120 §4.6.1) keeps NATs and the peer's idle timer happy.
                if conn.send(" ").await.is_err() {
                    return Ended::Failed("keepalive write failed".into());
                }
                last_sent = Instant::now();
            }
            _ = sleep_until(last_sent.max(last_received) + inactivity), if !partner.keep_alive => {
                let _ = conn.send(CLOSE_STREAM).await;
                return Ended::Idle;
            }
            changed = policy_rx.changed() => {
                if changed.is_err() { continue; }
                let policy = policy_rx.borrow_and_update().clone();
                let why = match policy.partner_for(&partner.domain) {
                    None => Some(StreamError::new(C::PolicyViolation, format!("{} was removed from the allowed partners", partner.domain))),
                    Some(p) if p.negotiation() != partner.negotiation() || p.proxy != partner.proxy => Some(StreamError::new(C::Reset, "the partner policy changed; reconnecting under the new rules")),
                    Some(_) => None,
                };
                if let Some(err) = why {
                    let _ = conn.close_with(&err).await;
                    return Ended::Failed(err.to_string());
                }
            }
            _ = shutdown.changed() => {
                let err = StreamError::new(C::SystemShutdown, "this federation edge instance is shutting down");
                let _ = conn.close_with(&err).await;
                return Ended::Shutdown;
            }
        }
    }
}

/// Receiving side of dialback: asks `originating`'s authoritative server whether `key` is
/// its key for the stream `stream_id` to `receiving`.
pub async fn verify_dialback(
    shared: &Arc<Shared>,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, String> {
    let policy = shared.policy.current();
    let partner = policy
        .partner_for(originating)
        .cloned()
        .ok_or_else(|| format!("{originating} is not an allowed partner"))?;
    let purpose = Purpose::Verify {
        stream_id: stream_id.to_string(),
        key: key.to_string(),
    };
    match timeout(
        Duration::from_secs(30),
        connect(shared, receiving, originating, &partner, purpose),
    )
    .await
    {
        Ok(Ok(Connected::Verified(v))) => Ok(v),
        Ok(Ok(Connected::Stream(..))) => {
            Err("the authoritative server did not answer the verification".into())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".into()),
    }
}

enum Connected {
    Stream(Box<XmppConn>, OutboundSession, Method),
    Verified(bool),
}

/// Resolves, connects and negotiates, trying each target in order.
async fn connect(
    shared: &Arc<Shared>,
    local: &str,
    remote: &str,
    partner: &Partner,
    purpose: Purpose,
) -> Result<Connected, String> {
    let targets = match &partner.proxy {
        Some(route) => vec![Target {
            host: route.host.clone(),
            port: route.port,
            direct_tls: false,
        }],
        None => shared
            .dns
            .targets(remote)
            .await
            .map_err(|e| e.to_string())?,
    };
    let mut last_error = format!("no address for {remote}");
    for target in targets {
        let addrs = match shared.dns.addresses(&target.host, target.port).await {
            Ok(a) => a,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        for addr in addrs {
            match attempt(shared, local, remote, partner, &purpose, &target, addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(%addr, direct_tls = target.direct_tls, error = %e, "target failed");
                    last_error = format!("{}:{} ({addr}): {e}", target.host, target.port);
                }
            }
        }
    }
    Err(last_error)
}

async fn attempt(
    shared: &Arc<Shared>,
    local: &str,
    remote: &str,
    partner: &Partner,
    purpose: &Purpose,
    target: &Target,
    addr: std::net::SocketAddr,
) -> Result<Connected, String> {
    let direct = target.direct_tls.then(|| shared.tls.client_direct.clone());
    let mut conn = connect_s2s(addr, direct, remote, CONNECT_TIMEOUT).await?;
    let chain = conn.peer_chain();
    let mut session = OutboundSession::new(
        local,
        remote,
        partner.negotiation(),
        shared.trust.clone(),
        shared.secret.clone(),
        purpose.clone(),
        target.direct_tls,
        chain,
    )
    .with_bidi();
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
        negotiate(&mut conn, &mut session, shared.tls.client_starttls.clone()),
    )
    .await
    .map_err(|_| format!("not established within {} s", establishment.as_secs()))??;
    Ok(match outcome {
        Negotiated::Established(method) => {
            let max = shared.policy.current().document().limits.max_stanza_bytes as usize;
            conn.framer_mut()
                .set_limits(FramerLimits::authenticated(max));
            Connected::Stream(Box::new(conn), session, method)
        }
        Negotiated::Verified(valid) => Connected::Verified(valid),
    })
}
