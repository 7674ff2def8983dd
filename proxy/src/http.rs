//! `/healthz` (the process runs), `/readyz` (policy loaded and not draining; details name the
//! policy version, a refused document and the gateway links) and `/metrics` (Prometheus).

use crate::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&shared, &req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn respond(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => readiness(shared),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn readiness(shared: &Shared) -> (StatusCode, &'static str, String) {
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
