//! The RunSecret CRD (from `runsecrets crd`) on the real apiserver, and the server's
//! RunSecret check through the chart's validating webhook.

use serde_json::{json, Value};

use crate::system::values::{API, DB};
use crate::system::{System, SHOP};

fn runsecret(system: &System, secret: &str) -> Value {
    let name = runsecrets::store::object_name(secret);
    system
        .k
        .get(Some(SHOP), &format!("runsecrets.runsecrets.io/{name}"))
        .unwrap_or_else(|| panic!("RunSecret for {secret} missing"))
}

/// Swarm: a secret's value never changes, only its labels. A merge patch that widens the grant
/// is refused by the CRD's CEL rule in the apiserver itself; a label change goes through.
pub fn spec_is_immutable(system: &mut System) {
    let name = runsecrets::store::object_name(DB);
    let before = runsecret(system, DB);
    let out = system.k.run(
        &[
            "patch",
            "-n",
            SHOP,
            &format!("runsecrets.runsecrets.io/{name}"),
            "--type=merge",
            "-p",
            r#"{"spec":{"serviceAccounts":["someone-else"]}}"#,
        ],
        None,
    );
    assert!(!out.ok, "a spec change was accepted");
    assert!(
        out.stderr
            .contains("a RunSecret's spec is immutable: store the new value as a new secret"),
        "the user sees the CEL rule's message: {}",
        out.stderr
    );
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
    let after = runsecret(system, DB);
    assert_eq!(after["spec"], before["spec"], "the spec is unchanged");
    assert_eq!(after["metadata"]["labels"]["reviewed"], "yes");
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
