//! Accept loop with graceful shutdown: stop accepting, let in-flight requests finish, close
//! idle keep-alive connections (the apiserver keeps them open), all within a bound. Every
//! connection lives in the listener's [`Connections`] table, which bounds how long a peer may
//! hold a slot without using it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::connections::{Closed, Connections, Deadlines, Slot};
use super::metrics::Metrics;

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Bounds on one listener.
pub struct Limits {
    /// Time in-flight requests get after the stop signal.
    pub grace: Duration,
    pub deadlines: Deadlines,
}

/// Concurrent requests on one HTTP/2 connection: each may buffer a review body, so the
/// default of 200 would let one client pin 800 MiB.
const H2_MAX_STREAMS: u32 = 16;
/// HTTP/2 connections are pinged when idle and dropped when the peer stops answering.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection told to close (deadline, eviction) gets this long to say goodbye (HTTP/2
/// GOAWAY) before its socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` turns true, then drains for at most
/// `limits.grace`. Returns false when connections were still open at the deadline.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    connections: Arc<Connections>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    limits: Limits,
) -> bool {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The connection table's deadlines cover header reads, for HTTP/2 as well.
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    let connection = Arc::new(Connection {
        builder,
        tls,
        router,
        metrics,
        deadlines: limits.deadlines,
    });
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = connections.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(stop.clone()) => break,
        };
        let Some(slot) = connections.admit(stopped(stop.clone())).await else {
            break;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection.clone().run(tcp, slot, stop.clone()));
    }
    drop(listener);
    tokio::time::timeout(limits.grace, connections.drained())
        .await
        .is_ok()
}

/// What every connection of a listener shares.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    router: Router,
    metrics: Arc<Metrics>,
    deadlines: Deadlines,
}

impl Connection {
    /// Serves one connection until the peer leaves, a deadline passes, the table evicts it,
    /// or the listener stops.
    async fn run(self: Arc<Self>, tcp: TcpStream, slot: Slot, stop: watch::Receiver<bool>) {
        let slot = Arc::new(slot);
        let Some(acceptor) = &self.tls else {
            return self.serve(TokioIo::new(tcp), slot, stop).await;
        };
        // The handshake counts against the first-request deadline: a peer that connects and
        // stays silent is closed like one that completes the handshake and stays silent.
        let stream = tokio::select! {
            stream = acceptor.accept(tcp) => match stream {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(listener = slot.listener(), error = %e, "TLS handshake failed");
                    return;
                }
            },
            reason = slot.expired(self.deadlines) => {
                self.metrics.connection_closed(slot.listener(), reason);
                return;
            }
            () = stopped(stop.clone()) => return,
        };
        self.serve(TokioIo::new(stream), slot, stop).await;
    }

    async fn serve<I>(&self, io: TokioIo<I>, slot: Arc<Slot>, stop: watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let requests = slot.clone();
        let router = self.router.clone();
        // Headers are complete when hyper calls the service: from then until the response is
        // ready the request is in flight, and the connection is neither idle nor evictable.
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = requests.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            reason = slot.expired(self.deadlines) => {
                self.metrics.connection_closed(slot.listener(), reason);
                // Its slot went to a newcomer: waiting for the slow request would keep the
                // socket anyway.
                if reason == Closed::SlowRequest {
                    return;
                }
            }
            () = stopped(stop) => {}
        }
        // HTTP/2 gets its GOAWAY; requests in flight finish (the listener's drain bounds a
        // shutdown); once nothing is in flight for CLOSE_GRACE the socket is dropped, answered
        // or not.
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            _ = conn.as_mut() => {}
            () = slot.idle_for(CLOSE_GRACE) => {}
        }
    }
}
