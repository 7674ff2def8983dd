//! `xmppfed`: the command line of the xmppfed federation edge.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xmppfed_api::admission::{Admission, Kind};
use xmppfed_api::validate::{Source, validate_sources};
use xmppfed_api::{compile, crdgen};

#[derive(Parser)]
#[command(name = "xmppfed", version, about = "Kubernetes-native XMPP federation edge", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Run proxy and gateway in one process from manifests (standalone mode).
    Up {
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
    },
    /// Diagnose federation with a remote domain step by step.
    Probe { domain: String },
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
            let report = validate_sources(&sources, &Admission::new());
            if report.has_errors() {
                for p in report
                    .problems
                    .iter()
                    .filter(|p| p.level == xmppfed_api::validate::Level::Error)
                {
                    eprintln!("{p}");
                }
                bail!("the manifests have errors; nothing compiled");
            }
            let objects = &report.objects;
            let fed = match (&federation, objects.federations.as_slice()) {
                (Some(name), feds) => feds
                    .iter()
                    .find(|f| f.metadata.name.as_deref() == Some(name))
                    .with_context(|| {
                        format!("no XmppFederation named {name} among the manifests")
                    })?,
                (None, [one]) => one,
                (None, []) => bail!("no XmppFederation among the manifests"),
                (None, _) => bail!("several XmppFederations: choose one with --federation"),
            };
            let c = compile::compile(fed, &objects.partners, &objects.policies)?;
            println!("{}", serde_json::to_string_pretty(&c.document)?);
            Ok(ExitCode::SUCCESS)
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
        Command::Up { files } => {
            // Until the proxy and gateway exist, `up` checks and compiles what it would run.
            if !files.is_empty() {
                let sources = read_sources(&files)?;
                let report = validate_sources(&sources, &Admission::new());
                for p in &report.problems {
                    println!("{p}");
                }
                println!("{}", report.summary(sources.len()));
                for fed in &report.objects.federations {
                    if let Ok(c) =
                        compile::compile(fed, &report.objects.partners, &report.objects.policies)
                    {
                        let d = &c.document;
                        println!(
                            "federation {}/{}: domains {}, {} partner(s), {} access rule(s), policy {}",
                            d.federation.namespace,
                            d.federation.name,
                            d.served_domains.join(", "),
                            d.partners.len(),
                            d.access.rules.len(),
                            d.version
                        );
                    }
                }
            }
            eprintln!(
                "xmppfed up: standalone mode (running the proxy and gateway from these manifests) is not \
                 available yet in this build; the manifests above were only validated and compiled."
            );
            Ok(ExitCode::from(3))
        }
        Command::Probe { domain } => {
            eprintln!(
                "xmppfed probe {domain}: federation diagnostics are not available yet in this build."
            );
            Ok(ExitCode::from(3))
        }
    }
}

/// Read every file named, expanding directories (sorted, recursive) to their manifests.
fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            sources.push(Source {
                path: "<stdin>".into(),
                text,
            });
        } else if path.is_dir() {
            let mut files = Vec::new();
            collect_manifests(path, &mut files)?;
            files.sort();
            for f in files {
                sources.push(read_file(&f)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> Result<Source> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    Ok(Source {
        path: path.display().to_string(),
        text,
    })
}

fn collect_manifests(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_manifests(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}
