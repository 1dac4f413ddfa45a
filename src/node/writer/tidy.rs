//! What the writer removes, and what it never does: entries a volume holds but the layout
//! does not declare go (the old layout's links and data, a crash's temporary files, targets no
//! longer declared, with the directories that held only them), while the mount points are
//! created when missing and otherwise left as they are.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::{
    at, child, components, lstat, set_dir_mode, Tree, WriteError, Written, DIR_MODE, RESERVED,
};

/// Removes from `dir` what the tree does not declare: the old layout's links, `..data` and
/// timestamped directory, temporary files a crash left, and targets no longer declared
/// (with the directories that held only them). Protected names are never touched.
pub(super) fn remove_undeclared(
    dir: &Path,
    rel: &str,
    tree: &Tree,
    protected: &BTreeSet<&str>,
    written: &mut Written,
) -> Result<(), WriteError> {
    let entries = fs::read_dir(dir).map_err(at("listing", rel))?;
    for entry in entries {
        let entry = entry.map_err(at("listing", rel))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if tree.contains_key(name.as_str()) || protected.contains(name.as_str()) {
            continue;
        }
        let rel = child(rel, &name);
        let path = entry.path();
        let kind = entry.file_type().map_err(at("inspecting", &rel))?;
        if kind.is_dir() && !name.starts_with(RESERVED) {
            written.removed += clear_dir(&path, &rel)?;
        } else {
            remove_entry(&path).map_err(at("removing", &rel))?;
            written.removed += 1;
        }
    }
    Ok(())
}

/// Empties a directory that no target is declared in, and removes it if it held anything of
/// ours; an empty directory that held nothing was not made by this writer and stays.
fn clear_dir(dir: &Path, rel: &str) -> Result<usize, WriteError> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(at("listing", rel))?;
    for entry in entries {
        let entry = entry.map_err(at("listing", rel))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = child(rel, &name);
        let kind = entry.file_type().map_err(at("inspecting", &rel))?;
        if kind.is_dir() && !name.starts_with(RESERVED) {
            removed += clear_dir(&entry.path(), &rel)?;
        } else {
            remove_entry(&entry.path()).map_err(at("removing", &rel))?;
            removed += 1;
        }
    }
    if removed > 0 {
        match fs::remove_dir(dir) {
            Ok(()) => removed += 1,
            // Something of a nested directory that held nothing of ours.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => return Err(at("removing the directory", rel)(e)),
        }
    }
    Ok(removed)
}

/// Removes a file, symlink or (old-layout or temporary) directory tree, never following a link.
pub(super) fn remove_entry(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Creates the real directories other mounts land on when missing; an existing one is left as
/// it is (same inode), since a mount may sit on it.
pub fn ensure_dirs(root: &Path, dirs: &[String]) -> Result<(), WriteError> {
    for d in dirs {
        let mut path = root.to_path_buf();
        for component in components(d)? {
            path.push(component);
            match lstat(&path).map_err(at("inspecting a mount point", d))? {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    return Err(at("creating a mount point", d)(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "something that is not a directory is in the way",
                    )))
                }
                None => {
                    DirBuilder::new()
                        .mode(DIR_MODE)
                        .create(&path)
                        .map_err(at("creating a mount point", d))?;
                    set_dir_mode(&path, d)?;
                }
            }
        }
    }
    Ok(())
}
