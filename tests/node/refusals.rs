//! What the node plugin refuses before it mounts anything: malformed requests, a context
//! without our token, hostile target paths and hostile volume attributes. Each refusal leaves
//! no mount, no directory and no call to the server.

use crate::common::node as node_harness;

use std::path::Path;

use node_harness::{kubelet_request, mounts_under, Harness};
use runsecrets::node::csi::volume_capability::{AccessType, BlockVolume, MountVolume};
use runsecrets::node::csi::NodePublishVolumeRequest;
use runsecrets::node::{EPHEMERAL_KEY, POD_UID_KEY, TOKENS_KEY};
use runsecrets::spec::{MOUNTPOINTS_ATTRIBUTE, SECRETS_ATTRIBUTE};
use tonic::Code;

const SECRETS: &[(&str, &[u8])] = &[("mysql_root_password", b"hunter2-root")];

async fn refused(h: &Harness, req: NodePublishVolumeRequest, code: Code, needle: &str) {
    let target = req.target_path.clone();
    let err = h.publish(req).await.expect_err("refused");
    assert_eq!(err.code(), code, "{}", err.message());
    assert!(
        err.message().contains(needle),
        "{needle:?} not in {:?}",
        err.message()
    );
    if !target.is_empty() && target.starts_with('/') {
        assert!(
            !Path::new(&target).join("kubernetes.io").exists(),
            "nothing written at {target}"
        );
    }
    assert!(mounts_under(h.dir.path()).is_empty(), "nothing mounted");
}

#[tokio::test]
async fn missing_arguments_are_invalid() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod");
    let base = kubelet_request(&target, "mysql_root_password");

    let mut req = base.clone();
    req.volume_id.clear();
    refused(&h, req, Code::InvalidArgument, "volume_id is missing").await;
    let mut req = base.clone();
    req.target_path.clear();
    refused(&h, req, Code::InvalidArgument, "target_path is missing").await;
    let mut req = base.clone();
    req.volume_capability = None;
    refused(
        &h,
        req,
        Code::InvalidArgument,
        "volume_capability is missing",
    )
    .await;
    let mut req = base.clone();
    if let Some(c) = req.volume_capability.as_mut() {
        c.access_type = Some(AccessType::Block(BlockVolume {}));
    }
    refused(&h, req, Code::InvalidArgument, "block access").await;
    let mut req = base.clone();
    if let Some(c) = req.volume_capability.as_mut() {
        c.access_type = Some(AccessType::Mount(MountVolume {
            fs_type: "ext4".into(),
            ..Default::default()
        }));
    }
    refused(&h, req, Code::InvalidArgument, "ext4").await;
    assert!(!target.exists());
    assert!(h.stub.requests().is_empty(), "the server was never asked");
}

#[tokio::test]
async fn a_writable_request_is_refused() {
    let h = Harness::start(SECRETS).await;
    let mut req = kubelet_request(&h.target("pod"), "mysql_root_password");
    req.readonly = false;
    refused(&h, req, Code::InvalidArgument, "readOnly: true").await;
}

#[tokio::test]
async fn a_context_without_our_attributes_is_invalid() {
    let h = Harness::start(SECRETS).await;
    let base = kubelet_request(&h.target("pod"), "mysql_root_password");
    let mut req = base.clone();
    req.volume_context.remove(SECRETS_ATTRIBUTE);
    refused(&h, req, Code::InvalidArgument, SECRETS_ATTRIBUTE).await;
    let mut req = base.clone();
    req.volume_context.remove(EPHEMERAL_KEY);
    refused(&h, req, Code::InvalidArgument, "ephemeral").await;
    let mut req = base.clone();
    req.volume_context
        .insert(EPHEMERAL_KEY.into(), "false".into());
    refused(&h, req, Code::InvalidArgument, "ephemeral").await;
    let mut req = base;
    req.volume_context.remove(POD_UID_KEY);
    refused(&h, req, Code::InvalidArgument, "podInfoOnMount").await;
}

#[tokio::test]
async fn no_token_for_our_audience_is_permission_denied() {
    let h = Harness::start(SECRETS).await;
    let base = kubelet_request(&h.target("pod"), "mysql_root_password");
    let want = "no token for audience runsecrets.io: the CSIDriver must set tokenRequests";
    let mut req = base.clone();
    req.volume_context.remove(TOKENS_KEY);
    refused(&h, req, Code::PermissionDenied, want).await;
    let mut req = base.clone();
    req.volume_context.insert(
        TOKENS_KEY.into(),
        r#"{"other-audience":{"token":"x","expirationTimestamp":"2026-11-26T19:17:26Z"}}"#.into(),
    );
    refused(&h, req, Code::PermissionDenied, want).await;
    let mut req = base.clone();
    req.volume_context
        .insert(TOKENS_KEY.into(), "not json".into());
    refused(&h, req, Code::PermissionDenied, want).await;
    let mut req = base;
    req.volume_context.insert(
        TOKENS_KEY.into(),
        r#"{"runsecrets.io":{"token":"","expirationTimestamp":"2026-11-26T19:17:26Z"}}"#.into(),
    );
    refused(&h, req, Code::PermissionDenied, want).await;
    assert!(h.stub.requests().is_empty());
}

#[tokio::test]
async fn hostile_targets_are_refused() {
    let h = Harness::start(SECRETS).await;
    let kubelet = h.kubelet.clone();
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside dir");
    let attr = "mysql_root_password";

    let dotdot = format!("{}/pods/../../outside/mount", kubelet.display());
    refused(
        &h,
        kubelet_request(Path::new(&dotdot), attr),
        Code::InvalidArgument,
        "normalised",
    )
    .await;

    refused(
        &h,
        kubelet_request(&outside.join("mount"), attr),
        Code::InvalidArgument,
        "outside the kubelet directory",
    )
    .await;

    let mut relative = kubelet_request(&outside, attr);
    relative.target_path = "pods/x/mount".into();
    refused(&h, relative, Code::InvalidArgument, "not absolute").await;

    // The target itself is a symlink (to a directory outside).
    let linked = h.target("pod-link");
    std::os::unix::fs::symlink(&outside, &linked).expect("symlink");
    refused(
        &h,
        kubelet_request(&linked, attr),
        Code::InvalidArgument,
        "is a symlink",
    )
    .await;

    // A parent directory is a symlink leading outside the kubelet directory.
    let volumes = kubelet.join("pods/escape/volumes/kubernetes.io~csi");
    std::fs::create_dir_all(&volumes).expect("volumes dir");
    let escape = volumes.join("runsecrets");
    std::os::unix::fs::symlink(&outside, &escape).expect("symlink");
    refused(
        &h,
        kubelet_request(&escape.join("mount"), attr),
        Code::InvalidArgument,
        "through a symlink",
    )
    .await;

    // Another pod's volume directory, or a place kubelet never publishes at.
    let mut foreign = kubelet_request(&h.target("pod-victim"), attr);
    foreign
        .volume_context
        .insert(runsecrets::node::POD_UID_KEY.into(), "pod-attacker".into());
    refused(
        &h,
        foreign,
        Code::InvalidArgument,
        "for pod uid \"pod-attacker\"",
    )
    .await;
    let plugins = kubelet.join("plugins/x");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    refused(
        &h,
        kubelet_request(&plugins.join("mount"), attr),
        Code::InvalidArgument,
        "not kubelet's volume path",
    )
    .await;

    // A file where the directory should be.
    let file = h.target("pod-file");
    std::fs::write(&file, b"x").expect("file");
    refused(
        &h,
        kubelet_request(&file, attr),
        Code::InvalidArgument,
        "not a directory",
    )
    .await;

    assert_eq!(
        std::fs::read_dir(&outside).expect("list").count(),
        0,
        "nothing written outside"
    );
    assert!(h.stub.requests().is_empty());
}

#[tokio::test]
async fn hostile_volume_attributes_are_refused_on_the_node() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod");
    // The pod-secrets-bad.json annotation, as a pod could write it into its own attributes.
    for attr in [
        "source=x,target=../../etc/passwd",
        "source=x,target=kubernetes.io/serviceaccount/token",
        "source=x,target=..data/x",
        "source=,mode=9999",
        "source=a,target=t;source=b,target=t",
    ] {
        refused(
            &h,
            kubelet_request(&target, attr),
            Code::InvalidArgument,
            SECRETS_ATTRIBUTE,
        )
        .await;
    }
    for mountpoints in [
        "../etc",
        "/etc",
        "kubernetes.io/serviceaccount/x",
        "mysql_root_password/x",
    ] {
        let mut req = kubelet_request(&target, "mysql_root_password");
        req.volume_context
            .insert(MOUNTPOINTS_ATTRIBUTE.into(), mountpoints.into());
        refused(&h, req, Code::InvalidArgument, MOUNTPOINTS_ATTRIBUTE).await;
    }
    assert!(!target.exists());
    assert!(h.stub.requests().is_empty());
}

/// Unpublish acts only where publish would: kubelet's volume path of a pod. Any other directory
/// in the kubelet directory (another volume type, a plugin's directory, a pod's own directory,
/// the parent or a child of a volume path) is refused and left as it was.
#[tokio::test]
async fn unpublish_refuses_every_path_publish_would_refuse() {
    let h = Harness::start(SECRETS).await;
    let kubelet = h.kubelet.clone();
    let csi = kubelet.join("pods/pod-a/volumes/kubernetes.io~csi/runsecrets");
    for victim in [
        kubelet.join("pods/pod-a/volumes/kubernetes.io~empty-dir/cache"),
        kubelet.join("plugins/kubernetes.io/csi/other"),
        kubelet.join("pods/pod-a"),
        csi.clone(),
        csi.join("mount/inner"),
        kubelet.join("pods/pod-a/volumes/kubernetes.io~secret/mount"),
    ] {
        std::fs::create_dir_all(&victim).expect("victim dir");
        let err = h
            .unpublish("csi-any", &victim)
            .await
            .expect_err("not a volume path");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message()
                .contains("is not kubelet's volume path for a pod"),
            "{}",
            err.message()
        );
        assert!(victim.is_dir(), "{} was removed", victim.display());
    }
}

/// Log lines of this test binary, for checking what the plugin logs.
fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
    .clone()
}

/// A volume directory holding files runsecrets did not write (nothing of ours mounted there) is
/// left in place with an error that says so; kubelet retries, the answer stays the same, and
/// the warning is logged once, not on every retry.
#[tokio::test]
async fn a_directory_of_files_we_did_not_write_is_left_and_reported_once() {
    let logs = captured_logs();
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-foreign");
    std::fs::create_dir_all(&target).expect("target");
    std::fs::write(target.join("notes.txt"), b"not ours").expect("file");
    for _ in 0..3 {
        let err = h
            .unpublish("csi-foreign-volume", &target)
            .await
            .expect_err("left in place");
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert_eq!(
            err.message(),
            "removing the target directory: it holds files that runsecrets did not write (no \
             runsecrets volume is mounted there); they are left in place: remove them by hand"
        );
    }
    assert_eq!(
        std::fs::read(target.join("notes.txt")).expect("still there"),
        b"not ours"
    );
    let text = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("csi-foreign-volume"))
        .collect();
    let warnings = lines.iter().filter(|l| l.contains(" WARN ")).count();
    assert_eq!(warnings, 1, "{lines:#?}");
    // Once the files are gone, the retry succeeds and a new failure would be logged again.
    std::fs::remove_file(target.join("notes.txt")).expect("rm");
    h.unpublish("csi-foreign-volume", &target)
        .await
        .expect("empty directory removed");
    assert!(!target.exists());
}
