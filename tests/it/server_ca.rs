//! `--tls-ca-secret` and `--publish-ca-to` against the stub apiserver: the first replica makes
//! the CA in a Secret, a second one reuses it, both serve certificates that chain to it, and the
//! CA lands in every webhook's caBundle and in the node plugins' ConfigMap.

use crate::common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Parser;
use common::apiserver::ApiServer;
use runsecrets::server::Server;
use runsecrets::server::ServerArgs;
use rustls::pki_types::ServerName;
use serde_json::json;

const SERVICE: &str = "runsecrets-webhook.runsecrets.svc";

async fn replica(
    data: &std::path::Path,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let argv = [
        "server", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
        "--delivery-listen", "127.0.0.1:0", "--data-dir", data.to_str().expect("utf-8"),
        "--store", "none", "--tls-ca-secret", "runsecrets-ca", "--tls-san", SERVICE,
        "--publish-ca-to",
        "mutatingwebhookconfiguration/runsecrets,validatingwebhookconfiguration/runsecrets,configmap/runsecrets-ca",
    ];
    let server = Server::bind(ServerArgs::try_parse_from(argv).expect("flags"))
        .await
        .expect("starts");
    let addr = server.webhook_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Completes a TLS handshake for the Service's name, trusting only `ca`.
async fn handshake(addr: std::net::SocketAddr, ca: &[u8]) -> Result<(), std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    common::tls::connector(ca)
        .connect(ServerName::try_from(SERVICE).expect("name"), tcp)
        .await
        .map(|_| ())
}

fn webhook(name: &str) -> serde_json::Value {
    json!({"name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"service": {"name": "runsecrets-webhook", "namespace": "runsecrets", "path": "/mutate"}}})
}

#[tokio::test]
async fn replicas_share_one_ca_and_publish_it_to_the_webhooks_and_the_node_plugins() {
    if common::own_process::rerun_alone(
        "server_ca::replicas_share_one_ca_and_publish_it_to_the_webhooks_and_the_node_plugins",
    ) {
        return;
    }
    common::tls::init_crypto();
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = api.kubeconfig(dir.path(), "runsecrets");
    // Alone in this process (above); set before any client is built.
    std::env::set_var("KUBECONFIG", &kubeconfig);
    let admission = "/apis/admissionregistration.k8s.io/v1";

    // As after `helm install`: the server starts before the webhook configurations exist.
    let (first, _stop1) = replica(&dir.path().join("one")).await;
    let secret = api
        .get("/api/v1/secrets", "runsecrets", "runsecrets-ca")
        .expect("CA Secret");
    let ca = B64
        .decode(secret["data"]["ca.crt"].as_str().expect("ca.crt"))
        .expect("base64");
    assert!(secret["data"]["ca.key"].is_string());
    handshake(first, &ca)
        .await
        .expect("the first replica's certificate chains to the CA");
    // The ConfigMap does not wait for the webhooks.
    let mut cm = None;
    for _ in 0..50 {
        cm = api.get("/api/v1/configmaps", "runsecrets", "runsecrets-ca");
        if cm.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cm = cm.expect("CA ConfigMap published while the webhooks do not exist yet");
    assert_eq!(
        cm["data"]["ca.crt"].as_str().expect("ca.crt").as_bytes(),
        &ca[..]
    );

    api.put(
        &format!("{admission}/mutatingwebhookconfigurations"),
        json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "runsecrets"}, "webhooks": [webhook("mutate.runsecrets.io")]}),
    );
    api.put(&format!("{admission}/validatingwebhookconfigurations"), json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "runsecrets"},
        "webhooks": [webhook("enforce-baseline.runsecrets.io"), webhook("warn-default.runsecrets.io")]}));
    // Retried within seconds, not at the next minute.
    let bundle = B64.encode(&ca);
    let mutating_path = format!("{admission}/mutatingwebhookconfigurations");
    for _ in 0..100 {
        let m = api.get(&mutating_path, "", "runsecrets").expect("mutating");
        if m["webhooks"][0]["clientConfig"]["caBundle"] == bundle.as_str() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let (second, _stop2) = replica(&dir.path().join("two")).await;
    let again = api
        .get("/api/v1/secrets", "runsecrets", "runsecrets-ca")
        .expect("CA Secret");
    assert_eq!(
        again["metadata"]["resourceVersion"], secret["metadata"]["resourceVersion"],
        "not recreated"
    );
    handshake(second, &ca)
        .await
        .expect("the second replica's certificate chains to the same CA");
    // A client that trusts another CA does not accept it.
    let (other, _) = runsecrets::server::tls::new_ca().expect("ca");
    assert!(handshake(second, other.as_bytes()).await.is_err());

    let mutating = api
        .get(
            &format!("{admission}/mutatingwebhookconfigurations"),
            "",
            "runsecrets",
        )
        .expect("mutating");
    assert_eq!(
        mutating["webhooks"][0]["clientConfig"]["caBundle"],
        bundle.as_str()
    );
    assert_eq!(
        mutating["webhooks"][0]["clientConfig"]["service"]["path"], "/mutate",
        "merged, not replaced"
    );
    let validating = api
        .get(
            &format!("{admission}/validatingwebhookconfigurations"),
            "",
            "runsecrets",
        )
        .expect("validating");
    for w in validating["webhooks"].as_array().expect("webhooks") {
        assert_eq!(
            w["clientConfig"]["caBundle"],
            bundle.as_str(),
            "{}",
            w["name"]
        );
    }
    let cm = api
        .get("/api/v1/configmaps", "runsecrets", "runsecrets-ca")
        .expect("CA ConfigMap");
    assert_eq!(
        cm["data"]["ca.crt"].as_str().expect("ca.crt").as_bytes(),
        &ca[..]
    );
    assert!(!cm.to_string().contains("PRIVATE KEY"));
    let patches = api
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("PATCH"))
        .count();
    assert_eq!(
        patches, 2,
        "the second replica found the bundles already set"
    );
}

#[test]
fn ca_flags_are_checked() {
    let base = ["server", "--tls-ca-secret", "ca"];
    assert!(
        ServerArgs::try_parse_from(base.iter().chain(&["--publish-ca-to", "configmap/x"])).is_ok()
    );
    assert!(
        ServerArgs::try_parse_from(base.iter().chain(&["--publish-ca-to", "secret/x"])).is_err()
    );
    assert!(
        ServerArgs::try_parse_from(base.iter().chain(&["--tls-cert", "a", "--tls-key", "b"]))
            .is_err()
    );
    assert!(
        ServerArgs::try_parse_from(["server", "--publish-ca-to", "configmap/x"]).is_err(),
        "needs --tls-ca-secret"
    );
}
