//! The RunSecret CRD (from `runsecrets crd`) on the real apiserver, and the server's
//! RunSecret check through the chart's validating webhook.

use serde_json::{json, Value};

use runsecrets::server::reseal::{ResealResponse, RESEAL_PATH};
use runsecrets::spec::RESEAL_TAG_ANNOTATION;

use crate::api;
use crate::system::values::{API, DB};
use crate::system::{System, SHOP};

fn runsecret(system: &System, secret: &str) -> Value {
    let name = runsecrets::store::object_name(secret);
    system
        .k
        .get(Some(SHOP), &format!("runsecrets.runsecrets.io/{name}"))
        .unwrap_or_else(|| panic!("RunSecret for {secret} missing"))
}

/// The same value sealed again to the cluster's key, as `runsecrets seal` prints it: a guess
/// of the value (new ciphertext and digest, same name, size and grants).
fn sealed_again(system: &System, secret: &str, value: &str) -> Value {
    let out = system.seal(&[secret, "-"], Some(value.as_bytes()));
    assert!(out.ok, "runsecrets seal: {}", out.stderr);
    let manifest: Value = serde_norway::from_str(&out.stdout).expect("a RunSecret manifest");
    manifest["spec"].clone()
}

/// What `secret reseal` gets from the running server for the stored envelope: `POST
/// /v1/reseal` through the CLI's own call (the CLI itself skips a secret already on the newest
/// key, and this cluster has one key).
fn resealed_by_server(system: &System, stored: &Value) -> ResealResponse {
    let body = json!({
        "namespace": SHOP,
        "name": stored["spec"]["name"],
        "ciphertext": stored["spec"]["ciphertext"],
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, answer) = runtime
        .block_on(runsecrets::server::call::post(
            &format!("https://127.0.0.1:{}", system.delivery_port),
            &system.work.join("server-ca.crt"),
            RESEAL_PATH,
            zeroize::Zeroizing::new(body.to_string().into_bytes()),
        ))
        .expect("POST /v1/reseal");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice(&answer).expect("the reseal answer")
}

fn patch(system: &System, secret: &str, spec: Value) -> api::Out {
    patch_with(system, secret, json!({ "spec": spec }))
}

fn patch_with(system: &System, secret: &str, change: Value) -> api::Out {
    let name = runsecrets::store::object_name(secret);
    system.k.run(
        &[
            "patch",
            "-n",
            SHOP,
            &format!("runsecrets.runsecrets.io/{name}"),
            "--type=merge",
            "-p",
            &change.to_string(),
        ],
        None,
    )
}

/// Swarm: a secret's value never changes, only its labels. The CRD's CEL rule, in the apiserver
/// itself, refuses a wider grant and another size; the sealing fields may change together (a
/// reseal), and the webhook then checks the new envelope as at creation and wants the server's
/// reseal tag, so a guessed value (even the right one) cannot be tested by an update. A label
/// change goes through without the webhook.
pub fn spec_is_immutable(system: &mut System) {
    let name = runsecrets::store::object_name(DB);
    let before = runsecret(system, DB);
    let message = "a RunSecret's spec is immutable: store the new value as a new secret";
    let size = before["spec"]["size"].as_i64().expect("size");
    for (what, change) in [
        (
            "a wider grant",
            json!({"serviceAccounts": ["someone-else"]}),
        ),
        ("another size", json!({"size": size + 1})),
    ] {
        let out = patch(system, DB, change);
        assert!(!out.ok, "{what} was accepted");
        assert!(
            out.stderr.contains(message),
            "{what}: the user sees the CEL rule's message: {}",
            out.stderr
        );
    }
    assert_eq!(runsecret(system, DB)["spec"], before["spec"]);

    // A reseal's shape, but a digest that is not of the ciphertext: the webhook refuses it.
    let resealed = sealed_again(system, DB, &system.values.db);
    let mut forged = resealed.clone();
    forged["digest"] = before["spec"]["digest"].clone();
    let out = patch(
        system,
        DB,
        json!({"ciphertext": forged["ciphertext"], "digest": forged["digest"]}),
    );
    assert!(
        !out.ok
            && out
                .stderr
                .contains("spec.digest does not match spec.ciphertext"),
        "a forged envelope was stored: {}",
        out.stderr
    );

    // The right value, sealed again with the public keys: a correct guess, but without the
    // server's tag it is refused with the message a wrong guess gets.
    let sealing = |spec: &Value| json!({"ciphertext": spec["ciphertext"], "digest": spec["digest"], "keyId": spec["keyId"]});
    let untagged = "only `runsecrets secret reseal` may change it";
    let wrong_value = "x".repeat(system.values.db.len());
    assert_ne!(wrong_value, system.values.db);
    let wrong = sealed_again(system, DB, &wrong_value);
    for (what, guess) in [("the right value", &resealed), ("a wrong value", &wrong)] {
        let out = patch(system, DB, sealing(guess));
        assert!(
            !out.ok && out.stderr.contains(untagged),
            "{what}, untagged: {}",
            out.stderr
        );
    }
    assert_eq!(runsecret(system, DB)["spec"], before["spec"]);

    // What `secret reseal` stores: the server's envelope with its tag. Accepted, the value is
    // the same one; the tag does not carry over to another envelope.
    let answer = resealed_by_server(system, &before);
    let mut tag = serde_json::Map::new();
    tag.insert(RESEAL_TAG_ANNOTATION.into(), answer.tag.clone().into());
    let out = patch_with(
        system,
        DB,
        json!({"metadata": {"annotations": tag}, "spec": sealing(&resealed)}),
    );
    assert!(
        !out.ok && out.stderr.contains(untagged),
        "a tag moved onto another envelope: {}",
        out.stderr
    );
    let server_spec =
        json!({"ciphertext": answer.ciphertext, "digest": answer.digest, "keyId": answer.key_id});
    let out = patch_with(
        system,
        DB,
        json!({"metadata": {"annotations": tag}, "spec": server_spec}),
    );
    assert!(out.ok, "a reseal was refused: {}", out.stderr);
    let after = runsecret(system, DB);
    assert_eq!(
        after["spec"]["ciphertext"],
        answer.ciphertext.as_str(),
        "the resealed envelope is stored"
    );
    assert_eq!(after["spec"]["size"], before["spec"]["size"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);

    system.k.ok(
        &[
            "label",
            "-n",
            SHOP,
            &format!("runsecrets.runsecrets.io/{name}"),
            "reviewed=yes",
        ],
        None,
    );
    let labelled = runsecret(system, DB);
    assert_eq!(labelled["spec"], after["spec"], "the spec is unchanged");
    assert_eq!(labelled["metadata"]["labels"]["reviewed"], "yes");
}

/// A RunSecret that passes the CRD's schema but not the server's envelope checks, as
/// `kubectl apply` of a hand-edited manifest would send it.
pub fn invalid_runsecret_refused(system: &mut System) {
    let good = runsecret(system, API);
    let forged = |name: &str, spec: Value| {
        json!({
            "apiVersion": "runsecrets.io/v1",
            "kind": "RunSecret",
            "metadata": {"name": runsecrets::store::object_name(name), "namespace": SHOP},
            "spec": spec,
        })
    };
    let mut wrong_digest = good["spec"].clone();
    wrong_digest["name"] = "forged_digest".into();
    wrong_digest["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    let mut wrong_size = good["spec"].clone();
    wrong_size["name"] = "forged_size".into();
    wrong_size["size"] = json!(good["spec"]["size"].as_i64().expect("size") + 1);
    for (name, spec, reason) in [
        (
            "forged_digest",
            wrong_digest,
            "spec.digest does not match spec.ciphertext",
        ),
        (
            "forged_size",
            wrong_size,
            "spec.keyId or spec.size does not match the sealed envelope",
        ),
    ] {
        let out = system
            .k
            .run(&["apply", "-f", "-"], Some(&forged(name, spec).to_string()));
        assert!(!out.ok, "{name} was stored");
        assert!(
            out.stderr.contains(
                "admission webhook \"runsecrets.validate.runsecrets.io\" denied the request"
            ) && out.stderr.contains(reason),
            "{name}: the webhook's reason reaches the user: {}",
            out.stderr
        );
        let stored: Option<Value> = system.k.get(
            Some(SHOP),
            &format!(
                "runsecrets.runsecrets.io/{}",
                runsecrets::store::object_name(name)
            ),
        );
        assert!(stored.is_none(), "{name} exists");
    }
}
