//! Publish, republish, rollback and teardown against a fake mount table, on plain directories:
//! what the pod sees (files, inodes, a read-only volume) and what the node is left with after a
//! failure (no mount, no directory).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tonic::Code;
use zeroize::Zeroizing;

use super::{first_mount, teardown, update};
use crate::node::fake_mounts::{Call, FakeMounts, Volume};
use crate::node::writer::{FileSpec, Layout};

const SA: &str = "kubernetes.io/serviceaccount";
const SIZE: u64 = 4 * 1024 * 1024;

fn file(path: &str, data: &[u8], mode: u32) -> FileSpec {
    FileSpec {
        path: path.into(),
        data: std::sync::Arc::new(Zeroizing::new(data.to_vec())),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        mode,
    }
}

fn layout(password: &[u8]) -> Layout {
    Layout {
        files: vec![
            file("db_password", password, 0o444),
            file("tls/key.pem", b"-----BEGIN KEY-----", 0o400),
        ],
        dirs: vec![SA.into()],
    }
}

/// A kubelet-like volume path whose parent exists and which does not exist yet.
fn target() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("mount");
    (dir, path)
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("lstat").ino()
}

fn sealed(size: u64) -> Option<Volume> {
    Some(Volume { size, sealed: true })
}

#[test]
fn a_publish_mounts_fills_and_seals_the_volume() {
    let (_dir, path) = target();
    let m = FakeMounts::default();
    first_mount(&m, &path, false, &layout(b"hunter2"), SIZE).expect("published");
    assert_eq!(
        fs::read(path.join("db_password")).expect("read"),
        b"hunter2"
    );
    let key = fs::symlink_metadata(path.join("tls/key.pem")).expect("lstat");
    assert_eq!(key.mode() & 0o7777, 0o400);
    assert!(path.join(SA).is_dir(), "the token's mount point is there");
    assert_eq!(m.volume(&path), sealed(SIZE), "read-only once filled");
    assert_eq!(m.take_log(), [Call::Mount, Call::Seal]);
}

#[test]
fn an_unchanged_republish_keeps_every_inode_and_never_makes_the_volume_writable() {
    let (_dir, path) = target();
    let m = FakeMounts::default();
    first_mount(&m, &path, false, &layout(b"hunter2"), SIZE).expect("published");
    m.take_log();
    let before = (
        ino(&path.join("db_password")),
        ino(&path.join("tls/key.pem")),
    );
    let outcome = update(&m, &path, &layout(b"hunter2"), 2 * SIZE, true).expect("republished");
    assert_eq!(outcome, "unchanged");
    assert_eq!(
        (
            ino(&path.join("db_password")),
            ino(&path.join("tls/key.pem"))
        ),
        before
    );
    assert_eq!(m.take_log(), [], "no remount at all");
    assert_eq!(
        m.volume(&path),
        sealed(SIZE),
        "the limit is not touched either"
    );

    // An earlier update that could seal only the mount: the tmpfs is sealed now.
    m.hold_replaced_files(true);
    update(&m, &path, &layout(b"hunter2"), SIZE, true).expect("republished");
    m.hold_replaced_files(false);
    assert_eq!(m.take_log(), []);
    update(&m, &path, &layout(b"hunter2"), SIZE, false).expect("republished");
    assert_eq!(m.take_log(), [Call::Seal]);
    assert_eq!(m.volume(&path), sealed(SIZE));
}

#[test]
fn a_republish_with_a_new_value_replaces_that_file_and_seals_again() {
    let (_dir, path) = target();
    let m = FakeMounts::default();
    first_mount(&m, &path, false, &layout(b"hunter2"), SIZE).expect("published");
    m.take_log();
    let key = ino(&path.join("tls/key.pem"));
    let mut held = fs::File::open(path.join("db_password")).expect("open");
    let outcome = update(&m, &path, &layout(b"rotated"), 2 * SIZE, true).expect("republished");
    assert_eq!(outcome, "updated");
    assert_eq!(
        fs::read(path.join("db_password")).expect("read"),
        b"rotated"
    );
    assert_eq!(ino(&path.join("tls/key.pem")), key, "the other file stays");
    let mut old = String::new();
    held.read_to_string(&mut old).expect("read held");
    assert_eq!(old, "hunter2", "a reader of the old file keeps it");
    assert_eq!(m.take_log(), [Call::Writable, Call::Seal]);
    assert_eq!(m.volume(&path), sealed(2 * SIZE), "grown for the update");

    // A volume fuller than the new limit keeps its old one and is still updated.
    m.fail_next(Call::Writable);
    update(&m, &path, &layout(b"again"), SIZE, true).expect("republished");
    assert_eq!(fs::read(path.join("db_password")).expect("read"), b"again");
    assert_eq!(m.take_log(), [Call::Writable, Call::Writable, Call::Seal]);
    assert_eq!(m.volume(&path), sealed(2 * SIZE));
}

/// How many times each file directly in `dir` is opened while `f` runs (inotify, so the
/// writer is observed from outside, as any process could).
fn opens(dir: &Path, f: impl FnOnce()) -> BTreeMap<String, usize> {
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).expect("inotify");
    inotify::add_watch(&fd, dir, WatchFlags::OPEN).expect("watch");
    f();
    let mut buf = [std::mem::MaybeUninit::uninit(); 8192];
    let mut events = inotify::Reader::new(&fd, &mut buf);
    let mut count = BTreeMap::new();
    loop {
        match events.next() {
            Ok(e) => {
                assert!(
                    !e.events().contains(ReadFlags::QUEUE_OVERFLOW),
                    "events lost"
                );
                if let Some(name) = e.file_name() {
                    *count
                        .entry(name.to_string_lossy().into_owned())
                        .or_insert(0) += 1;
                }
            }
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
    count
}

/// A republish with one of ten values changed reads each file once (the comparison), then
/// replaces only the changed one; the nine others are not read again after the remount.
#[test]
fn a_changed_republish_reads_each_file_once_and_replaces_only_the_changed_one() {
    let ten = |last: &[u8]| Layout {
        files: (0..10)
            .map(|i| {
                let data = if i == 9 {
                    last.to_vec()
                } else {
                    format!("value {i}").into_bytes()
                };
                file(&format!("secret{i}"), &data, 0o444)
            })
            .collect(),
        dirs: vec![SA.into()],
    };
    let (_dir, path) = target();
    let m = FakeMounts::default();
    first_mount(&m, &path, false, &ten(b"old"), SIZE).expect("published");
    m.take_log();
    let inodes: Vec<u64> = (0..10)
        .map(|i| ino(&path.join(format!("secret{i}"))))
        .collect();
    let new = ten(b"new");
    let mut outcome = "";
    let count = opens(&path, || {
        outcome = update(&m, &path, &new, SIZE, true).expect("republished");
    });
    assert_eq!(outcome, "updated");
    assert_eq!(m.take_log(), [Call::Writable, Call::Seal]);
    let declared: BTreeMap<String, usize> = count
        .into_iter()
        .filter(|(name, _)| name.starts_with("secret"))
        .collect();
    let once: BTreeMap<String, usize> = (0..10).map(|i| (format!("secret{i}"), 1)).collect();
    assert_eq!(declared, once, "opens of each file during the republish");
    for (i, before) in inodes.iter().enumerate().take(9) {
        assert_eq!(
            ino(&path.join(format!("secret{i}"))),
            *before,
            "secret{i} kept"
        );
    }
    assert_ne!(ino(&path.join("secret9")), inodes[9], "secret9 replaced");
    assert_eq!(fs::read(path.join("secret9")).expect("read"), b"new");
}

#[test]
fn a_publish_that_fails_halfway_leaves_no_mount_and_no_directory() {
    // Filled, but it cannot be made read-only: never left writable for the pod.
    let (_dir, path) = target();
    let m = FakeMounts::default();
    m.fail_next(Call::Seal);
    let err = first_mount(&m, &path, false, &layout(b"hunter2"), SIZE).expect_err("failed");
    assert_eq!(err.code, Code::Internal);
    assert!(
        err.message()
            .starts_with("remounting read-only: injected failure"),
        "{}",
        err.message()
    );
    assert_eq!(m.take_log(), [Call::Mount, Call::Seal, Call::Unmount]);
    assert_eq!(m.volume(&path), None);
    assert!(!path.exists(), "the directory it created is gone");

    // The files cannot be written (a mount point holds a file's name).
    let (_dir, path) = target();
    let mut bad = layout(b"hunter2");
    bad.dirs.push("db_password".into());
    let err = first_mount(&m, &path, false, &bad, SIZE).expect_err("failed");
    assert!(
        err.message().starts_with("writing the files: "),
        "{}",
        err.message()
    );
    assert_eq!(m.take_log(), [Call::Mount, Call::Unmount]);
    assert!(!path.exists());

    // The tmpfs cannot be mounted.
    let (_dir, path) = target();
    m.fail_next(Call::Mount);
    let err = first_mount(&m, &path, false, &layout(b"hunter2"), SIZE).expect_err("failed");
    assert!(
        err.message().starts_with("mounting the tmpfs: "),
        "{}",
        err.message()
    );
    assert!(!path.exists());

    // A directory kubelet made stays, empty.
    let (_dir, path) = target();
    fs::create_dir(&path).expect("kubelet's directory");
    m.fail_next(Call::Seal);
    first_mount(&m, &path, true, &layout(b"hunter2"), SIZE).expect_err("failed");
    assert_eq!(fs::read_dir(&path).expect("list").count(), 0);
    assert_eq!(m.volume(&path), None);
}

#[test]
fn an_unpublish_wipes_unmounts_and_removes_the_volume() {
    let (_dir, path) = target();
    let m = FakeMounts::default();
    let mut writable = layout(b"hunter2");
    // Owner-writable, so a test run without root may open it for writing as the plugin does.
    writable.files[0].mode = 0o644;
    first_mount(&m, &path, false, &writable, SIZE).expect("published");
    m.take_log();
    let mut held = fs::File::open(path.join("db_password")).expect("open");
    assert!(
        teardown(&m, &path).expect("unpublished"),
        "a volume was unmounted"
    );
    assert_eq!(m.take_log(), [Call::Writable, Call::Unmount]);
    assert_eq!(m.volume(&path), None);
    assert!(!path.exists());
    let mut data = Vec::new();
    held.read_to_end(&mut data).expect("read held");
    assert_eq!(data, vec![0; 7], "zeroed before the memory was freed");

    // kubelet retries: nothing left to do, and that is a success.
    assert!(!teardown(&m, &path).expect("again"));
    assert_eq!(m.take_log(), []);
}

#[test]
fn an_unpublish_leaves_what_runsecrets_did_not_mount_or_write() {
    let (_dir, path) = target();
    fs::create_dir(&path).expect("dir");
    fs::write(path.join("notes.txt"), b"not ours").expect("file");
    let m = FakeMounts::default();
    m.mount_foreign(&path, "ext4");
    let err = teardown(&m, &path).expect_err("refused");
    assert_eq!(err.code, Code::FailedPrecondition);
    assert!(err
        .message()
        .contains("a ext4 filesystem that runsecrets did not mount"));
    assert_eq!(m.take_log(), [], "not unmounted");

    let m = FakeMounts::default();
    let err = teardown(&m, &path).expect_err("refused");
    assert_eq!(err.code, Code::FailedPrecondition);
    assert!(err
        .message()
        .starts_with("removing the target directory: it holds files"));
    assert_eq!(fs::read(path.join("notes.txt")).expect("kept"), b"not ours");
}
