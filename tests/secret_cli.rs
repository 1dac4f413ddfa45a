//! The `docker secret` verbs through the real binary: exit codes, Swarm's messages, stdin,
//! and that no output or file carries the value.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const VALUE: &str = "Tr0ub4dor-and-3-value";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn runsecrets(dir: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let store = format!("file:{}", dir.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_runsecrets"))
        .args(args)
        .args(if args[0] == "crd" {
            vec![]
        } else {
            vec!["--store", store.as_str()]
        })
        .env_remove("RUNSECRETS_NAMESPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("finishes");
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !out.stdout.contains(VALUE) && !out.stderr.contains(VALUE),
        "value printed"
    );
    out
}

#[test]
fn create_ls_inspect_rm_and_seal_as_docker_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let created = runsecrets(
        d,
        &[
            "secret",
            "create",
            "-n",
            "shop",
            "-l",
            "tier=db",
            "db_password",
            "-",
        ],
        Some(VALUE),
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let id = created.stdout.trim().to_string();
    assert_eq!(id.len(), 25);

    let again = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "db_password", "-"],
        Some(VALUE),
    );
    assert_eq!(
        (again.code, again.stderr.trim()),
        (1, "Error: secret shop/db_password already exists")
    );
    let bad = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "bad/name", "-"],
        Some(VALUE),
    );
    assert!(
        bad.code == 1
            && bad
                .stderr
                .contains("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed")
    );
    let empty = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "empty", "-"],
        Some(""),
    );
    assert!(empty.code == 1 && empty.stderr.contains("larger than 0"));

    let ls = runsecrets(
        d,
        &[
            "secret",
            "ls",
            "-n",
            "shop",
            "-q",
            "--filter",
            "label=tier=db",
        ],
        None,
    );
    assert_eq!(ls.stdout.trim(), id);
    assert_eq!(
        runsecrets(d, &["secret", "ls", "-n", "other", "-q"], None).stdout,
        ""
    );
    let inspect = runsecrets(d, &["secret", "inspect", "-n", "shop", "db_password"], None);
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("json");
    assert_eq!(json[0]["id"], id.as_str());
    let missing = runsecrets(d, &["secret", "inspect", "-n", "shop", "nope"], None);
    assert_eq!(
        (missing.code, missing.stderr.trim()),
        (1, "Error: No such secret: nope")
    );

    let sealed = runsecrets(d, &["seal", "-n", "shop", "api_token", "-"], Some(VALUE));
    assert_eq!(sealed.code, 0, "{}", sealed.stderr);
    assert!(sealed.stdout.contains("kind: RunSecret") && sealed.stdout.contains("name: api_token"));

    assert_eq!(
        runsecrets(d, &["secret", "rm", "-n", "shop", "db_password"], None).stdout,
        "db_password\n"
    );
    assert_eq!(
        runsecrets(d, &["secret", "ls", "-n", "shop", "-q"], None).stdout,
        ""
    );

    let mut disk = Vec::new();
    for entry in walk(d) {
        disk.extend(std::fs::read(entry).expect("file"));
    }
    assert!(
        !disk.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
        "plaintext on disk"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn crd_command_prints_the_committed_definition() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = runsecrets(dir.path(), &["crd"], None);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/runsecrets/templates/crd-runsecret.yaml"
    ))
    .expect("committed");
    assert_eq!(out.stdout, committed);
}
