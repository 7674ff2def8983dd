//! The HTTP endpoint every xmppfed pod serves (`/healthz`, `/readyz`, `/metrics`): a minimal
//! HTTP/1 server whose answers come from the component (`respond`), so the proxy and the
//! gateway say what readiness means for them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// An answer: status, content type, body.
pub type Reply = (StatusCode, &'static str, String);

/// The content type of Prometheus' OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until the task is aborted; `respond` maps a request path to its answer.
pub async fn serve(listener: TcpListener, respond: Arc<dyn Fn(&str) -> Reply + Send + Sync>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (status, content_type, body) = respond(req.uri().path());
                let response = Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// `404` for paths no component serves.
pub fn not_found() -> Reply {
    (StatusCode::NOT_FOUND, "text/plain", "not found\n".into())
}

/// `/policy-version`: the version of the policy in force, as plain text. The operator reads it
/// through the API server's pod proxy to report which version the running pods confirmed.
pub fn policy_version(policy: &crate::PolicyHolder) -> Reply {
    (
        StatusCode::OK,
        "text/plain",
        format!("{}\n", policy.status().version),
    )
}
