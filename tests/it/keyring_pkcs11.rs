//! The keyring wrapped by a PKCS#11 token, through the binary, on a real SoftHSM2 token the
//! test creates: `keys protect --pkcs11`, a server that opens only with its token and PIN, and
//! what a wrong PIN or a missing token says.

use crate::common;

use std::path::{Path, PathBuf};

use common::binary::ServerProcess;
use common::tls::plain_get;

use crate::keyring::{
    assert_no_key_material, assert_wrapped, cli, delivered, keyring_id_of, publish,
    store_with_a_secret, VALUE,
};

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
