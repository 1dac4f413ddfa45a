//! A mount table in memory, for testing publish, republish, rollback and teardown without root.
//!
//! A "mounted" path is a plain directory the test owns. Unmounting empties it, as the real
//! unmount takes the tmpfs and every file on it away (the fake assumes the directory was empty
//! when mounted, as kubelet's volume directories are). Each call is logged, and a test can make
//! the next call of one kind fail.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::mounts::{MountState, Mounter, Sealed};

/// The mount calls, as the fake logs them and as a test names one to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Mount,
    Writable,
    Seal,
    Unmount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub size: u64,
    pub sealed: bool,
}

#[derive(Default)]
struct Table {
    mounted: BTreeMap<PathBuf, Volume>,
    foreign: BTreeMap<PathBuf, String>,
    log: Vec<Call>,
    failing: Vec<Call>,
    /// Seals that only reach the mount (a replaced file is still held open).
    busy: bool,
}

#[derive(Default)]
pub struct FakeMounts(Mutex<Table>);

impl FakeMounts {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of this kind fails (EIO).
    pub fn fail_next(&self, call: Call) {
        self.table().failing.push(call);
    }

    /// From now on the tmpfs cannot be made read-only as a whole (EBUSY).
    pub fn hold_replaced_files(&self, busy: bool) {
        self.table().busy = busy;
    }

    /// Someone else's filesystem at `path`.
    pub fn mount_foreign(&self, path: &Path, fs_type: &str) {
        self.table()
            .foreign
            .insert(path.to_path_buf(), fs_type.to_string());
    }

    /// Our volume at `path`, if mounted.
    pub fn volume(&self, path: &Path) -> Option<Volume> {
        self.table().mounted.get(path).cloned()
    }

    /// Every call so far, in order; the log starts over.
    pub fn take_log(&self) -> Vec<Call> {
        std::mem::take(&mut self.table().log)
    }

    fn enter(&self, call: Call) -> io::Result<std::sync::MutexGuard<'_, Table>> {
        let mut t = self.table();
        t.log.push(call);
        if let Some(i) = t.failing.iter().position(|c| *c == call) {
            t.failing.remove(i);
            return Err(io::Error::other(format!("injected failure of {call:?}")));
        }
        Ok(t)
    }
}

fn not_mounted() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error())
}

impl Mounter for FakeMounts {
    fn state(&self, path: &Path) -> io::Result<MountState> {
        let t = self.table();
        Ok(match (t.mounted.get(path), t.foreign.get(path)) {
            (_, Some(fs_type)) => MountState::Foreign(fs_type.clone()),
            (Some(v), None) => MountState::Ours { sealed: v.sealed },
            (None, None) => MountState::NotMounted,
        })
    }

    fn mount_tmpfs(&self, path: &Path, size: u64) -> io::Result<()> {
        let mut t = self.enter(Call::Mount)?;
        if !path.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        t.mounted.insert(
            path.to_path_buf(),
            Volume {
                size,
                sealed: false,
            },
        );
        Ok(())
    }

    fn remount_writable(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        let mut t = self.enter(Call::Writable)?;
        let v = t.mounted.get_mut(path).ok_or_else(not_mounted)?;
        v.sealed = false;
        if let Some(size) = size {
            v.size = size;
        }
        Ok(())
    }

    fn seal(&self, path: &Path) -> io::Result<Sealed> {
        let mut t = self.enter(Call::Seal)?;
        let busy = t.busy;
        let v = t.mounted.get_mut(path).ok_or_else(not_mounted)?;
        v.sealed = !busy;
        Ok(if busy {
            Sealed::MountOnly
        } else {
            Sealed::Filesystem
        })
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        let mut t = self.enter(Call::Unmount)?;
        t.mounted.remove(path).ok_or_else(not_mounted)?;
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}
