//! The keyring protected at rest, through the binary as an operator runs it: `keys protect`
//! (autolock here; PKCS#11 in keyring_pkcs11.rs, rotation in keyring_rotation.rs), a server that starts
//! locked and is unlocked over TLS or by a mounted file, and what the stored keyring alone
//! gives away (nothing). Every log line of every run is checked for key material.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::binary::{run_in, Run, ServerProcess};
use common::tls::{plain_get, Client};

pub(crate) const VALUE: &str = "keyring-at-rest-value-7c1e";

pub(crate) fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    run_in(dir, args, env, stdin)
}

/// The private keys of a plain keyring file, as they are stored (base64).
pub(crate) fn private_keys(keyring: &Path) -> Vec<String> {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keyring).expect("keyring")).expect("json");
    value["keys"]
        .as_array()
        .expect("a plain keyring")
        .iter()
        .map(|k| k["private"].as_str().expect("private").to_string())
        .collect()
}

/// A data directory with one secret (`shop/db_password`), hence a plain keyring.
pub(crate) fn store_with_a_secret() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = cli(
        dir.path(),
        &[
            "secret",
            "create",
            "-n",
            "shop",
            "db_password",
            "-",
            "--store",
            "file:.",
        ],
        &[],
        Some(VALUE),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let privates = private_keys(&dir.path().join("keyring.json"));
    (dir, privates)
}

/// The unlock key printed by `keys protect --autolock`.
pub(crate) fn unlock_key_of(out: &Run) -> String {
    out.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("RSUNLOCK-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {}", out.stdout))
        .to_string()
}

/// `keys protect --autolock` on the file store in `d`; the unlock key it showed once.
pub(crate) fn autolock(d: &Path) -> String {
    let out = cli(
        d,
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    unlock_key_of(&out)
}

pub(crate) fn keyring_id_of(keyring: &Path) -> String {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keyring).expect("keyring")).expect("json");
    value["keyringId"]
        .as_str()
        .expect("a wrapped keyring")
        .to_string()
}

/// The wrapped keyring holds no private key, is 0600, and no temporary file is left.
pub(crate) fn assert_wrapped(dir: &Path, privates: &[String], kind: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("keyring.json");
    let text = std::fs::read_to_string(&path).expect("keyring");
    for private in privates {
        assert!(
            !text.contains(private.as_str()),
            "a private key is still stored"
        );
    }
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["format"], "runsecrets.io/wrapped-keyring/v1");
    assert_eq!(value["protector"]["kind"], kind);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".keyring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A node plugin's publish of `shop/db_password`: status and body.
pub(crate) async fn publish(dir: &Path, delivery: SocketAddr) -> (u16, String) {
    common::node_publish(dir, delivery, &["db_password"]).await
}

pub(crate) fn delivered(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("json");
    let data = value["secrets"][0]["data"].as_str().expect("data");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64"),
    )
    .expect("utf-8")
}

/// No line of `lines` holds any of `secrets`.
#[track_caller]
pub(crate) fn assert_no_key_material(lines: &[String], secrets: &[&str]) {
    for line in lines {
        for secret in secrets {
            assert!(!line.contains(secret), "key material in a log line: {line}");
        }
    }
}

/// Swarm's autolock on the file store: protect prints the key once; the server starts locked
/// (deliveries 503, /readyz 503 "locked", admission and the public keys still served); a
/// wrong key is refused and rate limited; the right one unlocks over TLS and deliveries
/// resume. Nothing of the keys shows in any output but the one report.
#[tokio::test(flavor = "multi_thread")]
async fn an_autolocked_keyring_serves_nothing_until_unlocked() {
    let (dir, privates) = store_with_a_secret();
    let d = dir.path();
    let plain_public = cli(
        d,
        &["seal", "-n", "shop", "x", "-", "--store", "file:."],
        &[],
        Some("v"),
    );
    assert_eq!(plain_public.code, 0, "{}", plain_public.stderr);
    let public_before = std::fs::read_to_string(d.join("keyring.json")).expect("keyring");

    let out = cli(
        d,
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unlock_key = unlock_key_of(&out);
    let id = keyring_id_of(&d.join("keyring.json"));
    assert!(
        out.stdout.starts_with(&format!(
            "protected keyring {id} in ./keyring.json: wrapped by an unlock key (autolock)"
        )),
        "{}",
        out.stdout
    );
    assert_wrapped(d, &privates, "autolock");
    // The same keys were stored unwrapped: the report says how to be rid of them.
    assert!(
        out.stdout
            .contains("`runsecrets keys rotate`, `runsecrets secret reseal --all`"),
        "{}",
        out.stdout
    );

    // Protecting again changes nothing and says why.
    let stored = std::fs::read(d.join("keyring.json")).expect("keyring");
    let again = cli(
        d,
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(again.code, 1);
    assert_eq!(
        again.stderr,
        format!(
            "Error: protecting the keyring ./keyring.json: keyring {id} is already protected (autolock); nothing was changed\n"
        )
    );
    assert_eq!(
        std::fs::read(d.join("keyring.json")).expect("keyring"),
        stored
    );

    // Sealing needs only the public keys: the CLI still creates secrets.
    let created = cli(
        d,
        &[
            "secret",
            "create",
            "-n",
            "shop",
            "mysql_root_password",
            "-",
            "--store",
            "file:.",
        ],
        &[],
        Some(VALUE),
    );
    assert_eq!(created.code, 0, "{}", created.stderr);

    let process = ServerProcess::server(d, &[], &[]);
    let addrs = process.serving();
    process.wait_for(&["the keyring is locked (autolock)", &id]);
    let (status, body) = plain_get(addrs.admin, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "locked: the keyring waits for its unlock key (run runsecrets unlock)\n"
        )
    );
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 503, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        error["message"],
        "the server is locked: run runsecrets unlock"
    );
    // The public keys and admission need no private key.
    let ca = std::fs::read(d.join("tls/ca.crt")).expect("CA");
    let mut webhook = Client::open(addrs.webhook, &ca).await;
    let (status, keys) = webhook.send("GET", "/v1/keys", vec![]).await;
    assert_eq!(status, 200);
    let keys: serde_json::Value = serde_json::from_slice(&keys).expect("keys");
    let plain: serde_json::Value = serde_json::from_str(&public_before).expect("json");
    assert_eq!(keys["keys"][0]["id"], plain["keys"][0]["id"]);
    let review = common::fixture("pod-secrets-short.json");
    let (status, answer) = webhook
        .send(
            "POST",
            "/mutate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
    assert_eq!(status, 200);
    // The mount is injected while locked.
    common::injected_pod(&review, &common::response(&answer, &review));

    // A wrong key: 403 naming the keyring; the right key right after: rate limited.
    let ca_path = d.join("tls/ca.crt");
    let server_url = format!("https://{}", addrs.delivery);
    let unlock = |key: &str| {
        cli(
            d,
            &[
                "unlock",
                "--server",
                &server_url,
                "--ca",
                ca_path.to_str().expect("utf-8"),
            ],
            &[],
            Some(&format!("{key}\n")),
        )
    };
    let wrong = format!("RSUNLOCK-1-{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let refused = unlock(&wrong);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        format!("Error: the server refused (HTTP 403): the unlock key does not open keyring {id}: it is another keyring's unlock key, or the keyring was altered\n")
    );
    let limited = unlock(&unlock_key);
    assert_eq!(limited.code, 1);
    assert_eq!(
        limited.stderr,
        "Error: the server refused (HTTP 429): an unlock attempt failed less than a second ago; try again in a second\n"
    );
    let malformed = unlock("hunter2");
    assert_eq!(malformed.code, 1);
    assert!(
        malformed.stderr.starts_with("Error: not an unlock key"),
        "{}",
        malformed.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let unlocked = unlock(&unlock_key);
    assert_eq!(unlocked.code, 0, "{}", unlocked.stderr);
    assert_eq!(unlocked.stdout, format!("unlocked keyring {id}\n"));

    let (status, body) = plain_get(addrs.admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE);
    let again = unlock(&unlock_key);
    assert_eq!(again.stdout, format!("keyring {id} is already unlocked\n"));

    let lines = process.stop();
    let mut secrets: Vec<&str> = privates.iter().map(String::as_str).collect();
    secrets.extend([unlock_key.as_str(), &unlock_key[11..], VALUE]);
    assert_no_key_material(&lines, &secrets);
    for run in [&again, &refused, &limited, &unlocked, &created] {
        run.assert_no_values(&secrets);
    }
    // The report is the one place the unlock key shows; never a private key.
    out.assert_no_values(&privates.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `--unlock-key-file`: a locked server reads the file until it holds the right key; a
/// missing file and a wrong key each get one log line, and the server stays locked meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_unlock_key_file_unlocks_the_server() {
    let (dir, privates) = store_with_a_secret();
    let d = dir.path();
    let unlock_key = autolock(d);
    let key_dir = tempfile::tempdir().expect("tmp");
    let key_file = key_dir.path().join("unlock-key");
    let process = ServerProcess::server(
        d,
        &["--unlock-key-file", key_file.to_str().expect("utf-8")],
        &[],
    );
    let addrs = process.serving();
    process.wait_for(&["the keyring stays locked", "reading --unlock-key-file"]);
    std::fs::write(
        &key_file,
        format!("RSUNLOCK-1-{}\n", URL_SAFE_NO_PAD.encode([9u8; 32])),
    )
    .expect("write");
    process.wait_for(&[
        "the keyring stays locked",
        "the unlock key does not open keyring",
    ]);
    let (status, _) = plain_get(addrs.admin, "/readyz").await;
    assert_eq!(status, 503);
    std::fs::write(&key_file, format!("{unlock_key}\n")).expect("write");
    process.wait_for(&["unlocked the keyring with --unlock-key-file"]);
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE);
    let lines = process.stop();
    let stays_locked = lines.iter().filter(|l| l.contains("stays locked")).count();
    assert_eq!(stays_locked, 2, "each failure once:\n{}", lines.join("\n"));
    let mut secrets: Vec<&str> = privates.iter().map(String::as_str).collect();
    secrets.extend([&unlock_key[11..], VALUE]);
    assert_no_key_material(&lines, &secrets);
}

/// A keyring created protected never existed unwrapped: its report gives no advice about
/// unwrapped copies.
#[test]
fn a_keyring_created_protected_has_no_unwrapped_copies_to_warn_about() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = cli(
        dir.path(),
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("created keyring "), "{}", out.stdout);
    assert!(
        !out.stdout.contains("unwrapped until now"),
        "{}",
        out.stdout
    );
    unlock_key_of(&out);
}

/// A missing --unlock-key-file is named, with the OS's reason, once.
#[test]
fn a_missing_unlock_key_file_is_named() {
    let (dir, _) = store_with_a_secret();
    let d = dir.path();
    autolock(d);
    let out = cli(
        d,
        &[
            "keys",
            "rotate",
            "--store",
            "file:.",
            "--unlock-key-file",
            "/nope/unlock-key",
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("reading the unlock key file /nope/unlock-key: No such file or directory"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("/nope/unlock-key").count(),
        1,
        "{}",
        out.stderr
    );
}
