//! `/healthz` (the process runs), `/readyz` (policy loaded and not draining; details name the
//! policy version, a refused document and the gateway links) and `/metrics` (Prometheus).

use crate::Shared;
use hyper::StatusCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use xmppfed_policy_source::health::{self, OPENMETRICS, Reply};

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    health::serve(listener, Arc::new(move |path: &str| respond(&shared, path))).await
}

fn respond(shared: &Shared, path: &str) -> Reply {
    match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => readiness(shared),
        "/policy-version" => health::policy_version(&shared.policy),
        "/metrics" => (StatusCode::OK, OPENMETRICS, shared.metrics.encode()),
        _ => health::not_found(),
    }
}

fn readiness(shared: &Shared) -> Reply {
    let status = shared.policy.status();
    let mut body = format!(
        "policy: {} (from {})\ngateway links: {}\n",
        status.version,
        status.source,
        shared.hub.connected()
    );
    if let Some(e) = &status.last_error {
        body.push_str(&format!(
            "policy refused: {e}\n(the last good policy stays in force)\n"
        ));
    }
    if shared.shutting_down() {
        body.push_str("draining\n");
        return (StatusCode::SERVICE_UNAVAILABLE, "text/plain", body);
    }
    (StatusCode::OK, "text/plain", body)
}
