//! The whole path with real servers and real users: a user of a partner's Prosody and users of
//! the organisation's own Prosody exchange messages, presence and subscriptions through
//! partner Prosody → proxy → link → gateway → internal Prosody, and back.
//!
//! Topology per test (net 127.0.N.x):
//! - `.1` dnsmasq: the Internet's DNS (org.example → the proxy; partner.example → its Prosody);
//! - `.2` the proxy (edge), `.3` the gateway with its split-horizon DNS on port 53;
//! - `.4` the internal Prosody `org.example`, whose only resolver is the gateway's DNS;
//! - `.5` the partner's Prosody `partner.example`.
//!
//! Users are slixmpp clients (`testkit/fixtures/c2s_script.py`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xmppfed_gateway::dns::DnsConfig;
use xmppfed_gateway::store::{RedbStore, SubState};
use xmppfed_gateway::{GatewayConfig, RunningGateway};
use xmppfed_policy_source::Source;
use xmppfed_testkit::servers::{
    Dns, Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, Srv, User, c2s_available,
    ejabberd_available, log_tail,
};
use xmppfed_testkit::*;
use xmppfed_xmpp::devca::CertSpec;
use xmppfed_xmpp::dialback::DialbackSecret;

const WAIT: Duration = Duration::from_secs(25);

struct Lab {
    _dir: tempfile::TempDir,
    _dns: Dns,
    pki: Pki,
    ca: PathBuf,
    net: u8,
    policy_file: PathBuf,
    state_file: PathBuf,
    internal: Internal,
    partner: Prosody,
    proxy: xmppfed_proxy::RunningProxy,
    gateway: Option<RunningGateway>,
}

/// The organisation's own server.
enum Internal {
    Prosody(Prosody),
    Ejabberd(Ejabberd),
}

impl Internal {
    fn c2s(&self) -> SocketAddr {
        match self {
            Internal::Prosody(p) => p.c2s,
            Internal::Ejabberd(e) => e.c2s,
        }
    }
    fn log(&self) -> String {
        match self {
            Internal::Prosody(p) => p.log(),
            Internal::Ejabberd(e) => e.log(),
        }
    }
    fn register(&self, name: &str) {
        match self {
            Internal::Prosody(p) => p.register(name),
            Internal::Ejabberd(e) => e.register(name),
        };
    }
}

fn ip(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, last)
}

/// The federation: org.example served, partner.example of `partner_type`, the internal
/// Prosody behind the gateway; everyone may federate except carol.
fn policy_yaml(net: u8, partner_type: &str, limits: &str) -> String {
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
async fn open_store(path: &Path) -> RedbStore {
    for _ in 0..100 {
        if let Ok(store) = RedbStore::open(path) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    RedbStore::open(path).expect("store")
}

async fn start_gateway(
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

async fn lab(net: u8, partner_type: &str) -> Lab {
    lab_with(net, partner_type, DEFAULT_LIMITS, false).await
}

/// The SRV target the gateway's DNS names: a host name, except for ejabberd, which resolves
/// SRV targets with libc (outside the DNS it was given), so it gets the address itself.
fn target_host(net: u8, ejabberd: bool) -> String {
    if ejabberd {
        ip(net, 3).to_string()
    } else {
        "gateway.xmppfed.test".to_string()
    }
}

async fn lab_with(net: u8, partner_type: &str, limits: &str, ejabberd: bool) -> Lab {
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
    fn logs(&self) -> String {
        format!(
            "{}\n{}",
            log_tail("internal prosody", &self.internal.log(), 40),
            log_tail("partner prosody", &self.partner.log(), 40)
        )
    }
    /// Writes a new policy and waits until the gateway runs it.
    async fn apply(&self, yaml: &str) {
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
    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }
    fn metric(&self, needle: &str) -> Vec<String> {
        self.gateway()
            .shared
            .metrics
            .encode()
            .lines()
            .filter(|l| l.contains(needle) && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
    fn alice(&self, steps: &[&str]) -> User {
        User::start(&self.ca, "alice@partner.example", self.partner.c2s, steps)
    }
    fn local(&self, name: &str, steps: &[&str]) -> User {
        User::start(
            &self.ca,
            &format!("{name}@org.example"),
            self.internal.c2s(),
            steps,
        )
    }
}

async fn online(user: &mut User, who: &str, lab: &Lab) {
    assert!(
        user.line("LOGGED IN", WAIT).await.is_some(),
        "{who} did not log in: {:?}\n{}",
        user.output,
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_partner_messages_presence_and_subscription_both_ways() {
    if !c2s_available() {
        return;
    }
    let limits = format!("{DEFAULT_LIMITS}, subscriptionRefreshInterval: 4s");
    let lab = lab_with(81, "Federated", &limits, false).await;
    let mut bob = lab.local(
        "bob",
        &[
            "status:in the lab",
            "expect-message:alice@partner.example",
            "send:alice@partner.example:hello alice",
            "sleep:30",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let alice = lab.alice(&[
        "send:bob@org.example:hello bob",
        "expect-message:bob@org.example",
        "subscribe:bob@org.example",
        "expect-presence:bob@org.example",
    ]);
    let out = alice.finish().await;
    let got_hello = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='hello bob'",
            WAIT,
        )
        .await
        .is_some();
    let logs = || format!("alice: {out}\nbob: {:?}\n{}", bob.output, lab.logs());
    assert!(got_hello, "{}", logs());
    assert!(
        out.contains("MESSAGE from=bob@org.example type=chat body='hello alice'"),
        "{}",
        logs()
    );
    // Federated partners see status notes.
    assert!(
        out.contains("PRESENCE from=bob@org.example type=available status='in the lab'"),
        "{}",
        logs()
    );
    // The gateway tracked the subscription alice holds on bob's presence.
    let sub = lab
        .gateway()
        .shared
        .store
        .subscription("bob@org.example", "alice@partner.example")
        .expect("store");
    assert_eq!(sub.remote_to_local, SubState::Active, "{sub:?}");
    assert!(
        lab.metric("xmppfed_gateway_subscriptions ")
            .iter()
            .any(|l| !l.ends_with(" 0")),
        "{:?}",
        lab.metric("subscriptions")
    );
    assert!(
        lab.metric("stanzas_total{direction=\"inbound\",partner=\"p0\",verdict=\"forwarded\"}")
            .len()
            == 1
    );

    // Refresh: after two intervals (4 s) the gateway has probed alice on bob's behalf, her
    // server answered, and the subscription is still tracked.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let probes = lab.metric("xmppfed_gateway_subscription_probes_total");
    assert!(
        probes.iter().any(|l| !l.ends_with(" 0")),
        "{probes:?}\n{}",
        lab.logs()
    );
    let sub = lab
        .gateway()
        .shared
        .store
        .subscription("bob@org.example", "alice@partner.example")
        .expect("store");
    assert!(!sub.is_empty(), "the answered probes must keep it alive");

    // Hot reload: bob loses XMPP access; his next message is refused with the reason.
    let mut yaml = policy_yaml(81, "Federated", &limits);
    yaml.push_str("---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: bob-grounded, namespace: t}\nspec: {scope: User, users: [bob@org.example], enableFederationAccess: true, enableXmppAccess: false}\n");
    lab.apply(&yaml).await;
    let out = lab
        .local(
            "bob",
            &[
                "send:alice@partner.example:after the change",
                "expect-message:alice@partner.example",
            ],
        )
        .finish()
        .await;
    assert!(
        out.contains("condition=policy-violation") && out.contains("bob-grounded"),
        "{out}\n{}",
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_xmpp_access_are_refused_and_invisible() {
    if !c2s_available() {
        return;
    }
    let lab = lab(82, "Federated").await;
    let mut carol = lab.local(
        "carol",
        &[
            "send:alice@partner.example:psst",
            "expect-message:alice@partner.example",
        ],
    );
    online(&mut carol, "carol", &lab).await;
    let out = carol.finish().await;
    // Carol learns why, in words.
    assert!(
        out.contains("MESSAGE from=alice@partner.example type=error")
            && out.contains("condition=policy-violation")
            && out.contains("'no-xmpp-for-carol' does not enable XMPP federation"),
        "{out}\n{}",
        lab.logs()
    );
    // The partner's user gets what a non-existent user would give: service-unavailable.
    let mut carol_online = lab.local("carol", &["sleep:20"]);
    online(&mut carol_online, "carol", &lab).await;
    let out = lab
        .alice(&[
            "send:carol@org.example:hi carol",
            "expect-message:carol@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("type=error") && out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    assert!(
        carol_online
            .line("MESSAGE", Duration::from_millis(500))
            .await
            .is_none(),
        "carol must not receive it: {:?}",
        carol_online.output
    );
    assert_eq!(
        lab.metric("denials_total{reason=\"no-access\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"no-access\"} 2".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_unverified_partner_waits_for_the_local_user_and_the_gateway_remembers() {
    if !c2s_available() {
        return;
    }
    let mut lab = lab(83, "PublicUnverified").await;
    let mut erin = lab.local("erin", &["status:secret plans", "sleep:90"]);
    online(&mut erin, "erin", &lab).await;

    // Unsolicited: refused as if erin did not exist.
    let out = lab
        .alice(&[
            "send:erin@org.example:unsolicited",
            "expect-message:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    assert_eq!(
        lab.metric("denials_total{reason=\"not-contacted\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"not-contacted\"} 1".to_string()]
    );

    // Erin reaches out (from a second session); the gateway writes it down.
    let mut erin2 = lab.local("erin", &["send:alice@partner.example:hi alice"]);
    online(&mut erin2, "erin (second session)", &lab).await;
    erin2.finish().await;
    let store = lab.gateway().shared.store.clone();
    for _ in 0..100 {
        if store
            .reached_out("erin@org.example", "alice@partner.example")
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store
            .reached_out("erin@org.example", "alice@partner.example")
            .expect("store"),
        "{}",
        lab.logs()
    );

    // Now alice may write and subscribe; erin's status note is not shown to a public partner.
    let out = lab
        .alice(&[
            "send:erin@org.example:hi erin",
            "subscribe:erin@org.example",
            "expect-presence:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        erin.line(
            "MESSAGE from=alice@partner.example type=chat body='hi erin'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{out}\n{}",
        erin.output,
        lab.logs()
    );
    assert!(
        out.contains("PRESENCE from=erin@org.example type=available status=''"),
        "{out}\n{}",
        lab.logs()
    );

    // A gateway restart forgets nothing.
    let gateway = lab.gateway.take().expect("running");
    let link = lab.proxy.link_addr;
    drop(store);
    gateway.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    lab.gateway = Some(
        start_gateway(
            &target_host(lab.net, false),
            &lab.pki,
            lab.net,
            &lab.policy_file,
            &lab.state_file,
            link,
        )
        .await,
    );
    let out = lab
        .alice(&["send:erin@org.example:after the restart"])
        .finish()
        .await;
    assert!(
        erin.line(
            "MESSAGE from=alice@partner.example type=chat body='after the restart'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{out}\n{}",
        erin.output,
        lab.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_as_the_internal_server() {
    if !ejabberd_available() || !c2s_available() {
        return;
    }
    let lab = lab_with(84, "Federated", DEFAULT_LIMITS, true).await;
    let mut bob = lab.local(
        "bob",
        &[
            "expect-message:alice@partner.example",
            "send:alice@partner.example:hello from ejabberd",
            "sleep:20",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let out = lab
        .alice(&[
            "send:bob@org.example:hello ejabberd",
            "expect-message:bob@org.example",
        ])
        .finish()
        .await;
    let got = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='hello ejabberd'",
            WAIT,
        )
        .await
        .is_some();
    assert!(got, "{:?}\n{out}\n{}", bob.output, lab.logs());
    assert!(
        out.contains("MESSAGE from=bob@org.example type=chat body='hello from ejabberd'"),
        "{out}\n{}",
        lab.logs()
    );
}

/// PublicVerified: no prior contact needed, no status notes. And the scopes' precedence: a
/// Domain policy switching XMPP off for org.example beats the Global one, and a User policy
/// for bob beats the Domain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_verified_partner_and_policy_scopes() {
    if !c2s_available() {
        return;
    }
    let lab = lab(85, "PublicVerified").await;
    let mut yaml = policy_yaml(85, "PublicVerified", DEFAULT_LIMITS);
    yaml.push_str(
        "---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: org-no-xmpp, namespace: t}\nspec: {scope: Domain, domains: [org.example], enableFederationAccess: true, enableXmppAccess: false}\n\
         ---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {name: bob-may, namespace: t}\nspec: {scope: User, users: [bob@org.example], enableFederationAccess: true, enableXmppAccess: true}\n",
    );
    lab.apply(&yaml).await;

    // Bob (User policy) is reached without having written first; his status note is stripped.
    let mut bob = lab.local(
        "bob",
        &[
            "status:in the lab",
            "expect-message:alice@partner.example",
            "sleep:20",
        ],
    );
    online(&mut bob, "bob", &lab).await;
    let out = lab
        .alice(&[
            "send:bob@org.example:unannounced hello",
            "subscribe:bob@org.example",
            "expect-presence:bob@org.example",
        ])
        .finish()
        .await;
    let got = bob
        .line(
            "MESSAGE from=alice@partner.example type=chat body='unannounced hello'",
            WAIT,
        )
        .await
        .is_some();
    assert!(got, "{:?}\n{out}\n{}", bob.output, lab.logs());
    assert!(
        out.contains("PRESENCE from=bob@org.example type=available status=''"),
        "{out}\n{}",
        lab.logs()
    );

    // Erin falls under the Domain policy: refused with its name; the partner sees nobody.
    let out = lab
        .local(
            "erin",
            &[
                "send:alice@partner.example:hi",
                "expect-message:alice@partner.example",
            ],
        )
        .finish()
        .await;
    assert!(
        out.contains("condition=policy-violation") && out.contains("'org-no-xmpp'"),
        "{out}\n{}",
        lab.logs()
    );
    let out = lab
        .alice(&[
            "send:erin@org.example:hi erin",
            "expect-message:erin@org.example",
        ])
        .finish()
        .await;
    assert!(
        out.contains("condition=service-unavailable"),
        "{out}\n{}",
        lab.logs()
    );
    // Erin is offline, so the gateway's count shows it was the policy that answered both.
    assert_eq!(
        lab.metric("denials_total{reason=\"no-access\"}"),
        vec!["xmppfed_gateway_denials_total{reason=\"no-access\"} 2".to_string()]
    );
}

/// The `xmppfed-gateway` binary, run with the same settings as [`start_gateway`] from files.
struct GatewayProcess {
    child: std::process::Child,
}

impl GatewayProcess {
    fn spawn(lab: &Lab) -> Self {
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

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    async fn exited(mut self) {
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
async fn linked(lab: &Lab) {
    for _ in 0..250 {
        if lab.proxy.shared.hub.connected() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no gateway linked to the proxy");
}

/// Nothing acknowledged is lost across gateway restarts, crash or drain: while alice sends a
/// steady stream of messages, the gateway process is killed (SIGKILL) and restarted, then
/// drained (SIGTERM) and restarted. Every message reaches bob, or alice is told it did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restarts_while_messages_flow_lose_nothing() {
    if !c2s_available() {
        return;
    }
    const N: usize = 1000;
    let mut lab = lab(86, "Federated").await;
    // From here on the gateway is the real binary, in its own process.
    lab.gateway.take().expect("running").shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway = GatewayProcess::spawn(&lab);
    linked(&lab).await;

    let mut bob = lab.local("bob", &["sleep:40"]);
    online(&mut bob, "bob", &lab).await;
    let alice = lab.alice(&[
        "send:bob@org.example:first",
        "sleep:1",
        &format!("send-many:bob@org.example:{N}:4"),
        "sleep:8",
    ]);
    assert!(
        bob.line(
            "MESSAGE from=alice@partner.example type=chat body='first'",
            WAIT
        )
        .await
        .is_some(),
        "{:?}\n{}",
        bob.output,
        lab.logs()
    );
    // About 1.5 s into the stream: crash, and come back at once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gateway.signal("-KILL");
    gateway.exited().await;
    let gateway = GatewayProcess::spawn(&lab);
    // A second later: a graceful restart (what Kubernetes does on a rollout).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gateway.signal("-TERM");
    gateway.exited().await;
    let gateway = GatewayProcess::spawn(&lab);
    linked(&lab).await;

    let last = format!(
        "MESSAGE from=alice@partner.example type=chat body='n-{}'",
        N - 1
    );
    let _ = bob.line(&last, Duration::from_secs(30)).await;
    let alice_out = alice.finish().await;
    let received: std::collections::HashMap<String, usize> =
        bob.output.iter().fold(Default::default(), |mut m, l| {
            if let Some(b) = l
                .strip_prefix("MESSAGE from=alice@partner.example type=chat body='")
                .and_then(|r| r.strip_suffix("' condition= text=''"))
            {
                *m.entry(b.to_string()).or_default() += 1;
            }
            m
        });
    let bounced: Vec<&str> = alice_out
        .lines()
        .filter(|l| l.starts_with("MESSAGE from=bob@org.example type=error"))
        .collect();
    let lost: Vec<String> = (0..N)
        .map(|i| format!("n-{i}"))
        .filter(|b| {
            !received.contains_key(b) && !bounced.iter().any(|l| l.contains(&format!("'{b}'")))
        })
        .collect();
    let duplicates = received.values().filter(|&&c| c > 1).count();
    eprintln!(
        "restarts: {} of {N} delivered, {duplicates} twice, {} bounced",
        received.keys().filter(|b| b.starts_with("n-")).count(),
        bounced.len()
    );
    assert!(
        lost.is_empty(),
        "lost without an error to the sender: {lost:?}\nbounced: {bounced:?}\n{}\n{}",
        log_tail(
            "gateway",
            &std::fs::read_to_string(lab._dir.path().join("gateway.log")).unwrap_or_default(),
            40
        ),
        lab.logs()
    );
    // The restarts were quick: the proxy held everything for the new gateway.
    assert!(bounced.is_empty(), "{bounced:?}");
    gateway.signal("-TERM");
    gateway.exited().await;
}
