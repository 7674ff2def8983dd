//! What every xmppfed service binary does the same way: logging, secrets from files, and
//! waiting for SIGTERM.

use std::path::Path;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as JSON lines when asked.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

/// Reads a secret mounted as a file. Trailing whitespace is dropped: mounted secrets often
/// end with a newline that is not part of the secret.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut s = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(s)
}

/// Returns on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A fresh shared secret (the dialback secret): 32 bytes from the system RNG, base64url without
/// padding. The operator and standalone mode both make theirs here, once.
pub fn generate_secret() -> Result<String, String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random number generator failed".to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_and_different() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.len(), 43, "32 bytes, base64url without padding");
        assert_ne!(a, b);
    }
}
