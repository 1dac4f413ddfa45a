//! Fuzzing the admission review body: what `/mutate` and `/validate` parse from anyone who can
//! reach the webhook port. Mutations of the real apiserver bodies (byte-level and JSON-level),
//! arbitrary bytes, and pod-shaped input. Never a panic; a body that is not a review gets one
//! of the fixed reasons that quote nothing from it; a review is answered with its uid; no env
//! value reaches an answer; every patch applies and leaves a Pod a Pod.

use std::collections::BTreeSet;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::corpus::{self, CANARY};
use crate::policy::{self, detect, Level, Mode, WARNING_MAX};

/// The endpoints every body is reviewed at: mutation, and validation at every mode.
fn endpoints() -> [Endpoint; 3] {
    [
        Endpoint::Mutate,
        Endpoint::Validate(Levels::only(Mode::Enforce, Level::Strict)),
        Endpoint::Validate(Levels {
            enforce: Level::Off,
            warn: Level::Strict,
            audit: Level::Baseline,
        }),
    ]
}

/// Every env value of the fixtures that the detector calls a credential, e.g. the
/// `DB_PASSWORD` literal of `pod-env-literals.json`.
fn secret_values(seeds: &[Value]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for seed in seeds {
        for pointer in corpus::pointers(seed) {
            let Some(parent) = pointer.strip_suffix("/value") else {
                continue;
            };
            let name = seed
                .pointer(&format!("{parent}/name"))
                .and_then(Value::as_str);
            let value = seed.pointer(&pointer).and_then(Value::as_str);
            if let (Some(name), Some(value)) = (name, value) {
                if is_env_entry(parent) && detect::literal_credential(name, value).is_some() {
                    out.insert(value.trim().to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// `…/env/N`.
fn is_env_entry(pointer: &str) -> bool {
    let mut parts = pointer.rsplit('/');
    parts.next().is_some_and(|n| n.parse::<usize>().is_ok()) && parts.next() == Some("env")
}

/// Where a value may sit without ever being shown: env values, and kubectl's copy of the
/// manifest.
fn is_value_place(pointer: &str) -> bool {
    pointer.strip_suffix("/value").is_some_and(is_env_entry)
        || pointer.ends_with("/kubectl.kubernetes.io~1last-applied-configuration")
}

/// The values of `secrets` that `input` holds only where values belong.
fn hidden_values<'a>(input: &Value, secrets: &'a [String]) -> Vec<&'a str> {
    let mut exposed = BTreeSet::new();
    fn walk<'s>(v: &Value, at: &str, secrets: &'s [String], exposed: &mut BTreeSet<&'s str>) {
        let mark = |text: &str, exposed: &mut BTreeSet<&'s str>| {
            for s in secrets.iter().filter(|s| text.contains(s.as_str())) {
                exposed.insert(s.as_str());
            }
        };
        match v {
            Value::String(s) if !is_value_place(at) => mark(s, exposed),
            Value::Object(map) => {
                for (k, child) in map {
                    mark(k, exposed);
                    let key = k.replace('~', "~0").replace('/', "~1");
                    walk(child, &format!("{at}/{key}"), secrets, exposed);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), secrets, exposed);
                }
            }
            _ => {}
        }
    }
    walk(input, "", secrets, &mut exposed);
    secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !exposed.contains(s))
        .collect()
}

/// A body that is not a review is refused by category and position only.
fn check_bad_review(e: &BadReview) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(
        text.len() <= 160 && !text.chars().any(char::is_control),
        "{}",
        text
    );
    if let BadReview::Parse(reason) = e {
        let what = reason.split(" at line ").next().unwrap_or_default();
        let categories = [
            "read error",
            "malformed JSON",
            "unexpected field type or shape",
            "truncated JSON",
        ];
        prop_assert!(categories.contains(&what), "{}", reason);
        if let Some(at) = reason
            .strip_prefix(what)
            .and_then(|r| r.strip_prefix(" at line "))
        {
            let digits = at.replace(" column ", "");
            prop_assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{}",
                reason
            );
        }
    }
    Ok(())
}

/// What an answer may say: the uid back, no hidden value anywhere, short warnings, and a
/// patch that applies and keeps a Pod a Pod.
fn check_answer(
    input: Option<&Value>,
    answer: &Answer,
    hidden: &[&str],
) -> Result<(), TestCaseError> {
    let out: Value =
        serde_json::from_slice(&answer.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let response = &out["response"];
    if let Some(uid) = input.and_then(|i| i["request"]["uid"].as_str()) {
        prop_assert_eq!(response["uid"].as_str(), Some(uid));
    }
    let text = serde_json::to_string(response).unwrap_or_default();
    for value in hidden {
        prop_assert!(
            !text.contains(value),
            "an env value reached the answer: {}",
            text
        );
    }
    for warning in response["warnings"].as_array().into_iter().flatten() {
        let w = warning.as_str().unwrap_or_default();
        prop_assert!(w.chars().count() <= WARNING_MAX, "{}", w);
    }
    let (Some(patch), Some(object)) = (
        response["patch"].as_str(),
        input.map(|i| &i["request"]["object"]),
    ) else {
        return Ok(());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut patched = object.clone();
    prop_assert!(
        json_patch::patch(&mut patched, &patch).is_ok(),
        "the patch does not apply"
    );
    if serde_json::from_value::<Pod>(object.clone()).is_ok() {
        prop_assert!(
            serde_json::from_value::<Pod>(patched).is_ok(),
            "the patched Pod no longer reads as a Pod"
        );
    }
    Ok(())
}

/// Reviews `body` at every endpoint; returns the number of reviews run.
fn check(body: &[u8], secrets: &[String]) -> Result<u64, TestCaseError> {
    let input: Option<Value> = serde_json::from_slice(body).ok();
    let hidden = input
        .as_ref()
        .map(|i| hidden_values(i, secrets))
        .unwrap_or_default();
    let mut n = 0;
    for endpoint in endpoints() {
        n += 1;
        match review(endpoint, body) {
            Err(e) => check_bad_review(&e)?,
            Ok(answer) => check_answer(input.as_ref(), &answer, &hidden)?,
        }
    }
    Ok(n)
}

fn seeds() -> Vec<Value> {
    let seeds: Vec<Value> = corpus::review_fixtures()
        .into_iter()
        .map(|(name, body)| serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    assert!(seeds.len() >= 10, "the review fixtures are there");
    seeds
}

#[test]
fn mutated_fixture_bytes() {
    let seeds = seeds();
    let secrets = secret_values(&seeds);
    assert!(secrets.len() >= 5, "{secrets:?}");
    let bytes: Vec<Vec<u8>> = corpus::review_fixtures()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    corpus::run(
        "admission: byte mutations of the fixtures",
        128,
        corpus::mutated_bytes(bytes),
        |body| check(&body, &secrets),
    );
}

#[test]
fn mutated_fixture_json() {
    let seeds = seeds();
    let secrets = secret_values(&seeds);
    corpus::run(
        "admission: JSON mutations of the fixtures",
        128,
        corpus::mutated_json(seeds),
        |doc| {
            let body = serde_json::to_vec(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check(&body, &secrets)
        },
    );
}

#[test]
fn arbitrary_bodies() {
    corpus::run(
        "admission: arbitrary bytes",
        256,
        corpus::arbitrary_bytes(),
        |body| check(&body, &[]),
    );
}

#[test]
fn pasted_values_in_the_secrets_annotation_are_never_quoted() {
    let pod = seeds()
        .into_iter()
        .find(|s| {
            s["request"]["object"]["metadata"]["annotations"][spec::SECRETS_ANNOTATION].is_string()
        })
        .expect("a pod fixture that declares secrets");
    let entry = prop_oneof![
        Just(CANARY.to_string()),
        Just(format!("MYSQL_ROOT_PASSWORD={CANARY}")),
        Just(format!("source=db,{CANARY}")),
        Just(format!("source=db,mode={CANARY}")),
        Just(format!("source=db,{CANARY}=x")),
        "[a-z]{1,8}",
    ];
    let strategy = prop::collection::vec(entry, 1..5);
    corpus::run(
        "admission: pasted values in the annotation",
        64,
        strategy,
        |entries| {
            let mut body = pod.clone();
            body["request"]["object"]["metadata"]["annotations"][spec::SECRETS_ANNOTATION] =
                entries.join("\n").into();
            let body = serde_json::to_vec(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let answer =
                review(Endpoint::Mutate, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let text = String::from_utf8_lossy(&answer.body);
            prop_assert!(!corpus::shows_canary(&text), "{}", text);
            Ok(1)
        },
    );
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn mount_path() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("/run/secrets".to_string()),
        3 => Just("/var/run/secrets/kubernetes.io/serviceaccount".to_string()),
        2 => "/(var/)?run/secrets/[a-z.]{1,6}(/[a-z.\\n]{1,6}){0,2}",
        6 => "/[a-z]{1,5}(/[a-z]{1,5}){0,2}",
        1 => "\\PC{0,20}",
    ]
}

fn container() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("app"), Just("side"), Just("init")],
        prop::collection::vec((mount_path(), any::<bool>()), 0..3),
        prop::collection::vec(("[A-Z_]{1,12}", "[a-zA-Z0-9/+:@.-]{0,30}"), 0..3),
    )
        .prop_map(|(name, mounts, env)| {
            let mounts: Vec<Value> = mounts
                .into_iter()
                .enumerate()
                .map(|(i, (path, sub))| {
                    let mut m = json!({"name": format!("v{i}"), "mountPath": path});
                    if sub {
                        m["subPath"] = "f".into();
                    }
                    m
                })
                .collect();
            // Every value carries a marker so the test can look for it in answers.
            let env: Vec<Value> = env
                .into_iter()
                .map(|(k, v)| json!({"name": k, "value": format!("zq9{v}")}))
                .collect();
            json!({"name": name, "image": "i", "volumeMounts": mounts, "env": env})
        })
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z][a-z0-9_]{0,8}",
        2 => ("[a-z]{1,6}", "[a-z./]{1,12}", "[0-9]{1,4}")
            .prop_map(|(s, t, m)| format!("source={s},target={t},mode={m}")),
        3 => ("[a-z]{1,6}", "/[a-z]{1,5}(/[a-z]{1,5}){0,2}")
            .prop_map(|(s, t)| format!("src={s},target={t},uid=7")),
        1 => "\\PC{0,16}",
    ]
}

proptest! {
    #![proptest_config(corpus::config(256))]

    #[test]
    fn review_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = review(Endpoint::Mutate, &body);
        let _ = review(Endpoint::Validate(Levels::only(policy::Mode::Enforce, policy::Level::Strict)), &body);
    }

    #[test]
    fn review_never_panics_on_mangled_pods(
        spec in json_value(),
        secrets in "\\PC{0,80}",
        containers in "\\PC{0,20}",
        operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
    ) {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": operation, "userInfo": {}, "name": "p", "namespace": "ns",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
                    spec::SECRETS_ANNOTATION: secrets, spec::CONTAINERS_ANNOTATION: containers}},
                    "spec": spec},
                "oldObject": null,
            }
        });
        let bytes = serde_json::to_vec(&body).expect("json");
        for endpoint in [Endpoint::Mutate, Endpoint::Validate(Levels::only(policy::Mode::Warn, policy::Level::Strict))] {
            let answer = review(endpoint, &bytes).expect("a parsed review is always answered");
            let out: Value = serde_json::from_slice(&answer.body).expect("json answer");
            prop_assert_eq!(&out["response"]["uid"], "u");
        }
    }

    #[test]
    fn pod_shaped_input_gives_valid_patches_and_never_echoes_values(
        containers in prop::collection::vec(container(), 1..4),
        entries in prop::collection::vec(entry(), 1..4),
        selection in prop_oneof![6 => Just(None), 3 => Just(Some("app")), 1 => Just(Some("app,ghost"))],
    ) {
        let mut annotations = serde_json::Map::new();
        annotations.insert(spec::SECRETS_ANNOTATION.into(), entries.join("\n").into());
        if let Some(sel) = selection {
            annotations.insert(spec::CONTAINERS_ANNOTATION.into(), sel.into());
        }
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": containers}});
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "userInfo": {}, "name": "p", "namespace": "ns",
                "object": object.clone()}});
        let bytes = serde_json::to_vec(&body).expect("json");
        for endpoint in [Endpoint::Mutate, Endpoint::Validate(Levels::only(policy::Mode::Enforce, policy::Level::Baseline))] {
            let answer = review(endpoint, &bytes).expect("answered");
            let text = String::from_utf8_lossy(&answer.body).into_owned();
            prop_assert!(!text.contains("zq9"), "an env value reached the answer: {}", text);
            let out: Value = serde_json::from_slice(&answer.body).expect("json");
            let Some(patch) = out["response"]["patch"].as_str() else { continue };
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
            let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &patch).expect("patch applies");
            let pod: Pod = serde_json::from_value(patched.clone()).expect("a Pod");
            let volume = pod.spec.expect("spec").volumes.expect("volumes")
                .into_iter().find(|v| v.name == spec::VOLUME_NAME).expect("our volume");
            let attributes = volume.csi.expect("csi").volume_attributes.expect("attributes");
            prop_assert!(spec::parse_secrets(&attributes[spec::SECRETS_ATTRIBUTE]).is_ok());
            for line in attributes.get(spec::MOUNTPOINTS_ATTRIBUTE).into_iter().flat_map(|v| v.lines()) {
                prop_assert!(
                    matches!(spec::Target::parse(line), Ok(spec::Target::InVolume(_))),
                    "mount point {:?} is not a clean relative path", line
                );
            }
            // Reposting the injected pod is a no-op.
            let mut again = body.clone();
            again["request"]["object"] = patched;
            let second = review(Endpoint::Mutate, &serde_json::to_vec(&again).expect("json")).expect("answered");
            let second: Value = serde_json::from_slice(&second.body).expect("json");
            prop_assert_eq!(&second["response"]["allowed"], true);
            prop_assert!(second["response"].get("patch").is_none());
        }
    }
}
