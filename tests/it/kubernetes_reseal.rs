//! `secret reseal` on the Kubernetes store, against the stub apiserver: the resealed envelope
//! replaces the old one in one update at the resourceVersion read (never a delete and a create,
//! which would fail deliveries in between and lose the secret if the CLI died there), and a
//! concurrent change is a conflict that overwrites nothing.

use std::collections::BTreeMap;

use crate::common::apiserver::ApiServer;
use crate::kubernetes::{store, stub};
use runsecrets::seal::{Keyring, Suite};
use runsecrets::server::reseal::ResealResponse;
use runsecrets::store::kubernetes::KubeStore;
use runsecrets::store::{object_name, SecretRecord, Store, StoreError};
use serde_json::Value;

const RUNSECRETS: &str = "/apis/runsecrets.io/v1/runsecrets";
const VALUE: &[u8] = b"same-value";

/// `db_password` stored sealed to the ring's first key, then a second key added.
fn stored_then_rotated(store: &KubeStore) -> (Keyring, SecretRecord) {
    let mut ring = Keyring::generate();
    let keys = ring.public_keys().expect("keys");
    let record = SecretRecord::seal(&keys, "shop", "db_password", VALUE, BTreeMap::new(), vec![])
        .expect("sealed");
    store.create(&record).expect("created");
    ring.add_key(Suite::X25519);
    (ring, record)
}

/// What `secret reseal` stores for `record`: the server's answer (what `POST /v1/reseal`
/// sends), checked, and its tag.
fn resealed(ring: &Keyring, record: &SecretRecord) -> (SecretRecord, String) {
    let answer = runsecrets::server::reseal::answer(
        ring,
        &ring.newest().expect("newest"),
        &record.namespace,
        &record.name,
        &record.envelope().expect("envelope"),
    )
    .expect("resealed");
    runsecrets::secrets::reseal::resealed(record, answer).expect("checked")
}

/// The webhook's verdict on the UPDATE of `old` into `new` (as the apiserver would ask it).
fn admitted(ring: &Keyring, old: &Value, new: &Value) -> (bool, String) {
    use runsecrets::admission::{review_with, Context, Endpoint};
    let body = crate::common::run_secret_review(new, "UPDATE", old);
    let keys = ring.public_keys().expect("keys");
    let context = Context {
        keys: Some(&keys),
        keyring: Some(ring),
        ..Context::default()
    };
    let answer =
        review_with(Endpoint::Validate(Default::default()), context, &body).expect("review");
    let r: Value = serde_json::from_slice(&answer.body).expect("json");
    let message = r["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (r["response"]["allowed"] == true, message)
}

fn object(server: &ApiServer) -> Value {
    server
        .get(RUNSECRETS, "shop", &object_name("db_password"))
        .expect("the RunSecret exists")
}

/// Every call that writes a RunSecret, without its (empty) query.
fn writes(server: &ApiServer) -> Vec<String> {
    server
        .calls()
        .into_iter()
        .filter(|c| c.contains("/runsecrets") && !c.starts_with("GET "))
        .map(|c| c.trim_end_matches('?').to_string())
        .collect()
}

fn opens(store: &KubeStore, ring: &Keyring) -> Vec<u8> {
    let stored = store
        .get("shop", "db_password")
        .expect("read")
        .expect("exists");
    stored
        .unseal(ring, "shop", "db_password")
        .expect("opens")
        .to_vec()
}

/// One PUT of the same object (same uid, labels kept), no DELETE: deliveries never find the
/// secret missing, and the value is the same.
#[test]
fn a_reseal_is_one_update_of_the_same_object() {
    let (rt, server) = stub();
    let store = store(&server);
    let (ring, record) = stored_then_rotated(&store);
    let mut before = object(&server);
    before["metadata"]["labels"] = serde_json::json!({"reviewed": "yes"});
    let before = server.put(RUNSECRETS, before);
    let (new, tag) = resealed(&ring, &record);
    let writes_before = writes(&server).len();

    store.replace(&record, &new, &tag).expect("replaced");

    let path = format!(
        "PUT /apis/runsecrets.io/v1/namespaces/shop/runsecrets/{}",
        object_name("db_password")
    );
    assert_eq!(writes(&server)[writes_before..], [path]);
    assert_eq!(server.puts(), 1);
    let after = object(&server);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["metadata"]["labels"]["reviewed"], "yes");
    assert_eq!(
        after["spec"]["keyId"],
        ring.newest().expect("newest").id.as_str()
    );
    assert_eq!(after["spec"]["size"], before["spec"]["size"]);
    assert_eq!(opens(&store, &ring), VALUE);
    // The update carries the server's tag, which the webhook admits; without it, refused.
    assert_eq!(
        after["metadata"]["annotations"]["runsecrets.io/reseal-tag"],
        tag.as_str()
    );
    assert_eq!(admitted(&ring, &before, &after), (true, String::new()));
    let mut untagged = after.clone();
    untagged["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("runsecrets.io/reseal-tag");
    let (ok, message) = admitted(&ring, &before, &untagged);
    assert!(
        !ok && message.contains("only `runsecrets secret reseal` may change it"),
        "{message}"
    );
    drop(rt);
}

/// Two reseals that read the same version: the apiserver takes one update, the other is told
/// the secret changed, and the stored object is the winner's, whole.
#[test]
fn concurrent_reseals_conflict_and_lose_nothing() {
    let (rt, server) = stub();
    let first = store(&server);
    let (ring, record) = stored_then_rotated(&first);
    let (ours, our_tag) = resealed(&ring, &record);
    let (theirs, their_tag) = resealed(&ring, &record);
    assert_ne!(ours.spec.ciphertext, theirs.spec.ciphertext);
    // Both GETs return the same resourceVersion before either PUT is sent.
    server.gate_reads(&object_name("db_password"), 2);
    let second = store(&server);
    let (old, new) = (record.clone(), theirs.clone());
    let other = std::thread::spawn(move || second.replace(&old, &new, &their_tag));
    let mine = first.replace(&record, &ours, &our_tag);
    let theirs_result = other.join().expect("thread");

    let (won, lost) = match (&mine, &theirs_result) {
        (Ok(()), Err(e)) => (&ours, e),
        (Err(e), Ok(())) => (&theirs, e),
        other => panic!("exactly one update must win: {other:?}"),
    };
    assert!(matches!(lost, StoreError::Changed { .. }), "{lost:?}");
    assert_eq!(
        lost.to_string(),
        "secret shop/db_password changed while it was being rewritten; nothing was overwritten: run the command again"
    );
    let stored = object(&server);
    assert_eq!(stored["spec"]["ciphertext"], won.spec.ciphertext.as_str());
    assert_eq!(stored["spec"]["digest"], won.spec.digest.as_str());
    assert!(writes(&server).iter().all(|c| !c.starts_with("DELETE")));
    assert_eq!(opens(&first, &ring), VALUE);
    drop(rt);
}

/// A secret removed and created again with another value after `reseal` read it is not
/// overwritten with the old value resealed; one removed stays removed.
#[test]
fn a_reseal_never_overwrites_a_new_value_nor_brings_back_a_removed_secret() {
    let (rt, server) = stub();
    let store = store(&server);
    let (ring, record) = stored_then_rotated(&store);
    let (new, tag) = resealed(&ring, &record);

    assert!(store.delete("shop", "db_password").expect("rm"));
    let other = SecretRecord::seal(
        &ring.public_keys().expect("keys"),
        "shop",
        "db_password",
        b"another-v",
        BTreeMap::new(),
        vec![],
    )
    .expect("sealed");
    store.create(&other).expect("created again");
    let e = store.replace(&record, &new, &tag).expect_err("changed");
    assert!(matches!(e, StoreError::Changed { .. }), "{e:?}");
    assert_eq!(
        object(&server)["spec"]["digest"],
        other.spec.digest.as_str()
    );
    assert_eq!(opens(&store, &ring), b"another-v");

    assert!(store.delete("shop", "db_password").expect("rm"));
    let e = store.replace(&record, &new, &tag).expect_err("removed");
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    assert!(server.all(RUNSECRETS).is_empty(), "the secret came back");
    drop(rt);
}

/// A record that does not match its envelope is never stored.
#[test]
fn a_resealed_record_is_checked_against_its_envelope() {
    let (rt, server) = stub();
    let store = store(&server);
    let (ring, record) = stored_then_rotated(&store);
    let (new, tag) = resealed(&ring, &record);
    let newest = ring.newest().expect("newest");
    let forged = ResealResponse {
        digest: "sha256:00".into(),
        ciphertext: new.spec.ciphertext.clone(),
        key_id: newest.id.clone(),
        tag: tag.clone(),
    };
    assert!(runsecrets::secrets::reseal::resealed(&record, forged).is_err());
    let forged = ResealResponse {
        digest: new.spec.digest.clone(),
        ciphertext: new.spec.ciphertext.clone(),
        key_id: ring.keys()[0].id.clone(),
        tag,
    };
    let e = runsecrets::secrets::reseal::resealed(&record, forged).expect_err("wrong key id");
    assert!(e.to_string().contains("keyId does not match"), "{e}");
    drop(rt);
}
