//! Two xmppfed edges federating with each other over real sockets and TLS: the protocol
//! stack end to end, independent of third-party servers (those are in `interop.rs`).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_exchange_messages_with_sasl_external() {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let (a_ip, b_ip) = (ip(31), ip(32));
    let mut to_b = PartnerSpec::new("partner.example");
    to_b.route = Some(format!("{b_ip}:5269"));
    let mut to_a = PartnerSpec::new("example.com");
    to_a.route = Some(format!("{a_ip}:5269"));
    let a = start_proxy(dir.path(), &pki, a_ip, "example.com", &[to_b], None).await;
    let b = start_proxy(dir.path(), &pki, b_ip, "partner.example", &[to_a], None).await;
    let mut gw_a = TestGateway::connect(&a).await;
    let mut gw_b = TestGateway::connect(&b).await;

    gw_a.send(&message(
        "alice@example.com/desk",
        "bob@partner.example",
        "hello",
    ))
    .await;
    let got = gw_b
        .recv(Duration::from_secs(10))
        .await
        .expect("delivered to B's gateway");
    assert_eq!(body(&got), "hello");
    assert_eq!(got.get_attr("from"), Some("alice@example.com/desk"));

    gw_b.send(&message(
        "bob@partner.example",
        "alice@example.com/desk",
        "hi back",
    ))
    .await;
    let got = gw_a
        .recv(Duration::from_secs(10))
        .await
        .expect("delivered to A's gateway");
    assert_eq!(body(&got), "hi back");

    let streams = metric(&b, "streams{");
    assert!(
        streams.iter().any(|l| l.contains("direction=\"inbound\"")
            && l.contains("method=\"sasl-external\"")
            && l.ends_with(" 1")),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_over_tls_is_verified_through_the_authoritative_edge() {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let (a_ip, b_ip) = (ip(33), ip(34));
    // SASL off on both sides: the only method left is dialback inside TLS, with a callback.
    let mut to_b = PartnerSpec::new("partner.example");
    (to_b.tls, to_b.sasl, to_b.route) = ("Required", "NotSupported", Some(format!("{b_ip}:5269")));
    let mut to_a = PartnerSpec::new("example.com");
    (to_a.tls, to_a.sasl, to_a.route) = ("Required", "NotSupported", Some(format!("{a_ip}:5269")));
    let a = start_proxy(dir.path(), &pki, a_ip, "example.com", &[to_b], None).await;
    let b = start_proxy(dir.path(), &pki, b_ip, "partner.example", &[to_a], None).await;
    let mut gw_a = TestGateway::connect(&a).await;
    let mut gw_b = TestGateway::connect(&b).await;
    gw_a.send(&message(
        "alice@example.com",
        "bob@partner.example",
        "via dialback",
    ))
    .await;
    let got = gw_b.recv(Duration::from_secs(10)).await.expect("delivered");
    assert_eq!(body(&got), "via dialback");
    let streams = metric(&b, "streams{");
    assert!(
        streams
            .iter()
            .any(|l| l.contains("method=\"tls-dialback\"") && l.ends_with(" 1")),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_to_an_unreachable_partner_are_bounced_with_the_reason() {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let mut nowhere = PartnerSpec::new("partner.example");
    nowhere.route = Some(format!("{}:5269", ip(35)));
    let a = start_proxy(dir.path(), &pki, ip(36), "example.com", &[nowhere], None).await;
    let mut gw = TestGateway::connect(&a).await;
    gw.send(&message(
        "alice@example.com",
        "bob@partner.example",
        "lost?",
    ))
    .await;
    let bounce = gw
        .recv(Duration::from_secs(20))
        .await
        .expect("a bounce, not silence");
    assert_eq!(bounce.get_attr("type"), Some("error"));
    assert_eq!(bounce.get_attr("to"), Some("alice@example.com"));
    let xml = bounce.to_xml();
    assert!(xml.contains("remote-server-timeout"), "{xml}");
    assert!(xml.contains("could not reach partner.example"), "{xml}");

    gw.send(&message("alice@example.com", "eve@unlisted.example", "x"))
        .await;
    let refused = gw.recv(Duration::from_secs(5)).await.expect("refusal");
    assert!(
        refused.to_xml().contains("not an allowed partner"),
        "{}",
        refused.to_xml()
    );
}
