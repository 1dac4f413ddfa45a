//! Keys over time on the file store, through the binary: `keys ls`, `keys rotate` and
//! `keys retire`, rotation of an autolocked keyring, the server's renewal of an old sealing key,
//! and `secret reseal` moving secrets to the newest key (with the server's tag).

//! locked and is unlocked over TLS or by a mounted file, and what the stored keyring alone
//! gives away (nothing). Every log line of every run is checked for key material.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::binary::ServerProcess;
use common::tls::Client;
use serde_json::json;

use crate::keyring::{
    assert_no_key_material, assert_wrapped, autolock, cli, delivered, keyring_id_of, publish,
    store_with_a_secret, VALUE,
};

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

fn rm(d: &Path, name: &str) {
    let out = cli(
        d,
        &["secret", "rm", "-n", "shop", name, "--store", "file:."],
        &[],
        None,
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
    rm(d, "api_token");
    let sealing = cli(d, &["keys", "retire", &k2, "--store", "file:."], &[], None);
    assert_eq!(
        sealing.stderr,
        format!("Error: changing the keyring ./keyring.json: key {k2} is the one new secrets are sealed with: run `runsecrets keys rotate` first\n")
    );
    rm(d, "db_password");
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
