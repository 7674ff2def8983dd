//! `xmppfed up`: the proxy and the gateway in one process, from the same manifests users
//! `kubectl apply`, with hot reload of the manifests and no cluster.
//!
//! - The manifests are validated and compiled as `xmppfed validate` / the operator do; the
//!   policy document goes to `<state>/policy.json`, which the proxy and gateway watch (the same
//!   file source they use outside Kubernetes), so a change reaches them as in a cluster.
//! - An invalid change is reported and the running policy stays.
//! - Certificates: `--tls-cert/--tls-key`, else a development CA generated once into the state
//!   directory (its trust anchor is printed). The internal link always gets its own in-memory CA.
//! - The dialback secret is generated once into the state directory.

use crate::manifests::{compile_sources, read_sources};
use anyhow::{Context, Result, bail};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xmppfed_gateway::dns::DnsConfig;
use xmppfed_gateway::store::RedbStore;
use xmppfed_policy::PolicyDocument;
use xmppfed_policy_source::Source;
use xmppfed_xmpp::devca::{CertSpec, DevCa};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::tls::{Identity, load_certs};

/// The name in the link certificate the gateway checks (in-process, never on the network).
const LINK_SERVER_NAME: &str = "xmppfed-proxy.standalone";
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What `xmppfed up` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub files: Vec<PathBuf>,
    pub federation: Option<String>,
    pub state_dir: PathBuf,
    /// Defaults: all addresses, the federation's `edge.ports`.
    pub starttls_listen: Option<SocketAddr>,
    pub direct_tls_listen: Option<SocketAddr>,
    /// Where the internal servers connect for partner domains.
    pub gateway_listen: SocketAddr,
    /// The proxy's health and metrics; the gateway's on the next port.
    pub http_listen: SocketAddr,
    /// Split-horizon DNS for the internal servers (off by default).
    pub dns_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CAs for partner certificates (default: the system bundle).
    pub peer_ca: Vec<PathBuf>,
    /// CAs for the internal servers' certificates (default: the system bundle).
    pub internal_ca: Vec<PathBuf>,
    /// DNS server for SRV lookups of partners (default: the system's).
    pub dns_server: Option<SocketAddr>,
    /// How often the manifests are checked for changes.
    pub poll: Duration,
}

/// A compiled set of manifests.
struct Loaded {
    document: PolicyDocument,
    partners: usize,
    warnings: Vec<String>,
}

/// Validates and compiles the manifests; errors come back one line each.
fn load(files: &[PathBuf], federation: Option<&str>) -> Result<Loaded, Vec<String>> {
    let sources = read_sources(files).map_err(|e| vec![format!("{e:#}")])?;
    let compiled = compile_sources(&sources, federation)?;
    Ok(Loaded {
        partners: compiled.compilation.accepted_partners.len(),
        document: compiled.compilation.document,
        warnings: compiled.warnings,
    })
}

/// Writes then renames: a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn write_policy(path: &Path, document: &PolicyDocument) -> Result<()> {
    write_atomically(path, &serde_json::to_vec(document)?)
}

/// The dialback secret of this installation: generated once (32 random bytes), then reused so
/// that restarts keep dialback keys valid.
fn dialback_secret(state: &Path) -> Result<DialbackSecret> {
    let path = state.join("dialback-secret");
    if !path.exists() {
        let value = xmppfed_policy_source::pod::generate_secret().map_err(anyhow::Error::msg)?;
        write_private(&path, value.as_bytes())?;
    }
    let secret = xmppfed_policy_source::pod::read_secret(&path).map_err(anyhow::Error::msg)?;
    Ok(DialbackSecret::new(secret))
}

/// A file only its owner may read (keys, secrets).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// The edge certificate: the user's files, or one from the development CA kept in the state
/// directory (re-issued, with a new CA, when the names it must carry change).
fn edge_identity(opts: &Options, document: &PolicyDocument) -> Result<(Identity, Option<PathBuf>)> {
    match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => return Ok((Identity::from_files(cert, key)?, None)),
        (None, None) => {}
        _ => bail!("--tls-cert and --tls-key go together"),
    }
    let mut names: Vec<String> = document.served_domains.clone();
    if !names.contains(&document.edge.hostname) {
        names.push(document.edge.hostname.clone());
    }
    let (ca, crt, key, names_file) = (
        opts.state_dir.join("dev-ca.crt"),
        opts.state_dir.join("edge.crt"),
        opts.state_dir.join("edge.key"),
        opts.state_dir.join("edge.names"),
    );
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if current != wanted || !crt.exists() || !key.exists() || !ca.exists() {
        let dev = DevCa::new("xmppfed standalone development CA")?;
        let issued = dev.issue(&CertSpec {
            dns: names.clone(),
            ..CertSpec::default()
        })?;
        std::fs::write(&ca, &dev.cert_pem)?;
        std::fs::write(&crt, format!("{}{}", issued.cert_pem, dev.cert_pem))?;
        write_private(&key, issued.key_pem.as_bytes())?;
        std::fs::write(&names_file, &wanted)?;
        println!(
            "generated a development CA and an edge certificate for {}",
            names.join(", ")
        );
    }
    Ok((Identity::from_files(&crt, &key)?, Some(ca)))
}

/// Trust anchors from `files`, or the system bundle when none are named.
fn trust(files: &[PathBuf], what: &str) -> Result<TrustStore> {
    let mut store = TrustStore::new();
    let defaults = [PathBuf::from(SYSTEM_CAS)];
    let files: &[PathBuf] = if files.is_empty() { &defaults } else { files };
    for f in files {
        if !f.exists() && files == defaults {
            eprintln!(
                "warning: {SYSTEM_CAS} not found: no {what} CA is trusted (name one with a flag)"
            );
            continue;
        }
        for cert in load_certs(f)? {
            // A bundle may hold certificates webpki refuses as anchors; skip those.
            let _ = store.add(&cert);
        }
    }
    Ok(store)
}

/// The internal link's PKI: a CA that lives only in this process.
fn link_pki() -> Result<(
    Identity,
    Identity,
    Vec<rustls_pki_types::CertificateDer<'static>>,
)> {
    let ca = DevCa::new("xmppfed standalone link CA")?;
    let proxy = ca.issue(&CertSpec::for_domain(LINK_SERVER_NAME))?;
    let gateway = ca.issue(&CertSpec::for_domain("xmppfed-gateway.standalone"))?;
    Ok((
        Identity::new(vec![proxy.cert_der.clone()], proxy.key())?,
        Identity::new(vec![gateway.cert_der.clone()], gateway.key())?,
        vec![ca.cert_der.clone()],
    ))
}

/// Runs until `shutdown` completes, then drains both services.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<()> {
    let first = match load(&opts.files, opts.federation.as_deref()) {
        Ok(l) => l,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!("the manifests have errors; nothing started");
        }
    };
    for w in &first.warnings {
        println!("{w}");
    }
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let policy_path = opts.state_dir.join("policy.json");
    write_policy(&policy_path, &first.document)?;
    let doc = &first.document;
    println!(
        "federation {}/{}: domains {}, {} partner(s), policy {}",
        doc.federation.namespace,
        doc.federation.name,
        doc.served_domains.join(", "),
        first.partners,
        doc.version
    );

    let (identity, dev_ca) = edge_identity(&opts, doc)?;
    let (proxy_link, gateway_link, link_ca) = link_pki()?;
    let dialback = dialback_secret(&opts.state_dir)?;
    let source = || Source::File {
        path: policy_path.clone(),
        poll: Duration::from_millis(250),
    };
    let starttls = opts
        .starttls_listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], doc.edge.starttls_port)));
    let direct = opts
        .direct_tls_listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], doc.edge.direct_tls_port)));

    let proxy = xmppfed_proxy::start(xmppfed_proxy::ProxyConfig {
        starttls_listen: starttls,
        direct_tls_listen: Some(direct),
        link_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: Some(opts.http_listen),
        policy: source(),
        identity: identity.clone(),
        peer_trust: trust(&opts.peer_ca, "partner")?,
        dialback_secret: dialback.clone(),
        link_identity: proxy_link,
        link_ca: link_ca.clone(),
        dns_server: opts.dns_server,
        link_wait: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(10),
    })
    .await
    .context("starting the proxy (is another server using the port? see --starttls-listen)")?;

    let gateway_http = SocketAddr::new(
        opts.http_listen.ip(),
        opts.http_listen.port().wrapping_add(1),
    );
    let gateway_port = opts.gateway_listen.port();
    let gateway = xmppfed_gateway::start(xmppfed_gateway::GatewayConfig {
        name: "standalone".into(),
        s2s_listen: opts.gateway_listen,
        http_listen: Some(gateway_http),
        dns: opts.dns_listen.map(|listen| DnsConfig {
            listen,
            target_host: "xmppfed-gateway.localhost".into(),
            target_addrs: vec![opts.gateway_listen.ip()],
            port: gateway_port,
            upstream: None,
        }),
        policy: source(),
        identity,
        internal_trust: trust(&opts.internal_ca, "internal server")?,
        dialback_secret: dialback,
        proxies: vec![proxy.link_addr.to_string()],
        link_identity: gateway_link,
        link_ca,
        link_server_name: LINK_SERVER_NAME.into(),
        store: Arc::new(
            RedbStore::open(&opts.state_dir.join("contacts.redb")).map_err(anyhow::Error::msg)?,
        ),
        link_wait: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(10),
    })
    .await
    .context("starting the gateway (see --gateway-listen)")?;

    println!(
        "partners connect to   {} (STARTTLS) and {} (direct TLS)",
        proxy.starttls_addr,
        proxy.direct_tls_addr.unwrap_or(direct)
    );
    println!(
        "internal servers use  {} for partner domains (S2S)",
        gateway.s2s_addr
    );
    if let Some(dns) = gateway.dns_addr {
        println!("split-horizon DNS on  {dns} (point the internal server's resolver here)");
    }
    println!(
        "health                http://{}/readyz (proxy), http://{}/readyz (gateway)",
        proxy.http_addr.unwrap_or(opts.http_listen),
        gateway.http_addr.unwrap_or(gateway_http)
    );
    if let Some(ca) = dev_ca {
        println!(
            "trust anchor          {} (development CA: partners must trust it)",
            ca.display()
        );
    }
    println!(
        "watching {} for changes; Ctrl-C stops",
        describe(&opts.files)
    );

    let mut current = first.document.version.clone();
    let mut last_problems: Vec<String> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(opts.poll) => {}
        }
        match load(&opts.files, opts.federation.as_deref()) {
            Ok(l) => {
                last_problems.clear();
                if l.document.version != current {
                    write_policy(&policy_path, &l.document)?;
                    println!(
                        "policy {} applied: {} partner(s)",
                        l.document.version, l.partners
                    );
                    current = l.document.version;
                }
            }
            Err(problems) => {
                if problems != last_problems {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    eprintln!("invalid manifests: keeping policy {current}");
                    last_problems = problems;
                }
            }
        }
    }
    println!("stopping: draining streams");
    proxy.shutdown().await;
    gateway.shutdown().await;
    println!("stopped");
    Ok(())
}

fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
