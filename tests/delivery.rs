//! The delivery API over real TLS: the embedded server (file store, local authenticator) and
//! the cluster mode (`--store kubernetes --authenticator kubernetes`) against the apiserver
//! stub, whose TokenReviews answer with the real fixture bodies.

mod common;

use std::path::Path;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use clap::Parser;
use common::apiserver::ApiServer;
use common::tls::{plain_get, Client};
use runsecrets::config::ServerArgs;
use runsecrets::delivery::wire::{DeliveryError, PublishResponse, Reason, PUBLISH_PATH};
use runsecrets::server::Server;
use serde_json::json;

const VALUE: &[u8] = b"delivered-over-tls-value";

struct Running {
    delivery: std::net::SocketAddr,
    webhook: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(data_dir: &Path, extra: &[&str]) -> Running {
    common::tls::init_crypto();
    let mut argv = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--delivery-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
    ];
    argv.extend_from_slice(extra);
    let server = Server::bind(ServerArgs::try_parse_from(argv).expect("flags"))
        .await
        .expect("starts");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = Running {
        delivery: server
            .delivery_addr()
            .expect("a store means a delivery listener"),
        webhook: server.webhook_addr(),
        admin: server.admin_addr(),
        _stop: tx,
    };
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    running
}

fn pod_token(namespace: &str, pod: &str, uid: &str, exp_offset: i64) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + exp_offset;
    let payload = json!({
        "aud": ["runsecrets.io"], "exp": exp, "sub": format!("system:serviceaccount:{namespace}:web"),
        "kubernetes.io": {"namespace": namespace, "pod": {"name": pod, "uid": uid}, "serviceaccount": {"name": "web", "uid": "x"}},
    });
    format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload.to_string()))
}

fn request(token: &str, namespace: &str, pod: &str, uid: &str, secrets: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "token": token, "podNamespace": namespace, "podName": pod, "podUid": uid,
        "secrets": secrets, "nodeId": "node-1",
    }))
    .expect("json")
}

#[tokio::test]
async fn embedded_server_delivers_to_the_node_token_holder_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start(dir.path(), &[]).await;
    {
        use runsecrets::secrets;
        let store = runsecrets::store::FileStore::open(dir.path()).expect("store");
        let keys = secrets::load_or_create_keyring(dir.path())
            .expect("ring")
            .public_keys()
            .expect("keys");
        secrets::create(
            &store,
            &keys,
            "shop",
            "db_password",
            zeroize::Zeroizing::new(VALUE.to_vec()),
            Default::default(),
            vec![],
        )
        .expect("created");
    }
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("CA");
    let node_token =
        std::fs::read_to_string(dir.path().join("delivery/node-token")).expect("node token");
    let bearer = format!("Bearer {}", node_token.trim());
    let mut client = Client::open(server.delivery, &ca).await;
    let token = pod_token("shop", "web-0", "uid-0", 600);

    let body = request(&token, "shop", "web-0", "uid-0", &["db_password"]);
    let (status, answer) = client
        .try_send_with(
            "POST",
            PUBLISH_PATH,
            &[("authorization", &bearer)],
            body.clone(),
        )
        .await
        .expect("answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: PublishResponse = serde_json::from_slice(&answer).expect("publish response");
    assert_eq!(
        B64.decode(answer.secrets[0].data.as_bytes()).expect("b64"),
        VALUE
    );

    // Without the node token: 401, and the body says why without echoing anything.
    let (status, answer) = client
        .try_send_with("POST", PUBLISH_PATH, &[], body.clone())
        .await
        .expect("answered");
    assert_eq!(status, 401);
    let error: DeliveryError = serde_json::from_slice(&answer).expect("error body");
    assert_eq!(error.reason, Reason::Unauthenticated);
    // Expired pod token: 403 that says so.
    let expired = request(
        &pod_token("shop", "web-0", "uid-0", -5),
        "shop",
        "web-0",
        "uid-0",
        &["db_password"],
    );
    let (status, answer) = client
        .try_send_with("POST", PUBLISH_PATH, &[("authorization", &bearer)], expired)
        .await
        .expect("answered");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&answer).contains("expired"));
    // A namespace that cannot exist: 400 that says what is wrong with it.
    for namespace in ["Shop", "shop_x", "-shop"] {
        let bad = request(
            &pod_token(namespace, "web-0", "uid-0", 600),
            namespace,
            "web-0",
            "uid-0",
            &["db_password"],
        );
        let (status, answer) = client
            .try_send_with("POST", PUBLISH_PATH, &[("authorization", &bearer)], bad)
            .await
            .expect("answered");
        assert_eq!(status, 400, "{namespace}");
        let error: DeliveryError = serde_json::from_slice(&answer).expect("error body");
        assert_eq!(error.reason, Reason::InvalidRequest);
        assert!(
            error.message.starts_with(&format!(
                "podNamespace: invalid namespace {namespace:?}: use 1-63 of [a-z0-9-]"
            )),
            "{}",
            error.message
        );
    }
    // Not a request at all: 400.
    let (status, _) = client
        .try_send_with(
            "POST",
            PUBLISH_PATH,
            &[("authorization", &bearer)],
            b"{\"token\":1}".to_vec(),
        )
        .await
        .expect("answered");
    assert_eq!(status, 400);
    // The webhook port does not serve deliveries.
    let mut webhook = Client::open(server.webhook, &ca).await;
    let (status, _) = webhook
        .try_send_with("POST", PUBLISH_PATH, &[("authorization", &bearer)], body)
        .await
        .expect("answered");
    assert_eq!(status, 404);

    let (_, metrics) = plain_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("runsecrets_deliveries_total{outcome=\"granted\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("runsecrets_deliveries_total{outcome=\"unauthenticated\"} 1"));
    assert!(metrics.contains("runsecrets_deliveries_total{outcome=\"forbidden\"} 1"));
    assert!(metrics.contains("runsecrets_deliveries_total{outcome=\"invalid_request\"} 4"));
    assert!(!metrics.contains(std::str::from_utf8(VALUE).expect("utf8")));
}

#[tokio::test]
async fn cluster_mode_uses_runsecrets_objects_and_token_reviews() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = api.kubeconfig(dir.path(), "runsecrets");
    // This binary's only test that reads KUBECONFIG; set before any client is built.
    unsafe { std::env::set_var("KUBECONFIG", &kubeconfig) };
    // No --authenticator: a Kubernetes store means TokenReview.
    let server = start(
        dir.path(),
        &[
            "--store",
            "kubernetes",
            "--node-service-account",
            "runsecrets/runsecrets-node",
        ],
    )
    .await;

    // The first replica created the keyring Secret and published the public keys.
    assert!(api
        .get("/api/v1/secrets", "runsecrets", "runsecrets-keyring")
        .is_some());
    // A RunSecret applied the GitOps way (sealed offline with the published keys).
    api.apply_sealed("shop", "mysql_root_password", VALUE);

    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("CA");
    for _ in 0..200 {
        if plain_get(server.admin, "/readyz").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // The webhook's existence check is answered by the watch cache.
    let mut webhook = Client::open(server.webhook, &ca).await;
    let (_, body) = webhook
        .send(
            "POST",
            "/mutate",
            common::fixture_bytes("pod-secrets-short.json"),
        )
        .await;
    let r = common::response(&body, &common::fixture("pod-secrets-short.json"));
    assert_eq!(r["allowed"], true, "{r}");

    // The pod token and the node token are both TokenReviewed (the fixture is pod web-sa of
    // shop/web, which this test also names as the node plugin's account).
    api.review("pod-token", "tokenreview-response-ok.json");
    // The node plugin's own token: a pod-bound token of its service account, on node-1 (where
    // the fixture's pod web-sa runs) or on node-2.
    let node_review = |node: &str| {
        let mut body = common::fixture("tokenreview-response-ok.json");
        body["status"]["user"]["username"] =
            "system:serviceaccount:runsecrets:runsecrets-node".into();
        body["status"]["user"]["extra"]["authentication.kubernetes.io/node-name"] = json!([node]);
        body
    };
    api.review_body("node-token", node_review("node-1"));
    api.review_body("node-2-token", node_review("node-2"));
    // The pod's own token is not a node plugin credential.
    api.review("web-token", "tokenreview-response-ok.json");
    api.review("stale-token", "tokenreview-response-deleted-pod.json");
    let mut client = Client::open(server.delivery, &ca).await;
    let body = request(
        "pod-token",
        "shop",
        "web-sa",
        "a5e3d57f-d0e0-490f-89da-1c15ed2326ba",
        &["mysql_root_password"],
    );
    let auth = [("authorization", "Bearer node-token")];
    let (status, answer) = client
        .try_send_with("POST", PUBLISH_PATH, &auth, body)
        .await
        .expect("answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: PublishResponse = serde_json::from_slice(&answer).expect("publish response");
    assert_eq!(
        B64.decode(answer.secrets[0].data.as_bytes()).expect("b64"),
        VALUE
    );

    // The same token for a pod of the same name but another uid, and a deleted pod's token.
    let other = request(
        "pod-token",
        "shop",
        "web-sa",
        "another-uid",
        &["mysql_root_password"],
    );
    let (status, answer) = client
        .try_send_with("POST", PUBLISH_PATH, &auth, other)
        .await
        .expect("answered");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&answer).contains("belongs to pod shop/web-sa"));
    let stale = request(
        "stale-token",
        "shop",
        "web-sa",
        "a5e3d57f-d0e0-490f-89da-1c15ed2326ba",
        &["mysql_root_password"],
    );
    let (status, answer) = client
        .try_send_with("POST", PUBLISH_PATH, &auth, stale)
        .await
        .expect("answered");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&answer).contains("invalidated"));
    let good = || {
        request(
            "pod-token",
            "shop",
            "web-sa",
            "a5e3d57f-d0e0-490f-89da-1c15ed2326ba",
            &["mysql_root_password"],
        )
    };
    // Callers that are not the node plugin: a stale token, and a valid token of another
    // service account (the pod's own).
    for bearer in ["Bearer stale-token", "Bearer web-token"] {
        let (status, answer) = client
            .try_send_with("POST", PUBLISH_PATH, &[("authorization", bearer)], good())
            .await
            .expect("answered");
        assert_eq!(status, 401, "{bearer}");
        assert!(String::from_utf8_lossy(&answer).contains("not the runsecrets node plugin"));
    }
    // The node plugin of another node: the pod runs on node-1.
    let (status, answer) = client
        .try_send_with(
            "POST",
            PUBLISH_PATH,
            &[("authorization", "Bearer node-2-token")],
            good(),
        )
        .await
        .expect("answered");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&answer).contains("runs on node node-1"));
}
