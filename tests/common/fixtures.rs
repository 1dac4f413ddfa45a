//! The bodies captured from a real kube-apiserver and kubelet, in `tests/fixtures/cluster/`
//! (how each was made is in its README). The one loader for every reader of them: the
//! integration tests (through `common`), the benches and the library's fuzz corpus include this
//! file with `#[path]`, since those are separate crates.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `tests/fixtures/cluster` in this checkout.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster")
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).expect("fixture is JSON")
}

/// Every AdmissionReview fixture (the files whose top-level kind is AdmissionReview and that
/// carry a request), by name.
pub fn review_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let out: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .map(|n| {
            let bytes = fixture_bytes(&n);
            (n, bytes)
        })
        .filter(|(_, b)| {
            serde_json::from_slice::<Value>(b)
                .is_ok_and(|v| v["kind"] == "AdmissionReview" && v["request"].is_object())
        })
        .collect();
    assert!(
        out.len() >= 10,
        "expected the apiserver fixtures, found {}",
        out.len()
    );
    out
}
