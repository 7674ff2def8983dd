//! What the proxy does with hostile, oversized, over-limit and no-longer-allowed peers, with
//! live policy changes, and on drain — over real sockets.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, last))
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='partner.example' to='example.com' version='1.0'>";

/// Sends `bytes` to `addr` and returns everything the proxy answered until it closed.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

async fn single_edge(last: u8, partners: &[PartnerSpec<'_>]) -> (tempfile::TempDir, TestProxy) {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let proxy = start_proxy(dir.path(), &pki, ip(last), "example.com", partners, None).await;
    (dir, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_the_right_stream_error_and_the_proxy_stays_up() {
    let (_dir, edge) = single_edge(10, &[PartnerSpec::new("partner.example")]).await;
    let addr = edge.proxy.starttls_addr;
    let big_attr = format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' junk='{}'>",
        "A".repeat(200_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("billion laughs", b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><lolz>&lol2;</lolz>".to_vec(), "restricted-xml"),
        ("processing instruction", format!("{HEADER}<?evil pi?>").into_bytes(), "restricted-xml"),
        ("comment", format!("{HEADER}<!-- hi -->").into_bytes(), "restricted-xml"),
        ("invalid UTF-8", [HEADER.as_bytes(), b"<message>\xff\xfe</message>"].concat(), "unsupported-encoding"),
        ("mismatched tags", format!("{HEADER}<message><body></message>").into_bytes(), "not-well-formed"),
        ("gigantic attribute in the header", big_attr.into_bytes(), "policy-violation"),
        ("not a stream", b"<html><body>hello</body></html>".to_vec(), "invalid-namespace"),
        ("stanza before authentication", format!("{HEADER}<message from='a@partner.example' to='b@example.com'/>").into_bytes(), "not-authorized"),
    ];
    for (name, bytes, condition) in cases {
        let answer = exchange(addr, &bytes).await;
        assert!(
            answer.contains(&format!(
                "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            )),
            "{name}: {answer}"
        );
        assert!(
            answer.contains("<text"),
            "{name}: a stream error says why: {answer}"
        );
        assert!(
            answer.starts_with("<?xml"),
            "{name}: our header comes first: {answer}"
        );
    }
    // Still serving.
    let answer = exchange(addr, format!("{HEADER}</stream:stream>").as_bytes()).await;
    assert!(answer.contains("<starttls"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_after_starttls_is_never_carried_into_tls() {
    let (_dir, edge) = single_edge(11, &[PartnerSpec::new("partner.example")]).await;
    let injected = format!(
        "{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message from='x@partner.example' to='y@example.com'><body>injected</body></message>"
    );
    let answer = exchange(edge.proxy.starttls_addr, injected.as_bytes()).await;
    // The proxy said <proceed/> and then hung up instead of starting TLS over injected bytes.
    assert!(answer.contains("<proceed"), "{answer}");
    assert!(answer.ends_with("/>") || answer.ends_with('>'), "{answer}");
    assert!(
        metric(&edge, "streams{").iter().all(|l| l.ends_with(" 0")),
        "nothing authenticated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_connection_limit_answers_conflict() {
    let mut p = PartnerSpec::new("partner.example");
    p.connection_limit = Some(1);
    let (_dir, edge) = single_edge(12, &[p]).await;
    let mut first = TcpStream::connect(edge.proxy.starttls_addr).await.unwrap();
    first.write_all(HEADER.as_bytes()).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("stream:stream"));
    let second = exchange(edge.proxy.starttls_addr, HEADER.as_bytes()).await;
    assert!(
        second.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{second}"
    );
    assert!(second.contains("connectionLimit"), "{second}");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn establishment_timeout_closes_with_connection_timeout() {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let edge = start_proxy(
        dir.path(),
        &pki,
        ip(13),
        "example.com",
        &[PartnerSpec::new("partner.example")],
        None,
    )
    .await;
    write_policy_with(
        &edge.policy_file,
        "example.com",
        &[PartnerSpec::new("partner.example")],
        "streamEstablishmentTimeout: 1s",
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A slowloris peer: opens the stream and then says nothing.
    let answer = exchange(edge.proxy.starttls_addr, HEADER.as_bytes()).await;
    assert!(answer.contains("<connection-timeout"), "{answer}");
}

/// Two edges with a stream from B (partner.example) into A (example.com).
async fn two_edges(
    a_last: u8,
    b_last: u8,
) -> (
    tempfile::TempDir,
    TestProxy,
    TestProxy,
    TestGateway,
    TestGateway,
) {
    init_tracing();
    let dir = shared_dir();
    let pki = Pki::new();
    let mut to_b = PartnerSpec::new("partner.example");
    to_b.route = Some(format!("{}:5269", ip(b_last)));
    let mut to_a = PartnerSpec::new("example.com");
    to_a.route = Some(format!("{}:5269", ip(a_last)));
    let a = start_proxy(dir.path(), &pki, ip(a_last), "example.com", &[to_b], None).await;
    let b = start_proxy(
        dir.path(),
        &pki,
        ip(b_last),
        "partner.example",
        &[to_a],
        None,
    )
    .await;
    let gw_a = TestGateway::connect(&a).await;
    let gw_b = TestGateway::connect(&b).await;
    (dir, a, b, gw_a, gw_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stanza_is_a_policy_violation_and_the_next_one_flows() {
    let (_dir, a, _b, mut gw_a, mut gw_b) = two_edges(20, 21).await;
    gw_b.send(&message(
        "bob@partner.example",
        "alice@example.com",
        &"x".repeat(300_000),
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metric(&a, "rejections")
        .iter()
        .any(|l| l.contains("policy-violation"))
    {
        assert!(
            Instant::now() < deadline,
            "A never rejected the oversized stanza"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw_a.recv(Duration::from_millis(300)).await.is_none(),
        "the oversized stanza was not relayed"
    );
    gw_b.send(&message(
        "bob@partner.example",
        "alice@example.com",
        "small",
    ))
    .await;
    let got = gw_a
        .recv(Duration::from_secs(10))
        .await
        .expect("the next stanza flows on a new stream");
    assert_eq!(body(&got), "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_partner_is_cut_off_with_policy_violation() {
    let (_dir, a, _b, mut gw_a, mut gw_b) = two_edges(22, 23).await;
    gw_b.send(&message(
        "bob@partner.example",
        "alice@example.com",
        "before",
    ))
    .await;
    assert_eq!(
        body(&gw_a.recv(Duration::from_secs(10)).await.expect("delivered")),
        "before"
    );
    assert!(
        metric(&a, "streams{")
            .iter()
            .any(|l| l.contains("inbound") && l.ends_with(" 1"))
    );

    // kubectl delete xmppallowedpartner: A's policy no longer lists partner.example.
    let removed_at = Instant::now();
    write_policy(
        &a.policy_file,
        "example.com",
        &[PartnerSpec::new("someone-else.example")],
        262_144,
    );
    while !metric(&a, "rejections")
        .iter()
        .any(|l| l.contains("policy-violation"))
    {
        assert!(
            removed_at.elapsed() < Duration::from_secs(10),
            "the stream was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "partner stream closed {:?} after the policy file changed (budget 2 s)",
        removed_at.elapsed()
    );
    assert!(
        metric(&a, "streams{")
            .iter()
            .all(|l| !l.contains("inbound") || l.ends_with(" 0"))
    );
    // And A no longer sends to it: a stanza for the removed partner is refused with a reason.
    gw_a.send(&message(
        "alice@example.com",
        "bob@partner.example",
        "after",
    ))
    .await;
    let refused = gw_a.recv(Duration::from_secs(5)).await.expect("refusal");
    assert!(
        refused.to_xml().contains("not an allowed partner"),
        "{}",
        refused.to_xml()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_policy_is_refused_and_the_last_good_one_stays() {
    let (_dir, edge) = single_edge(14, &[PartnerSpec::new("partner.example")]).await;
    let good = edge.proxy.shared.policy.current().version().to_string();
    std::fs::write(&edge.policy_file, b"{\"format\": \"something else\"}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.proxy.shared.policy.status().last_error.is_none() {
        assert!(
            Instant::now() < deadline,
            "the corrupt document was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.proxy.shared.policy.current().version(), good);
    let ready = http_get(edge.proxy.http_addr.unwrap(), "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("policy refused"), "{ready}");
    assert!(ready.contains(&good), "{ready}");
    // What the operator reads to report the confirmed version: still the last good one.
    let version = http_get(edge.proxy.http_addr.unwrap(), "/policy-version").await;
    assert!(version.ends_with(&format!("\r\n\r\n{good}\n")), "{version}");
    assert!(
        metric(&edge, "policy_reload_failures")
            .iter()
            .any(|l| l.ends_with(" 1"))
    );
    // Still serving partners under the last good policy.
    let answer = exchange(
        edge.proxy.starttls_addr,
        format!("{HEADER}</stream:stream>").as_bytes(),
    )
    .await;
    assert!(answer.contains("<starttls"), "{answer}");
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_drain() {
    let (_dir, edge) = single_edge(15, &[PartnerSpec::new("partner.example")]).await;
    let http = edge.proxy.http_addr.unwrap();
    assert!(http_get(http, "/healthz").await.starts_with("HTTP/1.1 200"));
    let metrics = http_get(http, "/metrics").await;
    assert!(
        metrics.contains("xmppfed_proxy_policy_version"),
        "{metrics}"
    );
    assert!(metrics.contains("xmppfed_proxy_gateway_links"), "{metrics}");
    // An open, unauthenticated partner stream is told why it is closed when we drain.
    let mut open = TcpStream::connect(edge.proxy.starttls_addr).await.unwrap();
    open.write_all(HEADER.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let _ = open.read(&mut buf).await.unwrap();
    let shared = edge.proxy.shared.clone();
    let drain = tokio::spawn(edge.proxy.shutdown());
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("<system-shutdown"), "{rest}");
    drain.await.unwrap();
    assert!(shared.shutting_down());
}
