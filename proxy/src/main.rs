//! `xmppfed-proxy`: runs the edge proxy from files (policy document, certificate and key,
//! dialback secret, internal-link certificate and CA) — in a pod, or on any host.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use xmppfed_policy_source::config_map::ConfigMapRef;
use xmppfed_policy_source::{Source, pod};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::tls::{Identity, load_certs};

#[derive(Parser)]
#[command(
    version,
    about = "xmppfed edge proxy: XMPP server-to-server federation under policy"
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
    /// The operator's policy ConfigMap, `<namespace>/<name>`, watched through the Kubernetes
    /// API with the pod's service account (needs get/list/watch on that one object).
    #[arg(long, env = "XMPPFED_POLICY_CONFIGMAP", value_parser = ConfigMapRef::parse)]
    policy_configmap: Option<ConfigMapRef>,
    /// PEM certificate chain for the served domains.
    #[arg(long, env = "XMPPFED_TLS_CERT")]
    tls_cert: PathBuf,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "XMPPFED_TLS_KEY")]
    tls_key: PathBuf,
    /// PEM bundle of CAs trusted for partner certificates.
    #[arg(
        long,
        env = "XMPPFED_PEER_CA",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    peer_ca: PathBuf,
    /// File holding the dialback secret shared by every replica.
    #[arg(long, env = "XMPPFED_DIALBACK_SECRET")]
    dialback_secret: PathBuf,
    /// Internal link certificate, key and CA (mutual TLS with the gateways).
    #[arg(long, env = "XMPPFED_LINK_CERT")]
    link_cert: PathBuf,
    #[arg(long, env = "XMPPFED_LINK_KEY")]
    link_key: PathBuf,
    #[arg(long, env = "XMPPFED_LINK_CA")]
    link_ca: PathBuf,
    #[arg(long, default_value = "0.0.0.0:5269")]
    starttls_listen: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:5270")]
    direct_tls_listen: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:23456")]
    link_listen: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Ask this DNS server instead of the system's (split-horizon setups).
    #[arg(long)]
    dns_server: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long, env = "XMPPFED_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pod::init_logging(args.log_json);
    let peer_trust = TrustStore::from_pem_bundle(&args.peer_ca)?;
    let secret = pod::read_secret(&args.dialback_secret).map_err(anyhow::Error::msg)?;
    let policy = Source::from_flags(args.policy, args.policy_configmap)
        .await
        .map_err(anyhow::Error::msg)?;
    let config = xmppfed_proxy::ProxyConfig {
        starttls_listen: args.starttls_listen,
        direct_tls_listen: Some(args.direct_tls_listen),
        link_listen: args.link_listen,
        http_listen: Some(args.http_listen),
        policy,
        identity: Identity::from_files(&args.tls_cert, &args.tls_key)?,
        peer_trust,
        dialback_secret: DialbackSecret::new(secret),
        link_identity: Identity::from_files(&args.link_cert, &args.link_key)?,
        link_ca: load_certs(&args.link_ca)?,
        dns_server: args.dns_server,
        link_wait: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(20),
    };
    let proxy = xmppfed_proxy::start(config).await?;
    pod::wait_for_termination().await;
    proxy.shutdown().await;
    Ok(())
}
