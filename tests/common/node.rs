//! Node plugin test harness: the plugin on a unix socket in a temp dir, a stub delivery server
//! over TLS (its own rcgen CA), kubelet's NodePublishVolume request from the fixtures, and a
//! guard that lazily unmounts whatever the test left mounted, even when it panics.
//!
//! `common::node` in the test binaries; benches/node.rs includes it with `#[path]`, beside
//! `common/fixtures.rs` as `fixtures`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use runsecrets::delivery::wire::{
    DeliveredSecret, DeliveryError, PublishRequest, PublishResponse, Reason, PUBLISH_PATH,
};
use runsecrets::node::csi::identity_client::IdentityClient;
use runsecrets::node::csi::node_client::NodeClient;
use runsecrets::node::csi::volume_capability::{access_mode, AccessMode, AccessType, MountVolume};
use runsecrets::node::csi::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
};
use runsecrets::node::{Node, NodeArgs};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::net::{TcpListener, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};
use zeroize::Zeroizing;

/// The node plugin's own token, as the stub server expects it.
pub const NODE_TOKEN: &str = "node-plugin-token-for-tests";

pub use super::fixtures::fixture;

/// How the stub server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    /// 503 Unavailable with a DeliveryError body.
    Unavailable,
    /// 403 Forbidden with a DeliveryError body.
    Deny,
    /// Connections are dropped before the TLS handshake: the server is unreachable.
    Down,
}

pub struct StubState {
    pub mode: Mode,
    pub secrets: HashMap<String, Vec<u8>>,
    pub requests: Vec<PublishRequest>,
    pub delay: Duration,
    /// Requests being answered now, and the most at once: shows publishes overlap.
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// A delivery server on loopback, trusting [`NODE_TOKEN`].
pub struct Stub {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub state: Arc<Mutex<StubState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    pub async fn start(secrets: &[(&str, &[u8])]) -> Stub {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "node test CA");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, &ca_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("serving cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let state = Arc::new(Mutex::new(StubState {
            mode: Mode::Serve,
            secrets: secrets
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            requests: Vec::new(),
            delay: Duration::ZERO,
            in_flight: 0,
            max_in_flight: 0,
        }));
        let router = Router::new()
            .route(PUBLISH_PATH, post(publish))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("addr");
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if accept_state.lock().unwrap().mode == Mode::Down {
                    drop(tcp);
                    continue;
                }
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Stub {
            addr,
            ca_pem: ca_cert.pem(),
            state,
            task,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_secret(&self, name: &str, value: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .insert(name.into(), value.to_vec());
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn requests(&self) -> Vec<PublishRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn refusal(status: StatusCode, reason: Reason, message: &str) -> Response {
    let body = DeliveryError {
        reason,
        message: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

async fn publish(
    State(state): State<Arc<Mutex<StubState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if bearer != format!("Bearer {NODE_TOKEN}") {
        return refusal(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthenticated,
            "caller is not the node plugin",
        );
    }
    let Ok(request) = serde_json::from_slice::<PublishRequest>(&body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            Reason::InvalidRequest,
            "not a PublishRequest",
        );
    };
    let delay = {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = state.lock().unwrap();
    state.in_flight -= 1;
    state.requests.push(request.clone());
    match state.mode {
        Mode::Deny => {
            return refusal(
                StatusCode::FORBIDDEN,
                Reason::Forbidden,
                "token is bound to pod shop/other, not node-test/csi-secrets",
            )
        }
        Mode::Unavailable | Mode::Down => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                Reason::Unavailable,
                "token review unavailable",
            )
        }
        Mode::Serve => {}
    }
    let mut secrets = Vec::new();
    for name in &request.secrets {
        let Some(value) = state.secrets.get(name) else {
            return refusal(
                StatusCode::NOT_FOUND,
                Reason::NotFound,
                &format!(
                    "secret {name:?} does not exist in namespace {}",
                    request.pod_namespace
                ),
            );
        };
        secrets.push(DeliveredSecret {
            name: name.clone(),
            data: Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value)),
        });
    }
    axum::Json(PublishResponse { secrets }).into_response()
}

/// Lazily unmounts every mount under `root` when dropped, so a failing test leaves nothing.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        for path in mounts_under(&self.0).into_iter().rev() {
            let _ = rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// `(mount point, per-mount options, fs type, source, super options)` of mounts under `root`.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|m| m.0.starts_with(root))
        .map(|m| m.0)
        .collect()
}

pub fn mountinfo() -> Vec<(PathBuf, String, String, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some((
                PathBuf::from(left.get(4)?.replace("\\040", " ")),
                left.get(5)?.to_string(),
                right.first()?.to_string(),
                right.get(1)?.to_string(),
                right.get(2).unwrap_or(&"").to_string(),
            ))
        })
        .collect()
}

/// A running node plugin with its stub server, kubelet directory and clients.
pub struct Harness {
    pub stub: Stub,
    pub kubelet: PathBuf,
    pub socket: PathBuf,
    pub admin: SocketAddr,
    pub node: NodeClient<Channel>,
    pub identity: IdentityClient<Channel>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Dropped last, in this order: mounts first, then the directory.
    _guard: MountGuard,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(secrets: &[(&str, &[u8])]) -> Harness {
        Self::start_with(secrets, |_| {}).await
    }

    pub async fn start_with(
        secrets: &[(&str, &[u8])],
        tweak: impl FnOnce(&mut NodeArgs),
    ) -> Harness {
        let stub = Stub::start(secrets).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let guard = MountGuard(dir.path().to_path_buf());
        let kubelet = dir.path().join("kubelet");
        std::fs::create_dir_all(kubelet.join("pods")).expect("kubelet dir");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &stub.ca_pem).expect("ca");
        let token = dir.path().join("node-token");
        std::fs::write(&token, format!("{NODE_TOKEN}\n")).expect("token");
        let socket = dir.path().join("csi/csi.sock");
        let mut args = NodeArgs {
            endpoint: format!("unix://{}", socket.display()),
            node_id: Some("node-1".into()),
            server: Some(format!("https://127.0.0.1:{}", stub.addr.port())),
            server_ca: Some(ca),
            token_file: Some(token),
            data_dir: None,
            kubelet_dir: kubelet.clone(),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            tmpfs_size: 4 * 1024 * 1024,
            publish_timeout: Duration::from_secs(5),
        };
        tweak(&mut args);
        let socket = runsecrets::node::parse_endpoint(&args.endpoint).expect("endpoint");
        let node = Node::bind(args).await.expect("node plugin binds");
        let admin = node.admin_addr().expect("admin addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            node.run(async {
                let _ = rx.await;
            })
            .await
            .expect("node plugin serves");
        });
        let channel = uds_channel(socket.clone()).await;
        Harness {
            stub,
            kubelet,
            socket,
            admin,
            node: NodeClient::new(channel.clone()),
            identity: IdentityClient::new(channel),
            shutdown: Some(tx),
            task: Some(task),
            _guard: guard,
            dir,
        }
    }

    /// Where kubelet would ask for pod `uid`'s volume; its parent exists, as kubelet makes it.
    pub fn target(&self, uid: &str) -> PathBuf {
        let parent = self
            .kubelet
            .join("pods")
            .join(uid)
            .join("volumes/kubernetes.io~csi/runsecrets");
        std::fs::create_dir_all(&parent).expect("target parent");
        parent.join("mount")
    }

    /// Stops the plugin and waits for it to remove its socket.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn publish(&self, req: NodePublishVolumeRequest) -> Result<(), tonic::Status> {
        self.node.clone().node_publish_volume(req).await.map(|_| ())
    }

    pub async fn unpublish(&self, volume_id: &str, target: &Path) -> Result<(), tonic::Status> {
        self.node
            .clone()
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume_id.into(),
                target_path: target.to_string_lossy().into_owned(),
            })
            .await
            .map(|_| ())
    }
}

/// A tonic channel over the plugin's unix socket, as kubelet connects.
pub async fn uds_channel(socket: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connect to the CSI socket")
}

/// kubelet's real NodePublishVolume request (fixture), aimed at `target`, with our volume
/// attributes added as the webhook would set them.
pub fn kubelet_request(target: &Path, secrets_attribute: &str) -> NodePublishVolumeRequest {
    let v = fixture("csi-nodepublish-request.json");
    let capability = &v["volumeCapability"];
    let mode = capability["accessMode"]["mode"]
        .as_str()
        .and_then(access_mode::Mode::from_str_name)
        .expect("access mode") as i32;
    assert!(capability["mount"].is_object(), "kubelet asks for a mount");
    let mut context: HashMap<String, String> = v["volumeContext"]
        .as_object()
        .expect("volumeContext")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string()))
        .collect();
    context.insert(
        runsecrets::spec::SECRETS_ATTRIBUTE.into(),
        secrets_attribute.into(),
    );
    // kubelet's target is `…/pods/<pod uid>/volumes/…`: the context names the same pod.
    if let Some(uid) = pod_uid_of(target) {
        context.insert(runsecrets::node::POD_UID_KEY.into(), uid);
    }
    NodePublishVolumeRequest {
        volume_id: v["volumeId"].as_str().expect("volumeId").into(),
        target_path: target.to_string_lossy().into_owned(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode { mode }),
        }),
        readonly: v["readonly"].as_bool().expect("readonly"),
        volume_context: context,
        ..Default::default()
    }
}

/// The same request for another pod (uid, name, volume id), for concurrency tests.
pub fn request_for_pod(target: &Path, attribute: &str, n: usize) -> NodePublishVolumeRequest {
    let mut req = kubelet_request(target, attribute);
    req.volume_id = format!("csi-{n:064x}");
    req.volume_context
        .insert(runsecrets::node::POD_NAME_KEY.into(), format!("pod-{n}"));
    req
}

/// The pod uid in a kubelet target path (`…/pods/<uid>/volumes/…`).
pub fn pod_uid_of(target: &Path) -> Option<String> {
    let parts: Vec<&str> = target.iter().filter_map(|c| c.to_str()).collect();
    parts
        .windows(2)
        .find(|w| w[0] == "pods")
        .map(|w| w[1].to_string())
}

/// The pod token in the fixture request.
pub fn fixture_token() -> String {
    let v = fixture("csi-nodepublish-request.json");
    let tokens = v["volumeContext"]["csi.storage.k8s.io/serviceAccount.tokens"]
        .as_str()
        .expect("tokens attribute");
    let map: Value = serde_json::from_str(tokens).expect("tokens JSON");
    map["runsecrets.io"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}
