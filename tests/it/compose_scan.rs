//! `runsecrets scan` on Compose files: findings with their file and line, env files read as
//! written, and a part that cannot be read reported without losing the findings of the rest.

use crate::compose_common;

use compose_common::{corpus, run_in};

#[test]
fn scan_finds_literal_credentials_in_compose_files_with_lines() {
    let dir = corpus().join("literal-creds");
    let out = run_in(&dir, &["scan", "compose.yaml"], &[], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("compose.yaml:5: Compose service \"db\": environment MARIADB_ROOT_PASSWORD: name contains \"PASSWORD\" [name]; fix: "), "{}", lines[0]);
    assert!(lines[0].contains("MARIADB_ROOT_PASSWORD_FILE=/run/secrets/db_mariadb_root_password"));
    assert!(lines[1].starts_with("compose.yaml:12: Compose service \"shop\": environment DATABASE_URL: value looks like a URL with a password [url-password]"), "{}", lines[1]);
    // Interpolated at deploy time, but still a credential in the container's env.
    assert!(lines[2].starts_with("compose.yaml:13: Compose service \"shop\": environment SESSION_SECRET: name contains \"SECRET\" (value interpolated when Compose runs) [name]"), "{}", lines[2]);
    assert!(lines[3].starts_with("app.env:2: Compose service \"shop\": env_file STRIPE_KEY: value looks like a Stripe key [stripe-key]"), "{}", lines[2]);
    out.assert_no_values();

    let json = run_in(
        &dir,
        &["scan", "--format", "json", "compose.yaml"],
        &[],
        None,
    );
    let findings: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(findings[0]["line"], 5);
    assert_eq!(findings[3]["file"], "app.env");
    json.assert_no_values();

    // A project that uses secrets: and _FILE scans clean.
    let clean = run_in(
        &corpus().join("wordpress"),
        &["scan", "compose.yaml"],
        &[],
        None,
    );
    assert_eq!(
        (clean.code, clean.stdout.as_str()),
        (0, ""),
        "{}",
        clean.stderr
    );
}

#[test]
fn scan_recognises_compose_by_content_and_walks_directories() {
    let out = run_in(&corpus().join("scan"), &["scan", "."], &[], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("stack.yml:6: Compose service \"api\": environment JWT_SECRET"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("stack.yml:9: Compose service \"api\": build.args NPM_TOKEN"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("RUN --mount=type=secret,id=npm_token"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    out.assert_no_values();
}

/// A variable already named `X_FILE` but holding a literal keeps its name in the fix (not
/// `X_FILE_FILE`).
#[test]
fn scan_fix_for_a_file_variable_holding_a_literal_keeps_its_name() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db:\n    image: example/db\n    environment:\n      DB_PASSWORD_FILE: \"Xk9#mQ2$$vL7pW4z\"\n",
    )
    .expect("write");
    let out = run_in(dir.path(), &["scan", "compose.yaml"], &[], None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("set DB_PASSWORD_FILE=/run/secrets/"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("_FILE_FILE"), "{}", out.stdout);
}

/// Writes a project of `files` (name, text) into a temporary directory.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

/// `${VAR:?message}` in an env file is Compose's way of saying "set this when you deploy":
/// scan reads the file as written (no shell), so it neither stops nor loses the file's other
/// lines, and a credential's name with a variable for a value is still a finding.
#[test]
fn scan_reads_env_files_with_required_variables_as_written() {
    let dir = project(&[
        (
            "compose.yaml",
            "services:\n  api:\n    image: example/api\n    env_file: api.env\n    environment:\n      JWT_SECRET: Literal-Jwt-Value-8811\n",
        ),
        (
            "api.env",
            "DB_HOST=${DB_HOST:?set DB_HOST}\nDB_PASSWORD=\"${DB_PASSWORD:?set it}\"\nSTRIPE_KEY=sk_live_51HqLiteralValue8812xyzABCDEF\n",
        ),
    ]);
    let out = run_in(dir.path(), &["scan", "compose.yaml"], &[], None);
    assert_eq!((out.code, out.stderr.as_str()), (1, ""), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(
        lines[0].starts_with("compose.yaml:6: Compose service \"api\": environment JWT_SECRET"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("api.env:2: Compose service \"api\": env_file DB_PASSWORD: name contains \"PASSWORD\" (value interpolated when Compose runs) [name]"), "{}", lines[1]);
    assert!(lines[2].starts_with("api.env:3: Compose service \"api\": env_file STRIPE_KEY: value looks like a Stripe key"), "{}", lines[2]);
    out.assert_no_values();
    assert!(!out.stdout.contains("8811") && !out.stdout.contains("8812"));
}

/// An env file that cannot be read or parsed is an error (exit 2) naming it, and the findings
/// of everything else in the project are still reported.
#[test]
fn scan_reports_a_bad_env_file_and_keeps_the_other_findings() {
    let dir = project(&[
        (
            "compose.yaml",
            "services:\n  api:\n    image: example/api\n    env_file: [broken.env, good.env]\n  db:\n    image: example/db\n    env_file:\n      - path: gone.env\n        required: false\n    environment:\n      - DB_PASSWORD=Literal-Db-Value-8813\n",
        ),
        ("broken.env", "OK=1\nBAD KEY=x\n"),
        ("good.env", "API_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a\n"),
    ]);
    let out = run_in(dir.path(), &["scan", "compose.yaml"], &[], None);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("broken.env:2: expected KEY=VALUE"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].starts_with("good.env:1: Compose service \"api\": env_file API_TOKEN"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("compose.yaml:11: Compose service \"db\": environment DB_PASSWORD"),
        "{}",
        lines[1]
    );
    out.assert_no_values();
    for value in ["8813", "ghp_16C7e42F", "BAD KEY"] {
        assert!(!out.stdout.contains(value) && !out.stderr.contains(value));
    }
}
