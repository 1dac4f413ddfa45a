//! NodePublishVolume as kubelet sees it, against a stub delivery server on loopback (TLS).
//!
//! The plugin runs as its own process (this binary re-executed with
//! `RUNSECRETS_NODE_BENCH_CHILD=1`), so its memory can be read from /proc. Measured:
//! - latency of a first publish (TLS call + tmpfs mount + 10 × 4 KiB files + remount ro) and
//!   of republishes with unchanged data, with one of the 10 secrets changed and with all 10
//!   changed (each changed file replaced by rename), p50/p99 over many runs;
//! - 100 concurrent publishes for different pods: wall time against 100 × one publish;
//! - the plugin's RSS idle and with 110 volumes mounted (kubelet's default pod limit);
//! - the first-publish latency again against the real `runsecrets server` (embedded file
//!   store, local authenticator) on loopback, so unsealing and the token check are included.
//!
//! Needs root (it mounts tmpfs): `cargo bench --bench node`.

#[path = "../tests/common/fixtures.rs"]
mod fixtures;
#[path = "../tests/common/node.rs"]
mod node_harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use node_harness::{request_for_pod, uds_channel, MountGuard, Stub, NODE_TOKEN};
use runsecrets::node::csi::node_client::NodeClient;
use runsecrets::node::csi::{
    NodeGetInfoRequest, NodePublishVolumeRequest, NodeUnpublishVolumeRequest,
};
use runsecrets::node::NodeArgs;
use tonic::transport::Channel;

const SECRET_COUNT: usize = 10;
const SECRET_SIZE: usize = 4096;
const RUNS: usize = 300;
const CONCURRENT: usize = 100;
const MAX_PODS: usize = 110;

#[derive(Parser)]
struct ChildCli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() {
    if std::env::var_os("RUNSECRETS_NODE_BENCH_CHILD").is_some() {
        return child();
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run anyway.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(parent());
}

/// The plugin alone, configured from the environment; stops when stdin closes.
fn child() {
    let cli = ChildCli::parse_from(["node"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        runsecrets::node::run(cli.node, async {
            let _ = stdin_closed.await;
        })
        .await
        .expect("node plugin");
    });
}

/// Starts the plugin as its own process on `socket`, talking to 127.0.0.1:`port`; returns once
/// the socket exists.
async fn spawn_plugin(socket: &Path, port: u16, ca: &Path, token: &Path, kubelet: &Path) -> Child {
    let plugin = Command::new(std::env::current_exe().expect("exe"))
        .env("RUNSECRETS_NODE_BENCH_CHILD", "1")
        .env("CSI_ENDPOINT", format!("unix://{}", socket.display()))
        .env("NODE_NAME", "bench-node")
        .env(
            "RUNSECRETS_NODE_SERVER",
            format!("https://127.0.0.1:{port}"),
        )
        .env("RUNSECRETS_NODE_SERVER_CA", ca)
        .env("RUNSECRETS_NODE_TOKEN_FILE", token)
        .env("RUNSECRETS_NODE_KUBELET_DIR", kubelet)
        .env("RUNSECRETS_NODE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the plugin");
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    plugin
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 50);
    println!(
        "{name}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        samples.len(),
        p50,
        percentile(&samples, 99),
        samples[samples.len() - 1]
    );
    p50
}

fn target(kubelet: &Path, n: usize) -> PathBuf {
    let parent = kubelet.join(format!("pods/pod-{n}/volumes/kubernetes.io~csi/runsecrets"));
    std::fs::create_dir_all(&parent).expect("parent");
    parent.join("mount")
}

/// A secret's name and value, as the stub serves it.
type Secret = (String, Vec<u8>);

/// Latencies of each kind of call, one sample per round.
#[derive(Default)]
struct Samples {
    first: Vec<Duration>,
    unchanged: Vec<Duration>,
    one_changed: Vec<Duration>,
    all_changed: Vec<Duration>,
}

async fn timed_publish(
    client: &mut NodeClient<Channel>,
    req: &NodePublishVolumeRequest,
) -> Duration {
    let started = Instant::now();
    client
        .node_publish_volume(req.clone())
        .await
        .expect("publish");
    started.elapsed()
}

/// 20 warm-up rounds, then [`RUNS`] timed first publishes of `req`; with a stub whose values
/// can change, each is followed by timed republishes (unchanged, one secret changed, all
/// changed) and the values are restored. Every round ends with an unpublish.
async fn time_publishes(
    client: &mut NodeClient<Channel>,
    req: &NodePublishVolumeRequest,
    t: &Path,
    stub: Option<(&Stub, &[Secret])>,
) -> Samples {
    for _ in 0..20 {
        client
            .node_publish_volume(req.clone())
            .await
            .expect("warm-up");
        unpublish(client, &req.volume_id, t).await;
    }
    let mut samples = Samples::default();
    for _ in 0..RUNS {
        samples.first.push(timed_publish(client, req).await);
        if let Some((stub, values)) = stub {
            samples.unchanged.push(timed_publish(client, req).await);
            let changed = |v: &[u8]| {
                v.iter()
                    .map(|b| b.to_ascii_uppercase())
                    .collect::<Vec<u8>>()
            };
            stub.set_secret(&values[0].0, &changed(&values[0].1));
            samples.one_changed.push(timed_publish(client, req).await);
            for (name, value) in values {
                stub.set_secret(name, &changed(value));
            }
            samples.all_changed.push(timed_publish(client, req).await);
            for (name, value) in values {
                stub.set_secret(name, value);
            }
        }
        unpublish(client, &req.volume_id, t).await;
    }
    samples
}

async fn unpublish(client: &mut NodeClient<Channel>, id: &str, target: &Path) {
    client
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.to_string_lossy().into_owned(),
        })
        .await
        .expect("unpublish");
}

async fn parent() {
    let values: Vec<(String, Vec<u8>)> = (0..SECRET_COUNT)
        .map(|i| (format!("secret-{i}"), vec![b'a' + i as u8; SECRET_SIZE]))
        .collect();
    let refs: Vec<(&str, &[u8])> = values
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let attribute = values
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let stub = Stub::start(&refs).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let _guard = MountGuard(dir.path().to_path_buf());
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).expect("kubelet");
    std::fs::write(dir.path().join("ca.crt"), &stub.ca_pem).expect("ca");
    std::fs::write(dir.path().join("token"), NODE_TOKEN).expect("token");
    let socket = dir.path().join("csi.sock");
    let mut plugin = spawn_plugin(
        &socket,
        stub.addr.port(),
        &dir.path().join("ca.crt"),
        &dir.path().join("token"),
        &kubelet,
    )
    .await;
    let pid = plugin.id();
    let mut client = NodeClient::new(uds_channel(socket.clone()).await);
    client
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("plugin answers");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(pid);
    println!("plugin RSS idle: {} KiB (peak {} KiB)", idle.0, idle.1);

    // Sequential: first publish of a fresh volume, then an unchanged republish.
    let t = target(&kubelet, 0);
    let req = request_for_pod(&t, &attribute, 0);
    let samples = time_publishes(&mut client, &req, &t, Some((&stub, values.as_slice()))).await;
    let single = report("publish 10 x 4 KiB (first mount)", samples.first);
    for (name, kind) in [
        ("republish, unchanged data", samples.unchanged),
        ("republish, 1 of 10 secrets changed", samples.one_changed),
        ("republish, 10 of 10 secrets changed", samples.all_changed),
    ] {
        let p50 = report(name, kind);
        println!(
            "  ratio to the first publish in the same run: {:.2}",
            p50.as_secs_f64() / single.as_secs_f64()
        );
    }

    // 100 publishes for different pods at once.
    let requests: Vec<_> = (1..=CONCURRENT)
        .map(|n| {
            let t = target(&kubelet, n);
            (request_for_pod(&t, &attribute, n), t)
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .iter()
        .map(|(req, _)| {
            let (mut c, req) = (client.clone(), req.clone());
            tokio::spawn(async move { c.node_publish_volume(req).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("concurrent publish");
    }
    let wall = started.elapsed();
    println!(
        "{CONCURRENT} concurrent publishes: wall {wall:.2?} vs {CONCURRENT} x p50 = {:.2?} \
         (max in flight at the server: {})",
        single * CONCURRENT as u32,
        stub.max_in_flight()
    );

    // The same with a server that takes 20 ms to answer (a TokenReview round trip): serialised
    // publishes would need 100 x 20 ms.
    for (req, t) in &requests {
        unpublish(&mut client, &req.volume_id, t).await;
    }
    stub.set_delay(Duration::from_millis(20));
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .iter()
        .map(|(req, _)| {
            let (mut c, req) = (client.clone(), req.clone());
            tokio::spawn(async move { c.node_publish_volume(req).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("concurrent publish");
    }
    println!(
        "{CONCURRENT} concurrent publishes, server answering in 20 ms: wall {:.2?} \
         (serialised: >= {:.2?}; max in flight at the server: {})",
        started.elapsed(),
        Duration::from_millis(20) * CONCURRENT as u32,
        stub.max_in_flight()
    );
    stub.set_delay(Duration::ZERO);

    // Up to 110 volumes mounted at once.
    for n in CONCURRENT + 1..=MAX_PODS {
        let t = target(&kubelet, n);
        client
            .node_publish_volume(request_for_pod(&t, &attribute, n))
            .await
            .expect("publish");
    }
    let full = rss_kib(pid);
    println!(
        "plugin RSS with {MAX_PODS} volumes mounted: {} KiB (peak {} KiB)",
        full.0, full.1
    );
    for n in 1..=MAX_PODS {
        let t = target(&kubelet, n);
        unpublish(
            &mut client,
            &request_for_pod(&t, &attribute, n).volume_id,
            &t,
        )
        .await;
    }
    drop(plugin.stdin.take());
    let _ = plugin.wait();

    real_server(&values, &attribute).await;
}

/// An unsigned service-account token for `pod`, as the local authenticator reads it.
fn local_token(namespace: &str, pod: &str, uid: &str) -> String {
    use base64::Engine;
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let claims = serde_json::json!({
        "aud": ["runsecrets.io"], "exp": exp, "sub": format!("system:serviceaccount:{namespace}:default"),
        "kubernetes.io": {"namespace": namespace, "pod": {"name": pod, "uid": uid}},
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b64.encode(b"{}"),
        b64.encode(claims.to_string())
    )
}

/// First publishes against the real server: TLS, the node and pod token checks, 10 unseals.
async fn real_server(values: &[(String, Vec<u8>)], attribute: &str) {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let _guard = MountGuard(dir.path().to_path_buf());
    let probe = request_for_pod(Path::new("/x"), attribute, 0);
    let namespace = probe.volume_context[runsecrets::node::POD_NAMESPACE_KEY].clone();
    {
        let store = runsecrets::store::FileStore::open(data.path()).expect("store");
        let keys = runsecrets::secrets::load_or_create_keyring(data.path())
            .expect("keyring")
            .public_keys()
            .expect("keys");
        for (name, value) in values {
            runsecrets::secrets::create(
                &store,
                &keys,
                &namespace,
                name,
                zeroize::Zeroizing::new(value.clone()),
                Default::default(),
                vec![],
            )
            .expect("secret");
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = runsecrets::server::ServerArgs::try_parse_from([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--delivery-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().expect("utf-8"),
    ])
    .expect("server flags");
    let server = runsecrets::server::Server::bind(args)
        .await
        .expect("server");
    let port = server.delivery_addr().expect("delivery").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir_all(&kubelet).expect("kubelet");
    let socket = dir.path().join("csi.sock");
    let mut plugin = spawn_plugin(
        &socket,
        port,
        &data.path().join("tls/ca.crt"),
        &data.path().join("delivery/node-token"),
        &kubelet,
    )
    .await;
    let mut client = NodeClient::new(uds_channel(socket.clone()).await);
    let t = target(&kubelet, 0);
    let mut req = request_for_pod(&t, attribute, 0);
    let (pod, uid) = (
        req.volume_context[runsecrets::node::POD_NAME_KEY].clone(),
        req.volume_context[runsecrets::node::POD_UID_KEY].clone(),
    );
    let tokens = serde_json::json!({"runsecrets.io": {
        "token": local_token(&namespace, &pod, &uid), "expirationTimestamp": "2099-01-01T00:00:00Z"}});
    req.volume_context
        .insert(runsecrets::node::TOKENS_KEY.into(), tokens.to_string());
    let samples = time_publishes(&mut client, &req, &t, None).await;
    report(
        "publish 10 x 4 KiB (first mount), real server",
        samples.first,
    );
    drop(plugin.stdin.take());
    let _ = plugin.wait();
    let _ = stop.send(());
}
