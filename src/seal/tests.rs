use super::*;

const PLAINTEXT: &[u8] = b"correct horse battery staple 0xDEADBEEF";

/// Header bytes of each suite's envelope: magic, (suite ids,) key id, encapsulated key.
fn header_len(suite: Suite) -> usize {
    match suite {
        Suite::X25519 => 4 + 16 + 32,
        Suite::XWing => 4 + 6 + 16 + 1120,
    }
}

fn sealed(ring: &Keyring) -> Vec<u8> {
    seal(
        &ring.newest().expect("key"),
        "shop",
        "db_password",
        PLAINTEXT,
    )
    .expect("seals")
}

fn opened(ring: &Keyring, envelope: &[u8]) -> Result<Vec<u8>, SealError> {
    open(ring, "shop", "db_password", envelope).map(|v| v.to_vec())
}

#[test]
fn round_trip_with_the_keyring_in_both_suites() {
    for suite in Suite::ALL {
        let ring = Keyring::generate_with(suite);
        let envelope = sealed(&ring);
        assert_eq!(
            header(&envelope),
            Ok(Header {
                suite,
                key_id: ring.keys()[0].id.as_str(),
                plaintext_len: PLAINTEXT.len(),
            })
        );
        assert_eq!(envelope.len(), header_len(suite) + PLAINTEXT.len() + 16);
        let magic: &[u8] = match suite {
            Suite::X25519 => b"RSE1",
            Suite::XWing => b"RSE2\x64\x7a\x00\x01\x00\x03",
        };
        assert!(envelope.starts_with(magic), "{suite}");
        assert_eq!(opened(&ring, &envelope).as_deref(), Ok(PLAINTEXT));
        assert!(
            !envelope
                .windows(8)
                .any(|w| PLAINTEXT.windows(8).any(|p| p == w)),
            "no plaintext run in the envelope"
        );
    }
}

#[test]
fn ciphertext_moved_to_another_secret_or_namespace_does_not_open() {
    for suite in Suite::ALL {
        let ring = Keyring::generate_with(suite);
        let envelope = sealed(&ring);
        for (ns, name) in [
            ("shop", "other"),
            ("other", "db_password"),
            ("sho", "pdb_password"),
        ] {
            assert_eq!(
                open(&ring, ns, name, &envelope),
                Err(SealError::Open),
                "{suite} {ns}/{name}"
            );
        }
    }
}

/// A flipped bit anywhere is refused; past the header (the encapsulated key, the ciphertext,
/// the tag) it is always the one message of an altered envelope.
#[test]
fn any_flipped_bit_is_detected_in_both_suites() {
    for suite in Suite::ALL {
        let ring = Keyring::generate_with(suite);
        let envelope = sealed(&ring);
        let body = header_len(suite) - suite.encapped_len();
        for i in 0..envelope.len() {
            let mut bad = envelope.clone();
            bad[i] ^= 0x01;
            let err = opened(&ring, &bad).expect_err("tampered");
            if i >= body {
                assert_eq!(err, SealError::Open, "{suite} byte {i}");
            } else {
                assert!(
                    matches!(
                        err,
                        SealError::Malformed
                            | SealError::UnknownKey(_)
                            | SealError::UnknownFormat(_)
                            | SealError::UnknownSuite(_)
                    ),
                    "{suite} byte {i}: {err:?}"
                );
            }
        }
        for cut in [0, 3, 9, 40, header_len(suite), header_len(suite) + 15] {
            assert_eq!(
                opened(&ring, &envelope[..cut]),
                Err(SealError::Malformed),
                "{suite} cut at {cut}"
            );
        }
    }
}

#[test]
fn old_keys_still_open_after_a_new_key_is_added() {
    let mut ring = Keyring::generate();
    let old = sealed(&ring);
    let new_id = ring.add_key(Suite::X25519);
    let new = sealed(&ring);
    let id = |e: &[u8]| header(e).map(|h| h.key_id.to_string());
    assert_eq!(id(&new), Ok(new_id), "the newest key seals");
    assert_ne!(id(&old), id(&new));
    for envelope in [&old, &new] {
        assert_eq!(opened(&ring, envelope).as_deref(), Ok(PLAINTEXT));
    }
    // A keyring without the sealing key says which key is missing.
    let other = Keyring::generate();
    assert_eq!(
        opened(&other, &old),
        Err(SealError::UnknownKey(ring.keys()[0].id.clone()))
    );
}

/// An X25519 keyring that moves to X-Wing: the newest (X-Wing) key seals, the old X25519 key
/// keeps opening what it sealed, and both survive the keyring's JSON.
#[test]
fn a_mixed_keyring_opens_both_suites_and_seals_with_the_newest() {
    let mut ring = Keyring::generate();
    let old = sealed(&ring);
    let id = ring.add_key(Suite::XWing);
    assert_eq!(ring.newest_suite(), Some(Suite::XWing));
    let new = sealed(&ring);
    assert_eq!(
        header(&new).map(|h| (h.suite, h.key_id.to_string())),
        Ok((Suite::XWing, id))
    );
    let ring = Keyring::from_json(&ring.to_json().expect("json")).expect("round trip");
    let suites: Vec<Suite> = ring.keys().iter().map(|k| k.suite()).collect();
    assert_eq!(suites, [Suite::X25519, Suite::XWing]);
    for envelope in [&old, &new] {
        assert_eq!(opened(&ring, envelope).as_deref(), Ok(PLAINTEXT));
    }
    let resealed = reseal(
        &ring,
        &ring.newest().expect("newest"),
        "shop",
        "db_password",
        &old,
    )
    .expect("reseals");
    assert_eq!(header(&resealed).map(|h| h.suite), Ok(Suite::XWing));
    assert_eq!(opened(&ring, &resealed).as_deref(), Ok(PLAINTEXT));
}

/// An envelope sealed to one suite's key is never opened as another suite's: relabelled to
/// the other key, or to the other suite, it is refused before any decapsulation.
#[test]
fn an_envelope_does_not_open_as_another_suites_key() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let (classic, hybrid) = (ring.keys()[0].id.clone(), ring.keys()[1].id.clone());
    let new = sealed(&ring);
    let mismatch = |key: &str, held, sealed| SealError::SuiteMismatch {
        key: key.to_string(),
        held,
        sealed,
    };
    // The X-Wing envelope naming the X25519 key.
    let mut renamed = new.clone();
    renamed[10..26].copy_from_slice(classic.as_bytes());
    assert_eq!(
        opened(&ring, &renamed),
        Err(mismatch(&classic, Suite::X25519, Suite::XWing))
    );
    // The X-Wing envelope relabelled as an X25519 one (RSE2 with DHKEM(X25519)'s id).
    let mut relabelled = new.clone();
    relabelled[4..6].copy_from_slice(&0x0020u16.to_be_bytes());
    let err = opened(&ring, &relabelled).expect_err("relabelled");
    assert_eq!(err, mismatch(&hybrid, Suite::XWing, Suite::X25519));
    assert_eq!(
        err.to_string(),
        format!("ciphertext names suite x25519 but key {hybrid} is an xwing key: the envelope was altered")
    );
    // The X-Wing envelope recast as RSE1 for the X25519 key: the AEAD refuses it.
    let mut recast = b"RSE1".to_vec();
    recast.extend_from_slice(classic.as_bytes());
    recast.extend_from_slice(&new[26..]);
    assert_eq!(opened(&ring, &recast), Err(SealError::Open));
    // An X25519 envelope recast as RSE2 naming X-Wing and the X-Wing key.
    let old = seal(
        &ring.keys()[0].public().expect("public"),
        "shop",
        "db_password",
        PLAINTEXT,
    )
    .expect("seals");
    let mut grown = b"RSE2\x64\x7a\x00\x01\x00\x03".to_vec();
    grown.extend_from_slice(hybrid.as_bytes());
    grown.extend_from_slice(&[7u8; 1120]);
    grown.extend_from_slice(&old[52..]);
    assert_eq!(opened(&ring, &grown), Err(SealError::Open));
}

/// A public key whose suite label does not fit its bytes is refused by name, never used.
#[test]
fn a_public_key_of_the_wrong_suite_does_not_seal() {
    for suite in Suite::ALL {
        let mut key = Keyring::generate_with(suite).newest().expect("key");
        key.suite = match suite {
            Suite::X25519 => Suite::XWing,
            Suite::XWing => Suite::X25519,
        };
        let err = seal(&key, "shop", "db", PLAINTEXT).expect_err("mislabelled");
        assert_eq!(
            err.to_string(),
            format!("key {} is not a valid {} key", key.id, key.suite)
        );
    }
    // A key whose id is not its own.
    let mut key = Keyring::generate_with(Suite::XWing).newest().expect("key");
    key.id = "0123456789abcdef".into();
    assert!(matches!(
        seal(&key, "shop", "db", PLAINTEXT),
        Err(SealError::BadKey { .. })
    ));
}

#[test]
fn unknown_formats_and_suites_are_refused_by_name() {
    let ring = Keyring::generate_with(Suite::XWing);
    let envelope = sealed(&ring);
    let mut p256 = envelope.clone();
    p256[4..6].copy_from_slice(&0x0010u16.to_be_bytes());
    let err = opened(&ring, &p256).expect_err("unknown suite");
    assert_eq!(
        err.to_string(),
        "ciphertext was sealed with an HPKE suite this runsecrets does not open (KEM 0x0010, KDF 0x0001, AEAD 0x0003; it opens x25519 and xwing with HKDF-SHA256 and ChaCha20-Poly1305): upgrade runsecrets"
    );
    let mut aes = envelope.clone();
    aes[9] = 0x01;
    assert!(matches!(
        header(&aes),
        Err(SealError::UnknownSuite(SuiteIds { aead: 1, .. }))
    ));
    let mut v3 = envelope.clone();
    v3[3] = b'3';
    assert_eq!(
        opened(&ring, &v3).map_err(|e| e.to_string()),
        Err("ciphertext is in envelope format RSE3, which this runsecrets does not read (it reads RSE1 and RSE2): upgrade runsecrets".into())
    );
    assert_eq!(header(b"RSE2\x64\x7a"), Err(SealError::Malformed));
    assert_eq!(header(b"PK\x03\x04"), Err(SealError::Malformed));
}

/// RSE2 names its suite, so it may carry X25519 too (what a later release may write): such an
/// envelope opens, and its header (version in HPKE's info) is not interchangeable with RSE1's.
#[test]
fn rse2_may_name_the_x25519_suite() {
    let ring = Keyring::generate();
    let key = ring.newest().expect("key");
    let envelope =
        seal_with::<X25519HkdfSha256>(Version::V2, &key, "shop", "db_password", PLAINTEXT)
            .expect("seals");
    assert!(envelope.starts_with(b"RSE2\x00\x20\x00\x01\x00\x03"));
    assert_eq!(header(&envelope).map(|h| h.suite), Ok(Suite::X25519));
    assert_eq!(opened(&ring, &envelope).as_deref(), Ok(PLAINTEXT));
    let mut as_v1 = b"RSE1".to_vec();
    as_v1.extend_from_slice(&envelope[10..]);
    assert_eq!(opened(&ring, &as_v1), Err(SealError::Open));
}

#[test]
fn public_keys_seal_offline_and_survive_json() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let public = ring.public_keys().expect("public keys");
    let json = serde_json::to_string(&public).expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(value["keys"][0]["suite"], "x25519");
    assert_eq!(value["keys"][1]["suite"], "xwing");
    let public: PublicKeys = serde_json::from_str(&json).expect("parses");
    assert_eq!(public.keys[1].bytes.len(), 1216);
    let restored = Keyring::from_json(&ring.to_json().expect("json")).expect("keyring round trip");
    for key in &public.keys {
        let envelope = seal(key, "shop", "tls_key", PLAINTEXT).expect("seals");
        assert_eq!(
            open(&restored, "shop", "tls_key", &envelope).map(|v| v.to_vec()),
            Ok(PLAINTEXT.to_vec())
        );
    }
    // A public-key file written before suites (no "suite") is read as X25519.
    let mut old = value.clone();
    if let Some(key) = old["keys"][0].as_object_mut() {
        key.remove("suite");
    }
    let old: PublicKeys = serde_json::from_value(old).expect("parses");
    assert_eq!(old.keys[0].suite, Suite::X25519);
}

#[test]
fn private_keys_stay_out_of_debug_and_errors() {
    let mut ring = Keyring::generate();
    ring.add_key(Suite::XWing);
    let json = ring.to_json().expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    for i in 0..2 {
        let private = value["keys"][i]["private"]
            .as_str()
            .expect("private key")
            .to_string();
        assert!(!format!("{ring:?}").contains(&private));
        assert!(!format!("{:?}", ring.keys()[i]).contains(&private));
        let mut tampered = value.clone();
        tampered["keys"][i]["id"] = "0000000000000000".into();
        let err = Keyring::from_json(&tampered.to_string()).expect_err("id must match the key");
        assert!(!err.to_string().contains(&private));
        // A suite relabelled in the keyring: the key derived is another, and its id says so.
        let mut relabelled = value.clone();
        relabelled["keys"][i]["suite"] = if i == 0 { "xwing" } else { "x25519" }.into();
        let err = Keyring::from_json(&relabelled.to_string()).expect_err("relabelled");
        assert_eq!(err, SealError::KeyIdMismatch(ring.keys()[i].id.clone()));
        assert!(!format!("{err:?}").contains(&private));
        assert!(Keyring::from_json(&private).is_err());
    }
    assert!(format!("{:?}", ring.keys()[1]).contains("XWing"));
    assert!(Keyring::from_json("{\"keys\": []}").is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn open_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..1400),
            header in 0u8..3,
        ) {
            let mut ring = Keyring::generate();
            ring.add_key(Suite::XWing);
            let mut envelope = bytes;
            let (magic, key): (&[u8], _) = match header {
                0 => (b"", 0),
                1 => (b"RSE1", 0),
                _ => (b"RSE2\x64\x7a\x00\x01\x00\x03", 1),
            };
            if !magic.is_empty() {
                let mut h = magic.to_vec();
                h.extend_from_slice(ring.keys()[key].id.as_bytes());
                h.extend_from_slice(&envelope);
                envelope = h;
            }
            prop_assert!(open(&ring, "ns", "name", &envelope).is_err());
        }
    }
}
