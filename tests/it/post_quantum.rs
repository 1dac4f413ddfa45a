//! Post-quantum sealing through the binary, as an operator moves to it: `keys rotate --kem
//! xwing` on the file store (plain and autolocked) and on the Kubernetes store (the public-key
//! ConfigMap carries the suite), secrets sealed by the CLI and offline with `GET /v1/keys`,
//! the server delivering an X-Wing secret to a node plugin's request, resealing an X25519
//! secret to the X-Wing key, and every log line checked for key material.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::apiserver::ApiServer;
use common::binary::{run_in, Run, ServerProcess};
use common::tls::Client;
use serde_json::{json, Value};

const VALUE: &str = "post-quantum-value-41d9";
/// An envelope's first bytes: `RSE2` and X-Wing's KEM id 0x647A.
const RSE2_XWING: &[u8] = b"RSE2\x64\x7a";
const RSE1: &[u8] = b"RSE1";

/// Whether the base64 envelope of a record's or object's spec starts with `magic`.
#[track_caller]
fn sealed_as(spec: &Value, magic: &[u8]) -> bool {
    STANDARD
        .decode(spec["ciphertext"].as_str().expect("ciphertext"))
        .expect("base64")
        .starts_with(magic)
}

fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    run_in(dir, args, env, stdin)
}

#[track_caller]
fn ok(run: Run) -> Run {
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

fn create(d: &Path, name: &str, env: &[(&str, &str)]) {
    ok(cli(
        d,
        &[
            "secret", "create", "-n", "shop", name, "-", "--store", "file:.",
        ],
        env,
        Some(VALUE),
    ));
}

/// `keys ls` as (id, suite, seals).
fn keys_ls(d: &Path, store: &[&str], env: &[(&str, &str)]) -> Vec<(String, String, bool)> {
    let mut args = vec!["keys", "ls"];
    args.extend_from_slice(store);
    let out = ok(cli(d, &args, env, None));
    out.stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f.get(3) == Some(&"yes"))
        })
        .collect()
}

fn record(d: &Path, name: &str) -> Value {
    let path = d.join(format!("secrets/shop/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("record")).expect("json")
}

/// The private keys of a keyring file (a plain one), as stored.
fn private_keys(d: &Path) -> Vec<String> {
    let value: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("keyring.json")).expect("keyring"))
            .expect("json");
    value["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["private"].as_str().expect("private").to_string())
        .collect()
}

fn server(d: &Path, extra: &[&str]) -> (ServerProcess, SocketAddr, SocketAddr) {
    let process = ServerProcess::server(d, extra, &[]);
    let addrs = process.serving();
    (process, addrs.webhook, addrs.delivery)
}

/// A node plugin's publish of `secrets` for pod shop/web-0: the values delivered, by name.
async fn publish(d: &Path, delivery: SocketAddr, secrets: &[&str]) -> Vec<(String, String)> {
    let (status, body) = common::node_publish(d, delivery, secrets).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).expect("json");
    value["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            let data = STANDARD
                .decode(s["data"].as_str().expect("data"))
                .expect("base64");
            (
                s["name"].as_str().expect("name").to_string(),
                String::from_utf8(data).expect("utf-8"),
            )
        })
        .collect()
}

/// An X25519 store moves to X-Wing: `keys rotate --kem xwing` (and a later plain `keys
/// rotate` keeps X-Wing), new secrets seal in RSE2, `GET /v1/keys` names each key's suite,
/// `seal --key` with that file seals offline and the server admits the manifest; the server
/// delivers both the old X25519 secret and the X-Wing ones, and reseals the old one to X-Wing.
#[tokio::test(flavor = "multi_thread")]
async fn an_x25519_store_moves_to_xwing_and_delivers_both() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    create(d, "db_password", &[]);
    assert!(sealed_as(&record(d, "db_password")["spec"], RSE1));
    let bad = cli(
        d,
        &["keys", "rotate", "--kem", "kyber", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("invalid value 'kyber' for '--kem <KEM>'")
            && bad.stderr.contains("[possible values: x25519, xwing]"),
        "{}",
        bad.stderr
    );
    assert_eq!(keys_ls(d, &["--store", "file:."], &[]).len(), 1);

    let rotated = ok(cli(
        d,
        &["keys", "rotate", "--kem", "xwing", "--store", "file:."],
        &[],
        None,
    ));
    let k2 = rotated.stdout.lines().next().expect("id").to_string();
    assert!(
        rotated
            .stdout
            .contains(&format!("new secrets are sealed with key {k2} (xwing);")),
        "{}",
        rotated.stdout
    );
    ok(cli(d, &["keys", "rotate", "--store", "file:."], &[], None));
    let listed = keys_ls(d, &["--store", "file:."], &[]);
    let suites: Vec<(&str, bool)> = listed.iter().map(|(_, s, y)| (s.as_str(), *y)).collect();
    assert_eq!(
        suites,
        [("x25519", false), ("xwing", false), ("xwing", true)],
        "a rotation without --kem keeps the sealing key's suite"
    );
    assert_eq!(listed[1].0, k2);
    let k3 = listed[2].0.clone();
    create(d, "api_token", &[]);
    let api_token = record(d, "api_token");
    assert_eq!(api_token["spec"]["keyId"], k3.as_str());
    assert!(sealed_as(&api_token["spec"], RSE2_XWING));

    let (process, webhook, delivery) = server(d, &["--key-renew-period", "0"]);
    let ca = std::fs::read(d.join("tls/ca.crt")).expect("CA");
    let mut client = Client::open(webhook, &ca).await;
    let (status, keys) = client.send("GET", "/v1/keys", vec![]).await;
    assert_eq!(status, 200);
    let published: Value = serde_json::from_slice(&keys).expect("json");
    let suites: Vec<&str> = published["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["suite"].as_str().expect("suite"))
        .collect();
    assert_eq!(suites, ["x25519", "xwing", "xwing"]);
    assert_eq!(
        STANDARD
            .decode(published["keys"][2]["bytes"].as_str().expect("bytes"))
            .expect("base64")
            .len(),
        1216
    );

    // Offline: the published file seals, elsewhere, and the server admits the manifest.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let key_file = elsewhere.path().join("keys.json");
    std::fs::write(&key_file, &keys).expect("key file");
    let sealed = ok(cli(
        elsewhere.path(),
        &[
            "seal",
            "-n",
            "shop",
            "tls_key",
            "-",
            "--key",
            key_file.to_str().expect("utf-8"),
        ],
        &[],
        Some(VALUE),
    ));
    sealed.assert_no_values(&[VALUE]);
    let manifest: Value = serde_norway::from_str(&sealed.stdout).expect("manifest");
    assert_eq!(manifest["spec"]["keyId"], k3.as_str());
    assert!(sealed_as(&manifest["spec"], RSE2_XWING));
    assert!(
        !elsewhere.path().join("keyring.json").exists(),
        "sealing needed no keyring"
    );
    let (status, answer) = client
        .send(
            "POST",
            "/validate",
            common::run_secret_review(&manifest, "CREATE", &Value::Null),
        )
        .await;
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(
        (status, &answer["response"]["allowed"]),
        (200, &json!(true))
    );
    // The same manifest naming the X25519 key instead is refused with the suites named.
    let k1 = listed[0].0.as_str();
    let mut envelope = STANDARD
        .decode(manifest["spec"]["ciphertext"].as_str().expect("ciphertext"))
        .expect("base64");
    envelope[10..26].copy_from_slice(k1.as_bytes());
    let mut relabelled = manifest.clone();
    relabelled["spec"]["ciphertext"] = STANDARD.encode(&envelope).into();
    relabelled["spec"]["keyId"] = k1.into();
    relabelled["spec"]["digest"] = runsecrets::store::envelope_digest(&envelope).into();
    let (_, answer) = client
        .send(
            "POST",
            "/validate",
            common::run_secret_review(&relabelled, "CREATE", &Value::Null),
        )
        .await;
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(
        answer["response"]["status"]["message"],
        format!("spec.ciphertext names suite xwing but key {k1} is an x25519 key: it was altered")
    );

    // Delivery: the X25519 secret and the X-Wing one, to a node plugin.
    let delivered = publish(d, delivery, &["db_password", "api_token"]).await;
    assert_eq!(
        delivered,
        [
            ("db_password".to_string(), VALUE.to_string()),
            ("api_token".to_string(), VALUE.to_string())
        ]
    );
    // Reseal moves the X25519 secret to the X-Wing key, through the server.
    let url = format!("https://{delivery}");
    let resealed = ok(cli(
        d,
        &[
            "secret",
            "reseal",
            "-n",
            "shop",
            "--all",
            "--store",
            "file:.",
            "--server",
            &url,
            "--ca",
            "tls/ca.crt",
        ],
        &[],
        None,
    ));
    assert_eq!(resealed.stdout, format!("db_password: {k1} -> {k3}\n"));
    assert!(sealed_as(&record(d, "db_password")["spec"], RSE2_XWING));
    let delivered = publish(d, delivery, &["db_password"]).await;
    assert_eq!(delivered, [("db_password".to_string(), VALUE.to_string())]);

    let lines = process.stop();
    for line in &lines {
        for secret in private_keys(d).iter().map(String::as_str).chain([VALUE]) {
            assert!(!line.contains(secret), "key material in a log line: {line}");
        }
    }
}

/// An autolocked keyring rotates to X-Wing with its unlock key: it stays wrapped (no private
/// key in the file, the key list names the suite) under the same id, and a server unlocked
/// with the key delivers a secret sealed to the X-Wing key.
#[tokio::test(flavor = "multi_thread")]
async fn an_autolocked_keyring_rotates_to_xwing() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    create(d, "db_password", &[]);
    let privates = private_keys(d);
    let protect = ok(cli(
        d,
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    ));
    let unlock_key = protect
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("RSUNLOCK-1-"))
        .expect("unlock key")
        .to_string();
    let read = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("keyring.json")).expect("keyring"))
            .expect("json")
    };
    let id = read()["keyringId"].clone();
    let env = [("RUNSECRETS_UNLOCK_KEY", unlock_key.as_str())];
    ok(cli(
        d,
        &["keys", "rotate", "--kem", "xwing", "--store", "file:."],
        &env,
        None,
    ));
    let wrapped = read();
    assert_eq!(wrapped["keyringId"], id);
    assert_eq!(wrapped["keys"][1]["suite"], "xwing");
    assert_eq!(
        keys_ls(d, &["--store", "file:."], &[])
            .into_iter()
            .map(|(_, s, y)| (s, y))
            .collect::<Vec<_>>(),
        [("x25519".to_string(), false), ("xwing".to_string(), true)]
    );
    create(d, "api_token", &[]);
    assert!(sealed_as(&record(d, "api_token")["spec"], RSE2_XWING));

    let key_file = d.join("unlock");
    std::fs::write(&key_file, &unlock_key).expect("key file");
    let (process, _, delivery) =
        server(d, &["--unlock-key-file", key_file.to_str().expect("utf-8")]);
    process.wait_for(&["unlocked the keyring with --unlock-key-file"]);
    let delivered = publish(d, delivery, &["api_token", "db_password"]).await;
    assert_eq!(
        delivered,
        [
            ("api_token".to_string(), VALUE.to_string()),
            ("db_password".to_string(), VALUE.to_string())
        ]
    );
    let lines = process.stop();

    // Every private key, the X-Wing one included, as the unlock key opens them: none is in
    // the stored file or in any log line.
    use runsecrets::seal::protector::Protector;
    use runsecrets::seal::wrapped::StoredKeyring;
    let text = std::fs::read_to_string(d.join("keyring.json")).expect("keyring");
    let StoredKeyring::Wrapped(stored) = StoredKeyring::parse(&text).expect("parses") else {
        panic!("stored unwrapped");
    };
    let (ring, _) = Protector::Autolock(unlock_key.parse().expect("unlock key"))
        .unwrap(&stored)
        .expect("opens");
    let opened: Value = serde_json::from_str(&ring.to_json().expect("json")).expect("json");
    let mut secrets: Vec<String> = opened["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["private"].as_str().expect("private").to_string())
        .collect();
    assert_eq!(secrets.len(), 2);
    assert_eq!(
        secrets[0], privates[0],
        "the X25519 key is the one protected"
    );
    secrets.push(unlock_key[11..].to_string());
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "key material in the file");
    }
    for line in lines {
        for secret in secrets.iter().map(String::as_str).chain([VALUE]) {
            assert!(!line.contains(secret), "key material in a log line: {line}");
        }
    }
}

/// With `--store kubernetes`, `keys rotate --kem xwing` updates the keyring Secret and the
/// public-key ConfigMap, which names each key's suite; `keys ls` reads it, and `secret create`
/// seals with the X-Wing key from it.
#[test]
fn the_public_key_configmap_names_the_suite() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(ApiServer::start());
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let kubeconfig = server.kubeconfig(d, "default");
    let ring = runsecrets::seal::Keyring::generate();
    server.put(
        "/api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "runsecrets-keyring", "namespace": "runsecrets"},
               "data": {"keyring.json": STANDARD.encode(ring.to_json().expect("json").as_bytes())}}),
    );
    let kube = [("KUBECONFIG", kubeconfig.to_str().expect("utf-8"))];
    let store = ["--store", "kubernetes"];
    let rotated = ok(cli(
        d,
        &["keys", "rotate", "--kem", "xwing", "--store", "kubernetes"],
        &kube,
        None,
    ));
    let id = rotated.stdout.lines().next().expect("id").to_string();
    let cm = server
        .get("/api/v1/configmaps", "runsecrets", "runsecrets-public-keys")
        .expect("ConfigMap");
    let published: Value =
        serde_json::from_str(cm["data"]["keys.json"].as_str().expect("keys.json")).expect("json");
    assert_eq!(published["keys"][0]["suite"], "x25519");
    assert_eq!(published["keys"][1]["suite"], "xwing");
    assert_eq!(published["keys"][1]["id"], id.as_str());
    assert_eq!(
        keys_ls(d, &store, &kube)
            .into_iter()
            .map(|(_, s, y)| (s, y))
            .collect::<Vec<_>>(),
        [("x25519".to_string(), false), ("xwing".to_string(), true)]
    );
    ok(cli(
        d,
        &[
            "secret",
            "create",
            "--store",
            "kubernetes",
            "-n",
            "shop",
            "db_password",
            "-",
        ],
        &kube,
        Some(VALUE),
    ));
    let object = server
        .all("/apis/runsecrets.io/v1/runsecrets")
        .into_iter()
        .next()
        .expect("a RunSecret");
    assert_eq!(object["spec"]["keyId"], id.as_str());
    assert!(sealed_as(&object["spec"], RSE2_XWING));
    // The stored keyring opens it.
    let secret = server
        .get("/api/v1/secrets", "runsecrets", "runsecrets-keyring")
        .expect("Secret");
    let text = STANDARD
        .decode(secret["data"]["keyring.json"].as_str().expect("keyring"))
        .expect("base64");
    let ring = runsecrets::seal::Keyring::from_json(std::str::from_utf8(&text).expect("utf-8"))
        .expect("keyring");
    let spec: runsecrets::store::RunSecret = serde_json::from_value(object).expect("RunSecret");
    let record = runsecrets::store::kubernetes::record_of(&spec).expect("ours");
    assert_eq!(
        record
            .unseal(&ring, "shop", "db_password")
            .expect("opens")
            .as_slice(),
        VALUE.as_bytes()
    );
    drop(rt);
}
