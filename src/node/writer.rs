//! The volume laid out as Swarm lays out `/run/secrets`: every target is a regular file with
//! its own owner and mode, nested targets sit in real directories, and there is nothing else
//! (no `..data`, no symlinks), so `ls -l`, `lstat` and `find -perm` see what was declared.
//!
//! Each file is kept current on its own. A file whose content, owner and mode already match is
//! not touched (same inode); any other is written to a temporary file in its own directory,
//! given its owner and mode, fsynced and renamed over the old name, so a reader sees the old
//! file or the whole new one, and one that holds the old file open keeps reading it. Secrets
//! are immutable, so the whole-set swap of kubelet's atomic writer (`..data`) buys little: a
//! republish nearly always finds every file current.
//!
//! Volumes written by earlier versions use kubelet's layout (`..data -> ..<timestamp>/`, each
//! top-level name a symlink through `..data`) and are converted by the first write: a top-level
//! file is renamed over its symlink, a top-level directory is built under a temporary name and
//! exchanged with its symlink (`RENAME_EXCHANGE`), both atomic for path lookups, and only then
//! are the symlinks, `..data` and the timestamped directory removed. A container holding a file
//! open through the old links keeps reading it.
//!
//! The real directories at the volume root that other mounts land on
//! (`kubernetes.io/serviceaccount`, the pod's `runsecrets.io/mountpoints`) are outside all of
//! this: created when missing, never removed, renamed or replaced, since the container runtime
//! mounts over them and a replaced one would take the running container's mount with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use self::tidy::{ensure_dirs, remove_entry, remove_undeclared};
use crate::atomic_file::{self, NewFile, TMP_PREFIX};

/// Mode of the real directories: mount points and the directories of nested targets.
pub const DIR_MODE: u32 = 0o755;
/// The link of kubelet's layout, as earlier versions wrote it; its presence means a volume
/// still to be converted.
const LEGACY_DATA_LINK: &str = "..data";
/// Names starting with this are never targets (the annotation parser refuses them): the old
/// layout's entries and temporary files, removed wherever the writer finds them.
const RESERVED: &str = "..";
const PAGE: u64 = 4096;
const MAX_COMPONENT: usize = 255;

/// One file of the payload, by its path relative to the volume. Files of one secret share its
/// value: the plaintext is held once, and wiped when the last of them goes.
pub struct FileSpec {
    pub path: String,
    pub data: Arc<Zeroizing<Vec<u8>>>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Everything a volume holds.
pub struct Layout {
    pub files: Vec<FileSpec>,
    /// Real directories other mounts land on, relative paths.
    pub dirs: Vec<String>,
}

/// What a volume held against a layout, each file read once: whether it is current, and which
/// declared files already have their content, owner and mode, so that a write after the check
/// (the volume made writable in between, nothing else writing it) replaces only the others
/// without reading them all again.
#[derive(Debug, Default)]
pub struct Check<'a> {
    current: bool,
    fresh: BTreeSet<&'a str>,
}

impl Check<'_> {
    /// The volume holds exactly the layout: nothing to write.
    pub fn is_current(&self) -> bool {
        self.current
    }
}

/// What a write changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Files written (new, changed, or converted from the old layout).
    pub files: usize,
    /// Entries removed: targets no longer declared, the old layout's, leftovers.
    pub removed: usize,
    /// The volume was in kubelet's `..data` layout.
    pub converted: bool,
}

/// A filesystem step that failed; names the step and the path inside the volume, never data.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path:?}")]
pub struct WriteError {
    pub step: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn at<'a>(step: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        step,
        path: path.to_string(),
        source,
    }
}

fn refused(path: &str, why: &'static str) -> WriteError {
    at("refusing the path", path)(io::Error::new(io::ErrorKind::InvalidInput, why))
}

/// The payload as a tree of names.
enum Entry<'a> {
    File(&'a FileSpec),
    Dir(Tree<'a>),
}

type Tree<'a> = BTreeMap<&'a str, Entry<'a>>;

/// Joins a relative path inside the volume, for messages.
fn child(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// Components of a relative path inside the volume; anything that could leave the directory,
/// name a reserved entry or hide in a log line is refused. The annotation parser already
/// refuses all of it; this holds the writer, which runs as root, to the same rule on its own.
fn components(path: &str) -> Result<Vec<&str>, WriteError> {
    if path.is_empty() || path.starts_with('/') {
        return Err(refused(path, "not a relative path"));
    }
    if path.chars().any(char::is_control) {
        return Err(refused(path, "a control character"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        if part.is_empty() || *part == "." || part.starts_with(RESERVED) {
            return Err(refused(path, "an empty, . or ..-prefixed component"));
        }
        if part.len() > MAX_COMPONENT {
            return Err(refused(path, "a component longer than 255 bytes"));
        }
    }
    Ok(parts)
}

impl Layout {
    /// tmpfs space the files take, in whole pages.
    pub fn bytes_needed(&self) -> u64 {
        self.files
            .iter()
            .map(|f| (f.data.len() as u64).max(1).div_ceil(PAGE) * PAGE)
            .sum()
    }

    /// Top-level names of the mount points: the writer never touches them.
    fn protected(&self) -> Result<BTreeSet<&str>, WriteError> {
        let mut names = BTreeSet::new();
        for d in &self.dirs {
            if let Some(top) = components(d)?.first() {
                names.insert(*top);
            }
        }
        Ok(names)
    }

    /// The files as a tree; refuses hostile paths, a path declared twice, a file that would
    /// also have to be a directory, and a file among the mount points.
    fn tree(&self, protected: &BTreeSet<&str>) -> Result<Tree<'_>, WriteError> {
        let mut root = Tree::new();
        for f in &self.files {
            let parts = components(&f.path)?;
            let Some((name, parents)) = parts.split_last() else {
                return Err(refused(&f.path, "not a relative path"));
            };
            if parts.first().is_some_and(|top| protected.contains(top)) {
                return Err(refused(&f.path, "inside a mount point"));
            }
            let mut level = &mut root;
            for part in parents {
                let next = level.entry(part).or_insert_with(|| Entry::Dir(Tree::new()));
                level = match next {
                    Entry::Dir(sub) => sub,
                    Entry::File(_) => return Err(refused(&f.path, "below another file")),
                };
            }
            if level.insert(name, Entry::File(f)).is_some() {
                return Err(refused(&f.path, "declared twice, or also a directory"));
            }
        }
        Ok(root)
    }

    /// Compares the volume at `root` with this layout, reading each file once; current when
    /// a republish with unchanged data can leave the mount read-only and every file
    /// untouched. Reads only.
    pub fn check(&self, root: &Path) -> Check<'_> {
        let mut fresh = BTreeSet::new();
        let mut run = || -> Result<bool, WriteError> {
            let protected = self.protected()?;
            let tree = self.tree(&protected)?;
            let dirs_ok = self.dirs.iter().all(|d| {
                let mut path = root.to_path_buf();
                d.split('/').all(|c| {
                    path.push(c);
                    is_real_dir(&path)
                })
            });
            let files_ok = current(root, &tree, &protected, &mut fresh).unwrap_or(false);
            Ok(dirs_ok && files_ok)
        };
        let current = run().unwrap_or(false);
        Check { current, fresh }
    }

    /// Brings the volume at `root` (mounted writable) to this layout, touching only what
    /// differs. Paths are checked before anything is written.
    pub fn write(&self, root: &Path) -> Result<Written, WriteError> {
        self.write_after(root, &Check::default())
    }

    /// [`Layout::write`] after `check` of this layout on this volume: the files it found
    /// fresh are kept without being read again.
    pub fn write_after(&self, root: &Path, check: &Check<'_>) -> Result<Written, WriteError> {
        let protected = self.protected()?;
        let tree = self.tree(&protected)?;
        let mut written = Written {
            converted: fs::symlink_metadata(root.join(LEGACY_DATA_LINK)).is_ok(),
            ..Written::default()
        };
        ensure_dirs(root, &self.dirs)?;
        sync(root, "", &tree, &protected, &check.fresh, &mut written)?;
        Ok(written)
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn lstat(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `dir` holds exactly `tree` (besides the protected names). Every declared file is
/// looked at, past a difference, and the unchanged ones are added to `fresh`.
fn current<'a>(
    dir: &Path,
    tree: &Tree<'a>,
    protected: &BTreeSet<&str>,
    fresh: &mut BTreeSet<&'a str>,
) -> io::Result<bool> {
    let mut all = true;
    for (name, entry) in tree {
        let path = dir.join(name);
        let same = match (entry, lstat(&path)?) {
            (Entry::File(f), Some(m)) if m.is_file() => {
                let same = unchanged(&path, f)?;
                if same {
                    fresh.insert(f.path.as_str());
                }
                same
            }
            (Entry::Dir(sub), Some(m)) if m.is_dir() => {
                current(&path, sub, &BTreeSet::new(), fresh)?
            }
            _ => false,
        };
        all &= same;
    }
    if !all {
        return Ok(false);
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !tree.contains_key(name.as_ref()) && !protected.contains(name.as_ref()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when the regular file at `path` has `f`'s owner, mode and content. The content is
/// compared in constant time: how long a republish takes says nothing about a secret.
fn unchanged(path: &Path, f: &FileSpec) -> io::Result<bool> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        // ELOOP: a symlink took the name.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let len = f.data.len() as u64;
    if !(meta.is_file()
        && meta.len() == len
        && meta.mode() & 0o7777 == f.mode
        && meta.uid() == f.uid
        && meta.gid() == f.gid)
    {
        return Ok(false);
    }
    let mut content = Zeroizing::new(Vec::with_capacity(f.data.len()));
    file.take(len + 1).read_to_end(&mut content)?;
    Ok(content.as_slice().ct_eq(f.data.as_slice()).into())
}

/// Brings `dir` (a real directory, `rel` inside the volume) to `tree`: first every declared
/// entry, then the removal of what is not declared, so an old-layout link is replaced before
/// the data it points at goes.
/// `fresh`: files a check found unchanged.
fn sync(
    dir: &Path,
    rel: &str,
    tree: &Tree,
    protected: &BTreeSet<&str>,
    fresh: &BTreeSet<&str>,
    written: &mut Written,
) -> Result<(), WriteError> {
    for (name, entry) in tree {
        let path = dir.join(name);
        let rel = child(rel, name);
        let existing = lstat(&path).map_err(at("inspecting", &rel))?;
        match (entry, existing) {
            (Entry::File(f), Some(m)) if m.is_file() => {
                let known = fresh.contains(f.path.as_str());
                if !known && !unchanged(&path, f).map_err(at("reading", &rel))? {
                    put_file(&path, f)?;
                    written.files += 1;
                }
            }
            (Entry::File(f), Some(m)) if m.is_dir() => {
                // A directory where a file is declared: the targets changed shape, which a
                // running pod's never do; the name is briefly absent.
                fs::remove_dir_all(&path).map_err(at("removing a directory in the way", &rel))?;
                written.removed += 1;
                put_file(&path, f)?;
                written.files += 1;
            }
            (Entry::File(f), _) => {
                // Missing, or a symlink of the old layout: a rename replaces either at once.
                put_file(&path, f)?;
                written.files += 1;
            }
            (Entry::Dir(sub), Some(m)) if m.is_dir() => {
                sync(&path, &rel, sub, &BTreeSet::new(), fresh, written)?
            }
            (Entry::Dir(sub), existing) => {
                new_dir(dir, &path, &rel, sub, existing.is_some(), written)?
            }
        }
    }
    remove_undeclared(dir, rel, tree, protected, written)
}

/// Builds the directory `rel` complete under a temporary name in `parent`, then gives it its
/// name: a rename when the name is free, else an exchange with what holds it (the old
/// layout's symlink), which is then removed. A lookup sees the old entry or the whole new one.
fn new_dir(
    parent: &Path,
    path: &Path,
    rel: &str,
    tree: &Tree,
    taken: bool,
    written: &mut Written,
) -> Result<(), WriteError> {
    let stage = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempdir_in(parent)
        .map_err(at("creating a directory for", rel))?;
    set_dir_mode(stage.path(), rel)?;
    fill(stage.path(), rel, tree, written)?;
    if taken {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            stage.path(),
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| at("exchanging the directory", rel)(e.into()))?;
        // The temporary name now holds what was at `path`.
        let old = stage.keep();
        remove_entry(&old).map_err(at("removing the old entry", rel))?;
        written.removed += 1;
    } else {
        fs::rename(stage.path(), path).map_err(at("moving the directory into place", rel))?;
        let _ = stage.keep();
    }
    Ok(())
}

/// Writes `tree` into the fresh, empty directory `dir`, which no reader can see yet.
fn fill(dir: &Path, rel: &str, tree: &Tree, written: &mut Written) -> Result<(), WriteError> {
    for (name, entry) in tree {
        let path = dir.join(name);
        match entry {
            Entry::File(f) => {
                put_file(&path, f)?;
                written.files += 1;
            }
            Entry::Dir(sub) => {
                let rel = child(rel, name);
                DirBuilder::new()
                    .mode(DIR_MODE)
                    .create(&path)
                    .map_err(at("creating the directory", &rel))?;
                set_dir_mode(&path, &rel)?;
                fill(&path, &rel, sub, written)?;
            }
        }
    }
    Ok(())
}

/// Regardless of the umask.
fn set_dir_mode(path: &Path, rel: &str) -> Result<(), WriteError> {
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
        .map_err(at("setting the mode of the directory", rel))
}

fn put_file(path: &Path, f: &FileSpec) -> Result<(), WriteError> {
    atomic_file::replace(path, &f.data, NewFile::mode(f.mode).owned_by(f.uid, f.gid))
        .map_err(at("writing", &f.path))
}

mod tidy;

#[cfg(test)]
mod cases;
#[cfg(test)]
mod tests;
