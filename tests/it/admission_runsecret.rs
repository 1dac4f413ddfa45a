//! The webhook's answers for RunSecrets: the rules at creation, the reseal of an envelope (one
//! update carrying the server's tag, holding the same value), and X-Wing envelopes.

use crate::common;
use runsecrets::admission::Endpoint;
use runsecrets::policy::Levels;
use serde_json::Value;

/// A verdict that refuses, with `needle` in its message.
#[track_caller]
fn assert_refused((allowed, message): (bool, String), needle: &str) {
    assert!(!allowed && message.contains(needle), "{message}");
}

/// A RunSecret of shop/`name` holding `value`, as `runsecrets seal` writes it.
fn sealed(keys: &runsecrets::seal::PublicKeys, name: &str, value: Vec<u8>) -> Value {
    let yaml = runsecrets::secrets::seal_manifest(
        keys,
        "shop",
        name,
        zeroize::Zeroizing::new(value),
        Default::default(),
        vec![],
    )
    .expect("sealed");
    serde_norway::from_str(&yaml).expect("a manifest")
}

#[test]
fn run_secrets_that_break_the_rules_are_refused_at_creation() {
    use runsecrets::admission::{review_with, Context};
    use runsecrets::seal::Keyring;
    let ring = Keyring::generate();
    let keys = ring.public_keys().unwrap();
    let good = sealed(&keys, "db_password", b"v4lue".to_vec());
    let verdict = |object: Value, keys: &runsecrets::seal::PublicKeys| -> (bool, String) {
        let body = common::run_secret_review(&object, "CREATE", &Value::Null);
        let ctx = Context {
            keys: Some(keys),
            ..Context::default()
        };
        let answer = review_with(Endpoint::Validate(Levels::default()), ctx, &body).unwrap();
        let r: Value = serde_json::from_slice(&answer.body).unwrap();
        let message = r["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (r["response"]["allowed"] == true, message)
    };
    assert_eq!(verdict(good.clone(), &keys), (true, String::new()));

    let other_cluster = Keyring::generate().public_keys().unwrap();
    assert_refused(
        verdict(good.clone(), &other_cluster),
        "is not a key of this cluster",
    );

    let mut renamed = good.clone();
    renamed["metadata"]["name"] = "whatever".into();
    assert!(verdict(renamed, &keys)
        .1
        .contains("metadata.name must be \"db-password-"));

    let mut resized = good.clone();
    resized["spec"]["size"] = 3.into();
    assert!(verdict(resized, &keys)
        .1
        .contains("does not match the sealed envelope"));

    let mut tampered = good.clone();
    tampered["spec"]["digest"] = "sha256:00".into();
    assert!(verdict(tampered, &keys).1.contains("digest does not match"));

    let mut bad_name = good.clone();
    bad_name["spec"]["name"] = "-x".into();
    assert!(verdict(bad_name, &keys).1.contains("invalid name"));

    // A label change (UPDATE, same spec) is allowed whatever the keys: the spec was checked
    // when it was created.
    let ctx = Context {
        keys: Some(&other_cluster),
        ..Context::default()
    };
    let mut labelled = good.clone();
    labelled["metadata"]["labels"] = serde_json::json!({"reviewed": "yes"});
    let update = review_with(
        Endpoint::Validate(Levels::default()),
        ctx,
        &common::run_secret_review(&labelled, "UPDATE", &good),
    )
    .unwrap();
    assert!(update.decision.allowed);
}

/// The message for a spec change without the server's reseal tag, whatever is wrong with it.
const UNTAGGED: &str = "spec.ciphertext: only `runsecrets secret reseal` may change it (the update must carry the server's runsecrets.io/reseal-tag for this envelope); store a new value as a new secret";

/// `object` with the tag `POST /v1/reseal` computes for changing `old` into it, as secret
/// `namespace/name` (the webhook's request is always for shop/db_password).
fn tagged_as(
    ring: &runsecrets::seal::Keyring,
    old: &Value,
    object: &Value,
    namespace: &str,
    name: &str,
) -> Value {
    let old_key = old["spec"]["keyId"].as_str().unwrap();
    let binding = runsecrets::seal::ResealBinding {
        namespace,
        name,
        old_digest: old["spec"]["digest"].as_str().unwrap(),
        new_digest: object["spec"]["digest"].as_str().unwrap(),
    };
    let tag = runsecrets::seal::reseal_tag(ring, old_key, &binding).unwrap();
    let mut object = object.clone();
    object["metadata"]["annotations"] = serde_json::json!({ "runsecrets.io/reseal-tag": tag });
    object
}

/// An update that changes the envelope (what `secret reseal` sends) is checked as a create
/// is, must carry the server's reseal tag, and must hold the same value: the CRD's CEL rule
/// keeps name, size and grants, but can neither hash nor open an envelope, so a same-size
/// value swapped in under the name would pass it.
#[test]
fn a_resealed_run_secret_is_checked_as_at_creation() {
    use runsecrets::admission::{review_with, Context};
    use runsecrets::seal::{Keyring, Suite};
    use runsecrets::store::envelope_digest;
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    let mut ring = Keyring::generate();
    let first = ring.public_keys().unwrap();
    let old = sealed(&first, "db_password", b"v4lue".to_vec());
    ring.add_key(Suite::X25519);
    let keys = ring.public_keys().unwrap();
    let newest = ring.newest().unwrap();
    let envelope =
        base64::Engine::decode(&B64, old["spec"]["ciphertext"].as_str().unwrap()).unwrap();
    let resealed =
        runsecrets::seal::reseal(&ring, &newest, "shop", "db_password", &envelope).unwrap();
    let mut untagged = old.clone();
    untagged["spec"]["ciphertext"] = base64::Engine::encode(&B64, &resealed).into();
    untagged["spec"]["digest"] = envelope_digest(&resealed).into();
    untagged["spec"]["keyId"] = newest.id.clone().into();
    let tag = |object: &Value| tagged_as(&ring, &old, object, "shop", "db_password");
    let good = tag(&untagged);
    let verdict_with = |object: &Value,
                        keys: Option<&runsecrets::seal::PublicKeys>,
                        keyring: Option<&Keyring>|
     -> (bool, String) {
        let ctx = Context {
            keys,
            keyring,
            ..Context::default()
        };
        let body = common::run_secret_review(object, "UPDATE", &old);
        let answer = review_with(Endpoint::Validate(Levels::default()), ctx, &body).unwrap();
        let r: Value = serde_json::from_slice(&answer.body).unwrap();
        let message = r["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (r["response"]["allowed"] == true, message)
    };
    let verdict = |object: &Value| verdict_with(object, Some(&keys), Some(&ring));
    assert_eq!(verdict(&good), (true, String::new()));
    // The server's own envelope, without its tag: refused.
    assert_eq!(verdict(&untagged), (false, UNTAGGED.to_string()));

    // Another value of the same size, sealed properly to the newest key and (as only a broken
    // server would) tagged: the same-value check behind the tag still refuses it.
    let swapped = runsecrets::seal::seal(&newest, "shop", "db_password", b"v4LUE").unwrap();
    let mut other_value = good.clone();
    other_value["spec"]["ciphertext"] = base64::Engine::encode(&B64, &swapped).into();
    other_value["spec"]["digest"] = envelope_digest(&swapped).into();
    let (ok, message) = verdict(&tag(&other_value));
    assert!(
        !ok && message == "spec.ciphertext holds another value: a RunSecret's spec is immutable: store the new value as a new secret",
        "{message}"
    );
    // The same value sealed as another secret does not open as this one.
    let moved = runsecrets::seal::seal(&newest, "shop", "api_token", b"v4lue").unwrap();
    let mut other_name = good.clone();
    other_name["spec"]["ciphertext"] = base64::Engine::encode(&B64, &moved).into();
    other_name["spec"]["digest"] = envelope_digest(&moved).into();
    let (ok, message) = verdict(&tag(&other_name));
    assert!(
        !ok && message.contains("does not open as secret shop/db_password"),
        "{message}"
    );
    // A locked server cannot tell, so it refuses; one without a keyring says so.
    assert_refused(verdict_with(&good, Some(&keys), None), "keyring is locked");
    assert_refused(
        verdict_with(&good, None, None),
        "this server has no keyring (--store none)",
    );

    let mut tampered = good.clone();
    tampered["spec"]["digest"] = old["spec"]["digest"].clone();
    assert_refused(verdict(&tampered), "digest does not match");

    let mut relabelled = good.clone();
    relabelled["spec"]["keyId"] = old["spec"]["keyId"].clone();
    assert_refused(verdict(&relabelled), "does not match the sealed envelope");
}

/// Anyone allowed to update RunSecrets can seal a guess of the (public) size with the (public)
/// keys: without the server's tag the update is refused with one message whether the guess is
/// right or wrong, so it tells nothing. A tag made for another secret, another namespace or
/// another new envelope does not pass either.
#[test]
fn a_guessed_value_cannot_be_tested_by_an_update() {
    use runsecrets::admission::{review_with, Context};
    use runsecrets::seal::{Keyring, Suite};
    use runsecrets::store::envelope_digest;
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    let mut ring = Keyring::generate();
    let old = sealed(
        &ring.public_keys().unwrap(),
        "db_password",
        b"v4lue".to_vec(),
    );
    ring.add_key(Suite::X25519);
    let keys = ring.public_keys().unwrap();
    let newest = ring.newest().unwrap();
    let guess = |value: &[u8]| -> Value {
        let sealed = runsecrets::seal::seal(&newest, "shop", "db_password", value).unwrap();
        let mut object = old.clone();
        object["spec"]["ciphertext"] = base64::Engine::encode(&B64, &sealed).into();
        object["spec"]["digest"] = envelope_digest(&sealed).into();
        object["spec"]["keyId"] = newest.id.clone().into();
        object
    };
    let verdict = |object: &Value| -> (bool, String) {
        let ctx = Context {
            keys: Some(&keys),
            keyring: Some(&ring),
            ..Context::default()
        };
        let body = common::run_secret_review(object, "UPDATE", &old);
        let answer = review_with(Endpoint::Validate(Levels::default()), ctx, &body).unwrap();
        let r: Value = serde_json::from_slice(&answer.body).unwrap();
        let message = r["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (r["response"]["allowed"] == true, message)
    };
    let right = guess(b"v4lue");
    let wrong = guess(b"v4LUE");
    assert_eq!(verdict(&right), (false, UNTAGGED.to_string()));
    assert_eq!(verdict(&wrong), (false, UNTAGGED.to_string()));

    let mut garbage = right.clone();
    garbage["metadata"]["annotations"] =
        serde_json::json!({ "runsecrets.io/reseal-tag": "not a tag" });
    assert_eq!(verdict(&garbage), (false, UNTAGGED.to_string()));
    // Tags the server made, but for another secret or namespace.
    for (namespace, name) in [("shop", "api_token"), ("other", "db_password")] {
        let elsewhere = tagged_as(&ring, &old, &right, namespace, name);
        assert_eq!(
            verdict(&elsewhere),
            (false, UNTAGGED.to_string()),
            "{namespace}/{name}"
        );
    }
    // A real tag, for another new envelope, moved onto the guess.
    let genuine = tagged_as(&ring, &old, &guess(b"v4lue"), "shop", "db_password");
    let mut moved = right.clone();
    moved["metadata"]["annotations"] = genuine["metadata"]["annotations"].clone();
    assert_eq!(verdict(&moved), (false, UNTAGGED.to_string()));
    // The same guess with the right tag passes: the tag is what decides, not the value.
    assert_eq!(
        verdict(&tagged_as(&ring, &old, &right, "shop", "db_password")),
        (true, String::new())
    );
    // No message quotes a tag.
    let (_, message) = verdict(&moved);
    let tag = moved["metadata"]["annotations"]["runsecrets.io/reseal-tag"]
        .as_str()
        .unwrap();
    assert!(!message.contains(tag));
}

/// A RunSecret sealed to an X-Wing key is admitted up to Swarm's size limit (its envelope
/// carries a 1120-byte encapsulation on top); one relabelled to another suite's key, or naming
/// a suite this build does not open, is refused with what is wrong.
#[test]
fn xwing_run_secrets_are_admitted_up_to_swarms_limit() {
    use base64::Engine;
    use runsecrets::admission::{review_with, Context};
    use runsecrets::seal::{Keyring, Suite};
    use runsecrets::store::envelope_digest;
    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let keys = ring.public_keys().unwrap();
    let largest = vec![b'x'; runsecrets::store::MAX_SECRET_BYTES - 1];
    let good = sealed(&keys, "tls_key", largest);
    let verdict = |object: &Value| -> (bool, String) {
        let ctx = Context {
            keys: Some(&keys),
            ..Context::default()
        };
        let body = common::run_secret_review(object, "CREATE", &Value::Null);
        let answer = review_with(Endpoint::Validate(Levels::default()), ctx, &body).unwrap();
        let r: Value = serde_json::from_slice(&answer.body).unwrap();
        let message = r["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (r["response"]["allowed"] == true, message)
    };
    assert_eq!(verdict(&good), (true, String::new()));
    assert_eq!(good["spec"]["size"], 511_999);
    // The envelope edited, and the spec made to agree with it (digest, key id).
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| -> Value {
        let mut envelope = B64
            .decode(good["spec"]["ciphertext"].as_str().unwrap())
            .unwrap();
        edit(&mut envelope);
        let mut object = good.clone();
        object["spec"]["ciphertext"] = B64.encode(&envelope).into();
        object["spec"]["digest"] = envelope_digest(&envelope).into();
        object["spec"]["keyId"] = String::from_utf8_lossy(&envelope[10..26])
            .into_owned()
            .into();
        object
    };
    let classic = keys.keys[0].id.clone();
    let relabelled = edited(&|e| e[10..26].copy_from_slice(classic.as_bytes()));
    assert_eq!(
        verdict(&relabelled),
        (
            false,
            format!(
                "spec.ciphertext names suite xwing but key {classic} is an x25519 key: it was altered"
            )
        )
    );
    let p256 = edited(&|e| e[4..6].copy_from_slice(&[0x00, 0x10]));
    assert_eq!(
        verdict(&p256).1,
        "spec.ciphertext: ciphertext was sealed with an HPKE suite this runsecrets does not open (KEM 0x0010, KDF 0x0001, AEAD 0x0003; it opens x25519 and xwing with HKDF-SHA256 and ChaCha20-Poly1305): upgrade runsecrets"
    );
    let truncated = edited(&|e| e.truncate(1100));
    assert_eq!(
        verdict(&truncated).1,
        "spec.ciphertext is not a runsecrets envelope"
    );
}
