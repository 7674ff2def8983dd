//! xmppfed-gateway: the internal policy point (Lync's "XMPP gateway on the Front End").
//!
//! It sits between the proxies (the internal link, [`link`]) and the organisation's own XMPP
//! servers (S2S, [`internal`]), and decides for every stanza ([`access`]): the per-user
//! `ExternalAccessPolicy`, the partner type's rules (prior contact, status notes), presence
//! subscription bookkeeping ([`subscriptions`]) and optional body auditing ([`router`]). What it
//! must remember across restarts is in [`store`]. The internal server finds it through
//! split-horizon DNS served by [`dns`]. The policy is the same compiled document the proxies
//! load, hot-reloaded by `xmppfed-policy-source`.

pub mod access;
pub mod dns;
pub mod internal;
pub mod link;
pub mod metrics;
pub mod router;
pub mod store;
pub mod subscriptions;
#[cfg(test)]
mod testpolicy;

use hyper::StatusCode;
use metrics::Metrics;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use xmppfed_policy_source::PolicyHolder;
use xmppfed_policy_source::health::{self, OPENMETRICS, Reply};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::link::LinkHub;
use xmppfed_xmpp::tls::{self, CertStore, Identity, TlsMode};

/// Everything the gateway needs to run, already loaded (see `main.rs` for the files).
pub struct GatewayConfig {
    /// This gateway's name on the link (the pod name).
    pub name: String,
    /// S2S listener for the internal servers (STARTTLS).
    pub s2s_listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub http_listen: Option<SocketAddr>,
    /// The split-horizon DNS responder for the internal servers, if this gateway runs one.
    pub dns: Option<dns::DnsConfig>,
    pub policy: xmppfed_policy_source::Source,
    /// Certificate presented to the internal servers (for SASL EXTERNAL it names the partner
    /// domains; any certificate works with dialback).
    pub identity: Identity,
    /// CAs of the internal servers' certificates.
    pub internal_trust: TrustStore,
    pub dialback_secret: DialbackSecret,
    /// `host:port` of the proxies' link listeners (a headless Service name lists every pod).
    pub proxies: Vec<String>,
    pub link_identity: Identity,
    pub link_ca: Vec<CertificateDer<'static>>,
    /// The name in the proxies' link certificate.
    pub link_server_name: String,
    pub store: Arc<dyn store::ContactStore>,
    /// How long stanzas wait for a link before they are answered with an error.
    pub link_wait: Duration,
    pub drain_timeout: Duration,
}

pub struct TlsSet {
    pub acceptor: TlsAcceptor,
    pub client: Arc<rustls::ClientConfig>,
    pub link: Arc<rustls::ClientConfig>,
}

/// State shared by every task.
pub struct Shared {
    pub name: String,
    pub policy: Arc<PolicyHolder>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn store::ContactStore>,
    pub trust: Arc<TrustStore>,
    pub secret: DialbackSecret,
    pub tls: TlsSet,
    pub hub: LinkHub,
    pub pool: internal::Pool,
    pub shutdown: watch::Sender<bool>,
    pub link_wait: Duration,
    pub link_server_name: String,
}

impl Shared {
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A running gateway.
pub struct RunningGateway {
    pub shared: Arc<Shared>,
    pub s2s_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub dns_addr: Option<SocketAddr>,
    drain_timeout: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    /// Graceful drain: stop taking stanzas from the proxies, write out what is queued for the
    /// internal servers, acknowledge it, close streams and links with `<system-shutdown/>`,
    /// then stop. Whatever is not written by then stays unacknowledged, and the proxies
    /// deliver it again.
    pub async fn shutdown(self) {
        tracing::info!("draining");
        self.shared.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while (self.shared.hub.connected() > 0 || self.shared.pool.active() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    let metrics = Arc::new(Metrics::new());
    let loaded = config
        .policy
        .load(metrics.policy.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut certs = CertStore::new();
    certs.insert("*", config.identity.clone());
    let tls = TlsSet {
        acceptor: TlsAcceptor::from(tls::s2s_server_config(&certs, None, TlsMode::StartTls)?),
        client: tls::s2s_client_config(Some(&config.identity), TlsMode::StartTls)?,
        link: tls::link_client_config(&config.link_identity, &config.link_ca)?,
    };
    let shared = Arc::new(Shared {
        name: config.name,
        policy: loaded.holder.clone(),
        metrics,
        store: config.store,
        trust: Arc::new(config.internal_trust),
        secret: config.dialback_secret,
        tls,
        hub: LinkHub::default(),
        pool: internal::Pool::default(),
        shutdown: watch::Sender::new(false),
        link_wait: config.link_wait,
        link_server_name: config.link_server_name,
    });
    let mut tasks = Vec::new();
    let s2s = TcpListener::bind(config.s2s_listen).await?;
    let s2s_addr = s2s.local_addr()?;
    tasks.push(tokio::spawn(internal::accept_loop(shared.clone(), s2s)));
    let dns_addr = match config.dns {
        Some(dns_config) => {
            let socket = UdpSocket::bind(dns_config.listen).await?;
            let a = socket.local_addr()?;
            tasks.push(tokio::spawn(dns::serve(
                socket,
                dns_config,
                loaded.holder.clone(),
            )));
            Some(a)
        }
        None => None,
    };
    let http_addr = match config.http_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            let a = l.local_addr()?;
            let s = shared.clone();
            tasks.push(tokio::spawn(health::serve(
                l,
                Arc::new(move |path: &str| respond(&s, path)),
            )));
            Some(a)
        }
        None => None,
    };
    tasks.push(tokio::spawn(link::supervise(
        shared.clone(),
        config.proxies,
    )));
    tasks.push(tokio::spawn(subscriptions::run(shared.clone())));
    tasks.push(tokio::spawn(loaded.updates));
    tracing::info!(%s2s_addr, ?dns_addr, ?http_addr, "gateway listening");
    Ok(RunningGateway {
        shared,
        s2s_addr,
        http_addr,
        dns_addr,
        drain_timeout: config.drain_timeout,
        tasks,
    })
}

fn respond(shared: &Shared, path: &str) -> Reply {
    match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => readiness(shared),
        "/policy-version" => health::policy_version(&shared.policy),
        "/metrics" => (StatusCode::OK, OPENMETRICS, shared.metrics.encode()),
        _ => health::not_found(),
    }
}

/// Ready once a policy is loaded, at least one proxy is linked, and not draining.
fn readiness(shared: &Shared) -> Reply {
    let status = shared.policy.status();
    let links = shared.hub.connected();
    let mut body = format!(
        "policy: {} (from {})\nproxy links: {links}\n",
        status.version, status.source
    );
    if let Some(e) = &status.last_error {
        body.push_str(&format!(
            "policy refused: {e}\n(the last good policy stays in force)\n"
        ));
    }
    if shared.shutting_down() {
        body.push_str("draining\n");
        return (StatusCode::SERVICE_UNAVAILABLE, "text/plain", body);
    }
    if links == 0 {
        body.push_str("not ready: no proxy link\n");
        return (StatusCode::SERVICE_UNAVAILABLE, "text/plain", body);
    }
    (StatusCode::OK, "text/plain", body)
}
