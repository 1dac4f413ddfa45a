//! The cases of kubelet's atomic writer tests (`pkg/volume/util/atomic_writer_test.go`: write
//! once, update, multiple updates, paths to remove), adapted to Swarm's layout: after every
//! write the volume holds exactly the payload as regular files in real directories (mode
//! 0755), and nothing else: no `..data`, no link, no temporary file.
//!
//! A payload is written as a list of `path[=content][ mode]`: the content defaults to the
//! path, the mode to Swarm's 0444.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::{FileSpec, Layout, DIR_MODE};

type Payload = &'static [&'static str];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Other,
}

/// `(path, content, mode)` of each file of a payload.
fn files(payload: &[&str]) -> Vec<(String, Vec<u8>, u32)> {
    payload
        .iter()
        .map(|item| {
            let (item, mode) = match item.split_once(' ') {
                Some((item, mode)) => (item, u32::from_str_radix(mode, 8).expect("octal mode")),
                None => (*item, 0o444),
            };
            let (path, data) = item.split_once('=').unwrap_or((item, item));
            (path.to_string(), data.as_bytes().to_vec(), mode)
        })
        .collect()
}

fn layout(payload: &[&str]) -> Layout {
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let files = files(payload)
        .into_iter()
        .map(|(path, data, mode)| FileSpec {
            path,
            data: std::sync::Arc::new(Zeroizing::new(data)),
            uid,
            gid,
            mode,
        });
    Layout {
        files: files.collect(),
        dirs: Vec::new(),
    }
}

/// What the volume should hold for a payload: its files and every directory above them.
fn expected(payload: &[&str]) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for (path, data, mode) in files(payload) {
        let mut dir = String::new();
        for part in path.rsplit_once('/').map_or("", |(d, _)| d).split('/') {
            if part.is_empty() {
                continue;
            }
            dir = if dir.is_empty() {
                part.to_string()
            } else {
                format!("{dir}/{part}")
            };
            out.insert(dir.clone(), Entry::Dir { mode: DIR_MODE });
        }
        out.insert(path, Entry::File { mode, data });
    }
    out
}

/// What the volume holds, without following links.
fn contents(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) {
        for entry in fs::read_dir(dir).expect("list") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path()).expect("lstat");
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel.clone(), Entry::Dir { mode });
                walk(&entry.path(), &rel, out);
            } else if meta.is_file() {
                let data = fs::read(entry.path()).expect("read");
                out.insert(rel, Entry::File { mode, data });
            } else {
                out.insert(rel, Entry::Other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

const WRITE_ONCE: &[(&str, Payload, bool)] = &[
    ("reserved name", &["foo", "..bar"], false),
    ("dot-dot inside", &["foo/../bar"], false),
    ("empty component", &["foo//bar.txt"], false),
    ("absolute", &["/dev/null"], false),
    ("basic", &["foo", "bar"], true),
    ("modes", &["foo 0555", "bar 0400", "baz 0440"], true),
    ("empty file", &["empty="], true),
    (
        "dotfiles",
        &["foo 0404", "bar 0440", ".dotfile 0555", ".dotfile.file"],
        true,
    ),
    ("subdirectories", &["foo/bar.txt 0400", "bar/zab.txt"], true),
    (
        "kitchen sink",
        &[
            "foo.log",
            "bar.zap",
            ".dotfile",
            "foo/bar.txt",
            "bar/zab.txt",
            "foo/blaz/bar.txt",
            "bar/zib/zab.txt 0400",
            "1/2/3/4/5/6/7/8/9/10/.dotfile.lib 0555",
        ],
        true,
    ),
];

#[test]
fn write_once() {
    for (name, payload, ok) in WRITE_ONCE {
        let dir = tempfile::tempdir().expect("dir");
        let l = layout(payload);
        match l.write(dir.path()) {
            Ok(_) => assert!(ok, "{name}: written"),
            Err(e) => {
                assert!(!ok, "{name}: {e}");
                assert_eq!(contents(dir.path()), BTreeMap::new(), "{name}: nothing");
                continue;
            }
        }
        assert_eq!(contents(dir.path()), expected(payload), "{name}");
        assert!(l.check(dir.path()).is_current(), "{name}: current");
    }
    // Bytes that are not text (NULs, invalid UTF-8, a newline), and a name longer than a
    // filesystem takes (kubelet's maxFileNameLength).
    let dir = tempfile::tempdir().expect("dir");
    let mut l = layout(&["binary.bin", "long"]);
    l.files[0].data =
        std::sync::Arc::new(Zeroizing::new(b"\x7fELF\x02\0\0\xff\xfe\n\x80\0".to_vec()));
    l.write(dir.path()).expect("binary");
    assert_eq!(
        fs::read(dir.path().join("binary.bin")).expect("read"),
        b"\x7fELF\x02\0\0\xff\xfe\n\x80\0"
    );
    let dir = tempfile::tempdir().expect("dir");
    l.files[1].path = "n".repeat(256);
    assert!(l.write(dir.path()).is_err());
    assert_eq!(contents(dir.path()), BTreeMap::new());
}

const NESTED: Payload = &["foo/bar.txt=foo", "bar/zab.txt=bar"];

/// `(name, first, next, something to write)`.
const UPDATES: &[(&str, Payload, Payload, bool)] = &[
    (
        "content and mode",
        &["foo", "bar"],
        &["foo=foo2", "bar=bar2 0440"],
        true,
    ),
    ("mode only", &["foo"], &["foo 0400"], true),
    ("no update", &["foo", "bar"], &["bar", "foo"], false),
    ("no update, nested", NESTED, NESTED, false),
    (
        "add a directory",
        NESTED,
        &["foo/bar.txt=foo", "bar/zab.txt=bar", "blu/zip.txt"],
        true,
    ),
    (
        "add deep",
        NESTED,
        &["foo/bar.txt=foo", "bar/zab.txt=bar", "blu/2/3/4/zip"],
        true,
    ),
    (
        "add below",
        NESTED,
        &["foo/bar.txt=foo", "bar/zab.txt=bar", "bar/2/3/4/zip"],
        true,
    ),
    ("delete a directory", NESTED, &["foo/bar.txt=foo"], true),
    (
        "delete deep",
        &["foo/bar.txt", "bar/1/2/3/zab"],
        &["foo/bar.txt"],
        true,
    ),
    (
        "delete below a kept file",
        &["foo/bar.txt", "bar/1/2/sip.txt", "bar/1/2/3/zab.txt"],
        &["foo/bar.txt", "bar/1/2/sip.txt"],
        true,
    ),
    (
        "a file becomes a directory",
        &["foo=x"],
        &["foo/bar=x"],
        true,
    ),
    (
        "a directory becomes a file",
        &["foo/bar=x"],
        &["foo=x"],
        true,
    ),
];

#[test]
fn update() {
    for (name, first, next, writes) in UPDATES {
        let dir = tempfile::tempdir().expect("dir");
        layout(first).write(dir.path()).expect(name);
        let l = layout(next);
        assert_eq!(
            l.check(dir.path()).is_current(),
            !writes,
            "{name}: current before"
        );
        let written = l.write(dir.path()).expect(name);
        let wrote = written.files + written.removed > 0;
        assert_eq!(wrote, *writes, "{name}: {written:?}");
        assert_eq!(contents(dir.path()), expected(next), "{name}");
        assert!(l.check(dir.path()).is_current(), "{name}: current after");
    }
}

#[test]
fn multiple_updates() {
    let steps: &[Payload] = &[
        &["foo", "bar"],
        &["foo=foo2", "bar=bar2"],
        &["foo=foo3", "bar=bar3", "a/b/c 0400"],
        &["bar=bar3", "a/b/d"],
        &["a/b/d=d2", "a/e/f"],
        &["foo"],
        &["foo"],
        &["foo/bar/baz", "zab"],
        &["foo/bar/baz 0400", "zab=new"],
    ];
    let dir = tempfile::tempdir().expect("dir");
    for (i, payload) in steps.iter().enumerate() {
        let l = layout(payload);
        l.write(dir.path())
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(contents(dir.path()), expected(payload), "step {i}");
        assert!(l.check(dir.path()).is_current(), "step {i}");
    }
}

/// `(name, first, next, paths removed)`.
const REMOVALS: &[(&str, Payload, Payload, &[&str])] = &[
    (
        "simple",
        &["foo.txt", "bar.txt"],
        &["foo.txt"],
        &["bar.txt"],
    ),
    (
        "its directory",
        &["foo.txt", "zip/bar.txt"],
        &["foo.txt"],
        &["zip/bar.txt", "zip"],
    ),
    (
        "every directory above",
        &["foo.txt", "zip/1/2/3/bar.txt"],
        &["foo.txt"],
        &["zip", "zip/1", "zip/1/2", "zip/1/2/3", "zip/1/2/3/bar.txt"],
    ),
    (
        "two trees",
        &["foo.txt", "zip/1/bar.txt", "zap/a/b/bar.txt"],
        &["foo.txt"],
        &[
            "zip",
            "zip/1",
            "zip/1/bar.txt",
            "zap",
            "zap/a",
            "zap/a/b",
            "zap/a/b/bar.txt",
        ],
    ),
    (
        "only below what stays",
        &[
            "foo.txt",
            "zap/1/2/3/4/bar.txt",
            "zap/1/2/c/bar.txt",
            "zap/1/2/magic.txt",
        ],
        &["foo.txt", "zap/1/2/magic.txt"],
        &[
            "zap/1/2/3",
            "zap/1/2/3/4",
            "zap/1/2/3/4/bar.txt",
            "zap/1/2/c",
            "zap/1/2/c/bar.txt",
        ],
    ),
    (
        "beside what is added",
        &["foo.txt", "zap/1/2/3/4/bar.txt", "zap/1/2/c/bar.txt"],
        &["foo.txt", "zap/1/2/magic.txt"],
        &[
            "zap/1/2/3",
            "zap/1/2/3/4",
            "zap/1/2/3/4/bar.txt",
            "zap/1/2/c",
            "zap/1/2/c/bar.txt",
        ],
    ),
];

#[test]
fn paths_to_remove() {
    for (name, first, next, removed) in REMOVALS {
        let dir = tempfile::tempdir().expect("dir");
        layout(first).write(dir.path()).expect(name);
        let before: BTreeSet<String> = contents(dir.path()).into_keys().collect();
        let written = layout(next).write(dir.path()).expect(name);
        let after: BTreeSet<String> = contents(dir.path()).into_keys().collect();
        let gone: BTreeSet<&str> = before.difference(&after).map(String::as_str).collect();
        let want: BTreeSet<&str> = removed.iter().copied().collect();
        assert_eq!(gone, want, "{name}");
        assert_eq!(written.removed, removed.len(), "{name}: counted");
        assert_eq!(contents(dir.path()), expected(next), "{name}");
    }
}
