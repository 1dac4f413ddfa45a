//! `runsecrets review` and `runsecrets scan`, run as the real binary on the manifests in
//! tests/manifests.

use crate::common;

use std::path::PathBuf;

use common::binary::Run;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde::Deserialize;
use serde_json::{json, Value};

/// Literal values in the manifests; no output may contain them.
const VALUES: [&str; 4] = [
    "foobar-literal-value",
    "tok-Literal-Value-ABC-987",
    "broken-Secret-Value-4242",
    "tagged-Secret-Value-5151",
];

#[track_caller]
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
}

fn manifests() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/manifests")
}

/// Runs the binary in tests/manifests, so file names in its output are relative to it.
fn run(args: &[&str], stdin: Option<&str>) -> Run {
    common::binary::run_in(&manifests(), args, &[], stdin)
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("review prints valid YAML"))
        .collect()
}

/// Checks the runsecrets volume and every container's mount; returns the declared references.
fn assert_injected(spec: &PodSpec) -> String {
    let volumes: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.name == "runsecrets")
        .collect();
    assert_eq!(volumes.len(), 1, "one runsecrets volume: {spec:?}");
    let csi = volumes[0].csi.as_ref().expect("a CSI volume");
    assert_eq!(
        (csi.driver.as_str(), csi.read_only),
        ("runsecrets.io", Some(true))
    );
    for c in &spec.containers {
        let mounts = c.volume_mounts.iter().flatten();
        let mount = mounts
            .filter(|m| m.name == "runsecrets")
            .find(|m| m.mount_path == "/run/secrets")
            .unwrap_or_else(|| panic!("container {} has no /run/secrets mount", c.name));
        assert_eq!(mount.read_only, Some(true), "{}", c.name);
    }
    let attributes = csi.volume_attributes.as_ref().expect("volume attributes");
    attributes["runsecrets.io/secrets"].clone()
}

fn check_mutated(stdout: &str) {
    let docs = yaml_documents(stdout);
    assert_eq!(docs.len(), 2, "{stdout}");

    let pod: Pod = serde_json::from_value(docs[0].clone()).expect("a Pod");
    assert_eq!(pod.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        assert_injected(pod.spec.as_ref().expect("spec")),
        "source=db_password,target=db_password,uid=0,gid=0,mode=0444\n\
         source=tls_key,target=tls/key.pem,uid=0,gid=0,mode=0400"
    );

    let deployment: Deployment = serde_json::from_value(docs[1].clone()).expect("a Deployment");
    assert_eq!(deployment.metadata.name.as_deref(), Some("mysql"));
    let template = &docs[1]["spec"]["template"];
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template["metadata"],
        "spec": template["spec"],
    }))
    .expect("the template is a pod");
    assert_eq!(
        assert_injected(pod.spec.as_ref().expect("spec")),
        "source=mysql_root_password,target=mysql_root_password,uid=0,gid=0,mode=0444"
    );
}

#[test]
fn review_injects_the_volume_into_pods_and_workload_templates() {
    let out = run(&["review", "review/workloads.yaml"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    check_mutated(&out.stdout);
}

#[test]
fn review_reads_standard_input() {
    let text = std::fs::read_to_string(manifests().join("review/workloads.yaml")).expect("file");
    let out = run(&["review", "-"], Some(&text));
    assert_eq!(out.code, 0, "{}", out.stderr);
    check_mutated(&out.stdout);
}

#[test]
fn review_refuses_a_literal_password_without_showing_it() {
    let out = run(&["review", "review/literal-env.yaml"], None);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    let fix = "MYSQL_ROOT_PASSWORD_FILE=/run/secrets/";
    let parts = [
        "review/literal-env.yaml",
        "container \"mysql\"",
        "env MYSQL_ROOT_PASSWORD ",
    ];
    assert_mentions(&out.stderr, &parts);
    assert_mentions(&out.stderr, &[fix]);
    assert!(!out.stderr.contains("MYSQL_DATABASE"), "{}", out.stderr);
    out.assert_no_values(&VALUES);
}

#[test]
fn review_refuses_a_target_escaping_the_secrets_directory() {
    let out = run(&["review", "review/bad-annotation.yaml"], None);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    let entry = "entry 1 (source \"x\"): target \"../../etc/passwd\"";
    assert_mentions(&out.stderr, &["Pod \"shop/escape\"", entry, "\"..\""]);
}

#[test]
fn scan_prints_one_line_per_finding() {
    let out = run(&["scan", "scan"], None);
    assert_eq!((out.code, out.stderr.as_str()), (1, ""));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let pod = [
        "Pod \"shop/mysql\"",
        "initContainer \"init-db\"",
        "MYSQL_ROOT_PASSWORD",
    ];
    let cron = [
        "CronJob \"shop/report\"",
        "container \"report\"",
        "API_TOKEN",
    ];
    for (line, parts) in lines.iter().zip([pod, cron]) {
        assert!(line.starts_with("scan/leaky.yaml: "), "{line}");
        assert_mentions(line, &parts);
    }
    // clean.yaml and the secretKeyRef in secret-ref.yaml are fine at baseline.
    assert!(!out.stdout.contains("clean.yaml") && !out.stdout.contains("REDIS"));
    out.assert_no_values(&VALUES);
}

#[test]
fn scan_prints_json_findings() {
    let out = run(&["scan", "--format", "json", "scan"], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let findings: Vec<Value> = serde_json::from_str(&out.stdout).expect("a JSON array");
    assert_eq!(findings.len(), 2, "{}", out.stdout);
    let pod = json!({
        "file": "scan/leaky.yaml",
        "document": 1,
        "object": "Pod \"shop/mysql\"",
        "container_kind": "initContainer",
        "container": "init-db",
        "variable": "MYSQL_ROOT_PASSWORD",
        "rule": "name",
        "reason": "name contains \"PASSWORD\"",
    });
    let cron = json!({
        "file": "scan/leaky.yaml",
        "document": 2,
        "object": "CronJob \"shop/report\"",
        "container_kind": "container",
        "container": "report",
        "variable": "API_TOKEN",
        "rule": "name",
        "reason": "name contains \"TOKEN\"",
    });
    assert_eq!(findings, [pod, cron]);
    out.assert_no_values(&VALUES);
}

#[test]
fn scan_of_clean_manifests_is_silent() {
    let clean = ["scan", "scan/clean.yaml", "scan/secret-ref.yaml"];
    for args in [&clean[..2], &clean[..]] {
        let out = run(args, None);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    }
}

#[test]
fn strict_level_also_flags_secret_key_refs() {
    let out = run(&["scan", "--level", "strict", "scan/secret-ref.yaml"], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let parts = [
        "StatefulSet \"shop/cache\"",
        "container \"redis\"",
        "env REDIS_PASSWORD:",
    ];
    assert_mentions(&out.stdout, &parts);
    assert_mentions(&out.stdout, &["Secret \"cache-auth\"", "[secret-key-ref]"]);

    let all = run(&["scan", "--level=strict", "scan"], None);
    assert_eq!(all.code, 1, "{}", all.stderr);
    assert_eq!(all.stdout.lines().count(), 3, "{}", all.stdout);
}

#[test]
fn unreadable_input_exits_2_naming_the_file() {
    let missing = run(&["scan", "no-such-dir/app.yaml"], None);
    assert_eq!(missing.code, 2, "{}", missing.stdout);
    assert_mentions(&missing.stderr, &["no-such-dir/app.yaml"]);

    // One unreadable file fails the scan, even next to clean ones; every bad file is named,
    // by position only: the parser's messages could quote the secret.
    let broken = run(&["scan", "invalid", "scan/clean.yaml"], None);
    assert_eq!((broken.code, broken.stdout.as_str()), (2, ""));
    let files = [
        "invalid/broken.yaml: document 1",
        "invalid/tagged.yaml: document 1",
    ];
    assert_mentions(&broken.stderr, &files);
    assert_eq!(
        broken.stderr.matches(" at line ").count(),
        2,
        "{}",
        broken.stderr
    );
    broken.assert_no_values(&VALUES);

    let review = run(&["review", "invalid/tagged.yaml"], None);
    assert_eq!((review.code, review.stdout.as_str()), (2, ""));
    assert_mentions(&review.stderr, &["invalid/tagged.yaml"]);
    review.assert_no_values(&VALUES);
}

/// An error says each step once: the step's text, then its cause, never the cause twice.
#[test]
fn a_startup_error_names_the_file_once_and_its_cause_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let mut args = vec![
        "server",
        "--tls-cert",
        "/nope",
        "--tls-key",
        "/nope",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(&common::binary::LOOPBACK_LISTENERS);
    let out = common::binary::run_in(dir.path(), &args, &[], None);
    assert_ne!(out.code, 0);
    let error = out
        .stderr
        .lines()
        .find(|l| l.contains("/nope"))
        .unwrap_or_else(|| panic!("no error naming /nope:\n{}", out.stderr));
    assert_eq!(error.matches("/nope").count(), 1, "{error}");
    assert_eq!(
        error.matches("No such file or directory").count(),
        1,
        "{error}"
    );
    assert!(error.contains("loading TLS: reading /nope"), "{error}");
}
