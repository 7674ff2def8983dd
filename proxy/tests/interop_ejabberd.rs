//! The proxy against a real ejabberd from Debian (23.01), found through real SRV records
//! (dnsmasq), with certificates from a test CA, and real users (slixmpp) on ejabberd's c2s
//! port talking to the test gateway behind our edge.
//!
//! Topology per test: ejabberd serves `partner.example` on 127.0.<n>.3; our proxy serves
//! `example.com` on 127.0.<n>.2; dnsmasq on 127.0.<n>.1 (SRV targets are IP literals, as
//! ejabberd resolves target hosts with libc: RECIPE.md §5).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::servers::{
    Dns, Ejabberd, EjabberdOptions, Srv, chat, chat_output, ejabberd_available, grep, log_tail,
};
use support::*;
use xmppfed_xmpp::devca::CertSpec;
use xmppfed_xmpp::element::Element;

struct Lab {
    _dir: tempfile::TempDir,
    _dns: Dns,
    ca: std::path::PathBuf,
    ejabberd: Ejabberd,
    proxy: TestProxy,
    gateway: TestGateway,
}

async fn lab(net: u8, partner: PartnerSpec<'_>, dialback: bool) -> Lab {
    init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("xmppfed-ejabberd")
        .tempdir()
        .expect("tmp");
    let ip = |last: u8| Ipv4Addr::new(127, 0, net, last);
    let (dns_ip, proxy_ip, ejabberd_ip) = (ip(1), ip(2), ip(3));
    let (p, e) = (proxy_ip.to_string(), ejabberd_ip.to_string());
    let dns = Dns::start(
        dir.path(),
        dns_ip,
        &[
            Srv("_xmpps-server._tcp.example.com", ".", 0),
            Srv("_xmpp-server._tcp.example.com", &p, 5269),
            Srv("_xmpps-server._tcp.partner.example", ".", 0),
            Srv("_xmpp-server._tcp.partner.example", &e, 15269),
        ],
    );
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path());
    // No id-on-xmppAddr anywhere: ejabberd 23.01's s2s_in crashes on it (RECIPE.md §3).
    let (cert, key) = pki.write(
        dir.path(),
        "partner",
        &CertSpec::for_domain("partner.example"),
    );
    let ejabberd = Ejabberd::start(
        dir.path(),
        &EjabberdOptions {
            domain: "partner.example",
            ip: ejabberd_ip,
            dns: dns.addr,
            cert: &cert,
            key: &key,
            ca: &ca,
            dialback,
        },
    );
    let proxy = start_proxy(
        dir.path(),
        &pki,
        IpAddr::V4(proxy_ip),
        "example.com",
        &[partner],
        Some(dns.addr),
    )
    .await;
    let gateway = TestGateway::connect(&proxy).await;
    Lab {
        _dir: dir,
        _dns: dns,
        ca,
        ejabberd,
        proxy,
        gateway,
    }
}

fn dump(lab: &Lab) -> String {
    log_tail("ejabberd", &lab.ejabberd.log(), 40)
}

/// A user of ejabberd sends a message to romeo@example.com; the gateway answers it. Returns
/// the message the gateway received and what the user's client printed.
async fn conversation(lab: &mut Lab) -> (Option<Element>, String) {
    let user = lab.ejabberd.register("juliet");
    let client = chat(
        &lab.ca,
        &user,
        lab.ejabberd.c2s,
        "romeo@example.com",
        "wherefore art thou",
        true,
    )
    .await;
    let m = lab.gateway.recv(Duration::from_secs(20)).await;
    if let Some(m) = &m {
        let reply = message(
            m.get_attr("to").unwrap_or_default(),
            m.get_attr("from").unwrap_or_default(),
            "here, on the balcony",
        );
        lab.gateway.send(&reply).await;
    }
    (m, chat_output(client).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_both_ways_with_ejabberd_and_messages_between_real_users() {
    if !ejabberd_available() {
        return;
    }
    let mut lab = lab(72, PartnerSpec::new("partner.example"), false).await;
    let (m, out) = conversation(&mut lab).await;
    let m = m.unwrap_or_else(|| panic!("no message reached the gateway: {out}\n{}", dump(&lab)));
    assert!(
        m.get_attr("from")
            .is_some_and(|f| f.starts_with("juliet@partner.example/")),
        "{}",
        m.to_xml()
    );
    assert_eq!(body(&m), "wherefore art thou");
    assert!(
        out.contains("RECEIVED from=romeo@example.com type=chat body='here, on the balcony'"),
        "{out}\n{}",
        dump(&lab)
    );
    let log = lab.ejabberd.log();
    assert!(
        grep(
            &log,
            "Accepted outbound s2s EXTERNAL authentication partner.example -> example.com"
        ),
        "{}",
        dump(&lab)
    );
    assert!(
        grep(
            &log,
            "Accepted inbound s2s EXTERNAL authentication example.com -> partner.example"
        ),
        "{}",
        dump(&lab)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_falls_back_to_dialback_for_a_partner_without_sasl() {
    if !ejabberd_available() {
        return;
    }
    let mut partner = PartnerSpec::new("partner.example");
    partner.sasl = "NotSupported";
    let mut lab = lab(73, partner, true).await;
    let (m, out) = conversation(&mut lab).await;
    assert!(
        m.is_some(),
        "no message reached the gateway: {out}\n{}",
        dump(&lab)
    );
    assert!(
        out.contains("RECEIVED from=romeo@example.com"),
        "{out}\n{}",
        dump(&lab)
    );
    let log = lab.ejabberd.log();
    assert!(
        grep(
            &log,
            "Accepted outbound s2s dialback authentication partner.example -> example.com"
        ),
        "{}",
        dump(&lab)
    );
    assert!(
        grep(
            &log,
            "Accepted inbound s2s dialback authentication example.com -> partner.example"
        ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_ejabberd_is_refused_and_its_user_gets_an_error_not_silence() {
    if !ejabberd_available() {
        return;
    }
    let mut lab = lab(74, PartnerSpec::new("someone-else.example"), false).await;
    let (m, out) = conversation(&mut lab).await;
    assert!(
        m.is_none(),
        "an unlisted partner's message reached the gateway"
    );
    assert!(out.contains("type=error"), "{out}\n{}", dump(&lab));
    assert!(
        grep(
            &lab.ejabberd.log(),
            "partner.example is not an allowed partner"
        ),
        "{}",
        dump(&lab)
    );
    assert!(
        metric(&lab.proxy, "rejections")
            .iter()
            .any(|l| l.contains("policy-violation"))
    );
}
