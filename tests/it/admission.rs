//! The webhook's answers to the real AdmissionReview bodies captured from a kube-apiserver.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use runsecrets::admission::{review, Endpoint};
use runsecrets::policy::{Level, Levels, Mode};
use serde_json::Value;

pub(crate) const ENFORCE_BASELINE: Endpoint = Endpoint::Validate(Levels {
    enforce: Level::Baseline,
    warn: Level::Off,
    audit: Level::Off,
});

pub(crate) fn answer(endpoint: Endpoint, body: &[u8]) -> Value {
    let request: Value = serde_json::from_slice(body).expect("json");
    let answer = review(endpoint, body).expect("a review is answered");
    response(&answer.body, &request)
}

fn mutate_fixture(name: &str) -> (Value, Value) {
    let request = fixture(name);
    let response = answer(Endpoint::Mutate, &fixture_bytes(name));
    (request, response)
}

/// Checks the invariants of an injected pod and returns it.
fn injected(name: &str) -> (Value, Pod, Value) {
    let (request, response) = mutate_fixture(name);
    let (object, pod) = common::injected_pod(&request, &response);
    (request, pod, object)
}

fn secrets_mount<'a>(
    pod: &'a Pod,
    container: &str,
) -> Option<&'a k8s_openapi::api::core::v1::VolumeMount> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == container)?
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/run/secrets")
}

/// What each fixture gets from /mutate and from an enforce=baseline /validate.
const EXPECTED: &[(&str, bool, bool, bool)] = &[
    // (fixture, mutate allowed, mutate patches, validate allowed)
    ("deployment-env-literal.json", true, false, false),
    ("pod-delete-final.json", true, false, true),
    ("pod-delete.json", true, false, true),
    ("pod-dryrun-secrets.json", true, true, true),
    ("pod-env-literals.json", true, false, false),
    ("pod-env-secretref.json", true, false, true),
    ("pod-ephemeral-debug.json", true, false, false),
    ("pod-secrets-bad.json", false, false, true),
    ("pod-secrets-conflict.json", false, false, true),
    ("pod-secrets-containers.json", true, true, true),
    ("pod-secrets-long.json", true, true, true),
    ("pod-secrets-short-validating.json", true, true, true),
    ("pod-secrets-short.json", true, true, true),
];

#[test]
fn every_fixture_is_answered_with_its_uid_and_the_expected_decision() {
    let fixtures = review_fixtures();
    assert_eq!(
        fixtures.len(),
        EXPECTED.len(),
        "a fixture without an expectation"
    );
    for (name, body) in fixtures {
        let request: Value = serde_json::from_slice(&body).expect("json");
        let &(_, mutate_ok, patches, validate_ok) = EXPECTED
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("{name}: no expectation"));
        let m = response(
            &review(Endpoint::Mutate, &body).expect("answered").body,
            &request,
        );
        assert_eq!(m["allowed"], mutate_ok, "{name} /mutate");
        assert_eq!(patch_of(&m).is_some(), patches, "{name} /mutate patch");
        if let Some(patch) = patch_of(&m) {
            let (_, pod) = apply(&request, &patch);
            assert!(pod.spec.is_some(), "{name}");
        }
        let v = response(
            &review(ENFORCE_BASELINE, &body).expect("answered").body,
            &request,
        );
        assert_eq!(v["allowed"], validate_ok, "{name} /validate");
        // The pod in the validating phase already carries a uid: the second call still answers.
        let off = response(
            &review(Endpoint::Validate(Levels::default()), &body)
                .expect("answered")
                .body,
            &request,
        );
        assert_eq!(off["allowed"], true, "{name}: level off refuses nothing");
    }
}

#[test]
fn short_syntax_pod_without_volumes_gets_volume_and_mount_created() {
    let (request, pod, object) = injected("pod-secrets-short.json");
    assert!(request["request"]["object"]["spec"]
        .get("volumes")
        .is_none());
    let mount = secrets_mount(&pod, "mysql").expect("mysql mounts /run/secrets");
    assert_eq!(mount.read_only, Some(true));
    let csi = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
        .csi
        .clone()
        .unwrap();
    let attrs = csi.volume_attributes.expect("attributes");
    assert_eq!(
        attrs["runsecrets.io/secrets"],
        "source=mysql_root_password,target=mysql_root_password,uid=0,gid=0,mode=0444"
    );
    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert!(annotations["runsecrets.io/injected"].starts_with("sha256:"));
    // The rest of the pod is untouched.
    assert_eq!(
        object["spec"]["containers"][0]["env"],
        request["request"]["object"]["spec"]["containers"][0]["env"]
    );
}

#[test]
fn reposting_the_patched_pod_gives_no_patch() {
    for name in [
        "pod-secrets-short.json",
        "pod-secrets-long.json",
        "pod-secrets-containers.json",
    ] {
        let (request, _, object) = injected(name);
        let again = answer(Endpoint::Mutate, &with_object(&request, object));
        assert_eq!(again["allowed"], true, "{name}");
        assert!(
            again.get("patch").is_none(),
            "{name}: reinvocation must be idempotent"
        );
    }
}

#[test]
fn long_syntax_mounts_every_container_and_external_target_by_subpath() {
    let (_, pod, _) = injected("pod-secrets-long.json");
    let spec = pod.spec.as_ref().unwrap();
    for c in ["migrate", "mysql", "metrics"] {
        assert!(
            secrets_mount(&pod, c).is_some_and(|m| m.read_only == Some(true)),
            "{c}"
        );
    }
    let mysql = spec.containers.iter().find(|c| c.name == "mysql").unwrap();
    let external = mysql
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/app/token")
        .expect("absolute target mounted by subPath");
    assert_eq!(
        external.sub_path.as_deref(),
        Some(".external/etc/app/token")
    );
    assert_eq!(external.read_only, Some(true));
    // The existing volumes and mounts stay where they were.
    let names: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["cache", "config", "kube-api-access-tch6p", "runsecrets"]
    );
    assert_eq!(mysql.volume_mounts.as_ref().unwrap()[0].name, "cache");
    let attrs = spec.volumes.as_ref().unwrap()[3]
        .csi
        .as_ref()
        .unwrap()
        .volume_attributes
        .clone()
        .unwrap();
    assert_eq!(
        attrs["runsecrets.io/secrets"],
        "source=mysql_root_password,target=mysql_root_password,uid=0,gid=0,mode=0444\n\
         source=tls_key,target=tls/key.pem,uid=999,gid=999,mode=0400\n\
         source=api_token,target=/etc/app/token,uid=0,gid=0,mode=0440"
    );
    // The service-account token mount lands inside /run/secrets through /var/run; the node
    // always pre-creates that one, so it is not listed as an extra mount point.
    assert!(!attrs.contains_key("runsecrets.io/mountpoints"));
}

#[test]
fn containers_annotation_limits_the_mount() {
    let (_, pod, _) = injected("pod-secrets-containers.json");
    assert!(secrets_mount(&pod, "mysql").is_some());
    assert!(secrets_mount(&pod, "migrate").is_some());
    assert!(
        secrets_mount(&pod, "metrics").is_none(),
        "metrics is not listed"
    );
}

#[test]
fn bad_entries_are_denied_naming_each_one() {
    let (_, r) = mutate_fixture("pod-secrets-bad.json");
    assert_eq!(r["allowed"], false);
    assert!(r.get("patch").is_none());
    assert_eq!(r["status"]["code"], 400);
    let message = r["status"]["message"].as_str().expect("message");
    for needle in [
        "entry 1 (source \"x\"): target \"../../etc/passwd\" must not contain",
        "entry 2: missing source",
        "entry 4 (source \"b\"): target \"t\" is declared twice",
        "entry 5: unknown key \"unknownkey\"",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in {message}");
    }
}

/// A mistaken `runsecrets.io/containers` annotation is named in the denial as the secrets
/// annotation is: a word that could be a container name whole, anything else by its position
/// only, and at most five of them. A pasted value or a megabyte of text never comes back.
#[test]
fn a_bad_containers_annotation_is_quoted_bounded_and_cleaned() {
    let request = fixture("pod-secrets-containers.json");
    let hostile = format!(
        "metrics,sidecar,Pasted\u{1b}[31mValue{},{}",
        "x".repeat(100_000),
        (0..40)
            .map(|i| format!("extra{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut body = request.clone();
    body["request"]["object"]["metadata"]["annotations"]["runsecrets.io/containers"] =
        hostile.clone().into();
    let r = answer(Endpoint::Mutate, &serde_json::to_vec(&body).unwrap());
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    let message = r["status"]["message"].as_str().expect("message");
    assert!(message.len() < 1024, "bounded: {} bytes", message.len());
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(
        message.contains("\"sidecar\", name 3 (not a container name), \"extra0\""),
        "names that could be container names whole, nothing of the others: {message}"
    );
    assert!(!message.contains("Pasted"), "{message}");
    assert!(
        message.contains("\"extra2\" and 37 more match no container"),
        "{message}"
    );
    assert!(
        message.ends_with("match no container (the pod has: migrate, mysql, metrics)"),
        "{message}"
    );
}

#[test]
fn an_existing_mount_at_run_secrets_is_a_conflict() {
    let (_, r) = mutate_fixture("pod-secrets-conflict.json");
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("container \"app\" mounts volume \"old-secrets\" at \"/run/secrets\""),
        "{message}"
    );
}

#[test]
fn dry_run_gets_the_same_answer() {
    let (request, pod, _) = injected("pod-dryrun-secrets.json");
    assert_eq!(request["request"]["dryRun"], true);
    assert!(secrets_mount(&pod, "mysql").is_some());
    let mut real = request.clone();
    real["request"]["dryRun"] = false.into();
    let body = serde_json::to_vec(&real).expect("json");
    let (dry, wet) = (
        answer(Endpoint::Mutate, &fixture_bytes("pod-dryrun-secrets.json")),
        answer(Endpoint::Mutate, &body),
    );
    assert_eq!(
        dry["patch"], wet["patch"],
        "a dry run is answered as the real request"
    );
}

#[test]
fn non_create_and_non_pod_requests_pass_unchanged() {
    for name in [
        "pod-delete.json",
        "pod-delete-final.json",
        "pod-ephemeral-debug.json",
        "deployment-env-literal.json",
        "pod-env-literals.json",
    ] {
        let (_, r) = mutate_fixture(name);
        assert_eq!(r["allowed"], true, "{name}");
        assert!(r.get("patch").is_none(), "{name}");
    }
}

/// The apiserver writes `kind` and `operation` before `object`, and the review reads the object
/// in that one pass; a body in any other order (here: keys sorted, so `object` comes before
/// `operation`) is read in two and must get the very same answer, byte for byte.
#[test]
fn the_answer_does_not_depend_on_the_order_of_the_request_fields() {
    let endpoints = [
        Endpoint::Mutate,
        ENFORCE_BASELINE,
        Endpoint::Validate(Levels::only(Mode::Warn, Level::Strict)),
    ];
    for (name, body) in review_fixtures() {
        let request: Value = serde_json::from_slice(&body).expect("json");
        let text = std::str::from_utf8(&body).expect("utf-8");
        let sent_first = |field: &str| text.find(&format!("\"{field}\":"));
        assert!(
            sent_first("operation") < sent_first("object"),
            "{name}: the capture is in the apiserver's order"
        );
        let sorted = serde_json::to_vec(&request).expect("json");
        for endpoint in endpoints {
            let (as_sent, reordered) = (review(endpoint, &body), review(endpoint, &sorted));
            let (as_sent, reordered) = (as_sent.expect("answered"), reordered.expect("answered"));
            assert_eq!(
                String::from_utf8_lossy(&as_sent.body),
                String::from_utf8_lossy(&reordered.body),
                "{name} {endpoint:?}"
            );
            assert_eq!(as_sent.decision, reordered.decision, "{name} {endpoint:?}");
        }
    }
}

#[test]
fn malformed_bodies_are_errors_that_quote_nothing() {
    for body in [
        &b""[..],
        b"not json",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
        b"{\"request\": {\"uid\": \"hunter2-secret\", \"kind\": 7}}",
    ] {
        let e = review(Endpoint::Mutate, body)
            .expect_err("not a review")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("AdmissionReview"), "{e}");
    }
}

#[test]
fn a_pod_with_a_mistyped_spec_is_denied_without_quoting_it() {
    let mut request = fixture("pod-secrets-short.json");
    request["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] =
        serde_json::json!(["hunter2-secret"]);
    let r = answer(Endpoint::Mutate, &serde_json::to_vec(&request).unwrap());
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot read the Pod: unexpected field type"),
        "{message}"
    );
    assert!(!message.contains("hunter2"));
}

#[test]
fn declared_secrets_must_exist_in_the_pods_namespace() {
    use runsecrets::admission::{review_with, Context};
    use std::collections::HashSet;
    let body = fixture_bytes("pod-secrets-long.json");
    let request = fixture("pod-secrets-long.json");
    let mut catalogue: HashSet<String> = ["shop/mysql_root_password", "other/tls_key"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let context = |c: &HashSet<String>| -> Value {
        let ctx = Context {
            catalogue: Some(c),
            ..Context::default()
        };
        response(
            &review_with(Endpoint::Mutate, ctx, &body)
                .expect("answered")
                .body,
            &request,
        )
    };
    let r = context(&catalogue);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 404);
    let message = r["status"]["message"].as_str().unwrap();
    // tls_key exists, but in another namespace: a pod only gets secrets of its own.
    assert!(message.contains("secret \"tls_key\" does not exist in namespace \"shop\"; create it with: runsecrets secret create -n shop tls_key FILE"), "{message}");
    assert!(
        message.contains("secret \"api_token\" does not exist"),
        "{message}"
    );
    assert!(!message.contains("mysql_root_password"), "{message}");
    catalogue.extend(["shop/tls_key".to_string(), "shop/api_token".to_string()]);
    let r = context(&catalogue);
    common::injected_pod(&request, &r);
}

#[test]
fn an_unreadable_store_fails_closed_unless_told_otherwise() {
    use runsecrets::admission::{review_with, Context, Options};
    use runsecrets::store::catalogue::{Catalogue, Presence};
    struct Broken;
    impl Catalogue for Broken {
        fn presence(&self, _: &str, _: &str) -> Presence {
            Presence::Unknown
        }
    }
    let body = fixture_bytes("pod-secrets-short.json");
    let request = fixture("pod-secrets-short.json");
    let closed = Context {
        catalogue: Some(&Broken),
        ..Context::default()
    };
    let r = response(
        &review_with(Endpoint::Mutate, closed, &body).unwrap().body,
        &request,
    );
    assert_eq!(
        (r["allowed"].clone(), r["status"]["code"].clone()),
        (false.into(), 503.into())
    );
    let open = Context {
        catalogue: Some(&Broken),
        options: Options {
            deny_when_store_unavailable: false,
            ..Options::default()
        },
        ..Context::default()
    };
    let r = response(
        &review_with(Endpoint::Mutate, open, &body).unwrap().body,
        &request,
    );
    assert_eq!(r["allowed"], true);
    // Pods without secrets never depend on the store.
    let plain = fixture_bytes("pod-env-literals.json");
    let r = review_with(Endpoint::Mutate, closed, &plain).unwrap();
    assert!(r.decision.allowed);
}
