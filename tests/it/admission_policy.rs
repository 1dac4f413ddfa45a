//! The env-credential policy at `/validate`: literals refused under enforce and warned under
//! warn, every finding named, updates judged as Pod Security Admission judges them, exemptions.

use runsecrets::admission::Endpoint;
use runsecrets::policy::{Level, Levels, Mode};
use serde_json::Value;

use crate::admission::{answer, ENFORCE_BASELINE};
use crate::common::*;

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
