//! NodePublishVolume arguments, checked as the CSI specification and issue 4 require before
//! anything touches the node: a request that fails here leaves no trace.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use tonic::Code;
use zeroize::{Zeroize, Zeroizing};

use super::csi::volume_capability::AccessType;
use super::csi::NodePublishVolumeRequest;
use super::failure::Failure;
use super::writer::{FileSpec, Layout};
use crate::delivery::wire::{PublishResponse, TOKEN_AUDIENCE};
use crate::spec::{self, Mountpoints, SecretRef, MOUNTPOINTS_ATTRIBUTE, SECRETS_ATTRIBUTE};

/// kubelet's volume-context keys (`pkg/volume/csi/csi_util.go`, `csi_mounter.go`).
pub const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
pub const POD_NAME_KEY: &str = "csi.storage.k8s.io/pod.name";
pub const POD_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_UID_KEY: &str = "csi.storage.k8s.io/pod.uid";

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
        // Each value decoded once and shared by the files of its references.
        let mut values: HashMap<String, Arc<Zeroizing<Vec<u8>>>> = HashMap::new();
        for secret in response.secrets {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret.data.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| {
                    Failure::new(
                        Code::Unavailable,
                        step,
                        format!("secret {:?} is not valid base64", truncate(&secret.name)),
                    )
                })?;
            values.insert(secret.name, Arc::new(bytes));
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
                data: Arc::clone(data),
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
    let mountpoints = ctx.get(MOUNTPOINTS_ATTRIBUTE).map_or("", String::as_str);
    let dirs = Mountpoints::parse(mountpoints, &refs)
        .map_err(|e| invalid(format!("volume attribute {MOUNTPOINTS_ATTRIBUTE}")).because(e))?
        .dirs();
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

/// Shortens a caller-supplied string for an error message.
pub fn truncate(s: &str) -> String {
    crate::error::printable(s, 64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;
    use zeroize::Zeroizing;

    use super::Publish;
    use crate::delivery::wire::{DeliveredSecret, PublishResponse};

    /// Two references to one secret give two files that share one decoded value: the
    /// plaintext is held once (and wiped once, when the layout goes), not copied per file.
    #[test]
    fn the_files_of_one_secret_share_its_single_decoded_value() {
        let plan = Publish {
            target_path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/v/mount".into(),
            refs: crate::spec::parse_secrets("db\nsource=db,target=copy/db\ntls").expect("refs"),
            dirs: Vec::new(),
            pod_namespace: "shop".into(),
            pod_name: "web".into(),
            pod_uid: "u".into(),
            token: Zeroizing::new(String::new()),
        };
        let encode = |v: &[u8]| Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(v));
        let response = PublishResponse {
            secrets: vec![
                DeliveredSecret {
                    name: "db".into(),
                    data: encode(b"hunter2"),
                },
                DeliveredSecret {
                    name: "tls".into(),
                    data: encode(b"-----BEGIN KEY-----"),
                },
            ],
        };
        let layout = plan.layout(response).expect("layout");
        let files: Vec<(&str, &[u8])> = layout
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.data.as_slice()))
            .collect();
        assert_eq!(
            files,
            [
                ("db", &b"hunter2"[..]),
                ("copy/db", &b"hunter2"[..]),
                ("tls", &b"-----BEGIN KEY-----"[..])
            ]
        );
        assert!(Arc::ptr_eq(&layout.files[0].data, &layout.files[1].data));
        // Nothing else holds a copy: the layout's files are the only owners.
        assert_eq!(Arc::strong_count(&layout.files[0].data), 2);
        assert_eq!(Arc::strong_count(&layout.files[2].data), 1);
    }
}
