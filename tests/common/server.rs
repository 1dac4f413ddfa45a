//! `runsecrets server` in the test's own process, on kernel-chosen loopback ports: for tests
//! that need the server's internals (its error on stop) or thousands of connections cheaply.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use runsecrets::server::{Server, ServerArgs, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server started by [`Running::start`]; dropping it stops the server.
pub struct Running {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub delivery: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        super::tls::init_crypto();
        let mut argv = vec![
            "server",
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
        ];
        argv.extend_from_slice(&super::binary::LOOPBACK_LISTENERS);
        argv.extend_from_slice(extra);
        let args = ServerArgs::try_parse_from(argv).expect("flags parse");
        let server = Server::bind(args).await.expect("server starts");
        let (webhook, admin) = (server.webhook_addr(), server.admin_addr());
        let delivery = server.delivery_addr().expect("delivery listener");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            webhook,
            admin,
            delivery,
            stop: Some(tx),
            handle,
        }
    }

    /// Waits (at most 10 s) until `/readyz` answers 200, e.g. until the watch cache has synced.
    pub async fn ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while super::tls::plain_get(self.admin, "/readyz").await.0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz not 200 within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Stops the server gracefully; what `run` returned.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.await.expect("server task")
    }
}
