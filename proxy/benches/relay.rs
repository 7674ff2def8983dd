//! Proxy benchmarks (spec §5). Run: `cargo bench -p xmppfed-proxy --bench relay`
//! (`BENCH_STREAMS=n` sets the idle-stream count, default 10,000; `BENCH_HOP_STANZAS=n` the
//! stanzas of the throughput run, default 300,000; `BENCH_ONLY=hop` runs only the proxy hop,
//! `BENCH_ONLY=throughput` only its throughput part). Framing alone has its own
//! bench: `cargo bench -p xmppfed-xmpp --bench framing`.
//!
//! 1. One proxy hop — partner TLS stream in, policed, out over the mutual-TLS link — against a
//!    plain TLS-terminating TCP relay in the same process on the same machine: bytes/s, and
//!    p50/p99 latency at a moderate rate.
//! 2. Memory per idle authenticated S2S stream: the `xmppfed-proxy` binary as a child process,
//!    its RSS before and after N SASL-EXTERNAL-authenticated streams.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xmppfed_xmpp::conn::{Transport, XmppConn};
use xmppfed_xmpp::devca::CertSpec;
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::framer::FramerLimits;
use xmppfed_xmpp::link;
use xmppfed_xmpp::outbound::{Negotiated, OutboundSession, Purpose, negotiate};
use xmppfed_xmpp::tls::{self, Identity, TlsMode};

fn stanza(i: usize) -> String {
    // ~300 bytes on the wire, like a typical chat message with a receipt request.
    format!(
        "<message from='bob@partner.example/phone' to='alice@example.com' type='chat' id='msg-{i:08}'><body>{}</body><request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "x".repeat(110)
    )
}

/// Opens an authenticated stream from partner.example to example.com at `addr`.
async fn partner_stream(
    addr: SocketAddr,
    identity: &Identity,
    trust: Arc<xmppfed_xmpp::identity::TrustStore>,
) -> XmppConn {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let mut conn = XmppConn::new(Transport::Plain(tcp), FramerLimits::PRE_AUTH);
    let mut session = OutboundSession::new(
        "partner.example",
        "example.com",
        xmppfed_policy::NegotiationSettings::new(
            xmppfed_policy::Negotiation::Required,
            xmppfed_policy::Negotiation::Required,
            true,
        ),
        trust,
        DialbackSecret::new("bench"),
        Purpose::Stanzas,
        false,
        Vec::new(),
    );
    let client = tls::s2s_client_config(Some(identity), TlsMode::StartTls).expect("client config");
    match negotiate(&mut conn, &mut session, client).await {
        Ok(Negotiated::Established(_)) => conn,
        other => panic!("negotiation failed: {other:?}"),
    }
}

/// The gateway end of the throughput run, as cheap as the plain relay's sink: it reads the
/// link's decrypted bytes, counts relayed stanzas by their end tag and acknowledges them every
/// `link::ACK_EVERY`, as the real gateway does. Parsing them again would bill the next hop's
/// work to this one.
struct LinkSink {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
}

impl LinkSink {
    async fn connect(proxy: &TestProxy) -> Self {
        let mut tls = link_tls(proxy).await;
        tls.write_all(link::client_header("bench-sink").as_bytes())
            .await
            .expect("header");
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        while !seen.windows(18).any(|w| w == b"</stream:features>") {
            let k = tls.read(&mut buf).await.expect("features");
            assert!(k > 0, "link closed before its features");
            seen.extend_from_slice(&buf[..k]);
        }
        until_link_registered(proxy).await;
        Self { tls }
    }

    /// Reads until `n` stanzas have arrived.
    async fn count(mut self, n: usize) -> Self {
        const END: &[u8] = b"</message>";
        let finder = memchr::memmem::Finder::new(END);
        let mut buf = vec![0u8; 64 * 1024];
        // The tail of the previous read, in case an end tag straddles two reads.
        let mut carry = Vec::new();
        let (mut seen, mut acked) = (0usize, 0usize);
        while seen < n {
            let k = self.tls.read(&mut buf).await.expect("link read");
            assert!(k > 0, "link closed after {seen} stanzas");
            carry.extend_from_slice(&buf[..k]);
            let mut at = 0;
            while let Some(i) = finder.find(&carry[at..]) {
                seen += 1;
                at += i + END.len();
            }
            carry.drain(..at.max(carry.len().saturating_sub(END.len() - 1)));
            if seen - acked >= link::ACK_EVERY as usize || seen >= n {
                acked = seen;
                self.tls
                    .write_all(link::ack(seen as u64).as_bytes())
                    .await
                    .expect("ack");
            }
        }
        self
    }
}

/// CPU time this process has used (user + system, fields 14 and 15 of `/proc/self/stat`, in
/// ticks of 1/100 s): with the wall time it shows whether a run was CPU-bound.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn relay_through_proxy(pki: &Pki, dir: &std::path::Path) -> f64 {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 1));
    let edge = start_proxy(
        dir,
        pki,
        ip,
        "example.com",
        &[PartnerSpec::new("partner.example")],
        None,
    )
    .await;
    let sink = LinkSink::connect(&edge).await;
    let identity = pki.identity(&CertSpec::for_domain("partner.example"));
    let mut conn = partner_stream(edge.proxy.starttls_addr, &identity, Arc::new(pki.trust())).await;

    // Throughput: push as fast as the proxy takes them.
    let n: usize = std::env::var("BENCH_HOP_STANZAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let size = stanza(0).len();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let mut batch = String::with_capacity(64 * 1024);
        for i in 0..n {
            batch.push_str(&stanza(i));
            if batch.len() > 60_000 {
                conn.send(&batch).await.expect("send");
                batch.clear();
            }
        }
        conn.send(&batch).await.expect("send");
        conn
    });
    let sink = sink.count(n).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let mut conn = sender.await.expect("sender");
    drop(sink);
    let mut gateway = TestGateway::connect(&edge).await;
    let bps = (n * size) as f64 / secs;
    println!(
        "proxy hop: {n} stanzas in {secs:.2} s = {:.0} stanzas/s, {:.1} MB/s (process CPU {cpu:.2} s: sender, proxy and sink)",
        n as f64 / secs,
        bps / 1e6
    );

    if std::env::var("BENCH_ONLY").as_deref() == Ok("throughput") {
        edge.proxy.shutdown().await;
        return bps;
    }
    // Latency at a moderate rate: 2,000 stanzas at ~1,000/s.
    let mut latencies = Vec::with_capacity(2000);
    for i in 0..2000 {
        let sent = Instant::now();
        conn.send(&stanza(i)).await.expect("send");
        gateway.recv(Duration::from_secs(5)).await.expect("relayed");
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    latencies.sort();
    println!(
        "proxy hop latency at ~1,000 stanzas/s: p50 {:?}, p99 {:?} (partner TLS in → policed → link TLS out → gateway)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    edge.proxy.shutdown().await;
    bps
}

/// The physical limit: TLS in, bytes copied, TLS out, nothing parsed.
async fn plain_tls_relay(pki: &Pki) -> f64 {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 2));
    let server_id = pki.identity(&CertSpec::for_domain("example.com"));
    let mut store = tls::CertStore::new();
    store.insert("*", server_id.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(
        tls::s2s_server_config(&store, None, TlsMode::Direct).unwrap(),
    );
    let client_cfg = tls::s2s_client_config(None, TlsMode::Direct).unwrap();
    // Sink.
    let sink = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    // More bytes than the proxy run: the relay is fast, and a short run is mostly noise.
    let n = 1_000_000;
    let size = stanza(0).len();
    let total = n * size;
    let acc2 = acceptor.clone();
    let sink_task = tokio::spawn(async move {
        let (tcp, _) = sink.accept().await.unwrap();
        let mut tls = acc2.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            let k = tls.read(&mut buf).await.unwrap();
            assert!(k > 0);
            got += k;
        }
    });
    // Relay.
    let relay = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let cfg2 = client_cfg.clone();
    tokio::spawn(async move {
        let (tcp, _) = relay.accept().await.unwrap();
        let mut inbound = acceptor.accept(tcp).await.unwrap();
        let out = TcpStream::connect(sink_addr).await.unwrap();
        let mut outbound = xmppfed_xmpp::conn::connect_tls(out, cfg2, "example.com")
            .await
            .unwrap();
        let _ = tokio::io::copy(&mut inbound, &mut outbound).await;
        let _ = outbound.flush().await;
    });
    let tcp = TcpStream::connect(relay_addr).await.unwrap();
    let mut client = xmppfed_xmpp::conn::connect_tls(tcp, client_cfg, "example.com")
        .await
        .unwrap();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let mut batch = String::with_capacity(64 * 1024);
    for i in 0..n {
        batch.push_str(&stanza(i));
        if batch.len() > 60_000 {
            client.write_all(batch.as_bytes()).await.unwrap();
            batch.clear();
        }
    }
    client.write_all(batch.as_bytes()).await.unwrap();
    client.flush().await.unwrap();
    sink_task.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let bps = total as f64 / secs;
    println!(
        "plain TLS relay: {total} bytes in {secs:.2} s = {:.1} MB/s (process CPU {cpu:.2} s)",
        bps / 1e6
    );
    bps
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn idle_stream_memory(pki: &Pki, dir: &std::path::Path) {
    let streams: usize = std::env::var("BENCH_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ip = Ipv4Addr::new(127, 0, 9, 3);
    let mut partner = PartnerSpec::new("partner.example");
    partner.connection_limit = Some(1_000_000);
    let policy = dir.join("idle-policy.json");
    write_policy_with(
        &policy,
        "example.com",
        &[partner],
        "connectionLimit: 1000000, streamInactivityTimeout: 1h",
    );
    let (cert, key) = pki.write(dir, "edge", &CertSpec::for_domain("example.com"));
    let (lcert, lkey) = pki.write(dir, "link", &CertSpec::for_domain("proxy.link"));
    let ca = pki.write_ca(dir);
    let secret = dir.join("secret");
    std::fs::write(&secret, "bench secret").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xmppfed-proxy"))
        .args(["--policy", policy.to_str().unwrap()])
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .args([
            "--peer-ca",
            ca.to_str().unwrap(),
            "--dialback-secret",
            secret.to_str().unwrap(),
        ])
        .args([
            "--link-cert",
            lcert.to_str().unwrap(),
            "--link-key",
            lkey.to_str().unwrap(),
            "--link-ca",
            ca.to_str().unwrap(),
        ])
        .args([
            "--starttls-listen",
            &format!("{ip}:5269"),
            "--direct-tls-listen",
            &format!("{ip}:5270"),
        ])
        .args([
            "--link-listen",
            &format!("{ip}:23456"),
            "--http-listen",
            &format!("{ip}:8080"),
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("xmppfed-proxy starts");
    let addr = SocketAddr::new(ip.into(), 5269);
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let identity = pki.identity(&CertSpec::for_domain("partner.example"));
    let trust = Arc::new(pki.trust());
    let mut conns = vec![partner_stream(addr, &identity, trust.clone()).await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(child.id());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = streams.div_ceil(32);
    for _ in 0..32 {
        let (identity, trust) = (identity.clone(), trust.clone());
        tasks.spawn(async move {
            let mut v = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                v.push(partner_stream(addr, &identity, trust.clone()).await);
            }
            v
        });
    }
    while let Some(r) = tasks.join_next().await {
        conns.extend(r.expect("stream task"));
    }
    let opened = conns.len() - 1;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(child.id());
    println!(
        "idle streams: {opened} SASL-EXTERNAL-authenticated streams opened in {:.1} s; proxy RSS {} MiB → {} MiB = {:.1} KiB per idle stream",
        start.elapsed().as_secs_f64(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / opened as f64
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(conns);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // `BENCH_ONLY=hop` runs the proxy hop alone, e.g. under `perf record`; `throughput`
    // only its throughput part.
    let only_the_hop = matches!(
        std::env::var("BENCH_ONLY").as_deref(),
        Ok("hop" | "throughput")
    );
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = Pki::new();
        let proxy_bps = relay_through_proxy(&pki, dir.path()).await;
        if only_the_hop {
            return;
        }
        let relay_bps = plain_tls_relay(&pki).await;
        println!(
            "one proxy hop moves {:.0}% of the plain TLS relay's bytes/s (budget: >= 25%)",
            100.0 * proxy_bps / relay_bps
        );
        idle_stream_memory(&pki, dir.path()).await;
    });
}
