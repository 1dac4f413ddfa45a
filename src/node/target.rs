//! Target paths, checked on the node before the plugin (running as root) mounts or removes
//! anything there: absolute, normalised, inside kubelet's directory, and not reached through a
//! symlink.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tonic::Code;

use super::failure::Failure;
use super::request::truncate;

const STEP: &str = "checking the target path";

/// Where kubelet's volumes live, as configured and as the kernel names it.
#[derive(Debug, Clone)]
pub struct KubeletDir {
    pub configured: PathBuf,
    pub real: PathBuf,
}

/// A checked target: `real` is the path with its parent resolved, which is how the mount
/// table names it.
#[derive(Debug, Clone)]
pub struct Target {
    pub real: PathBuf,
    /// False when nothing exists at the path yet.
    pub exists: bool,
}

fn invalid(message: String) -> Failure {
    Failure::new(Code::InvalidArgument, STEP, message)
}

/// Checks the spelling of a target path: absolute, no `.`/`..`/empty components, strictly
/// inside the kubelet directory.
pub fn check_lexical(raw: &str, kubelet: &KubeletDir) -> Result<PathBuf, Failure> {
    let shown = truncate(raw);
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(invalid(format!("target path {shown:?} is not absolute")));
    };
    if raw.contains('\0') {
        return Err(invalid("target path contains NUL".into()));
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(format!(
            "target path {shown:?} is not normalised (empty, . or .. component)"
        )));
    }
    let path = PathBuf::from(raw);
    let inside = [&kubelet.configured, &kubelet.real]
        .iter()
        .any(|dir| path.starts_with(dir) && path != **dir);
    if !inside {
        return Err(invalid(format!(
            "target path {shown:?} is outside the kubelet directory {}",
            kubelet.configured.display()
        )));
    }
    Ok(path)
}

/// The pod uid in kubelet's volume path for an inline CSI volume, `KUBELET/pods/<pod uid>/
/// volumes/kubernetes.io~csi/<volume>/mount`, or `None` for any other path.
fn kubelet_volume_uid<'a>(path: &'a Path, kubelet: &KubeletDir) -> Option<&'a str> {
    [&kubelet.configured, &kubelet.real].iter().find_map(|dir| {
        let rest = path.strip_prefix(dir).ok()?;
        let parts: Vec<&str> = rest.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            ["pods", uid, "volumes", "kubernetes.io~csi", _volume, "mount"] => Some(*uid),
            _ => None,
        }
    })
}

fn not_a_volume_path(raw: &str, pod: &str) -> Failure {
    invalid(format!(
        "target path {:?} is not kubelet's volume path for {pod} \
         (<kubelet dir>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount)",
        truncate(raw)
    ))
}

/// kubelet publishes a pod's inline volume at `KUBELET/pods/<pod uid>/volumes/
/// kubernetes.io~csi/<volume>/mount`; any other place, or another pod's directory, is refused,
/// so the files of the pod the server authorised cannot be mounted where another pod (or the
/// host) would see them.
pub fn check_pod_volume(raw: &str, kubelet: &KubeletDir, pod_uid: &str) -> Result<(), Failure> {
    let path = check_lexical(raw, kubelet)?;
    match kubelet_volume_uid(&path, kubelet) {
        Some(uid) if uid == pod_uid => Ok(()),
        _ => Err(not_a_volume_path(
            raw,
            &format!("pod uid {:?}", truncate(pod_uid)),
        )),
    }
}

/// Full check for a publish: the parent must exist and resolve inside the kubelet directory,
/// and the target must be a directory or absent, never a symlink.
pub fn check_publish(raw: &str, kubelet: &KubeletDir) -> Result<Target, Failure> {
    let path = check_lexical(raw, kubelet)?;
    match resolve(&path, kubelet)? {
        Some(target) => Ok(target),
        None => Err(Failure::new(
            Code::FailedPrecondition,
            STEP,
            format!(
                "the parent of target path {:?} does not exist",
                truncate(raw)
            ),
        )),
    }
}

/// Check for an unpublish: the same place as a publish (kubelet's volume path of some pod; the
/// request names no pod), so nothing else in the kubelet directory is ever unmounted or
/// removed. `None` when the target (or its parent) is already gone.
pub fn check_unpublish(raw: &str, kubelet: &KubeletDir) -> Result<Option<Target>, Failure> {
    let path = check_lexical(raw, kubelet)?;
    if kubelet_volume_uid(&path, kubelet).is_none() {
        return Err(not_a_volume_path(raw, "a pod"));
    }
    Ok(resolve(&path, kubelet)?.filter(|t| t.exists))
}

fn resolve(path: &Path, kubelet: &KubeletDir) -> Result<Option<Target>, Failure> {
    let shown = truncate(&path.to_string_lossy());
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(invalid(format!("target path {shown:?} has no parent")));
    };
    let parent = match std::fs::canonicalize(parent) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::new(
                Code::Internal,
                STEP,
                format!("resolving the parent of {shown:?}"),
            )
            .because(e))
        }
    };
    if !parent.starts_with(&kubelet.real) {
        return Err(invalid(format!(
            "target path {shown:?} leads outside the kubelet directory through a symlink"
        )));
    }
    let real = parent.join(name);
    let exists = match std::fs::symlink_metadata(&real) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(invalid(format!("target path {shown:?} is a symlink")))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(invalid(format!(
                "target path {shown:?} exists and is not a directory"
            )))
        }
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => {
            return Err(
                Failure::new(Code::Internal, STEP, format!("inspecting {shown:?}")).because(e),
            )
        }
    };
    Ok(Some(Target { real, exists }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_is_checked_before_the_filesystem() {
        let kubelet = KubeletDir {
            configured: "/var/lib/kubelet".into(),
            real: "/var/lib/kubelet".into(),
        };
        for bad in [
            "relative/mount",
            "/var/lib/kubelet",
            "/var/lib/kubelet/../../etc",
            "/var/lib/kubelet/pods//mount",
            "/var/lib/kubelet/pods/./mount",
            "/var/lib/kubelet/pods/x/mount/",
            "/var/lib/kubeletx/mount",
            "/etc/mount",
        ] {
            assert!(check_lexical(bad, &kubelet).is_err(), "{bad} accepted");
        }
        assert!(check_lexical("/var/lib/kubelet/pods/u/volumes/x/mount", &kubelet).is_ok());
    }
}
