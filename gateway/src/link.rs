//! The gateway's end of the internal link (see `docs/internal-link.md`): it dials every proxy
//! (mutual TLS against the link CA), keeps one link per proxy address, re-resolves the proxy
//! name (a headless Service lists every pod) and reconnects with backoff. Stanzas from
//! partners arrive here and enter [`crate::router::from_partner`]; stanzas for partners leave
//! through the [`LinkHub`](xmppfed_xmpp::link::LinkHub). What a proxy has not acknowledged
//! when its link drops is re-sent over another link or, after `link_wait`, answered to the
//! local sender with an error.

use crate::{Shared, router};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::Instrument;
use xmppfed_xmpp::conn::{Transport, XmppConn, connect_tls};
use xmppfed_xmpp::framer::{Frame, FramerLimits};
use xmppfed_xmpp::link;

/// How often the proxy names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Keeps a link to every address the proxy names resolve to, until the gateway drains.
pub async fn supervise(shared: Arc<Shared>, proxies: Vec<String>) {
    let mut running: HashMap<SocketAddr, watch::Sender<bool>> = HashMap::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let mut seen = HashSet::new();
        for target in &proxies {
            match tokio::net::lookup_host(target.as_str()).await {
                Ok(addrs) => seen.extend(addrs),
                Err(e) => tracing::warn!(%target, error = %e, "cannot resolve the proxy address"),
            }
        }
        // Links to addresses that disappeared stop retrying once they fail.
        running.retain(|a, retire| {
            if seen.contains(a) {
                !retire.is_closed()
            } else {
                retire.send_replace(true);
                false
            }
        });
        for a in seen {
            running.entry(a).or_insert_with(|| {
                let (retire, retired) = watch::channel(false);
                let span = tracing::info_span!("link", proxy = %a);
                tokio::spawn(maintain(shared.clone(), a, retired).instrument(span));
                retire
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(RESOLVE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One proxy address: connect, relay, reconnect.
async fn maintain(shared: Arc<Shared>, proxy: SocketAddr, retired: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if shared.shutting_down() || *retired.borrow() {
            return;
        }
        match run_link(&shared, proxy).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, "link to the proxy failed");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if shared.shutting_down() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn run_link(shared: &Arc<Shared>, proxy: SocketAddr) -> Result<(), String> {
    let tcp = timeout(Duration::from_secs(5), TcpStream::connect(proxy))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| format!("connection failed: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = timeout(
        Duration::from_secs(10),
        connect_tls(tcp, shared.tls.link.clone(), &shared.link_server_name),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| {
        format!(
            "TLS handshake failed (the proxy must present a certificate for {} from the link CA): {e}",
            shared.link_server_name
        )
    })?;
    let max = shared.policy.current().document().limits.max_stanza_bytes as usize;
    let mut conn = XmppConn::new(
        Transport::ClientTls(Box::new(tls)),
        FramerLimits::authenticated(max + 65_536),
    );
    conn.send(&link::client_header(&shared.name))
        .await
        .map_err(|e| e.to_string())?;
    let opened = timeout(Duration::from_secs(10), async {
        let header = conn.next_frame().await;
        let features = conn.next_frame().await;
        (header, features)
    })
    .await
    .map_err(|_| "the proxy did not answer the link header".to_string())?;
    match opened {
        (Ok(Some(Frame::Header(_))), Ok(Some(Frame::Element(f))))
            if f.get_child(link::NS, "link").is_some() => {}
        _ => return Err("the peer is not an xmppfed proxy link endpoint".into()),
    }
    let (id, rx) = shared.hub.register();
    shared.metrics.proxy_links.inc();
    tracing::info!("link to the proxy up");
    let ended = link::relay(
        &mut conn,
        rx,
        |stanza, receipt| router::from_partner(shared, stanza, receipt),
        shared.shutdown.subscribe(),
        "the gateway is draining",
    )
    .await;
    shared.hub.remove(id);
    shared.metrics.proxy_links.dec();
    tracing::info!(reason = %ended.reason, unacked = ended.unacked.len(), sent = ended.sent, "link to the proxy down");
    if !ended.unacked.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for s in ended.unacked {
                if let Err(s) = shared.hub.try_deliver(s, shared.link_wait).await
                    && let Some(s) = s.into_element()
                {
                    router::bounce_to_internal(
                        &shared,
                        &s,
                        "remote-server-timeout",
                        "the federation edge cannot be reached from the gateway right now",
                    )
                    .await;
                }
            }
        });
    }
    Ok(())
}
