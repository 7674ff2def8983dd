//! `xmppfed probe <domain>`: federation with a remote domain, diagnosed step by step, each
//! step with its result, its time and — when it fails or warns — the likely cause and the fix
//! in plain words. `xmppfed probe --policy <path> <domain>` ([`explain`]) says instead which
//! partner entry and settings of a policy would apply, without touching the network.
//!
//! # What is probed, in order
//!
//! | step | target | what |
//! |---|---|---|
//! | `our-certificate` | `--from` | with `--cert`: does our certificate name `--from`, is it valid, its purposes |
//! | `trust-anchors` | | only when no CA could be loaded (every remote certificate would be untrusted) |
//! | `srv` | `_xmpps-server._tcp.D`, `_xmpp-server._tcp.D` | each service separately; target `.` = explicitly not offered |
//! | `address-fallback` | `D:5269` | neither SRV exists: A/AAAA on 5269 as servers do (a warning) |
//! | `service` | `D` | SRV records exist but none has a usable target |
//! | `resolve` | `host:port` | the addresses of an SRV target host (none for IP literals) |
//! | `connect` | `addr (mode)` | TCP, every address tried, in SRV order |
//! | `stream` | `addr (STARTTLS)` | plaintext stream header and features: `<starttls/>` offered? |
//! | `starttls` / `direct-tls` | `addr (mode)` | `<proceed/>` and the handshake (SNI = D; ALPN `xmpp-server` for direct TLS) |
//! | `certificate-chain` | `addr (mode)` | chain to a trusted CA ([`TrustStore::judge`]), subject and issuer |
//! | `certificate-expiry` | | notAfter and days left: warning under 14 days, failure once expired |
//! | `certificate-identity` | | which SAN proves D (DNS-ID, SRV-ID, xmppAddr) or every identity presented |
//! | `certificate-purpose` | | extendedKeyUsage: serverAuth needed; no clientAuth is only a note |
//! | `features` | | after TLS: SASL mechanisms, dialback, XEP-0288 bidi, XEP-0478 limits |
//! | `authentication` | `addr (mode)` | a fresh stream, the real negotiation (`OutboundSession`) as `--from` |
//! | `ping` | `D` | XEP-0199 on the authenticated stream, timed |
//!
//! Targets are tried in the order the proxy would try them ([`xmppfed_proxy::dns::order`],
//! without its weighted random choice so that two runs report the same order);
//! for each service (STARTTLS, direct TLS) the probe stops at the first address that completes
//! TLS, so at most one STARTTLS and one direct-TLS server are examined in depth. The
//! authentication runs against the first address that completed TLS. When some address
//! completed TLS, the failures of the others (down, refused, not TLS) become warnings: peers
//! fall back to the working one, after a delay.
//!
//! # Decisions
//!
//! - Without `--from` no `from` is sent (some servers then refuse, which is itself a finding)
//!   and authentication and ping are skipped, saying why. With `--from` every stream header
//!   names it, so the remote applies its per-domain policy (an xmppfed edge answers
//!   `<policy-violation/>` to a domain that is not an allowed partner).
//! - `--cert/--key` is presented as TLS client certificate on every connection (that is what
//!   makes servers offer SASL EXTERNAL) and enables the SASL EXTERNAL attempt. `--dialback-secret`
//!   enables dialback: the remote asks `--from`'s authoritative server — found through
//!   `--from`'s own SRV records — to verify the key, so it only succeeds when `--from` is served
//!   by a running xmppfed edge holding that same secret. With both, SASL is tried first and
//!   dialback is the fallback, as the proxy does.
//! - The authentication drives [`xmppfed_xmpp::outbound::OutboundSession`] itself instead of
//!   calling [`xmppfed_xmpp::outbound::negotiate`]: it needs to see the SASL and dialback
//!   answers to explain a refusal, and to request XEP-0288 bidi when offered. Its settings
//!   allow what was given: TLS required; SASL required (`--cert` alone), not supported
//!   (`--dialback-secret` alone) or optional (both), dialback with a secret only.
//! - The ping needs bidi: on a one-way stream the remote sends its answer over a connection
//!   it opens to `--from`'s own server, not to this probe. Without bidi the ping is skipped,
//!   with that explanation. After dialback, even with bidi, the remote may answer over the
//!   connection it opened to `--from`'s server to verify the key (Prosody 0.12 does): no
//!   answer is then a warning saying so, not a failure.
//! - Servers that accept only certificates (Prosody's `s2s_secure_auth`, an xmppfed partner
//!   without dialback) close the stream right after TLS when the probe presents none: a
//!   warning about the probe's view, not a failure of the domain.
//! - An `error` answer to the ping still proves the round trip: `service-unavailable` and
//!   `feature-not-implemented` (ping not supported) are ok with a note, other errors a warning.
//! - A certificate without clientAuth is a note, not a warning: it is fine for receiving
//!   streams, public CAs stopped issuing clientAuth in 2026, and xmppfed accepts it.
//! - `--timeout` bounds each network step (default 10 s).
//! - Exit codes: 0 nothing failed (warnings allowed), 1 a step failed, 2 bad usage or input
//!   (unreadable file, invalid domain); `--policy` uses 0 for a partner, 1 for a domain that
//!   would be refused (or that is served locally).

mod advice;
mod certificate;
pub mod explain;
mod report;
mod session;

pub use advice::stream_error_advice;
pub use report::{Advice, Outcome, Report, Status, Step};

use advice::{dns_unreachable, firewall, tls_failure};
use anyhow::{Context, Result};
use report::advice;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::timeout;
use xmppfed_policy::normalize_domain;
use xmppfed_proxy::dns::{Dns, DnsError, SrvRecord, Target, order, srv_name};
use xmppfed_xmpp::conn::{Transport, XmppConn, connect_tls};
use xmppfed_xmpp::dialback::DialbackSecret;
use xmppfed_xmpp::element::Element;
use xmppfed_xmpp::framer::{Frame, FramerLimits, StreamHeader};
use xmppfed_xmpp::identity::TrustStore;
use xmppfed_xmpp::ns;
use xmppfed_xmpp::stream::{self, CLOSE_STREAM, Features};
use xmppfed_xmpp::stream_error::{StreamError, StreamErrorCondition as C};
use xmppfed_xmpp::tls::{Identity, TlsMode, load_certs, s2s_client_config};

/// The system CA bundle, the default trust anchors.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What `xmppfed probe` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub domain: String,
    /// Our domain: sent as the stream's `from`, authenticated with `cert`/`key` or the secret.
    pub from: Option<String>,
    /// Trust anchors for the remote certificate; empty means [`SYSTEM_CAS`].
    pub ca: Vec<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub dialback_secret: Option<PathBuf>,
    /// Ask this DNS server instead of the system's.
    pub dns_server: Option<SocketAddr>,
    /// Bound of each network step.
    pub timeout: Duration,
}

/// Runs the diagnosis. `Err` is bad input (exit 2); network trouble is in the report.
pub async fn probe(opts: &Options) -> Result<Report> {
    let mut prober = Prober::new(opts)?;
    prober.run().await;
    Ok(Report::new(prober.domain, prober.from, prober.steps))
}

/// A domain as typed, checked and normalised.
pub fn domain_arg(value: &str, what: &str) -> Result<String> {
    normalize_domain(value).with_context(|| format!("{what} {value:?} is not a valid XMPP domain"))
}

struct Prober {
    domain: String,
    from: Option<String>,
    dns: Dns,
    trust: Arc<TrustStore>,
    /// Where the trust anchors came from, for explanations.
    anchors: String,
    identity: Option<Identity>,
    secret: Option<DialbackSecret>,
    step_timeout: Duration,
    steps: Vec<Step>,
    /// Addresses already looked up, by host (both services often share one).
    known_addresses: BTreeMap<String, Vec<IpAddr>>,
}

/// One address that completed TLS.
#[derive(Clone)]
struct Reached {
    target: Target,
    addr: SocketAddr,
}

fn mode(direct_tls: bool) -> &'static str {
    if direct_tls { "direct TLS" } else { "STARTTLS" }
}

fn addr_target(addr: SocketAddr, target: &Target) -> String {
    format!("{addr} ({})", mode(target.direct_tls))
}

impl Prober {
    fn new(opts: &Options) -> Result<Self> {
        let domain = domain_arg(&opts.domain, "the domain")?;
        let from = opts
            .from
            .as_deref()
            .map(|f| domain_arg(f, "--from"))
            .transpose()?;
        let mut steps = Vec::new();
        let mut trust = TrustStore::new();
        let anchors = if opts.ca.is_empty() {
            let system = PathBuf::from(SYSTEM_CAS);
            if system.exists() {
                for cert in load_certs(&system)? {
                    let _ = trust.add(&cert);
                }
            }
            format!("the system CA bundle {SYSTEM_CAS}")
        } else {
            for path in &opts.ca {
                for cert in load_certs(path)? {
                    let _ = trust.add(&cert);
                }
            }
            format!(
                "the CAs from {}",
                opts.ca
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if trust.is_empty() {
            steps.push(
                Step::new(
                    "trust-anchors",
                    None,
                    Instant::now(),
                    Status::Warn,
                    format!("no usable CA certificate in {anchors}"),
                )
                .because(advice(
                    "without trust anchors no remote certificate can be trusted",
                    "pass the CA bundle to trust with --ca (e.g. the partner's private CA), or install the system bundle (Debian: ca-certificates)",
                )),
            );
        }
        let identity = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => Some(Identity::from_files(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("--cert and --key go together"),
        };
        let secret = opts
            .dialback_secret
            .as_deref()
            .map(|p| {
                xmppfed_policy_source::pod::read_secret(p)
                    .map(DialbackSecret::new)
                    .map_err(anyhow::Error::msg)
            })
            .transpose()?;
        if from.is_none() && (identity.is_some() || secret.is_some()) {
            anyhow::bail!(
                "--cert/--key and --dialback-secret authenticate the domain given with --from: add --from <your domain>"
            );
        }
        let dns = match opts.dns_server {
            Some(server) => Dns::with_server(server),
            None => Dns::system().context("reading the system's DNS configuration")?,
        };
        Ok(Self {
            domain,
            from,
            dns,
            trust: Arc::new(trust),
            anchors,
            identity,
            secret,
            step_timeout: opts.timeout,
            steps,
            known_addresses: BTreeMap::new(),
        })
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn secs(&self) -> u64 {
        self.step_timeout.as_secs().max(1)
    }

    async fn run(&mut self) {
        self.check_our_certificate();
        let targets = self.discover().await;
        let mut reached: Option<Reached> = None;
        let mut done = [false; 2];
        // Steps of attempts that did not get as far as TLS.
        let mut failed_attempts = Vec::new();
        for target in &targets {
            if done[usize::from(target.direct_tls)] {
                continue;
            }
            let first = self.steps.len();
            for addr in self.resolve(target).await {
                let attempt = self.steps.len();
                if let Some(r) = self.probe_address(target, addr).await {
                    done[usize::from(target.direct_tls)] = true;
                    reached.get_or_insert(r);
                    failed_attempts.push(first..attempt);
                    break;
                }
            }
            if !done[usize::from(target.direct_tls)] {
                failed_attempts.push(first..self.steps.len());
            }
        }
        // A dead target is a warning when another one works: peers fall back to it.
        if let Some(r) = &reached {
            let working = addr_target(r.addr, &r.target);
            for i in failed_attempts.into_iter().flatten() {
                let step = &mut self.steps[i];
                if step.status == Status::Fail {
                    step.status = Status::Warn;
                    if let Some(cause) = &mut step.cause {
                        cause.push_str(&format!(
                            "; {working} works, so peers fall back to it, after this attempt times out or fails"
                        ));
                    }
                }
            }
        }
        match reached {
            Some(r) => self.authenticate(&r).await,
            None => {
                let why = if targets.is_empty() {
                    format!("no server of {} was found", self.domain)
                } else {
                    format!("no server of {} completed TLS", self.domain)
                };
                let started = Instant::now();
                for name in ["authentication", "ping"] {
                    self.push(Step::new(
                        name,
                        Some(self.domain.clone()),
                        started,
                        Status::Skip,
                        why.clone(),
                    ));
                }
            }
        }
    }

    // ---- DNS ------------------------------------------------------------------------------

    /// Both SRV services, then the A/AAAA fallback; the targets in the order to try them.
    async fn discover(&mut self) -> Vec<Target> {
        let mut records: Vec<SrvRecord> = Vec::new();
        // By service, [STARTTLS, direct TLS]: any SRV record, and one with a real target.
        let mut published = [false; 2];
        let mut usable = [false; 2];
        let mut failed = false;
        for direct in [true, false] {
            let name = srv_name(&self.domain, direct);
            let shown = name.trim_end_matches('.').to_string();
            let started = Instant::now();
            let answer = timeout(
                self.step_timeout,
                self.dns.srv_records(&self.domain, direct),
            )
            .await;
            let step = match answer {
                Err(_) => {
                    failed = true;
                    Step::new(
                        "srv",
                        Some(shown),
                        started,
                        Status::Fail,
                        format!("no DNS answer within {} s", self.secs()),
                    )
                    .because(dns_unreachable())
                }
                Ok(Err(e)) => {
                    failed = true;
                    Step::new("srv", Some(shown), started, Status::Fail, e.to_string())
                        .because(dns_unreachable())
                }
                Ok(Ok(None)) => self.no_srv_step(direct, shown, started),
                Ok(Ok(Some(found))) => {
                    published[usize::from(direct)] = true;
                    usable[usize::from(direct)] = found.iter().any(|r| r.target != ".");
                    let step = srv_step(&found, shown, started);
                    records.extend(found);
                    step
                }
            };
            self.push(step);
        }
        // A missing _xmpp-server next to a published _xmpps-server is reported when both are known.
        if usable[1]
            && !published[0]
            && !failed
            && let Some(step) = self.steps.iter_mut().rev().find(|s| s.name == "srv")
        {
            step.status = Status::Warn;
            step.detail = "no record (only _xmpps-server is published)".into();
            let d = &self.domain;
            step.cause = Some(format!(
                "servers without XEP-0368 direct TLS (many still) look only for _xmpp-server._tcp.{d} and then try {d}:5269 directly"
            ));
            step.fix = Some(format!(
                "publish _xmpp-server._tcp.{d} SRV records for STARTTLS as well"
            ));
        }
        if failed && records.is_empty() {
            return Vec::new();
        }
        if !published[0] && !published[1] {
            return self.address_fallback().await;
        }
        let targets = order(records, |_| 0);
        if targets.is_empty() {
            let d = self.domain.clone();
            self.push(
                Step::new(
                    "service",
                    Some(d.clone()),
                    Instant::now(),
                    Status::Fail,
                    "every SRV record has target '.': the domain says it offers no server-to-server service",
                )
                .because(advice(
                    format!("{d} explicitly declines XMPP federation in DNS"),
                    format!(
                        "if {d} should federate, its administrator must publish _xmpp-server._tcp.{d} (and _xmpps-server._tcp.{d}) SRV records with real targets"
                    ),
                )),
            );
        }
        targets
    }

    fn no_srv_step(&self, direct: bool, shown: String, started: Instant) -> Step {
        let detail = if direct {
            "no record (direct TLS, XEP-0368, is optional)"
        } else {
            "no record"
        };
        Step::new("srv", Some(shown), started, Status::Ok, detail)
    }

    async fn address_fallback(&mut self) -> Vec<Target> {
        let d = self.domain.clone();
        let started = Instant::now();
        let shown = format!("{d}:5269");
        let answer = timeout(self.step_timeout, self.dns.addresses(&d, 5269)).await;
        let no_service = advice(
            format!(
                "{d} does not publish XMPP server-to-server service: no SRV record and no A/AAAA record"
            ),
            format!(
                "check the spelling; otherwise ask its administrator for _xmpp-server._tcp.{d} SRV records (e.g. `_xmpp-server._tcp.{d}. SRV 0 5 5269 xmpp.{d}.`), and _xmpps-server._tcp.{d} for direct TLS"
            ),
        );
        let step = match answer {
            Ok(Ok(addrs)) if !addrs.is_empty() => {
                let shown_addrs = join(&addrs);
                self.known_addresses
                    .insert(d.clone(), addrs.iter().map(SocketAddr::ip).collect());
                Step::new(
                    "address-fallback",
                    Some(shown.clone()),
                    started,
                    Status::Warn,
                    format!("no SRV records: servers fall back to {d}:5269 at {shown_addrs}"),
                )
                .because(advice(
                    format!("{d} publishes no _xmpp-server._tcp SRV records"),
                    format!(
                        "publish `_xmpp-server._tcp.{d}. SRV 0 5 5269 <server host>.` (and _xmpps-server._tcp for direct TLS): without them every server guesses {d}:5269"
                    ),
                ))
            }
            Ok(Ok(_)) | Ok(Err(DnsError::NoAddress(_))) => Step::new(
                "address-fallback",
                Some(shown),
                started,
                Status::Fail,
                "no SRV record and no A/AAAA record",
            )
            .because(no_service),
            Ok(Err(e)) => Step::new(
                "address-fallback",
                Some(shown),
                started,
                Status::Fail,
                e.to_string(),
            )
            .because(dns_unreachable()),
            Err(_) => Step::new(
                "address-fallback",
                Some(shown),
                started,
                Status::Fail,
                format!("no DNS answer within {} s", self.secs()),
            )
            .because(dns_unreachable()),
        };
        let ok = step.status != Status::Fail;
        self.push(step);
        if ok {
            vec![Target {
                host: d,
                port: 5269,
                direct_tls: false,
            }]
        } else {
            Vec::new()
        }
    }

    /// The addresses of a target host (a step unless already known or an IP literal).
    async fn resolve(&mut self, target: &Target) -> Vec<SocketAddr> {
        let key = format!("{}:{}", target.host, target.port);
        if let Some(known) = self.known_addresses.get(&target.host) {
            return known
                .iter()
                .map(|ip| SocketAddr::new(*ip, target.port))
                .collect();
        }
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return vec![SocketAddr::new(ip, target.port)];
        }
        let started = Instant::now();
        let answer = timeout(
            self.step_timeout,
            self.dns.addresses(&target.host, target.port),
        )
        .await;
        let (step, addrs) = match answer {
            Ok(Ok(addrs)) if !addrs.is_empty() => (
                Step::new(
                    "resolve",
                    Some(key.clone()),
                    started,
                    Status::Ok,
                    format!("{} → {}", target.host, join(&addrs)),
                ),
                addrs,
            ),
            Ok(Ok(_)) | Ok(Err(DnsError::NoAddress(_))) => (
                Step::new(
                    "resolve",
                    Some(key.clone()),
                    started,
                    Status::Fail,
                    format!("{} has no A/AAAA record", target.host),
                )
                .because(advice(
                    format!(
                        "the SRV record of {} points at {}, which has no address",
                        self.domain, target.host
                    ),
                    format!(
                        "correct the SRV target or publish A/AAAA records for {} (an SRV target must not be a CNAME)",
                        target.host
                    ),
                )),
                Vec::new(),
            ),
            Ok(Err(e)) => (
                Step::new("resolve", Some(key.clone()), started, Status::Fail, e.to_string())
                    .because(dns_unreachable()),
                Vec::new(),
            ),
            Err(_) => (
                Step::new(
                    "resolve",
                    Some(key.clone()),
                    started,
                    Status::Fail,
                    format!("no DNS answer within {} s", self.secs()),
                )
                .because(dns_unreachable()),
                Vec::new(),
            ),
        };
        self.push(step);
        self.known_addresses.insert(
            target.host.clone(),
            addrs.iter().map(SocketAddr::ip).collect(),
        );
        addrs
    }

    // ---- one address: TCP, TLS, certificate, features ---------------------------------------

    async fn tcp(&mut self, target: &Target, addr: SocketAddr) -> Option<TcpStream> {
        let shown = addr_target(addr, target);
        let started = Instant::now();
        let answer = timeout(self.step_timeout, TcpStream::connect(addr)).await;
        let (status, detail, why) = match answer {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                let via = if target.host == addr.ip().to_string() {
                    String::new()
                } else {
                    format!(" ({}:{})", target.host, target.port)
                };
                self.push(Step::new(
                    "connect",
                    Some(shown),
                    started,
                    Status::Ok,
                    format!("connected{via}"),
                ));
                return Some(tcp);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
                Status::Fail,
                "connection refused".to_string(),
                advice(
                    format!(
                        "nothing listens on {addr}: the server is down or listens on another port"
                    ),
                    format!(
                        "start {}'s XMPP server on port {}, or correct the port in its SRV record (5269 for STARTTLS, often 5270 for direct TLS)",
                        self.domain,
                        addr.port()
                    ),
                ),
            ),
            Ok(Err(e)) => (
                Status::Fail,
                format!("connection failed: {e}"),
                firewall(addr),
            ),
            Err(_) => (
                Status::Fail,
                format!("no answer within {} s", self.secs()),
                firewall(addr),
            ),
        };
        self.push(Step::new("connect", Some(shown), started, status, detail).because(why));
        None
    }

    fn our_header(&self) -> String {
        stream::open_stream(&StreamHeader {
            from: self.from.clone(),
            to: Some(self.domain.clone()),
            id: None,
            version: Some("1.0".into()),
            lang: None,
        })
    }

    /// TCP, TLS, certificate and features at one address; `Some` when TLS completed.
    async fn probe_address(&mut self, target: &Target, addr: SocketAddr) -> Option<Reached> {
        let tcp = self.tcp(target, addr).await?;
        let shown = addr_target(addr, target);
        let mut conn = if target.direct_tls {
            self.direct_tls(tcp, &shown).await?
        } else {
            self.starttls(tcp, &shown).await?
        };
        self.judge_certificate(&shown, &conn.peer_chain(), target);
        self.features(&mut conn, &shown).await;
        let _ = conn.send(CLOSE_STREAM).await;
        conn.shutdown().await;
        Some(Reached {
            target: target.clone(),
            addr,
        })
    }

    async fn direct_tls(&mut self, tcp: TcpStream, shown: &str) -> Option<XmppConn> {
        let started = Instant::now();
        let config = match s2s_client_config(self.identity.as_ref(), TlsMode::Direct) {
            Ok(c) => c,
            Err(e) => {
                self.push(Step::new(
                    "direct-tls",
                    Some(shown.to_string()),
                    started,
                    Status::Fail,
                    format!("cannot set up TLS: {e}"),
                ));
                return None;
            }
        };
        let answer = timeout(self.step_timeout, connect_tls(tcp, config, &self.domain)).await;
        match answer {
            Ok(Ok(tls)) => {
                let (_, session) = tls.get_ref();
                let version = session
                    .protocol_version()
                    .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
                    .unwrap_or_default();
                let suite = session
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default();
                let alpn = match session.alpn_protocol() {
                    Some(p) => format!("ALPN {}", String::from_utf8_lossy(p)),
                    None => "no ALPN chosen (xmpp-server was offered; fine)".to_string(),
                };
                self.push(Step::new(
                    "direct-tls",
                    Some(shown.to_string()),
                    started,
                    Status::Ok,
                    format!("{version}, {suite}, {alpn}, SNI {}", self.domain),
                ));
                Some(XmppConn::new(
                    Transport::ClientTls(Box::new(tls)),
                    FramerLimits::PRE_AUTH,
                ))
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                let why = tls_failure(&text, &self.domain, true);
                self.push(
                    Step::new(
                        "direct-tls",
                        Some(shown.to_string()),
                        started,
                        Status::Fail,
                        text,
                    )
                    .because(why),
                );
                None
            }
            Err(_) => {
                let step = Step::new(
                    "direct-tls",
                    Some(shown.to_string()),
                    started,
                    Status::Fail,
                    format!("no TLS handshake within {} s", self.secs()),
                )
                .because(advice(
                    "the server accepted the connection but did not answer the TLS handshake: the port probably expects plaintext XMPP (STARTTLS) first",
                    format!(
                        "point _xmpps-server._tcp.{} at the direct-TLS port (often 5270), not the STARTTLS port",
                        self.domain
                    ),
                ));
                self.push(step);
                None
            }
        }
    }

    async fn starttls(&mut self, tcp: TcpStream, shown: &str) -> Option<XmppConn> {
        let mut conn = XmppConn::new(Transport::Plain(tcp), FramerLimits::PRE_AUTH);
        // The plaintext stream and its features.
        let started = Instant::now();
        let opened = self.open(&mut conn).await;
        let (header, features) = match opened {
            Ok(h) => h,
            Err(e) => {
                let step = self.open_failure("stream", shown, started, e);
                self.push(step);
                return None;
            }
        };
        let offered = Features::from_element(&features).unwrap_or_default();
        let Some(required) = offered.starttls else {
            let step = Step::new(
                "stream",
                Some(shown.to_string()),
                started,
                Status::Fail,
                format!(
                    "stream id {}, but no <starttls/> among the features",
                    header.id.as_deref().unwrap_or("(none)")
                ),
            )
            .because(advice(
                format!(
                    "the server does not offer TLS: every stream with {} would be unencrypted, and xmppfed requires TLS unless a partner is set to tlsNegotiation: NotSupported",
                    self.domain
                ),
                format!(
                    "enable TLS for server-to-server connections on {}'s server (a certificate for {} and STARTTLS on this port)",
                    self.domain, self.domain
                ),
            ));
            self.push(step);
            return None;
        };
        self.push(Step::new(
            "stream",
            Some(shown.to_string()),
            started,
            Status::Ok,
            format!(
                "stream id {}; STARTTLS offered ({})",
                header.id.as_deref().unwrap_or("(none)"),
                if required { "required" } else { "optional" }
            ),
        ));
        // <starttls/>, <proceed/>, the handshake.
        let started = Instant::now();
        let result = timeout(self.step_timeout, async {
            conn.send(&stream::tls_element("starttls").to_xml_in(ns::SERVER))
                .await
                .map_err(|e| format!("sending <starttls/>: {e}"))?;
            loop {
                match conn.next_frame().await.map_err(|e| e.to_string())? {
                    Some(Frame::Element(e)) if e.is(ns::TLS, "proceed") => break,
                    Some(Frame::Element(e)) => {
                        if let Some(err) = StreamError::from_element(&e) {
                            return Err(format!("stream error {err}"));
                        }
                        return Err(format!("<{}/> instead of <proceed/>", e.name));
                    }
                    Some(Frame::KeepAlive) => {}
                    Some(Frame::Header(_)) => return Err("a second stream header".into()),
                    Some(Frame::Close) | None => {
                        return Err("the server closed the connection after <starttls/>".into());
                    }
                }
            }
            let config = s2s_client_config(self.identity.as_ref(), TlsMode::StartTls)
                .map_err(|e| e.to_string())?;
            conn.upgrade_client(config, &self.domain)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        let step = match result {
            Ok(Ok(())) => Step::new(
                "starttls",
                Some(shown.to_string()),
                started,
                Status::Ok,
                format!("<proceed/>, TLS established (SNI {})", self.domain),
            ),
            Ok(Err(text)) => {
                let why = if text.contains("instead of <proceed/>") || text.contains("failure") {
                    advice(
                        "the server offered STARTTLS but refused it (<failure/>): usually it cannot load its own certificate or key",
                        format!(
                            "check the TLS certificate configuration and the log of {}'s server",
                            self.domain
                        ),
                    )
                } else {
                    tls_failure(&text, &self.domain, false)
                };
                Step::new(
                    "starttls",
                    Some(shown.to_string()),
                    started,
                    Status::Fail,
                    text,
                )
                .because(why)
            }
            Err(_) => Step::new(
                "starttls",
                Some(shown.to_string()),
                started,
                Status::Fail,
                format!("STARTTLS not completed within {} s", self.secs()),
            )
            .because(advice(
                "the server stopped answering during STARTTLS",
                format!(
                    "check the log of {}'s server; a middlebox may be intercepting port 5269",
                    self.domain
                ),
            )),
        };
        let ok = step.status == Status::Ok;
        self.push(step);
        if !ok {
            return None;
        }
        conn.framer_mut().reset(FramerLimits::PRE_AUTH);
        Some(conn)
    }

    /// Sends our stream header, reads the remote's header and features.
    async fn open(&self, conn: &mut XmppConn) -> Result<(StreamHeader, Element), OpenError> {
        let header = self.our_header();
        let exchange = async {
            conn.send(&header)
                .await
                .map_err(|e| OpenError::Io(e.to_string()))?;
            let mut theirs: Option<StreamHeader> = None;
            loop {
                match conn.next_frame().await {
                    Err(e) => return Err(OpenError::Io(e.to_string())),
                    Ok(Some(Frame::Header(h))) => {
                        if h.version.as_deref() != Some("1.0") {
                            return Err(OpenError::PreXmpp1);
                        }
                        theirs = Some(h);
                    }
                    Ok(Some(Frame::Element(e))) => {
                        if let Some(err) = StreamError::from_element(&e) {
                            return Err(OpenError::Stream(err));
                        }
                        match theirs.take() {
                            Some(h) if e.is(ns::STREAMS, "features") => return Ok((h, e)),
                            _ => {
                                return Err(OpenError::Io(format!(
                                    "<{}/> instead of <stream:features/>",
                                    e.name
                                )));
                            }
                        }
                    }
                    Ok(Some(Frame::KeepAlive)) => {}
                    Ok(Some(Frame::Close)) | Ok(None) => return Err(OpenError::Closed),
                }
            }
        };
        timeout(self.step_timeout, exchange)
            .await
            .unwrap_or(Err(OpenError::Timeout))
    }

    fn open_failure(&self, name: &str, shown: &str, started: Instant, e: OpenError) -> Step {
        let d = &self.domain;
        let (detail, why) = match e {
            OpenError::Stream(err) => (
                format!("stream error {err}"),
                stream_error_advice(&err, d, self.from.as_deref()),
            ),
            OpenError::PreXmpp1 => (
                "the server speaks pre-1.0 XMPP (no version='1.0'): no TLS, no SASL".to_string(),
                advice(
                    format!("{d}'s server is too old to negotiate TLS"),
                    format!(
                        "{d}'s server must be upgraded; xmppfed federates with it only if the partner allows tlsNegotiation: NotSupported and dialback"
                    ),
                ),
            ),
            OpenError::Closed => (
                "the server closed the connection without a stream error".to_string(),
                advice(
                    format!(
                        "{d}'s server (or a proxy in front of it) dropped the stream silently; some servers do this to domains they refuse"
                    ),
                    if self.from.is_some() {
                        format!("look in {d}'s server log for why it closed the stream")
                    } else {
                        "try again with --from <your domain>: some servers drop streams that do not name their sender".into()
                    },
                ),
            ),
            OpenError::Timeout => (
                format!("no stream header and features within {} s", self.secs()),
                advice(
                    "the server accepted the connection but does not speak XMPP on it (or is overloaded)",
                    format!(
                        "check the SRV record's port for {d}: it must be the server-to-server port, not a client (5222) or HTTP port"
                    ),
                ),
            ),
            OpenError::Io(text) => (
                text,
                advice(
                    "the stream broke off or the server did not speak XMPP as expected",
                    format!("check the SRV record's port for {d} and the log of its server"),
                ),
            ),
        };
        Step::new(name, Some(shown.to_string()), started, Status::Fail, detail).because(why)
    }

    /// The stream restarted over TLS: header and features.
    async fn features(&mut self, conn: &mut XmppConn, shown: &str) {
        let started = Instant::now();
        let (header, element) = match self.open(conn).await {
            Ok(x) => x,
            // Servers that accept certificates only (Prosody's s2s_secure_auth) close the
            // stream right after TLS when the peer presented none: a fact about the probe.
            Err(OpenError::Stream(err))
                if err.condition == C::NotAuthorized && self.identity.is_none() =>
            {
                let d = &self.domain;
                let step = Step::new(
                    "features",
                    Some(shown.to_string()),
                    started,
                    Status::Warn,
                    format!("right after TLS: stream error {err}"),
                )
                .because(advice(
                    format!(
                        "{d} authenticates {} only by a certificate it trusts (Prosody: s2s_secure_auth = true; an xmppfed edge: a partner without dialback), and this probe presented none, so it cannot see what {d} offers",
                        self.from.as_deref().unwrap_or("servers")
                    ),
                    "probe again with --from <your domain> --cert <pem> --key <pem> (a certificate for your domain)",
                ));
                self.push(step);
                return;
            }
            Err(e) => {
                let step = self.open_failure("features", shown, started, e);
                self.push(step);
                return;
            }
        };
        let f = Features::from_element(&element).unwrap_or_default();
        let mechanisms: Vec<String> = element
            .get_child(ns::SASL, "mechanisms")
            .map(|m| {
                m.elements()
                    .filter(|c| c.is(ns::SASL, "mechanism"))
                    .map(|c| c.text_content().trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut parts = vec![format!(
            "stream id {}",
            header
                .id
                .as_deref()
                .unwrap_or("(none: dialback impossible)")
        )];
        parts.push(if mechanisms.is_empty() {
            "SASL: none".to_string()
        } else {
            format!("SASL: {}", mechanisms.join(" "))
        });
        parts.push(format!(
            "dialback: {}",
            if f.dialback { "offered" } else { "not offered" }
        ));
        parts.push(format!(
            "bidi (XEP-0288): {}",
            if f.bidi { "offered" } else { "not offered" }
        ));
        if let Some((bytes, idle)) = f.limits {
            parts.push(format!(
                "limits (XEP-0478): {bytes} bytes per stanza, {idle} s idle"
            ));
        }
        if !f.sasl_external {
            parts.push(if self.identity.is_some() {
                format!(
                    "no SASL EXTERNAL: {} does not accept our certificate for {}",
                    self.domain,
                    self.from.as_deref().unwrap_or("?")
                )
            } else {
                "no SASL EXTERNAL (servers offer it only to peers whose client certificate they accept; this probe presented none — add --from with --cert/--key)".to_string()
            });
        }
        let detail = parts.join("; ");
        let step = if f.sasl_external || f.dialback {
            Step::new(
                "features",
                Some(shown.to_string()),
                started,
                Status::Ok,
                detail,
            )
        } else {
            let d = &self.domain;
            let why = if self.identity.is_some() {
                advice(
                    format!(
                        "{d} offers no way to authenticate us: it does not accept our certificate (so no SASL EXTERNAL) and offers no dialback"
                    ),
                    format!(
                        "{d} must trust our certificate's CA and our certificate must name our domain; or {d} must allow dialback"
                    ),
                )
            } else {
                advice(
                    format!(
                        "{d} offers no way to authenticate this stream: SASL EXTERNAL only for certificates it accepts (this probe presented none), and no dialback"
                    ),
                    "probe again with --from <your domain> --cert <pem> --key <pem> to see whether it accepts your certificate",
                )
            };
            Step::new(
                "features",
                Some(shown.to_string()),
                started,
                Status::Warn,
                detail,
            )
            .because(why)
        };
        self.push(step);
    }
}

/// Why opening a stream failed.
enum OpenError {
    Stream(StreamError),
    PreXmpp1,
    Closed,
    Timeout,
    Io(String),
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn srv_step(records: &[SrvRecord], shown: String, started: Instant) -> Step {
    let usable: Vec<&SrvRecord> = records
        .iter()
        .filter(|r| r.target != "." && !r.target.is_empty())
        .collect();
    if usable.is_empty() {
        return Step::new(
            "srv",
            Some(shown),
            started,
            Status::Ok,
            "explicitly not offered (target '.')",
        );
    }
    let mut sorted = usable;
    sorted.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    let list: Vec<String> = sorted
        .iter()
        .map(|r| {
            format!(
                "{}:{} (priority {}, weight {})",
                r.target.trim_end_matches('.'),
                r.port,
                r.priority,
                r.weight
            )
        })
        .collect();
    Step::new(
        "srv",
        Some(shown),
        started,
        Status::Ok,
        format!("{} record(s): {}", list.len(), list.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_steps_say_when_a_service_is_explicitly_not_offered() {
        let dot = SrvRecord {
            priority: 0,
            weight: 0,
            port: 0,
            target: ".".into(),
            direct_tls: true,
        };
        let s = srv_step(
            &[dot],
            "_xmpps-server._tcp.a.example".into(),
            Instant::now(),
        );
        assert_eq!(s.detail, "explicitly not offered (target '.')");
        let real = SrvRecord {
            priority: 5,
            weight: 10,
            port: 5269,
            target: "xmpp.a.example.".into(),
            direct_tls: false,
        };
        let s = srv_step(
            &[real],
            "_xmpp-server._tcp.a.example".into(),
            Instant::now(),
        );
        assert_eq!(
            s.detail,
            "1 record(s): xmpp.a.example:5269 (priority 5, weight 10)"
        );
    }
}
