//! The `docker secret` verbs through the real binary: exit codes, Swarm's messages, stdin,
//! and that no output or file carries the value.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::binary::Run;

const VALUE: &str = "Tr0ub4dor-and-3-value";

/// Runs a verb on the file store in `dir` (from `dir`); no output may carry the value.
fn runsecrets(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let store = format!("file:{}", dir.display());
    let mut all = args.to_vec();
    if args[0] != "crd" {
        all.extend(["--store", store.as_str()]);
    }
    let out = common::binary::run_in(dir, &all, &[], stdin);
    out.assert_no_values(&[VALUE]);
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

/// `runsecrets server` on `dir` (ports chosen by the kernel), expected to exit by itself
/// within 20 s; its exit code and standard error.
fn server_exits(dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runsecrets"))
        .args(["server", "--data-dir", dir.to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--delivery-listen", "127.0.0.1:0"])
        .env_remove("RUNSECRETS_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server kept running with an unusable keyring");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("finishes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line of standard error (the server logs its startup before failing).
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// A keyring others can read or change is refused as ssh refuses a private key: one line with
/// the path, the mode and the command that fixes it, from the CLI and the server alike.
#[test]
fn a_keyring_open_to_other_users_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let created = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "a", "-"],
        Some(VALUE),
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let keyring = d.join("keyring.json");
    for mode in [0o644, 0o640, 0o604, 0o666, 0o620] {
        std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let want = format!(
            "keyring {path} is open to other users (mode {mode:04o}) and holds private keys; \
             refusing to use it: run `chmod 600 {path}`",
            path = keyring.display()
        );
        let out = runsecrets(
            d,
            &["secret", "create", "-n", "shop", "b", "-"],
            Some(VALUE),
        );
        assert_eq!(out.code, 1, "{mode:o}");
        assert_eq!(out.stderr, format!("Error: {want}\n"), "{mode:o}");
        let out = runsecrets(d, &["seal", "-n", "shop", "b", "-"], Some(VALUE));
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, format!("Error: {want}\n").as_str())
        );
        let (code, stderr) = server_exits(d);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            last_line(&stderr),
            format!("runsecrets: starting the server: opening the secret store: {want}"),
        );
    }
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "b", "-"],
        Some(VALUE),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// A damaged keyring gets one message that says what is wrong with it, without repeating
/// itself and without quoting the file (it holds private keys).
#[test]
fn a_corrupt_keyring_gets_one_clear_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let keyring = d.join("keyring.json");
    let created = runsecrets(
        d,
        &["secret", "create", "-n", "shop", "a", "-"],
        Some(VALUE),
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let good = std::fs::read_to_string(&keyring).expect("keyring");
    let path = keyring.display();
    let cases = [
        (
            "{\"keys\": [{\"id\": \"fe3a7".to_string(),
            format!("loading the keyring {path}: it is not a runsecrets keyring (truncated JSON at line 1 column 23)"),
        ),
        (
            "".to_string(),
            format!("loading the keyring {path}: it is not a runsecrets keyring (truncated JSON at line 1 column 0)"),
        ),
        (
            "{\"keys\": []}".to_string(),
            format!("loading the keyring {path}: the keyring holds no key"),
        ),
        (
            "{\"private\": \"c2VjcmV0LWtleS1tYXRlcmlhbA==\"}".to_string(),
            format!("loading the keyring {path}: it is not a runsecrets keyring (unexpected field type or shape at line 1 column 43)"),
        ),
        (
            good.replacen("\"private\": \"", "\"private\": \"AAAA", 1),
            format!("loading the keyring {path}: key "),
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&keyring, &text).expect("write");
        let out = runsecrets(
            d,
            &["secret", "create", "-n", "shop", "b", "-"],
            Some(VALUE),
        );
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.starts_with(&format!("Error: {want}")),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        let (code, stderr) = server_exits(d);
        assert_eq!(code, 2, "{stderr}");
        let line = last_line(&stderr);
        let want = format!("runsecrets: starting the server: opening the secret store: {want}");
        assert!(line.starts_with(&want), "{line}");
        // Nothing said twice, and nothing of the file quoted.
        let parts: Vec<&str> = line.split(": ").collect();
        let mut unique = parts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), parts.len(), "{line}");
        assert!(
            !line.contains("c2VjcmV0") && !line.contains("fe3a7"),
            "{line}"
        );
        assert!(!line.contains("sealing"), "not a sealing step: {line}");
    }
}
