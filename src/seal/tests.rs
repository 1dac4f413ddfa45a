use super::*;

const PLAINTEXT: &[u8] = b"correct horse battery staple 0xDEADBEEF";

fn sealed(ring: &Keyring) -> Vec<u8> {
    seal(
        &ring.newest().expect("key"),
        "shop",
        "db_password",
        PLAINTEXT,
    )
    .expect("seals")
}

#[test]
fn round_trip_with_the_keyring() {
    let ring = Keyring::generate();
    let envelope = sealed(&ring);
    assert_eq!(key_id(&envelope), Ok(ring.keys()[0].id.as_str()));
    assert_eq!(plaintext_len(&envelope), Ok(PLAINTEXT.len()));
    let opened = open(&ring, "shop", "db_password", &envelope).expect("opens");
    assert_eq!(opened.as_slice(), PLAINTEXT);
    assert!(
        !envelope
            .windows(8)
            .any(|w| PLAINTEXT.windows(8).any(|p| p == w)),
        "no plaintext run in the envelope"
    );
}

#[test]
fn ciphertext_moved_to_another_secret_or_namespace_does_not_open() {
    let ring = Keyring::generate();
    let envelope = sealed(&ring);
    for (ns, name) in [
        ("shop", "other"),
        ("other", "db_password"),
        ("sho", "pdb_password"),
    ] {
        assert_eq!(
            open(&ring, ns, name, &envelope),
            Err(SealError::Open),
            "{ns}/{name}"
        );
    }
}

#[test]
fn any_flipped_bit_is_detected() {
    let ring = Keyring::generate();
    let envelope = sealed(&ring);
    for i in 0..envelope.len() {
        let mut bad = envelope.clone();
        bad[i] ^= 0x01;
        let err = open(&ring, "shop", "db_password", &bad).expect_err("tampered");
        assert!(
            matches!(
                err,
                SealError::Open | SealError::Malformed | SealError::UnknownKey(_)
            ),
            "byte {i}: {err:?}"
        );
    }
    assert_eq!(
        open(&ring, "shop", "db_password", &envelope[..40]),
        Err(SealError::Malformed)
    );
    assert_eq!(
        open(&ring, "shop", "db_password", b""),
        Err(SealError::Malformed)
    );
}

#[test]
fn old_keys_still_open_after_a_new_key_is_added() {
    let mut ring = Keyring::generate();
    let old = sealed(&ring);
    let new_id = ring.add_key();
    let new = sealed(&ring);
    assert_eq!(key_id(&new), Ok(new_id.as_str()), "the newest key seals");
    assert_ne!(key_id(&old), key_id(&new));
    for envelope in [&old, &new] {
        assert_eq!(
            open(&ring, "shop", "db_password", envelope)
                .expect("opens")
                .as_slice(),
            PLAINTEXT
        );
    }
    // A keyring without the sealing key says which key is missing.
    let other = Keyring::generate();
    assert_eq!(
        open(&other, "shop", "db_password", &old),
        Err(SealError::UnknownKey(ring.keys()[0].id.clone()))
    );
}

#[test]
fn public_keys_seal_offline_and_survive_json() {
    let mut ring = Keyring::generate();
    ring.add_key();
    let public = ring.public_keys().expect("public keys");
    let json = serde_json::to_string(&public).expect("json");
    let public: PublicKeys = serde_json::from_str(&json).expect("parses");
    let envelope =
        seal(public.newest().expect("key"), "shop", "tls_key", PLAINTEXT).expect("seals");
    let restored = Keyring::from_json(&ring.to_json()).expect("keyring round trip");
    assert_eq!(
        open(&restored, "shop", "tls_key", &envelope)
            .expect("opens")
            .as_slice(),
        PLAINTEXT
    );
    assert_eq!(key_id(&envelope), Ok(ring.keys()[1].id.as_str()));
}

#[test]
fn private_keys_stay_out_of_debug_and_errors() {
    let ring = Keyring::generate();
    let json = ring.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let private = value["keys"][0]["private"]
        .as_str()
        .expect("private key")
        .to_string();
    assert!(!format!("{ring:?}").contains(&private));
    let mut tampered = value.clone();
    tampered["keys"][0]["id"] = "0000000000000000".into();
    let err = Keyring::from_json(&tampered.to_string()).expect_err("id must match the key");
    assert!(!err.to_string().contains(&private));
    assert!(Keyring::from_json("{\"keys\": []}").is_err());
    assert!(Keyring::from_json(&private).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn open_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), header in any::<bool>()) {
            let ring = Keyring::generate();
            let mut envelope = bytes;
            if header {
                let mut h = MAGIC.to_vec();
                h.extend_from_slice(ring.keys()[0].id.as_bytes());
                h.extend_from_slice(&envelope);
                envelope = h;
            }
            prop_assert!(open(&ring, "ns", "name", &envelope).is_err());
        }
    }
}
