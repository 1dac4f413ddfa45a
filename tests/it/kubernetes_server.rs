//! The server and the CLI as processes on the Kubernetes backend, against the local HTTPS
//! apiserver stub: where the public keys are published and found, the grants the webhook checks,
//! the keyring Secret protected in place, and replicas renewing the key at once.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::apiserver::ApiServer;
use common::binary::{run_in, ServerProcess};
use runsecrets::seal::Keyring;
use runsecrets::store::catalogue::Catalogue;
use runsecrets::store::kubernetes::{self, KubeCatalogue};
use runsecrets::store::SecretRecord;
use serde_json::json;

use crate::kubernetes::{stub, wait, RUNSECRETS, VALUE};

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
