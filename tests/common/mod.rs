//! Shared test helpers: the real apiserver fixtures, patch application, and a TLS client.
//! Each test binary (tests/it, tests/node, tests/chart) includes this directory with
//! `#[path = "../common/mod.rs"] mod common;`.
#![allow(dead_code)]

pub mod apiserver;
pub mod binary;
pub mod fixtures;
pub mod legacy_layout;
pub mod node;
pub mod own_process;
pub mod server;
pub mod tls;

// Not every binary uses all three.
#[allow(unused_imports)]
pub use fixtures::{fixture, fixture_bytes, review_fixtures};

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// The `response` of an answered review, after checking the envelope.
pub fn response(body: &[u8], request: &Value) -> Value {
    let review: Value = serde_json::from_slice(body).expect("response is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = review["response"].clone();
    assert_eq!(response["uid"], request["request"]["uid"], "uid echoed");
    response
}

/// Decodes the base64 JSON patch of a response, if any.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let encoded = response
        .get("patch")?
        .as_str()
        .expect("patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is base64");
    Some(serde_json::from_slice(&raw).expect("patch is a JSON patch"))
}

/// Applies the patch to the request's object, as the apiserver does, and reads it as a Pod.
pub fn apply(request: &Value, patch: &json_patch::Patch) -> (Value, Pod) {
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, patch).expect("patch applies to the request object");
    let pod: Pod = serde_json::from_value(object.clone()).expect("patched object is a Pod");
    (object, pod)
}

/// Applies an allowed response's patch as the apiserver does and checks what the user sees in
/// the pod: exactly one read-only `runsecrets.io` CSI volume, mounted at `/run/secrets`.
#[track_caller]
pub fn injected_pod(request: &Value, response: &Value) -> (Value, Pod) {
    assert_eq!(response["allowed"], true, "{response}");
    let patch = patch_of(response).unwrap_or_else(|| panic!("no patch in {response}"));
    let (object, pod) = apply(request, &patch);
    let spec = pod.spec.as_ref().expect("spec");
    let ours: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.csi.as_ref().is_some_and(|c| c.driver == "runsecrets.io"))
        .collect();
    assert_eq!(ours.len(), 1, "exactly one runsecrets.io volume: {object}");
    assert_eq!(ours[0].csi.as_ref().and_then(|c| c.read_only), Some(true));
    let mounted = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .any(|m| m.name == ours[0].name && m.mount_path == "/run/secrets");
    assert!(
        mounted,
        "no container mounts the volume at /run/secrets: {object}"
    );
    (object, pod)
}

/// The request with its object replaced (e.g. to repost a patched pod).
pub fn with_object(request: &Value, object: Value) -> Vec<u8> {
    let mut r = request.clone();
    r["request"]["object"] = object;
    serde_json::to_vec(&r).expect("serialises")
}

/// Every env literal in a fixture's objects: the strings no answer may contain.
pub fn env_literals(review: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["object", "oldObject"] {
        collect_env(&review["request"][key], &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn collect_env(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(env)) = map.get("env") {
                for var in env {
                    if let Some(s) = var["value"].as_str() {
                        if s.len() >= 6 && !s.starts_with("/run/secrets") && !s.starts_with("$(") {
                            out.push(s.to_string());
                        }
                    }
                }
            }
            map.values().for_each(|v| collect_env(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_env(v, out)),
        _ => {}
    }
}

/// Asserts that none of `secrets` appears in `text`.
pub fn assert_no_secret(text: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} contains a secret value");
        // JSON escaping can split a multi-line value; check its longest line too.
        if let Some(line) = s.lines().max_by_key(|l| l.len()).filter(|l| l.len() >= 12) {
            assert!(
                !text.contains(line),
                "{what} contains part of a secret value"
            );
        }
    }
}

/// A service-account token as kubelet passes it to the node plugin, for the local
/// authenticator, which reads its claims without verifying them (service account `web`;
/// expiring `exp_offset` seconds from now).
pub fn pod_token(namespace: &str, pod: &str, uid: &str, exp_offset: i64) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + exp_offset;
    let payload = serde_json::json!({
        "aud": ["runsecrets.io"], "exp": exp, "sub": format!("system:serviceaccount:{namespace}:web"),
        "kubernetes.io": {"namespace": namespace, "pod": {"name": pod, "uid": uid}, "serviceaccount": {"name": "web", "uid": "x"}},
    });
    format!(
        "e30.{}.sig",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

/// An AdmissionReview of a RunSecret in shop, as the apiserver sends it for `kubectl apply` of
/// `runsecrets seal`'s output; `old` is the stored object an UPDATE carries (`null` otherwise).
pub fn run_secret_review(object: &Value, operation: &str, old: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "rs-1", "kind": {"group": "runsecrets.io", "version": "v1", "kind": "RunSecret"},
            "resource": {"group": "runsecrets.io", "version": "v1", "resource": "runsecrets"},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": operation,
            "userInfo": {"username": "dev"}, "object": object, "oldObject": old, "dryRun": false,
        }
    }))
    .expect("json")
}

/// A node plugin's publish of `secrets` for pod shop/web-0 to the delivery listener of the
/// server whose data directory is `dir` (its CA and node token): the status and the body.
pub async fn node_publish(
    dir: &std::path::Path,
    delivery: std::net::SocketAddr,
    secrets: &[&str],
) -> (u16, String) {
    let ca = std::fs::read(dir.join("tls/ca.crt")).expect("CA");
    let node = std::fs::read_to_string(dir.join("delivery/node-token")).expect("node token");
    let body = serde_json::json!({"token": pod_token("shop", "web-0", "uid-0", 600),
        "podNamespace": "shop", "podName": "web-0", "podUid": "uid-0", "secrets": secrets,
        "nodeId": "node-1"});
    let mut client = tls::Client::open(delivery, &ca).await;
    let bearer = format!("Bearer {}", node.trim());
    let (status, body) = client
        .try_send_with(
            "POST",
            "/v1/publish",
            &[("authorization", &bearer)],
            body.to_string().into_bytes(),
        )
        .await
        .expect("answered");
    (status, String::from_utf8_lossy(&body).into_owned())
}
