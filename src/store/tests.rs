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
    assert_eq!(
        got.unseal(&ring, "shop", "db_password")
            .expect("opens")
            .as_slice(),
        VALUE
    );
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
fn tampered_records_fail_to_open_without_panicking() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    let original = record(&ring, "shop", "db");
    // Renamed with its fields: the digest still matches, the AEAD does not.
    for (ns, name) in [("shop", "db2"), ("other", "db")] {
        let mut moved = original.clone();
        moved.namespace = ns.into();
        moved.name = name.into();
        moved.spec.name = name.into();
        store.create(&moved).expect("stored");
        let err = store
            .get(ns, name)
            .expect("reads")
            .expect("exists")
            .unseal(&ring, ns, name)
            .expect_err("moved");
        let text = crate::error::Chain(&err).to_string();
        assert!(text.contains("belongs to another secret"), "{text}");
    }
    // A flipped character in the ciphertext is caught by the digest; an edited key id or size
    // by the envelope's own.
    let mut flipped = original.clone();
    let mut chars: Vec<char> = flipped.spec.ciphertext.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    flipped.spec.ciphertext = chars.into_iter().collect();
    let mut rekeyed = original.clone();
    rekeyed.spec.key_id = "0123456789abcdef".into();
    let mut resized = original.clone();
    resized.spec.size += 1;
    for (record, field) in [(flipped, "digest"), (rekeyed, "keyId"), (resized, "size")] {
        let err = record.unseal(&ring, "shop", "db").expect_err("altered");
        assert!(
            matches!(err, StoreError::Altered { field: f, .. } if f == field),
            "{field}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("record's {field} does not match")),
            "{err}"
        );
    }
    // A garbage file is reported by path, not by content.
    std::fs::write(dir.path().join("secrets/shop/junk.json"), "hunter2 {").expect("write");
    let err = store.list(Some("shop")).expect_err("corrupt");
    assert!(err.to_string().contains("junk.json") && !err.to_string().contains("hunter2"));
}

/// Issue 10 §2: someone who can write the store directory (but holds no keyring) plants,
/// copies, links and swaps records. Nothing opens under a name it was not sealed for.
#[test]
fn planted_copied_linked_and_swapped_records_are_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    for (ns, name) in [
        ("other", "othersecret"),
        ("shop", "a"),
        ("shop", "b"),
        ("shop", "kept"),
    ] {
        store.create(&record(&ring, ns, name)).expect("created");
    }
    let secrets = dir.path().join("secrets");
    let refused = |ns: &str, name: &str, why: &str| {
        let err = store.get(ns, name).expect_err("refused");
        assert!(
            matches!(&err, StoreError::Refused { .. }) && err.to_string().contains(why),
            "{ns}/{name}: {err}"
        );
    };
    // A copy of another namespace's record under shop/.
    std::fs::copy(
        secrets.join("other/othersecret.json"),
        secrets.join("shop/othersecret.json"),
    )
    .expect("copy");
    refused("shop", "othersecret", "holds the record of another secret");
    std::fs::remove_file(secrets.join("shop/othersecret.json")).expect("rm");
    // The same as a symlink.
    symlink(
        "../other/othersecret.json",
        secrets.join("shop/othersecret.json"),
    )
    .expect("link");
    refused("shop", "othersecret", "is a symlink");
    assert!(
        store.list(Some("shop")).is_err(),
        "listing follows no symlink either"
    );
    std::fs::remove_file(secrets.join("shop/othersecret.json")).expect("rm");
    // Two records swapped: refused as they are, and unopenable with their fields edited.
    std::fs::rename(secrets.join("shop/a.json"), secrets.join("shop/tmp.json")).expect("mv");
    std::fs::rename(secrets.join("shop/b.json"), secrets.join("shop/a.json")).expect("mv");
    std::fs::rename(secrets.join("shop/tmp.json"), secrets.join("shop/b.json")).expect("mv");
    refused("shop", "a", "holds the record of another secret");
    let path = secrets.join("shop/a.json");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("\"b\"", "\"a\"")).expect("edit");
    let edited = store.get("shop", "a").expect("reads").expect("exists");
    assert!(matches!(
        edited.unseal(&ring, "shop", "a"),
        Err(StoreError::Seal(crate::seal::SealError::Open))
    ));
    // A FIFO under a record's name neither hangs the reader nor reads as a record.
    let fifo = secrets.join("shop/pipe.json");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    refused("shop", "pipe", "not a regular file");
    std::fs::remove_file(&fifo).expect("rm");
    // A namespace directory that is a symlink to another namespace.
    symlink("other", secrets.join("linked")).expect("link");
    refused("linked", "othersecret", "namespace directory is a symlink");
    // What was never touched still opens.
    let kept = store.get("shop", "kept").expect("reads").expect("exists");
    assert_eq!(
        kept.unseal(&ring, "shop", "kept")
            .expect("opens")
            .as_slice(),
        VALUE
    );
}

#[test]
fn temporaries_of_dead_writers_go_on_the_next_write_or_sweep() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    // A pid that existed and is gone, as after `kill -9`.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("reaped");
    let secrets = dir.path().join("secrets");
    for ns in ["shop", "other"] {
        std::fs::create_dir_all(secrets.join(ns)).expect("dir");
        std::fs::write(
            secrets.join(ns).join(format!(".tmp-db-x-{dead}-3")),
            b"partial",
        )
        .expect("tmp");
    }
    // A live writer's temporary (this process) is left alone.
    let live = secrets.join(format!("shop/.tmp-live-{}-0", std::process::id()));
    std::fs::write(&live, b"in progress").expect("tmp");
    let dot_files = |ns: &str| -> Vec<String> {
        std::fs::read_dir(secrets.join(ns))
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    store
        .create(&record(&ring, "shop", "next"))
        .expect("created");
    assert_eq!(
        dot_files("shop"),
        [live.file_name().unwrap().to_str().unwrap()]
    );
    assert_eq!(
        dot_files("other").len(),
        1,
        "only the namespace written to is swept on write"
    );
    assert_eq!(store.sweep().expect("sweeps"), 1);
    assert!(dot_files("other").is_empty());
    assert!(live.exists());
}

/// Swarm's largest secret (500 KiB less one byte) sealed to an X-Wing key, whose envelope
/// carries a 1120-byte encapsulation, is stored, read back and opened like any other.
#[test]
fn the_largest_secret_sealed_with_xwing_is_stored_and_opens() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let mut ring = Keyring::generate();
    ring.add_key(crate::seal::Suite::XWing);
    let keys = ring.public_keys().expect("keys");
    let value = vec![0x5a; MAX_SECRET_BYTES - 1];
    let record =
        SecretRecord::seal(&keys, "shop", "big", &value, BTreeMap::new(), vec![]).expect("seals");
    assert_eq!(record.spec.size, (MAX_SECRET_BYTES - 1) as i64);
    store.create(&record).expect("created");
    let got = store.get("shop", "big").expect("reads").expect("exists");
    let envelope = got.envelope().expect("checked");
    assert_eq!(
        crate::seal::header(&envelope).map(|h| h.suite),
        Ok(crate::seal::Suite::XWing)
    );
    assert_eq!(
        got.unseal(&ring, "shop", "big").expect("opens").as_slice(),
        value.as_slice()
    );
}

/// Records and RunSecret manifests sealed by the release before suites (committed fixtures,
/// made with its binary: `secret create` and `seal`) open unchanged with their keyring.
#[test]
fn envelopes_sealed_before_suites_still_open() {
    let ring = Keyring::from_json(include_str!("../../tests/fixtures/seal/rse1-keyring.json"))
        .expect("an old keyring reads");
    assert_eq!(ring.keys()[0].suite(), crate::seal::Suite::X25519);
    let record: SecretRecord =
        serde_json::from_str(include_str!("../../tests/fixtures/seal/rse1-record.json"))
            .expect("record");
    let object: RunSecret = serde_norway::from_str(include_str!(
        "../../tests/fixtures/seal/rse1-runsecret.yaml"
    ))
    .expect("manifest");
    let manifest = crate::store::kubernetes::record_of(&object).expect("ours");
    for (record, name) in [(record, "db_password"), (manifest, "api_token")] {
        assert_eq!(
            record
                .unseal(&ring, "shop", name)
                .expect("opens")
                .as_slice(),
            b"old-envelope value: correct horse battery staple",
            "{name}"
        );
    }
}

/// `secret rm` while `secret reseal` is between its check and its rename: the rm waits for the
/// namespace's lock and takes effect after the rename, so the secret stays removed. (Before,
/// the rename recreated the name the rm had just removed.)
#[test]
fn a_reseal_does_not_bring_back_a_secret_removed_while_it_ran() {
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("opens");
    let ring = Keyring::generate();
    let old = record(&ring, "shop", "db_password");
    store.create(&old).expect("created");
    // The same value sealed again: what a reseal stores.
    let new = record(&ring, "shop", "db_password");
    let remover = store.clone();
    let (removed_tx, removed_rx) = mpsc::channel();
    let mut rm = None;
    let replaced = store.replace_then(&old, &new, || {
        rm = Some(std::thread::spawn(move || {
            let removed = remover.delete("shop", "db_password");
            let _ = removed_tx.send(());
            removed
        }));
        // Time for the rm to run now if nothing stops it; waiting longer cannot make this test
        // pass wrongly, only slower.
        let _ = removed_rx.recv_timeout(Duration::from_millis(300));
    });
    let removed = rm.expect("rm started").join().expect("rm thread");
    replaced.expect("replaced before the rm");
    assert!(removed.expect("rm"), "the rm found the secret");
    assert!(
        store.get("shop", "db_password").expect("reads").is_none(),
        "the removed secret came back"
    );
    // A reseal after the rm: nothing to replace, and nothing is created.
    let e = store.replace(&old, &new, "").expect_err("removed");
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(store.list(Some("shop")).expect("lists").is_empty());
}
