//! The HTTPS server end to end on 127.0.0.1: real TLS, certificate reload by symlink swap,
//! limits, admin endpoints and graceful shutdown.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::binary::ServerProcess;
use common::server::Running;
use common::tls::{connect, h2_post, peer_cert, plain_get, Client};
use common::*;
use runsecrets::server::ServerArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Creates `shop/mysql_root_password`, which the short pod fixture declares, in the store of
/// `data_dir`, as `runsecrets secret create` would.
fn seed(data_dir: &Path) {
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

fn ca(dir: &Path) -> Vec<u8> {
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

/// Lays out a directory the way kubelet writes a Secret volume: files are symlinks through
/// `..data`, which points at a timestamped directory and is swapped by rename.
fn kubelet_write(dir: &Path, generation: &str, cert: &str, key: &str) {
    let target = dir.join(generation);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tls.crt"), cert).unwrap();
    std::fs::write(target.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(generation, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), link).unwrap();
        }
    }
}

fn issue(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    (
        params.signed_by(&key, ca).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// Waits (up to 10 s) for a log line after the first `after` lines that holds every one of
/// `needles`; returns it.
async fn logged_after(server: &ServerProcess, after: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = server.lines();
        if let Some(line) = lines
            .iter()
            .skip(after)
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} after line {after} within 10 s; the log:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server runs as its own process so its log can be read: a broken pair must be seen and
/// refused by a reload tick (its warning), not merely survive a pause in which no tick need
/// have run, and the reloads must go on after it (the next good pair is served).
#[tokio::test]
async fn certificate_rotation_by_symlink_swap_and_broken_pairs_keep_the_old_one() {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let (cert_a, key_a) = issue(&issuer, "first");
    kubelet_write(&secret, "..2026_11_26_a", &cert_a, &key_a);
    let (cert_path, key_path) = (secret.join("tls.crt"), secret.join("tls.key"));
    let server = ServerProcess::server(
        dir.path(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--tls-reload-interval",
            "100ms",
        ],
        &[],
    );
    let webhook = server.serving().webhook;
    assert!(
        !dir.path().join("tls/ca.crt").exists(),
        "no CA generated when a cert is given"
    );

    let der_of = |pem: &str| {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    use rustls::pki_types::pem::PemObject;
    let served = || async { peer_cert(&connect(webhook, ca_pem.as_bytes()).await) };
    let wait_served = |pem: String, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while served().await != der_of(&pem) {
            assert!(Instant::now() < deadline, "{what} not served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = connect(webhook, ca_pem.as_bytes()).await;
    assert_eq!(peer_cert(&first), der_of(&cert_a));
    let mut kept = Client::new(first).await;

    let (cert_b, key_b) = issue(&issuer, "second");
    kubelet_write(&secret, "..2026_11_26_b", &cert_b, &key_b);
    wait_served(cert_b.clone(), "the second certificate").await;
    // A connection made before the swap keeps working.
    assert_eq!(kept.send("GET", "/livez", vec![]).await.0, 200);

    // A broken pair (key of another cert): a reload tick reads it and refuses it, and the
    // last good pair stays.
    let before = server.lines().len();
    kubelet_write(&secret, "..2026_11_26_c", &cert_a, &key_b);
    let refused = logged_after(
        &server,
        before,
        &[
            "TLS certificate reload",
            "failed; keeping the last good state",
            "certificate and key do not form a usable pair",
        ],
    )
    .await;
    assert_eq!(served().await, der_of(&cert_b), "after: {refused}");

    // Reloading goes on: the next good pair is served, and the log says it recovered.
    let before = server.lines().len();
    let (cert_d, key_d) = issue(&issuer, "fourth");
    kubelet_write(&secret, "..2026_11_26_d", &cert_d, &key_d);
    wait_served(cert_d, "the pair after the broken one").await;
    logged_after(&server, before, &["TLS certificate reload", "recovered"]).await;

    let log = server.stop();
    for key in [&key_a, &key_b, &key_d] {
        let body = key.lines().nth(1).expect("a PEM body line");
        assert!(
            !log.iter().any(|l| l.contains(body)),
            "key material in the log"
        );
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_reviews_and_closes_idle_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--shutdown-timeout", "5s"]).await;
    let ca_pem = ca(dir.path());
    let mut idle = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle.send("GET", "/livez", vec![]).await.0, 200);

    // A review whose body is still arriving when SIGTERM comes.
    let body = fixture_bytes("pod-secrets-short.json");
    let mut raw = connect(server.webhook, &ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&body[..100]).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let admin = server.admin;
    let webhook = server.webhook;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        plain_get(admin, "/readyz").await.0,
        503,
        "not ready while draining"
    );
    assert!(
        tokio::net::TcpStream::connect(webhook).await.is_err(),
        "no new connections"
    );

    raw.write_all(&body[100..]).await.unwrap();
    raw.flush().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight review answered: {text:.200}"
    );
    assert!(text.contains("40aac077-793b-487a-ad91-a3dbf7b99656"));

    stopping.await.unwrap().expect("drained in time");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle keep-alive did not hold shutdown"
    );
    assert!(
        idle.try_send("GET", "/livez", vec![]).await.is_none(),
        "idle connection closed"
    );
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &["--shutdown-delay", "800ms"]).await;
    let ca_pem = ca(dir.path());
    let (admin, webhook) = (server.admin, server.webhook);
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        plain_get(admin, "/readyz").await.0,
        503,
        "not ready at once"
    );
    let mut late = Client::open(webhook, &ca_pem).await;
    assert_eq!(
        late.send("GET", "/livez", vec![]).await.0,
        200,
        "still accepting during the delay"
    );
    stopping.await.unwrap().expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(webhook).await.is_err(),
        "stopped listening"
    );
}

#[test]
fn zero_durations_are_refused_at_startup() {
    for flag in [
        "--tls-reload-interval",
        "--request-timeout",
        "--shutdown-timeout",
    ] {
        let e = ServerArgs::try_parse_from(["server", flag, "0s"]).expect_err("zero refused");
        assert!(e.to_string().contains("greater than zero"), "{flag}: {e}");
    }
    assert!(ServerArgs::try_parse_from(["server", "--shutdown-delay", "0s"]).is_ok());
}

/// Sends the headers and the first bytes of a review, so the request stays in flight.
async fn start_review(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let body = fixture_bytes("pod-secrets-short.json");
    let mut raw = connect(addr, ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&body[..100]).await.unwrap();
    raw.flush().await.unwrap();
    raw
}

/// Whether the server has closed the connection: a read sees EOF or an error at once.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_newcomer_evicts_an_idle_connection_but_waits_for_a_busy_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &["--max-connections", "1"]).await;
    let ca_pem = ca(dir.path());
    // An idle kept-alive connection gives up its slot to a new one…
    let mut idle = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle.send("GET", "/livez", vec![]).await.0, 200);
    let mut second = tokio::time::timeout(
        Duration::from_secs(2),
        Client::open(server.webhook, &ca_pem),
    )
    .await
    .expect("an idle connection does not block a new one");
    assert_eq!(second.send("GET", "/livez", vec![]).await.0, 200);
    assert!(
        idle.try_send("GET", "/livez", vec![]).await.is_none(),
        "the idle one was closed"
    );
    drop(second);

    // …but a connection with a request in flight keeps it, and /readyz says why others wait.
    let mut busy = start_review(server.webhook, &ca_pem).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (addr, pem) = (server.webhook, ca_pem.clone());
    let waiting = tokio::spawn(async move { Client::open(addr, &pem).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond --max-connections");
    let (status, text) = plain_get(server.admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(text.contains("webhook listener saturated"), "{text}");
    // The request completes; its connection is idle again and makes room.
    let body = fixture_bytes("pod-secrets-short.json");
    busy.write_all(&body[100..]).await.unwrap();
    let mut answer = vec![0u8; 12];
    busy.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the request ended")
        .expect("task");
    assert_eq!(waited.send("GET", "/livez", vec![]).await.0, 200);
    assert_eq!(plain_get(server.admin, "/readyz").await.0, 200);
    server.stop().await.expect("clean stop");
}

/// Slowloris on the body: every slot holds a request whose body trickles in. A review still
/// gets through once the oldest has been in flight for 2 s, instead of after the 10 s
/// request timeout, and the slow peer loses its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_trickling_bodies_give_way_to_a_review() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--max-connections", "4"]).await;
    let ca_pem = ca(dir.path());
    let mut slow = Vec::new();
    // No request of these began before this instant, so none is 2 s old before 2 s from it.
    let first = Instant::now();
    for _ in 0..4 {
        slow.push(start_review(server.webhook, &ca_pem).await);
    }
    // Their headers are read: all four are in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let mut client = tokio::time::timeout(
        Duration::from_secs(5),
        Client::open(server.webhook, &ca_pem),
    )
    .await
    .expect("a slot within 5 s");
    let (status, body) = client
        .send("POST", "/mutate", fixture_bytes("pod-secrets-short.json"))
        .await;
    let took = asked.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        response(&body, &fixture("pod-secrets-short.json"))["allowed"],
        true
    );
    assert!(
        first.elapsed() >= Duration::from_secs(2),
        "a request younger than 2 s was cut: {:?} after the first began",
        first.elapsed()
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    eprintln!("a review with every slot held by a trickling body: {took:?}");
    assert!(
        closed_by_server(&mut slow[0]).await,
        "the slowest peer kept its connection"
    );
    let metrics = plain_get(server.admin, "/metrics").await.1;
    let line = r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="slow_request"} 1"#;
    assert!(metrics.contains(line), "{line} not in\n{metrics}");
    drop(slow);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_at_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(
        dir.path(),
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    )
    .await;
    let ca_pem = ca(dir.path());
    let started = Instant::now();
    // TCP only, no handshake; a finished handshake and nothing more; a request, then idle
    // over HTTP/1.1 and over HTTP/2.
    // Each check waits from when its own connection's deadline started, so slow set-up on a
    // loaded runner cannot eat the margins.
    let mut silent_tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    let tcp_at = tokio::time::Instant::now();
    let mut silent_tls = connect(server.webhook, &ca_pem).await;
    let tls_at = tokio::time::Instant::now();
    let mut idle_h1 = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle_h1.send("GET", "/livez", vec![]).await.0, 200);
    let (status, _h2_sender, h2) = h2_session(server.webhook, &ca_pem).await;
    assert_eq!(status, 200);
    let h2_at = tokio::time::Instant::now();

    tokio::time::sleep_until(tcp_at + Duration::from_millis(500)).await;
    assert!(
        !closed_by_server(&mut silent_tcp).await,
        "closed before its deadline"
    );
    tokio::time::sleep_until(tls_at + Duration::from_millis(1_600)).await;
    assert!(
        closed_by_server(&mut silent_tcp).await,
        "silent TCP peer still open"
    );
    assert!(
        closed_by_server(&mut silent_tls).await,
        "silent TLS peer still open"
    );
    // Their idle deadlines run from later than tls_at + 2 s.
    assert!(
        !idle_h1.is_closed() && !h2.is_finished(),
        "idle peers closed before the idle deadline"
    );
    tokio::time::sleep_until(h2_at + Duration::from_millis(2_800)).await;
    assert!(
        idle_h1.try_send("GET", "/livez", vec![]).await.is_none(),
        "idle HTTP/1.1 connection still open"
    );
    assert!(h2.is_finished(), "idle HTTP/2 connection still open");
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = plain_get(server.admin, "/metrics").await.1;
    for line in [
        r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="first_request_deadline"} 2"#,
        r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="idle_deadline"} 2"#,
        r#"runsecrets_connections{listener="webhook"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await.expect("clean stop");
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>;

/// One request over a new HTTP/2 connection that is then left open: the status, the sender
/// (the client closes the connection when it is dropped), and the connection's task, which
/// ends when the server closes it.
async fn h2_session(addr: SocketAddr, ca_pem: &[u8]) -> (u16, H2Sender, JoinHandle<()>) {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = common::tls::connector_with_alpn(ca_pem, b"h2")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::builder()
        .uri("https://localhost/livez")
        .body(Full::new(hyper::body::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("answered");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    (status, sender, task)
}

/// Issue 10's check: an idle-connection flood against both TLS listeners does not keep a real
/// review from its answer, and every idle connection is closed by its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_per_listener_do_not_stop_a_review() {
    const FLOOD: usize = 2_000;
    const DEADLINE: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--header-timeout", "4s"]).await;
    let delivery = server.delivery;
    let ca_pem = Arc::new(ca(dir.path()));
    let connector = common::tls::connector(&ca_pem);
    let mut flood = tokio::task::JoinSet::new();
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..2 * FLOOD {
        let addr = if i % 2 == 0 { server.webhook } else { delivery };
        let (connector, opening) = (connector.clone(), opening.clone());
        flood.spawn(async move {
            let _permit = opening.acquire_owned().await;
            let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
            let handshake = async {
                let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                connector.connect(name, tcp).await.ok()
            };
            let stream = tokio::time::timeout(Duration::from_secs(10), handshake)
                .await
                .ok()??;
            Some((Instant::now(), stream))
        });
    }
    let mut idle = Vec::with_capacity(2 * FLOOD);
    while let Some(joined) = flood.join_next().await {
        idle.extend(joined.expect("task"));
    }
    // Every handshake of the flood completed (evicting older idle peers as it went).
    assert_eq!(idle.len(), 2 * FLOOD, "flood connections refused");
    assert_eq!(
        plain_get(server.admin, "/readyz").await.0,
        200,
        "idle peers do not make a replica unready"
    );

    let request = fixture("pod-secrets-short.json");
    let asked = Instant::now();
    let mut client = Client::open(server.webhook, &ca_pem).await;
    let (status, body) = client
        .send(
            "POST",
            "/mutate?timeout=5s",
            fixture_bytes("pod-secrets-short.json"),
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(status, 200);
    assert_eq!(response(&body, &request)["allowed"], true);
    assert!(
        took < Duration::from_secs(1),
        "review answered after {took:?}"
    );
    eprintln!("a review through {FLOOD} idle TLS connections per listener: {took:?}");
    let asked = Instant::now();
    let mut client = Client::open(delivery, &ca_pem).await;
    assert_eq!(client.send("GET", "/livez", vec![]).await.0, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "delivery listener answered after {:?}",
        asked.elapsed()
    );

    // Every flood connection is closed by the server within its deadline (plus the second a
    // closing connection is given).
    let latest = idle.iter().map(|(opened, _)| *opened).max().expect("flood");
    tokio::time::sleep_until((latest + DEADLINE + Duration::from_millis(1_200)).into()).await;
    let mut open = 0;
    for (_, stream) in &mut idle {
        if !closed_by_server(stream).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "flood connections still open after the deadline");
    server.stop().await.expect("clean stop");
}
