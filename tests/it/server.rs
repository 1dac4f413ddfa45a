//! The HTTPS server end to end on 127.0.0.1: reviews over real TLS, bad requests, admission-time
//! grants, admin endpoints and metrics. Certificate reload and connections have files of their
//! own (server_reload.rs, server_connections.rs).

use crate::common;

use std::path::Path;

use common::server::Running;
use common::tls::{h2_post, plain_get, Client};
use common::*;

/// Creates `shop/mysql_root_password`, which the short pod fixture declares, in the store of
/// `data_dir`, as `runsecrets secret create` would.
pub(crate) fn seed(data_dir: &Path) {
    use runsecrets::secrets;
    use runsecrets::store::FileStore;
    let store = FileStore::open(data_dir).expect("store");
    let keys = secrets::load_or_create_keyring(data_dir)
        .expect("keyring")
        .public_keys()
        .expect("keys");
    let data = zeroize::Zeroizing::new(b"root-password-value".to_vec());
    secrets::create(
        &store,
        &keys,
        "shop",
        "mysql_root_password",
        data,
        Default::default(),
        vec![],
    )
    .expect("created");
}

pub(crate) fn ca(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("tls/ca.crt")).expect("generated CA")
}

#[tokio::test]
async fn embedded_default_serves_reviews_over_tls_and_reuses_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &[]).await;
    let ca_pem = ca(dir.path());
    // The embedded store is empty: a pod declaring a secret that does not exist is refused…
    let mut client = Client::open(server.webhook, &ca_pem).await;
    let (_, body) = client
        .send("POST", "/mutate", fixture_bytes("pod-secrets-short.json"))
        .await;
    let r = response(&body, &fixture("pod-secrets-short.json"));
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("runsecrets secret create -n shop mysql_root_password"));
    // …and admitted once `runsecrets secret create` has stored it.
    seed(dir.path());
    let mut client = Client::open(server.webhook, &ca_pem).await;
    let request = fixture("pod-secrets-short.json");
    for _ in 0..3 {
        let (status, body) = client
            .send(
                "POST",
                "/mutate?timeout=5s",
                fixture_bytes("pod-secrets-short.json"),
            )
            .await;
        assert_eq!(status, 200);
        let r = response(&body, &request);
        let (_, pod) = apply(&request, &patch_of(&r).expect("patched"));
        assert!(pod
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "runsecrets"));
    }

    // The keyring's public keys are published for offline sealing.
    let (status, body) = client.send("GET", "/v1/keys", vec![]).await;
    assert_eq!(status, 200);
    let keys: runsecrets::seal::PublicKeys = serde_json::from_slice(&body).expect("public keys");
    let ring = runsecrets::secrets::load_or_create_keyring(dir.path()).expect("keyring");
    assert_eq!(keys, ring.public_keys().expect("keys"));
    assert!(!String::from_utf8_lossy(&body).contains("private"));

    // The apiserver speaks HTTP/2 when it is offered.
    let (status, body) = h2_post(
        server.webhook,
        &ca_pem,
        "/mutate?timeout=5s",
        fixture_bytes("pod-secrets-short.json"),
    )
    .await;
    assert_eq!(status, 200);
    injected_pod(&request, &response(&body, &request));
    server.stop().await.expect("clean stop");

    // A serving certificate close to expiry is reissued from the same CA on the next start.
    let cert_before = std::fs::read(dir.path().join("tls/tls.crt")).unwrap();
    let meta = std::fs::read_to_string(dir.path().join("tls/tls.meta")).unwrap();
    let names = meta.split_once('\n').unwrap().1.to_string();
    std::fs::write(
        dir.path().join("tls/tls.meta"),
        format!("not_after=1000\n{names}"),
    )
    .unwrap();
    let server = Running::start(dir.path(), &[]).await;
    assert_ne!(
        std::fs::read(dir.path().join("tls/tls.crt")).unwrap(),
        cert_before,
        "reissued"
    );
    assert_eq!(ca(dir.path()), ca_pem, "same CA");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("tls/tls.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        key_mode & 0o777,
        0o600,
        "private key readable by its owner only"
    );
    server.stop().await.expect("clean stop");

    // A second start keeps the CA, so clients that trust it keep working.
    let again = Running::start(dir.path(), &["--tls-san", "runsecrets.example.svc"]).await;
    assert_eq!(ca(dir.path()), ca_pem);
    let (status, _) = Client::open(again.webhook, &ca_pem)
        .await
        .send("GET", "/livez", vec![])
        .await;
    assert_eq!(status, 200);
    again.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_requests_get_clear_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &["--max-body-bytes", "65536"]).await;
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    let (status, body) = client.send("POST", "/mutate", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not an AdmissionReview"));
    // Oversized bodies get 413 with the limit, not a reset, and the connection stays usable.
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    for size in [100_000, 8 << 20] {
        let (status, body) = client
            .try_send("POST", "/validate", vec![b' '; size])
            .await
            .unwrap_or_else(|| panic!("{size} bytes: the connection was reset"));
        assert_eq!(status, 413, "oversized body refused");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "the request body is larger than 65536 bytes\n"
        );
    }
    assert_eq!(client.send("GET", "/livez", vec![]).await.0, 200);
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    assert_eq!(
        client
            .send("POST", "/validate/sometimes/baseline", b"{}".to_vec())
            .await
            .0,
        404
    );
    assert_eq!(client.send("GET", "/mutate", vec![]).await.0, 405);
    server.stop().await.expect("clean stop");
}

/// A body with a request and a uid is still not ours to answer when it names another API
/// version or kind: the apiserver only sends `admission.k8s.io/v1` AdmissionReviews.
#[tokio::test]
async fn a_review_of_another_version_or_kind_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &[]).await;
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    let request = fixture("pod-secrets-short.json");
    let cases = [
        ("apiVersion", serde_json::json!("admission.k8s.io/v1beta1")),
        ("apiVersion", serde_json::json!("v1")),
        ("apiVersion", serde_json::Value::Null),
        ("kind", serde_json::json!("Pod")),
        ("kind", serde_json::json!("AdmissionReviewX")),
        ("kind", serde_json::Value::Null),
    ];
    for (field, value) in cases {
        let mut body = request.clone();
        match &value {
            serde_json::Value::Null => {
                body.as_object_mut().expect("object").remove(field);
            }
            v => body[field] = v.clone(),
        }
        for path in ["/mutate", "/validate/enforce/baseline"] {
            let (status, answer) = client
                .send("POST", path, serde_json::to_vec(&body).expect("json"))
                .await;
            let answer = String::from_utf8_lossy(&answer);
            assert_eq!(status, 400, "{field}={value} on {path}: {answer}");
            assert!(
                answer.contains("not an admission.k8s.io/v1 AdmissionReview"),
                "{answer}"
            );
            assert!(!answer.contains("uid"), "no review answer: {answer}");
        }
    }
    // The real review still gets its answer.
    let (status, body) = client
        .send("POST", "/mutate", fixture_bytes("pod-secrets-short.json"))
        .await;
    assert_eq!(status, 200);
    response(&body, &request);
    let (_, metrics) = plain_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("runsecrets_admission_bad_requests_total{endpoint=\"mutate\"} 6"),
        "{metrics}"
    );
    server.stop().await.expect("clean stop");
}

/// A pod whose service account a declared secret is not granted to is refused at admission,
/// with the message the node plugin gives at mount time, instead of being admitted to wait in
/// ContainerCreating; a pod running as a granted account gets its volume.
#[tokio::test]
async fn a_pod_whose_service_account_is_not_granted_is_refused_at_admission() {
    use runsecrets::secrets;
    let dir = tempfile::tempdir().unwrap();
    let store = runsecrets::store::FileStore::open(dir.path()).expect("store");
    let keys = secrets::load_or_create_keyring(dir.path())
        .expect("keyring")
        .public_keys()
        .expect("keys");
    secrets::create(
        &store,
        &keys,
        "shop",
        "mysql_root_password",
        zeroize::Zeroizing::new(b"granted-value".to_vec()),
        Default::default(),
        vec!["db".into(), "migrate".into()],
    )
    .expect("created");
    let server = Running::start(dir.path(), &[]).await;
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    let with_account = |account: Option<&str>| {
        let mut request = fixture("pod-secrets-short.json");
        let spec = request["request"]["object"]["spec"]
            .as_object_mut()
            .expect("spec");
        spec.remove("serviceAccount");
        spec.remove("serviceAccountName");
        if let Some(account) = account {
            spec.insert("serviceAccountName".into(), account.into());
        }
        request
    };
    // The fixture's pod runs as `default`, named or not.
    for request in [fixture("pod-secrets-short.json"), with_account(None)] {
        let (status, body) = client
            .send("POST", "/mutate", serde_json::to_vec(&request).unwrap())
            .await;
        assert_eq!(status, 200);
        let r = response(&body, &request);
        assert_eq!(r["allowed"], false, "{r}");
        assert_eq!(r["status"]["code"], 403);
        assert_eq!(r["status"]["reason"], "Forbidden");
        assert_eq!(
            r["status"]["message"],
            "secret 'mysql_root_password' is only for service accounts db, migrate; the pod runs as default"
        );
        assert!(r.get("patch").is_none());
    }
    let request = with_account(Some("migrate"));
    let (_, body) = client
        .send("POST", "/mutate", serde_json::to_vec(&request).unwrap())
        .await;
    let r = response(&body, &request);
    assert_eq!(r["allowed"], true, "{r}");
    let (_, pod) = apply(&request, &patch_of(&r).expect("patched"));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("migrate"));
    assert!(spec
        .volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.name == "runsecrets"));
    let (_, metrics) = plain_get(server.admin, "/metrics").await;
    assert!(
        metrics.contains("decision=\"deny\",reason=\"not-granted\"} 2"),
        "{metrics}"
    );
    server.stop().await.expect("clean stop");
}

/// A review naming a namespace that cannot exist is the caller's mistake, not the store's: 400
/// saying what is wrong, never 503 "the store cannot be read".
#[tokio::test]
async fn an_invalid_namespace_is_a_bad_request_not_an_unavailable_store() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &[]).await;
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    for namespace in ["Shop_Prod", "../shop", &"a".repeat(64)] {
        let mut request = fixture("pod-secrets-short.json");
        request["request"]["namespace"] = namespace.into();
        let (status, body) = client
            .send("POST", "/mutate", serde_json::to_vec(&request).unwrap())
            .await;
        assert_eq!(status, 200);
        let r = response(&body, &request);
        assert_eq!(r["allowed"], false, "{namespace}");
        assert_eq!(r["status"]["code"], 400, "{namespace}: {r}");
        let message = r["status"]["message"].as_str().expect("message");
        assert!(
            message.starts_with("namespace of the request: invalid namespace ")
                && message.contains(": use 1-63 of [a-z0-9-], alphanumeric at both ends"),
            "{message}"
        );
        assert!(!message.contains("cannot be read"), "{message}");
        // A namespace that could be a name is quoted; `../shop` and 64 characters are not.
        assert_eq!(
            message.contains(&format!("{namespace:?}")),
            namespace == "Shop_Prod",
            "{message}"
        );
    }
    // The same pod in its real namespace is admitted: the store was readable all along.
    let (_, body) = client
        .send("POST", "/mutate", fixture_bytes("pod-secrets-short.json"))
        .await;
    assert_eq!(
        response(&body, &fixture("pod-secrets-short.json"))["allowed"],
        true
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn namespace_level_paths_and_metrics_carry_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &[]).await;
    assert_eq!(plain_get(server.admin, "/readyz").await.0, 200);
    assert_eq!(plain_get(server.admin, "/livez").await.0, 200);
    let mut client = Client::open(server.webhook, &ca(dir.path())).await;
    let request = fixture("pod-env-literals.json");
    let secrets = env_literals(&request);

    let (status, body) = client
        .send(
            "POST",
            "/validate/enforce/baseline",
            fixture_bytes("pod-env-literals.json"),
        )
        .await;
    assert_eq!(status, 200);
    let r = response(&body, &request);
    assert_eq!(r["allowed"], false);
    assert_no_secret(&String::from_utf8_lossy(&body), &secrets, "denial");

    // The defaults (enforce off, warn baseline) allow with warnings.
    let (_, body) = client
        .send("POST", "/validate", fixture_bytes("pod-env-literals.json"))
        .await;
    let r = response(&body, &request);
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"].as_array().is_some_and(|w| w.len() == 10),
        "{r}"
    );

    // `default` in the path takes the level from the server's --default-* flag.
    let (_, body) = client
        .send(
            "POST",
            "/validate/enforce/default",
            fixture_bytes("pod-env-literals.json"),
        )
        .await;
    assert_eq!(
        response(&body, &request)["allowed"],
        true,
        "default enforce is off"
    );
    let strict = Running::start(&dir.path().join("strict"), &["--default-enforce", "strict"]).await;
    let mut strict_client = Client::open(strict.webhook, &ca(&dir.path().join("strict"))).await;
    let (_, body) = strict_client
        .send(
            "POST",
            "/validate/enforce/default",
            fixture_bytes("pod-env-secretref.json"),
        )
        .await;
    let r = response(&body, &fixture("pod-env-secretref.json"));
    assert_eq!(
        r["allowed"], false,
        "strict default refuses secretKeyRef: {r}"
    );
    strict.stop().await.expect("clean stop");

    let (status, metrics) = plain_get(server.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"runsecrets_admission_reviews_total{endpoint="validate",decision="deny",reason="policy"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"runsecrets_admission_reviews_total{endpoint="validate",decision="allow",reason="warned"} 1"#));
    assert!(metrics.contains("runsecrets_admission_review_duration_seconds_bucket{le=\"0.00005\""));
    assert_no_secret(&metrics, &secrets, "metrics");
    server.stop().await.expect("clean stop");
}
