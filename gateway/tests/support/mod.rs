//! The lab shared by the end-to-end tests and the federation benchmark: real Prosody (or
//! ejabberd) servers, dnsmasq, a proxy and a gateway on one loopback net `127.0.N.x`.
//!
//! Topology per lab (net 127.0.N.x):
//! - `.1` dnsmasq: the Internet's DNS (org.example → the proxy; partner.example → its Prosody);
//! - `.2` the proxy (edge), `.3` the gateway with its split-horizon DNS on port 53;
//! - `.4` the internal Prosody `org.example`, whose only resolver is the gateway's DNS;
//! - `.5` the partner's Prosody `partner.example`.
#![allow(dead_code)] // each user of the lab needs a different part of it

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xmppfed_gateway::dns::DnsConfig;
use xmppfed_gateway::store::RedbStore;
use xmppfed_gateway::{GatewayConfig, RunningGateway};
use xmppfed_policy_source::Source;
use xmppfed_testkit::servers::{
    Dns, Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, Srv, User, log_tail,
};
use xmppfed_testkit::*;
use xmppfed_xmpp::devca::CertSpec;
use xmppfed_xmpp::dialback::DialbackSecret;

pub const WAIT: Duration = Duration::from_secs(25);

pub struct Lab {
    pub _dir: tempfile::TempDir,
    pub _dns: Dns,
    pub pki: Pki,
    pub ca: PathBuf,
    pub net: u8,
    pub policy_file: PathBuf,
    pub state_file: PathBuf,
    pub internal: Internal,
    pub partner: Prosody,
    pub proxy: xmppfed_proxy::RunningProxy,
    pub gateway: Option<RunningGateway>,
}

/// The organisation's own server.
pub enum Internal {
    Prosody(Prosody),
    Ejabberd(Ejabberd),
}

impl Internal {
    pub fn c2s(&self) -> SocketAddr {
        match self {
            Internal::Prosody(p) => p.c2s,
            Internal::Ejabberd(e) => e.c2s,
        }
    }
    pub fn log(&self) -> String {
        match self {
            Internal::Prosody(p) => p.log(),
            Internal::Ejabberd(e) => e.log(),
        }
    }
    pub fn register(&self, name: &str) {
        match self {
            Internal::Prosody(p) => p.register(name),
            Internal::Ejabberd(e) => e.register(name),
        };
    }
}

pub fn ip(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, last)
}

/// The federation: org.example served, partner.example of `partner_type`, the internal
/// Prosody behind the gateway; everyone may federate except carol.
pub fn policy_yaml(net: u8, partner_type: &str, limits: &str) -> String {
    let mut partner = PartnerSpec::new("partner.example");
    partner.partner_type = Some(partner_type);
    let mut yaml = federation_yaml(
        "org.example",
        &[partner],
        limits,
        &format!(
            "{{internalServers: [{{host: \"{}\", port: 15269, domains: [org.example]}}]}}",
            ip(net, 4)
        ),
    );
    yaml.push_str(
        "---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: everyone, namespace: t}\nspec: {scope: Global, enableFederationAccess: true, enableXmppAccess: true}\n\
         ---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: no-xmpp-for-carol, namespace: t}\nspec: {scope: User, users: [carol@org.example], enableFederationAccess: true, enableXmppAccess: false}\n",
    );
    yaml
}

/// Opens the contact store, waiting for a previous gateway's tasks to let go of it.
pub async fn open_store(path: &Path) -> RedbStore {
    for _ in 0..100 {
        if let Ok(store) = RedbStore::open(path) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    RedbStore::open(path).expect("store")
}

pub async fn start_gateway(
    target_host: &str,
    pki: &Pki,
    net: u8,
    policy: &Path,
    state: &Path,
    proxy_link: SocketAddr,
) -> RunningGateway {
    let gw = ip(net, 3);
    let config = GatewayConfig {
        name: "gateway-0".into(),
        s2s_listen: SocketAddr::new(IpAddr::V4(gw), 5269),
        http_listen: Some(SocketAddr::new(IpAddr::V4(gw), 0)),
        dns: Some(DnsConfig {
            listen: SocketAddr::new(IpAddr::V4(gw), 53),
            target_host: target_host.into(),
            target_addrs: vec![IpAddr::V4(gw)],
            port: 5269,
            upstream: None,
        }),
        policy: Source::File {
            path: policy.to_path_buf(),
            poll: Duration::from_millis(100),
        },
        // Names the partner domain, so the internal server accepts SASL EXTERNAL from it.
        identity: pki.identity(&CertSpec::for_domain("partner.example")),
        internal_trust: pki.trust(),
        dialback_secret: DialbackSecret::new("secret of the gateway"),
        proxies: vec![proxy_link.to_string()],
        link_identity: pki.identity(&CertSpec::for_domain("gateway.link")),
        link_ca: vec![pki.ca.cert_der.clone()],
        link_server_name: "proxy.link".into(),
        store: Arc::new(open_store(state).await),
        link_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
    };
    let gateway = xmppfed_gateway::start(config)
        .await
        .expect("gateway starts");
    for _ in 0..200 {
        if gateway.shared.hub.connected() > 0 {
            return gateway;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not link to the proxy");
}

pub async fn lab(net: u8, partner_type: &str) -> Lab {
    lab_with(net, partner_type, DEFAULT_LIMITS, false).await
}

/// The SRV target the gateway's DNS names: a host name, except for ejabberd, which resolves
/// SRV targets with libc (outside the DNS it was given), so it gets the address itself.
pub fn target_host(net: u8, ejabberd: bool) -> String {
    if ejabberd {
        ip(net, 3).to_string()
    } else {
        "gateway.xmppfed.test".to_string()
    }
}

pub async fn lab_with(net: u8, partner_type: &str, limits: &str, ejabberd: bool) -> Lab {
    init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("xmppfed-e2e")
        .tempdir()
        .expect("tmp");
    let (proxy_ip, internal_ip, partner_ip) = (ip(net, 2), ip(net, 4), ip(net, 5));
    let (p, d) = (proxy_ip.to_string(), partner_ip.to_string());
    let dns = Dns::start(
        dir.path(),
        ip(net, 1),
        &[
            Srv("_xmpps-server._tcp.org.example", ".", 0),
            Srv("_xmpp-server._tcp.org.example", &p, 5269),
            Srv("_xmpps-server._tcp.partner.example", ".", 0),
            Srv("_xmpp-server._tcp.partner.example", &d, 15269),
        ],
    );
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path());
    let policy_file = dir.path().join("policy.json");
    write_policy_yaml(&policy_file, &policy_yaml(net, partner_type, limits));

    let proxy = xmppfed_proxy::start(xmppfed_proxy::ProxyConfig {
        starttls_listen: SocketAddr::new(IpAddr::V4(proxy_ip), 5269),
        direct_tls_listen: Some(SocketAddr::new(IpAddr::V4(proxy_ip), 5270)),
        link_listen: SocketAddr::new(IpAddr::V4(proxy_ip), 0),
        http_listen: None,
        policy: Source::File {
            path: policy_file.clone(),
            poll: Duration::from_millis(100),
        },
        identity: pki.identity(&CertSpec::for_domain("org.example")),
        peer_trust: pki.trust(),
        dialback_secret: DialbackSecret::new("secret of the edge"),
        link_identity: pki.identity(&CertSpec::for_domain("proxy.link")),
        link_ca: vec![pki.ca.cert_der.clone()],
        dns_server: Some(dns.addr),
        link_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
    })
    .await
    .expect("proxy starts");
    let state_file = dir.path().join("contacts.redb");
    let gateway = start_gateway(
        &target_host(net, ejabberd),
        &pki,
        net,
        &policy_file,
        &state_file,
        proxy.link_addr,
    )
    .await;
    let gateway_dns = gateway.dns_addr.expect("gateway DNS");

    let prosody = |domain: &str, ip: Ipv4Addr, dns: SocketAddr| {
        let (cert, key) = pki.write(dir.path(), domain, &CertSpec::for_domain(domain));
        Prosody::start(
            dir.path(),
            &ProsodyOptions {
                domain,
                ip,
                dns,
                cert: &cert,
                key: &key,
                ca: &ca,
                secure_auth: false,
                require_encryption: true,
                bidi: false,
            },
        )
    };
    let internal = if ejabberd {
        let (cert, key) = pki.write(
            dir.path(),
            "org.example",
            &CertSpec::for_domain("org.example"),
        );
        Internal::Ejabberd(Ejabberd::start(
            dir.path(),
            &EjabberdOptions {
                domain: "org.example",
                ip: internal_ip,
                dns: gateway_dns,
                cert: &cert,
                key: &key,
                ca: &ca,
                dialback: true,
            },
        ))
    } else {
        Internal::Prosody(prosody("org.example", internal_ip, gateway_dns))
    };
    let partner = prosody("partner.example", partner_ip, dns.addr);
    for user in ["bob", "carol", "erin"] {
        internal.register(user);
    }
    partner.register("alice");
    Lab {
        _dir: dir,
        _dns: dns,
        pki,
        ca,
        net,
        policy_file,
        state_file,
        internal,
        partner,
        proxy,
        gateway: Some(gateway),
    }
}

impl Lab {
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            log_tail("internal prosody", &self.internal.log(), 40),
            log_tail("partner prosody", &self.partner.log(), 40)
        )
    }
    /// Writes a new policy and waits until the gateway runs it.
    pub async fn apply(&self, yaml: &str) {
        let before = self.gateway().shared.policy.current().version().to_string();
        write_policy_yaml(&self.policy_file, yaml);
        for _ in 0..100 {
            if self.gateway().shared.policy.current().version() != before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not load the new policy");
    }
    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }
    pub fn metric(&self, needle: &str) -> Vec<String> {
        self.gateway()
            .shared
            .metrics
            .encode()
            .lines()
            .filter(|l| l.contains(needle) && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
    pub fn alice(&self, steps: &[&str]) -> User {
        User::start(&self.ca, "alice@partner.example", self.partner.c2s, steps)
    }
    pub fn local(&self, name: &str, steps: &[&str]) -> User {
        User::start(
            &self.ca,
            &format!("{name}@org.example"),
            self.internal.c2s(),
            steps,
        )
    }
}

pub async fn online(user: &mut User, who: &str, lab: &Lab) {
    assert!(
        user.line("LOGGED IN", WAIT).await.is_some(),
        "{who} did not log in: {:?}\n{}",
        user.output,
        lab.logs()
    );
}

/// The `xmppfed-gateway` binary, run with the same settings as [`start_gateway`] from files.
pub struct GatewayProcess {
    pub child: std::process::Child,
}

impl GatewayProcess {
    pub fn spawn(lab: &Lab) -> Self {
        let dir = lab._dir.path();
        let (cert, key) = lab
            .pki
            .write(dir, "gw-s2s", &CertSpec::for_domain("partner.example"));
        let (link_cert, link_key) =
            lab.pki
                .write(dir, "gw-link", &CertSpec::for_domain("gateway.link"));
        let secret = dir.join("dialback-secret");
        std::fs::write(&secret, "secret of the gateway").expect("secret");
        let gw = ip(lab.net, 3);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_xmppfed-gateway"))
            .arg("--policy")
            .arg(&lab.policy_file)
            .args(["--name", "gateway-0"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--internal-ca")
            .arg(&lab.ca)
            .arg("--dialback-secret")
            .arg(&secret)
            .args(["--proxy", &lab.proxy.link_addr.to_string()])
            .arg("--link-cert")
            .arg(&link_cert)
            .arg("--link-key")
            .arg(&link_key)
            .arg("--link-ca")
            .arg(&lab.ca)
            .args(["--link-server-name", "proxy.link"])
            .arg("--state")
            .arg(&lab.state_file)
            .args(["--s2s-listen", &format!("{gw}:5269")])
            .args(["--http-listen", &format!("{gw}:0")])
            .args(["--dns-listen", &format!("{gw}:53")])
            .args(["--dns-target-host", "gateway.xmppfed.test"])
            .args(["--dns-target-addr", &gw.to_string()])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("gateway.log")).expect("log"))
            .spawn()
            .expect("the gateway binary starts");
        Self { child }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn exited(mut self) {
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the gateway did not exit");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        // A failed assertion must not leave a gateway holding the test's addresses.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the proxy has a link from a gateway.
pub async fn linked(lab: &Lab) {
    for _ in 0..250 {
        if lab.proxy.shared.hub.connected() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no gateway linked to the proxy");
}
