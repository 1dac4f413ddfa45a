//! The whole delivery path with nothing stubbed but the apiserver: kubelet's NodePublishVolume
//! (the captured volume context of pod shop/web-sa) → `runsecrets node` on its unix socket →
//! `runsecrets server --store kubernetes --authenticator kubernetes` over TLS → TokenReview (the
//! captured bodies) → a RunSecret unsealed → a file on a read-only tmpfs.

use crate::common;
use crate::common::node as node_harness;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use common::apiserver::ApiServer;
use common::server::Running;
use node_harness::{fixture, kubelet_request, Harness};
use tonic::Code;

const VALUE: &[u8] = b"end-to-end-root-password";

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn a_declared_secret_reaches_the_pod_and_only_that_pod() {
    if common::own_process::rerun_alone(
        "end_to_end::a_declared_secret_reaches_the_pod_and_only_that_pod",
    ) {
        return;
    }
    let api = ApiServer::start().await;
    let data = tempfile::tempdir().expect("tmp");
    let kubeconfig = api.kubeconfig(data.path(), "runsecrets");
    // Alone in this process (above); set before any client is built.
    std::env::set_var("KUBECONFIG", &kubeconfig);

    // The pod token kubelet put in the captured volume context reviews as shop/web, bound to
    // pod web-sa; the node plugin's own token reviews as runsecrets/runsecrets-node.
    let context = fixture("csi-volume-context.json");
    let tokens: serde_json::Value = serde_json::from_str(
        context["csi.storage.k8s.io/serviceAccount.tokens"]
            .as_str()
            .expect("tokens"),
    )
    .expect("json");
    let pod_token = tokens["runsecrets.io"]["token"].as_str().expect("token");
    api.review(pod_token, "tokenreview-response-ok.json");
    let mut node_review = common::fixture("tokenreview-response-ok.json");
    node_review["status"]["user"]["username"] =
        "system:serviceaccount:runsecrets:runsecrets-node".into();
    api.review_body("node-plugin-token", node_review);

    let server = Running::start(
        data.path(),
        &["--store", "kubernetes", "--authenticator", "kubernetes"],
    )
    .await;
    let delivery = server.delivery;

    // `kubectl apply` of a sealed RunSecret, sealed with the keys the server published.
    api.apply_sealed("shop", "mysql_root_password", VALUE);
    server.ready().await;

    let token_file = data.path().join("node-plugin-token");
    std::fs::write(&token_file, "node-plugin-token\n").expect("token file");
    let ca = data.path().join("tls/ca.crt");
    let node = Harness::start_with(&[], |args| {
        args.server = Some(format!("https://127.0.0.1:{}", delivery.port()));
        args.server_ca = Some(ca.clone());
        args.token_file = Some(token_file.clone());
    })
    .await;

    // kubelet's request shape, with the volume context of pod shop/web-sa.
    let uid = context["csi.storage.k8s.io/pod.uid"].as_str().expect("uid");
    let target = node.target(uid);
    let mut request = kubelet_request(&target, "mysql_root_password");
    request.volume_context = context
        .as_object()
        .expect("context")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect::<HashMap<_, _>>();
    node.publish(request.clone()).await.expect("published");
    let file = target.join("mysql_root_password");
    assert_eq!(std::fs::read(&file).expect("file"), VALUE);
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o444
    );
    assert!(target.join("kubernetes.io/serviceaccount").is_dir());

    node.unpublish(&request.volume_id, &target)
        .await
        .expect("unpublished");
    assert!(!target.exists());

    // The same token presented for a pod of the same uid in another namespace gets nothing.
    let mut other = request.clone();
    other
        .volume_context
        .insert("csi.storage.k8s.io/pod.namespace".into(), "bank".into());
    let err = node.publish(other).await.expect_err("another namespace");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("belongs to pod shop/web-sa"),
        "{}",
        err.message()
    );
    assert!(!target.join("mysql_root_password").exists());

    // And the node mounts it nowhere but under that pod's own kubelet directory.
    let elsewhere = node.target("11111111-2222-3333-4444-555555555555");
    let mut misplaced = request.clone();
    misplaced.target_path = elsewhere.to_string_lossy().into_owned();
    let err = node
        .publish(misplaced)
        .await
        .expect_err("another pod's directory");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("not kubelet's volume path for pod uid"),
        "{}",
        err.message()
    );
    assert!(!elsewhere.exists());
}
