//! The volume's life with a real kubelet: republish, a node plugin upgrade under a running pod,
//! unpublish.

use std::time::Duration;

use super::pods::{layout, READER};
use super::{metric, pod_dir, pod_mounts, volume_target};
use crate::api::pod;
use crate::eventually;
use crate::legacy_layout;
use crate::system::values::DB;
use crate::system::{System, SHOP};

const REPUBLISHES: &str = "runsecrets_node_publishes_total";

/// What every reader check compares: the files' content, and the volume's layout without
/// following links (kind, mode, owner and inode of each entry: a republish with unchanged data
/// must leave every file alone). The service-account token must stay readable throughout.
fn snapshot(system: &System) -> (String, String, Vec<[String; 6]>) {
    let k = &system.k;
    let token = k.read(
        SHOP,
        READER,
        "app",
        "/run/secrets/kubernetes.io/serviceaccount/token",
    );
    assert!(
        token.starts_with("ey"),
        "the service-account token is readable"
    );
    (
        k.read(SHOP, READER, "app", "/run/secrets/db_password"),
        k.read(SHOP, READER, "app", "/run/secrets/tls/key.pem"),
        layout(system),
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
        "same files, same inodes: unchanged data leaves the volume alone"
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

/// The plugin is upgraded under a running pod: stopped (the pod keeps its files), its volume
/// left as the previous version wrote it (kubelet's `..data` layout, rebuilt here from the
/// volume's own files), a process in the container holding files opened through the old links;
/// the new plugin converts the volume at kubelet's next republish, and answers a new pod.
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

    let target = volume_target(system, &system.k.pod(SHOP, READER));
    legacy_layout::with_writable(&target, || {
        legacy_layout::to_legacy(&target, &["kubernetes.io"])
    })
    .expect("remounting the reader's volume")
    .expect("rewriting it in the old layout");
    let k = &system.k;
    let links = k.exec(
        SHOP,
        READER,
        "app",
        "readlink /run/secrets/..data; readlink /run/secrets/tls",
    );
    assert!(
        links.ok,
        "the old layout in the container: {}",
        links.stderr
    );
    assert_eq!(
        links.stdout,
        format!("{}\n..data/tls\n", legacy_layout::LEGACY_DIR)
    );
    let holder = k.exec(
        SHOP,
        READER,
        "app",
        "exec 3</run/secrets/db_password 4</run/secrets/tls/key.pem; \
         sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /holder",
    );
    assert!(holder.ok, "starting the holder: {}", holder.stderr);

    system.run_node();
    // The new process serves kubelet's next call on the running pod's volume...
    republish(system, "2");
    let after = snapshot(system);
    assert_eq!(
        (after.0.clone(), after.1.clone()),
        contents_of(&before),
        "the same files, now in Swarm's layout (checked by the snapshot)"
    );
    let k = &system.k;
    let held = k.exec(
        SHOP,
        READER,
        "app",
        "p=$(cat /holder); cat /proc/$p/fd/3; echo; cat /proc/$p/fd/4; kill $p",
    );
    assert!(held.ok, "reading the holder's files: {}", held.stderr);
    assert_eq!(
        held.stdout,
        format!("{}\n{}", before.0, before.1),
        "files opened through the old links still read after the conversion"
    );
    // ...keeps it as it is at the one after...
    republish(system, "3");
    assert_eq!(snapshot(system), after, "converted once: same inodes since");
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

fn contents_of(snapshot: &(String, String, Vec<[String; 6]>)) -> (String, String) {
    (snapshot.0.clone(), snapshot.1.clone())
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
