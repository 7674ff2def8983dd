//! xmppfed-proxy: the edge XMPP server-to-server proxy — the only component partner servers
//! talk to (Lync's "XMPP proxy on the Edge").
//!
//! One module per concern: [`inbound`] accepts partner streams on 5269 (STARTTLS) and 5270
//! (direct TLS) and polices them; [`outbound`] opens one authenticated stream per domain pair
//! (SRV or static route) with a bounded queue and bounces; [`link`] is the mutual-TLS link to
//! the gateways; the policy is swapped live by `xmppfed-policy-source`; [`dns`], [`metrics`]
//! and [`http`] (`/healthz`, `/readyz`, `/metrics`) serve them. The protocol itself — framing,
//! negotiation state machines, identity, dialback — is `xmppfed-xmpp`.

pub mod dns;
pub mod http;
pub mod inbound;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod outbound;

use metrics::Metrics;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use xmppfed_policy::CompiledPolicy;
use xmppfed_policy_source::PolicyHolder;
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::inbound::InboundPolicy;
use xmppfed_xmpp::tls::{self, CertStore, Identity, TlsMode};

/// Everything the proxy needs to run, already loaded (see `main.rs` for the files).
pub struct ProxyConfig {
    /// STARTTLS listener (5269).
    pub starttls_listen: SocketAddr,
    /// Direct TLS listener (5270, XEP-0368).
    pub direct_tls_listen: Option<SocketAddr>,
    /// Internal link listener (23456).
    pub link_listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub http_listen: Option<SocketAddr>,
    /// Where the compiled policy document comes from (a file or the operator's ConfigMap).
    pub policy: xmppfed_policy_source::Source,
    /// Our certificate for the served domains.
    pub identity: Identity,
    /// CAs trusted for partner certificates.
    pub peer_trust: TrustStore,
    pub dialback_secret: DialbackSecret,
    /// Certificate and CA of the internal link.
    pub link_identity: Identity,
    pub link_ca: Vec<CertificateDer<'static>>,
    /// DNS server to ask instead of the system's (tests, split horizon).
    pub dns_server: Option<SocketAddr>,
    /// How long stanzas for the gateway wait for a link before they are bounced.
    pub link_wait: Duration,
    /// How long a drain waits for streams to finish.
    pub drain_timeout: Duration,
}

/// TLS configurations, built once.
pub struct TlsSet {
    pub starttls: TlsAcceptor,
    pub direct: TlsAcceptor,
    pub client_starttls: Arc<rustls::ClientConfig>,
    pub client_direct: Arc<rustls::ClientConfig>,
}

/// State shared by every task.
pub struct Shared {
    pub policy: Arc<PolicyHolder>,
    pub metrics: Arc<Metrics>,
    pub trust: Arc<TrustStore>,
    pub secret: DialbackSecret,
    pub tls: TlsSet,
    pub dns: dns::Dns,
    pub outbound: outbound::OutboundPool,
    pub hub: link::LinkHub,
    pub counts: limits::ConnCounts,
    pub shutdown: watch::Sender<bool>,
    pub link_wait: Duration,
}

impl Shared {
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// The compiled policy seen through the protocol library's eyes.
pub struct PolicyView<'a>(pub &'a CompiledPolicy);

impl InboundPolicy for PolicyView<'_> {
    fn serves(&self, domain: &str) -> bool {
        self.0.serves(domain)
    }
    fn partner(&self, domain: &str) -> Option<xmppfed_policy::NegotiationSettings> {
        self.0.partner_for(domain).map(|p| p.negotiation())
    }
    fn max_stanza_bytes(&self) -> usize {
        self.0.document().limits.max_stanza_bytes as usize
    }
    fn idle_seconds(&self) -> u64 {
        self.0.document().limits.stream_inactivity_timeout_seconds
    }
}

/// Accepts connections until the proxy drains, handing each to `handle` (which spawns).
pub(crate) async fn accept_until_shutdown(
    shared: &Shared,
    listener: TcpListener,
    mut handle: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    handle(tcp, peer);
                }
                Err(e) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A running proxy.
pub struct RunningProxy {
    pub shared: Arc<Shared>,
    pub starttls_addr: SocketAddr,
    pub direct_tls_addr: Option<SocketAddr>,
    pub link_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    drain_timeout: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningProxy {
    /// Graceful drain: stop accepting, close every stream with `<system-shutdown/>`, give
    /// queued stanzas a chance to leave, then stop.
    pub async fn shutdown(self) {
        tracing::info!("draining");
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while self.shared.counts.total() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Binds the listeners and starts serving.
pub async fn start(config: ProxyConfig) -> anyhow::Result<RunningProxy> {
    let metrics = Arc::new(Metrics::new());
    let loaded = config
        .policy
        .load(metrics.policy.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let policy = loaded.holder;
    let mut store = CertStore::new();
    store.insert("*", config.identity.clone());
    let tls = TlsSet {
        starttls: TlsAcceptor::from(tls::s2s_server_config(&store, None, TlsMode::StartTls)?),
        direct: TlsAcceptor::from(tls::s2s_server_config(&store, None, TlsMode::Direct)?),
        client_starttls: tls::s2s_client_config(Some(&config.identity), TlsMode::StartTls)?,
        client_direct: tls::s2s_client_config(Some(&config.identity), TlsMode::Direct)?,
    };
    let dns = match config.dns_server {
        Some(server) => dns::Dns::with_server(server),
        None => dns::Dns::system()?,
    };
    let shared = Arc::new(Shared {
        policy: policy.clone(),
        metrics: metrics.clone(),
        trust: Arc::new(config.peer_trust),
        secret: config.dialback_secret,
        tls,
        dns,
        outbound: outbound::OutboundPool::default(),
        hub: link::LinkHub::default(),
        counts: limits::ConnCounts::default(),
        shutdown: watch::Sender::new(false),
        link_wait: config.link_wait,
    });

    let mut tasks = Vec::new();
    let starttls = TcpListener::bind(config.starttls_listen).await?;
    let starttls_addr = starttls.local_addr()?;
    tasks.push(tokio::spawn(inbound::accept_loop(
        shared.clone(),
        starttls,
        false,
    )));
    let direct_tls_addr = match config.direct_tls_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            let a = l.local_addr()?;
            tasks.push(tokio::spawn(inbound::accept_loop(shared.clone(), l, true)));
            Some(a)
        }
        None => None,
    };
    let link_config = tls::link_server_config(&config.link_identity, &config.link_ca)?;
    let link_listener = TcpListener::bind(config.link_listen).await?;
    let link_addr = link_listener.local_addr()?;
    tasks.push(tokio::spawn(link::accept_loop(
        shared.clone(),
        link_listener,
        TlsAcceptor::from(link_config),
    )));
    let http_addr = match config.http_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            let a = l.local_addr()?;
            tasks.push(tokio::spawn(http::serve(shared.clone(), l)));
            Some(a)
        }
        None => None,
    };
    tasks.push(tokio::spawn(loaded.updates));
    tracing::info!(%starttls_addr, ?direct_tls_addr, %link_addr, ?http_addr, "proxy listening");
    Ok(RunningProxy {
        shared,
        starttls_addr,
        direct_tls_addr,
        link_addr,
        http_addr,
        drain_timeout: config.drain_timeout,
        tasks,
    })
}
