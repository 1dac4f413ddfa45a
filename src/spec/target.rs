//! Target paths. A target is where a secret file appears in the container; it is checked here
//! once, strictly, because the node plugin writes files at these paths as root.

use std::fmt;

use super::MOUNT_PATH;

/// Directory inside the volume that holds files whose target is an absolute path outside
/// `/run/secrets`; each is mounted at its target with a `subPath` mount.
pub const EXTERNAL_DIR: &str = ".external";
/// Directory the volume always holds, empty: with `/var/run` linked to `/run`, kubelet mounts
/// the service-account token here, and a read-only mount cannot grow a mount point later.
pub const SERVICE_ACCOUNT_DIR: &str = "kubernetes.io/serviceaccount";

const MAX_PATH: usize = 1024;
const MAX_COMPONENT: usize = 255;
const FORBIDDEN_ROOTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Where one secret file goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Relative to `/run/secrets` (Compose's default location), e.g. `tls/key.pem`.
    InVolume(String),
    /// An absolute path elsewhere, e.g. `/etc/app/token`. Delivered by a `subPath` mount, which
    /// kubelet binds once at container start: such a file does not see rotations.
    External(String),
}

/// Why a target path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target is empty")]
    Empty,
    #[error("target is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("target has a path component longer than {MAX_COMPONENT} bytes")]
    ComponentTooLong,
    #[error("target contains a control character or NUL")]
    ControlChar,
    #[error("target {0:?} has an empty component (// or a trailing /)")]
    EmptyComponent(String),
    #[error("target {0:?} must not contain \".\" or \"..\" components")]
    DotComponent(String),
    #[error("target {0:?}: names starting with \"..\" are reserved for atomic updates")]
    ReservedDotDot(String),
    #[error(
        "target {0:?} is reserved: kubelet mounts the service-account token under kubernetes.io/"
    )]
    ServiceAccount(String),
    #[error("target {0:?} is reserved for files with absolute targets")]
    ExternalDir(String),
    #[error("target {0:?} is the secrets mount itself or one of its parents")]
    MountItself(String),
    #[error("target {0:?} is under /proc, /sys or /dev")]
    SystemPath(String),
}

impl Target {
    /// Validates a target as written in the annotation.
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        if raw.is_empty() {
            return Err(TargetError::Empty);
        }
        if raw.len() > MAX_PATH {
            return Err(TargetError::TooLong);
        }
        if raw.chars().any(char::is_control) {
            return Err(TargetError::ControlChar);
        }
        let Some(abs) = raw.strip_prefix('/') else {
            check_relative(raw)?;
            return Ok(Target::InVolume(raw.to_string()));
        };
        // Most images link /var/run to /run, so both spellings name a file in the volume.
        let inside = raw
            .strip_prefix("/run/secrets/")
            .or_else(|| raw.strip_prefix("/var/run/secrets/"));
        if let Some(rel) = inside {
            check_relative(rel)?;
            return Ok(Target::InVolume(rel.to_string()));
        }
        check_components(abs, raw)?;
        if abs.split('/').any(|c| c.starts_with("..")) {
            return Err(TargetError::ReservedDotDot(raw.to_string()));
        }
        if is_dir_prefix(raw, MOUNT_PATH) || is_dir_prefix(raw, "/var/run/secrets") {
            return Err(TargetError::MountItself(raw.to_string()));
        }
        if FORBIDDEN_ROOTS.iter().any(|root| is_dir_prefix(root, raw)) {
            return Err(TargetError::SystemPath(raw.to_string()));
        }
        Ok(Target::External(raw.to_string()))
    }

    /// The target as the user would write it in canonical form.
    pub fn as_written(&self) -> &str {
        match self {
            Target::InVolume(p) | Target::External(p) => p,
        }
    }

    /// The file's path relative to the volume root.
    pub fn volume_path(&self) -> String {
        match self {
            Target::InVolume(p) => p.clone(),
            Target::External(p) => format!("{EXTERNAL_DIR}{p}"),
        }
    }

    /// The path the file has in the container.
    pub fn container_path(&self) -> String {
        match self {
            Target::InVolume(p) => format!("{MOUNT_PATH}/{p}"),
            Target::External(p) => p.clone(),
        }
    }

    /// Two targets conflict when they are the same file or one would have to be a directory
    /// holding the other.
    pub fn conflict_with(&self, other: &Target) -> Option<&'static str> {
        let (a, b) = (self.container_path(), other.container_path());
        if a == b {
            Some("is declared twice")
        } else if is_dir_prefix(&a, &b) || is_dir_prefix(&b, &a) {
            Some("collides with another target (a file cannot also be a directory)")
        } else {
            None
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_written())
    }
}

/// True when `dir` is `path` or one of its ancestors, component-wise.
pub fn is_dir_prefix(dir: &str, path: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

fn check_components(path: &str, raw: &str) -> Result<(), TargetError> {
    for component in path.split('/') {
        match component {
            "" => return Err(TargetError::EmptyComponent(raw.to_string())),
            "." | ".." => return Err(TargetError::DotComponent(raw.to_string())),
            c if c.len() > MAX_COMPONENT => return Err(TargetError::ComponentTooLong),
            _ => {}
        }
    }
    Ok(())
}

fn check_relative(rel: &str) -> Result<(), TargetError> {
    check_components(rel, rel)?;
    if rel.split('/').any(|c| c.starts_with("..")) {
        return Err(TargetError::ReservedDotDot(rel.to_string()));
    }
    // The whole `kubernetes.io` directory stays out of the volume writer's reach: a republish
    // that replaced anything in it could take the token mount point with it.
    if is_dir_prefix("kubernetes.io", rel) {
        return Err(TargetError::ServiceAccount(rel.to_string()));
    }
    if is_dir_prefix(EXTERNAL_DIR, rel) {
        return Err(TargetError::ExternalDir(rel.to_string()));
    }
    Ok(())
}
