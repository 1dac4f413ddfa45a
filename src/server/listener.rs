//! Accept loop with graceful shutdown: stop accepting, let in-flight requests finish, close
//! idle keep-alive connections (the apiserver keeps them open), all within a bound.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Bounds on one listener.
pub struct Limits {
    /// Time in-flight requests get after the stop signal.
    pub grace: Duration,
    /// Connections served at once; the accept loop waits for a free slot.
    pub max_connections: usize,
}

/// Concurrent requests on one HTTP/2 connection: each may buffer a review body, so the
/// default of 200 would let one client pin 800 MiB.
const H2_MAX_STREAMS: u32 = 16;
/// HTTP/2 connections are pinged when idle and dropped when the peer stops answering.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stop` turns true, then drains for at most
/// `limits.grace`. Returns false when connections were still open at the deadline.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) -> bool {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(HEADER_TIMEOUT);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_ok()
}
