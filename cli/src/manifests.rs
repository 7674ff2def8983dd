//! Reading manifests from files, directories (recursive, sorted) and stdin, and compiling
//! them for one federation as `compile`, `up` and `probe --policy` do.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use xmppfed_api::admission::Admission;
use xmppfed_api::compile::{Compilation, compile};
use xmppfed_api::v1alpha1::XmppAllowedPartner;
use xmppfed_api::validate::{Level, Source, validate_sources};

/// Manifests validated and compiled for one federation.
pub struct Compiled {
    pub compilation: Compilation,
    /// Every `XmppAllowedPartner` that passed admission, including any the federation did
    /// not take into its policy.
    pub partners: Vec<XmppAllowedPartner>,
    /// Warnings, one line each.
    pub warnings: Vec<String>,
}

/// Validates `sources` as `xmppfed validate` does and compiles the federation named (or the
/// only one). Errors come back one line each.
pub fn compile_sources(
    sources: &[Source],
    federation: Option<&str>,
) -> Result<Compiled, Vec<String>> {
    let report = validate_sources(sources, &Admission::new());
    let line = |p: &xmppfed_api::validate::Problem| p.to_string();
    if report.has_errors() {
        return Err(report
            .problems
            .iter()
            .filter(|p| p.level == Level::Error)
            .map(line)
            .collect());
    }
    let feds = &report.objects.federations;
    let fed = match (federation, feds.as_slice()) {
        (Some(name), _) => feds
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| {
                vec![format!(
                    "no XmppFederation named {name} among the manifests"
                )]
            })?,
        (None, [one]) => one,
        (None, []) => return Err(vec!["no XmppFederation among the manifests".into()]),
        (None, _) => {
            return Err(vec![
                "several XmppFederations: choose one with --federation".into(),
            ]);
        }
    };
    let compilation = compile(fed, &report.objects.partners, &report.objects.policies)
        .map_err(|e| vec![e.to_string()])?;
    Ok(Compiled {
        compilation,
        warnings: report
            .problems
            .iter()
            .filter(|p| p.level != Level::Error)
            .map(line)
            .collect(),
        partners: report.objects.partners,
    })
}

/// Read every file named, expanding directories (sorted, recursive) to their manifests.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
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
