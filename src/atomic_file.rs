//! The crate's one way to put a file in place: the bytes go to a fresh temporary file beside
//! the final name (same directory, so the same filesystem), which gets its owner and mode, is
//! fsynced, and only then takes the name, by rename (replace) or by a no-clobber rename
//! (create). A reader opening the name sees the old file or the whole new one, never a part,
//! and a crash leaves at most a temporary file whose name starts with [`TMP_PREFIX`].
//!
//! Used for the TLS files, the keyring, the local node token and every file of a node volume.

use std::fs::Permissions;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Temporary files start with `..`: the secrets annotation refuses targets whose components
/// start with `..`, so in a node volume a temporary file can never take a secret's name, and
/// the volume writer knows every such entry for a leftover.
pub const TMP_PREFIX: &str = "..tmp-";

/// Owner and mode the file has before it takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFile {
    pub mode: u32,
    /// `(uid, gid)`; `None` keeps the writing process's.
    pub owner: Option<(u32, u32)>,
}

impl NewFile {
    pub fn mode(mode: u32) -> Self {
        Self { mode, owner: None }
    }

    pub fn owned_by(self, uid: u32, gid: u32) -> Self {
        Self {
            owner: Some((uid, gid)),
            ..self
        }
    }
}

/// A step of the helper that failed; the OS error is its source, its kind is kept.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
struct Step {
    step: &'static str,
    #[source]
    source: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |source| io::Error::new(source.kind(), Step { step, source })
}

/// Puts `bytes` at `path`, replacing whatever file is there in one rename.
pub fn replace(path: &Path, bytes: &[u8], new: NewFile) -> io::Result<()> {
    staged(path, bytes, new)?
        .persist(path)
        .map_err(|e| step("renaming the temporary file into place")(e.error))?;
    sync_parent(path)
}

/// Puts `bytes` at `path` only if nothing is there: `AlreadyExists` otherwise, atomically
/// against other processes doing the same (the first one wins, nobody sees a partial file).
pub fn create(path: &Path, bytes: &[u8], new: NewFile) -> io::Result<()> {
    staged(path, bytes, new)?
        .persist_noclobber(path)
        .map_err(|e| step("moving the temporary file into place")(e.error))?;
    sync_parent(path)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The new name is durable once its directory is synced (a crash could otherwise lose the
/// rename although the file's content is on disk).
fn sync_parent(path: &Path) -> io::Result<()> {
    std::fs::File::open(parent(path))
        .and_then(|dir| dir.sync_all())
        .map_err(step("syncing the directory"))
}

/// The new file, complete and synced, under a temporary name beside `path`; removed again if
/// dropped before it is persisted.
fn staged(path: &Path, bytes: &[u8], new: NewFile) -> io::Result<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(parent(path))
        .map_err(step("creating a temporary file"))?;
    let mut file = tmp.as_file();
    file.write_all(bytes)
        .map_err(step("writing the temporary file"))?;
    if let Some((uid, gid)) = new.owner {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))
            .map_err(step("setting the owner of the temporary file"))?;
    }
    // After the chown, which clears set-id bits.
    file.set_permissions(Permissions::from_mode(new.mode))
        .map_err(step("setting the mode of the temporary file"))?;
    file.sync_all()
        .map_err(step("syncing the temporary file"))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect()
    }

    #[test]
    fn replace_swaps_the_inode_with_mode_set_first() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").expect("write");
        let old = std::fs::metadata(&path).expect("stat").ino();
        let mut held = std::fs::File::open(&path).expect("open");
        replace(&path, b"new", NewFile::mode(0o440)).expect("replace");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_ne!(meta.ino(), old, "a new file took the name");
        assert_eq!(meta.mode() & 0o7777, 0o440);
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let mut before = String::new();
        std::io::Read::read_to_string(&mut held, &mut before).expect("read held");
        assert_eq!(before, "old", "an open reader keeps the whole old file");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn create_refuses_an_existing_name_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        create(&path, b"first", NewFile::mode(0o600)).expect("create");
        let err = create(&path, b"second", NewFile::mode(0o600)).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_step_names_itself_and_keeps_the_os_error() {
        let dir = tempfile::tempdir().expect("dir");
        let err = replace(&dir.path().join("missing/f"), b"x", NewFile::mode(0o600))
            .expect_err("no such directory");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let text = crate::error::Chain(&err).to_string();
        assert!(text.starts_with("creating a temporary file: "), "{text}");
    }
}
