//! The service's decisions with a fake mount table and a delivery server that cannot be
//! reached: a republish keeps the pod's files, a first publish leaves nothing behind, and a
//! filesystem runsecrets did not mount is never written to or unmounted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Request};
use zeroize::Zeroizing;

use super::{NodeService, Settings};
use crate::node::client::{DeliveryClient, DeliveryConfig};
use crate::node::csi::node_server::Node;
use crate::node::csi::volume_capability::{AccessType, MountVolume};
use crate::node::csi::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability};
use crate::node::fake_mounts::{Call, FakeMounts};
use crate::node::metrics::NodeMetrics;
use crate::node::request::{
    EPHEMERAL_KEY, POD_NAMESPACE_KEY, POD_NAME_KEY, POD_UID_KEY, TOKENS_KEY,
};
use crate::node::volume::first_mount;
use crate::node::writer::{FileSpec, Layout};
use crate::spec::{SECRETS_ATTRIBUTE, SERVICE_ACCOUNT_DIR};

const UID: &str = "0b5e1a52-7d0c-4c53-9d1e-2f6a4b8c9d01";

struct Fixture {
    dir: tempfile::TempDir,
    mounts: Arc<FakeMounts>,
    service: NodeService,
}

/// A service whose delivery server cannot be reached: its CA file does not exist.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir(&kubelet).expect("kubelet dir");
    let kubelet = std::fs::canonicalize(&kubelet).expect("real");
    let client = DeliveryClient::new(DeliveryConfig {
        server: "https://127.0.0.1:9".into(),
        ca: dir.path().join("no-such-ca.crt"),
        token_file: dir.path().join("no-such-token"),
        timeout: Duration::from_secs(1),
    })
    .expect("client");
    let mounts = Arc::new(FakeMounts::default());
    let service = NodeService::new(
        Settings {
            node_id: "node-1".into(),
            kubelet_dir: kubelet.clone(),
            kubelet_real: kubelet,
            tmpfs_size: 1024 * 1024,
        },
        client,
        mounts.clone(),
        Arc::new(NodeMetrics::default()),
    );
    Fixture {
        dir,
        mounts,
        service,
    }
}

impl Fixture {
    /// kubelet's path for the pod's inline volume, its parent created as kubelet does.
    fn target(&self) -> PathBuf {
        let volume = self
            .dir
            .path()
            .join("kubelet/pods")
            .join(UID)
            .join("volumes/kubernetes.io~csi/runsecrets");
        std::fs::create_dir_all(&volume).expect("volume dir");
        std::fs::canonicalize(volume).expect("real").join("mount")
    }
}

fn request(target: &Path) -> NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        (EPHEMERAL_KEY, "true"),
        (SECRETS_ATTRIBUTE, "db_password"),
        (POD_NAMESPACE_KEY, "shop"),
        (POD_NAME_KEY, "db-0"),
        (POD_UID_KEY, UID),
        (TOKENS_KEY, r#"{"runsecrets.io":{"token":"pod-token"}}"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    NodePublishVolumeRequest {
        volume_id: "csi-1".into(),
        target_path: target.to_string_lossy().into_owned(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            ..Default::default()
        }),
        readonly: true,
        volume_context: context,
        ..Default::default()
    }
}

fn published(m: &FakeMounts, target: &Path) {
    let layout = Layout {
        files: vec![FileSpec {
            path: "db_password".into(),
            data: std::sync::Arc::new(Zeroizing::new(b"hunter2".to_vec())),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mode: 0o444,
        }],
        dirs: vec![SERVICE_ACCOUNT_DIR.into()],
    };
    first_mount(m, target, false, &layout, 1024 * 1024).expect("published");
    m.take_log();
}

#[tokio::test]
async fn a_republish_without_the_server_keeps_the_last_good_files() {
    let f = fixture();
    let target = f.target();
    published(&f.mounts, &target);
    let err = f
        .service
        .node_publish_volume(Request::new(request(&target)))
        .await
        .expect_err("the server cannot be asked");
    assert_eq!(err.code(), Code::Unavailable, "kubelet retries");
    assert!(
        err.message().starts_with("loading the server CA: ")
            && err
                .message()
                .ends_with("; the volume keeps its last good files"),
        "{}",
        err.message()
    );
    assert_eq!(
        std::fs::read(target.join("db_password")).expect("still there"),
        b"hunter2"
    );
    assert_eq!(f.mounts.take_log(), [], "not remounted, not unmounted");
    assert!(f.mounts.volume(&target).is_some_and(|v| v.sealed));
}

#[tokio::test]
async fn a_first_publish_without_the_server_leaves_nothing() {
    let f = fixture();
    let target = f.target();
    let err = f
        .service
        .node_publish_volume(Request::new(request(&target)))
        .await
        .expect_err("the server cannot be asked");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        !err.message().contains("last good files"),
        "{}",
        err.message()
    );
    assert!(!target.exists(), "no directory");
    assert_eq!(f.mounts.take_log(), [], "nothing mounted");
}

#[tokio::test]
async fn a_filesystem_runsecrets_did_not_mount_is_left_alone() {
    let f = fixture();
    let target = f.target();
    std::fs::create_dir(&target).expect("dir");
    f.mounts.mount_foreign(&target, "ext4");
    let err = f
        .service
        .node_publish_volume(Request::new(request(&target)))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "checking the target path: a ext4 filesystem that runsecrets did not mount is there"
    );
    let unpublish = NodeUnpublishVolumeRequest {
        volume_id: "csi-1".into(),
        target_path: target.to_string_lossy().into_owned(),
    };
    let err = f
        .service
        .node_unpublish_volume(Request::new(unpublish))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(f.mounts.take_log(), [], "never mounted over or unmounted");
    assert!(target.is_dir());
}

#[tokio::test]
async fn an_unpublish_removes_a_published_volume_once() {
    let f = fixture();
    let target = f.target();
    published(&f.mounts, &target);
    let unpublish = || NodeUnpublishVolumeRequest {
        volume_id: "csi-1".into(),
        target_path: target.to_string_lossy().into_owned(),
    };
    f.service
        .node_unpublish_volume(Request::new(unpublish()))
        .await
        .expect("unpublished");
    assert!(!target.exists());
    assert_eq!(f.mounts.volume(&target), None);
    f.service
        .node_unpublish_volume(Request::new(unpublish()))
        .await
        .expect("again: already gone");
    assert_eq!(f.mounts.take_log(), [Call::Writable, Call::Unmount]);
}

#[tokio::test]
async fn a_ca_that_cannot_be_used_is_named_once_with_its_cause() {
    let f = fixture();
    let target = f.target();
    let ca = f.dir.path().join("no-such-ca.crt");
    let publish = || {
        f.service
            .node_publish_volume(Request::new(request(&target)))
    };
    let err = publish().await.expect_err("no CA file");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.message().matches(&*ca.to_string_lossy()).count(),
        1,
        "{}",
        err.message()
    );
    std::fs::write(&ca, b"not a certificate\n").expect("ca");
    let err = publish().await.expect_err("no certificate in it");
    assert_eq!(
        err.message(),
        format!(
            "loading the server CA: {}: no certificate in the file",
            ca.display()
        )
    );
}
