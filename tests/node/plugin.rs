//! The node plugin driven as kubelet drives it: kubelet's real NodePublishVolume request on the
//! unix socket, a real tmpfs at a temporary target, a stub delivery server over TLS.

use crate::common;
use crate::common::legacy_layout;
use crate::common::node as node_harness;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use node_harness::{fixture, fixture_token, kubelet_request, mountinfo, Harness, Mode};
use runsecrets::node::MOUNT_SOURCE;
use runsecrets::spec::{MOUNTPOINTS_ATTRIBUTE, SERVICE_ACCOUNT_DIR};
use tonic::Code;

const ATTRIBUTE: &str = "mysql_root_password\n\
    source=tls_key,target=tls/key.pem,uid=999,gid=999,mode=0400\n\
    source=api_token,target=/etc/app/token";

const SECRETS: &[(&str, &[u8])] = &[
    ("mysql_root_password", b"hunter2-root"),
    (
        "tls_key",
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n",
    ),
    ("api_token", b"tok-123"),
];

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The mount entries at exactly `path`.
fn mounts_at(path: &Path) -> Vec<(String, String, String, String)> {
    mountinfo()
        .into_iter()
        .filter(|m| m.0 == path)
        .map(|m| (m.1, m.2, m.3, m.4))
        .collect()
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// Every entry under `root` as `ls -lR` shows it without following links: (relative path,
/// `f`/`d`/`l`, mode, uid, gid), mount points' contents included.
fn entries(root: &Path) -> Vec<(String, char, u32, u32, u32)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, char, u32, u32, u32)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let kind = if m.file_type().is_symlink() {
                'l'
            } else if m.is_dir() {
                'd'
            } else {
                'f'
            };
            out.push((rel.clone(), kind, m.mode() & 0o7777, m.uid(), m.gid()));
            if kind == 'd' {
                walk(&path, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

/// The volume of [`ATTRIBUTE`] as Swarm lays it out: regular files with their declared owner
/// and mode, real directories, nothing else.
fn swarm_layout() -> Vec<(String, char, u32, u32, u32)> {
    [
        (".external", 'd', 0o755, 0, 0),
        (".external/etc", 'd', 0o755, 0, 0),
        (".external/etc/app", 'd', 0o755, 0, 0),
        (".external/etc/app/token", 'f', 0o444, 0, 0),
        ("kubernetes.io", 'd', 0o755, 0, 0),
        ("kubernetes.io/serviceaccount", 'd', 0o755, 0, 0),
        ("mysql_root_password", 'f', 0o444, 0, 0),
        ("tls", 'd', 0o755, 0, 0),
        ("tls/key.pem", 'f', 0o400, 999, 999),
    ]
    .into_iter()
    .map(|(p, k, m, u, g)| (p.to_string(), k, m, u, g))
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect()
}

#[derive(Debug, PartialEq)]
enum Sealed {
    /// The tmpfs itself is read-only.
    Filesystem,
    /// The mount is, the tmpfs under it not yet: a replaced file is still held open, and the
    /// kernel refuses a read-only tmpfs while it has open files that were removed.
    MountOnly,
}

/// One mount at `target`, read-only with nosuid/nodev/noexec, and how far down.
fn assert_sealed(target: &Path, want: Sealed) {
    let mounts = mounts_at(target);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let (options, _, _, super_options) = &mounts[0];
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.split(',').any(|o| o == flag), "{flag} in {options}");
    }
    let got = if super_options.starts_with("ro,") {
        Sealed::Filesystem
    } else {
        Sealed::MountOnly
    };
    assert_eq!(got, want, "{mounts:?}");
    let err = std::fs::write(target.join("x"), b"x").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn publish_lays_out_files_as_swarm_does() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("5dd53397-9cdd-4a3d-b639-3ec27c320d8f");
    h.publish(kubelet_request(&target, ATTRIBUTE))
        .await
        .expect("publish succeeds");

    assert_eq!(read(&target.join("mysql_root_password")), b"hunter2-root");
    assert_eq!(read(&target.join("tls/key.pem")), SECRETS[1].1);
    assert_eq!(read(&target.join(".external/etc/app/token")), b"tok-123");

    // Swarm's layout: what `ls -lR` shows without following links is what was declared.
    assert_eq!(entries(&target), swarm_layout());
    // The token mount point: a real, empty directory.
    let sa = target.join(SERVICE_ACCOUNT_DIR);
    let sa_meta = std::fs::symlink_metadata(&sa).expect("serviceaccount dir");
    assert!(sa_meta.is_dir(), "a real directory, not a link");
    assert_eq!(sa_meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_dir(&sa).expect("list").count(), 0);
    assert!(std::fs::symlink_metadata(target.join("kubernetes.io"))
        .expect("kubernetes.io")
        .is_dir());

    // A read-only, nodev/nosuid/noexec tmpfs of ours.
    let mounts = mounts_at(&target);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let (options, fs_type, source, super_options) = &mounts[0];
    assert_eq!((fs_type.as_str(), source.as_str()), ("tmpfs", MOUNT_SOURCE));
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.split(',').any(|o| o == flag), "{flag} in {options}");
    }
    assert!(super_options.starts_with("ro,"), "{super_options}");
    let err = std::fs::write(target.join("x"), b"x").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    let err = std::fs::create_dir(sa.join("x")).expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");

    // What the server was asked, with the pod's token and identity as kubelet gave them.
    let requests = h.stub.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    let context = &fixture("csi-nodepublish-request.json")["volumeContext"];
    assert_eq!(*r.token, fixture_token());
    assert_eq!(r.pod_namespace, context["csi.storage.k8s.io/pod.namespace"]);
    assert_eq!(r.pod_name, context["csi.storage.k8s.io/pod.name"]);
    assert_eq!(r.pod_uid, context["csi.storage.k8s.io/pod.uid"]);
    assert_eq!(r.secrets, ["mysql_root_password", "tls_key", "api_token"]);
    assert_eq!(r.node_id, "node-1");
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn repeated_publish_is_idempotent() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-a");
    let req = kubelet_request(&target, ATTRIBUTE);
    h.publish(req.clone()).await.expect("first publish");
    let files = [
        "mysql_root_password",
        "tls",
        "tls/key.pem",
        ".external/etc/app/token",
    ];
    let before: Vec<u64> = files.iter().map(|f| inode(&target.join(f))).collect();
    h.publish(req.clone()).await.expect("second publish");
    h.publish(req).await.expect("third publish");
    assert_eq!(mounts_at(&target).len(), 1, "one mount, not a stack");
    let after: Vec<u64> = files.iter().map(|f| inode(&target.join(f))).collect();
    assert_eq!(
        after, before,
        "unchanged data is not rewritten: same inodes"
    );
    assert_eq!(entries(&target), swarm_layout());
    assert_eq!(read(&target.join("mysql_root_password")), b"hunter2-root");
    assert_eq!(h.stub.requests().len(), 3, "every publish asks the server");
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn republish_replaces_changed_files_and_keeps_mount_points() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-b");
    let mut req = kubelet_request(&target, ATTRIBUTE);
    req.volume_context
        .insert(MOUNTPOINTS_ATTRIBUTE.into(), "conf.d\ncerts/extra".into());
    h.publish(req.clone()).await.expect("publish");
    let inode = |p: &Path| std::fs::symlink_metadata(p).expect("stat").ino();
    let sa = target.join(SERVICE_ACCOUNT_DIR);
    let before = (
        inode(&sa),
        inode(&target.join("kubernetes.io")),
        inode(&target.join("conf.d")),
        inode(&target.join("certs/extra")),
    );
    let (root_file, key) = (
        inode(&target.join("mysql_root_password")),
        inode(&target.join("tls/key.pem")),
    );
    let mut held = std::fs::File::open(target.join("mysql_root_password")).expect("open");

    h.stub.set_secret("mysql_root_password", b"rotated-value");
    h.publish(req.clone()).await.expect("republish");

    assert_eq!(read(&target.join("mysql_root_password")), b"rotated-value");
    assert_eq!(read(&target.join("tls/key.pem")), SECRETS[1].1);
    assert_ne!(
        inode(&target.join("mysql_root_password")),
        root_file,
        "the changed file was replaced by rename"
    );
    assert_eq!(
        inode(&target.join("tls/key.pem")),
        key,
        "the unchanged file was not touched"
    );
    let mut old = Vec::new();
    held.read_to_end(&mut old).expect("read the held file");
    assert_eq!(
        old, b"hunter2-root",
        "a reader holding the old file keeps it whole"
    );
    let mut want = swarm_layout();
    want.extend([
        ("certs".to_string(), 'd', 0o755, 0, 0),
        ("certs/extra".to_string(), 'd', 0o755, 0, 0),
        ("conf.d".to_string(), 'd', 0o755, 0, 0),
    ]);
    want.sort();
    assert_eq!(entries(&target), want, "no temporary file, no link");
    let after = (
        inode(&sa),
        inode(&target.join("kubernetes.io")),
        inode(&target.join("conf.d")),
        inode(&target.join("certs/extra")),
    );
    assert_eq!(before, after, "mount points are never replaced");
    assert_sealed(&target, Sealed::MountOnly);

    // Once the reader lets go, the next republish (nothing to write) seals the tmpfs too.
    drop(held);
    h.publish(req)
        .await
        .expect("republish after the reader closed");
    assert_sealed(&target, Sealed::Filesystem);
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn a_volume_in_the_old_layout_is_converted_by_the_next_republish() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-upgrade");
    let mut req = kubelet_request(&target, ATTRIBUTE);
    req.volume_context
        .insert(MOUNTPOINTS_ATTRIBUTE.into(), "conf.d".into());
    h.publish(req.clone()).await.expect("publish");
    let mount_points = (
        inode(&target.join(SERVICE_ACCOUNT_DIR)),
        inode(&target.join("conf.d")),
    );
    // The volume as the previous version of the plugin left it.
    legacy_layout::with_writable(&target, || {
        legacy_layout::to_legacy(&target, &["kubernetes.io", "conf.d"])
    })
    .expect("remount")
    .expect("old layout");
    assert!(
        std::fs::symlink_metadata(target.join("tls"))
            .expect("lstat")
            .file_type()
            .is_symlink(),
        "the fixture is kubelet's layout"
    );
    // A container that opened its files through the old links before the upgrade.
    let mut held: Vec<std::fs::File> = ["mysql_root_password", "tls/key.pem"]
        .iter()
        .map(|f| std::fs::File::open(target.join(f)).expect("open"))
        .collect();

    h.publish(req.clone()).await.expect("republish");

    let mut want = swarm_layout();
    want.push(("conf.d".into(), 'd', 0o755, 0, 0));
    want.sort();
    assert_eq!(
        entries(&target),
        want,
        "no ..data, no link, no timestamped directory"
    );
    assert_eq!(read(&target.join("tls/key.pem")), SECRETS[1].1);
    assert_eq!(
        (
            inode(&target.join(SERVICE_ACCOUNT_DIR)),
            inode(&target.join("conf.d"))
        ),
        mount_points,
        "mount points are never replaced"
    );
    for (file, want) in held.iter_mut().zip([SECRETS[0].1, SECRETS[1].1]) {
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("read the held file");
        assert_eq!(
            data, want,
            "a file held open through the old links still reads"
        );
    }
    assert_sealed(&target, Sealed::MountOnly);

    // From then on like any volume: an unchanged republish touches no file, and once the
    // reader is gone it seals the tmpfs too.
    drop(held);
    let key = inode(&target.join("tls/key.pem"));
    h.publish(req).await.expect("republish again");
    assert_eq!(inode(&target.join("tls/key.pem")), key);
    assert_sealed(&target, Sealed::Filesystem);
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn republish_with_the_server_down_keeps_the_last_good_files() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-c");
    let req = kubelet_request(&target, ATTRIBUTE);
    h.publish(req.clone()).await.expect("publish");
    let root_file = inode(&target.join("mysql_root_password"));
    h.stub.set_secret("mysql_root_password", b"never-delivered");

    for mode in [Mode::Down, Mode::Unavailable, Mode::Deny] {
        h.stub.set_mode(mode);
        let err = h.publish(req.clone()).await.expect_err("republish fails");
        let want = if mode == Mode::Deny {
            Code::PermissionDenied
        } else {
            Code::Unavailable
        };
        assert_eq!(err.code(), want, "{mode:?}: {}", err.message());
        assert!(
            err.message().contains("keeps its last good files"),
            "{}",
            err.message()
        );
        assert_eq!(read(&target.join("mysql_root_password")), b"hunter2-root");
        assert_eq!(inode(&target.join("mysql_root_password")), root_file);
        assert_eq!(mounts_at(&target).len(), 1, "still mounted");
    }
    h.stub.set_mode(Mode::Serve);
    h.publish(req).await.expect("the next republish recovers");
    assert_eq!(
        read(&target.join("mysql_root_password")),
        b"never-delivered"
    );
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn unpublish_leaves_nothing_and_is_idempotent() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-d");
    let req = kubelet_request(&target, ATTRIBUTE);
    h.publish(req.clone()).await.expect("publish");
    assert!(target.is_dir());
    // A reader that still holds files when the volume goes (the unmount is then lazy).
    let mut held: Vec<std::fs::File> = ["mysql_root_password", "tls/key.pem"]
        .iter()
        .map(|f| std::fs::File::open(target.join(f)).expect("open"))
        .collect();
    h.unpublish(&req.volume_id, &target)
        .await
        .expect("unpublish");
    for file in &mut held {
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("read the held file");
        assert!(
            !data.is_empty() && data.iter().all(|b| *b == 0),
            "the file was zeroed before the unmount"
        );
    }
    drop(held);
    assert!(!target.exists(), "target directory removed");
    assert!(mounts_at(&target).is_empty(), "nothing mounted");
    h.unpublish(&req.volume_id, &target)
        .await
        .expect("second unpublish succeeds");
    let never = h.target("never-published");
    h.unpublish("csi-unknown", &never)
        .await
        .expect("unknown volume is already gone");
}

#[tokio::test]
async fn a_failed_first_publish_leaves_nothing() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-e");
    h.stub.set_mode(Mode::Unavailable);
    let err = h
        .publish(kubelet_request(&target, ATTRIBUTE))
        .await
        .expect_err("server unavailable");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("token review unavailable"),
        "{}",
        err.message()
    );
    assert!(!target.exists());
    assert!(mounts_at(&target).is_empty());
}

#[tokio::test]
async fn server_denial_is_permission_denied_with_its_reason() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-f");
    h.stub.set_mode(Mode::Deny);
    let err = h
        .publish(kubelet_request(&target, ATTRIBUTE))
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("token is bound to pod shop/other, not node-test/csi-secrets"),
        "{}",
        err.message()
    );
    assert!(
        !err.message().contains(&fixture_token()),
        "no token in errors"
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn an_unknown_secret_is_not_found() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-g");
    let err = h
        .publish(kubelet_request(&target, "no_such_secret"))
        .await
        .expect_err("not found");
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("no_such_secret"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_wrong_node_token_is_permission_denied() {
    let h = Harness::start(SECRETS).await;
    std::fs::write(h.dir.path().join("node-token"), "stolen\n").expect("token");
    let target = h.target("pod-h");
    let err = h
        .publish(kubelet_request(&target, ATTRIBUTE))
        .await
        .expect_err("unauthenticated");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("Unauthenticated"),
        "{}",
        err.message()
    );
}

#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn metrics_count_publishes_and_mounted_volumes() {
    let h = Harness::start(SECRETS).await;
    let target = h.target("pod-i");
    let req = kubelet_request(&target, ATTRIBUTE);
    h.publish(req.clone()).await.expect("publish");
    h.publish(req.clone()).await.expect("republish");
    h.stub.set_mode(Mode::Deny);
    let _ = h.publish(req).await;
    let (status, text) = common::tls::plain_get(h.admin, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "runsecrets_node_publishes_total{kind=\"publish\"} 1",
        "runsecrets_node_publishes_total{kind=\"republish\"} 2",
        "runsecrets_node_publish_failures_total{kind=\"republish\",reason=\"permission_denied\"} 1",
        "runsecrets_node_volumes_mounted 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(text.contains("runsecrets_node_publish_duration_seconds_bucket"));
    assert!(!text.contains(&fixture_token()));
    assert_eq!(common::tls::plain_get(h.admin, "/readyz").await.0, 200);
}

#[tokio::test]
async fn the_socket_is_replaced_at_start_and_removed_at_shutdown() {
    let mut h = Harness::start(SECRETS).await;
    assert!(h.socket.exists());
    h.stop().await;
    assert!(!h.socket.exists(), "socket removed on shutdown");
    // A stale socket left by a crashed plugin does not stop the next one.
    let stale = std::os::unix::net::UnixListener::bind(&h.socket).expect("stale socket");
    drop(stale);
    let socket = h.socket.clone();
    let again = Harness::start_with(SECRETS, |args| {
        args.endpoint = format!("unix://{}", socket.display());
    })
    .await;
    let info = again
        .identity
        .clone()
        .get_plugin_info(runsecrets::node::csi::GetPluginInfoRequest {})
        .await
        .expect("serves on the replaced socket");
    assert_eq!(info.into_inner().name, "runsecrets.io");
}
