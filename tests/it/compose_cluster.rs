//! `compose convert --public-keys NS/NAME` seals with the keys the server published in the
//! cluster (read through kubeconfig from the apiserver stub), so the server's keyring opens
//! every converted secret.

use crate::common;

use crate::compose_common;

use base64::Engine;
use common::apiserver::ApiServer;
use runsecrets::seal::Keyring;
use runsecrets::store::kubernetes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_from_the_cluster_seal_what_the_server_opens() {
    let api = ApiServer::start().await;
    let ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    kubernetes::publish_public_keys(
        &api.client("runsecrets"),
        "runsecrets",
        "runsecrets-public-keys",
        &keys,
    )
    .await
    .expect("published");
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = api.kubeconfig(dir.path(), "runsecrets");
    let kubeconfig = kubeconfig.to_str().expect("utf-8").to_string();
    let out = tokio::task::spawn_blocking(move || {
        compose_common::run_in(
            &compose_common::corpus().join("wordpress"),
            &[
                "compose",
                "convert",
                "-n",
                "blog",
                "--public-keys",
                "runsecrets/runsecrets-public-keys",
            ],
            &[("KUBECONFIG", kubeconfig.as_str())],
            None,
        )
    })
    .await
    .expect("ran");
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.assert_no_values();
    let docs = compose_common::documents(&out.stdout);
    let sealed: Vec<_> = docs.iter().filter(|d| d["kind"] == "RunSecret").collect();
    assert_eq!(sealed.len(), 2);
    for doc in sealed {
        let name = doc["spec"]["name"].as_str().expect("name");
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(doc["spec"]["ciphertext"].as_str().expect("ciphertext"))
            .expect("base64");
        let value = runsecrets::seal::open(&ring, "blog", name, &envelope).expect("opens");
        let file = compose_common::corpus().join(format!("wordpress/secrets/{name}.txt"));
        assert_eq!(*value, std::fs::read(file).expect("secret file"));
    }
    assert!(api
        .calls()
        .iter()
        .any(|c| c.contains("configmaps/runsecrets-public-keys")));

    // A ConfigMap that does not exist is a clear error, exit 2, nothing printed.
    let kubeconfig = dir
        .path()
        .join("kubeconfig")
        .to_str()
        .expect("utf-8")
        .to_string();
    let missing = tokio::task::spawn_blocking(move || {
        compose_common::run_in(
            &compose_common::corpus().join("wordpress"),
            &["compose", "convert", "--public-keys", "runsecrets/nope"],
            &[("KUBECONFIG", kubeconfig.as_str())],
            None,
        )
    })
    .await
    .expect("ran");
    assert_eq!((missing.code, missing.stdout.as_str()), (2, ""));
    assert!(
        missing.stderr.contains("loading the sealing keys"),
        "{}",
        missing.stderr
    );
    assert!(
        missing
            .stderr
            .contains("ConfigMap runsecrets/nope does not exist"),
        "{}",
        missing.stderr
    );
}
