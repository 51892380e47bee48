//! Accepting connections and serving HTTP/1.1 on them with limits a shared server needs:
//! a deadline for the request head (a stalled client must not hold a connection forever)
//! and bounds on its size and header count. axum::serve has no such settings, so this is
//! its loop on hyper's own connection builder.

use axum::serve::Listener;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// What hyper enforces while reading a request head (past them: connection closed, or 431).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

/// Serves `app` until `shutdown` resolves, then stops accepting and waits for the open
/// connections to finish their responses.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: HeadLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Twice the limits: a head past them but within these gets a 431 with a body
        // (`head_limits`); hyper's own 431 has none.
        .max_header_size(limits.max_header_bytes.saturating_mul(2))
        .max_headers(limits.max_headers.saturating_mul(2));
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits,
        super::head_limits::check,
    ));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // axum's Listener retries transient accept errors (out of file descriptors).
        let (io, _) = tokio::select! {
            conn = Listener::accept(&mut listener) => conn,
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, oversized heads and clients hanging up end up here.
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
