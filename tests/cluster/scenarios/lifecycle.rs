//! The volume's life with a real kubelet: republish, a node plugin restart, unpublish.

use std::time::Duration;

use super::pods::READER;
use super::{metric, pod_dir, pod_mounts, volume_target};
use crate::api::pod;
use crate::eventually;
use crate::system::values::DB;
use crate::system::{System, SHOP};

const REPUBLISHES: &str = "runsecrets_node_publishes_total";

/// The files every reader check compares, and where `..data` points (a republish with
/// unchanged data must leave the volume alone).
fn snapshot(system: &System) -> (String, String, String) {
    let k = &system.k;
    let data = k.exec(SHOP, READER, "app", "readlink /run/secrets/..data");
    assert!(data.ok, "readlink ..data: {}", data.stderr);
    (
        k.read(SHOP, READER, "app", "/run/secrets/db_password"),
        k.read(SHOP, READER, "app", "/run/secrets/tls/key.pem"),
        data.stdout,
    )
}

/// Makes kubelet publish the reader's volume again now and waits until the node plugin answered
/// it. kubelet republishes requiresRepublish volumes on every sync of the pod: the periodic one
/// (about every 60-90 s) or one caused by a change to the pod, here a label. Both run the same
/// code in kubelet (WaitForAttachAndMount → MarkRemountRequired → NodePublishVolume), so a label
/// is a faithful trigger that does not make the test wait a minute.
fn republish(system: &System, round: &str) -> f64 {
    let port = system.node_admin_port;
    let before = metric(port, REPUBLISHES, &[("kind", "republish")]);
    system.k.ok(
        &[
            "label",
            "-n",
            SHOP,
            &format!("pod/{READER}"),
            &format!("republish={round}"),
            "--overwrite",
        ],
        None,
    );
    eventually(
        "kubelet to republish the reader's volume",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let now = metric(port, REPUBLISHES, &[("kind", "republish")]);
            (now > before).then_some(now)
        },
    )
}

pub fn republish_keeps_files(system: &mut System) {
    let before = snapshot(system);
    let deliveries = metric(
        system.admin_port,
        "runsecrets_deliveries_total",
        &[("outcome", "granted")],
    );
    republish(system, "1");
    assert!(
        metric(
            system.admin_port,
            "runsecrets_deliveries_total",
            &[("outcome", "granted")]
        ) > deliveries,
        "the republish fetched the secrets from the server with a fresh pod token"
    );
    assert_eq!(
        snapshot(system),
        before,
        "same files, same ..data: unchanged data leaves the volume alone"
    );
    let restarts = system
        .k
        .pod(SHOP, READER)
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum::<i32>();
    assert_eq!(restarts, 0, "no container restarted");
}

pub fn node_restart(system: &mut System) {
    let before = snapshot(system);
    let status = system
        .procs
        .stop("node")
        .expect("the node plugin was running");
    assert!(
        status.success(),
        "the node plugin exits cleanly on SIGTERM: {status}"
    );
    assert_eq!(
        snapshot(system),
        before,
        "files stay while the plugin is down"
    );

    system.run_node();
    // The new process serves kubelet's next call on the running pod's volume...
    republish(system, "2");
    assert_eq!(snapshot(system), before, "files stay across the restart");
    // ...and a new pod's first publish.
    let name = "after-restart";
    let out = system.k.create(&pod(SHOP, name, Some(DB)));
    assert!(out.ok, "creating {name}: {}", out.stderr);
    system.k.wait_ready(SHOP, name);
    assert_eq!(
        system.k.read(SHOP, name, "app", "/run/secrets/db_password"),
        system.values.db
    );
    system.k.delete(SHOP, &format!("pod/{name}"));
}

pub fn delete_unmounts(system: &mut System) {
    let k = &system.k;
    let stored = k.pod(SHOP, READER);
    let target = volume_target(system, &stored);
    let mounted = pod_mounts(system, &stored);
    assert!(
        mounted
            .iter()
            .any(|m| m.target == target.display().to_string()),
        "the volume is mounted before the deletion"
    );
    assert!(
        mounted
            .iter()
            .any(|m| m.source == "runsecrets" && m.target.contains("/volume-subpaths/")),
        "and the absolute target's subPath bind mount"
    );
    let unpublished = metric(
        system.node_admin_port,
        "runsecrets_node_unpublishes_total",
        &[],
    );
    k.delete(SHOP, &format!("pod/{READER}"));
    eventually(
        "kubelet to unpublish the reader's volume",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            (metric(
                system.node_admin_port,
                "runsecrets_node_unpublishes_total",
                &[],
            ) > unpublished)
                .then_some(())
        },
    );
    eventually(
        "no mount and no volume directory left for the reader",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || (pod_mounts(system, &stored).is_empty() && !target.parent()?.exists()).then_some(()),
    );
    let dir = pod_dir(system, &stored);
    eventually(
        "kubelet to remove the pod's directory",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || (!dir.exists()).then_some(()),
    );
}
