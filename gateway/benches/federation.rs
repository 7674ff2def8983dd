//! What the federation edge costs a real deployment (spec §5: ≥ 90 % of direct throughput,
//! ≤ 1 ms added p99 at moderate load): messages from a user on a partner Prosody to a user on
//! the organisation's Prosody, first with the two Prosodys federating directly, then through
//! proxy → link → gateway (the same lab as the end-to-end tests).
//!
//! `cargo bench -p xmppfed-gateway --bench federation` (as root: the lab binds port 53 on
//! 127.0.N.3). `BENCH_MESSAGES` (default 20,000) sets each throughput run's size,
//! `BENCH_ROUNDS` (default 5) how many throughput runs each path gets, alternating between the
//! two so that drift in the shared machine hits both alike; `BENCH_RATE` (default 500/s, for
//! 4 s) the latency run's rate.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Internal, ip, lab};
use xmppfed_testkit::Pki;
use xmppfed_testkit::c2s::C2s;
use xmppfed_testkit::servers::{
    Dns, Prosody, ProsodyOptions, Srv, USER_PASSWORD, servers_available,
};
use xmppfed_xmpp::devca::CertSpec;

struct Latency {
    p50_us: f64,
    p99_us: f64,
}

struct Throughput {
    per_second: f64,
    /// CPU per message in the throughput run: this process (client, and proxy + gateway when
    /// they are in the path) and the two Prosodys.
    cpu_here_us: f64,
    /// The sending (partner's) Prosody and the receiving (organisation's) Prosody.
    cpu_partner_us: f64,
    cpu_org_us: f64,
}

/// CPU seconds (user + system) a process has used so far (`/proc/PID/stat`, 100 Hz ticks).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The Prosody processes serving `domain` in lab net `net`.
fn prosody_pids(net: u8, domain: &str) -> Vec<String> {
    let domain = domain.replace('.', "\\.");
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("prosody-{domain}-127\\.0\\.{net}\\.")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// CPU seconds so far: this process, the partner's Prosody, the organisation's Prosody.
fn cpu_now(net: u8) -> (f64, f64, f64) {
    let prosody = |domain| -> f64 {
        prosody_pids(net, domain)
            .iter()
            .map(|p| cpu_seconds(p))
            .sum()
    };
    (
        cpu_seconds("self"),
        prosody("partner.example"),
        prosody("org.example"),
    )
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(i: &str) -> String {
    format!("<message to='bob@org.example' type='chat' id='{i}'><body>{i}</body></message>")
}

/// Reads messages until `want` with the `prefix` arrived (or 60 s passed); returns each
/// one's arrival time by index.
async fn receive(bob: &mut C2s, prefix: &str, want: usize) -> Vec<Option<Instant>> {
    let mut at = vec![None; want];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < want {
        let Ok(Some(s)) = tokio::time::timeout_at(deadline, bob.next_stanza()).await else {
            break;
        };
        let Some(i) = s
            .get_attr("id")
            .and_then(|id| id.strip_prefix(prefix))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if i < want && at[i].is_none() {
            at[i] = Some(Instant::now());
            got += 1;
        }
    }
    at
}

/// One path, set up and logged in: the sender on the partner's server, the receiver on the
/// organisation's, and whatever keeps the servers running.
struct Path {
    name: &'static str,
    net: u8,
    alice: Option<C2s>,
    bob: C2s,
    _servers: Box<dyn std::any::Any>,
}

impl Path {
    /// The first message opens the server-to-server streams.
    async fn warm_up(&mut self) {
        let alice = self.alice.as_mut().expect("sender");
        alice.send(&message("w0")).await.expect("send");
        let warm = receive(&mut self.bob, "w", 1).await;
        assert!(
            warm[0].is_some(),
            "{}: the first message never arrived",
            self.name
        );
    }

    /// Latency at a moderate, steady rate.
    async fn latency(&mut self) -> Latency {
        let rate = env_or("BENCH_RATE", 500);
        let count = rate * 4;
        let sent_at = Arc::new(Mutex::new(vec![Instant::now(); count]));
        let stamps = sent_at.clone();
        let mut alice = self.alice.take().expect("sender");
        let sender = async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            for i in 0..count {
                tick.tick().await;
                stamps.lock().expect("stamps")[i] = Instant::now();
                alice.send(&message(&format!("l{i}"))).await.expect("send");
            }
            alice
        };
        let (alice, arrived) = tokio::join!(sender, receive(&mut self.bob, "l", count));
        self.alice = Some(alice);
        let sent_at = sent_at.lock().expect("stamps").clone();
        let mut latencies: Vec<f64> = arrived
            .iter()
            .zip(&sent_at)
            .filter_map(|(a, s)| a.map(|a| a.duration_since(*s).as_secs_f64() * 1e6))
            .collect();
        assert_eq!(
            latencies.len(),
            count,
            "{}: messages lost in the latency run",
            self.name
        );
        latencies.sort_by(f64::total_cmp);
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        Latency {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }

    /// Throughput: as fast as the partner's server takes them, 100 per write.
    async fn throughput(&mut self, round: usize) -> Throughput {
        let n = env_or("BENCH_MESSAGES", 20_000);
        let prefix = format!("t{round}-");
        let cpu_before = cpu_now(self.net);
        let start = Instant::now();
        let mut alice = self.alice.take().expect("sender");
        let ids = prefix.clone();
        let sender = async move {
            let mut batch = String::new();
            for i in 0..n {
                batch.push_str(&message(&format!("{ids}{i}")));
                if i % 100 == 99 || i == n - 1 {
                    alice.send(&batch).await.expect("send");
                    batch.clear();
                }
            }
            alice
        };
        let (alice, arrived) = tokio::join!(sender, receive(&mut self.bob, &prefix, n));
        self.alice = Some(alice);
        let delivered = arrived.iter().flatten().count();
        let last = arrived.iter().flatten().max().copied().unwrap_or(start);
        assert_eq!(
            delivered, n,
            "{}: messages lost in the throughput run",
            self.name
        );
        let cpu_after = cpu_now(self.net);
        Throughput {
            cpu_here_us: (cpu_after.0 - cpu_before.0) * 1e6 / n as f64,
            cpu_partner_us: (cpu_after.1 - cpu_before.1) * 1e6 / n as f64,
            cpu_org_us: (cpu_after.2 - cpu_before.2) * 1e6 / n as f64,
            per_second: n as f64 / last.duration_since(start).as_secs_f64(),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn login(server: SocketAddr, domain: &str, user: &str, pki: &Pki) -> C2s {
    C2s::login(server, domain, user, USER_PASSWORD, &pki.ca.cert_der)
        .await
        .unwrap_or_else(|e| panic!("{user}@{domain} cannot log in: {e}"))
}

/// The two Prosodys federate directly: each finds the other through dnsmasq.
async fn direct(net: u8) -> Path {
    let dir = tempfile::tempdir().expect("tmp");
    let (org, partner) = (ip(net, 4), ip(net, 5));
    let (o, p) = (org.to_string(), partner.to_string());
    let dns = Dns::start(
        dir.path(),
        ip(net, 1),
        &[
            Srv("_xmpps-server._tcp.org.example", ".", 0),
            Srv("_xmpp-server._tcp.org.example", &o, 15269),
            Srv("_xmpps-server._tcp.partner.example", ".", 0),
            Srv("_xmpp-server._tcp.partner.example", &p, 15269),
        ],
    );
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path());
    let start = |domain: &str, at: Ipv4Addr| {
        let (cert, key) = pki.write(dir.path(), domain, &CertSpec::for_domain(domain));
        Prosody::start(
            dir.path(),
            &ProsodyOptions {
                domain,
                ip: at,
                dns: dns.addr,
                cert: &cert,
                key: &key,
                ca: &ca,
                secure_auth: false,
                require_encryption: true,
                bidi: false,
            },
        )
    };
    let internal = start("org.example", org);
    let partner = start("partner.example", partner);
    internal.register("bob");
    partner.register("alice");
    let bob = login(internal.c2s, "org.example", "bob", &pki).await;
    let alice = login(partner.c2s, "partner.example", "alice", &pki).await;
    Path {
        name: "direct",
        net,
        alice: Some(alice),
        bob,
        _servers: Box::new((dir, dns, internal, partner)),
    }
}

/// The same through the federation edge.
async fn through_xmppfed(net: u8) -> Path {
    let lab = lab(net, "Federated").await;
    let Internal::Prosody(internal) = &lab.internal else {
        unreachable!("the lab's default internal server is Prosody")
    };
    let bob = login(internal.c2s, "org.example", "bob", &lab.pki).await;
    let alice = login(lab.partner.c2s, "partner.example", "alice", &lab.pki).await;
    Path {
        name: "through xmppfed",
        net,
        alice: Some(alice),
        bob,
        _servers: Box::new(lab),
    }
}

fn main() {
    if !servers_available() {
        eprintln!("skipped: needs Debian's prosody and dnsmasq (see .ci/run)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rounds = env_or("BENCH_ROUNDS", 5).max(1);
    let (latencies, runs) = rt.block_on(async {
        let mut paths = [direct(91).await, through_xmppfed(92).await];
        let mut latencies = Vec::new();
        for path in &mut paths {
            path.warm_up().await;
            latencies.push(path.latency().await);
        }
        let mut runs: [Vec<Throughput>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (path, runs) in paths.iter_mut().zip(&mut runs) {
                runs.push(path.throughput(round).await);
            }
        }
        (latencies, runs)
    });
    println!(
        "| path | messages/s (median of {rounds}) | p50 latency | p99 latency | CPU/message: sending Prosody | receiving Prosody | bench process |"
    );
    println!("|---|---|---|---|---|---|---|");
    let names = ["Prosody → Prosody", "Prosody → proxy → gateway → Prosody"];
    for ((name, l), r) in names.iter().zip(&latencies).zip(&runs) {
        let m = |f: fn(&Throughput) -> f64| median(r.iter().map(f).collect());
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            m(|t| t.per_second),
            l.p50_us,
            l.p99_us,
            m(|t| t.cpu_partner_us),
            m(|t| t.cpu_org_us),
            m(|t| t.cpu_here_us)
        );
    }
    // Each round's ratio compares two runs made one after the other.
    let ratios: Vec<f64> = runs[0]
        .iter()
        .zip(&runs[1])
        .map(|(d, v)| 100.0 * v.per_second / d.per_second)
        .collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "\nthroughput through xmppfed: {:.0} % of direct, median of {rounds} alternating rounds ({} %) (budget ≥ 90 %); added p99: {:.0} µs (budget ≤ 1000 µs)",
        median(ratios.clone()),
        each.join(", "),
        latencies[1].p99_us - latencies[0].p99_us
    );
}
