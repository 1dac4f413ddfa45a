//! NodePublishVolume arguments, checked as the CSI specification and issue 4 require before
//! anything touches the node: a request that fails here leaves no trace.

use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;
use tonic::Code;
use zeroize::{Zeroize, Zeroizing};

use super::csi::volume_capability::AccessType;
use super::csi::NodePublishVolumeRequest;
use super::failure::Failure;
use super::writer::{FileSpec, Layout};
use crate::delivery::wire::{PublishResponse, TOKEN_AUDIENCE};
use crate::spec::{
    self, is_dir_prefix, SecretRef, EXTERNAL_DIR, MOUNTPOINTS_ATTRIBUTE, SECRETS_ATTRIBUTE,
    SERVICE_ACCOUNT_DIR,
};

/// kubelet's volume-context keys (`pkg/volume/csi/csi_util.go`, `csi_mounter.go`).
pub const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
pub const POD_NAME_KEY: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID_KEY: &str = "csi.storage.k8s.io/pod.uid";

/// Most extra mount points one volume may ask for.
const MAX_MOUNTPOINTS: usize = 64;
const MAX_PATH: usize = 1024;
const MAX_COMPONENT: usize = 255;

/// A publish request that passed every check that needs no filesystem.
pub struct Publish {
    pub target_path: String,
    pub refs: Vec<SecretRef>,
    /// Real directories at the volume root, the service-account directory first.
    pub dirs: Vec<String>,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub token: Zeroizing<String>,
}

impl Publish {
    /// Distinct secret names, in the order first referenced: what the server is asked for.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in &self.refs {
            if !names.contains(&r.source) {
                names.push(r.source.clone());
            }
        }
        names
    }

    /// Maps the server's answer onto files: one per reference, so two references to one
    /// secret give two files.
    pub fn layout(&self, response: PublishResponse) -> Result<Layout, Failure> {
        let step = "reading the server's answer";
        let mut values: HashMap<String, Zeroizing<Vec<u8>>> = HashMap::new();
        for secret in response.secrets {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret.data.as_bytes())
                .map_err(|_| {
                    Failure::new(
                        Code::Unavailable,
                        step,
                        format!("secret {:?} is not valid base64", truncate(&secret.name)),
                    )
                })?;
            values.insert(secret.name, Zeroizing::new(bytes));
        }
        let mut files = Vec::with_capacity(self.refs.len());
        for r in &self.refs {
            let Some(data) = values.get(&r.source) else {
                return Err(Failure::new(
                    Code::Internal,
                    step,
                    format!("the server did not return secret {:?}", r.source),
                ));
            };
            files.push(FileSpec {
                path: r.target.volume_path(),
                data: Zeroizing::new(data.to_vec()),
                uid: r.uid,
                gid: r.gid,
                mode: r.mode,
            });
        }
        Ok(Layout {
            files,
            dirs: self.dirs.clone(),
        })
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(Code::InvalidArgument, "checking the request", message)
}

/// The `serviceAccount.tokens` value: kubelet's `json.Marshal(map[audience]TokenRequestStatus)`.
#[derive(Deserialize)]
struct TokenStatus {
    token: Zeroizing<String>,
}

/// Checks a NodePublishVolume request and takes the pod's token out of it (the copy in the
/// request is wiped).
pub fn check_publish(req: &mut NodePublishVolumeRequest) -> Result<Publish, Failure> {
    if req.volume_id.is_empty() {
        return Err(invalid("volume_id is missing"));
    }
    if req.target_path.is_empty() {
        return Err(invalid("target_path is missing"));
    }
    let Some(capability) = &req.volume_capability else {
        return Err(invalid("volume_capability is missing"));
    };
    match &capability.access_type {
        Some(AccessType::Mount(mount)) => {
            if !(mount.fs_type.is_empty() || mount.fs_type == "tmpfs") {
                return Err(invalid(format!(
                    "fs_type {:?} is not supported: runsecrets volumes are tmpfs",
                    truncate(&mount.fs_type)
                )));
            }
        }
        Some(AccessType::Block(_)) => {
            return Err(invalid(
                "block access is not supported: runsecrets volumes are mounted filesystems",
            ))
        }
        None => return Err(invalid("volume_capability has no access type (mount)")),
    }
    if !req.readonly {
        return Err(invalid(
            "runsecrets volumes are read-only: mount the volume with readOnly: true",
        ));
    }
    let ctx = &mut req.volume_context;
    if ctx.get(EPHEMERAL_KEY).map(String::as_str) != Some("true") {
        return Err(invalid(format!(
            "only inline ephemeral volumes are supported ({EPHEMERAL_KEY} is not \"true\"; \
             the CSIDriver must set podInfoOnMount and volumeLifecycleModes: [Ephemeral])"
        )));
    }
    let Some(attribute) = ctx.get(SECRETS_ATTRIBUTE) else {
        return Err(invalid(format!(
            "volume attribute {SECRETS_ATTRIBUTE} is missing"
        )));
    };
    let refs = spec::parse_secrets(attribute)
        .map_err(|e| invalid(format!("volume attribute {SECRETS_ATTRIBUTE}")).because(e))?;
    let dirs = parse_mountpoints(
        ctx.get(MOUNTPOINTS_ATTRIBUTE)
            .map(String::as_str)
            .unwrap_or(""),
        &refs,
    )
    .map_err(|e| invalid(format!("volume attribute {MOUNTPOINTS_ATTRIBUTE}: {e}")))?;
    let pod = |key: &str| {
        ctx.get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "{key} is missing: the CSIDriver must set podInfoOnMount: true"
                ))
            })
    };
    let (pod_namespace, pod_name, pod_uid) = (
        pod(POD_NAMESPACE_KEY)?,
        pod(POD_NAME_KEY)?,
        pod(POD_UID_KEY)?,
    );
    let token = take_token(ctx)?;
    Ok(Publish {
        target_path: req.target_path.clone(),
        refs,
        dirs,
        pod_namespace,
        pod_name,
        pod_uid,
        token,
    })
}

/// The pod's token for our audience, and nothing else: the pod's identity is whatever the
/// server's review of this token says.
fn take_token(ctx: &mut HashMap<String, String>) -> Result<Zeroizing<String>, Failure> {
    let denied = || {
        Failure::new(
            Code::PermissionDenied,
            "reading the pod token",
            format!("no token for audience {TOKEN_AUDIENCE}: the CSIDriver must set tokenRequests"),
        )
    };
    let Some(mut raw) = ctx.remove(TOKENS_KEY) else {
        return Err(denied());
    };
    let parsed = serde_json::from_str::<HashMap<String, TokenStatus>>(&raw);
    raw.zeroize();
    let mut tokens = parsed.map_err(|_| denied())?;
    match tokens.remove(TOKEN_AUDIENCE) {
        Some(status) if !status.token.trim().is_empty() => Ok(status.token),
        _ => Err(denied()),
    }
}

/// `runsecrets.io/mountpoints`: relative directories other mounts of the pod land on. They are
/// real directories at the volume root, outside the atomic writer's reach, so each must keep
/// clear of the top-level names the files use.
pub fn parse_mountpoints(text: &str, refs: &[SecretRef]) -> Result<Vec<String>, String> {
    let mut dirs = vec![SERVICE_ACCOUNT_DIR.to_string()];
    let file_roots: Vec<String> = refs
        .iter()
        .map(|r| top_level(&r.target.volume_path()).to_string())
        .collect();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i >= MAX_MOUNTPOINTS {
            return Err(format!("at most {MAX_MOUNTPOINTS} mount points"));
        }
        check_dir(line)?;
        if line != SERVICE_ACCOUNT_DIR && is_dir_prefix(SERVICE_ACCOUNT_DIR, line) {
            return Err(format!(
                "mount point {line:?} is inside {SERVICE_ACCOUNT_DIR}, where kubelet mounts the token"
            ));
        }
        if let Some(root) = file_roots.iter().find(|root| *root == top_level(line)) {
            return Err(format!(
                "mount point {line:?} shares the top-level name {root:?} with a secret file"
            ));
        }
        if !dirs.iter().any(|d| d == line) {
            dirs.push(line.to_string());
        }
    }
    Ok(dirs)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn check_dir(dir: &str) -> Result<(), String> {
    if dir.len() > MAX_PATH {
        return Err(format!("a mount point is longer than {MAX_PATH} bytes"));
    }
    if dir.chars().any(char::is_control) {
        return Err("a mount point contains a control character".into());
    }
    if dir.starts_with('/') {
        return Err(format!(
            "mount point {dir:?} must be relative to the volume"
        ));
    }
    for component in dir.split('/') {
        match component {
            "" => return Err(format!("mount point {dir:?} has an empty component")),
            "." | ".." => return Err(format!("mount point {dir:?} has a . or .. component")),
            c if c.starts_with("..") => {
                return Err(format!(
                "mount point {dir:?}: names starting with \"..\" are reserved for atomic updates"
            ))
            }
            c if c.len() > MAX_COMPONENT => {
                return Err("a mount point has a component longer than 255 bytes".into())
            }
            _ => {}
        }
    }
    if is_dir_prefix(EXTERNAL_DIR, dir) {
        return Err(format!(
            "mount point {dir:?} is reserved for files with absolute targets"
        ));
    }
    Ok(())
}

/// Shortens a caller-supplied string for an error message.
pub fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str) -> Vec<SecretRef> {
        spec::parse_secrets(text).expect("valid references")
    }

    #[test]
    fn mountpoints_always_hold_the_service_account_dir() {
        let dirs = parse_mountpoints("", &refs("a")).expect("ok");
        assert_eq!(dirs, vec![SERVICE_ACCOUNT_DIR.to_string()]);
        let dirs =
            parse_mountpoints("conf.d\nkubernetes.io/serviceaccount\n", &refs("a")).expect("ok");
        assert_eq!(dirs, vec![SERVICE_ACCOUNT_DIR.to_string(), "conf.d".into()]);
    }

    #[test]
    fn hostile_mountpoints_are_refused() {
        let r = refs("source=a,target=tls/key.pem");
        for bad in [
            "/etc",
            "../x",
            "a//b",
            "a/./b",
            "..data",
            "x/..2026",
            ".external/etc",
            "kubernetes.io/serviceaccount/x",
            "tls",
            "tls/certs",
        ] {
            assert!(parse_mountpoints(bad, &r).is_err(), "{bad} accepted");
        }
    }
}
