//! kubelet's atomic-writer layout, exactly as runsecrets wrote volumes before issue 14: the
//! files in `..<timestamp>/`, `..data` linking to it, each top-level name a symlink
//! `name -> ..data/name`, directories 0755, each file with its owner and mode. Upgrade tests
//! turn a volume into this layout and check what the current writer makes of it.
//!
//! `common::legacy_layout` in the test binaries; included with `#[path]` by the node unit tests
//! and the cluster tests.
#![allow(dead_code)]

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The timestamped directory, named as kubelet names them.
pub const LEGACY_DIR: &str = "..2026_11_26_21_00_00.123456789";
pub const LEGACY_LINK: &str = "..data";

/// One file: path inside the volume, content, uid, gid, mode.
pub type LegacyFile = (String, Vec<u8>, u32, u32, u32);

/// Rewrites the volume at `root` in the old layout, with the same files, owners and modes;
/// the top-level names in `keep` (mount points) are left as they are. Returns the files.
pub fn to_legacy(root: &Path, keep: &[&str]) -> io::Result<Vec<LegacyFile>> {
    let mut files = Vec::new();
    let mut tops = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name.as_str()) {
            continue;
        }
        collect(&entry.path(), &name, &mut files)?;
        tops.push(name);
    }
    for name in &tops {
        let path = root.join(name);
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    write_legacy(root, &files)?;
    Ok(files)
}

fn collect(path: &Path, rel: &str, out: &mut Vec<LegacyFile>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            collect(&entry.path(), &format!("{rel}/{name}"), out)?;
        }
    } else if meta.is_file() {
        out.push((
            rel.to_string(),
            fs::read(path)?,
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777,
        ));
    }
    Ok(())
}

/// Remounts the volume (a tmpfs the plugin mounted) writable, runs `f` on it, and remounts it
/// read-only again, as the previous plugin did around its writes. When a removed file is still
/// held (a container's open file, kubelet's `subPath` bind mount of an absolute target) the
/// kernel keeps the tmpfs writable (EBUSY); the mount alone is made read-only then.
pub fn with_writable<T>(target: &Path, f: impl FnOnce() -> T) -> io::Result<T> {
    use rustix::mount::{mount_remount, MountFlags};
    let base = MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC;
    mount_remount(target, base, "")?;
    let out = f();
    match mount_remount(target, base | MountFlags::RDONLY, "") {
        Err(rustix::io::Errno::BUSY) => {
            mount_remount(target, base | MountFlags::BIND | MountFlags::RDONLY, "")?
        }
        other => other?,
    }
    Ok(out)
}

/// The old writer's first write of `files` into `root`.
pub fn write_legacy(root: &Path, files: &[LegacyFile]) -> io::Result<()> {
    let data = root.join(LEGACY_DIR);
    DirBuilder::new().mode(0o755).create(&data)?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755))?;
    let mut tops: Vec<&str> = Vec::new();
    for (rel, content, uid, gid, mode) in files {
        let path = data.join(rel);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(content)?;
        std::os::unix::fs::fchown(&file, Some(*uid), Some(*gid))?;
        file.set_permissions(fs::Permissions::from_mode(*mode))?;
        let top = rel.split('/').next().unwrap_or(rel);
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    std::os::unix::fs::symlink(LEGACY_DIR, root.join(LEGACY_LINK))?;
    for top in tops {
        std::os::unix::fs::symlink(format!("{LEGACY_LINK}/{top}"), root.join(top))?;
    }
    Ok(())
}
