//! Swarm's secret verbs against the cluster, as a namespace editor runs them: `rm` refused while
//! a pod uses the secret, `rotate --workload` rolling a Deployment, `rm` once unused.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::pods::READER;
use crate::api::pod;
use crate::eventually;
use crate::system::values::{DB, DB_V2};
use crate::system::{System, SHOP};

const WEB: &str = "web";

fn runsecret_exists(system: &System, secret: &str) -> bool {
    let name = runsecrets::store::object_name(secret);
    system
        .k
        .get::<Value>(Some(SHOP), &format!("runsecrets.runsecrets.io/{name}"))
        .is_some()
}

pub fn rm_refused_in_use(system: &mut System) {
    let out = system.secret(&["rm", DB], None);
    assert!(!out.ok, "rm of a secret in use succeeded");
    assert!(
        out.stderr
            .contains("secret 'db_password' is in use by the following pods: ")
            && out.stderr.contains(READER),
        "Swarm's message, naming the pod: {}",
        out.stderr
    );
    assert!(runsecret_exists(system, DB), "nothing was removed");
}

/// The Deployment's pods (not terminating).
fn web_pods(system: &System) -> Vec<Pod> {
    system
        .k
        .list::<Pod>(SHOP, "pods", &format!("app={WEB}"))
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn rollout(system: &System) {
    system.k.ok(
        &[
            "rollout",
            "status",
            "-n",
            SHOP,
            &format!("deployment/{WEB}"),
            "--timeout=120s",
        ],
        None,
    );
}

pub fn rotate_rolls_deployment(system: &mut System) {
    let template = pod(SHOP, WEB, Some(DB));
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WEB, "namespace": SHOP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": WEB}},
            "template": {
                "metadata": {"labels": {"app": WEB}, "annotations": template["metadata"]["annotations"]},
                "spec": template["spec"],
            },
        },
    });
    system.k.apply(&[deployment]);
    rollout(system);
    let first = web_pods(system);
    assert_eq!(first.len(), 1, "one web pod");
    let first = first[0].metadata.name.clone().expect("name");
    system.k.wait_ready(SHOP, &first);
    assert_eq!(
        system
            .k
            .read(SHOP, &first, "app", "/run/secrets/db_password"),
        system.values.db
    );

    let out = system.secret(
        &[
            "rotate",
            DB,
            "-",
            "--workload",
            &format!("deployment/{WEB}"),
        ],
        Some(system.values.db_v2.as_bytes()),
    );
    assert!(out.ok, "rotate: {}", out.stderr);
    assert!(
        out.stdout.contains(DB_V2) || out.stderr.contains(DB_V2),
        "rotate names the new version: {out:?}"
    );
    let stored: Deployment = system
        .k
        .get(Some(SHOP), &format!("deployment/{WEB}"))
        .expect("deployment");
    let annotation = stored
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(runsecrets::spec::SECRETS_ANNOTATION).cloned())
        .unwrap_or_default();
    assert!(
        annotation.contains(&format!("source={DB_V2},target={DB}")),
        "the template now references {DB_V2} at the old path: {annotation:?}"
    );

    rollout(system);
    let new = eventually(
        "the old web pod to be replaced",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let pods = web_pods(system);
            match pods.as_slice() {
                [only] if only.metadata.name.as_deref() != Some(first.as_str()) => {
                    only.metadata.name.clone()
                }
                _ => None,
            }
        },
    );
    system.k.wait_ready(SHOP, &new);
    assert_eq!(
        system.k.read(SHOP, &new, "app", "/run/secrets/db_password"),
        system.values.db_v2,
        "the new pod reads the new value at the same path"
    );
    eventually(
        "the old web pod to be gone",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let left: Option<Value> = system.k.get(Some(SHOP), &format!("pod/{first}"));
            left.is_none().then_some(())
        },
    );
}

pub fn rm_once_unused(system: &mut System) {
    let out = system.secret(&["rm", DB], None);
    assert!(out.ok, "rm of an unused secret: {}", out.stderr);
    assert!(!runsecret_exists(system, DB), "the RunSecret is gone");
    assert!(runsecret_exists(system, DB_V2), "the new version stays");
    let ls = system.secret(&["ls", "--format", "{{.Name}}"], None);
    assert!(ls.ok, "ls: {}", ls.stderr);
    let names: Vec<&str> = ls.stdout.lines().collect();
    assert!(
        names.contains(&DB_V2) && !names.contains(&DB),
        "ls after rm: {names:?}"
    );
}
