use super::*;
use crate::seal::wrapped::{StoredKeyring, WrappedKeyring};
use crate::seal::{open, seal, Keyring, Suite};

fn private_of(ring: &Keyring) -> Vec<String> {
    let value: serde_json::Value =
        serde_json::from_str(&ring.to_json().expect("json")).expect("json");
    value["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["private"].as_str().expect("private").to_string())
        .collect()
}

#[test]
fn an_autolocked_keyring_opens_with_its_unlock_key_only() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::X25519);
    let key = UnlockKey::generate().expect("key");
    let wrapping = Protector::Autolock(key.clone()).wrap(&ring).expect("wraps");
    let text = wrapping.wrapped.to_json().expect("json");
    for private in private_of(&ring) {
        assert!(
            !text.contains(&private),
            "a private key in the wrapped form"
        );
    }
    let StoredKeyring::Wrapped(stored) = StoredKeyring::parse(&text).expect("parses") else {
        panic!("read back as plain");
    };
    // The public keys are readable without the key, and seal.
    let public = StoredKeyring::Wrapped(stored.clone())
        .public_keys()
        .expect("public");
    assert_eq!(public, ring.public_keys().expect("public"));
    let envelope = seal(public.newest().expect("newest"), "shop", "db", b"v").expect("seals");
    let (opened, _) = Protector::Autolock(key.clone())
        .unwrap(&stored)
        .expect("opens");
    assert_eq!(
        open(&opened, "shop", "db", &envelope)
            .expect("opens")
            .as_slice(),
        b"v"
    );
    // Another unlock key: one message naming the keyring.
    let other = UnlockKey::generate().expect("key");
    let err = Protector::Autolock(other)
        .unwrap(&stored)
        .expect_err("wrong key");
    assert_eq!(
        err.to_string(),
        format!(
            "the unlock key does not open keyring {}: it is another keyring's unlock key, or the keyring was altered",
            stored.keyring_id
        )
    );
    // The unlock key round-trips through its text, and never shows in Debug.
    let text = key.reveal();
    assert!(
        text.starts_with("RSUNLOCK-1-") && text.len() == 11 + 43,
        "{}",
        text.as_str()
    );
    let parsed: UnlockKey = format!("  {}\n", text.as_str()).parse().expect("parses");
    assert!(Protector::Autolock(parsed).unwrap(&stored).is_ok());
    assert!(!format!("{key:?}").contains(&text[11..]));
    for bad in ["", "RSUNLOCK-1-", "RSUNLOCK-2-AAAA", &text[..40], "hunter2"] {
        let e = bad.parse::<UnlockKey>().expect_err("not a key");
        assert!(e.to_string().starts_with("not an unlock key"), "{e}");
    }
}

/// Every field of a wrapped keyring is bound: an edit anywhere, or a part spliced in from
/// another keyring, fails with one message and never yields keys.
#[test]
fn a_tampered_or_spliced_wrapped_keyring_does_not_open() {
    let ring = Keyring::generate();
    let key = UnlockKey::generate().expect("key");
    let protector = Protector::Autolock(key.clone());
    let wrapped = protector.wrap(&ring).expect("wraps").wrapped;
    let value: serde_json::Value =
        serde_json::from_str(&wrapped.to_json().expect("json")).expect("json");
    let other = protector.wrap(&Keyring::generate()).expect("wraps").wrapped;
    let other: serde_json::Value =
        serde_json::from_str(&other.to_json().expect("json")).expect("json");
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("keyringId", other["keyringId"].clone()),
        ("keys", other["keys"].clone()),
        ("ciphertext", other["ciphertext"].clone()),
        ("nonce", other["nonce"].clone()),
        ("protector", other["protector"].clone()),
    ];
    for (field, replacement) in edits {
        let mut edited = value.clone();
        edited[field] = replacement;
        let outcome = StoredKeyring::parse(&edited.to_string()).and_then(|s| match s {
            StoredKeyring::Wrapped(w) => protector.unwrap(&w).map(|_| ()),
            StoredKeyring::Plain(_) => panic!("{field}: read as plain"),
        });
        let e = outcome.expect_err(field).to_string();
        assert!(
            e.starts_with("the unlock key does not open keyring")
                || e.starts_with("wrapped keyring"),
            "{field}: {e}"
        );
    }
    let mut relabelled = value.clone();
    relabelled["format"] = "runsecrets.io/wrapped-keyring/v9".into();
    let e = StoredKeyring::parse(&relabelled.to_string())
        .err()
        .expect("unknown format");
    assert!(
        e.to_string()
            .contains("\"runsecrets.io/wrapped-keyring/v9\" is not one this runsecrets reads"),
        "{e}"
    );
    let mut huge = value.clone();
    huge["protector"]["memoryKib"] = (64u64 * 1024 * 1024).into();
    let StoredKeyring::Wrapped(w) = StoredKeyring::parse(&huge.to_string()).expect("parses") else {
        panic!("plain");
    };
    let e = protector.unwrap(&w).expect_err("bounded").to_string();
    assert!(e.contains("Argon2id parameters out of range"), "{e}");
}

#[test]
fn a_pkcs11_keyring_needs_its_token_and_says_so() {
    let ring = Keyring::generate();
    let wrapped: WrappedKeyring = serde_json::from_value(serde_json::json!({
        "format": crate::seal::wrapped::WRAPPED_FORMAT,
        "keyringId": "0123456789abcdef0123456789abcdef",
        "protector": {"kind": "pkcs11", "token": "hsm", "key": "kek", "wrappedKey": "AAAA"},
        "keys": serde_json::to_value(ring.public_keys().expect("public").keys).expect("keys"),
        "nonce": "AAAAAAAAAAAAAAAA",
        "ciphertext": "AAAA",
    }))
    .expect("a wrapped keyring");
    let e = Protector::Autolock(UnlockKey::generate().expect("key"))
        .unwrap(&wrapped)
        .expect_err("needs the token");
    assert_eq!(
        e.to_string(),
        "keyring 0123456789abcdef0123456789abcdef is protected by PKCS#11 (token \"hsm\", key \"kek\"): give --pkcs11-module, --pkcs11-token, --pkcs11-key and --pkcs11-pin-file (or RUNSECRETS_PKCS11_PIN)"
    );
}

/// Debug output of everything that holds key material names it without showing it.
#[test]
fn debug_output_never_shows_key_material() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let privates = private_of(&ring);
    // The raw private keys, as a derived Debug of their bytes would print them.
    let raw: Vec<String> = privates
        .iter()
        .map(|p| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .expect("base64");
            format!("{:?}", &bytes[..8])
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    let key = UnlockKey::generate().expect("key");
    let shown = key.reveal();
    let config = Pkcs11Config {
        module: "/usr/lib/softhsm/libsofthsm2.so".into(),
        token: "t".into(),
        key: "k".into(),
        pin: "pin-93b1c7e04d".parse().expect("pin"),
        generate_key: false,
    };
    let wrapping = Protector::Autolock(key.clone()).wrap(&ring).expect("wraps");
    let live = crate::seal::LiveKeyring::open(
        ring.clone(),
        Some((wrapping.wrapped.clone(), wrapping.payload_key)),
    )
    .expect("live");
    let texts = [
        format!("{config:?}"),
        format!("{:?}", Protector::Pkcs11(config.clone())),
        format!("{:?}", Protector::Autolock(key.clone())),
        format!("{live:?}"),
        format!("{ring:?}"),
        format!("{:?}", ring.keys()[1]),
        format!("{:?}", ring.public_keys().expect("public")),
    ];
    for text in &texts {
        assert!(!text.contains("pin-93b1c7e04d"), "{text}");
        assert!(!text.contains(&shown[11..]), "{text}");
        for private in privates.iter().chain(&raw) {
            assert!(!text.contains(private.as_str()), "{text}");
        }
    }
    assert!(texts[5].contains("suite: XWing"), "{}", texts[5]);
    assert!(texts[0].contains("Pin(redacted)"), "{}", texts[0]);
}

/// A wrapped keyring holding X-Wing keys round-trips: its public keys name their suite, the
/// private keys come back and open, and a suite relabelled in the readable key list is an
/// edit the associated data catches.
#[test]
fn a_wrapped_keyring_round_trips_xwing_keys() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let key = UnlockKey::generate().expect("key");
    let protector = Protector::Autolock(key);
    let text = protector
        .wrap(&ring)
        .expect("wraps")
        .wrapped
        .to_json()
        .expect("json");
    for private in private_of(&ring) {
        assert!(
            !text.contains(&private),
            "a private key in the wrapped form"
        );
    }
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["keys"][0]["suite"], "x25519");
    assert_eq!(value["keys"][1]["suite"], "xwing");
    let StoredKeyring::Wrapped(stored) = StoredKeyring::parse(&text).expect("parses") else {
        panic!("read back as plain");
    };
    let public = StoredKeyring::Wrapped(stored.clone())
        .public_keys()
        .expect("public");
    let envelope = seal(public.newest().expect("newest"), "shop", "db", b"v").expect("seals");
    let (opened, _) = protector.unwrap(&stored).expect("opens");
    assert_eq!(opened.keys()[1].suite(), Suite::XWing);
    assert_eq!(
        open(&opened, "shop", "db", &envelope)
            .expect("opens")
            .as_slice(),
        b"v"
    );
    // A suite relabelled in the readable list: the key's length no longer fits its suite.
    for (i, label) in [(0, "xwing"), (1, "x25519")] {
        let mut edited = value.clone();
        edited["keys"][i]["suite"] = label.into();
        let outcome = StoredKeyring::parse(&edited.to_string()).and_then(|s| match s {
            StoredKeyring::Wrapped(w) => protector.unwrap(&w).map(|_| ()),
            StoredKeyring::Plain(_) => panic!("read as plain"),
        });
        let e = outcome.expect_err(label).to_string();
        assert!(
            e.starts_with("wrapped keyring") || e.starts_with("the unlock key does not open"),
            "{label}: {e}"
        );
    }
}

/// A keyring wrapped and a secret sealed by the release before suites (committed fixtures,
/// made with its binary: `secret create`, `keys rotate`, `keys protect --autolock`) still
/// open: the associated data of an X25519-only key list is what it was.
#[test]
fn a_keyring_wrapped_before_suites_still_opens() {
    let text = include_str!("../../../tests/fixtures/seal/wrapped-v1-keyring.json");
    let unlock = include_str!("../../../tests/fixtures/seal/wrapped-v1-unlock-key");
    let record: crate::store::SecretRecord = serde_json::from_str(include_str!(
        "../../../tests/fixtures/seal/wrapped-v1-record.json"
    ))
    .expect("record");
    let StoredKeyring::Wrapped(stored) = StoredKeyring::parse(text).expect("parses") else {
        panic!("read as plain");
    };
    assert!(stored.keys.iter().all(|k| k.suite == Suite::X25519));
    let (ring, _) = Protector::Autolock(unlock.parse().expect("unlock key"))
        .unwrap(&stored)
        .expect("opens");
    assert_eq!(ring.keys().len(), 2);
    assert_eq!(
        record
            .unseal(&ring, "shop", "db_password")
            .expect("opens")
            .as_slice(),
        b"old-envelope value: correct horse battery staple"
    );
}
