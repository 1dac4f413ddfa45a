//! The embedded store: one JSON file per secret under `DIR/secrets/<namespace>/<name>.json`.
//! Crash-safe without a database: a record is written to a fresh temporary file and fsynced,
//! then hard-linked to its name (which fails if the name exists, atomically, across processes:
//! the CLI and the server may write at once), and the directory is fsynced. A crash leaves at
//! most a temporary file, which readers ignore and the next write (or server start) removes.
//! A replace (`secret reseal`) and a remove of the same namespace hold its lock file
//! (`.lock`, an advisory `flock` shared by every process), so a replace that checked its record
//! cannot rename over a name removed in the meantime and bring the secret back.
//!
//! Anyone who can write this directory can plant files in it, and sealing needs only public
//! keys. So a record is trusted for nothing: it is read only from its own name in its own
//! namespace directory, never through a symlink or from anything but a regular file, and it
//! must name that same secret; the envelope is then opened for the requested name, so a
//! record copied from another secret does not open.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};

use super::{check_namespace, io_error, SecretRecord, Store, StoreError, MAX_SECRET_BYTES};
use crate::spec;

/// Temporary files are `.tmp-<name>-<pid>-<counter>`.
const TMP_PREFIX: &str = ".tmp-";
/// The namespace's lock file; like temporary files it starts with '.', so it is no record.
const LOCK_FILE: &str = ".lock";
/// A record holds at most 500 KiB of ciphertext as base64 plus a little JSON; anything larger
/// is not a record, and is not read into memory.
const MAX_RECORD_BYTES: u64 = (MAX_SECRET_BYTES as u64) * 2 + 64 * 1024;

/// The file backend rooted at a data directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("secrets");
        fs::create_dir_all(&root).map_err(io_error("creating", &root))?;
        Ok(Self { root })
    }

    /// Removes the temporary files of writers that died mid-write (`kill -9`), in every
    /// namespace: what a server does at start. Returns how many were removed.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.root).map_err(io_error("listing", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.root))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir
                && entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| check_namespace(n).is_ok())
            {
                removed += sweep_dir(&entry.path());
            }
        }
        Ok(removed)
    }

    fn namespace_dir(&self, namespace: &str) -> Result<PathBuf, StoreError> {
        check_namespace(namespace)?;
        Ok(self.root.join(namespace))
    }

    fn path(&self, namespace: &str, name: &str) -> Result<PathBuf, StoreError> {
        spec::check_name(name).map_err(|_| StoreError::Name)?;
        Ok(self.namespace_dir(namespace)?.join(format!("{name}.json")))
    }

    /// Holds the namespace's lock until the returned file is dropped; `None` when the
    /// namespace has no directory (and so no record). The file is opened without following a
    /// symlink: one planted under its name is refused, not locked through.
    fn lock(&self, namespace: &str) -> Result<Option<File>, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.namespace_dir(namespace)?.join(LOCK_FILE);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening the lock file", &path)(e)),
        };
        file.lock().map_err(io_error("locking", &path))?;
        Ok(Some(file))
    }

    /// [`Store::replace`], with `between` run after the check and before the rename (tests
    /// put a concurrent remove there).
    pub(super) fn replace_then(
        &self,
        old: &SecretRecord,
        new: &SecretRecord,
        between: impl FnOnce(),
    ) -> Result<(), StoreError> {
        let not_found = || StoreError::NotFound(new.name.clone());
        let _lock = self.lock(&new.namespace)?.ok_or_else(not_found)?;
        let current = self
            .read(&new.namespace, &new.name)?
            .ok_or_else(not_found)?;
        // Still the record whose envelope was resealed, not one created again meanwhile.
        if current.spec != old.spec {
            return Err(StoreError::Changed {
                namespace: new.namespace.clone(),
                name: new.name.clone(),
            });
        }
        between();
        // A rename over the old record: readers see the old or the new one, never neither.
        self.write(new, |tmp, path| {
            fs::rename(tmp, path).map_err(io_error("replacing", path))
        })
    }

    /// Whether a record exists, without reading it.
    pub fn exists(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let path = self.path(namespace, name)?;
        path.try_exists().map_err(io_error("checking", &path))
    }

    /// Reads the record of `namespace/name`: only a regular file reached without a symlink,
    /// and only if it names that same secret.
    fn read(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let dir_path = self.namespace_dir(namespace)?;
        let path = self.path(namespace, name)?;
        let refused = |why: &'static str| StoreError::Refused {
            path: path.display().to_string(),
            why,
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match rustix::fs::open(&dir_path, flags | OFlags::DIRECTORY, Mode::empty()) {
            Ok(dir) => dir,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(refused(
                    "its namespace directory is a symlink or not a directory",
                ))
            }
            Err(e) => return Err(io_error("opening", &dir_path)(e.into())),
        };
        // NONBLOCK: opening a FIFO planted under a record's name must not hang the reader.
        let file_name = format!("{name}.json");
        let fd = match rustix::fs::openat(&dir, &file_name, flags | OFlags::NONBLOCK, Mode::empty())
        {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(refused("it is a symlink")),
            Err(e) => return Err(io_error("opening", &path)(e.into())),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(io_error("reading", &path))?;
        if !meta.is_file() {
            return Err(refused("it is not a regular file"));
        }
        if meta.len() > MAX_RECORD_BYTES {
            return Err(refused("it is larger than any record"));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error("reading", &path))?;
        let record: SecretRecord =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                path: path.display().to_string(),
            })?;
        if record.namespace != namespace || record.name != name || record.spec.name != name {
            return Err(refused("it holds the record of another secret"));
        }
        Ok(Some(record))
    }

    fn read_namespace(
        &self,
        namespace: &str,
        out: &mut Vec<SecretRecord>,
    ) -> Result<(), StoreError> {
        let dir = self.namespace_dir(namespace)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("listing", &dir)(e)),
        };
        for entry in entries {
            let file_name = entry.map_err(io_error("listing", &dir))?.file_name();
            // Temporary files start with '.', records end in .json.
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Some(record) = self.read(namespace, name)? {
                out.push(record);
            }
        }
        Ok(())
    }
}

/// Removes the temporary files in `dir` whose writer is gone; returns how many. Best effort: a
/// file that cannot be removed now is tried again on the next write.
fn sweep_dir(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(temporary_writer) else {
            continue;
        };
        if !writer_alive(writer) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid of the process that writes the temporary file `name`, if it is one.
fn temporary_writer(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TMP_PREFIX)?;
    // `<name>-<pid>-<counter>`: names may contain '-', so read from the end.
    let mut parts = rest.rsplitn(3, '-');
    let _counter: u64 = parts.next()?.parse().ok()?;
    parts.next()?.parse().ok()
}

/// Whether process `pid` exists. A writer that is alive (this process included) keeps its
/// temporary file; one that died mid-write (`kill -9`, a crash) does not.
fn writer_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM: it exists but belongs to someone else.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

impl FileStore {
    /// Writes `record` to a fresh temporary file, fsyncs it, and `publish`es it at its name
    /// (a link for a create, a rename for a replace); the directory is fsynced after.
    fn write(
        &self,
        record: &SecretRecord,
        publish: impl FnOnce(&Path, &Path) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let path = self.path(&record.namespace, &record.name)?;
        let dir = self.namespace_dir(&record.namespace)?;
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        sweep_dir(&dir);
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}-{}-{}",
            record.name,
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Serialize {
            what: "the secret record",
            source,
        })?;
        let write = || -> Result<(), StoreError> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_error("creating", &tmp))?;
            file.write_all(&bytes).map_err(io_error("writing", &tmp))?;
            file.sync_all().map_err(io_error("syncing", &tmp))?;
            publish(&tmp, &path)
        };
        let result = write();
        let _ = fs::remove_file(&tmp);
        result?;
        sync_dir(&dir)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

impl Store for FileStore {
    fn create(&self, record: &SecretRecord) -> Result<(), StoreError> {
        self.write(record, |tmp, path| match fs::hard_link(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists {
                namespace: record.namespace.clone(),
                name: record.name.clone(),
            }),
            Err(e) => Err(io_error("publishing", path)(e)),
        })
    }

    /// The tag is not kept: no webhook guards this store.
    fn replace(
        &self,
        old: &SecretRecord,
        new: &SecretRecord,
        _tag: &str,
    ) -> Result<(), StoreError> {
        self.replace_then(old, new, || {})
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.read(namespace, name)
    }

    fn list(&self, namespace: Option<&str>) -> Result<Vec<SecretRecord>, StoreError> {
        let mut out = Vec::new();
        match namespace {
            Some(ns) => self.read_namespace(ns, &mut out)?,
            None => {
                let entries = fs::read_dir(&self.root).map_err(io_error("listing", &self.root))?;
                for entry in entries {
                    let entry = entry.map_err(io_error("listing", &self.root))?;
                    let name = entry.file_name();
                    if let Some(ns) = name.to_str().filter(|n| check_namespace(n).is_ok()) {
                        self.read_namespace(ns, &mut out)?;
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }

    fn delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let path = self.path(namespace, name)?;
        let Some(_lock) = self.lock(namespace)? else {
            return Ok(false);
        };
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.namespace_dir(namespace)?)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("removing", &path)(e)),
        }
    }
}
