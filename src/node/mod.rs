//! The CSI node plugin: secret files on a tmpfs, only in pods granted them.
//!
//! kubelet calls NodePublishVolume on a unix socket with the pod's bound token in the volume
//! context; the plugin asks the server's delivery API for the pod's files, lays them out on a
//! fresh `nodev,nosuid,noexec` tmpfs as Swarm does (each target a regular file with its own
//! owner and mode, replaced one by one by rename when it changes), and remounts it read-only.
//! NodeUnpublishVolume wipes, unmounts and removes. The plugin keeps no state of its own: the
//! mount table is the record of what is published, so a restarted plugin picks up where it
//! left off.
//!
//! Layers, each importing only those below it: `service` (the gRPC answers, and the only
//! place a failure gets its gRPC code from a delivery error) over `request` and `target` (the
//! checks), `client` (the delivery call, with delivery-level errors) and `volume` (publish,
//! update, teardown); `volume` over `mounts` (the `Mounter` trait: the kernel, or a
//! fake in tests) and `writer` (the files); `failure` under all of them.

mod args;
pub(crate) mod client;
pub mod csi;
mod failure;
#[cfg(test)]
mod fake_mounts;
mod identity;
mod locks;
mod metrics;
mod mounts;
mod request;
mod service;
mod target;
mod volume;
mod writer;

pub use args::{parse_endpoint, NodeArgs};
pub use client::DeliveryClient;
pub use mounts::MOUNT_SOURCE;
pub use request::{EPHEMERAL_KEY, POD_NAMESPACE_KEY, POD_NAME_KEY, POD_UID_KEY, TOKENS_KEY};

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;

use self::csi::identity_server::IdentityServer;
use self::csi::node_server::NodeServer;
use self::metrics::NodeMetrics;
use self::service::{NodeService, Settings};

/// Why the node plugin could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("configuration")]
    Client(#[source] client::ClientConfigError),
    #[error("preparing the CSI socket {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the admin listener {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("checking the kubelet directory {path}")]
    KubeletDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving CSI on {path}")]
    Serve {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("serving the admin listener")]
    AdminServe(#[source] std::io::Error),
}

/// A bound node plugin: the socket and admin listener exist, so kubelet's registrar and the
/// tests can connect as soon as this returns.
pub struct Node {
    socket_path: PathBuf,
    listener: UnixListener,
    admin: TcpListener,
    service: NodeService,
    metrics: Arc<NodeMetrics>,
    ready: Arc<AtomicBool>,
}

impl Node {
    /// Checks the configuration, then binds the CSI socket (replacing a stale one left by a
    /// previous run) and the admin listener.
    pub async fn bind(args: NodeArgs) -> Result<Self, NodeError> {
        let settings = args.resolve()?;
        let kubelet_dir = std::fs::canonicalize(&settings.kubelet_dir).map_err(|source| {
            NodeError::KubeletDir {
                path: settings.kubelet_dir.clone(),
                source,
            }
        })?;
        let metrics = Arc::new(NodeMetrics::default());
        let mounted = mounts::ours_under(&kubelet_dir).unwrap_or_default();
        metrics.set_mounted(mounted.len());
        let client = DeliveryClient::new(settings.delivery.clone()).map_err(NodeError::Client)?;
        let service = NodeService::new(
            Settings {
                node_id: settings.node_id.clone(),
                kubelet_dir: settings.kubelet_dir.clone(),
                kubelet_real: kubelet_dir,
                tmpfs_size: settings.tmpfs_size,
            },
            client,
            Arc::new(mounts::Kernel),
            metrics.clone(),
        );
        let socket_path = settings.socket.clone();
        let listener = bind_socket(&socket_path)?;
        let admin = TcpListener::bind(settings.admin_listen)
            .await
            .map_err(|source| NodeError::Admin {
                addr: settings.admin_listen,
                source,
            })?;
        tracing::info!(
            socket = %socket_path.display(),
            node_id = %settings.node_id,
            server = %settings.delivery.server,
            volumes = mounted.len(),
            "CSI node plugin listening"
        );
        Ok(Self {
            socket_path,
            listener,
            admin,
            service,
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The admin listener's address (`/livez`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Where kubelet connects.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Serves until `shutdown` resolves, then removes the socket so kubelet's registrar sees
    /// the plugin gone rather than a dead file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin_router = metrics::admin_router(self.metrics.clone(), self.ready.clone());
        let mut admin_stop = stop_rx.clone();
        let admin = tokio::spawn(async move {
            axum::serve(self.admin, admin_router)
                .with_graceful_shutdown(async move {
                    let _ = admin_stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        self.ready.store(true, Ordering::Relaxed);
        let served = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(identity::Identity))
            .add_service(NodeServer::new(self.service))
            .serve_with_incoming_shutdown(UnixListenerStream::new(self.listener), async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        self.ready.store(false, Ordering::Relaxed);
        // Whatever ended the gRPC server also ends the admin listener.
        drop(stop_rx);
        let _ = std::fs::remove_file(&self.socket_path);
        served.map_err(|source| NodeError::Serve {
            path: self.socket_path.clone(),
            source,
        })?;
        match admin.await {
            Ok(result) => result.map_err(NodeError::AdminServe),
            Err(_) => Ok(()),
        }
    }
}

/// `runsecrets node`: binds, serves until `shutdown`, cleans up the socket.
pub async fn run(args: NodeArgs, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    Node::bind(args).await?.run(shutdown).await
}

/// Creates the socket's directory and removes a socket left by a previous run; refuses to
/// delete anything at that path that is not a socket.
fn bind_socket(path: &Path) -> Result<UnixListener, NodeError> {
    let err = |source| NodeError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}
