//! The proxy against a real Prosody from Debian, found through real SRV records (dnsmasq),
//! with certificates from a test CA: each test is a row of the matrix "our partner settings ×
//! the peer's settings and certificate → what was negotiated, or which stream error".
//!
//! Topology per test: Prosody serves `partner.example`; our proxy serves `example.com`; a test
//! gateway end stands in for the gateway on the internal link.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::servers::{
    Dns, Prosody, ProsodyOptions, Srv, c2s_available, chat, chat_output, grep, log_tail,
    servers_available,
};
use support::*;
use xmppfed_xmpp::devca::{CertSpec, Eku};
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::ns;

struct Lab {
    dir: tempfile::TempDir,
    dns: Dns,
    pki: Pki,
    ca: std::path::PathBuf,
    prosody: Prosody,
    proxy: TestProxy,
    gateway: TestGateway,
}

struct LabSpec<'a> {
    /// Last octet block: the lab uses 127.0.<n>.1 (DNS), .2 (proxy), .3 (prosody).
    net: u8,
    partner: Option<PartnerSpec<'a>>,
    prosody_cert: CertSpec,
    /// Issue prosody's certificate from a CA we do not trust.
    foreign_ca: Option<Pki>,
    secure_auth: bool,
    require_encryption: bool,
    /// Prosody loads mod_s2s_bidi.
    bidi: bool,
    /// Publish `_xmpps-server` for our edge (direct TLS) or `.` (STARTTLS only).
    direct_tls: bool,
    /// The federation's `limits`.
    limits: &'static str,
}

impl LabSpec<'_> {
    fn new(net: u8) -> Self {
        Self {
            net,
            partner: Some(PartnerSpec::new("partner.example")),
            prosody_cert: CertSpec::for_domain("partner.example"),
            foreign_ca: None,
            secure_auth: true,
            require_encryption: true,
            bidi: false,
            direct_tls: false,
            limits: DEFAULT_LIMITS,
        }
    }
}

async fn lab(spec: LabSpec<'_>) -> Lab {
    init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("xmppfed-interop")
        .tempdir()
        .expect("tmp");
    let ip = |last: u8| Ipv4Addr::new(127, 0, spec.net, last);
    let (dns_ip, proxy_ip, prosody_ip) = (ip(1), ip(2), ip(3));
    let (p, d) = (proxy_ip.to_string(), prosody_ip.to_string());
    let dns = Dns::start(
        dir.path(),
        dns_ip,
        &[
            if spec.direct_tls {
                Srv("_xmpps-server._tcp.example.com", &p, 5270)
            } else {
                Srv("_xmpps-server._tcp.example.com", ".", 0)
            },
            Srv("_xmpp-server._tcp.example.com", &p, 5269),
            Srv("_xmpps-server._tcp.partner.example", ".", 0),
            Srv("_xmpp-server._tcp.partner.example", &d, 15269),
        ],
    );
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path());
    let (cert, key) = match &spec.foreign_ca {
        Some(foreign) => foreign.write(dir.path(), "partner", &spec.prosody_cert),
        None => pki.write(dir.path(), "partner", &spec.prosody_cert),
    };
    let prosody = Prosody::start(
        dir.path(),
        &ProsodyOptions {
            domain: "partner.example",
            ip: prosody_ip,
            dns: dns.addr,
            cert: &cert,
            key: &key,
            ca: &ca,
            secure_auth: spec.secure_auth,
            require_encryption: spec.require_encryption,
            bidi: spec.bidi,
        },
    );
    let partners: Vec<PartnerSpec> = spec.partner.into_iter().collect();
    let proxy = start_proxy_with(
        dir.path(),
        &pki,
        IpAddr::V4(proxy_ip),
        "example.com",
        &partners,
        Some(dns.addr),
        spec.limits,
    )
    .await;
    let gateway = TestGateway::connect(&proxy).await;
    Lab {
        dir,
        dns,
        pki,
        ca,
        prosody,
        proxy,
        gateway,
    }
}

fn ping(from: &str, to: &str, id: &str) -> Element {
    Element::new(ns::SERVER, "iq")
        .attr("type", "get")
        .attr("from", from)
        .attr("to", to)
        .attr("id", id)
        .child(Element::new(ns::PING, "ping"))
}

/// Prosody pings our domain (through the proxy, to the test gateway, which answers).
async fn prosody_pings_us(lab: &mut Lab) -> String {
    let dir = lab.prosody.dir.clone();
    let shell = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("prosodyctl")
            .arg("--config")
            .arg(dir.join("prosody.cfg.lua"))
            .args(["shell", "xmpp", "ping", "partner.example", "example.com"])
            .output()
            .expect("prosodyctl");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    });
    // Answer the ping if it reaches the gateway.
    if let Some(iq) = lab.gateway.recv(Duration::from_secs(8)).await {
        let reply = Element::new(ns::SERVER, "iq")
            .attr("type", "result")
            .attr("from", iq.get_attr("to").unwrap_or_default())
            .attr("to", iq.get_attr("from").unwrap_or_default())
            .attr("id", iq.get_attr("id").unwrap_or_default());
        lab.gateway.send(&reply).await;
    }
    shell.await.expect("shell task")
}

fn dump(lab: &Lab) -> String {
    log_tail("prosody", &lab.prosody.log(), 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_both_ways_with_prosody() {
    if !servers_available() {
        return;
    }
    let mut lab = lab(LabSpec::new(61)).await;
    // Outbound: our gateway pings prosody's domain; prosody answers over its own stream to us.
    lab.gateway
        .send(&ping("example.com", "partner.example", "p1"))
        .await;
    let answer = lab.gateway.recv(Duration::from_secs(15)).await;
    let answer = answer.unwrap_or_else(|| panic!("no ping answer\n{}", dump(&lab)));
    assert_eq!(
        answer.get_attr("type"),
        Some("result"),
        "{}",
        answer.to_xml()
    );
    assert_eq!(answer.get_attr("id"), Some("p1"));
    // Inbound: prosody pings us.
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    let log = lab.prosody.log();
    assert!(
        grep(&log, "SASL EXTERNAL with example.com succeeded"),
        "{}",
        dump(&lab)
    );
    assert!(
        grep(&log, "Accepting SASL EXTERNAL identity from example.com"),
        "{}",
        dump(&lab)
    );
    let streams = metric(&lab.proxy, "streams{");
    assert!(
        streams
            .iter()
            .any(|l| l.contains("inbound") && l.contains("sasl-external")),
        "{streams:?}"
    );
    assert!(
        streams
            .iter()
            .any(|l| l.contains("outbound") && l.contains("sasl-external")),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_uses_direct_tls_when_published() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(62);
    spec.direct_tls = true;
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    assert!(
        grep(&lab.prosody.log(), "Next target to try is 127.0.62.2:5270"),
        "prosody should have chosen the _xmpps-server target\n{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_partner_is_refused_with_policy_violation() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(63);
    spec.partner = Some(PartnerSpec::new("someone-else.example"));
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(!out.contains("pong"), "{out}");
    assert!(
        grep(
            &lab.prosody.log(),
            "partner.example is not an allowed partner"
        ),
        "{out}\n{}",
        dump(&lab)
    );
    assert!(
        metric(&lab.proxy, "rejections")
            .iter()
            .any(|l| l.contains("policy-violation"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_domain_certificate_is_not_authorized() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(64);
    spec.prosody_cert = CertSpec::for_domain("imposter.example");
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(!out.contains("pong"), "{out}");
    assert!(
        grep(&lab.prosody.log(), "not valid for partner.example"),
        "{out}\n{}",
        dump(&lab)
    );
    assert!(
        metric(&lab.proxy, "rejections")
            .iter()
            .any(|l| l.contains("not-authorized"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_not_authorized() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(65);
    spec.prosody_cert = CertSpec {
        expired: true,
        ..CertSpec::for_domain("partner.example")
    };
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(!out.contains("pong"), "{out}");
    assert!(
        grep(&lab.prosody.log(), "it has expired"),
        "{out}\n{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_auth_only_certificate_is_accepted() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(66);
    spec.prosody_cert = CertSpec {
        eku: Eku::ServerOnly,
        ..CertSpec::for_domain("partner.example")
    };
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_partner_authenticates_with_callbacks_both_ways() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(67);
    let mut partner = PartnerSpec::new("partner.example");
    partner.sasl = "NotSupported";
    spec.partner = Some(partner);
    spec.secure_auth = false;
    spec.prosody_cert = CertSpec::for_domain("imposter.example");
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    lab.gateway
        .send(&ping("example.com", "partner.example", "p2"))
        .await;
    let answer = lab.gateway.recv(Duration::from_secs(15)).await;
    assert!(
        answer.is_some_and(|a| a.get_attr("type") == Some("result")),
        "{}",
        dump(&lab)
    );
    let streams = metric(&lab.proxy, "streams{");
    assert!(
        streams
            .iter()
            .any(|l| l.contains("inbound") && l.contains("tls-dialback")),
        "{streams:?}"
    );
}

/// The gateway's answer to a chat message: from the addressee back to the sender.
fn reply_to(message: &Element, body: &str) -> Element {
    support::message(
        message.get_attr("to").unwrap_or_default(),
        message.get_attr("from").unwrap_or_default(),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_both_ways_between_a_prosody_user_and_the_gateway() {
    if !c2s_available() {
        return;
    }
    let mut lab = lab(LabSpec::new(68)).await;
    let user = lab.prosody.register("juliet");
    let client = chat(
        &lab.ca,
        &user,
        lab.prosody.c2s,
        "romeo@example.com",
        "wherefore art thou",
        true,
    )
    .await;
    let m = lab.gateway.recv(Duration::from_secs(20)).await;
    let m = m.unwrap_or_else(|| panic!("no message reached the gateway\n{}", dump(&lab)));
    assert_eq!(m.name, "message");
    assert!(
        m.get_attr("from")
            .is_some_and(|f| f.starts_with("juliet@partner.example/")),
        "{}",
        m.to_xml()
    );
    assert_eq!(m.get_attr("to"), Some("romeo@example.com"));
    assert_eq!(body(&m), "wherefore art thou");
    lab.gateway
        .send(&reply_to(&m, "here, on the balcony"))
        .await;
    let out = chat_output(client).await;
    assert!(
        out.contains("RECEIVED from=romeo@example.com type=chat body='here, on the balcony'"),
        "{out}\n{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_stanza_from_prosody_is_a_policy_violation_and_the_partner_recovers() {
    if !c2s_available() {
        return;
    }
    let mut spec = LabSpec::new(69);
    spec.limits = "maxStanzaBytes: 10000, streamEstablishmentTimeout: 10s";
    let mut lab = lab(spec).await;
    let user = lab.prosody.register("juliet");
    let big = "x".repeat(20_000);
    let client = chat(
        &lab.ca,
        &user,
        lab.prosody.c2s,
        "romeo@example.com",
        &big,
        false,
    )
    .await;
    let out = chat_output(client).await;
    assert!(out.contains("LOGGED IN"), "{out}");
    assert!(
        lab.gateway.recv(Duration::from_secs(2)).await.is_none(),
        "the oversize stanza must not reach the gateway"
    );
    wait_for_log(&lab.prosody, "policy-violation").await;
    assert!(
        grep(&lab.prosody.log(), "limit of 10000 bytes"),
        "{}",
        dump(&lab)
    );
    assert!(
        metric(&lab.proxy, "rejections")
            .iter()
            .any(|l| l.contains("policy-violation"))
    );
    // Prosody reconnects for the next stanza, which is delivered.
    let client = chat(
        &lab.ca,
        &user,
        lab.prosody.c2s,
        "romeo@example.com",
        "small",
        false,
    )
    .await;
    let m = lab.gateway.recv(Duration::from_secs(20)).await;
    assert_eq!(
        m.map(|m| body(&m)).as_deref(),
        Some("small"),
        "{}",
        dump(&lab)
    );
    chat_output(client).await;
}

/// Waits up to 5 s for `needle` in prosody's log.
async fn wait_for_log(prosody: &Prosody, needle: &str) {
    for _ in 0..100 {
        if grep(&prosody.log(), needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{needle:?} not in prosody's log:\n{}", prosody.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_prosody_from_the_partners_closes_its_open_stream() {
    if !servers_available() {
        return;
    }
    let mut lab = lab(LabSpec::new(70)).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    let removed_at = std::time::Instant::now();
    write_policy_with(
        &lab.proxy.policy_file,
        "example.com",
        &[PartnerSpec::new("someone-else.example")],
        DEFAULT_LIMITS,
    );
    wait_for_log(&lab.prosody, "was removed from the allowed partners").await;
    let took = removed_at.elapsed();
    assert!(
        grep(&lab.prosody.log(), "policy-violation"),
        "{}",
        dump(&lab)
    );
    eprintln!("prosody saw its stream closed {took:?} after the policy file changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_of_a_partner_over_its_connection_limit_gets_conflict() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(71);
    let mut partner = PartnerSpec::new("partner.example");
    partner.connection_limit = Some(1);
    spec.partner = Some(partner);
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    // A second node of the same partner (same domain and certificate, another address).
    let (cert, key) = lab.pki.write(
        lab.dir.path(),
        "partner2",
        &CertSpec::for_domain("partner.example"),
    );
    let second = Prosody::start(
        lab.dir.path(),
        &ProsodyOptions {
            domain: "partner.example",
            ip: Ipv4Addr::new(127, 0, 71, 4),
            dns: lab.dns.addr,
            cert: &cert,
            key: &key,
            ca: &lab.ca,
            secure_auth: true,
            require_encryption: true,
            bidi: false,
        },
    );
    let out = second.shell(&["xmpp", "ping", "partner.example", "example.com"]);
    assert!(!out.contains("pong"), "{out}");
    wait_for_log(&second, "conflict").await;
    assert!(grep(&second.log(), "connectionLimit"), "{}", second.log());
    // The first node's stream is untouched.
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_an_untrusted_ca_is_not_authorized() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(75);
    spec.foreign_ca = Some(Pki::new());
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(!out.contains("pong"), "{out}");
    assert!(
        grep(&lab.prosody.log(), "it was not issued by a trusted CA"),
        "{out}\n{}",
        dump(&lab)
    );
    assert!(
        metric(&lab.proxy, "rejections")
            .iter()
            .any(|l| l.contains("not-authorized"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_off_partner_uses_plaintext_dialback_both_ways() {
    if !servers_available() {
        return;
    }
    // Lync row "NotSupported / NotSupported / dialback": a legacy partner without TLS.
    let mut spec = LabSpec::new(76);
    let mut partner = PartnerSpec::new("partner.example");
    partner.tls = "NotSupported";
    partner.sasl = "NotSupported";
    spec.partner = Some(partner);
    spec.secure_auth = false;
    spec.require_encryption = false;
    let mut lab = lab(spec).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    lab.gateway
        .send(&ping("example.com", "partner.example", "p3"))
        .await;
    let answer = lab.gateway.recv(Duration::from_secs(15)).await;
    assert!(
        answer.is_some_and(|a| a.get_attr("type") == Some("result")),
        "{}",
        dump(&lab)
    );
    let streams = metric(&lab.proxy, "streams{");
    for direction in ["inbound", "outbound"] {
        assert!(
            streams
                .iter()
                .any(|l| l.contains(direction) && l.contains("tcp-dialback")),
            "{direction}: {streams:?}"
        );
    }
    assert!(
        !grep(&lab.prosody.log(), "Stream encrypted"),
        "no TLS was expected\n{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_prosody_gets_our_stanzas_over_its_own_stream() {
    if !servers_available() {
        return;
    }
    let mut spec = LabSpec::new(77);
    spec.bidi = true;
    let mut lab = lab(spec).await;
    // Prosody opens its stream to us, asking for XEP-0288 bidi; our pong goes back over it.
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    assert!(
        grep(&lab.prosody.log(), "Requesting bidirectional stream"),
        "{}",
        dump(&lab)
    );
    // Our own ping to prosody takes the same stream: no outbound connection is opened.
    lab.gateway
        .send(&ping("example.com", "partner.example", "p4"))
        .await;
    let answer = lab.gateway.recv(Duration::from_secs(15)).await;
    assert!(
        answer.is_some_and(|a| a.get_attr("type") == Some("result")),
        "{}",
        dump(&lab)
    );
    let streams = metric(&lab.proxy, "streams{");
    assert!(
        streams
            .iter()
            .any(|l| l.contains("outbound") && l.contains("bidi") && l.ends_with(" 1")),
        "{streams:?}"
    );
    assert!(
        !streams
            .iter()
            .any(|l| l.contains("outbound") && l.contains("sasl-external")),
        "no second connection was expected: {streams:?}"
    );
    assert!(
        !grep(
            &lab.prosody.log(),
            "Incoming s2s connection example.com->partner.example complete"
        ),
        "{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_stream_to_a_bidi_prosody_carries_its_answers_back() {
    if !servers_available() {
        return;
    }
    // We speak first: our outbound stream asks for XEP-0288 bidi, and Prosody's pong comes
    // back over it instead of over a connection of its own.
    let mut spec = LabSpec::new(79);
    spec.bidi = true;
    let mut lab = lab(spec).await;
    lab.gateway
        .send(&ping("example.com", "partner.example", "p6"))
        .await;
    let answer = lab.gateway.recv(Duration::from_secs(15)).await;
    assert!(
        answer.is_some_and(|a| a.get_attr("type") == Some("result")),
        "{}",
        dump(&lab)
    );
    assert!(
        grep(&lab.prosody.log(), "Requested bidirectional stream"),
        "{}",
        dump(&lab)
    );
    let streams = metric(&lab.proxy, "streams{");
    assert!(
        streams
            .iter()
            .any(|l| l.contains("outbound") && l.contains("sasl-external") && l.ends_with(" 1")),
        "{streams:?}"
    );
    assert!(
        !streams
            .iter()
            .any(|l| l.contains("inbound") && l.ends_with(" 1")),
        "Prosody was expected to answer over our stream, not to open its own: {streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bidi_prosody_gets_a_stream_of_ours() {
    if !servers_available() {
        return;
    }
    // The counterpart of the bidi row: the same exchange opens our own outbound stream.
    let mut lab = lab(LabSpec::new(78)).await;
    let out = prosody_pings_us(&mut lab).await;
    assert!(out.contains("pong"), "{out}\n{}", dump(&lab));
    assert!(
        grep(
            &lab.prosody.log(),
            "Incoming s2s connection example.com->partner.example complete"
        ),
        "{}",
        dump(&lab)
    );
    assert!(
        !metric(&lab.proxy, "streams{")
            .iter()
            .any(|l| l.contains("bidi") && l.ends_with(" 1"))
    );
}
