//! The tmpfs behind each volume. The mount table is the plugin's only record of what it has
//! published: a tmpfs whose source is [`MOUNT_SOURCE`] is ours, so a restarted plugin
//! recognises its volumes and never unmounts someone else's.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, mount_remount, unmount, MountFlags, UnmountFlags};

/// Source name of every tmpfs the plugin mounts, as the mount table shows it.
pub const MOUNT_SOURCE: &str = "runsecrets";

const BASE_FLAGS: MountFlags = MountFlags::NODEV
    .union(MountFlags::NOSUID)
    .union(MountFlags::NOEXEC);

/// The mount calls behind a volume's life: publish, republish, rollback and teardown are
/// written against this, so their logic is tested with a fake mount table and no root; the
/// plugin itself uses [`Kernel`].
pub trait Mounter: Send + Sync {
    /// What is mounted at `path` (the topmost mount, when several are stacked).
    fn state(&self, path: &Path) -> io::Result<MountState>;
    /// Mounts a fresh, writable tmpfs of `size` bytes at `path`.
    fn mount_tmpfs(&self, path: &Path, size: u64) -> io::Result<()>;
    /// Makes our tmpfs at `path` writable; `size` changes its limit.
    fn remount_writable(&self, path: &Path, size: Option<u64>) -> io::Result<()>;
    /// Makes our tmpfs at `path` read-only, as far as the kernel allows now (see [`seal`]).
    fn seal(&self, path: &Path) -> io::Result<Sealed>;
    /// Unmounts `path`, detaching a busy mount.
    fn unmount(&self, path: &Path) -> io::Result<()>;
}

/// The real mount table, through mount(2) and umount2(2).
pub struct Kernel;

impl Mounter for Kernel {
    fn state(&self, path: &Path) -> io::Result<MountState> {
        state(path)
    }

    fn mount_tmpfs(&self, path: &Path, size: u64) -> io::Result<()> {
        mount_tmpfs(path, size)
    }

    fn remount_writable(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        remount(path, false, size)
    }

    fn seal(&self, path: &Path) -> io::Result<Sealed> {
        seal(path)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        unmount_volume(path)
    }
}

/// What is mounted at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    NotMounted,
    /// One of our tmpfs volumes; `sealed` when the tmpfs itself is read-only, not only this
    /// mount (see [`seal`]).
    Ours {
        sealed: bool,
    },
    /// Something else (its filesystem type), which the plugin leaves alone.
    Foreign(String),
}

/// One line of `/proc/self/mountinfo`, the fields the plugin needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo` (see proc(5)); lines it cannot read are skipped.
pub fn mountinfo() -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let mount_point = left.nth(4)?;
    let options = left.next()?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let source = right.next()?;
    let super_options = right.next().unwrap_or("");
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        options: options.to_string(),
        fs_type: fs_type.to_string(),
        source: unescape(source),
        super_options: super_options.to_string(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash…).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is mounted at `path` (the topmost mount, when several are stacked).
pub fn state(path: &Path) -> io::Result<MountState> {
    let top = mountinfo()?
        .into_iter()
        .rev()
        .find(|e| e.mount_point == path);
    Ok(match top {
        None => MountState::NotMounted,
        Some(e) if e.fs_type == "tmpfs" && e.source == MOUNT_SOURCE => MountState::Ours {
            sealed: has(&e.options, "ro") && has(&e.super_options, "ro"),
        },
        Some(e) => MountState::Foreign(e.fs_type),
    })
}

fn has(options: &str, option: &str) -> bool {
    options.split(',').any(|o| o == option)
}

/// Our volumes below `dir`, for the mounted-volumes gauge after a restart.
pub fn ours_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mountinfo()?
        .into_iter()
        .filter(|e| e.fs_type == "tmpfs" && e.source == MOUNT_SOURCE)
        .filter(|e| e.mount_point.starts_with(dir))
        .map(|e| e.mount_point)
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// Mounts a fresh, writable tmpfs of `size` bytes at `path` (root directory mode 0755).
pub fn mount_tmpfs(path: &Path, size: u64) -> io::Result<()> {
    let data = std::ffi::CString::new(format!("size={size},mode=0755"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    mount(MOUNT_SOURCE, path, "tmpfs", BASE_FLAGS, data.as_c_str())?;
    Ok(())
}

/// Remounts the whole tmpfs read-only or writable, keeping nodev/nosuid/noexec; `size` grows
/// (or shrinks) the limit on a writable remount.
pub fn remount(path: &Path, read_only: bool, size: Option<u64>) -> io::Result<()> {
    let flags = if read_only {
        BASE_FLAGS | MountFlags::RDONLY
    } else {
        BASE_FLAGS
    };
    let data = size.map(|s| format!("size={s}")).unwrap_or_default();
    mount_remount(path, flags, data.as_str())?;
    Ok(())
}

/// How far [`seal`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// The whole tmpfs is read-only.
    Filesystem,
    /// Only this mount is: the tmpfs itself stays writable until a later seal.
    MountOnly,
}

/// Makes the volume read-only, keeping nodev/nosuid/noexec. The kernel refuses a tmpfs-wide
/// read-only remount (EBUSY) while a file removed from it is still held: a container's open
/// file that an update replaced (until its last close), or the file kubelet bound at an
/// absolute target with a `subPath` mount (until the pod goes). This mount alone is then made
/// read-only (a bind remount, which held files do not block), so no path through it can
/// write, and each later republish tries the whole tmpfs again.
pub fn seal(path: &Path) -> io::Result<Sealed> {
    match remount(path, true, None) {
        Ok(()) => Ok(Sealed::Filesystem),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            mount_remount(path, BASE_FLAGS | MountFlags::BIND | MountFlags::RDONLY, "")?;
            Ok(Sealed::MountOnly)
        }
        Err(e) => Err(e),
    }
}

/// Unmounts without following a symlink at `path`; a busy mount is detached instead, so the
/// memory is freed once the last user lets go.
pub fn unmount_volume(path: &Path) -> io::Result<()> {
    match unmount(path, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            unmount(path, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_read_with_escapes() {
        let line = "42 27 0:39 / /var/lib/kubelet/pods/a\\040b/mount ro,nosuid,nodev,noexec,relatime shared:5 - tmpfs runsecrets ro,size=4096k,mode=755";
        let e = parse_line(line).expect("parses");
        assert_eq!(
            e.mount_point,
            PathBuf::from("/var/lib/kubelet/pods/a b/mount")
        );
        assert_eq!(e.options, "ro,nosuid,nodev,noexec,relatime");
        assert_eq!(e.fs_type, "tmpfs");
        assert_eq!(e.source, MOUNT_SOURCE);
        assert_eq!(e.super_options, "ro,size=4096k,mode=755");
    }
}
