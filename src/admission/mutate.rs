//! The mutation: a pure function from a pod's annotations and spec to a JSON patch that adds
//! the `runsecrets.io` CSI volume and its read-only mounts, or to a denial that says what to fix.

use std::collections::BTreeMap;

use super::pod::{Container, PodSpec, Volume};
use sha2::{Digest, Sha256};

use super::patch::{Mount, Patch, PatchBuilder, Value, Volume as NewVolume};
use super::{Denial, DenyReason};
use crate::spec::{self, is_dir_prefix, MountpointError, Mountpoints, SecretRef, Target};

/// What the webhook does with one pod.
#[derive(Debug)]
pub enum Mutation {
    /// The pod declares no secrets.
    NotRequested,
    /// The pod already carries the injection for exactly these references.
    AlreadyInjected,
    /// Apply this patch.
    Patch(Patch),
}

/// A container the mount goes into, with its place in the spec.
struct Selected<'a> {
    field: &'static str,
    index: usize,
    container: &'a Container,
}

/// What a pod template declares: its references and the containers named to get them.
#[derive(Debug)]
pub struct Declared {
    pub refs: Vec<SecretRef>,
    pub containers: Vec<String>,
}

/// Reads the annotations once; `Ok(None)` when the template declares no secrets.
pub fn declared(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<Declared>, Denial> {
    let Some(value) = annotations.and_then(|a| a.get(spec::SECRETS_ANNOTATION)) else {
        return Ok(None);
    };
    let refs = spec::parse_secrets(value).map_err(|e| {
        Denial::new(
            DenyReason::InvalidAnnotation,
            format!("annotation {}: {e}", spec::SECRETS_ANNOTATION),
        )
    })?;
    let containers = annotations
        .and_then(|a| a.get(spec::CONTAINERS_ANNOTATION))
        .map(|v| spec::parse_containers(v))
        .unwrap_or_default();
    Ok(Some(Declared { refs, containers }))
}

/// Computes the mutation for a pod template. `prefix` locates the template in the object
/// (empty for a Pod) so workloads can be previewed offline with the same code.
pub fn mutate(
    annotations: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    prefix: &[&str],
) -> Result<Mutation, Denial> {
    match declared(annotations)? {
        Some(d) => mutate_declared(&d, annotations, spec, prefix),
        None => Ok(Mutation::NotRequested),
    }
}

/// [`mutate`] for references already read with [`declared`].
pub fn mutate_declared(
    declared: &Declared,
    annotations: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    prefix: &[&str],
) -> Result<Mutation, Denial> {
    let (refs, wanted) = (&declared.refs, &declared.containers);
    let digest = digest(refs, wanted);
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if let Some(index) = volumes.iter().position(|v| v.name == spec::VOLUME_NAME) {
        let injected = annotations.and_then(|a| a.get(spec::INJECTED_ANNOTATION));
        if injected != Some(&digest) || !is_expected(&volumes[index], refs) {
            return Err(conflict(format!(
                "the pod already has a volume named {:?} that runsecrets did not add for these secrets; remove it, and any {} annotation, from the manifest",
                spec::VOLUME_NAME,
                spec::INJECTED_ANNOTATION
            )));
        }
        check_our_mounts(spec, refs)?;
        // A reinvocation: only the containers that got the mount matter, not sidecars that
        // later webhooks added.
        let selected: Vec<_> = all_containers(spec)
            .filter(|s| {
                s.container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == spec::VOLUME_NAME && m.mount_path == spec::MOUNT_PATH)
            })
            .collect();
        let mountpoints = mountpoints(&selected, refs)?;
        return Ok(refresh_mountpoints(
            &volumes[index],
            index,
            mountpoints,
            prefix,
        ));
    }
    if let Some(s) = all_containers(spec).find(|s| {
        s.container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == spec::VOLUME_NAME)
    }) {
        return Err(conflict(format!(
            "container {:?} mounts a volume named {:?}, which runsecrets adds itself; remove that mount from the manifest",
            s.container.name,
            spec::VOLUME_NAME
        )));
    }
    let selected = select(spec, wanted)?;
    let mountpoints = mountpoints(&selected, refs)?;

    let mut patch = PatchBuilder::under(prefix);
    patch.add(
        &["metadata", "annotations", spec::INJECTED_ANNOTATION],
        Value::Text(digest),
    );
    patch.append(
        &["spec", "volumes"],
        spec.volumes.is_some(),
        vec![Value::Volume(NewVolume::new(refs, mountpoints))],
    );
    let mounts = Mount::for_refs(refs);
    for s in &selected {
        let index = s.index.to_string();
        patch.append(
            &["spec", s.field, &index, "volumeMounts"],
            s.container.volume_mounts.is_some(),
            mounts.clone(),
        );
    }
    Ok(Mutation::Patch(patch.build()))
}

fn conflict(message: String) -> Denial {
    Denial::new(DenyReason::Conflict, message)
}

/// An existing `runsecrets` volume is only trusted when it is exactly what the webhook would
/// have added for these references: a pod author can compute the digest too.
fn is_expected(volume: &Volume, refs: &[SecretRef]) -> bool {
    let Some(csi) = &volume.csi else {
        return false;
    };
    let attributes = csi.volume_attributes.clone().unwrap_or_default();
    csi.driver == spec::DRIVER_NAME
        && csi.read_only == Some(true)
        && csi.fs_type.is_none()
        && csi.node_publish_secret_ref.is_none()
        && attributes.get(spec::SECRETS_ATTRIBUTE) == Some(&spec::canonical_list(refs))
        && attributes
            .keys()
            .all(|k| k == spec::SECRETS_ATTRIBUTE || k == spec::MOUNTPOINTS_ATTRIBUTE)
}

/// Every mount of the `runsecrets` volume must be one the webhook would have made.
fn check_our_mounts(spec: &PodSpec, refs: &[SecretRef]) -> Result<(), Denial> {
    for s in all_containers(spec) {
        for m in s.container.volume_mounts.iter().flatten() {
            if m.name != spec::VOLUME_NAME {
                continue;
            }
            let main = m.mount_path == spec::MOUNT_PATH
                && m.sub_path.is_none()
                && m.sub_path_expr.is_none();
            let external = refs.iter().any(|r| {
                matches!(&r.target, Target::External(t) if *t == m.mount_path)
                    && m.sub_path.as_deref() == Some(r.target.volume_path().as_str())
            });
            if m.read_only != Some(true) || !(main || external) {
                return Err(conflict(format!(
                    "container {:?} mounts the {:?} volume at {:?} in a way runsecrets does not; remove that mount from the manifest",
                    s.container.name,
                    spec::VOLUME_NAME,
                    m.mount_path
                )));
            }
        }
    }
    Ok(())
}

/// Init containers, then containers, with their place in the spec.
fn all_containers(spec: &PodSpec) -> impl Iterator<Item = Selected<'_>> {
    let init = spec.init_containers.iter().flatten().enumerate();
    let regular = spec.containers.iter().enumerate();
    init.map(|(index, container)| Selected {
        field: "initContainers",
        index,
        container,
    })
    .chain(regular.map(|(index, container)| Selected {
        field: "containers",
        index,
        container,
    }))
}

/// Containers named by `runsecrets.io/containers`, or all of them (init containers included).
fn select<'a>(spec: &'a PodSpec, wanted: &[String]) -> Result<Vec<Selected<'a>>, Denial> {
    let all = all_containers(spec);
    if wanted.is_empty() {
        return Ok(all.collect());
    }
    let selected: Vec<_> = all.filter(|s| wanted.contains(&s.container.name)).collect();
    let unknown: Vec<(usize, &str)> = wanted
        .iter()
        .enumerate()
        .filter(|(_, w)| !selected.iter().any(|s| &s.container.name == *w))
        .map(|(i, w)| (i + 1, w.as_str()))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.name.as_str())
            .collect();
        return Err(Denial::new(
            DenyReason::InvalidAnnotation,
            format!(
                "annotation {}: {} match no container (the pod has: {})",
                spec::CONTAINERS_ANNOTATION,
                quote_list(&unknown),
                known.join(", ")
            ),
        ));
    }
    Ok(selected)
}

/// Names listed in a denial before "and N more".
const LIST_MAX: usize = 5;

/// Names from the containers annotation with their positions: each shown whole when it could
/// be a container name (as [`spec::quoted`] decides), at most [`LIST_MAX`] of them.
fn quote_list(items: &[(usize, &str)]) -> String {
    let mut out = items
        .iter()
        .take(LIST_MAX)
        .map(|&(position, name)| {
            spec::quoted(name, 63, spec::name_char)
                .unwrap_or_else(|| format!("name {position} (not a container name)"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_MAX {
        out.push_str(&format!(" and {} more", items.len() - LIST_MAX));
    }
    out
}

/// Directories the volume must hold for other mounts that land inside `/run/secrets`
/// (directly, or through `/var/run` linked to `/run` as in most images), as the
/// `runsecrets.io/mountpoints` attribute the node plugin reads. Also refuses mounts and
/// targets that cannot coexist with the secrets mount.
fn mountpoints(selected: &[Selected<'_>], refs: &[SecretRef]) -> Result<String, Denial> {
    let mut points = Mountpoints::new(refs);
    for s in selected {
        let others = s.container.volume_mounts.iter().flatten();
        for m in others.filter(|m| m.name != spec::VOLUME_NAME) {
            let path = m.mount_path.trim_end_matches('/');
            let refuse = |what: String| {
                conflict(format!(
                    "container {:?} mounts volume {:?} at {:?}, {what}",
                    s.container.name, m.name, m.mount_path
                ))
            };
            if path == spec::MOUNT_PATH || path == "/var/run/secrets" {
                return Err(refuse(format!(
                    "where runsecrets mounts the declared secrets; remove that mount or list only \
                     other containers in {}",
                    spec::CONTAINERS_ANNOTATION
                )));
            }
            let overlaps = |r: &&SecretRef| match &r.target {
                Target::External(t) => is_dir_prefix(path, t) || is_dir_prefix(t, path),
                Target::InVolume(_) => false,
            };
            if let Some(r) = refs.iter().find(overlaps) {
                return Err(refuse(format!(
                    "which overlaps the target of secret {:?}",
                    r.source
                )));
            }
            let Some(rel) = path
                .strip_prefix("/run/secrets/")
                .or_else(|| path.strip_prefix("/var/run/secrets/"))
            else {
                continue;
            };
            if rel == spec::SERVICE_ACCOUNT_DIR {
                continue;
            }
            if m.sub_path.is_some() || m.sub_path_expr.is_some() {
                return Err(refuse(
                    "a subPath mount inside the read-only secrets volume, which cannot hold its \
                     mount point; mount it elsewhere"
                        .into(),
                ));
            }
            // The same rules the node plugin reads the attribute with.
            points.add(rel).map_err(|e| {
                refuse(match e {
                    MountpointError::Invalid { source, .. } => format!(
                        "which cannot be created inside the read-only secrets volume ({source})"
                    ),
                    MountpointError::SharesDirectory { top, secret, .. } => format!(
                        "which shares the directory {top:?} with the target of secret {secret:?}"
                    ),
                    MountpointError::NotRelative { .. } => {
                        "which cannot be created inside the read-only secrets volume (an empty \
                         path component)"
                            .into()
                    }
                    MountpointError::TooMany => format!(
                        "one more than the {} mount points a runsecrets volume holds",
                        spec::MAX_MOUNTPOINTS
                    ),
                })
            })?;
        }
    }
    Ok(points.attribute())
}

/// On reinvocation, a later webhook may have added a mount under `/run/secrets` (an identity
/// token, say): the volume must then pre-create its mount point, or the container cannot start.
fn refresh_mountpoints(volume: &Volume, index: usize, wanted: String, prefix: &[&str]) -> Mutation {
    let attributes = volume
        .csi
        .as_ref()
        .and_then(|c| c.volume_attributes.as_ref());
    let current = attributes
        .and_then(|a| a.get(spec::MOUNTPOINTS_ATTRIBUTE))
        .map(String::as_str)
        .unwrap_or_default();
    if current == wanted {
        return Mutation::AlreadyInjected;
    }
    let index = index.to_string();
    let mut patch = PatchBuilder::under(prefix);
    match attributes {
        Some(_) => patch.add(
            &[
                "spec",
                "volumes",
                &index,
                "csi",
                "volumeAttributes",
                spec::MOUNTPOINTS_ATTRIBUTE,
            ],
            Value::Text(wanted),
        ),
        None => patch.add(
            &["spec", "volumes", &index, "csi", "volumeAttributes"],
            Value::Attributes(BTreeMap::from([(spec::MOUNTPOINTS_ATTRIBUTE, wanted)])),
        ),
    }
    Mutation::Patch(patch.build())
}

/// The status annotation's value: a digest of what was injected, so a reinvocation or a
/// re-applied pod is recognised without comparing specs.
fn digest(refs: &[SecretRef], containers: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(spec::canonical_list(refs).as_bytes());
    h.update(b"\ncontainers=");
    h.update(containers.join(",").as_bytes());
    format!("sha256:{}", crate::seal::hex(&h.finalize()))
}
