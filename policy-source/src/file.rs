//! The policy from a file (standalone mode, or the ConfigMap mounted as a volume), polled for
//! content changes — polling by content hash is immune to the symlink swaps the kubelet uses
//! to update ConfigMap volumes, which inotify-based watchers miss.

use crate::PolicyHolder;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xmppfed_policy::CompiledPolicy;

/// A policy file as loaded: the checked policy and the hash of the bytes it came from.
pub struct LoadedFile {
    pub policy: CompiledPolicy,
    pub content_hash: ContentHash,
}

pub type ContentHash = sha2::digest::Output<Sha256>;

/// Reads and checks a policy file (JSON, or gzip-compressed JSON).
pub fn load(path: &Path) -> Result<LoadedFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(LoadedFile {
        policy: decode(path, &bytes)?,
        content_hash: Sha256::digest(&bytes),
    })
}

fn decode(path: &Path, bytes: &[u8]) -> Result<CompiledPolicy, String> {
    xmppfed_policy::decode_bytes(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Polls `path` every `interval` and offers content that differs from `loaded` (the hash of
/// the bytes the running policy came from, so a change made before the first poll is seen).
pub async fn watch(
    path: PathBuf,
    loaded: ContentHash,
    holder: Arc<PolicyHolder>,
    interval: Duration,
) {
    let mut last_hash = loaded;
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let hash = Sha256::digest(&bytes);
        if last_hash == hash {
            continue;
        }
        last_hash = hash;
        holder.offer(decode(&path, &bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicyMetrics, testdoc};

    fn write(path: &Path, partners: &[&str]) {
        let json = serde_json::to_vec(&testdoc::document(partners)).expect("json");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_swapped_in_and_a_corrupt_one_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("policy.json");
        write(&path, &["a.example"]);
        let loaded = load(&path).expect("loads");
        let holder = Arc::new(PolicyHolder::new(
            loaded.policy,
            "file",
            PolicyMetrics::default(),
        ));
        let mut rx = holder.subscribe();
        // Changed before the watcher's first poll: still seen.
        write(&path, &["b.example"]);
        tokio::spawn(watch(
            path.clone(),
            loaded.content_hash,
            holder.clone(),
            Duration::from_millis(100),
        ));
        rx.changed().await.expect("swapped");
        assert!(holder.current().partner_for("b.example").is_some());

        std::fs::write(&path, b"{\"format\": \"other\"}").expect("write");
        while holder.status().last_error.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(holder.current().partner_for("b.example").is_some());
    }
}
