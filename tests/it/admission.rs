//! The webhook's answers to the real AdmissionReview bodies captured from a kube-apiserver.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use runsecrets::admission::{review, Endpoint};
use runsecrets::policy::{Level, Levels, Mode};
use serde_json::Value;

const ENFORCE_BASELINE: Endpoint = Endpoint::Validate(Levels {
    enforce: Level::Baseline,
    warn: Level::Off,
    audit: Level::Off,
});

fn answer(endpoint: Endpoint, body: &[u8]) -> Value {
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

#[test]
fn env_literals_are_denied_under_enforce_and_warned_under_warn() {
    for name in [
        "pod-env-literals.json",
        "deployment-env-literal.json",
        "pod-ephemeral-debug.json",
    ] {
        let body = fixture_bytes(name);
        let request = fixture(name);
        let secrets = env_literals(&request);
        assert!(!secrets.is_empty(), "{name} has literals");

        let denied = answer(ENFORCE_BASELINE, &body);
        assert_eq!(denied["allowed"], false, "{name}");
        assert_eq!(denied["status"]["code"], 403);
        let message = denied["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("_FILE=/run/secrets/"),
            "{name}: the fix is shown: {message}"
        );

        let warned = answer(
            Endpoint::Validate(Levels::only(Mode::Warn, Level::Baseline)),
            &body,
        );
        assert_eq!(warned["allowed"], true, "{name}");
        let warnings = warned["warnings"].as_array().expect("warnings");
        assert!(!warnings.is_empty());
        for w in warnings {
            assert!(
                w.as_str().unwrap().chars().count() <= 120,
                "short warning: {w}"
            );
        }

        let audited = answer(
            Endpoint::Validate(Levels::only(Mode::Audit, Level::Baseline)),
            &body,
        );
        assert_eq!(audited["allowed"], true);
        assert!(
            audited["auditAnnotations"]["audit-violations"].is_string(),
            "{name}"
        );

        for r in [&denied, &warned, &audited] {
            assert_no_secret(&r.to_string(), &secrets, name);
        }
    }
}

#[test]
fn every_literal_of_the_env_fixture_is_named_and_benign_ones_are_not() {
    let r = answer(ENFORCE_BASELINE, &fixture_bytes("pod-env-literals.json"));
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Pod \"shop/env-literals\""),
        "{message}"
    );
    assert!(message.contains("initContainer \"init-db\": env PGPASSWORD"));
    for var in [
        "DB_PASSWORD",
        "API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "DATABASE_URL",
        "ID_ASSERTION",
        "SIGNING_MATERIAL",
        "SLACK_BOT",
    ] {
        assert!(
            message.contains(&format!("container \"app\": env {var} ")),
            "{var}: {message}"
        );
    }
    for benign in [
        "LOG_LEVEL",
        "PASSWORD_FILE",
        "TOKEN_TTL",
        "EMPTY",
        "REF",
        "POD_NAME",
    ] {
        assert!(
            !message.contains(&format!("env {benign} ")),
            "{benign} flagged"
        );
    }
}

#[test]
fn the_ephemeral_debug_container_literal_is_found() {
    let r = answer(ENFORCE_BASELINE, &fixture_bytes("pod-ephemeral-debug.json"));
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("ephemeralContainer \"debugger\": env TOKEN"),
        "{message}"
    );
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

fn deployment_update(change: impl Fn(&mut Value)) -> Vec<u8> {
    let mut request = fixture("deployment-env-literal.json");
    request["request"]["operation"] = "UPDATE".into();
    request["request"]["oldObject"] = request["request"]["object"].clone();
    change(&mut request["request"]["object"]);
    serde_json::to_vec(&request).unwrap()
}

#[test]
fn workload_updates_follow_the_pod_security_rule() {
    // Scaling a Deployment that already had the literal keeps working…
    let scaled = deployment_update(|o| o["spec"]["replicas"] = 5.into());
    assert_eq!(answer(ENFORCE_BASELINE, &scaled)["allowed"], true);
    // …but a template change is judged whole: its new ReplicaSet's pods would be refused.
    let new_image = deployment_update(|o| {
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "mysql:9".into()
    });
    let r = answer(ENFORCE_BASELINE, &new_image);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("env MYSQL_ROOT_PASSWORD"));
}

#[test]
fn deletes_are_not_judged_even_when_the_old_pod_has_literals() {
    let mut request = fixture("pod-delete.json");
    request["request"]["oldObject"]["spec"]["containers"][0]["env"] =
        serde_json::json!([{"name": "DB_PASSWORD", "value": "old-literal-value"}]);
    let r = answer(ENFORCE_BASELINE, &serde_json::to_vec(&request).unwrap());
    assert_eq!(r["allowed"], true);
}

#[test]
fn unreadable_objects_are_only_refused_where_they_concern_us() {
    let mut request = fixture("pod-env-literals.json");
    request["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = serde_json::json!(7);
    let body = serde_json::to_vec(&request).unwrap();
    // A warn entry never refuses, and /mutate leaves pods without secrets to the apiserver.
    let warn = answer(
        Endpoint::Validate(Levels::only(Mode::Warn, Level::Baseline)),
        &body,
    );
    assert_eq!(warn["allowed"], true, "{warn}");
    assert_eq!(answer(Endpoint::Mutate, &body)["allowed"], true);
    assert_eq!(answer(ENFORCE_BASELINE, &body)["allowed"], false);
}

#[test]
fn a_denial_lists_at_most_twenty_findings() {
    let mut request = fixture("pod-env-literals.json");
    let env: Vec<Value> = (0..50)
        .map(|i| serde_json::json!({"name": format!("DB_PASSWORD_{i}"), "value": format!("literal-{i}-value")}))
        .collect();
    request["request"]["object"]["spec"]["containers"][0]["env"] = env.into();
    let body = serde_json::to_vec(&request).unwrap();
    let r = answer(
        Endpoint::Validate(Levels {
            enforce: Level::Baseline,
            warn: Level::Baseline,
            audit: Level::Off,
        }),
        &body,
    );
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("and 31 more"), "{message}"); // 50 + PGPASSWORD in the init container
    assert!(r["warnings"].as_array().unwrap().len() <= 21);
}

#[test]
fn an_update_that_adds_no_finding_is_allowed() {
    // The old object already had the literal: labelling such a pod must keep working.
    let mut request = fixture("pod-ephemeral-debug.json");
    request["request"]["oldObject"] = request["request"]["object"].clone();
    let r = answer(ENFORCE_BASELINE, &serde_json::to_vec(&request).unwrap());
    assert_eq!(r["allowed"], true, "{r}");
}

#[test]
fn secret_refs_pass_baseline_and_fail_strict() {
    let body = fixture_bytes("pod-env-secretref.json");
    assert_eq!(answer(ENFORCE_BASELINE, &body)["allowed"], true);
    let strict = answer(
        Endpoint::Validate(Levels::only(Mode::Enforce, Level::Strict)),
        &body,
    );
    assert_eq!(strict["allowed"], false);
    let message = strict["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("env DB_PASSWORD comes from Secret \"db\""),
        "{message}"
    );
    assert!(
        message.contains("envFrom takes every key of Secret \"app-secrets\""),
        "{message}"
    );
    assert!(
        !message.contains("app-config"),
        "configMapRef is fine: {message}"
    );
}

#[test]
fn exempted_variables_are_allowed_and_recorded_for_audit() {
    let mut request = fixture("pod-env-literals.json");
    request["request"]["object"]["metadata"]["annotations"]["runsecrets.io/allow-env"] =
        "PGPASSWORD, DB_PASSWORD".into();
    let body = serde_json::to_vec(&request).unwrap();
    let r = answer(
        Endpoint::Validate(Levels {
            enforce: Level::Baseline,
            warn: Level::Off,
            audit: Level::Baseline,
        }),
        &body,
    );
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        !message.contains("PGPASSWORD") && !message.contains("env DB_PASSWORD"),
        "{message}"
    );
    assert!(message.contains("API_KEY"));
    let exempted = r["auditAnnotations"]["exempted-env"]
        .as_str()
        .expect("recorded");
    assert!(
        exempted.contains("init-db env PGPASSWORD") && exempted.contains("app env DB_PASSWORD")
    );
}

#[test]
fn exemptions_can_be_switched_off_cluster_wide() {
    let mut request = fixture("pod-env-literals.json");
    request["request"]["object"]["metadata"]["annotations"]["runsecrets.io/allow-env"] =
        "PGPASSWORD".into();
    let body = serde_json::to_vec(&request).unwrap();
    let context = runsecrets::admission::Context {
        options: runsecrets::admission::Options {
            allow_env_exemptions: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = runsecrets::admission::review_with(ENFORCE_BASELINE, context, &body).unwrap();
    let r = response(&answer.body, &request);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("env PGPASSWORD"));
}

#[test]
fn level_off_and_deletes_are_allowed_without_findings() {
    let r = answer(
        Endpoint::Validate(Levels::default()),
        &fixture_bytes("pod-env-literals.json"),
    );
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none());
    for name in ["pod-delete.json", "pod-delete-final.json"] {
        let r = answer(
            Endpoint::Validate(Levels::only(Mode::Enforce, Level::Strict)),
            &fixture_bytes(name),
        );
        assert_eq!(r["allowed"], true, "{name}");
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

/// An AdmissionReview of a RunSecret as `kubectl apply` of `runsecrets seal`'s output sends it.
fn run_secret_review(object: Value, operation: &str) -> Vec<u8> {
    run_secret_update(object, operation, Value::Null)
}

/// The same with the stored object (`oldObject`) an UPDATE carries.
fn run_secret_update(object: Value, operation: &str, old: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "rs-1", "kind": {"group": "runsecrets.io", "version": "v1", "kind": "RunSecret"},
            "resource": {"group": "runsecrets.io", "version": "v1", "resource": "runsecrets"},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": operation,
            "userInfo": {"username": "dev"}, "object": object, "oldObject": old, "dryRun": false,
        }
    }))
    .expect("json")
}

#[test]
fn run_secrets_that_break_the_rules_are_refused_at_creation() {
    use runsecrets::admission::{review_with, Context};
    use runsecrets::seal::Keyring;
    let ring = Keyring::generate();
    let keys = ring.public_keys().unwrap();
    let yaml = runsecrets::secrets::seal_manifest(
        &keys,
        "shop",
        "db_password",
        zeroize::Zeroizing::new(b"v4lue".to_vec()),
        Default::default(),
        vec![],
    )
    .unwrap();
    let good: Value = serde_norway::from_str(&yaml).unwrap();
    let verdict = |object: Value, keys: &runsecrets::seal::PublicKeys| -> (bool, String) {
        let body = run_secret_review(object, "CREATE");
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
    let (ok, message) = verdict(good.clone(), &other_cluster);
    assert!(
        !ok && message.contains("is not a key of this cluster"),
        "{message}"
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
        &run_secret_update(labelled, "UPDATE", good),
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
    let yaml = runsecrets::secrets::seal_manifest(
        &first,
        "shop",
        "db_password",
        zeroize::Zeroizing::new(b"v4lue".to_vec()),
        Default::default(),
        vec![],
    )
    .unwrap();
    let old: Value = serde_norway::from_str(&yaml).unwrap();
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
        let body = run_secret_update(object.clone(), "UPDATE", old.clone());
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
    let (ok, message) = verdict_with(&good, Some(&keys), None);
    assert!(!ok && message.contains("keyring is locked"), "{message}");
    let (ok, message) = verdict_with(&good, None, None);
    assert!(
        !ok && message.contains("this server has no keyring (--store none)"),
        "{message}"
    );

    let mut tampered = good.clone();
    tampered["spec"]["digest"] = old["spec"]["digest"].clone();
    let (ok, message) = verdict(&tampered);
    assert!(
        !ok && message.contains("digest does not match"),
        "{message}"
    );

    let mut relabelled = good.clone();
    relabelled["spec"]["keyId"] = old["spec"]["keyId"].clone();
    let (ok, message) = verdict(&relabelled);
    assert!(
        !ok && message.contains("does not match the sealed envelope"),
        "{message}"
    );
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
    let yaml = runsecrets::secrets::seal_manifest(
        &ring.public_keys().unwrap(),
        "shop",
        "db_password",
        zeroize::Zeroizing::new(b"v4lue".to_vec()),
        Default::default(),
        vec![],
    )
    .unwrap();
    let old: Value = serde_norway::from_str(&yaml).unwrap();
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
        let body = run_secret_update(object.clone(), "UPDATE", old.clone());
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
    let yaml = runsecrets::secrets::seal_manifest(
        &keys,
        "shop",
        "tls_key",
        zeroize::Zeroizing::new(largest),
        Default::default(),
        vec![],
    )
    .unwrap();
    let good: Value = serde_norway::from_str(&yaml).unwrap();
    let verdict = |object: &Value| -> (bool, String) {
        let ctx = Context {
            keys: Some(&keys),
            ..Context::default()
        };
        let body = run_secret_review(object.clone(), "CREATE");
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
