//! The Kubernetes backend against a local HTTPS apiserver stub: the CLI's store, the keyring
//! Secret, the public-key ConfigMap, the watch-backed catalogue, `rm`'s in-use check, `rotate`
//! moving a Deployment's reference, and TokenReview with the real response bodies.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::apiserver::ApiServer;
use common::binary::{run_in, ServerProcess};
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

const RUNSECRETS: &str = "/apis/runsecrets.io/v1/runsecrets";
const VALUE: &[u8] = b"k8s-backend-plaintext-never-stored";

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

async fn wait(mut ok: impl FnMut() -> bool) {
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

/// `runsecrets server --store kubernetes` as a process, with `KUBECONFIG` pointing at the stub.
fn cluster_server(
    dir: &std::path::Path,
    kubeconfig: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> ServerProcess {
    let mut args = vec!["--store", "kubernetes"];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("KUBECONFIG", kubeconfig.to_str().expect("utf-8")));
    ServerProcess::server(dir, &args, &env)
}

/// `runsecrets secret create --store kubernetes -n shop NAME -` through the stub; exit code and
/// standard error.
fn cli_create(kubeconfig: &std::path::Path, name: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["secret", "create", "--store", "kubernetes", "-n", "shop"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[name, "-"]);
    let dir = kubeconfig.parent().expect("a directory");
    let env = [("KUBECONFIG", kubeconfig.to_str().expect("utf-8"))];
    let out = run_in(dir, &args, &env, Some("cli-value"));
    (out.code, out.stderr)
}

/// Waits (at most 30 s) until the server has published its public keys in `namespace`.
fn wait_for_keys(server: &ApiServer, namespace: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server
        .get("/api/v1/configmaps", namespace, "runsecrets-public-keys")
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no public keys in {namespace}: {:#?}",
            server.calls()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Started by hand outside a cluster, the server keeps its keyring and public keys in
/// `runsecrets` (not the kubeconfig's namespace), where the CLI looks by default; `--namespace`
/// and `POD_NAMESPACE` move them, and the CLI then says where it looked and how to point it.
#[test]
fn the_server_and_the_cli_agree_on_where_the_public_keys_are() {
    let (_rt, server) = stub();
    let dir = tempfile::tempdir().expect("tmp");
    // The kubeconfig's context namespace is `default`, as after `kind create cluster`.
    let kubeconfig = server.kubeconfig(dir.path(), "default");

    let running = cluster_server(&dir.path().join("a"), &kubeconfig, &[], &[]);
    wait_for_keys(&server, "runsecrets");
    assert!(server
        .get("/api/v1/secrets", "runsecrets", "runsecrets-keyring")
        .is_some());
    assert!(server
        .get("/api/v1/secrets", "default", "runsecrets-keyring")
        .is_none());
    let (code, stderr) = cli_create(&kubeconfig, "db_password", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(server
        .get(
            RUNSECRETS,
            "shop",
            &runsecrets::store::object_name("db_password")
        )
        .is_some());
    drop(running);

    // Another namespace, by flag and by POD_NAMESPACE (the chart's downward API).
    let (_rt2, other) = stub();
    let kubeconfig = other.kubeconfig(dir.path(), "default");
    let running = cluster_server(
        &dir.path().join("b"),
        &kubeconfig,
        &["--namespace", "platform"],
        &[],
    );
    wait_for_keys(&other, "platform");
    drop(running);
    let running = cluster_server(
        &dir.path().join("c"),
        &kubeconfig,
        &[],
        &[("POD_NAMESPACE", "secrets-system")],
    );
    wait_for_keys(&other, "secrets-system");
    drop(running);
    assert!(other
        .get("/api/v1/configmaps", "runsecrets", "runsecrets-public-keys")
        .is_none());

    let (code, stderr) = cli_create(&kubeconfig, "db_password", &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "Error: reading the public-key ConfigMap: ConfigMap runsecrets/runsecrets-public-keys \
         does not exist. `runsecrets server --store kubernetes` writes its public keys to the \
         ConfigMap --public-keys-configmap (default runsecrets-public-keys) in its --namespace \
         (env POD_NAMESPACE; in a cluster its own namespace, outside one `runsecrets`); point \
         the CLI at it with --public-keys NAMESPACE/NAME (env RUNSECRETS_PUBLIC_KEYS)\n"
    );
    let (code, stderr) = cli_create(
        &kubeconfig,
        "db_password",
        &["--public-keys", "platform/runsecrets-public-keys"],
    );
    assert_eq!(code, 0, "{stderr}");
}

/// The watch cache knows each RunSecret's service accounts, so the webhook refuses a pod that
/// runs as another account with the node plugin's own message, without an API call.
#[tokio::test]
async fn the_catalogue_carries_the_grants_the_webhook_checks() {
    use runsecrets::admission::{review_with, Context, Endpoint};
    let server = ApiServer::start().await;
    let keys = Keyring::generate().public_keys().expect("keys");
    let record = SecretRecord::seal(
        &keys,
        "shop",
        "mysql_root_password",
        VALUE,
        BTreeMap::new(),
        vec!["web".into()],
    )
    .expect("sealed");
    server.put(
        RUNSECRETS,
        serde_json::to_value(kubernetes::resource_of(&record)).expect("json"),
    );
    let catalogue = KubeCatalogue::start(server.client("runsecrets"));
    wait(|| catalogue.ready()).await;
    let before = server.calls().len();
    let context = Context {
        catalogue: Some(&*catalogue),
        ..Context::default()
    };
    let mut request: serde_json::Value =
        serde_json::from_slice(&common::fixture_bytes("pod-secrets-short.json")).expect("fixture");
    let answer = |request: &serde_json::Value| {
        let body = serde_json::to_vec(request).expect("json");
        let answer = review_with(Endpoint::Mutate, context, &body).expect("answered");
        common::response(&answer.body, request)
    };
    let r = answer(&request);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"],
        "secret 'mysql_root_password' is only for service accounts web; the pod runs as default"
    );
    request["request"]["object"]["spec"]["serviceAccountName"] = "web".into();
    request["request"]["object"]["spec"]["serviceAccount"] = "web".into();
    let r = answer(&request);
    assert_eq!(r["allowed"], true, "{r}");
    let (_, pod) = common::apply(&request, &common::patch_of(&r).expect("patched"));
    assert!(pod
        .spec
        .expect("spec")
        .volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.name == "runsecrets"));
    assert_eq!(server.calls().len(), before, "answered from the cache");
}

/// `keys protect --store kubernetes` wraps the keyring Secret in place (an update at the
/// version it read), removing the plaintext; the server then starts locked, still publishes
/// the public keys, and never writes the Secret back unwrapped.
#[test]
fn the_keyring_secret_is_protected_in_place() {
    use base64::Engine;
    let (rt, server) = stub();
    let client = {
        let _in_runtime = rt.enter();
        server.client("runsecrets")
    };
    let plain = rt
        .block_on(kubernetes::ensure_keyring(
            &client,
            "runsecrets",
            "runsecrets-keyring",
            None,
        ))
        .expect("created");
    let stored = |server: &ApiServer| {
        let secret = server
            .get("/api/v1/secrets", "runsecrets", "runsecrets-keyring")
            .expect("Secret");
        let text = base64::engine::general_purpose::STANDARD
            .decode(
                secret["data"]["keyring.json"]
                    .as_str()
                    .expect("keyring.json"),
            )
            .expect("base64");
        (secret, String::from_utf8(text).expect("utf-8"))
    };
    let (before, text) = stored(&server);
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    let privates: Vec<String> = value["keys"]
        .as_array()
        .expect("plain")
        .iter()
        .map(|k| k["private"].as_str().expect("private").to_string())
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = server.kubeconfig(dir.path(), "default");
    let kubeconfig = kubeconfig.to_str().expect("utf-8");
    let protect = || {
        common::binary::run_in(
            dir.path(),
            &["keys", "protect", "--autolock", "--store", "kubernetes"],
            &[("KUBECONFIG", kubeconfig)],
            None,
        )
    };
    let out = protect();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("in Secret runsecrets/runsecrets-keyring: wrapped by an unlock key"),
        "{}",
        out.stdout
    );
    let key = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("RSUNLOCK-1-"))
        .expect("the unlock key")
        .to_string();
    let (after, text) = stored(&server);
    assert_eq!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "updated, not recreated"
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    for private in &privates {
        assert!(
            !text.contains(private.as_str()),
            "a private key in the Secret"
        );
    }
    assert!(server
        .calls()
        .iter()
        .any(|c| c.starts_with("PUT /api/v1/namespaces/runsecrets/secrets/runsecrets-keyring")));

    let again = protect();
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.starts_with(
            "Error: protecting the keyring Secret runsecrets/runsecrets-keyring: keyring "
        ) && again
            .stderr
            .ends_with("is already protected (autolock); nothing was changed\n"),
        "{}",
        again.stderr
    );

    // What a replica loads: locked, the same public keys; the unlock key opens it.
    let loaded = rt
        .block_on(kubernetes::ensure_keyring(
            &client,
            "runsecrets",
            "runsecrets-keyring",
            None,
        ))
        .expect("loads");
    assert!(
        matches!(loaded, runsecrets::store::keyring::Loaded::Locked(_)),
        "{loaded:?}"
    );
    assert_eq!(
        loaded.public_keys().expect("keys"),
        plain.public_keys().expect("keys")
    );
    let live = loaded.into_live().expect("live");
    let unlock: runsecrets::seal::protector::UnlockKey = key.parse().expect("key");
    assert!(live.unlock(&unlock).expect("unlocks"));
    assert!(!live.is_locked());

    // The server starts on it (locked), publishes the public keys, leaves the Secret as is.
    let running = cluster_server(
        &dir.path().join("server"),
        std::path::Path::new(kubeconfig),
        &[],
        &[],
    );
    wait_for_keys(&server, "runsecrets");
    drop(running);
    let (unchanged, _) = stored(&server);
    assert_eq!(
        unchanged["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
}

/// Two (here three) replicas renewing at the same moment make one key: each reads the Secret,
/// adds a key and updates at the version it read; the apiserver refuses the stale updates,
/// and the losers read the winner's keyring, find a fresh key and stop.
#[test]
fn replicas_renewing_at_once_make_one_key() {
    use base64::Engine;
    use runsecrets::store::keyring::KeyringPlace;
    use runsecrets::store::rotation::Opener;
    let (rt, server) = stub();
    // A keyring whose only key is from 2020: renewal is due everywhere.
    let ring = Keyring::generate();
    let mut value: serde_json::Value =
        serde_json::from_str(&ring.to_json().expect("json")).expect("json");
    value["keys"][0]["created"] = "2020-01-01T00:00:00Z".into();
    let text = base64::engine::general_purpose::STANDARD.encode(value.to_string());
    server.put(
        "/api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "runsecrets-keyring", "namespace": "runsecrets"},
               "data": {"keyring.json": text}}),
    );
    let place = |_: usize| {
        let _in_runtime = rt.enter();
        KeyringPlace::Secret {
            client: server.client("runsecrets"),
            namespace: "runsecrets".into(),
            name: "runsecrets-keyring".into(),
        }
    };
    let (a, b, c) = (place(0), place(1), place(2));
    // All three read the old keyring before any writes: the worst case, every time.
    server.gate_reads("runsecrets-keyring", 3);
    let month = Duration::from_secs(30 * 86_400);
    let (ra, rb, rc) = rt.block_on(async {
        tokio::join!(
            a.rotate(&Opener::Plain, month, None),
            b.rotate(&Opener::Plain, month, None),
            c.rotate(&Opener::Plain, month, None)
        )
    });
    let results = [ra.expect("a"), rb.expect("b"), rc.expect("c")];
    assert_eq!(
        results.iter().filter(|r| r.written).count(),
        1,
        "one replica wrote"
    );
    let keys: Vec<_> = results
        .iter()
        .map(|r| r.ring.public_keys().expect("keys"))
        .collect();
    assert!(
        keys.iter().all(|k| k.keys.len() == 2 && *k == keys[0]),
        "all see the same two keys"
    );
    assert_eq!(server.puts(), 1, "one update went through");
    let tried = server
        .calls()
        .iter()
        .filter(|c| c.starts_with("PUT /api/v1/namespaces/runsecrets/secrets/runsecrets-keyring"))
        .count();
    assert!(
        tried >= 2,
        "the others' stale updates were refused ({tried} PUTs)"
    );
    // Later: nothing is due, nobody writes.
    let again = rt
        .block_on(a.rotate(&Opener::Plain, month, None))
        .expect("rotate");
    assert!(!again.written);
    assert_eq!(server.puts(), 1);
}
