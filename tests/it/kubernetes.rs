//! The Kubernetes backend against a local HTTPS apiserver stub: the CLI's store, the keyring
//! Secret, the public-key ConfigMap, the watch-backed catalogue, `rm`'s in-use check, `rotate`
//! moving a Deployment's reference, and TokenReview with the real response bodies. The server
//! and CLI as processes on this backend are in kubernetes_server.rs.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::apiserver::ApiServer;
use runsecrets::delivery::auth::{AuthError, Authenticator};
use runsecrets::delivery::tokenreview::TokenReviewer;
use runsecrets::delivery::SecretLookup;
use runsecrets::seal::Keyring;
use runsecrets::secrets::{self, Cluster, WorkloadRef};
use runsecrets::store::catalogue::{Catalogue, Presence};
use runsecrets::store::kubernetes::{self, KubeCatalogue, KubeStore};
use runsecrets::store::{SecretRecord, Store, StoreError};
use serde_json::json;
use zeroize::Zeroizing;

pub(crate) const RUNSECRETS: &str = "/apis/runsecrets.io/v1/runsecrets";
pub(crate) const VALUE: &[u8] = b"k8s-backend-plaintext-never-stored";

/// A stub apiserver on its own runtime (kept alive by the caller).
pub(crate) fn stub() -> (tokio::runtime::Runtime, ApiServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(ApiServer::start());
    (rt, server)
}

/// The Kubernetes store of namespace shop against the stub.
pub(crate) fn store(server: &ApiServer) -> KubeStore {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt.block_on(async { server.client("shop") });
    KubeStore::with_client(rt, client)
}

#[test]
fn create_ls_inspect_unseal_rm_through_runsecret_objects() {
    let (_rt, server) = stub();
    let store = store(&server);
    let ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    let labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let id = secrets::create(
        &store,
        &keys,
        "shop",
        "mysql_root_password",
        Zeroizing::new(VALUE.to_vec()),
        labels,
        vec!["web".into()],
    )
    .expect("created");

    // The object is a RunSecret under the derived name, holding no plaintext.
    let object = server
        .get(
            RUNSECRETS,
            "shop",
            &runsecrets::store::object_name("mysql_root_password"),
        )
        .expect("stored as a RunSecret");
    assert_eq!(object["spec"]["name"], "mysql_root_password");
    assert_eq!(object["spec"]["serviceAccounts"], json!(["web"]));
    let text = object.to_string();
    assert!(!text.contains(std::str::from_utf8(VALUE).expect("utf8")));

    let table = secrets::ls(&store, "shop", &[], &secrets::LsFormat::Table).expect("ls");
    assert!(
        table.contains(&id) && table.contains("mysql_root_password"),
        "{table}"
    );
    let inspected =
        secrets::inspect(&store, "shop", &["mysql_root_password".into()], false).expect("inspect");
    assert!(inspected.contains("\"env\": \"prod\"") && !inspected.contains("ciphertext"));
    let record = store
        .get("shop", "mysql_root_password")
        .expect("get")
        .expect("found");
    assert_eq!(record.id, id, "the id is the same from every backend");
    assert_eq!(
        &record
            .unseal(&ring, &record.namespace, &record.name)
            .expect("opens")[..],
        VALUE
    );

    let again = secrets::create(
        &store,
        &keys,
        "shop",
        "mysql_root_password",
        Zeroizing::new(b"x".to_vec()),
        BTreeMap::new(),
        vec![],
    );
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.get("bank", "mysql_root_password").expect("get"),
        None,
        "namespaced"
    );

    let out = secrets::rm(&store, &store, "shop", &["mysql_root_password".into()]).expect("rm");
    assert_eq!(out, "mysql_root_password\n");
    assert!(server.all(RUNSECRETS).is_empty());
    assert!(matches!(
        secrets::rm(&store, &store, "shop", &["mysql_root_password".into()]),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn rm_is_refused_while_a_pod_declares_it_and_rotate_moves_a_deployment() {
    let (_rt, server) = stub();
    let store = store(&server);
    let ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    secrets::create(
        &store,
        &keys,
        "shop",
        "db_password",
        Zeroizing::new(VALUE.to_vec()),
        BTreeMap::new(),
        vec![],
    )
    .expect("created");
    let pod = |name: &str, annotation: &str, phase: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "annotations": {"runsecrets.io/secrets": annotation}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}, "status": {"phase": phase},
        })
    };
    server.put("/api/v1/pods", pod("web-0", "db_password", "Running"));
    server.put("/api/v1/pods", pod("done-0", "db_password", "Succeeded"));
    server.put("/api/v1/pods", pod("other", "tls_key", "Running"));
    let err = secrets::rm(&store, &store, "shop", &["db_password".into()]).expect_err("in use");
    assert_eq!(
        err.to_string(),
        "secret 'db_password' is in use by the following pods: web-0"
    );
    assert_eq!(server.all(RUNSECRETS).len(), 1, "nothing removed");

    server.put("/apis/apps/v1/deployments", json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {"runsecrets.io/secrets": "db_password"}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
    }));
    let workload: WorkloadRef = "deployment/web".parse().expect("workload");
    let done = secrets::rotate(
        &store,
        &store,
        &keys,
        "shop",
        "db_password",
        Zeroizing::new(b"v2".to_vec()),
        Some(&workload),
    )
    .expect("rotated");
    assert_eq!(done.name, "db_password.v2");
    let deployment = server
        .get("/apis/apps/v1/deployments", "shop", "web")
        .expect("deployment");
    let annotation = deployment["spec"]["template"]["metadata"]["annotations"]
        ["runsecrets.io/secrets"]
        .as_str()
        .expect("annotation");
    assert_eq!(
        annotation,
        "source=db_password.v2,target=db_password,uid=0,gid=0,mode=0444"
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app"], "web",
        "merge patch keeps the rest"
    );
    let calls = server.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("PATCH /apis/apps/v1/namespaces/shop/deployments/web")),
        "{calls:?}"
    );
    assert_eq!(
        store
            .template_secrets("shop", &workload)
            .expect("read")
            .as_deref(),
        Some(annotation)
    );
}

#[tokio::test]
async fn the_keyring_is_created_once_and_the_public_keys_are_published() {
    let (_rt, server) = ((), ApiServer::start().await);
    let client = server.client("runsecrets");
    let first = kubernetes::ensure_keyring(&client, "runsecrets", "runsecrets-keyring", None)
        .await
        .expect("created");
    let second = kubernetes::ensure_keyring(&client, "runsecrets", "runsecrets-keyring", None)
        .await
        .expect("read back");
    assert_eq!(
        first.public_keys().expect("keys"),
        second.public_keys().expect("keys"),
        "a second replica reads the first one's keyring"
    );
    let secret = server
        .get("/api/v1/secrets", "runsecrets", "runsecrets-keyring")
        .expect("Secret");
    assert_eq!(secret["type"], "Opaque");
    assert!(secret["data"]["keyring.json"].is_string());

    let keys = first.public_keys().expect("keys");
    kubernetes::publish_public_keys(&client, "runsecrets", "runsecrets-public-keys", &keys)
        .await
        .expect("published");
    kubernetes::publish_public_keys(&client, "runsecrets", "runsecrets-public-keys", &keys)
        .await
        .expect("idempotent");
    let cm = server
        .get("/api/v1/configmaps", "runsecrets", "runsecrets-public-keys")
        .expect("ConfigMap");
    let published: runsecrets::seal::PublicKeys =
        serde_json::from_str(cm["data"]["keys.json"].as_str().expect("keys.json")).expect("keys");
    assert_eq!(published, keys);
    assert!(!cm.to_string().contains("private"));
}

/// A damaged keyring Secret gets the same one message as a damaged keyring file: which
/// Secret, and where its JSON breaks, never its content and never "sealing".
#[tokio::test]
async fn a_damaged_keyring_secret_is_reported_once() {
    use base64::Engine;
    let server = ApiServer::start().await;
    let client = server.client("runsecrets");
    let secret = |data: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "runsecrets-keyring", "namespace": "runsecrets"}, "data": data})
    };
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    for (data, cause) in [
        (
            json!({"keyring.json": b64("{\"keys\": [{\"id\": \"5f0c")}),
            "it is not a runsecrets keyring (truncated JSON at line 1 column 22)",
        ),
        (
            json!({"keyring.json": b64("{\"keys\": []}")}),
            "the keyring holds no key",
        ),
        (
            json!({"other": b64("x")}),
            "it is not a runsecrets keyring (it has no keyring.json)",
        ),
    ] {
        server.put("/api/v1/secrets", secret(data));
        let e = kubernetes::ensure_keyring(&client, "runsecrets", "runsecrets-keyring", None)
            .await
            .expect_err("damaged");
        assert_eq!(
            runsecrets::error::Chain(&e).to_string(),
            format!("loading the keyring Secret runsecrets/runsecrets-keyring: {cause}")
        );
    }
}

#[tokio::test]
async fn the_catalogue_follows_the_watch_without_calls_on_lookup() {
    let server = ApiServer::start().await;
    let ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    let add = |ns: &str, name: &str| {
        let record =
            SecretRecord::seal(&keys, ns, name, VALUE, BTreeMap::new(), vec![]).expect("sealed");
        let object = serde_json::to_value(kubernetes::resource_of(&record)).expect("json");
        server.put(RUNSECRETS, object);
    };
    add("shop", "db_password");
    let catalogue = KubeCatalogue::start(server.client("runsecrets"));
    wait(|| catalogue.ready()).await;
    assert!(matches!(
        catalogue.presence("shop", "db_password"),
        Presence::Present(_)
    ));
    assert_eq!(catalogue.presence("bank", "db_password"), Presence::Absent);
    assert_eq!(catalogue.presence("shop", "tls_key"), Presence::Absent);

    let before = server.calls().len();
    let record = catalogue
        .lookup("shop", "db_password")
        .expect("lookup")
        .expect("found");
    assert_eq!(
        &record
            .unseal(&ring, &record.namespace, &record.name)
            .expect("opens")[..],
        VALUE
    );
    assert_eq!(
        server.calls().len(),
        before,
        "lookups are answered from the cache"
    );

    add("shop", "tls_key");
    wait(|| matches!(catalogue.presence("shop", "tls_key"), Presence::Present(_))).await;
}

pub(crate) async fn wait(mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test]
async fn token_reviews_use_the_real_response_bodies() {
    let server = ApiServer::start().await;
    server.review("pod-token", "tokenreview-response-ok.json");
    server.review("old-token", "tokenreview-response-deleted-pod.json");
    server.review("other-aud", "tokenreview-response-wrong-audience.json");
    server.review("node-token", "tokenreview-response-ok.json");
    let reviewer = TokenReviewer::new(
        server.client("runsecrets"),
        "runsecrets/runsecrets-node".into(),
    );
    let identity = reviewer.review("pod-token").await.expect("authenticated");
    assert_eq!(identity.account(), "shop/web");
    assert_eq!(identity.pod.expect("bound").name, "web-sa");
    assert_eq!(
        reviewer.review("old-token").await,
        Err(AuthError::Invalidated)
    );
    assert_eq!(
        reviewer.review("other-aud").await,
        Err(AuthError::WrongAudience)
    );
    assert!(matches!(
        reviewer.review("garbage").await,
        Err(AuthError::Invalid(_))
    ));
    assert_eq!(reviewer.review("").await, Err(AuthError::Missing));
    // A valid token of another service account is not the node plugin.
    let err = reviewer
        .node("node-token")
        .await
        .expect_err("shop/web is not the node plugin");
    assert!(
        err.to_string()
            .contains("shop/web is not the node plugin's (runsecrets/runsecrets-node)"),
        "{err}"
    );
    // An accepted node-plugin token is remembered: every publish carries it, one review suffices.
    let mut node_body = common::fixture("tokenreview-response-ok.json");
    node_body["status"]["user"]["username"] =
        "system:serviceaccount:runsecrets:runsecrets-node".into();
    server.review_body("plugin-token", node_body);
    let reviews = |s: &ApiServer| {
        s.calls()
            .iter()
            .filter(|c| c.contains("tokenreviews"))
            .count()
    };
    let before = reviews(&server);
    for _ in 0..3 {
        let node = reviewer
            .node("plugin-token")
            .await
            .expect("the node plugin");
        assert_eq!(
            node.as_deref(),
            Some("node-1"),
            "the node its token is bound to"
        );
    }
    assert_eq!(reviews(&server), before + 1, "reviewed once, then cached");
    let sent = server.calls();
    assert!(
        sent.iter()
            .all(|c| c == "POST /apis/authentication.k8s.io/v1/tokenreviews?"
                || c == "POST /apis/authentication.k8s.io/v1/tokenreviews"),
        "{sent:?}"
    );
}
