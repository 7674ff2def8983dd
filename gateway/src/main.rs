//! `xmppfed-gateway`: runs the gateway from files (policy document, certificates, dialback
//! secret, contact store) — in a pod, or on any host.

use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use xmppfed_gateway::dns::DnsConfig;
use xmppfed_gateway::store::RedbStore;
use xmppfed_policy_source::config_map::ConfigMapRef;
use xmppfed_policy_source::{Source, pod};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::tls::{Identity, load_certs};

#[derive(Parser)]
#[command(
    version,
    about = "xmppfed gateway: per-user access policy and partner-type rules between the federation edge and the organisation's XMPP server"
)]
struct Args {
    /// Compiled policy document (policy.json or policy.json.gz), watched for changes.
    #[arg(
        long,
        env = "XMPPFED_POLICY",
        required_unless_present = "policy_configmap",
        conflicts_with = "policy_configmap"
    )]
    policy: Option<PathBuf>,
    /// The operator's policy ConfigMap, `<namespace>/<name>`, watched through the API.
    #[arg(long, env = "XMPPFED_POLICY_CONFIGMAP", value_parser = ConfigMapRef::parse)]
    policy_configmap: Option<ConfigMapRef>,
    /// This gateway's name on the internal link (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "xmppfed-gateway")]
    name: String,
    /// PEM certificate chain presented to the internal servers.
    #[arg(long, env = "XMPPFED_TLS_CERT")]
    tls_cert: PathBuf,
    #[arg(long, env = "XMPPFED_TLS_KEY")]
    tls_key: PathBuf,
    /// PEM bundle(s) of the CAs of the internal servers' certificates (repeat the flag, or
    /// separate with commas, for servers with different CAs).
    #[arg(
        long,
        env = "XMPPFED_INTERNAL_CA",
        required = true,
        value_delimiter = ','
    )]
    internal_ca: Vec<PathBuf>,
    /// File holding the dialback secret.
    #[arg(long, env = "XMPPFED_DIALBACK_SECRET")]
    dialback_secret: PathBuf,
    /// Proxy link endpoints, `host:port`; a headless Service name reaches every proxy pod.
    #[arg(
        long = "proxy",
        env = "XMPPFED_PROXIES",
        value_delimiter = ',',
        required = true
    )]
    proxies: Vec<String>,
    /// Internal link certificate, key and CA (mutual TLS with the proxies).
    #[arg(long, env = "XMPPFED_LINK_CERT")]
    link_cert: PathBuf,
    #[arg(long, env = "XMPPFED_LINK_KEY")]
    link_key: PathBuf,
    #[arg(long, env = "XMPPFED_LINK_CA")]
    link_ca: PathBuf,
    /// The name the proxies' link certificate carries.
    #[arg(
        long,
        env = "XMPPFED_LINK_SERVER_NAME",
        default_value = "xmppfed-proxy"
    )]
    link_server_name: String,
    /// The contact store (who reached out to whom; subscriptions), on a persistent volume.
    #[arg(
        long,
        env = "XMPPFED_STATE",
        default_value = "/var/lib/xmppfed/contacts.redb"
    )]
    state: PathBuf,
    #[arg(long, default_value = "0.0.0.0:5269")]
    s2s_listen: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Serve split-horizon DNS for the internal servers here (e.g. 0.0.0.0:5353).
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// SRV target the DNS answers name (the gateway's Service name).
    #[arg(long, default_value = "xmppfed-gateway")]
    dns_target_host: String,
    /// Addresses of --dns-target-host (and of partner domains); repeat for several.
    #[arg(long = "dns-target-addr")]
    dns_target_addrs: Vec<IpAddr>,
    /// Port in the SRV answers; defaults to the --s2s-listen port.
    #[arg(long)]
    dns_port: Option<u16>,
    /// Resolver for every other question: `host:port`, or `auto` for the first nameserver of
    /// /etc/resolv.conf (the cluster DNS in a pod). Without it, other questions are REFUSED.
    #[arg(long)]
    dns_upstream: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "XMPPFED_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pod::init_logging(args.log_json);
    let internal_trust = TrustStore::from_pem_bundles(&args.internal_ca)?;
    let secret = pod::read_secret(&args.dialback_secret).map_err(anyhow::Error::msg)?;
    let policy = Source::from_flags(args.policy, args.policy_configmap)
        .await
        .map_err(anyhow::Error::msg)?;
    let store = RedbStore::open(&args.state).map_err(anyhow::Error::msg)?;
    let upstream = match args.dns_upstream.as_deref() {
        None => None,
        Some("auto") => {
            let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            Some(
                xmppfed_gateway::dns::nameserver_from_resolv_conf(&conf).ok_or_else(|| {
                    anyhow::anyhow!("--dns-upstream auto: /etc/resolv.conf names no nameserver")
                })?,
            )
        }
        Some(a) => Some(
            a.parse::<SocketAddr>()
                .map_err(|e| anyhow::anyhow!("--dns-upstream {a}: not host:port or auto ({e})"))?,
        ),
    };
    let dns = args.dns_listen.map(|listen| DnsConfig {
        listen,
        target_host: args.dns_target_host.clone(),
        target_addrs: args.dns_target_addrs.clone(),
        port: args.dns_port.unwrap_or(args.s2s_listen.port()),
        upstream,
    });
    let config = xmppfed_gateway::GatewayConfig {
        name: args.name,
        s2s_listen: args.s2s_listen,
        http_listen: Some(args.http_listen),
        dns,
        policy,
        identity: Identity::from_files(&args.tls_cert, &args.tls_key)?,
        internal_trust,
        dialback_secret: DialbackSecret::new(secret),
        proxies: args.proxies,
        link_identity: Identity::from_files(&args.link_cert, &args.link_key)?,
        link_ca: load_certs(&args.link_ca)?,
        link_server_name: args.link_server_name,
        store: Arc::new(store),
        link_wait: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(20),
    };
    let gateway = xmppfed_gateway::start(config).await?;
    pod::wait_for_termination().await;
    gateway.shutdown().await;
    Ok(())
}
