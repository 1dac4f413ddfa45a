//! Concurrency, restart and local mode: publishes for different pods overlap, publishes of
//! one target are serialised, a restarted plugin finds its volumes in the mount table, and
//! `--data-dir` finds the server's CA and node token.

use crate::common;
use crate::common::node as node_harness;

use std::time::Duration;

use node_harness::{kubelet_request, mountinfo, request_for_pod, Harness, NODE_TOKEN};
use tonic::Code;

const SECRETS: &[(&str, &[u8])] = &[("mysql_root_password", b"hunter2-root")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: mounts tmpfs"]
async fn publishes_for_different_pods_overlap() {
    let h = Harness::start(SECRETS).await;
    // Each answer takes a while, so serialised publishes could never be in flight together.
    h.stub.set_delay(Duration::from_millis(300));
    let mut tasks = Vec::new();
    for n in 0..8 {
        let target = h.target(&format!("pod-{n}"));
        let req = request_for_pod(&target, "mysql_root_password", n);
        let mut client = h.node.clone();
        tasks.push(tokio::spawn(async move {
            client.node_publish_volume(req).await.map(|_| target)
        }));
    }
    for task in tasks {
        let target = task.await.expect("task").expect("publish");
        assert_eq!(
            std::fs::read(target.join("mysql_root_password")).expect("file"),
            b"hunter2-root"
        );
    }
    assert!(
        h.stub.max_in_flight() > 1,
        "publishes were serialised: at most {} in flight",
        h.stub.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: mounts tmpfs"]
async fn publishes_of_one_target_are_serialised() {
    let h = Harness::start(SECRETS).await;
    h.stub.set_delay(Duration::from_millis(100));
    let target = h.target("pod-same");
    let req = kubelet_request(&target, "mysql_root_password");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (mut client, req) = (h.node.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            client.node_publish_volume(req).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("publish");
    }
    let mounts = mountinfo().into_iter().filter(|m| m.0 == target).count();
    assert_eq!(mounts, 1, "one tmpfs, whatever the interleaving");
    assert_eq!(
        h.stub.max_in_flight(),
        1,
        "publishes of one target reached the server concurrently"
    );
    h.unpublish(&req.volume_id, &target)
        .await
        .expect("unpublish");
    assert!(!target.exists());
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn a_restarted_plugin_recognises_its_volumes() {
    let mut h = Harness::start(SECRETS).await;
    let target = h.target("pod-restart");
    let req = kubelet_request(&target, "mysql_root_password");
    h.publish(req.clone()).await.expect("publish");
    h.stop().await;
    let kubelet = h.kubelet.clone();
    let socket = h.socket.clone();
    let ca = h.dir.path().join("ca.crt");
    let token = h.dir.path().join("node-token");
    let port = h.stub.addr.port();
    // A new plugin on the same kubelet directory, server and socket.
    let again = Harness::start_with(SECRETS, |args| {
        args.kubelet_dir = kubelet;
        args.endpoint = format!("unix://{}", socket.display());
        args.server_ca = Some(ca);
        args.token_file = Some(token);
        args.server = Some(format!("https://127.0.0.1:{port}"));
    })
    .await;
    let (_, metrics) = common::tls::plain_get(again.admin, "/metrics").await;
    assert!(
        metrics.contains("runsecrets_node_volumes_mounted 1"),
        "{metrics}"
    );
    again
        .publish(req.clone())
        .await
        .expect("republish after restart");
    again
        .unpublish(&req.volume_id, &target)
        .await
        .expect("unpublish after restart");
    assert!(!target.exists());
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn local_mode_uses_the_server_data_directory() {
    let h = Harness::start(SECRETS).await;
    let data = h.dir.path().join("server-data");
    std::fs::create_dir_all(data.join("tls")).expect("tls dir");
    std::fs::create_dir_all(data.join("delivery")).expect("delivery dir");
    std::fs::write(data.join("tls/ca.crt"), &h.stub.ca_pem).expect("ca");
    std::fs::write(data.join("delivery/node-token"), format!("{NODE_TOKEN}\n")).expect("token");
    let kubelet = h.kubelet.clone();
    let port = h.stub.addr.port();
    let socket = h.dir.path().join("local/csi.sock");
    let local = Harness::start_with(&[], |args| {
        args.endpoint = format!("unix://{}", socket.display());
        args.node_id = None;
        args.server_ca = None;
        args.token_file = None;
        args.data_dir = Some(data.clone());
        args.kubelet_dir = kubelet;
        // The stub listens on a random port, not the local default 127.0.0.1:8444.
        args.server = Some(format!("https://127.0.0.1:{port}"));
    })
    .await;
    let target = h.target("pod-local");
    local
        .publish(kubelet_request(&target, "mysql_root_password"))
        .await
        .expect("publish in local mode");
    let requests = h.stub.requests();
    assert_eq!(requests.last().expect("asked").node_id, "local");
    std::fs::remove_file(data.join("delivery/node-token")).expect("remove token");
    let err = local
        .publish(kubelet_request(
            &h.target("pod-local-2"),
            "mysql_root_password",
        ))
        .await
        .expect_err("no node token");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().starts_with("reading the node token"),
        "{}",
        err.message()
    );
    local
        .unpublish("csi-local", &target)
        .await
        .expect("unpublish");
}
