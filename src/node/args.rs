//! `runsecrets node` flags. Every flag reads an environment variable too, so the DaemonSet
//! configures the plugin through `env:` (CSI itself hands the socket over as `CSI_ENDPOINT`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::client::DeliveryConfig;
use super::NodeError;
use crate::config::parse_duration;

/// Server address a local (`--data-dir`) node plugin talks to: the server's default delivery
/// listener.
pub const LOCAL_SERVER: &str = "https://127.0.0.1:8444";
/// Node id reported in local mode, where there is no Kubernetes node name.
pub const LOCAL_NODE_ID: &str = "local";

/// `runsecrets node`: the CSI node plugin (DaemonSet).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// CSI endpoint: the unix socket kubelet's registrar points at.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,
    /// This node's name (NodeGetInfo); the Downward API's spec.nodeName. Required unless
    /// --data-dir is given.
    #[arg(long, env = "NODE_NAME")]
    pub node_id: Option<String>,
    /// Base URL of the server's delivery API (HTTPS). Default with --data-dir:
    /// https://127.0.0.1:8444.
    #[arg(long, env = "RUNSECRETS_NODE_SERVER")]
    pub server: Option<String>,
    /// PEM CA bundle that signs the delivery server's certificate; the only roots trusted.
    /// Re-read when the file changes.
    #[arg(long, env = "RUNSECRETS_NODE_SERVER_CA")]
    pub server_ca: Option<PathBuf>,
    /// The plugin's own projected service-account token (audience runsecrets.io), presented
    /// to the server. Re-read on every call: kubelet rotates it.
    #[arg(long, env = "RUNSECRETS_NODE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Local mode, not for clusters: the `runsecrets server` data directory on this machine;
    /// its generated CA (tls/ca.crt) and node token (delivery/node-token) are used.
    #[arg(long, env = "RUNSECRETS_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// kubelet's root directory; target paths outside it are refused.
    #[arg(
        long,
        env = "RUNSECRETS_NODE_KUBELET_DIR",
        default_value = "/var/lib/kubelet"
    )]
    pub kubelet_dir: PathBuf,
    /// Plain-HTTP address for /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "RUNSECRETS_NODE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9809"
    )]
    pub admin_listen: SocketAddr,
    /// Smallest tmpfs per volume, in bytes (a limit, not a reservation). A volume whose files
    /// need more gets 2 × their page-rounded size + 1 MiB: room for a new copy of every file
    /// beside the old one during an update, so even 256 secrets of 500 KiB fit.
    #[arg(long, env = "RUNSECRETS_NODE_TMPFS_SIZE", default_value_t = 4 * 1024 * 1024)]
    pub tmpfs_size: u64,
    /// How long one NodePublishVolume waits for the delivery server (connect + answer).
    #[arg(long, env = "RUNSECRETS_NODE_PUBLISH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub publish_timeout: Duration,
}

/// The flags after defaults and checks.
pub(super) struct Resolved {
    pub socket: PathBuf,
    pub node_id: String,
    pub kubelet_dir: PathBuf,
    pub admin_listen: SocketAddr,
    pub tmpfs_size: u64,
    pub delivery: DeliveryConfig,
}

impl NodeArgs {
    pub(super) fn resolve(&self) -> Result<Resolved, NodeError> {
        let config = |m: &str| NodeError::Config(m.to_string());
        let socket = parse_endpoint(&self.endpoint)?;
        let local = self.data_dir.as_ref();
        let node_id = match (&self.node_id, local) {
            (Some(id), _) if !id.trim().is_empty() => id.trim().to_string(),
            (_, Some(_)) => LOCAL_NODE_ID.to_string(),
            _ => return Err(config("--node-id (or NODE_NAME) is required")),
        };
        let server = match (&self.server, local) {
            (Some(url), _) => url.clone(),
            (None, Some(_)) => LOCAL_SERVER.to_string(),
            (None, None) => return Err(config("--server is required (or --data-dir)")),
        };
        let ca = match (&self.server_ca, local) {
            (Some(path), _) => path.clone(),
            (None, Some(dir)) => dir.join("tls/ca.crt"),
            (None, None) => return Err(config("--server-ca is required (or --data-dir)")),
        };
        let token_file = match (&self.token_file, local) {
            (Some(path), _) => path.clone(),
            (None, Some(dir)) => dir.join("delivery/node-token"),
            (None, None) => return Err(config("--token-file is required (or --data-dir)")),
        };
        if !self.kubelet_dir.is_absolute() {
            return Err(config("--kubelet-dir must be an absolute path"));
        }
        if self.tmpfs_size < 64 * 1024 {
            return Err(config("--tmpfs-size must be at least 65536 bytes"));
        }
        if self.publish_timeout.is_zero() {
            return Err(config("--publish-timeout must be more than zero"));
        }
        Ok(Resolved {
            socket,
            node_id,
            kubelet_dir: self.kubelet_dir.clone(),
            admin_listen: self.admin_listen,
            tmpfs_size: self.tmpfs_size,
            delivery: DeliveryConfig {
                server,
                ca,
                token_file,
                timeout: self.publish_timeout,
            },
        })
    }
}

/// `unix:///csi/csi.sock`, `unix:/csi/csi.sock` or a bare absolute path: the socket path. CSI
/// allows only unix sockets.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf, NodeError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') && !path.ends_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(NodeError::Config(format!(
            "--endpoint {endpoint:?}: CSI endpoints are unix sockets (unix:///path/csi.sock)"
        )))
    }
}
