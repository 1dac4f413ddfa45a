//! What a user sees when a pod may not have a secret, or carries a credential in env: the
//! refusal at `kubectl create`, or the event kubelet records when delivery is refused.

use serde_json::json;

use super::pod_mounts;
use crate::api::pod;
use crate::system::values::{DB, GRANTED, RESTRICTED};
use crate::system::{System, ENFORCED, OTHER, SHOP, WARNED};

/// A pod that writes the CSI volume for `secret` itself instead of declaring it, so the
/// webhook has nothing to check and only delivery stands between it and the secret.
fn hand_written(ns: &str, name: &str, secret: &str) -> serde_json::Value {
    let mut p = pod(ns, name, None);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "runsecrets", "mountPath": "/run/secrets", "readOnly": true}]);
    p["spec"]["volumes"] = json!([{
        "name": "runsecrets",
        "csi": {
            "driver": runsecrets::spec::DRIVER_NAME,
            "readOnly": true,
            "volumeAttributes": {
                runsecrets::spec::SECRETS_ANNOTATION:
                    format!("source={secret},target={secret},uid=0,gid=0,mode=0444"),
            },
        },
    }]);
    p
}

/// `kubectl create` is refused with every piece of `expected` in the message.
fn refused(system: &System, object: &serde_json::Value, expected: &[&str]) -> String {
    let out = system.k.create(object);
    assert!(!out.ok, "was admitted: {}", out.stdout);
    for piece in expected {
        assert!(
            out.stderr.contains(piece),
            "the refusal lacks {piece:?}: {}",
            out.stderr
        );
    }
    out.stderr
}

pub fn missing_secret(system: &mut System) {
    refused(
        system,
        &pod(SHOP, "lost", Some("nope")),
        &[
            "admission webhook \"mutate.runsecrets.io\" denied the request",
            "secret \"nope\" does not exist in namespace \"shop\"",
            "runsecrets secret create -n shop nope FILE",
        ],
    );
}

/// The secret exists in `shop`, not in `other`: the webhook refuses the annotated pod, and a
/// pod that writes the CSI volume itself (skipping the webhook) gets nothing from delivery.
pub fn other_namespace(system: &mut System) {
    refused(
        system,
        &pod(OTHER, "borrower", Some(DB)),
        &[
            "admission webhook \"mutate.runsecrets.io\" denied the request",
            "secret \"db_password\" does not exist in namespace \"other\"",
        ],
    );

    let out = system.k.create(&hand_written(OTHER, "thief", DB));
    assert!(out.ok, "creating the thief pod: {}", out.stderr);
    system.k.wait_event(
        OTHER,
        "thief",
        "FailedMount",
        "code = NotFound desc = asking the server for the pod's secrets: server refused (NotFound, HTTP 404): secret 'db_password' does not exist in namespace other",
    );
    let stored = system.k.pod(OTHER, "thief");
    assert_eq!(
        stored.status.and_then(|s| s.phase).as_deref(),
        Some("Pending"),
        "the pod must not start without its volume"
    );
    let stored = system.k.pod(OTHER, "thief");
    assert!(
        pod_mounts(system, &stored)
            .iter()
            .all(|m| m.source != "runsecrets"),
        "nothing was mounted"
    );
    system.k.delete(OTHER, "pod/thief");
}

/// `restricted` is granted to service account `granted` only: its pod reads it; a pod that
/// declares it while running as another account in the same namespace is refused by the
/// webhook, and one that writes the CSI volume itself is admitted but gets no volume.
pub fn service_account_not_granted(system: &mut System) {
    let k = &system.k;
    let account = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": SHOP}})
    };
    k.apply(&[account(GRANTED), account("intruder")]);
    let mut allowed = pod(SHOP, "granted-reader", Some(RESTRICTED));
    allowed["spec"]["serviceAccountName"] = GRANTED.into();
    let out = k.create(&allowed);
    assert!(out.ok, "creating: {}", out.stderr);
    let mut declared = pod(SHOP, "intruder", Some(RESTRICTED));
    declared["spec"]["serviceAccountName"] = "intruder".into();
    refused(
        system,
        &declared,
        &[
            "admission webhook \"mutate.runsecrets.io\" denied the request",
            "secret 'restricted' is only for service accounts granted; the pod runs as intruder",
        ],
    );
    let mut intruder = hand_written(SHOP, "intruder", RESTRICTED);
    intruder["spec"]["serviceAccountName"] = "intruder".into();
    let out = k.create(&intruder);
    assert!(out.ok, "creating the hand-written pod: {}", out.stderr);
    k.wait_ready(SHOP, "granted-reader");
    assert_eq!(
        k.read(SHOP, "granted-reader", "app", "/run/secrets/restricted"),
        system.values.restricted
    );
    k.wait_event(
        SHOP,
        "intruder",
        "FailedMount",
        "code = PermissionDenied desc = asking the server for the pod's secrets: server refused (Forbidden, HTTP 403): secret 'restricted' is only for service accounts granted; the pod runs as intruder",
    );
    let stored = k.pod(SHOP, "intruder");
    assert_eq!(
        stored.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    k.delete(SHOP, "pod/intruder");
    k.delete(SHOP, "pod/granted-reader");
}

fn with_env_literal(system: &System, ns: &str, name: &str) -> serde_json::Value {
    let mut p = pod(ns, name, None);
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "DB_PASSWORD", "value": system.values.env_literal}]);
    p
}

pub fn env_literal_enforced(system: &mut System) {
    let message = refused(
        system,
        &with_env_literal(system, ENFORCED, "leaky"),
        &[
            "admission webhook \"enforce-baseline.validate.runsecrets.io\" denied the request",
            "container \"app\": env DB_PASSWORD holds a literal credential",
            "fix: set DB_PASSWORD_FILE=/run/secrets/db_password",
        ],
    );
    assert!(
        !message.contains(&system.values.env_literal),
        "the value is echoed"
    );
    // A workload is refused at `kubectl apply`, not later as a ReplicaSet event.
    let template = with_env_literal(system, ENFORCED, "leaky");
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "leaky-web", "namespace": ENFORCED},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "leaky-web"}},
            "template": {
                "metadata": {"labels": {"app": "leaky-web"}},
                "spec": template["spec"],
            },
        },
    });
    refused(
        system,
        &deployment,
        &[
            "enforce-baseline.validate.runsecrets.io",
            "env DB_PASSWORD holds a literal credential",
        ],
    );
}

pub fn env_literal_warned(system: &mut System) {
    let out = system.k.create(&with_env_literal(system, WARNED, "chatty"));
    assert!(out.ok, "a warn namespace must admit: {}", out.stderr);
    // The rule named in the middle depends on the random value (its name, or its entropy).
    let warning = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Warning: runsecrets: container \"app\" env DB_PASSWORD: "))
        .unwrap_or_else(|| panic!("kubectl shows no warning: {}", out.stderr));
    assert!(
        warning.ends_with("; use DB_PASSWORD_FILE"),
        "the warning shows the fix: {warning}"
    );
    assert!(!out.stderr.contains(&system.values.env_literal));
    system.k.delete(WARNED, "pod/chatty");
}
