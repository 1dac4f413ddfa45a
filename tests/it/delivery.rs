//! The delivery API over real TLS: the embedded server (file store, local authenticator) and
//! the cluster mode (`--store kubernetes --authenticator kubernetes`) against the apiserver
//! stub, whose TokenReviews answer with the real fixture bodies.

use crate::common;

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::apiserver::ApiServer;
use common::binary::ServerProcess;
use common::server::Running;
use common::tls::{plain_get, Client};
use runsecrets::delivery::wire::{DeliveryError, PublishResponse, Reason, PUBLISH_PATH};
use serde_json::json;

const VALUE: &[u8] = b"delivered-over-tls-value";

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
    let server = Running::start(dir.path(), &[]).await;
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
    let token = common::pod_token("shop", "web-0", "uid-0", 600);

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
        &common::pod_token("shop", "web-0", "uid-0", -5),
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
            &common::pod_token(namespace, "web-0", "uid-0", 600),
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

/// A publish body over 64 KiB is answered 413 with the reason, whether its size is announced
/// (Content-Length) or not (chunked), over HTTP/1.1 and HTTP/2; the connection stays usable, so
/// the client reads the answer instead of a connection reset.
#[tokio::test]
async fn oversized_bodies_get_413_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tmp");
    let server = Running::start(dir.path(), &[]).await;
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("CA");
    let node_token =
        std::fs::read_to_string(dir.path().join("delivery/node-token")).expect("node token");
    let bearer = format!("Bearer {}", node_token.trim());
    let oversized = |size: usize| {
        let token = "x".repeat(size);
        request(&token, "shop", "web-0", "uid-0", &["db_password"])
    };
    let too_large = |status: u16, body: &[u8]| {
        assert_eq!(status, 413, "{}", String::from_utf8_lossy(body));
        let error: DeliveryError = serde_json::from_slice(body).expect("error body");
        assert_eq!(error.reason, Reason::InvalidRequest);
        assert_eq!(error.message, "the request body is larger than 65536 bytes");
    };

    let mut client = Client::open(server.delivery, &ca).await;
    for size in [65_537, 1 << 20, 8 << 20] {
        let (status, body) = client
            .try_send_with(
                "POST",
                PUBLISH_PATH,
                &[("authorization", &bearer)],
                oversized(size),
            )
            .await
            .unwrap_or_else(|| panic!("{size} bytes: the connection was reset"));
        too_large(status, &body);
    }
    // The same connection still answers.
    let (status, _) = client
        .try_send_with(
            "POST",
            PUBLISH_PATH,
            &[("authorization", &bearer)],
            oversized(10),
        )
        .await
        .expect("still connected");
    assert_eq!(status, 403, "a small body is judged");

    // Chunked, no Content-Length: 1 MiB in 8 KiB chunks.
    let mut stream = common::tls::connect(server.delivery, &ca).await;
    let head = format!(
        "POST {PUBLISH_PATH} HTTP/1.1\r\nhost: localhost\r\nauthorization: {bearer}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'x'; 8192];
    for _ in 0..128 {
        stream.write_all(b"2000\r\n").await.expect("chunk size");
        stream.write_all(&chunk).await.expect("chunk");
        stream.write_all(b"\r\n").await.expect("chunk end");
    }
    stream.write_all(b"0\r\n\r\n").await.expect("last chunk");
    let mut answer = vec![0u8; 4096];
    let n = stream
        .read(&mut answer)
        .await
        .expect("the answer, not a reset");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    too_large(
        413,
        answer.split("\r\n\r\n").nth(1).expect("body").as_bytes(),
    );

    // HTTP/2, as a client that negotiates it would send it.
    let (status, body) =
        common::tls::h2_post(server.delivery, &ca, PUBLISH_PATH, oversized(1 << 20)).await;
    too_large(status, &body);
}

#[tokio::test]
async fn cluster_mode_uses_runsecrets_objects_and_token_reviews() {
    if common::own_process::rerun_alone(
        "delivery::cluster_mode_uses_runsecrets_objects_and_token_reviews",
    ) {
        return;
    }
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = api.kubeconfig(dir.path(), "runsecrets");
    // Alone in this process (above); set before any client is built.
    std::env::set_var("KUBECONFIG", &kubeconfig);
    // No --authenticator: a Kubernetes store means TokenReview.
    let server = Running::start(
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
    server.ready().await;
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

/// The real binary, so the log lines are exactly what `main`'s subscriber writes; the review
/// line is a debug line (its uid is the caller's).
fn binary(dir: &Path, format: &str) -> ServerProcess {
    let dir = dir.to_str().expect("utf-8");
    let mut args = vec!["--log-format", format, "server", "--data-dir", dir];
    args.extend_from_slice(&common::binary::LOOPBACK_LISTENERS);
    ServerProcess::start(
        &args,
        &[("RUST_LOG", "info,runsecrets::server::routes=debug")],
    )
}

/// `key=value` and `key="escaped value"` pairs, as a logfmt consumer reads them.
fn logfmt(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ' ')).collect();
        if key.is_empty() {
            return pairs;
        }
        assert_eq!(
            chars.next(),
            Some('='),
            "{key} is not key=value in {text:?}"
        );
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next().expect("the quoted value ends") {
                    '"' => break,
                    '\\' => match chars.next().expect("escape") {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'u' => {
                            let hex: String =
                                chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex");
                            value.push(char::from_u32(code).expect("char"));
                        }
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ' ')).collect();
        }
        pairs.push((key, value));
    }
}

/// Requests whose caller-controlled fields hold newlines, terminal escapes and text that looks
/// like another log line or another field; returns them with the webhook and delivery ports.
async fn hostile_requests(dir: &Path, webhook: &str, delivery: &str) {
    let ca = std::fs::read(dir.join("tls/ca.crt")).expect("CA");
    let node_token = std::fs::read_to_string(dir.join("delivery/node-token")).expect("token");
    let bearer = format!("Bearer {}", node_token.trim());
    let mut client = Client::open(delivery.parse().expect("addr"), &ca).await;
    let forged = "web-0\n2026-11-29T00:00:00.000000Z  INFO runsecrets::audit: secret delivery decision=granted";
    let body = serde_json::to_vec(&json!({
        "token": common::pod_token("shop", "web-0", "uid-0", 600), "podNamespace": "shop",
        "podName": forged, "podUid": "uid-0\r\u{1b}[2K", "secrets": ["db_password"],
        "nodeId": "node-1\u{2028}decision=granted",
    }))
    .expect("json");
    let (status, _) = client
        .try_send_with("POST", PUBLISH_PATH, &[("authorization", &bearer)], body)
        .await
        .expect("answered");
    // Refused for its shape before any token is reviewed, and audited all the same.
    assert_eq!(status, 400);
    let mut review = common::fixture("pod-secrets-short.json");
    review["request"]["uid"] = "u-1\nFAKE line decision=granted \u{1b}[31m".into();
    let mut webhook = Client::open(webhook.parse().expect("addr"), &ca).await;
    let (status, _) = webhook
        .send(
            "POST",
            "/mutate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
    assert_eq!(status, 200);
}

/// Every line the text format writes is one event, and every field of the audit line reads
/// back as what was logged, whatever the caller put into podName, podUid or nodeId.
#[tokio::test]
async fn text_log_lines_escape_every_caller_controlled_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = binary(dir.path(), "text");
    let serving = server.wait_for(&["serving", "delivery"]);
    let fields = logfmt(serving.split_once(" serving ").expect("serving line").1);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .expect(name)
            .1
            .clone()
    };
    hostile_requests(dir.path(), &field("webhook"), &field("delivery")).await;
    let lines = server.stop();
    let event = regex_lite_event();
    for line in &lines {
        assert!(
            event(line),
            "a line that is not an event: {line:?}\n{lines:#?}"
        );
    }
    let audit: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" runsecrets::audit: "))
        .collect();
    assert_eq!(audit.len(), 1, "{lines:#?}");
    let rest = audit[0]
        .split_once(" runsecrets::audit: secret delivery ")
        .expect("the audit message")
        .1;
    let pairs = logfmt(rest);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["node", "pod", "uid", "secrets", "decision", "reason", "detail"],
        "{rest}"
    );
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .expect(name)
            .1
            .as_str()
    };
    assert_eq!(get("decision"), "denied");
    assert_eq!(
        get("pod"),
        "shop/web-0?2026-11-29T00:00:00.000000Z  INFO runsecrets::audit: secret delivery decision=granted"
    );
    assert_eq!(get("uid"), "uid-0??[2K");
    // A line separator is not a control character: escaped on the line, read back intact.
    assert_eq!(get("node"), "node-1\u{2028}decision=granted");
    assert!(!audit[0].contains('\u{2028}') && audit[0].contains("\\u{2028}"));
    assert!(
        get("detail").starts_with("podName is not a pod name"),
        "{}",
        get("detail")
    );
    let review = lines
        .iter()
        .find(|l| l.contains(" review ") && l.contains("endpoint=mutate"))
        .expect("the review line");
    let pairs = logfmt(review.split_once(" review ").expect("message").1);
    assert_eq!(
        pairs[0],
        (
            "uid".to_string(),
            "u-1\nFAKE line decision=granted \u{1b}[31m".to_string()
        )
    );
}

/// Lines that start as the text format starts every event: time, level, target.
fn regex_lite_event() -> impl Fn(&str) -> bool {
    |line: &str| {
        let mut parts = line.split_whitespace();
        let time = parts.next().unwrap_or_default();
        let level = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        time.len() >= 20
            && time.as_bytes()[4] == b'-'
            && time.ends_with('Z')
            && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
            && target.starts_with("runsecrets")
            && target.ends_with(':')
    }
}

/// The JSON format: one object per line, each field intact, and the audit line's own message
/// not overwritten by the refusal's text.
#[tokio::test]
async fn json_log_lines_keep_every_field_intact() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = binary(dir.path(), "json");
    let serving: serde_json::Value =
        serde_json::from_str(&server.wait_for(&["serving", "delivery"])).expect("JSON line");
    let addr = |name: &str| serving["fields"][name].as_str().expect(name).to_string();
    hostile_requests(dir.path(), &addr("webhook"), &addr("delivery")).await;
    let lines = server.stop();
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let audit: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "runsecrets::audit")
        .collect();
    assert_eq!(audit.len(), 1);
    let fields = &audit[0]["fields"];
    assert_eq!(fields["message"], "secret delivery", "{fields}");
    assert_eq!(fields["decision"], "denied");
    assert_eq!(fields["uid"], "uid-0??[2K");
    assert!(fields["detail"]
        .as_str()
        .is_some_and(|d| d.starts_with("podName is not a pod name")));
    let review = events
        .iter()
        .find(|e| e["fields"]["message"] == "review")
        .expect("the review line");
    assert_eq!(
        review["fields"]["uid"],
        "u-1\nFAKE line decision=granted \u{1b}[31m"
    );
}
