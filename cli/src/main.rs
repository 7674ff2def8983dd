//! `xmppfed`: the command line of the xmppfed federation edge.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xmppfed::manifests::{compile_sources, read_sources};
use xmppfed::probe::{self, explain};
use xmppfed::standalone;
use xmppfed_api::admission::{Admission, Kind};
use xmppfed_api::crdgen;
use xmppfed_api::validate::validate_sources;

#[derive(Parser)]
#[command(name = "xmppfed", version, about = "Kubernetes-native XMPP federation edge", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Files or directories of manifests.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Which XmppFederation to run (needed when several are given).
    #[arg(long)]
    federation: Option<String>,
    /// Where the compiled policy, generated certificates, dialback secret and contact store live.
    #[arg(long, default_value = ".xmppfed")]
    state_dir: PathBuf,
    /// STARTTLS listener for partners [default: 0.0.0.0 and spec.edge.ports.starttls].
    #[arg(long)]
    starttls_listen: Option<SocketAddr>,
    /// Direct TLS listener for partners [default: 0.0.0.0 and spec.edge.ports.directTls].
    #[arg(long)]
    direct_tls_listen: Option<SocketAddr>,
    /// S2S listener for the internal servers (they reach partner domains here).
    #[arg(long, default_value = "127.0.0.1:15269")]
    gateway_listen: SocketAddr,
    /// /healthz, /readyz, /metrics of the proxy; the gateway's are on the next port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Answer the internal servers' DNS questions for partner domains here (split horizon).
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// Edge certificate chain (PEM); without it a development CA is generated.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle for partner certificates (repeatable) [default: the system bundle].
    #[arg(long, env = "XMPPFED_PEER_CA", value_delimiter = ',')]
    peer_ca: Vec<PathBuf>,
    /// CA bundle for the internal servers' certificates (repeatable) [default: the system bundle].
    #[arg(long, env = "XMPPFED_INTERNAL_CA", value_delimiter = ',')]
    internal_ca: Vec<PathBuf>,
    /// DNS server for partner SRV lookups [default: the system's].
    #[arg(long, env = "XMPPFED_DNS_SERVER")]
    dns_server: Option<SocketAddr>,
    /// Log level filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests offline as the API server would (schema + CEL), plus the operator's
    /// cross-object rules. Exits 1 on any error, 0 when there are only warnings.
    Validate {
        /// Files or directories (searched recursively for *.yaml, *.yml, *.json); `-` reads stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Print only errors and the summary.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Compile manifests into the policy document the proxy and gateway enforce, and print it.
    Compile {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Which XmppFederation to compile (needed when several are given).
        #[arg(long)]
        federation: Option<String>,
    },
    /// Write the CustomResourceDefinitions generated from the API types.
    Crds {
        /// Directory for one file per CRD; without it, all CRDs go to stdout.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run proxy and gateway in one process from manifests (standalone mode): the same
    /// XmppFederation, partners and access policies you would `kubectl apply`, watched for
    /// changes. Ctrl-C drains and stops.
    Up(Box<UpArgs>),
    /// Diagnose federation with a remote domain step by step: SRV records, TCP, STARTTLS /
    /// direct TLS, the certificate (chain, expiry, identity, purposes), stream features, and
    /// with --from: SASL EXTERNAL or dialback and an XEP-0199 ping. Each failure says its
    /// likely cause and fix. With --policy, explain instead which partner entry and settings of
    /// a policy apply to the domain (no network). Exit code: 0 nothing failed (warnings
    /// allowed), 1 a step failed (--policy: the domain would be refused), 2 bad usage or input.
    Probe(Box<ProbeArgs>),
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// The remote XMPP domain, e.g. partner.example.
    domain: String,
    /// Our domain: sent as the stream's 'from' and authenticated with --cert/--key or
    /// --dialback-secret. Without it no 'from' is sent and authentication is skipped.
    #[arg(long)]
    from: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Trust anchors for the remote certificate, PEM (repeatable) [default: the system bundle].
    #[arg(long)]
    ca: Vec<PathBuf>,
    /// Our certificate chain for --from (PEM): presented in TLS, enables SASL EXTERNAL.
    #[arg(long, requires_all = ["key", "from"])]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Enables dialback with the secret in this file. The remote verifies the key with --from's
    /// authoritative server, so this works only when --from is served by a running xmppfed
    /// edge with the same secret (xmppfed up: <state-dir>/dialback-secret).
    #[arg(long, requires = "from")]
    dialback_secret: Option<PathBuf>,
    /// Ask this DNS server (ip:port) instead of the system's.
    #[arg(long)]
    dns_server: Option<SocketAddr>,
    /// Seconds each network step may take.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,
    /// Explain which partner entry and settings of this policy apply to the domain: CR YAML
    /// (a file or directory, as for validate -f) or a compiled policy document (policy.json,
    /// policy.json.gz). No network.
    #[arg(long, conflicts_with_all = ["ca", "cert", "key", "dialback_secret", "dns_server"])]
    policy: Option<PathBuf>,
    /// With --policy on manifests: which XmppFederation (needed when there are several).
    #[arg(long, requires = "policy")]
    federation: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xmppfed: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { files, quiet } => {
            let sources = read_sources(&files)?;
            let report = validate_sources(&sources, &Admission::new());
            for p in &report.problems {
                if !quiet || p.level == xmppfed_api::validate::Level::Error {
                    println!("{p}");
                }
            }
            println!("{}", report.summary(sources.len()));
            Ok(if report.has_errors() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Compile { files, federation } => {
            let sources = read_sources(&files)?;
            match compile_sources(&sources, federation.as_deref()) {
                Ok(c) => {
                    println!("{}", serde_json::to_string_pretty(&c.compilation.document)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    bail!("nothing compiled");
                }
            }
        }
        Command::Crds { out_dir } => {
            for kind in Kind::ALL {
                let yaml = crdgen::render(kind)?;
                match &out_dir {
                    Some(dir) => {
                        let path = dir.join(crdgen::file_name(kind));
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("writing {}", path.display()))?;
                        eprintln!("wrote {}", path.display());
                    }
                    None => print!("---\n{yaml}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => up(*args),
        Command::Probe(args) => run_probe(*args),
    }
}

fn run_probe(args: ProbeArgs) -> Result<ExitCode> {
    if let Some(policy) = args.policy {
        let explanation = explain::explain(&explain::ExplainOptions {
            policy,
            domain: args.domain,
            from: args.from,
            federation: args.federation,
        })?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&explanation)?);
        } else {
            print!("{}", explanation.to_text());
        }
        return Ok(ExitCode::from(explanation.exit_code()));
    }
    let options = probe::Options {
        domain: args.domain,
        from: args.from,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        dialback_secret: args.dialback_secret,
        dns_server: args.dns_server,
        timeout: Duration::from_secs(args.timeout),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(probe::probe(&options))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn up(args: UpArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let options = standalone::Options {
        files: args.files,
        federation: args.federation,
        state_dir: args.state_dir,
        starttls_listen: args.starttls_listen,
        direct_tls_listen: args.direct_tls_listen,
        gateway_listen: args.gateway_listen,
        http_listen: args.http_listen,
        dns_listen: args.dns_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        peer_ca: args.peer_ca,
        internal_ca: args.internal_ca,
        dns_server: args.dns_server,
        poll: Duration::from_secs(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(standalone::run(
        options,
        xmppfed_policy_source::pod::wait_for_termination(),
    ))?;
    Ok(ExitCode::SUCCESS)
}
