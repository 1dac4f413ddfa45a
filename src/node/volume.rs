//! The filesystem side of a publish: mount a tmpfs and fill it, bring a mounted volume up to
//! date (writable only for the update), and tear one down. Run on the blocking pool; every
//! failure names its step.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tonic::Code;

use super::failure::Failure;
use super::mounts::{MountState, Mounter, Sealed};
use super::writer::{Layout, WriteError};

fn internal(step: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::caused(Code::Internal, step, e)
}

fn write_failed(e: WriteError) -> Failure {
    Failure::caused(Code::Internal, "writing the files", e)
}

/// Mounts a fresh tmpfs, fills it and makes it read-only; on failure nothing is left behind.
pub fn first_mount(
    m: &dyn Mounter,
    path: &Path,
    existed: bool,
    layout: &Layout,
    size: u64,
) -> Result<(), Failure> {
    if !existed {
        match std::fs::DirBuilder::new().mode(0o750).create(path) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                return Err(internal("creating the target directory")(e))
            }
            _ => {}
        }
    }
    let undo = |f: Failure| {
        if !existed {
            let _ = std::fs::remove_dir(path);
        }
        f
    };
    m.mount_tmpfs(path, size)
        .map_err(internal("mounting the tmpfs"))
        .map_err(undo)?;
    let filled = layout
        .write(path)
        .map(drop)
        .map_err(write_failed)
        .and_then(|()| seal(m, path));
    filled.map_err(|f| {
        let _ = m.unmount(path);
        undo(f)
    })
}

/// Brings a mounted volume up to date: unchanged data leaves it read-only and untouched;
/// otherwise it is writable only while the changed files are replaced (and an old-layout
/// volume converted). `sealed`: the tmpfs itself is read-only, as the mount table said.
pub fn update(
    m: &dyn Mounter,
    path: &Path,
    layout: &Layout,
    size: u64,
    sealed: bool,
) -> Result<&'static str, Failure> {
    let check = layout.check(path);
    if check.is_current() {
        // An earlier update may have sealed only the mount (a replaced file was still held).
        if !sealed {
            seal(m, path)?;
        }
        return Ok("unchanged");
    }
    // Growing the limit can fail if the volume is fuller than asked; keep the old limit then.
    m.remount_writable(path, Some(size))
        .or_else(|_| m.remount_writable(path, None))
        .map_err(internal("remounting writable"))?;
    // Each file was read once by the check; only the stale ones are touched now.
    let written = layout.write_after(path, &check).map_err(write_failed);
    let sealed = seal(m, path);
    let written = written?;
    sealed?;
    Ok(if written.converted {
        "converted"
    } else {
        "updated"
    })
}

/// Read-only again; says so when only the mount could be sealed for now.
fn seal(m: &dyn Mounter, path: &Path) -> Result<(), Failure> {
    match m.seal(path).map_err(internal("remounting read-only"))? {
        Sealed::Filesystem => {}
        Sealed::MountOnly => tracing::debug!(
            target = %path.display(),
            "the volume's mount is read-only; its tmpfs stays writable underneath until the \
             replaced files that a container still holds open are closed (retried at the next \
             republish)"
        ),
    }
    Ok(())
}

/// Wipes, unmounts and removes the target; true when a volume was unmounted.
pub fn teardown(m: &dyn Mounter, path: &Path) -> Result<bool, Failure> {
    let mut unmounted = false;
    // Bounded: a stack of our mounts (never made by this plugin, but possible by hand).
    for _ in 0..8 {
        let state = m.state(path).map_err(internal("reading the mount table"))?;
        match state {
            MountState::NotMounted => break,
            MountState::Foreign(fs_type) => {
                return Err(Failure::new(
                    Code::FailedPrecondition,
                    "checking the target path",
                    format!("a {fs_type} filesystem that runsecrets did not mount is there"),
                ))
            }
            MountState::Ours { .. } => {
                if m.remount_writable(path, None).is_ok() {
                    let _ = wipe(path);
                }
                m.unmount(path).map_err(internal("unmounting the tmpfs"))?;
                unmounted = true;
            }
        }
    }
    match std::fs::remove_dir(path) {
        // Our files live on the tmpfs, so with it gone the directory holds someone else's:
        // they stay, and kubelet is told why (its retries get the same answer).
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Err(Failure::new(
            Code::FailedPrecondition,
            "removing the target directory",
            "it holds files that runsecrets did not write (no runsecrets volume is mounted \
             there); they are left in place: remove them by hand",
        )),
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(internal("removing the target directory")(e))
        }
        _ => Ok(unmounted),
    }
}

/// Overwrites every file in the volume with zeros before the unmount frees the pages: cheap
/// defence for memory the kernel hands out again. Never follows a link, never leaves the
/// volume's filesystem (a mount inside it is someone else's).
pub fn wipe(root: &Path) -> io::Result<usize> {
    let dev = fs::symlink_metadata(root)?.dev();
    wipe_dir(root, dev)
}

fn wipe_dir(dir: &Path, dev: u64) -> io::Result<usize> {
    let mut wiped = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path: PathBuf = entry.path();
        if kind.is_dir() {
            if fs::symlink_metadata(&path)?.dev() == dev {
                wiped += wipe_dir(&path, dev)?;
            }
        } else if kind.is_file() {
            zero(&path)?;
            wiped += 1;
        }
    }
    Ok(wiped)
}

fn zero(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let mut left = file.metadata()?.len();
    let zeros = [0u8; 8192];
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
