//! The live policy: one compiled document, swapped atomically when a new one arrives, and
//! never replaced by a document that fails to load (the refusal is logged, counted and shown
//! in `/readyz`).
//!
//! Sources: a file (standalone mode, or a ConfigMap mounted as a volume), polled for content
//! changes — polling by content hash is immune to the symlink swaps the kubelet uses to
//! update ConfigMap volumes, which inotify-based watchers miss.

use crate::metrics::{Metrics, VersionLabels};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use xmppfed_policy::CompiledPolicy;

/// What `/readyz` reports about the policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyStatus {
    pub version: String,
    pub source: String,
    /// Why the most recent document was refused, if it was.
    pub last_error: Option<String>,
}

pub struct PolicyHolder {
    tx: watch::Sender<Arc<CompiledPolicy>>,
    status: Mutex<PolicyStatus>,
}

impl PolicyHolder {
    pub fn new(initial: CompiledPolicy, source: &str, metrics: &Metrics) -> Self {
        let version = initial.version().to_string();
        metrics
            .policy_version
            .get_or_create(&VersionLabels {
                version: version.clone(),
            })
            .set(1);
        Self {
            tx: watch::Sender::new(Arc::new(initial)),
            status: Mutex::new(PolicyStatus {
                version,
                source: source.to_string(),
                last_error: None,
            }),
        }
    }

    /// The policy in force. Cheap: an `Arc` clone.
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.tx.borrow().clone()
    }

    /// Notified on every swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CompiledPolicy>> {
        self.tx.subscribe()
    }

    pub fn status(&self) -> PolicyStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Offers a newly read document: swapped in if it loaded, refused (keeping the last good
    /// one) if not. Returns whether the policy changed.
    pub fn offer(&self, loaded: Result<CompiledPolicy, String>, metrics: &Metrics) -> bool {
        let Ok(mut status) = self.status.lock() else {
            return false;
        };
        match loaded {
            Ok(policy) => {
                status.last_error = None;
                if policy.version() == status.version {
                    return false;
                }
                tracing::info!(old = %status.version, new = %policy.version(), partners = policy.document().partners.len(), "policy swapped");
                metrics
                    .policy_version
                    .get_or_create(&VersionLabels {
                        version: status.version.clone(),
                    })
                    .set(0);
                metrics
                    .policy_version
                    .get_or_create(&VersionLabels {
                        version: policy.version().to_string(),
                    })
                    .set(1);
                status.version = policy.version().to_string();
                self.tx.send_replace(Arc::new(policy));
                true
            }
            Err(why) => {
                tracing::error!(error = %why, kept = %status.version, "policy document refused; keeping the last good one");
                metrics.policy_reload_failures.inc();
                status.last_error = Some(why);
                false
            }
        }
    }
}

/// A policy file as loaded: the checked policy and the hash of the bytes it came from.
pub struct LoadedFile {
    pub policy: CompiledPolicy,
    pub content_hash: ContentHash,
}

pub type ContentHash = sha2::digest::Output<Sha256>;

/// Reads and checks a policy file (JSON, or gzip-compressed JSON).
pub fn load_file(path: &Path) -> Result<LoadedFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let policy =
        xmppfed_policy::decode_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(LoadedFile {
        policy,
        content_hash: Sha256::digest(&bytes),
    })
}

/// Polls `path` every `interval` and offers content that differs from `loaded` (the hash of
/// the bytes the running policy came from, so a change made before the first poll is seen).
pub async fn watch_file(
    path: PathBuf,
    loaded: ContentHash,
    holder: Arc<PolicyHolder>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let mut last_hash = Some(loaded);
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let hash = Sha256::digest(&bytes);
        if last_hash.as_ref() == Some(&hash) {
            continue;
        }
        last_hash = Some(hash);
        let loaded =
            xmppfed_policy::decode_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()));
        holder.offer(loaded, &metrics);
    }
}
