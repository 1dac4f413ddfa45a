//! Fuzzing the delivery request body: what `POST /v1/publish` reads before and while it checks
//! who is asking. Seeds are the request the node plugin builds from kubelet's real volume
//! context (`csi-volume-context.json`), with the captured token and with a live one. Never a
//! panic; a body that is not a request is refused by position and category only; the shape
//! checks quote nothing but valid secret names; no token or secret value in any message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::auth::LocalAuthenticator;
use super::*;
use crate::corpus::{self, CANARY};
use crate::seal::Keyring;

const VALUE: &[u8] = b"fuzzed-delivery-value-Zq9Canary";

#[derive(Default)]
struct Memory(Mutex<HashMap<(String, String), SecretRecord>>);

impl SecretLookup for Memory {
    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let map = self.0.lock().expect("lock");
        Ok(map.get(&(namespace.into(), name.into())).cloned())
    }
}

/// A delivery service with the local authenticator and `mysql_root_password` in `shop`.
struct Service {
    _dir: tempfile::TempDir,
    delivery: Delivery,
    node_token: String,
    runtime: tokio::runtime::Runtime,
}

fn service() -> Service {
    let dir = tempfile::tempdir().expect("tmp");
    let local = LocalAuthenticator::load_or_create(dir.path()).expect("node token");
    let node_token = std::fs::read_to_string(auth::node_token_path(dir.path()))
        .expect("token file")
        .trim()
        .to_string();
    let ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    let memory = Memory::default();
    for (ns, name) in [
        ("shop", "mysql_root_password"),
        ("shop", "tls_key"),
        ("bank", "vault_key"),
    ] {
        let record = SecretRecord::seal(&keys, ns, name, VALUE, BTreeMap::new(), Vec::new())
            .expect("sealed");
        memory
            .0
            .lock()
            .expect("lock")
            .insert((ns.into(), name.into()), record);
    }
    Service {
        _dir: dir,
        delivery: Delivery {
            auth: Arc::new(local),
            secrets: Arc::new(memory),
            keyring: Arc::new(crate::seal::LiveKeyring::open(ring, None).expect("keyring")),
        },
        node_token,
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    }
}

/// The captured kubelet volume context, as the node plugin turns it into a request; and the
/// same with a live (unsigned, local-mode) token carrying the canary in an unread claim.
fn seeds() -> Vec<Value> {
    let context: Value =
        serde_json::from_slice(&corpus::fixture_bytes("csi-volume-context.json")).expect("json");
    let field = |k: &str| context[k].as_str().unwrap_or_default().to_string();
    let tokens: Value =
        serde_json::from_str(&field("csi.storage.k8s.io/serviceAccount.tokens")).expect("json");
    let captured = tokens["runsecrets.io"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let (namespace, pod, uid) = (
        field("csi.storage.k8s.io/pod.namespace"),
        field("csi.storage.k8s.io/pod.name"),
        field("csi.storage.k8s.io/pod.uid"),
    );
    let claims = json!({
        "aud": ["runsecrets.io"], "exp": auth::now_unix() + 3600, "iat": auth::now_unix(),
        "sub": format!("system:serviceaccount:{namespace}:web"), "jti": CANARY,
        "kubernetes.io": {"namespace": namespace, "pod": {"name": pod, "uid": uid},
            "node": {"name": "node-1", "uid": "n"}, "serviceaccount": {"name": "web", "uid": "s"}},
    });
    let live = format!(
        "{}.{}.{CANARY}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let request = |token: &str, secrets: &[&str]| {
        json!({"token": token, "podNamespace": namespace, "podName": pod, "podUid": uid,
            "secrets": secrets, "nodeId": "node-1"})
    };
    vec![
        request(&captured, &[field("runsecrets.io/secrets").as_str()]),
        request(&live, &["mysql_root_password"]),
        request(
            &live,
            &["mysql_root_password", "tls_key", "vault_key", "missing"],
        ),
    ]
}

/// What a refusal may say: bounded, one line, no token, no canary, no secret value.
fn check_message(e: &DeliveryError, token: &str) -> Result<(), TestCaseError> {
    let m = &e.message;
    prop_assert!(!corpus::shows_canary(m), "{}", m);
    prop_assert!(
        token.len() < 16 || !m.contains(token),
        "the token is in: {}",
        m
    );
    Ok(())
}

/// Reads `body` as the route does, applies the shape checks, and publishes what passes them.
fn check(service: &Service, body: &[u8]) -> Result<u64, TestCaseError> {
    let request = match PublishRequest::from_body(body) {
        Ok(r) => r,
        Err(e) => {
            let m = &e.message;
            let ok = m.starts_with("the body is not a publish request (line ")
                && ["Io)", "Syntax)", "Data)", "Eof)"]
                    .iter()
                    .any(|c| m.ends_with(c))
                && m.len() <= 80;
            prop_assert!(ok, "{}", m);
            prop_assert_eq!(e.reason, Reason::InvalidRequest);
            return Ok(1);
        }
    };
    let token = request.token.to_string();
    if let Err(e) = check_request(&request) {
        check_message(&e, &token)?;
        prop_assert!(
            e.message.len() <= 256 && !e.message.contains('\n'),
            "{}",
            e.message
        );
        return Ok(2);
    }
    let answer = service
        .runtime
        .block_on(service.delivery.publish(&service.node_token, request));
    match answer {
        Ok(granted) => {
            prop_assert!(!granted.secrets.is_empty());
        }
        Err(e) => check_message(&e, &token)?,
    }
    Ok(3)
}

#[test]
fn mutated_request_bytes() {
    let service = service();
    let bytes: Vec<Vec<u8>> = seeds()
        .iter()
        .map(|s| serde_json::to_vec(s).expect("json"))
        .collect();
    corpus::run(
        "delivery: byte mutations",
        512,
        corpus::mutated_bytes(bytes),
        |body| check(&service, &body),
    );
}

#[test]
fn mutated_request_json() {
    let service = service();
    corpus::run(
        "delivery: JSON mutations",
        512,
        corpus::mutated_json(seeds()),
        |doc| {
            let body = serde_json::to_vec(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check(&service, &body)
        },
    );
}

#[test]
fn arbitrary_request_bytes() {
    let service = service();
    corpus::run(
        "delivery: arbitrary bytes",
        512,
        corpus::arbitrary_bytes(),
        |body| check(&service, &body),
    );
}

#[test]
fn the_seeds_reach_every_stage() {
    let service = service();
    let outcomes: Vec<Result<usize, String>> = seeds()
        .iter()
        .map(|seed| {
            let request = PublishRequest::from_body(&serde_json::to_vec(seed).expect("json"))
                .map_err(|e| e.message)?;
            check_request(&request).map_err(|e| e.message)?;
            let answer = service
                .runtime
                .block_on(service.delivery.publish(&service.node_token, request));
            answer.map(|a| a.secrets.len()).map_err(|e| e.message)
        })
        .collect();
    assert!(
        matches!(&outcomes[0], Err(m) if m.contains("expired")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Ok(1));
    assert!(
        matches!(&outcomes[2], Err(m) if m.contains("'vault_key' does not exist")),
        "{outcomes:?}"
    );
}
