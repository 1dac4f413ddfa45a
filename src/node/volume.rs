//! The filesystem side of a publish: mount a tmpfs and fill it, swap changed files into a
//! mounted volume, and tear one down. Run on the blocking pool; every failure names its step.

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use tonic::Code;

use super::mounts::{self, MountState};
use super::service::Failure;
use super::writer::{self, Layout};

fn internal(step: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::new(Code::Internal, step, e.to_string())
}

/// Mounts a fresh tmpfs, fills it and makes it read-only; on failure nothing is left behind.
pub fn first_mount(path: &Path, existed: bool, layout: &Layout, size: u64) -> Result<(), Failure> {
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
    mounts::mount_tmpfs(path, size)
        .map_err(internal("mounting the tmpfs"))
        .map_err(undo)?;
    let filled = layout
        .write(path)
        .map_err(|e| Failure::new(Code::Internal, "writing the files", e.to_string()))
        .and_then(|()| mounts::remount(path, true, None).map_err(internal("remounting read-only")));
    filled.map_err(|f| {
        let _ = mounts::unmount_volume(path);
        undo(f)
    })
}

/// Swaps changed files into a mounted volume; unchanged data leaves it untouched.
pub fn update(path: &Path, layout: &Layout, size: u64) -> Result<&'static str, Failure> {
    if layout.is_current(path) {
        return Ok("unchanged");
    }
    // Growing the limit can fail if the volume is fuller than asked; keep the old limit then.
    mounts::remount(path, false, Some(size))
        .or_else(|_| mounts::remount(path, false, None))
        .map_err(internal("remounting writable"))?;
    let written = layout
        .write(path)
        .map_err(|e| Failure::new(Code::Internal, "writing the files", e.to_string()));
    let sealed = mounts::remount(path, true, None).map_err(internal("remounting read-only"));
    written?;
    sealed?;
    Ok("updated")
}

/// Wipes, unmounts and removes the target; true when a volume was unmounted.
pub fn teardown(path: &Path) -> Result<bool, Failure> {
    let mut unmounted = false;
    // Bounded: a stack of our mounts (never made by this plugin, but possible by hand).
    for _ in 0..8 {
        let state = mounts::state(path).map_err(internal("reading the mount table"))?;
        match state {
            MountState::NotMounted => break,
            MountState::Foreign(fs_type) => {
                return Err(Failure::new(
                    Code::FailedPrecondition,
                    "checking the target path",
                    format!("a {fs_type} filesystem that runsecrets did not mount is there"),
                ))
            }
            MountState::Ours => {
                if mounts::remount(path, false, None).is_ok() {
                    let _ = writer::wipe(path);
                }
                mounts::unmount_volume(path).map_err(internal("unmounting the tmpfs"))?;
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
