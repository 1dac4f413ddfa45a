//! The RunSecret CRD (from `runsecrets crd`) on the real apiserver, and the server's
//! RunSecret check through the chart's validating webhook.

use serde_json::{json, Value};

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

/// The same value sealed again to the cluster's key, as `runsecrets seal` prints it: what a
/// reseal stores (new ciphertext and digest, same name, size and grants).
fn sealed_again(system: &System, secret: &str, value: &str) -> Value {
    let out = system.seal(&[secret, "-"], Some(value.as_bytes()));
    assert!(out.ok, "runsecrets seal: {}", out.stderr);
    let manifest: Value = serde_norway::from_str(&out.stdout).expect("a RunSecret manifest");
    manifest["spec"].clone()
}

fn patch(system: &System, secret: &str, spec: Value) -> api::Out {
    let name = runsecrets::store::object_name(secret);
    system.k.run(
        &[
            "patch",
            "-n",
            SHOP,
            &format!("runsecrets.runsecrets.io/{name}"),
            "--type=merge",
            "-p",
            &json!({ "spec": spec }).to_string(),
        ],
        None,
    )
}

/// Swarm: a secret's value never changes, only its labels. The CRD's CEL rule, in the apiserver
/// itself, refuses a wider grant and another size; the sealing fields may change together (a
/// reseal), and the webhook then checks the new envelope as at creation. A label change goes
/// through without the webhook.
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

    // The sealing fields, changed together: accepted, and the value is the same one.
    let sealing = json!({
        "ciphertext": resealed["ciphertext"],
        "digest": resealed["digest"],
        "keyId": resealed["keyId"],
    });
    let out = patch(system, DB, sealing);
    assert!(out.ok, "a reseal was refused: {}", out.stderr);
    let after = runsecret(system, DB);
    assert_eq!(after["spec"], resealed, "the resealed envelope is stored");
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
