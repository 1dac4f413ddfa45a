//! `runsecrets.io/mountpoints`: directories, relative to the volume, that other mounts of the
//! pod land on inside `/run/secrets` (a token another webhook mounts, say). The volume is
//! read-only, so the node plugin must create them when it fills the volume. The webhook writes
//! the attribute and the node plugin reads it back, both through [`Mountpoints`]: a pod the
//! webhook admits never has a volume the plugin refuses, and a pod that writes the attribute
//! itself gets the same rules.
//!
//! The grammar: one directory per line; each a relative path valid as a secret target (no
//! `..`, no empty component, nothing under `kubernetes.io/` or `.external`), except the
//! service-account directory itself, which the volume always holds; none sharing its
//! top-level name with an in-volume secret file, because the node plugin owns the directories
//! that hold files (it removes what it did not declare there, and converting an old-layout
//! volume replaces them whole, mount point included).

use std::collections::BTreeSet;

use super::target::{Target, TargetError, SERVICE_ACCOUNT_DIR};
use super::SecretRef;

/// Most mount points one volume holds.
pub const MAX_MOUNTPOINTS: usize = 64;
/// Longest mount point shown in a message: the attribute may come from the pod itself.
const SHOWN: usize = 64;

/// Why a mount point was refused. The directory is shown shortened and escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountpointError {
    #[error("mount point {dir:?} is not relative to the volume")]
    NotRelative { dir: String },
    #[error("mount point {dir:?} cannot be created inside the volume")]
    Invalid {
        dir: String,
        #[source]
        source: TargetError,
    },
    #[error(
        "mount point {dir:?} shares the directory {top:?} with the target of secret {secret:?}"
    )]
    SharesDirectory {
        dir: String,
        top: String,
        secret: String,
    },
    #[error("more than {MAX_MOUNTPOINTS} mount points")]
    TooMany,
}

/// The mount points of one volume, checked against its secret references.
#[derive(Debug, Clone)]
pub struct Mountpoints<'a> {
    refs: &'a [SecretRef],
    /// In the order first added, without the service-account directory.
    dirs: Vec<String>,
}

fn shown(dir: &str) -> String {
    crate::error::printable(dir, SHOWN)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

impl<'a> Mountpoints<'a> {
    pub fn new(refs: &'a [SecretRef]) -> Self {
        Self {
            refs,
            dirs: Vec::new(),
        }
    }

    /// Adds one directory; adding one twice, or the service-account directory, changes
    /// nothing.
    pub fn add(&mut self, dir: &str) -> Result<(), MountpointError> {
        if dir == SERVICE_ACCOUNT_DIR || self.dirs.iter().any(|d| d == dir) {
            return Ok(());
        }
        if dir.starts_with('/') {
            return Err(MountpointError::NotRelative { dir: shown(dir) });
        }
        // A relative spelling parses as a target inside the volume, with the same rules.
        Target::parse(dir).map_err(|source| MountpointError::Invalid {
            dir: shown(dir),
            source,
        })?;
        let top = top_level(dir);
        let shares = self.refs.iter().find(|r| {
            matches!(r.target, Target::InVolume(_)) && top_level(&r.target.volume_path()) == top
        });
        if let Some(r) = shares {
            return Err(MountpointError::SharesDirectory {
                dir: shown(dir),
                top: top.to_string(),
                secret: r.source.clone(),
            });
        }
        if self.dirs.len() >= MAX_MOUNTPOINTS {
            return Err(MountpointError::TooMany);
        }
        self.dirs.push(dir.to_string());
        Ok(())
    }

    /// Reads the attribute as the webhook wrote it (or as a pod wrote it itself): every line
    /// checked, blank lines and surrounding spaces ignored.
    pub fn parse(text: &str, refs: &'a [SecretRef]) -> Result<Self, MountpointError> {
        let mut points = Self::new(refs);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            points.add(line)?;
        }
        Ok(points)
    }

    /// The attribute's value: sorted, one per line; empty when the volume needs none.
    pub fn attribute(&self) -> String {
        let sorted: BTreeSet<&str> = self.dirs.iter().map(String::as_str).collect();
        sorted.into_iter().collect::<Vec<_>>().join("\n")
    }

    /// Every directory the volume holds for other mounts, the service-account directory
    /// first.
    pub fn dirs(&self) -> Vec<String> {
        std::iter::once(SERVICE_ACCOUNT_DIR.to_string())
            .chain(self.dirs.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_secrets;

    fn refs(text: &str) -> Vec<SecretRef> {
        parse_secrets(text).expect("valid references")
    }

    #[test]
    fn what_the_webhook_writes_the_plugin_reads_back() {
        let r = refs("db;source=tok,target=/etc/app/token");
        let mut points = Mountpoints::new(&r);
        for dir in [
            "eks.amazonaws.com/serviceaccount",
            "azure/tokens",
            SERVICE_ACCOUNT_DIR,
        ] {
            points.add(dir).expect("accepted");
        }
        points.add("azure/tokens").expect("twice is once");
        let attribute = points.attribute();
        assert_eq!(attribute, "azure/tokens\neks.amazonaws.com/serviceaccount");
        let read = Mountpoints::parse(&attribute, &r).expect("the plugin accepts it");
        assert_eq!(
            read.dirs(),
            [
                SERVICE_ACCOUNT_DIR,
                "azure/tokens",
                "eks.amazonaws.com/serviceaccount"
            ]
        );
        assert_eq!(read.attribute(), attribute);
    }

    #[test]
    fn the_volume_always_holds_the_service_account_dir() {
        let r = refs("a");
        let none = Mountpoints::parse("", &r).expect("ok");
        assert_eq!(none.dirs(), [SERVICE_ACCOUNT_DIR]);
        assert_eq!(none.attribute(), "", "the webhook writes no attribute");
        let some =
            Mountpoints::parse(" conf.d \n\nkubernetes.io/serviceaccount\n", &r).expect("ok");
        assert_eq!(some.dirs(), [SERVICE_ACCOUNT_DIR, "conf.d"]);
    }

    #[test]
    fn hostile_or_conflicting_mount_points_are_refused() {
        let r = refs("source=a,target=tls/key.pem;source=b,target=/etc/b");
        for bad in [
            "/etc",
            "/x",
            "../x",
            "a//b",
            "a/./b",
            "..data",
            "x/..2026",
            ".external/etc",
            ".external",
            "kubernetes.io/serviceaccount/x",
            "kubernetes.io/other",
            "tls",
            "tls/certs",
            "line\u{7}bell",
        ] {
            let err = Mountpoints::parse(bad, &r).expect_err(bad);
            assert!(!err.to_string().contains('\u{7}'), "{err}");
        }
        let err = Mountpoints::parse("tls/certs", &r).expect_err("shares");
        assert_eq!(
            err.to_string(),
            "mount point \"tls/certs\" shares the directory \"tls\" with the target of secret \"a\""
        );
        let long = format!("{}/x", "d".repeat(2000));
        let err = Mountpoints::parse(&long, &r).expect_err("too long");
        assert!(err.to_string().len() < 120, "shown shortened: {err}");
    }

    #[test]
    fn a_volume_holds_at_most_64_mount_points() {
        let r = refs("a");
        let text = |n: usize| (0..n).map(|i| format!("d{i}\n")).collect::<String>();
        let points = Mountpoints::parse(&text(MAX_MOUNTPOINTS), &r).expect("64 fit");
        assert_eq!(points.dirs().len(), MAX_MOUNTPOINTS + 1);
        assert_eq!(
            Mountpoints::parse(&text(MAX_MOUNTPOINTS + 1), &r).expect_err("65 do not"),
            MountpointError::TooMany
        );
    }
}
