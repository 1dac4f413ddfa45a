use std::collections::BTreeMap;

use super::*;
use crate::seal::Keyring;

const VALUE: &[u8] = b"s3cr3t-Value-that-must-never-be-on-disk";

fn record(ring: &Keyring, ns: &str, name: &str) -> SecretRecord {
    let keys = ring.public_keys().expect("public keys");
    SecretRecord::seal(&keys, ns, name, VALUE, BTreeMap::new(), vec![]).expect("seals")
}

fn tree_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(tree_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).expect("file"));
        }
    }
    out
}

#[test]
fn create_list_get_unseal_and_nothing_in_plaintext_on_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    store
        .create(&record(&ring, "shop", "db_password"))
        .expect("created");
    store
        .create(&record(&ring, "shop", "api_token"))
        .expect("created");
    store
        .create(&record(&ring, "other", "db_password"))
        .expect("created");

    let names: Vec<_> = store
        .list(Some("shop"))
        .expect("lists")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["api_token", "db_password"]);
    assert_eq!(store.list(None).expect("lists").len(), 3);
    let got = store
        .get("shop", "db_password")
        .expect("reads")
        .expect("exists");
    assert_eq!(got.spec.size, VALUE.len() as i64);
    assert_eq!(got.unseal(&ring).expect("opens").as_slice(), VALUE);
    assert!(store.get("shop", "missing").expect("reads").is_none());

    let disk = tree_bytes(dir.path());
    assert!(
        !disk.windows(VALUE.len()).any(|w| w == VALUE),
        "plaintext on disk"
    );
}

#[test]
fn an_existing_name_is_an_error_and_delete_removes() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    store.create(&record(&ring, "shop", "db")).expect("created");
    let err = store
        .create(&record(&ring, "shop", "db"))
        .expect_err("exists");
    assert_eq!(err.to_string(), "secret shop/db already exists");
    assert!(store.delete("shop", "db").expect("deletes"));
    assert!(!store.delete("shop", "db").expect("already gone"));
    store
        .create(&record(&ring, "shop", "db"))
        .expect("created again");
}

#[test]
fn concurrent_creates_of_one_name_have_one_winner() {
    let dir = tempfile::tempdir().expect("tmp");
    let ring = Keyring::generate();
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = FileStore::open(dir.path()).expect("opens");
                let r = record(&ring, "shop", "race");
                s.spawn(move || store.create(&r).is_ok())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().expect("thread")))
            .sum()
    });
    assert_eq!(winners, 1);
    let store = FileStore::open(dir.path()).expect("opens");
    assert_eq!(store.list(Some("shop")).expect("lists").len(), 1);
}

#[test]
fn swarm_rules_are_enforced_with_clear_errors() {
    let keys = Keyring::generate().public_keys().expect("keys");
    let make = |ns: &str, name: &str, data: &[u8]| {
        SecretRecord::seal(&keys, ns, name, data, BTreeMap::new(), vec![]).map(|_| ())
    };
    assert!(make("shop", "-bad", b"x")
        .expect_err("name")
        .to_string()
        .starts_with("invalid name, only 64"));
    assert!(make("shop", &"x".repeat(65), b"x").is_err());
    assert!(make("Shop", "ok", b"x")
        .expect_err("ns")
        .to_string()
        .contains("invalid namespace"));
    assert!(make("../etc", "ok", b"x").is_err());
    assert!(make("shop", "ok", b"")
        .expect_err("empty")
        .to_string()
        .contains("larger than 0"));
    assert!(make("shop", "ok", &vec![0; MAX_SECRET_BYTES]).is_err());
    assert!(make("shop", "ok", &vec![0; MAX_SECRET_BYTES - 1]).is_ok());
}

#[test]
fn tampered_or_moved_records_fail_to_open_without_panicking() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    let original = record(&ring, "shop", "db");
    // Moved to another name or namespace: the digest still matches, the AEAD does not.
    for (ns, name) in [("shop", "db2"), ("other", "db")] {
        let mut moved = original.clone();
        moved.namespace = ns.into();
        moved.name = name.into();
        store.create(&moved).expect("stored");
        let err = store
            .get(ns, name)
            .expect("reads")
            .expect("exists")
            .unseal(&ring)
            .expect_err("moved");
        assert!(
            err.to_string().contains("belongs to another secret"),
            "{err}"
        );
    }
    // A flipped character in the ciphertext is caught by the digest.
    let mut flipped = original.clone();
    let mut chars: Vec<char> = flipped.spec.ciphertext.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    flipped.spec.ciphertext = chars.into_iter().collect();
    assert!(matches!(
        flipped.unseal(&ring),
        Err(StoreError::Corrupt { .. })
    ));
    // A garbage file is reported by path, not by content.
    std::fs::write(dir.path().join("secrets/shop/junk.json"), "hunter2 {").expect("write");
    let err = store.list(Some("shop")).expect_err("corrupt");
    assert!(err.to_string().contains("junk.json") && !err.to_string().contains("hunter2"));
}
