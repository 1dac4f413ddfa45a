//! The keyring protected at rest, through the binary as an operator runs it: `keys protect`
//! (autolock, and PKCS#11 on a real SoftHSM2 token the test creates), a server that starts
//! locked and is unlocked over TLS or by a mounted file, and what the stored keyring alone
//! gives away (nothing). Every log line of every run is checked for key material.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::binary::{run_in, Run, ServerProcess};
use common::tls::{plain_get, Client};
use serde_json::json;

const VALUE: &str = "keyring-at-rest-value-7c1e";

fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    run_in(dir, args, env, stdin)
}

/// The private keys of a plain keyring file, as they are stored (base64).
fn private_keys(keyring: &Path) -> Vec<String> {
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
fn store_with_a_secret() -> (tempfile::TempDir, Vec<String>) {
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
fn unlock_key_of(out: &Run) -> String {
    out.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("RSUNLOCK-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {}", out.stdout))
        .to_string()
}

/// `keys protect --autolock` on the file store in `d`; the unlock key it showed once.
fn autolock(d: &Path) -> String {
    let out = cli(
        d,
        &["keys", "protect", "--autolock", "--store", "file:."],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    unlock_key_of(&out)
}

fn keyring_id_of(keyring: &Path) -> String {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keyring).expect("keyring")).expect("json");
    value["keyringId"]
        .as_str()
        .expect("a wrapped keyring")
        .to_string()
}

/// The wrapped keyring holds no private key, is 0600, and no temporary file is left.
fn assert_wrapped(dir: &Path, privates: &[String], kind: &str) {
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
async fn publish(dir: &Path, delivery: SocketAddr) -> (u16, String) {
    let ca = std::fs::read(dir.join("tls/ca.crt")).expect("CA");
    let node = std::fs::read_to_string(dir.join("delivery/node-token")).expect("node token");
    let body = json!({"token": common::pod_token("shop", "web-0", "uid-0", 600), "podNamespace": "shop", "podName": "web-0",
        "podUid": "uid-0", "secrets": ["db_password"], "nodeId": "node-1"});
    let mut client = Client::open(delivery, &ca).await;
    let bearer = format!("Bearer {}", node.trim());
    let (status, body) = client
        .try_send_with(
            "POST",
            "/v1/publish",
            &[("authorization", &bearer)],
            body.to_string().into_bytes(),
        )
        .await
        .expect("answered");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn delivered(body: &str) -> String {
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
fn assert_no_key_material(lines: &[String], secrets: &[&str]) {
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

/// The SoftHSM2 module Debian's `softhsm2` package installs (`.ci/run` installs it).
fn softhsm_module() -> PathBuf {
    let module = PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    assert!(
        module.exists(),
        "SoftHSM2 is missing: apt-get install softhsm2 (as .ci/run does)"
    );
    module
}

/// A SoftHSM2 configuration in `dir` with an initialised token `label`; returns the config
/// path for SOFTHSM2_CONF.
fn softhsm_token(dir: &Path, label: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("tokens dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("conf");
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "so-pin-5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// PKCS#11 on a real SoftHSM2 token: every misconfiguration gets one message naming the
/// setting and leaves the plain keyring as it was; `--pkcs11-generate-key` makes a
/// non-extractable key and wraps; the stored keyring alone opens nothing (a server without
/// the token refuses to start, one with another token's same-labelled key too); with the
/// token the server delivers.
#[tokio::test(flavor = "multi_thread")]
async fn a_pkcs11_protected_keyring_opens_only_with_its_token() {
    let module = softhsm_module();
    let module = module.to_str().expect("utf-8");
    let hsm = tempfile::tempdir().expect("tmp");
    let pin = "pin-4e7b19d2c8";
    let conf = softhsm_token(hsm.path(), "runsecrets-test", pin);
    let conf = conf.to_str().expect("utf-8");
    let pin_file = hsm.path().join("pin");
    std::fs::write(&pin_file, format!("{pin}\n")).expect("pin file");
    let wrong_pin_file = hsm.path().join("wrong-pin");
    std::fs::write(&wrong_pin_file, "pin-00000000\n").expect("pin file");
    let (dir, privates) = store_with_a_secret();
    let d = dir.path();
    let plain = std::fs::read(d.join("keyring.json")).expect("keyring");
    let env = [("SOFTHSM2_CONF", conf)];
    let protect_with = |module: &str, token: &str, extra: &[&str]| {
        let mut args = vec![
            "keys",
            "protect",
            "--pkcs11",
            "--store",
            "file:.",
            "--pkcs11-module",
            module,
            "--pkcs11-token",
            token,
            "--pkcs11-key",
            "kek",
        ];
        args.extend_from_slice(extra);
        cli(d, &args, &env, None)
    };
    let protect = |extra: &[&str]| protect_with(module, "runsecrets-test", extra);
    let pin_arg = ["--pkcs11-pin-file", pin_file.to_str().expect("utf-8")];
    let wrong_pin = ["--pkcs11-pin-file", wrong_pin_file.to_str().expect("utf-8")];
    let cases: Vec<(&str, &str, Vec<&str>, String)> = vec![
        (
            module, "runsecrets-test", pin_arg.to_vec(),
            "Error: protecting the keyring KEYRING: token \"runsecrets-test\" holds no AES key labelled \"kek\": check --pkcs11-key, or create one with `runsecrets keys protect --pkcs11 --pkcs11-generate-key`".into(),
        ),
        (
            module, "runsecrets-test", [&wrong_pin[..], &["--pkcs11-generate-key"]].concat(),
            "Error: protecting the keyring KEYRING: token \"runsecrets-test\" refused the PIN: check --pkcs11-pin-file or RUNSECRETS_PKCS11_PIN".into(),
        ),
        (
            module, "nope", pin_arg.to_vec(),
            format!("Error: protecting the keyring KEYRING: the PKCS#11 module {module} has no token labelled \"nope\" (its tokens: \"runsecrets-test\"): check --pkcs11-token"),
        ),
        (
            "/nonexistent/libpkcs11.so", "runsecrets-test", pin_arg.to_vec(),
            "Error: protecting the keyring KEYRING: loading the PKCS#11 module /nonexistent/libpkcs11.so: check --pkcs11-module (Debian's softhsm2 package installs /usr/lib/softhsm/libsofthsm2.so)".into(),
        ),
        (
            module, "runsecrets-test", vec![],
            "Error: reading the --pkcs11-* settings: no PIN for token \"runsecrets-test\": give --pkcs11-pin-file or RUNSECRETS_PKCS11_PIN".into(),
        ),
    ];
    let keyring_path = d.join("keyring.json").display().to_string();
    for (module, token, extra, want) in cases {
        let out = protect_with(module, token, &extra);
        assert_eq!(out.code, 1, "{extra:?}");
        let first = out.stderr.lines().next().unwrap_or_default();
        // The message, then the token's own words as the cause (for the PIN).
        let want = want.replace("KEYRING", "./keyring.json");
        assert!(
            first == want || first.starts_with(&format!("{want}: ")),
            "{extra:?}:\n{first}\n{want}"
        );
        out.assert_no_values(&[pin]);
        assert_eq!(
            std::fs::read(d.join("keyring.json")).expect("keyring"),
            plain,
            "{extra:?}: the plain keyring is untouched"
        );
    }

    let out = protect(&[&pin_arg[..], &["--pkcs11-generate-key"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = keyring_id_of(&d.join("keyring.json"));
    assert!(out.stdout.starts_with(&format!("protected keyring {id} in ./keyring.json: wrapped by the AES key \"kek\" of PKCS#11 token \"runsecrets-test\"")), "{}", out.stdout);
    assert_wrapped(d, &privates, "pkcs11");
    out.assert_no_values(&[pin]);

    // The key is in the token, sensitive and never extractable (as SoftHSM2 stores it).
    let dump = std::fs::read_dir(hsm.path().join("tokens"))
        .expect("tokens")
        .filter_map(|e| e.ok())
        .flat_map(|token| std::fs::read_dir(token.path()).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "object"))
        .map(|p| {
            let out = std::process::Command::new("softhsm2-dump-file")
                .arg(&p)
                .output()
                .expect("dump");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .find(|text| text.contains("CKO_SECRET_KEY"))
        .expect("the AES key object");
    for (attribute, value) in [
        ("CKA_EXTRACTABLE", "FALSE"),
        ("CKA_SENSITIVE", "TRUE"),
        ("CKA_NEVER_EXTRACTABLE", "TRUE"),
    ] {
        let line = dump
            .lines()
            .skip_while(|l| !l.contains(attribute))
            .nth(2)
            .unwrap_or_default();
        assert!(line.contains(value), "{attribute}: {line}\n{dump}");
    }

    // The stored keyring alone opens nothing: a server without the token refuses to start.
    let mut without = ServerProcess::server(d, &[], &env);
    assert_eq!(without.exits(), 2);
    let last = without.lines().last().cloned().unwrap_or_default();
    assert_eq!(last, format!("runsecrets: starting the server: opening the secret store: loading the keyring {keyring_path}: keyring {id} is protected by PKCS#11 (token \"runsecrets-test\", key \"kek\"): give --pkcs11-module, --pkcs11-token, --pkcs11-key and --pkcs11-pin-file (or RUNSECRETS_PKCS11_PIN)"));
    // Nor with the wrong PIN, nor with another token's key of the same label.
    let flags = |pin: &str| -> Vec<String> {
        [
            "--pkcs11-module",
            module,
            "--pkcs11-token",
            "runsecrets-test",
            "--pkcs11-key",
            "kek",
            "--pkcs11-pin-file",
            pin,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let wrong = flags(wrong_pin_file.to_str().expect("utf-8"));
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let mut refused = ServerProcess::server(d, &wrong, &env);
    assert_eq!(refused.exits(), 2);
    let last = refused.lines().last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!("runsecrets: starting the server: opening the secret store: unwrapping the keyring {keyring_path}: token \"runsecrets-test\" refused the PIN: check --pkcs11-pin-file or RUNSECRETS_PKCS11_PIN: Function::Login: PKCS11 error: The specified PIN is incorrect")),
        "{last}"
    );
    let other_hsm = tempfile::tempdir().expect("tmp");
    let other_conf = softhsm_token(other_hsm.path(), "runsecrets-test", pin);
    let other_conf = other_conf.to_str().expect("utf-8");
    let scratch = tempfile::tempdir().expect("tmp");
    let made = cli(
        scratch.path(),
        &[
            "keys",
            "protect",
            "--pkcs11",
            "--store",
            "file:.",
            "--pkcs11-module",
            module,
            "--pkcs11-token",
            "runsecrets-test",
            "--pkcs11-key",
            "kek",
            "--pkcs11-generate-key",
            "--pkcs11-pin-file",
            pin_file.to_str().expect("utf-8"),
        ],
        &[("SOFTHSM2_CONF", other_conf)],
        None,
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let right = flags(pin_file.to_str().expect("utf-8"));
    let right: Vec<&str> = right.iter().map(String::as_str).collect();
    let mut foreign = ServerProcess::server(d, &right, &[("SOFTHSM2_CONF", other_conf)]);
    assert_eq!(foreign.exits(), 2);
    let last = foreign.lines().last().cloned().unwrap_or_default();
    assert!(last.starts_with(&format!("runsecrets: starting the server: opening the secret store: unwrapping the keyring {keyring_path}: key \"kek\" of token \"runsecrets-test\" does not open the data key of keyring {id}: it is another key (another token or cluster), or the keyring was altered")), "{last}");

    // With its token the server opens the keyring and delivers.
    let process = ServerProcess::server(d, &right, &env);
    let addrs = process.serving();
    let (status, body) = plain_get(addrs.admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE);
    let mut lines = process.stop();
    lines.extend(without.stop());
    lines.extend(refused.stop());
    lines.extend(foreign.stop());
    let mut secrets: Vec<&str> = privates.iter().map(String::as_str).collect();
    secrets.extend([pin, VALUE]);
    assert_no_key_material(&lines, &secrets);
}

fn create(d: &Path, name: &str) {
    let out = cli(
        d,
        &[
            "secret", "create", "-n", "shop", name, "-", "--store", "file:.",
        ],
        &[],
        Some(VALUE),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn keys_ls(d: &Path) -> Vec<(String, bool)> {
    let out = cli(d, &["keys", "ls", "--store", "file:."], &[], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["ID", "ALGORITHM", "CREATED", "SEALS"])
    );
    lines
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(fields[1], "x25519", "{l}");
            (fields[0].to_string(), fields.get(3) == Some(&"yes"))
        })
        .collect()
}

/// `keys rotate` adds a sealing key and older ones keep opening; `keys ls` shows which seals;
/// `keys retire` is refused while a stored secret is sealed with the key (naming it) and for
/// the sealing key, and removes a key nothing uses.
#[test]
fn keys_rotate_ls_and_retire_on_the_file_store() {
    let (dir, _) = store_with_a_secret();
    let d = dir.path();
    let first = keys_ls(d);
    assert_eq!(first.len(), 1);
    assert!(first[0].1, "the only key seals");
    let k1 = first[0].0.clone();
    let rotated = cli(d, &["keys", "rotate", "--store", "file:."], &[], None);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let k2 = rotated
        .stdout
        .lines()
        .next()
        .expect("the new id")
        .to_string();
    assert_eq!(keys_ls(d), vec![(k1.clone(), false), (k2.clone(), true)]);
    create(d, "api_token");
    let inspect = cli(
        d,
        &[
            "secret",
            "inspect",
            "-n",
            "shop",
            "api_token",
            "--store",
            "file:.",
        ],
        &[],
        None,
    );
    assert!(
        inspect.stdout.contains(&format!("\"keyId\": \"{k2}\"")),
        "{}",
        inspect.stdout
    );

    let refused = cli(d, &["keys", "retire", &k1, "--store", "file:."], &[], None);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        format!("Error: key {k1} still opens 1 stored secret(s): shop/db_password; move them to the newest key with `runsecrets secret reseal` first\n")
    );
    let sealing = cli(d, &["keys", "retire", &k2, "--store", "file:."], &[], None);
    assert!(
        sealing.stderr.contains(&format!(
            "key {k2} still opens 1 stored secret(s): shop/api_token"
        )),
        "{}",
        sealing.stderr
    );
    let rm = cli(
        d,
        &[
            "secret",
            "rm",
            "-n",
            "shop",
            "api_token",
            "--store",
            "file:.",
        ],
        &[],
        None,
    );
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    let sealing = cli(d, &["keys", "retire", &k2, "--store", "file:."], &[], None);
    assert_eq!(
        sealing.stderr,
        format!("Error: changing the keyring ./keyring.json: key {k2} is the one new secrets are sealed with: run `runsecrets keys rotate` first\n")
    );
    let rm = cli(
        d,
        &[
            "secret",
            "rm",
            "-n",
            "shop",
            "db_password",
            "--store",
            "file:.",
        ],
        &[],
        None,
    );
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    let retired = cli(d, &["keys", "retire", &k1, "--store", "file:."], &[], None);
    assert_eq!(
        (retired.code, retired.stdout.as_str()),
        (0, format!("{k1}\n").as_str()),
        "{}",
        retired.stderr
    );
    assert_eq!(keys_ls(d), vec![(k2, true)]);
}

/// An autolocked keyring rotates only with its unlock key, stays wrapped under the same
/// keyring id, and a server unlocked with the same key opens secrets of both keys.
#[tokio::test(flavor = "multi_thread")]
async fn an_autolocked_keyring_rotates_with_its_unlock_key() {
    let (dir, privates) = store_with_a_secret();
    let d = dir.path();
    let unlock_key = autolock(d);
    let id = keyring_id_of(&d.join("keyring.json"));
    let locked = cli(d, &["keys", "rotate", "--store", "file:."], &[], None);
    assert_eq!(locked.code, 1);
    assert_eq!(
        locked.stderr,
        format!("Error: opening the keyring ./keyring.json: keyring {id} is locked (autolock): it opens with its unlock key (a server: `runsecrets unlock` or --unlock-key-file; the CLI: --unlock-key-file or RUNSECRETS_UNLOCK_KEY)\n")
    );
    let rotated = cli(
        d,
        &["keys", "rotate", "--store", "file:."],
        &[("RUNSECRETS_UNLOCK_KEY", &unlock_key)],
        None,
    );
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert_eq!(keyring_id_of(&d.join("keyring.json")), id);
    assert_wrapped(d, &privates, "autolock");
    assert_eq!(keys_ls(d).len(), 2);
    create(d, "mysql_root_password");

    let key_file = d.join("unlock");
    std::fs::write(&key_file, &unlock_key).expect("key file");
    let process = ServerProcess::server(
        d,
        &["--unlock-key-file", key_file.to_str().expect("utf-8")],
        &[],
    );
    let addrs = process.serving();
    process.wait_for(&["unlocked the keyring with --unlock-key-file"]);
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE, "a secret of the first key");
    let lines = process.stop();
    assert_no_key_material(&lines, &[&unlock_key[11..]]);
}

/// `--key-renew-period`: a server whose sealing key is older than the period adds one at
/// once and serves it at `GET /v1/keys`; with `0` it never does.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_renews_an_old_sealing_key_unless_told_not_to() {
    let (dir, _) = store_with_a_secret();
    let d = dir.path();
    // Age the key: its creation time is for people and for renewal; the id does not cover it.
    let path = d.join("keyring.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("keyring")).expect("json");
    value["keys"][0]["created"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&path, value.to_string()).expect("write");
    let keys_served = |webhook: SocketAddr| async move {
        let ca = std::fs::read(d.join("tls/ca.crt")).expect("CA");
        let mut client = Client::open(webhook, &ca).await;
        let (status, body) = client.send("GET", "/v1/keys", vec![]).await;
        assert_eq!(status, 200);
        let keys: serde_json::Value = serde_json::from_slice(&body).expect("json");
        keys["keys"].as_array().expect("keys").len()
    };

    let off = ServerProcess::server(d, &["--key-renew-period", "0"], &[]);
    let addrs = off.serving();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(keys_served(addrs.webhook).await, 1);
    assert_eq!(keys_ls(d).len(), 1, "renewal off: no key added");
    let lines = off.stop();
    assert!(!lines.iter().any(|l| l.contains("renewed the sealing key")));

    let on = ServerProcess::server(d, &[], &[]);
    let addrs = on.serving();
    on.wait_for(&["renewed the sealing key (--key-renew-period)"]);
    on.wait_for(&["the keyring changed: serving its keys", "keys=2"]);
    assert_eq!(keys_served(addrs.webhook).await, 2);
    let listed = keys_ls(d);
    assert_eq!(listed.len(), 2);
    assert!(listed[1].1, "the new key seals");
    // The old key still opens what it sealed.
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE);
}

/// `secret reseal` moves secrets to the newest key through the server (ciphertext in,
/// ciphertext out): named ones, then `--all`; the old key can then be retired, and every
/// secret still delivers its value. An envelope asked for under another name does not open.
#[tokio::test(flavor = "multi_thread")]
async fn secret_reseal_moves_secrets_to_the_newest_key() {
    let (dir, _) = store_with_a_secret();
    let d = dir.path();
    create(d, "api_token");
    let k1 = keys_ls(d)[0].0.clone();
    let rotated = cli(d, &["keys", "rotate", "--store", "file:."], &[], None);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let k2 = keys_ls(d)[1].0.clone();
    let process = ServerProcess::server(d, &[], &[]);
    let addrs = process.serving();
    let url = format!("https://{}", addrs.delivery);
    let ca = d.join("tls/ca.crt");
    let reseal = |args: &[&str]| {
        let mut all = vec![
            "secret",
            "reseal",
            "-n",
            "shop",
            "--store",
            "file:.",
            "--server",
            &url,
            "--ca",
            ca.to_str().expect("utf-8"),
        ];
        all.extend_from_slice(args);
        cli(d, &all, &[], None)
    };
    let one = reseal(&["db_password"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(one.stdout, format!("db_password: {k1} -> {k2}\n"));
    let refused = cli(d, &["keys", "retire", &k1, "--store", "file:."], &[], None);
    assert!(
        refused.stderr.contains(&format!(
            "key {k1} still opens 1 stored secret(s): shop/api_token;"
        )),
        "{}",
        refused.stderr
    );
    let rest = reseal(&["--all"]);
    assert_eq!(
        rest.stdout,
        format!("api_token: {k1} -> {k2}\n"),
        "{}",
        rest.stderr
    );
    let none = reseal(&["--all"]);
    assert_eq!(
        none.stdout,
        format!("every secret asked for is sealed with the newest key {k2}\n")
    );
    let retired = cli(d, &["keys", "retire", &k1, "--store", "file:."], &[], None);
    assert_eq!(retired.code, 0, "{}", retired.stderr);
    let (status, body) = publish(d, addrs.delivery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(delivered(&body), VALUE);

    // The envelope is bound to its name: asked for as another secret, it does not open.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("secrets/shop/db_password.json")).expect("record"),
    )
    .expect("json");
    let mut client = Client::open(addrs.delivery, &std::fs::read(&ca).expect("CA")).await;
    let body =
        json!({"namespace": "shop", "name": "other", "ciphertext": record["spec"]["ciphertext"]});
    let (status, answer) = client
        .send("POST", "/v1/reseal", body.to_string().into_bytes())
        .await;
    assert_eq!(
        (status, String::from_utf8_lossy(&answer).as_ref()),
        (422, "secret shop/other: ciphertext does not open: it was altered, or it belongs to another secret or namespace\n")
    );
    // Under its own name it is resealed, with the tag that binds the new envelope to this one
    // and this secret (what the RunSecret webhook checks); the tag appears in no log.
    let body = json!({"namespace": "shop", "name": "db_password", "ciphertext": record["spec"]["ciphertext"]});
    let (status, answer) = client
        .send("POST", "/v1/reseal", body.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: runsecrets::server::reseal::ResealResponse =
        serde_json::from_slice(&answer).expect("answer");
    let ring = runsecrets::seal::Keyring::from_json(
        &std::fs::read_to_string(d.join("keyring.json")).expect("keyring"),
    )
    .expect("keyring");
    let binding = runsecrets::seal::ResealBinding {
        namespace: "shop",
        name: "db_password",
        old_digest: record["spec"]["digest"].as_str().expect("digest"),
        new_digest: &answer.digest,
    };
    assert!(runsecrets::seal::verify_reseal_tag(
        &ring,
        &k2,
        &binding,
        &answer.tag
    ));
    let lines = process.stop();
    assert!(lines.iter().all(|l| !l.contains(&answer.tag)));
    assert_no_key_material(&lines, &[VALUE]);
    for run in [&one, &rest] {
        run.assert_no_values(&[VALUE]);
    }
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
