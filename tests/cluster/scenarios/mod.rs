//! The scenarios, in the order they run. Later ones use what earlier ones made (pod
//! `shop/reader` from `pods`; the Deployment from `rotation`); each names what it proves.

mod crd;
mod lifecycle;
mod logs;
pub mod pods;
mod refusals;
mod rotation;
mod sanity;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use crate::system::System;

pub type Scenario = fn(&mut System);

pub const ALL: [(&str, Scenario); 16] = [
    (
        "crd: the apiserver keeps a RunSecret's value immutable (CEL), letting only a reseal change its sealing",
        crd::spec_is_immutable,
    ),
    (
        "webhook: an invalid RunSecret is refused by /validate",
        crd::invalid_runsecret_refused,
    ),
    ("csi-sanity: the Node suite", sanity::node_suite),
    (
        "pod: reads its secrets (short and long syntax, uid/gid/mode, absolute target, SA token, read-only)",
        pods::reads_its_secrets,
    ),
    (
        "refused: a secret missing from the pod's namespace",
        refusals::missing_secret,
    ),
    (
        "refused: a pod in another namespace (webhook, and a hand-written volume at delivery)",
        refusals::other_namespace,
    ),
    (
        "refused: a service account the secret is not granted to (webhook, and a hand-written volume at delivery)",
        refusals::service_account_not_granted,
    ),
    (
        "policy: an env literal is refused in an enforced namespace",
        refusals::env_literal_enforced,
    ),
    (
        "policy: an env literal is warned about in a warn namespace",
        refusals::env_literal_warned,
    ),
    (
        "republish: kubelet's republish keeps the files",
        lifecycle::republish_keeps_files,
    ),
    (
        "restart: the node plugin restarts under running pods",
        lifecycle::node_restart,
    ),
    (
        "rm: refused while a pod uses the secret",
        rotation::rm_refused_in_use,
    ),
    (
        "rotate: --workload rolls the Deployment to the new value",
        rotation::rotate_rolls_deployment,
    ),
    (
        "delete: deleting the pod unmounts and removes its volume",
        lifecycle::delete_unmounts,
    ),
    (
        "rm: allowed once no pod uses the secret",
        rotation::rm_once_unused,
    ),
    (
        "logs: no secret value in any server, node, kubelet or apiserver log",
        logs::no_secret_values,
    ),
];

/// One mount from /proc/self/mountinfo.
#[derive(Debug)]
pub struct Mount {
    pub target: String,
    /// Per-mount options (ro, nosuid, …).
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
}

pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let tail: Vec<&str> = tail.split(' ').collect();
            Some(Mount {
                target: head.get(4)?.to_string(),
                options: head.get(5)?.split(',').map(str::to_string).collect(),
                fstype: tail.first()?.to_string(),
                source: tail.get(1)?.to_string(),
            })
        })
        .collect()
}

/// kubelet's directory for a pod.
pub fn pod_dir(system: &System, pod: &Pod) -> PathBuf {
    let uid = pod.metadata.uid.as_deref().expect("pod uid");
    system.env.kubelet_root.join("pods").join(uid)
}

/// Where kubelet asks the plugin to publish the pod's `runsecrets` volume.
pub fn volume_target(system: &System, pod: &Pod) -> PathBuf {
    pod_dir(system, pod).join("volumes/kubernetes.io~csi/runsecrets/mount")
}

/// Mounts under the pod's kubelet directory.
pub fn pod_mounts(system: &System, pod: &Pod) -> Vec<Mount> {
    let dir = pod_dir(system, pod).display().to_string();
    mounts()
        .into_iter()
        .filter(|m| m.target.starts_with(&format!("{dir}/")))
        .collect()
}

/// A node or server metric, read from its admin listener.
pub fn metric(port: u16, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = crate::api::http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "/metrics");
    crate::api::metric(&body, name, labels)
}
