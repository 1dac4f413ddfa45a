//! The embedded store: one JSON file per secret under `DIR/secrets/<namespace>/<name>.json`.
//! Crash-safe without a database: a record is written to a fresh temporary file and fsynced,
//! then hard-linked to its name (which fails if the name exists, atomically, across processes:
//! the CLI and the server may write at once), and the directory is fsynced. A crash leaves at
//! most a temporary file, which readers ignore.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_namespace, io_error, SecretRecord, Store, StoreError};
use crate::spec;

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

    fn namespace_dir(&self, namespace: &str) -> Result<PathBuf, StoreError> {
        check_namespace(namespace)?;
        Ok(self.root.join(namespace))
    }

    fn path(&self, namespace: &str, name: &str) -> Result<PathBuf, StoreError> {
        spec::check_name(name).map_err(|_| StoreError::Name)?;
        Ok(self.namespace_dir(namespace)?.join(format!("{name}.json")))
    }

    /// Whether a record exists, without reading it.
    pub fn exists(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let path = self.path(namespace, name)?;
        path.try_exists().map_err(io_error("checking", &path))
    }

    fn read(path: &Path) -> Result<Option<SecretRecord>, StoreError> {
        match fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt {
                        path: path.display().to_string(),
                    })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", path)(e)),
        }
    }

    fn read_namespace(dir: &Path, out: &mut Vec<SecretRecord>) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("listing", dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io_error("listing", dir))?.path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // Temporary files start with '.', records end in .json.
            if file_name.starts_with('.') || !file_name.ends_with(".json") {
                continue;
            }
            if let Some(record) = Self::read(&path)? {
                out.push(record);
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

impl Store for FileStore {
    fn create(&self, record: &SecretRecord) -> Result<(), StoreError> {
        let path = self.path(&record.namespace, &record.name)?;
        let dir = self.namespace_dir(&record.namespace)?;
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}-{}",
            record.name,
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = serde_json::to_vec_pretty(record).map_err(|_| StoreError::Corrupt {
            path: path.display().to_string(),
        })?;
        let write = || -> Result<(), StoreError> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_error("creating", &tmp))?;
            file.write_all(&bytes).map_err(io_error("writing", &tmp))?;
            file.sync_all().map_err(io_error("syncing", &tmp))?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists {
                    namespace: record.namespace.clone(),
                    name: record.name.clone(),
                }),
                Err(e) => Err(io_error("publishing", &path)(e)),
            }
        };
        let result = write();
        let _ = fs::remove_file(&tmp);
        result?;
        sync_dir(&dir)
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        Self::read(&self.path(namespace, name)?)
    }

    fn list(&self, namespace: Option<&str>) -> Result<Vec<SecretRecord>, StoreError> {
        let mut out = Vec::new();
        match namespace {
            Some(ns) => Self::read_namespace(&self.namespace_dir(ns)?, &mut out)?,
            None => {
                let entries = fs::read_dir(&self.root).map_err(io_error("listing", &self.root))?;
                for entry in entries {
                    let entry = entry.map_err(io_error("listing", &self.root))?;
                    let name = entry.file_name();
                    if name.to_str().is_some_and(|n| check_namespace(n).is_ok()) {
                        Self::read_namespace(&entry.path(), &mut out)?;
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }

    fn delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let path = self.path(namespace, name)?;
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
