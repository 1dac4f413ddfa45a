//! `runsecrets scan` on Dockerfiles, run as the real binary on tests/manifests/dockerfiles:
//! multi-stage builds, continuations with comments, heredocs, the escape directive, the legacy
//! ENV form, ONBUILD, `_FILE` names and benign settings.

use crate::common;

use std::path::PathBuf;

use common::binary::Run;
use serde_json::{json, Value};

/// Every literal value in the corpus; no output may contain one.
const VALUES: [&str; 12] = [
    "heredoc-Literal-Value-1100",
    "api-Literal-Value 3300",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_EXAMPLEexampleEXAMPLEexample01234567",
    "url-Literal-Value-4400",
    "default-Literal-Value-5500",
    "script-Literal-Value-6600",
    "onbuild-Literal-Value-7700",
    "ignore-Literal-Value-8800",
    "notes-Literal-Value-9900",
    "3300",
];

/// (file:line, instruction, variable, rule) of every finding in the corpus, in output order.
const EXPECTED: [(&str, &str, &str, &str); 8] = [
    ("dockerfiles/Dockerfile:8", "ARG", "NPM_TOKEN", "name"),
    (
        "dockerfiles/Dockerfile:19",
        "ENV",
        "PAYMENTS_API_KEY",
        "name",
    ),
    ("dockerfiles/Dockerfile.ci:2", "ARG", "CI_JOB_TOKEN", "name"),
    (
        "dockerfiles/Dockerfile.ci:16",
        "ONBUILD ENV",
        "REGISTRY_PASSWORD",
        "name",
    ),
    (
        "dockerfiles/api.Dockerfile:3",
        "ENV",
        "AWS_ACCESS_KEY_ID",
        "aws-access-key-id",
    ),
    (
        "dockerfiles/api.Dockerfile:3",
        "ENV",
        "AWS_SECRET_ACCESS_KEY",
        "aws-secret-access-key",
    ),
    (
        "dockerfiles/api.Dockerfile:7",
        "ENV",
        "GITHUB_TOKEN",
        "github-token",
    ),
    (
        "dockerfiles/api.Dockerfile:8",
        "ENV",
        "DATABASE_URL",
        "url-password",
    ),
];

/// Runs `scan` in tests/manifests, so file names in its output are relative to it.
fn scan(args: &[&str]) -> Run {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let run = common::binary::run_in(&dir, &[&["scan"], args].concat(), &[], None);
    run.assert_no_values(&VALUES);
    run
}

#[test]
fn every_shape_is_read_and_only_credentials_are_flagged() {
    let out = scan(&["dockerfiles"]);
    assert_eq!((out.code, out.stderr.as_str()), (1, ""));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), EXPECTED.len(), "{}", out.stdout);
    for (line, (at, instruction, variable, rule)) in lines.iter().zip(EXPECTED) {
        assert!(line.starts_with(&format!("{at}: ")), "{line}");
        assert!(
            line.contains(&format!(": {instruction} {variable}: ")),
            "{line}"
        );
        assert!(line.contains(&format!(" [{rule}]; fix: ")), "{line}");
    }
    // Stages by name, by index, and the secret-mount fix with an id from the name.
    assert!(lines[0].contains(": stage \"build\": "), "{}", lines[0]);
    assert!(lines[3].contains(": stage 1: "), "{}", lines[3]);
    assert!(
        lines[0].ends_with(
            "fix: build with --secret id=npm_token and use \
             RUN --mount=type=secret,id=npm_token,env=NPM_TOKEN instead of ARG"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("PAYMENTS_API_KEY_FILE=/run/secrets/payments_api_key"),
        "{}",
        lines[1]
    );
    // Heredoc bodies, the .dockerignore and other files are not read as instructions.
    for absent in [
        "INSIDE_HEREDOC",
        "NOT_AN_INSTRUCTION",
        "IGNORED_TOKEN",
        "NOTES_TOKEN",
        "Containerfile",
        "_FILE:",
        "GPG_KEY",
        "SIGNING_KEY_PATH",
    ] {
        assert!(
            !out.stdout.contains(&format!("{absent} ")),
            "{absent}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn json_findings_carry_file_line_stage_and_fix() {
    let out = scan(&["--format", "json", "dockerfiles/api.Dockerfile"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let findings: Vec<Value> = serde_json::from_str(&out.stdout).expect("a JSON array");
    assert_eq!(findings.len(), 4, "{}", out.stdout);
    assert_eq!(
        findings[2],
        json!({
            "file": "dockerfiles/api.Dockerfile",
            "line": 7,
            "stage": "base",
            "instruction": "ENV",
            "variable": "GITHUB_TOKEN",
            "rule": "github-token",
            "reason": "value looks like a GitHub token",
            "fix": "build with --secret id=github_token and use \
                    RUN --mount=type=secret,id=github_token,env=GITHUB_TOKEN instead of ENV; \
                    at run time, deliver it as a file: GITHUB_TOKEN_FILE=/run/secrets/github_token",
        })
    );
    let lines: Vec<u64> = findings
        .iter()
        .map(|f| f["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, [3, 3, 7, 8]);

    let global = scan(&["--format", "json", "dockerfiles/Dockerfile.ci"]);
    let findings: Vec<Value> = serde_json::from_str(&global.stdout).expect("a JSON array");
    assert_eq!(findings[1]["stage"], "1");
    assert_eq!(findings[1]["instruction"], "ONBUILD ENV");
}

#[test]
fn clean_dockerfiles_pass_and_level_off_reports_nothing() {
    let clean = scan(&["dockerfiles/Containerfile"]);
    assert_eq!(
        (clean.code, clean.stdout.as_str(), clean.stderr.as_str()),
        (0, "", "")
    );
    let off = scan(&["--level", "off", "dockerfiles"]);
    assert_eq!((off.code, off.stdout.as_str()), (0, ""));
}

#[test]
fn manifests_and_dockerfiles_are_scanned_together() {
    let out = scan(&["dockerfiles", "scan"]);
    assert_eq!((out.code, out.stderr.as_str()), (1, ""));
    assert_eq!(
        out.stdout.lines().count(),
        2 + EXPECTED.len(),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.starts_with("dockerfiles/Dockerfile:8: "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("scan/leaky.yaml: document 1: "),
        "{}",
        out.stdout
    );
}
