//! `xmppfed probe` as a user runs it: the real binary against a real Prosody from Debian,
//! found through real SRV records (dnsmasq), with certificates from a test CA; against
//! domains that publish nothing or where nothing listens; against a running `xmppfed up`; and
//! `--policy` on `examples/`.
//!
//! Each lab uses its own addresses: 127.0.<net>.1 (DNS), .3 (Prosody), nets 101–106. Without
//! prosody/dnsmasq the server tests skip, saying so, unless `XMPPFED_REQUIRE_INTEROP` is set.

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xmppfed_testkit::Pki;
use xmppfed_testkit::servers::{Dns, Prosody, ProsodyOptions, Srv, servers_available};
use xmppfed_xmpp::devca::CertSpec;

mod support;

use support::Running;

const DOMAIN: &str = "probe.example";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.all()))
    }
}

fn xmppfed(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_xmppfed"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run xmppfed");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ip(net: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, net, last)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The steps of a JSON report with this name.
fn steps<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["name"] == name)
        .collect()
}

fn status_of(report: &Value, name: &str) -> Vec<String> {
    steps(report, name)
        .iter()
        .map(|s| s["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A Prosody serving probe.example at 127.0.<net>.3 with its SRV records on 127.0.<net>.1.
struct Lab {
    dir: tempfile::TempDir,
    pki: Pki,
    ca: PathBuf,
    dns: Dns,
    prosody: Prosody,
}

impl Lab {
    /// `secure_auth`: Prosody accepts certificates only (and closes the stream of a peer that
    /// presents none right after TLS); otherwise it also offers dialback.
    fn start(net: u8, cert: CertSpec, direct_tls: bool, bidi: bool, secure_auth: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xmppfed-probe")
            .tempdir()
            .expect("tmp");
        let prosody_ip = ip(net, 3).to_string();
        let direct = if direct_tls {
            Srv("_xmpps-server._tcp.probe.example", &prosody_ip, 15270)
        } else {
            Srv("_xmpps-server._tcp.probe.example", ".", 0)
        };
        let dns = Dns::start(
            dir.path(),
            ip(net, 1),
            &[
                direct,
                Srv("_xmpp-server._tcp.probe.example", &prosody_ip, 15269),
            ],
        );
        let pki = Pki::new();
        let ca = pki.write_ca(dir.path());
        let (crt, key) = pki.write(dir.path(), "prosody", &cert);
        let prosody = Prosody::start(
            dir.path(),
            &ProsodyOptions {
                domain: DOMAIN,
                ip: ip(net, 3),
                dns: dns.addr,
                cert: &crt,
                key: &key,
                ca: &ca,
                secure_auth,
                require_encryption: true,
                bidi,
            },
        );
        Self {
            dir,
            pki,
            ca,
            dns,
            prosody,
        }
    }

    fn dns_arg(&self) -> String {
        self.dns.addr.to_string()
    }

    fn probe(&self, extra: &[&str]) -> Run {
        let dns = self.dns_arg();
        let mut args = vec![
            "probe",
            DOMAIN,
            "--ca",
            path(&self.ca),
            "--dns-server",
            &dns,
            "--timeout",
            "5",
        ];
        args.extend_from_slice(extra);
        xmppfed(&args)
    }

    fn log_tail(&self) -> String {
        let log = self.prosody.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "prosody log tail:\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

#[test]
fn a_healthy_prosody_passes_over_both_services() {
    if !servers_available() {
        return;
    }
    let lab = Lab::start(101, CertSpec::for_domain(DOMAIN), true, false, false);

    let run = lab.probe(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.all(), lab.log_tail());
    let text = &run.stdout;
    assert!(!text.contains("[FAIL]"), "{text}");
    for (name, target) in [
        ("srv ", "_xmpps-server._tcp.probe.example"),
        ("srv ", "_xmpp-server._tcp.probe.example"),
        ("connect ", "127.0.101.3:15270 (direct TLS)"),
        ("direct-tls ", "127.0.101.3:15270 (direct TLS)"),
        ("stream ", "127.0.101.3:15269 (STARTTLS)"),
        ("starttls ", "127.0.101.3:15269 (STARTTLS)"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("[ ok ] {name}")) && l.contains(target)),
            "no ok line for {name}{target}:\n{text}"
        );
    }
    assert!(
        text.contains("DNS-ID probe.example matches probe.example"),
        "{text}"
    );
    assert!(text.contains("federation looks healthy"), "{text}");

    let run = lab.probe(&["--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let report = run.json();
    assert_eq!(report["domain"], DOMAIN);
    assert_eq!(report["outcome"], "ok");
    assert_eq!(status_of(&report, "srv"), ["ok", "ok"]);
    for name in [
        "connect",
        "certificate-chain",
        "certificate-expiry",
        "certificate-identity",
        "certificate-purpose",
        "features",
    ] {
        // One STARTTLS and one direct-TLS server examined.
        assert_eq!(status_of(&report, name), ["ok", "ok"], "{name}: {report:#}");
    }
    for name in ["stream", "starttls", "direct-tls"] {
        assert_eq!(status_of(&report, name), ["ok"], "{name}: {report:#}");
    }
    assert_eq!(status_of(&report, "authentication"), ["skip"]);
    assert_eq!(status_of(&report, "ping"), ["skip"]);
    let features = steps(&report, "features")[0]["detail"]
        .as_str()
        .unwrap_or("");
    assert!(features.contains("dialback: offered"), "{features}");
}

#[test]
fn sasl_external_authenticates_and_the_ping_round_trips_over_bidi() {
    if !servers_available() {
        return;
    }
    let lab = Lab::start(102, CertSpec::for_domain(DOMAIN), false, true, true);
    let (crt, key) = lab.pki.write(
        lab.dir.path(),
        "client",
        &CertSpec::for_domain("client.example"),
    );
    let run = lab.probe(&[
        "--from",
        "client.example",
        "--cert",
        path(&crt),
        "--key",
        path(&key),
        "--json",
    ]);
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}\n{}", lab.log_tail());
    assert_eq!(report["from"], "client.example");
    assert_eq!(status_of(&report, "our-certificate"), ["ok"]);
    let features = steps(&report, "features")[0]["detail"]
        .as_str()
        .unwrap_or("");
    assert!(features.contains("SASL: EXTERNAL"), "{features}");
    let auth = steps(&report, "authentication");
    assert_eq!(auth[0]["status"], "ok", "{report:#}\n{}", lab.log_tail());
    let detail = auth[0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("SASL EXTERNAL"), "{detail}");
    assert!(detail.contains("bidirectional"), "{detail}");
    let ping = steps(&report, "ping");
    assert_eq!(ping[0]["status"], "ok", "{report:#}\n{}", lab.log_tail());
    assert!(
        ping[0]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("pong from probe.example"),
        "{report:#}"
    );
    assert!(
        lab.prosody
            .log()
            .contains("Accepting SASL EXTERNAL identity from client.example"),
        "{}",
        lab.log_tail()
    );
}

#[test]
fn a_certificate_for_another_name_or_from_an_untrusted_ca_fails_with_its_cause() {
    if !servers_available() {
        return;
    }
    let lab = Lab::start(
        103,
        CertSpec::for_domain("other.example"),
        false,
        false,
        true,
    );

    let run = lab.probe(&[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let text = &run.stdout;
    assert!(
        text.contains("_xmpps-server._tcp.probe.example")
            && text.contains("explicitly not offered"),
        "{text}"
    );
    // Prosody with s2s_secure_auth closes the stream of a peer without a certificate right
    // after TLS: a warning that says so, not a failure of probe.example.
    assert!(
        text.contains("cause: probe.example authenticates servers only by a certificate it trusts"),
        "{text}"
    );
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("[FAIL]")).collect();
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains("certificate-identity"), "{text}");
    assert!(
        failed[0].contains("presents DNS:other.example, none of which is probe.example"),
        "{text}"
    );
    assert!(
        text.contains("cause: the certificate does not name probe.example"),
        "{text}"
    );
    assert!(
        text.contains("fix:   reissue the certificate with probe.example"),
        "{text}"
    );

    // The same server judged against a CA we do not trust.
    let foreign = Pki::new();
    let foreign_dir = tempfile::tempdir().expect("tmp");
    let foreign_ca = foreign.write_ca(foreign_dir.path());
    let dns = lab.dns_arg();
    let run = xmppfed(&[
        "probe",
        DOMAIN,
        "--ca",
        path(&foreign_ca),
        "--dns-server",
        &dns,
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let report = run.json();
    assert_eq!(report["outcome"], "fail");
    let chain = steps(&report, "certificate-chain")[0];
    assert_eq!(chain["status"], "fail", "{report:#}");
    let cause = chain["cause"].as_str().unwrap_or("");
    assert!(
        cause.contains("a CA we do not trust") || cause.contains("is not among"),
        "{cause}"
    );
    assert!(
        chain["fix"].as_str().unwrap_or("").contains("--ca"),
        "{chain}"
    );
}

#[test]
fn nothing_published_or_nothing_listening_fails_with_its_cause() {
    if !servers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let dead = ip(104, 3).to_string();
    let dns = Dns::start(
        dir.path(),
        ip(104, 1),
        &[
            Srv("_xmpp-server._tcp.dead.example", &dead, 15269),
            Srv("_xmpps-server._tcp.direct-only.example", &dead, 15270),
            Srv("_xmpps-server._tcp.declined.example", ".", 0),
            Srv("_xmpp-server._tcp.declined.example", ".", 0),
        ],
    );
    let server = dns.addr.to_string();

    // Both services explicitly not offered.
    let run = xmppfed(&[
        "probe",
        "declined.example",
        "--dns-server",
        &server,
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let report = run.json();
    assert_eq!(status_of(&report, "srv"), ["ok", "ok"], "{report:#}");
    let service = steps(&report, "service");
    assert_eq!(service[0]["status"], "fail", "{report:#}");
    assert!(
        service[0]["cause"]
            .as_str()
            .unwrap_or("")
            .contains("explicitly declines XMPP federation"),
        "{report:#}"
    );

    // Only _xmpps-server: older servers will not find it.
    let run = xmppfed(&[
        "probe",
        "direct-only.example",
        "--dns-server",
        &server,
        "--json",
    ]);
    let report = run.json();
    assert_eq!(status_of(&report, "srv"), ["ok", "warn"], "{report:#}");
    assert!(
        steps(&report, "srv")[1]["fix"]
            .as_str()
            .unwrap_or("")
            .contains("publish _xmpp-server._tcp.direct-only.example"),
        "{report:#}"
    );

    let run = xmppfed(&["probe", "nowhere.example", "--dns-server", &server]);
    assert_eq!(run.code, 1, "{}", run.all());
    let text = &run.stdout;
    assert!(text.contains("[FAIL] address-fallback"), "{text}");
    assert!(
        text.contains("cause: nowhere.example does not publish XMPP server-to-server service"),
        "{text}"
    );
    assert!(
        text.contains("_xmpp-server._tcp.nowhere.example SRV records"),
        "{text}"
    );

    let run = xmppfed(&["probe", "dead.example", "--dns-server", &server, "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let report = run.json();
    let connect = steps(&report, "connect");
    assert_eq!(connect.len(), 1, "{report:#}");
    assert_eq!(connect[0]["status"], "fail");
    assert_eq!(connect[0]["detail"], "connection refused");
    assert!(
        connect[0]["cause"]
            .as_str()
            .unwrap_or("")
            .contains("nothing listens on 127.0.104.3:15269"),
        "{report:#}"
    );
    assert_eq!(status_of(&report, "authentication"), ["skip"]);
}

/// The edge's listeners in these tests. Each test gives its edge an address of its own, so fixed
/// ports cannot clash between tests; they lie below the kernel's ephemeral range (32768+), so no
/// outgoing connection can hold one either. (A port picked by binding port 0 and closing again
/// raced with such connections: CI once saw "Address already in use".)
const EDGE_STARTTLS_PORT: u16 = 15269;
const EDGE_DIRECT_TLS_PORT: u16 = 15270;
const EDGE_GATEWAY_PORT: u16 = 23456;
/// The proxy's health port; the gateway's is the next one.
const EDGE_HTTP_PORT: u16 = 19090;
/// A port on the edge's address where nothing listens.
const DEAD_PORT: u16 = 15999;

/// `xmppfed up -f <manifests>` with every listener on `edge_ip` (the SRV records name
/// `EDGE_STARTTLS_PORT` there); its log goes to `<state>/../up.log`.
fn start_edge(manifests: &Path, state: &Path, edge_ip: Ipv4Addr, extra: &[&str]) -> Running {
    let starttls = SocketAddr::from((edge_ip, EDGE_STARTTLS_PORT));
    let log_path = state.with_file_name("up.log");
    let log = std::fs::File::create(&log_path).expect("up.log");
    let child = Command::new(env!("CARGO_BIN_EXE_xmppfed"))
        .arg("up")
        .arg("-f")
        .arg(manifests)
        .arg("--state-dir")
        .arg(state)
        .args(["--starttls-listen", &starttls.to_string()])
        .args([
            "--direct-tls-listen",
            &SocketAddr::from((edge_ip, EDGE_DIRECT_TLS_PORT)).to_string(),
        ])
        .args([
            "--gateway-listen",
            &SocketAddr::from((edge_ip, EDGE_GATEWAY_PORT)).to_string(),
        ])
        .args([
            "--http-listen",
            &SocketAddr::from((edge_ip, EDGE_HTTP_PORT)).to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("xmppfed up starts");
    let up = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&starttls, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "xmppfed up did not listen on {starttls}:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up
}

/// The brief's own example: our edge refuses a domain that is not an allowed partner with
/// `<policy-violation/>`, and the probe says which entry to add.
#[test]
fn an_xmppfed_edge_refuses_an_unlisted_sender_and_the_probe_says_why() {
    if !servers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let edge_ip = ip(105, 2);
    // A stale direct-TLS record: nothing listens there.
    let dead = DEAD_PORT;
    let target = edge_ip.to_string();
    let dns = Dns::start(
        dir.path(),
        ip(105, 1),
        &[
            Srv("_xmpps-server._tcp.contoso.com", &target, dead),
            Srv("_xmpp-server._tcp.contoso.com", &target, EDGE_STARTTLS_PORT),
        ],
    );
    let state = dir.path().join("state");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let _up = start_edge(&examples, &state, edge_ip, &[]);
    let ca = state.join("dev-ca.crt");
    let server = dns.addr.to_string();

    let run = xmppfed(&[
        "probe",
        "contoso.com",
        "--from",
        "intruder.example",
        "--ca",
        path(&ca),
        "--dns-server",
        &server,
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    let report = run.json();
    // Nothing reached TLS: the dead direct-TLS target is a failure too.
    assert_eq!(status_of(&report, "connect"), ["fail", "ok"], "{report:#}");
    let stream = steps(&report, "stream");
    assert_eq!(stream[0]["status"], "fail", "{report:#}");
    assert!(
        stream[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("<policy-violation/>"),
        "{report:#}"
    );
    assert!(
        stream[0]["fix"]
            .as_str()
            .unwrap_or("")
            .contains("XmppAllowedPartner for intruder.example"),
        "{report:#}"
    );

    // A listed partner gets through to TLS and the certificate of the edge.
    let run = xmppfed(&[
        "probe",
        "contoso.com",
        "--from",
        "fabrikam.com",
        "--ca",
        path(&ca),
        "--dns-server",
        &server,
        "--json",
    ]);
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(status_of(&report, "starttls"), ["ok"], "{report:#}");
    // STARTTLS works, so the dead direct-TLS target is only a warning.
    let connect = steps(&report, "connect");
    assert_eq!(connect[0]["status"], "warn", "{report:#}");
    assert!(
        connect[0]["cause"]
            .as_str()
            .unwrap_or("")
            .contains("works, so peers fall back to it"),
        "{report:#}"
    );
    // The edge wants a certificate from fabrikam.com (SASL required, no dialback).
    assert_eq!(status_of(&report, "features"), ["warn"], "{report:#}");
    assert_eq!(
        status_of(&report, "certificate-identity"),
        ["ok"],
        "{report:#}"
    );
    assert_eq!(status_of(&report, "authentication"), ["skip"], "{report:#}");
}

/// Dialback as the brief describes it: the probe speaks for contoso.com, served by a running
/// xmppfed edge; Prosody verifies the probe's key with that edge (through contoso.com's SRV
/// records), which knows it only when the probe uses the edge's secret.
#[test]
fn dialback_succeeds_with_the_secret_of_the_edge_serving_from_and_fails_without_it() {
    if !servers_available() {
        return;
    }
    let net = 106;
    let dir = tempfile::Builder::new()
        .prefix("xmppfed-probe")
        .tempdir()
        .expect("tmp");
    let (edge_ip, prosody_ip) = (ip(net, 2), ip(net, 3));
    let (edge, prosody) = (edge_ip.to_string(), prosody_ip.to_string());
    let dns = Dns::start(
        dir.path(),
        ip(net, 1),
        &[
            Srv("_xmpps-server._tcp.contoso.com", ".", 0),
            Srv("_xmpp-server._tcp.contoso.com", &edge, EDGE_STARTTLS_PORT),
            Srv("_xmpps-server._tcp.probe.example", ".", 0),
            Srv("_xmpp-server._tcp.probe.example", &prosody, 15269),
        ],
    );
    let pki = Pki::new();
    let ca = pki.write_ca(dir.path());
    let (prosody_crt, prosody_key) =
        pki.write(dir.path(), "prosody", &CertSpec::for_domain(DOMAIN));
    // Dialback allowed (no s2s_secure_auth), bidi for the ping.
    let prosody = Prosody::start(
        dir.path(),
        &ProsodyOptions {
            domain: DOMAIN,
            ip: prosody_ip,
            dns: dns.addr,
            cert: &prosody_crt,
            key: &prosody_key,
            ca: &ca,
            secure_auth: false,
            require_encryption: true,
            bidi: true,
        },
    );
    // The edge serving contoso.com, with probe.example as a partner that may use dialback.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("mkdir");
    let mut partner = xmppfed_testkit::PartnerSpec::new(DOMAIN);
    partner.sasl = "Optional";
    std::fs::write(
        manifests.join("federation.yaml"),
        xmppfed_testkit::federation_yaml(
            "contoso.com",
            &[partner],
            xmppfed_testkit::DEFAULT_LIMITS,
            "{internalServers: [{host: internal.contoso.com}]}",
        ),
    )
    .expect("write manifests");
    let (edge_crt, edge_key) = pki.write(
        dir.path(),
        "edge",
        &CertSpec {
            dns: vec!["contoso.com".into(), "xmpp.contoso.com".into()],
            ..CertSpec::default()
        },
    );
    let state = dir.path().join("state");
    let dns_server = dns.addr.to_string();
    let _up = start_edge(
        &manifests,
        &state,
        edge_ip,
        &[
            "--tls-cert",
            path(&edge_crt),
            "--tls-key",
            path(&edge_key),
            "--peer-ca",
            path(&ca),
            "--dns-server",
            &dns_server,
        ],
    );
    let secret = state.join("dialback-secret");
    let probe = |secret: &Path| {
        xmppfed(&[
            "probe",
            DOMAIN,
            "--from",
            "contoso.com",
            "--dialback-secret",
            path(secret),
            "--ca",
            path(&ca),
            "--dns-server",
            &dns_server,
            "--timeout",
            "3",
            "--json",
        ])
    };

    let run = probe(&secret);
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");
    let auth = steps(&report, "authentication")[0];
    assert_eq!(auth["status"], "ok", "{report:#}");
    assert!(
        auth["detail"]
            .as_str()
            .unwrap_or("")
            .contains("dialback over TLS (XEP-0220)"),
        "{report:#}"
    );
    // Prosody verified the key over its own (bidi) stream to the edge, and answers the ping
    // there: the probe says so instead of failing.
    let ping = steps(&report, "ping")[0];
    assert_eq!(ping["status"], "warn", "{report:#}");
    assert!(
        ping["cause"]
            .as_str()
            .unwrap_or("")
            .contains("connected to contoso.com's own server"),
        "{report:#}"
    );
    assert!(
        prosody
            .log()
            .contains("connection probe.example->contoso.com is now authenticated"),
        "{}",
        prosody.log()
    );

    // Another secret: the edge says the key is not its own, and the probe says why.
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not the secret of the edge").expect("write");
    let run = probe(&wrong);
    let report = run.json();
    assert_eq!(run.code, 1, "{report:#}");
    let auth = steps(&report, "authentication")[0];
    assert_eq!(auth["status"], "fail", "{report:#}");
    let cause = auth["cause"].as_str().unwrap_or("");
    assert!(
        cause.contains("works only when contoso.com is served by a running xmppfed edge holding that same secret"),
        "{report:#}"
    );
    assert_eq!(status_of(&report, "ping"), ["skip"], "{report:#}");
}

#[test]
fn policy_mode_explains_partners_and_refusals_without_network() {
    let run = xmppfed(&["probe", "--policy", "examples/", "fabrikam.com"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("fabrikam.com: allowed partner \"fabrikam\" (its primary domain)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Lync matrix row 2"), "{}", run.stdout);

    // No partner domain is a wildcard (the API has none); an additional domain matches exactly.
    let run = xmppfed(&[
        "probe",
        "--policy",
        "examples/partners.yaml",
        "research.fabrikam.com",
        "--federation",
        "contoso",
    ]);
    // partners.yaml alone has no federation.
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("no XmppFederation named contoso"),
        "{}",
        run.all()
    );

    let run = xmppfed(&[
        "probe",
        "--policy",
        "examples/",
        "research.fabrikam.com",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let e = run.json();
    assert_eq!(e["verdict"], "partner");
    assert_eq!(e["partner"]["name"], "fabrikam");
    assert_eq!(e["partner"]["matched_by"], "additionalDomains");
    assert_eq!(e["partner"]["tls_negotiation"], "Required");

    let run = xmppfed(&["probe", "--policy", "examples/", "jabber.example", "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let e = run.json();
    assert_eq!(e["verdict"], "refused");
    assert!(
        e["summary"]
            .as_str()
            .unwrap_or("")
            .contains("<policy-violation/>"),
        "{e:#}"
    );

    let run = xmppfed(&["probe", "--policy", "no/such/dir", "fabrikam.com"]);
    assert_eq!(run.code, 2, "{}", run.all());
}

#[test]
fn bad_usage_exits_2() {
    let run = xmppfed(&["probe", "not a domain"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("not a valid XMPP domain"),
        "{}",
        run.all()
    );
    let run = xmppfed(&["probe", "a.example", "--cert", "x.pem", "--key", "y.pem"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let run = xmppfed(&["probe", "a.example", "--ca", "/no/such/ca.pem"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("/no/such/ca.pem"), "{}", run.all());
}
