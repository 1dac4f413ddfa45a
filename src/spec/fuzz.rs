//! Fuzzing the `runsecrets.io/secrets` annotation parser: any pod author writes this text, and
//! the webhook and the node plugin both parse it. Never a panic; errors name an entry by its
//! position and, when valid, its source, and quote nothing else but targets (≤ 1024 bytes).

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::corpus::{self, CANARY};

/// The longest problem text: fixed words and one target as `{:?}` shows it.
const PROBLEM_MAX: usize = 200 + 4 * 1024;

/// Checks what the parser said about `value`: valid references survive a round trip through
/// their canonical form; errors are bounded, and show no canary when `value` holds it only
/// where nothing is quoted (random mutations may put it in a target, which is shown).
fn check(value: &str, canary_hidden: bool) -> Result<u64, TestCaseError> {
    let _ = parse_containers(value);
    match parse_secrets(value) {
        Ok(refs) => {
            prop_assert!(!refs.is_empty() && refs.len() <= MAX_REFERENCES);
            let again = parse_secrets(&canonical_list(&refs));
            prop_assert_eq!(again.as_ref(), Ok(&refs));
            Ok(3)
        }
        Err(e) => {
            for entry in &e.0 {
                if let Some(source) = &entry.source {
                    prop_assert!(check_name(source).is_ok(), "source {:?} shown", source);
                }
                prop_assert!(
                    entry.problem.len() <= PROBLEM_MAX,
                    "{} bytes",
                    entry.problem.len()
                );
            }
            prop_assert!(e.0.len() <= MAX_REFERENCES + 1);
            let text = e.to_string();
            prop_assert!(
                !canary_hidden || !corpus::shows_canary(&text),
                "canary quoted: {}",
                text
            );
            Ok(2)
        }
    }
}

/// The annotation values the apiserver fixtures carry (valid, invalid, long syntax).
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = corpus::review_fixtures()
        .into_iter()
        .filter_map(|(_, body)| {
            let v: Value = serde_json::from_slice(&body).ok()?;
            let object = &v["request"]["object"];
            let a = object["metadata"]["annotations"][SECRETS_ANNOTATION]
                .as_str()
                .or_else(|| {
                    object["spec"]["template"]["metadata"]["annotations"][SECRETS_ANNOTATION]
                        .as_str()
                })?;
            Some(a.as_bytes().to_vec())
        })
        .collect();
    seeds.sort();
    seeds.dedup();
    assert!(seeds.len() >= 3, "the fixtures hold secrets annotations");
    seeds
}

/// A value no message may show: anywhere but in a target.
fn pasted() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(CANARY.to_string()),
        Just(format!("DB_PASSWORD={CANARY}")),
        Just(format!("source=db,{CANARY}")),
        Just(format!("source={CANARY}")),
        Just(format!("source=db,uid={CANARY}")),
        Just(format!("source=db,gid={CANARY}")),
        Just(format!("source=db,mode={CANARY}")),
        Just(format!("source=db,{CANARY}=1")),
        Just(format!("src=db,target=x,{CANARY}")),
        Just(format!("{CANARY},source=db")),
    ]
}

fn field() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("source"),
        Just("src"),
        Just("target"),
        Just("uid"),
        Just("gid"),
        Just("mode"),
        Just("SOURCE"),
        Just(" target "),
        Just("other"),
    ];
    let value = prop_oneof![
        3 => "[a-z][a-z0-9_.-]{0,12}",
        2 => "/?[a-z.]{0,6}(/[a-z.]{0,6}){0,3}",
        2 => "[0-7]{0,6}",
        1 => "[0-9]{1,12}",
        2 => corpus::odd_string(),
    ];
    (key, value).prop_map(|(k, v)| format!("{k}={v}"))
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_.-]{0,10}",
        4 => prop::collection::vec(field(), 1..6).prop_map(|f| f.join(",")),
        2 => pasted(),
        1 => corpus::odd_string(),
    ]
}

fn annotation() -> impl Strategy<Value = String> {
    let separator = prop_oneof![
        Just("\n"),
        Just(";"),
        Just(" ; "),
        Just("\r\n"),
        Just("\n\n")
    ];
    prop::collection::vec((entry(), separator), 0..12).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(e, s)| format!("{e}{s}"))
            .collect()
    })
}

#[test]
fn annotations_built_from_entries() {
    corpus::run("spec: structured annotations", 512, annotation(), |value| {
        check(&value, true)
    });
}

#[test]
fn mutated_fixture_annotations() {
    let strategy = corpus::mutated_bytes(seeds());
    corpus::run(
        "spec: mutated fixture annotations",
        512,
        strategy,
        |bytes| check(&String::from_utf8_lossy(&bytes), false),
    );
}

#[test]
fn arbitrary_text_and_bytes() {
    let strategy = prop_oneof![
        "\\PC{0,300}".prop_map(String::into_bytes),
        corpus::arbitrary_bytes(),
    ];
    corpus::run("spec: arbitrary input", 512, strategy, |bytes| {
        check(&String::from_utf8_lossy(&bytes), false)
    });
}

#[test]
fn many_entries_stop_at_the_limit() {
    let value = "a\n".repeat(10_000);
    let e = parse_secrets(&value).expect_err("too many");
    assert!(e.0.len() <= MAX_REFERENCES + 1, "{}", e.0.len());
    assert!(check(&value, true).is_ok());
}

proptest! {
    #![proptest_config(corpus::config(256))]

    #[test]
    fn accepted_targets_stay_inside_their_place(s in "[a-z./]{0,40}") {
        if let Ok(refs) = parse_secrets(&format!("source=s,target={s}")) {
            let path = refs[0].target.volume_path();
            prop_assert!(!path.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            prop_assert!(!path.starts_with('/'));
        }
    }

    #[test]
    fn canonical_round_trip(uid in 0u32.., gid in 0u32.., mode in 0u32..0o1000, t in "[a-z]{1,8}(/[a-z]{1,8}){0,3}") {
        let refs = parse_secrets(&format!("source=s,target={t},uid={uid},gid={gid},mode={mode:o}")).expect("valid");
        prop_assert_eq!(parse_secrets(&canonical_list(&refs)).expect("valid"), refs);
    }
}
