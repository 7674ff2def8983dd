//! Reading manifests from files, directories (recursive, sorted) and stdin.

use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use xmppfed_api::validate::Source;

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
