//! What a write removes and what goes at the end: targets no longer declared (with the
//! directories they needed), a crash's temporary files, kubelet's old `..data` layout
//! (converted under open files), and the wipe of either layout before an unmount.

#[path = "../../../../tests/common/legacy_layout.rs"]
mod legacy_layout;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use super::{expected_listing, file, ino, layout, listing, the_files, SA};
use crate::node::volume::wipe;
use crate::node::writer::{FileSpec, Written};

#[test]
fn a_target_that_disappears_is_removed_with_the_directories_it_needed() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    layout(the_files(), &[SA, "conf.d"])
        .write(root)
        .expect("write");
    let sa = ino(&root.join(SA));
    let l = layout(
        vec![file("db_password", b"hunter2", 0o444)],
        &[SA, "conf.d"],
    );
    assert!(!l.check(root).is_current());
    let written = l.write(root).expect("write");
    assert_eq!(written.files, 0, "db_password is unchanged");
    let want: BTreeMap<String, (char, u32)> = [
        ("db_password", ('f', 0o444)),
        ("kubernetes.io", ('d', 0o755)),
        (SA, ('d', 0o755)),
        ("conf.d", ('d', 0o755)),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(listing(root), want);
    assert_eq!(ino(&root.join(SA)), sa, "mount points are never replaced");
    assert!(l.check(root).is_current());
}

#[test]
fn leftover_temporary_files_are_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let l = layout(the_files(), &[SA]);
    l.write(root).expect("write");
    fs::write(root.join("..tmp-crash1"), b"half").expect("leftover");
    fs::write(root.join("tls/..tmp-crash2"), b"half").expect("leftover");
    fs::create_dir(root.join("..tmp-crash3")).expect("leftover dir");
    assert!(!l.check(root).is_current());
    l.write(root).expect("write");
    assert!(!listing(root).keys().any(|p| p.contains("..")));
}

#[test]
fn an_old_layout_volume_is_converted_under_open_files() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let l = layout(the_files(), &[SA, "conf.d"]);
    l.write(root).expect("write");
    let sa = ino(&root.join(SA));
    let conf = ino(&root.join("conf.d"));
    legacy_layout::to_legacy(root, &["kubernetes.io", "conf.d"]).expect("old layout");
    assert_eq!(
        listing(root)["db_password"].0,
        'l',
        "the fixture is the old layout"
    );
    assert_eq!(listing(root)["tls"].0, 'l');
    // A container that opened its files through the old links.
    let mut through_link = fs::File::open(root.join("tls/key.pem")).expect("open");
    let mut top = fs::File::open(root.join("db_password")).expect("open");

    assert!(
        !l.check(root).is_current(),
        "same content, but the old layout"
    );
    let written = l.write(root).expect("convert");
    assert!(written.converted);
    assert_eq!(written.files, 4);
    assert_eq!(listing(root), expected_listing(), "no link, no ..data left");
    assert_eq!(ino(&root.join(SA)), sa, "mount points are never replaced");
    assert_eq!(ino(&root.join("conf.d")), conf);
    let (mut a, mut b) = (String::new(), String::new());
    through_link.read_to_string(&mut a).expect("read held");
    top.read_to_string(&mut b).expect("read held");
    assert_eq!((a.as_str(), b.as_str()), ("-----BEGIN KEY-----", "hunter2"));

    // And from then on like any volume: nothing to do.
    let key = ino(&root.join("tls/key.pem"));
    assert!(l.check(root).is_current());
    assert_eq!(l.write(root).expect("again"), Written::default());
    assert_eq!(ino(&root.join("tls/key.pem")), key);
}

#[test]
fn an_old_layout_volume_with_changed_data_is_converted_to_the_new_data() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    layout(the_files(), &[SA]).write(root).expect("write");
    legacy_layout::to_legacy(root, &["kubernetes.io"]).expect("old layout");
    let mut files = the_files();
    files[0] = file("db_password", b"rotated", 0o444);
    files.pop();
    let l = layout(files, &[SA]);
    l.write(root).expect("convert");
    assert_eq!(
        fs::read(root.join("db_password")).expect("read"),
        b"rotated"
    );
    assert!(
        !root.join(".external").exists(),
        "the undeclared target went too"
    );
    assert!(!listing(root).values().any(|(kind, _)| *kind == 'l'));
    assert!(l.check(root).is_current());
}

#[test]
fn wipe_zeroes_every_file_of_either_layout() {
    // Owner-writable modes, so a test run without root may open them for writing as the
    // plugin (root) opens any file.
    let files = || -> Vec<FileSpec> {
        the_files()
            .into_iter()
            .map(|f| FileSpec {
                mode: f.mode | 0o200,
                ..f
            })
            .collect()
    };
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    layout(files(), &[SA]).write(root).expect("write");
    let mut held = fs::File::open(root.join("tls/key.pem")).expect("open");
    assert_eq!(wipe(root).expect("wipe"), 4);
    let mut data = Vec::new();
    held.read_to_end(&mut data).expect("read");
    assert!(
        !data.is_empty() && data.iter().all(|b| *b == 0),
        "zeroed in place"
    );

    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    layout(files(), &[SA]).write(root).expect("write");
    legacy_layout::to_legacy(root, &["kubernetes.io"]).expect("old layout");
    assert_eq!(
        wipe(root).expect("wipe"),
        4,
        "through no link, each file once"
    );
    let token = fs::read(root.join(".external/etc/app/token")).expect("read");
    assert_eq!(token, vec![0; 3]);
}
