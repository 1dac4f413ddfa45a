//! The volume writer on a plain directory (no mount, no root): the files are owned by the
//! user running the tests, so every owner the writer sets is one it may set. Here: the first
//! write, updates, and the paths refused; in `removal`: what a write removes (targets no
//! longer declared, leftovers, kubelet's old layout) and the wipe before an unmount.

mod removal;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::{FileSpec, Layout, Written};

const SA: &str = "kubernetes.io/serviceaccount";

fn me() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

fn file(path: &str, data: &[u8], mode: u32) -> FileSpec {
    let (uid, gid) = me();
    FileSpec {
        path: path.into(),
        data: std::sync::Arc::new(Zeroizing::new(data.to_vec())),
        uid,
        gid,
        mode,
    }
}

fn layout(files: Vec<FileSpec>, dirs: &[&str]) -> Layout {
    Layout {
        files,
        dirs: dirs.iter().map(|d| d.to_string()).collect(),
    }
}

/// The volume as `ls -lR` without following links: relative path → (kind, mode), where kind
/// is `f`, `d` or `l`.
fn listing(root: &Path) -> BTreeMap<String, (char, u32)> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, (char, u32)>) {
        for entry in fs::read_dir(dir).expect("list") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path()).expect("lstat");
            let kind = if meta.file_type().is_symlink() {
                'l'
            } else if meta.is_dir() {
                'd'
            } else {
                'f'
            };
            out.insert(rel.clone(), (kind, meta.mode() & 0o7777));
            if kind == 'd' {
                walk(&entry.path(), &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("lstat").ino()
}

fn the_files() -> Vec<FileSpec> {
    vec![
        file("db_password", b"hunter2", 0o444),
        file("tls/key.pem", b"-----BEGIN KEY-----", 0o400),
        file("tls/ca/root.pem", b"root", 0o440),
        file(".external/etc/app/token", b"tok", 0o440),
    ]
}

fn expected_listing() -> BTreeMap<String, (char, u32)> {
    [
        ("db_password", ('f', 0o444)),
        ("tls", ('d', 0o755)),
        ("tls/key.pem", ('f', 0o400)),
        ("tls/ca", ('d', 0o755)),
        ("tls/ca/root.pem", ('f', 0o440)),
        (".external", ('d', 0o755)),
        (".external/etc", ('d', 0o755)),
        (".external/etc/app", ('d', 0o755)),
        (".external/etc/app/token", ('f', 0o440)),
        ("kubernetes.io", ('d', 0o755)),
        (SA, ('d', 0o755)),
        ("conf.d", ('d', 0o755)),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect()
}

#[test]
fn write_once_lays_out_regular_files_and_real_directories() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let l = layout(the_files(), &[SA, "conf.d"]);
    assert!(!l.check(root).is_current());
    let written = l.write(root).expect("write");
    assert_eq!(
        written,
        Written {
            files: 4,
            removed: 0,
            converted: false
        }
    );
    assert_eq!(
        listing(root),
        expected_listing(),
        "no link, no ..data, no temporary file"
    );
    assert_eq!(
        fs::read(root.join("tls/key.pem")).expect("read"),
        b"-----BEGIN KEY-----"
    );
    let meta = fs::symlink_metadata(root.join("db_password")).expect("lstat");
    assert_eq!((meta.uid(), meta.gid()), me());
    assert!(l.check(root).is_current());
}

#[test]
fn an_unchanged_republish_keeps_every_inode() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let l = layout(the_files(), &[SA]);
    l.write(root).expect("write");
    let paths = ["db_password", "tls", "tls/key.pem", "tls/ca/root.pem", SA];
    let before: Vec<(u64, i64)> = paths
        .iter()
        .map(|p| {
            let m = fs::symlink_metadata(root.join(p)).expect("lstat");
            (m.ino(), m.ctime_nsec() + m.ctime() * 1_000_000_000)
        })
        .collect();
    assert!(l.check(root).is_current());
    let written = l.write(root).expect("write again");
    assert_eq!(written, Written::default(), "nothing written or removed");
    let after: Vec<(u64, i64)> = paths
        .iter()
        .map(|p| {
            let m = fs::symlink_metadata(root.join(p)).expect("lstat");
            (m.ino(), m.ctime_nsec() + m.ctime() * 1_000_000_000)
        })
        .collect();
    assert_eq!(before, after, "same inodes, not even a chmod");
}

#[test]
fn an_update_replaces_only_the_changed_file() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    layout(the_files(), &[SA]).write(root).expect("write");
    let (db, key, tls) = (
        ino(&root.join("db_password")),
        ino(&root.join("tls/key.pem")),
        ino(&root.join("tls")),
    );
    let mut held = fs::File::open(root.join("tls/key.pem")).expect("open");

    let mut files = the_files();
    files[1] = file("tls/key.pem", b"-----BEGIN NEW KEY-----", 0o400);
    let l = layout(files, &[SA]);
    assert!(!l.check(root).is_current());
    assert_eq!(l.write(root).expect("update").files, 1);
    assert_eq!(
        fs::read(root.join("tls/key.pem")).expect("read"),
        b"-----BEGIN NEW KEY-----"
    );
    assert_ne!(ino(&root.join("tls/key.pem")), key, "replaced by rename");
    assert_eq!(ino(&root.join("db_password")), db, "the others stay");
    assert_eq!(ino(&root.join("tls")), tls, "its directory stays");
    let mut old = String::new();
    held.read_to_string(&mut old).expect("read held");
    assert_eq!(
        old, "-----BEGIN KEY-----",
        "an open reader keeps the old file"
    );
    assert!(l.check(root).is_current());
    assert!(
        !listing(root).keys().any(|p| p.contains("..")),
        "no temporary file left"
    );

    // Owner and mode count as a change too, and are set before the file takes its name.
    let mut files = the_files();
    files[1] = file("tls/key.pem", b"-----BEGIN NEW KEY-----", 0o440);
    layout(files, &[SA]).write(root).expect("mode change");
    assert_eq!(listing(root)["tls/key.pem"], ('f', 0o440));
}

#[test]
fn many_updates_never_show_a_reader_a_partial_file() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().to_path_buf();
    let value = |b: u8| vec![b; 256 * 1024];
    layout(vec![file("big", &value(b'a'), 0o444)], &[])
        .write(&root)
        .expect("write");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = fs::read(root.join("big")).expect("the name always exists");
                assert_eq!(data.len(), 256 * 1024, "a partial file");
                assert!(data.iter().all(|b| *b == data[0]), "a mixed file");
                reads += 1;
            }
            reads
        })
    };
    for round in 0..200u32 {
        let b = if round % 2 == 0 { b'b' } else { b'a' };
        layout(vec![file("big", &value(b), 0o444)], &[])
            .write(&root)
            .expect("update");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(reads > 0);
}

#[test]
fn hostile_paths_are_refused_before_anything_is_written() {
    for bad in [
        "../escape",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a/../b",
        "..data/x",
        "x/..2026_01_01",
        "",
        "a/",
        "nul\0byte",
        "line\nbreak",
        "kubernetes.io/serviceaccount/token",
        "kubernetes.io/x",
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let l = layout(vec![file("ok", b"v", 0o444), file(bad, b"v", 0o444)], &[SA]);
        let err = l.write(dir.path()).expect_err(bad);
        assert_eq!(err.step, "refusing the path", "{bad:?}: {err}");
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            0,
            "{bad:?}: nothing written"
        );
        assert!(!l.check(dir.path()).is_current());
    }
    // A file that would also have to be a directory, or declared twice.
    for (a, b) in [("tls", "tls/key.pem"), ("tls/key.pem", "tls"), ("x", "x")] {
        let dir = tempfile::tempdir().expect("dir");
        let l = layout(vec![file(a, b"v", 0o444), file(b, b"v", 0o444)], &[SA]);
        assert!(l.write(dir.path()).is_err(), "{a} and {b}");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }
    // A hostile mount point.
    let dir = tempfile::tempdir().expect("dir");
    let l = layout(vec![file("ok", b"v", 0o444)], &["../up"]);
    assert!(l.write(dir.path()).is_err());
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
}
