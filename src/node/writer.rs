//! kubelet's atomic writer scheme on our tmpfs, so a container never sees half an update:
//! files live in a timestamped directory `..2026_11_26_21_00_00.123456789`, `..data` links to
//! it, and each top-level name links through `..data`. An update writes a new timestamped
//! directory, renames a fresh `..data_tmp` link over `..data` (one atomic step), then removes
//! the old directory.
//!
//! The real directories at the volume root (`kubernetes.io/serviceaccount` and the pod's
//! other mount points) are outside this scheme: the container runtime mounts over them, and a
//! republish that replaced one would take the running container's mount with it. They are
//! created when missing and never removed, renamed or replaced.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The link that names the current timestamped directory.
pub const DATA_DIR_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";
const LINK_TMP: &str = "..link_tmp";
/// Mode of the real directories at the volume root and of directories inside the payload.
pub const SERVICE_ACCOUNT_DIR_MODE: u32 = 0o755;
const PAGE: u64 = 4096;

/// One file of the payload, by its path relative to the volume.
pub struct FileSpec {
    pub path: String,
    pub data: Zeroizing<Vec<u8>>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Everything a volume holds.
pub struct Layout {
    pub files: Vec<FileSpec>,
    /// Real directories at the root, relative paths.
    pub dirs: Vec<String>,
}

/// A filesystem step that failed; names the step and the path inside the volume, never data.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path:?}: {source}")]
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

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

impl Layout {
    /// tmpfs space the files take, in whole pages.
    pub fn bytes_needed(&self) -> u64 {
        self.files
            .iter()
            .map(|f| (f.data.len() as u64).max(1).div_ceil(PAGE) * PAGE)
            .sum()
    }

    fn top_names(&self) -> BTreeSet<&str> {
        self.files.iter().map(|f| top_level(&f.path)).collect()
    }

    /// True when the volume already holds exactly this layout, so a republish with unchanged
    /// data leaves the mount read-only and untouched.
    pub fn is_current(&self, root: &Path) -> bool {
        self.check_current(root).unwrap_or(false)
    }

    fn check_current(&self, root: &Path) -> io::Result<bool> {
        let Some(current) = current_dir(root)? else {
            return Ok(false);
        };
        let dir = root.join(&current);
        for f in &self.files {
            let path = dir.join(&f.path);
            let meta = fs::symlink_metadata(&path)?;
            let same_meta = meta.is_file()
                && meta.len() == f.data.len() as u64
                && meta.mode() & 0o7777 == f.mode
                && meta.uid() == f.uid
                && meta.gid() == f.gid;
            if !same_meta {
                return Ok(false);
            }
            let mut content = Zeroizing::new(Vec::with_capacity(f.data.len()));
            File::open(&path)?.read_to_end(&mut content)?;
            if *content != *f.data {
                return Ok(false);
            }
        }
        if count_files(&dir)? != self.files.len() {
            return Ok(false);
        }
        for name in self.top_names() {
            let link = fs::read_link(root.join(name)).ok();
            if link != Some(Path::new(DATA_DIR_LINK).join(name)) {
                return Ok(false);
            }
        }
        Ok(self.dirs.iter().all(|d| is_real_dir(&root.join(d))))
    }

    /// Writes the layout into the volume at `root` (mounted writable) and swaps it in.
    pub fn write(&self, root: &Path) -> Result<(), WriteError> {
        ensure_dirs(root, &self.dirs)?;
        let ts = new_timestamped_dir(root)?;
        let dir = root.join(&ts);
        for f in &self.files {
            write_file(&dir, f)?;
        }
        // The swap: a fresh link, renamed over the old one.
        let tmp = root.join(DATA_TMP_LINK);
        remove_if_present(&tmp).map_err(at("removing a stale link", DATA_TMP_LINK))?;
        std::os::unix::fs::symlink(&ts, &tmp).map_err(at("linking", DATA_TMP_LINK))?;
        fs::rename(&tmp, root.join(DATA_DIR_LINK)).map_err(at("swapping", DATA_DIR_LINK))?;
        let names = self.top_names();
        for name in &names {
            link_top_level(root, name)?;
        }
        remove_stale(root, &ts, &names)
    }
}

/// The timestamped directory `..data` points at, if the link is there and well-formed.
fn current_dir(root: &Path) -> io::Result<Option<PathBuf>> {
    let target = match fs::read_link(root.join(DATA_DIR_LINK)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let name = target.to_string_lossy();
    let ok = name.starts_with("..") && !name.contains('/') && name != DATA_DIR_LINK;
    Ok(ok.then_some(target))
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn count_files(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

/// Creates the real directories at the root that are missing; an existing one is left as it
/// is (same inode), since a mount may sit on it.
pub fn ensure_dirs(root: &Path, dirs: &[String]) -> Result<(), WriteError> {
    for d in dirs {
        let mut path = root.to_path_buf();
        for component in d.split('/') {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => {
                    return Err(WriteError {
                        step: "creating a mount point",
                        path: d.clone(),
                        source: io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "something that is not a directory is in the way",
                        ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(SERVICE_ACCOUNT_DIR_MODE)
                        .create(&path)
                        .map_err(at("creating a mount point", d))?;
                    fs::set_permissions(
                        &path,
                        fs::Permissions::from_mode(SERVICE_ACCOUNT_DIR_MODE),
                    )
                    .map_err(at("setting the mode of a mount point", d))?;
                }
                Err(e) => return Err(at("inspecting a mount point", d)(e)),
            }
        }
    }
    Ok(())
}

/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` in UTC, as kubelet names them; a suffix keeps two
/// writes in the same nanosecond apart.
fn new_timestamped_dir(root: &Path) -> Result<String, WriteError> {
    let now = time::OffsetDateTime::now_utc();
    let base = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    );
    for attempt in 0..100u32 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}_{attempt}")
        };
        match DirBuilder::new()
            .mode(SERVICE_ACCOUNT_DIR_MODE)
            .create(root.join(&name))
        {
            Ok(()) => {
                fs::set_permissions(
                    root.join(&name),
                    fs::Permissions::from_mode(SERVICE_ACCOUNT_DIR_MODE),
                )
                .map_err(at("setting the mode of", &name))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(at("creating the data directory", &name)(e)),
        }
    }
    Err(WriteError {
        step: "creating the data directory",
        path: base,
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

fn write_file(dir: &Path, f: &FileSpec) -> Result<(), WriteError> {
    let path = dir.join(&f.path);
    if let Some(parent) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(SERVICE_ACCOUNT_DIR_MODE)
            .create(parent)
            .map_err(at("creating the directory of", &f.path))?;
    }
    // create_new (O_EXCL) never follows or reuses whatever is at the path.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(at("creating", &f.path))?;
    file.write_all(&f.data).map_err(at("writing", &f.path))?;
    std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid))
        .map_err(at("setting the owner of", &f.path))?;
    // After the chown, which would clear set-id bits.
    file.set_permissions(fs::Permissions::from_mode(f.mode))
        .map_err(at("setting the mode of", &f.path))?;
    Ok(())
}

/// Points `name` at `..data/name`, replacing a link that points elsewhere in one rename.
fn link_top_level(root: &Path, name: &str) -> Result<(), WriteError> {
    let want = Path::new(DATA_DIR_LINK).join(name);
    let path = root.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            if fs::read_link(&path).ok().as_deref() == Some(want.as_path()) {
                return Ok(());
            }
        }
        Ok(_) => {
            return Err(WriteError {
                step: "linking",
                path: name.to_string(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a directory (mount point) has the same name",
                ),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at("inspecting", name)(e)),
    }
    let tmp = root.join(LINK_TMP);
    remove_if_present(&tmp).map_err(at("removing a stale link", LINK_TMP))?;
    std::os::unix::fs::symlink(&want, &tmp).map_err(at("linking", name))?;
    fs::rename(&tmp, &path).map_err(at("linking", name))
}

/// Removes old timestamped directories and top-level links no longer in the payload; real
/// directories that are not ours (`kubernetes.io`, mount points) are never touched.
fn remove_stale(root: &Path, current: &str, names: &BTreeSet<&str>) -> Result<(), WriteError> {
    let entries = fs::read_dir(root).map_err(at("listing", "."))?;
    for entry in entries {
        let entry = entry.map_err(at("listing", "."))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(at("inspecting", &name))?;
        let path = entry.path();
        if name == DATA_DIR_LINK || name == current {
            continue;
        }
        if name.starts_with("..") {
            if kind.is_dir() {
                fs::remove_dir_all(&path).map_err(at("removing the old data", &name))?;
            } else if kind.is_symlink() {
                fs::remove_file(&path).map_err(at("removing a stale link", &name))?;
            }
        } else if kind.is_symlink() && !names.contains(name.as_str()) {
            let through_data = fs::read_link(&path)
                .map(|t| t.starts_with(DATA_DIR_LINK))
                .unwrap_or(false);
            if through_data {
                fs::remove_file(&path).map_err(at("removing a stale link", &name))?;
            }
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Overwrites every file of the payload with zeros before the unmount frees the pages: cheap
/// defence for memory the kernel hands out again.
pub fn wipe(root: &Path) -> io::Result<usize> {
    let mut wiped = 0;
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() && name.to_string_lossy().starts_with("..") {
            wiped += wipe_dir(&entry.path())?;
        }
    }
    Ok(wiped)
}

fn wipe_dir(dir: &Path) -> io::Result<usize> {
    let mut wiped = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            wiped += wipe_dir(&entry.path())?;
        } else if kind.is_file() {
            let mut file = OpenOptions::new().write(true).open(entry.path())?;
            let len = file.metadata()?.len();
            let zeros = [0u8; 8192];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            wiped += 1;
        }
    }
    Ok(wiped)
}
