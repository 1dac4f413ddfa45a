//! The mutation: a pure function from a pod's annotations and spec to a JSON patch that adds
//! the `runsecrets.io` CSI volume and its read-only mounts, or to a denial that says what to fix.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::patch::PatchBuilder;
use super::{Denial, DenyReason};
use crate::spec::{self, SecretRef, Target};

/// What the webhook does with one pod.
#[derive(Debug)]
pub enum Mutation {
    /// The pod declares no secrets.
    NotRequested,
    /// The pod already carries the injection for exactly these references.
    AlreadyInjected,
    /// Apply this patch.
    Patch(json_patch::Patch),
}

/// A container the mount goes into, with its place in the spec.
struct Selected<'a> {
    field: &'static str,
    index: usize,
    container: &'a Container,
}

/// Computes the mutation for a pod template. `prefix` locates the template in the object
/// (empty for a Pod) so workloads can be previewed offline with the same code.
pub fn mutate(
    annotations: Option<&BTreeMap<String, String>>,
    spec: &PodSpec,
    prefix: &[&str],
) -> Result<Mutation, Denial> {
    let Some(declared) = annotations.and_then(|a| a.get(spec::SECRETS_ANNOTATION)) else {
        return Ok(Mutation::NotRequested);
    };
    let refs = spec::parse_secrets(declared).map_err(|e| {
        Denial::new(
            DenyReason::InvalidAnnotation,
            format!("annotation {}: {e}", spec::SECRETS_ANNOTATION),
        )
    })?;
    let wanted = annotations
        .and_then(|a| a.get(spec::CONTAINERS_ANNOTATION))
        .map(|v| spec::parse_containers(v))
        .unwrap_or_default();
    let selected = select(spec, &wanted)?;
    let digest = digest(&refs, &wanted);
    let mountpoints = mountpoints(&selected, &refs)?;

    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let existing = volumes.iter().position(|v| v.name == spec::VOLUME_NAME);
    let injected = annotations.and_then(|a| a.get(spec::INJECTED_ANNOTATION));
    if let Some(index) = existing {
        if injected != Some(&digest) || !is_ours(&volumes[index]) {
            return Err(Denial::new(
                DenyReason::Conflict,
                format!(
                    "the pod already has a volume named {:?}; runsecrets adds that volume itself \
                     (remove it, and any {} annotation, from the manifest)",
                    spec::VOLUME_NAME,
                    spec::INJECTED_ANNOTATION
                ),
            ));
        }
        return Ok(refresh_mountpoints(
            &volumes[index],
            index,
            &mountpoints,
            prefix,
        ));
    }

    let mut patch = PatchBuilder::under(prefix);
    patch.add(
        &["metadata", "annotations", spec::INJECTED_ANNOTATION],
        Value::String(digest),
    );
    patch.append(
        &["spec", "volumes"],
        spec.volumes.is_some(),
        vec![volume(&refs, &mountpoints)],
    );
    let mounts = mounts(&refs);
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

fn is_ours(volume: &Volume) -> bool {
    volume
        .csi
        .as_ref()
        .is_some_and(|csi| csi.driver == spec::DRIVER_NAME)
}

/// Containers named by `runsecrets.io/containers`, or all of them (init containers included).
fn select<'a>(spec: &'a PodSpec, wanted: &[String]) -> Result<Vec<Selected<'a>>, Denial> {
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, container)| Selected {
            field: "initContainers",
            index,
            container,
        })
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(index, container)| Selected {
                    field: "containers",
                    index,
                    container,
                }),
        );
    if wanted.is_empty() {
        return Ok(all.collect());
    }
    let selected: Vec<_> = all.filter(|s| wanted.contains(&s.container.name)).collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|w| !selected.iter().any(|s| &s.container.name == *w))
        .map(String::as_str)
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

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Directories the volume must hold for other mounts that land inside `/run/secrets`
/// (directly, or through `/var/run` linked to `/run` as in most images). Also refuses
/// mounts and targets that cannot coexist with the secrets mount.
fn mountpoints(selected: &[Selected<'_>], refs: &[SecretRef]) -> Result<Vec<String>, Denial> {
    let mut points = BTreeSet::new();
    for s in selected {
        let others = s.container.volume_mounts.iter().flatten();
        for m in others.filter(|m| m.name != spec::VOLUME_NAME) {
            let path = m.mount_path.trim_end_matches('/');
            let conflict = |what: String| {
                Denial::new(
                    DenyReason::Conflict,
                    format!(
                        "container {:?} mounts volume {:?} at {:?}, {what}",
                        s.container.name, m.name, m.mount_path
                    ),
                )
            };
            if path == spec::MOUNT_PATH || path == "/var/run/secrets" {
                return Err(conflict(format!(
                    "where runsecrets mounts the declared secrets; remove that mount or list only \
                     other containers in {}",
                    spec::CONTAINERS_ANNOTATION
                )));
            }
            if let Some(r) = refs
                .iter()
                .find(|r| matches!(&r.target, Target::External(t) if t == path))
            {
                return Err(conflict(format!(
                    "which is also the target of secret {:?}",
                    r.source
                )));
            }
            let Some(rel) = path
                .strip_prefix("/run/secrets/")
                .or_else(|| path.strip_prefix("/var/run/secrets/"))
            else {
                continue;
            };
            let under = Target::InVolume(rel.to_string());
            if let Some(r) = refs
                .iter()
                .find(|r| r.target.conflict_with(&under).is_some())
            {
                return Err(conflict(format!(
                    "which collides with the target of secret {:?}",
                    r.source
                )));
            }
            if rel.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
                return Err(conflict(
                    "which cannot be created inside the read-only secrets volume".into(),
                ));
            }
            if rel != spec::SERVICE_ACCOUNT_DIR {
                points.insert(rel.to_string());
            }
        }
    }
    Ok(points.into_iter().collect())
}

fn volume(refs: &[SecretRef], mountpoints: &[String]) -> Value {
    let mut attributes = Map::new();
    attributes.insert(
        spec::SECRETS_ATTRIBUTE.into(),
        spec::canonical_list(refs).into(),
    );
    if !mountpoints.is_empty() {
        attributes.insert(
            spec::MOUNTPOINTS_ATTRIBUTE.into(),
            mountpoints.join("\n").into(),
        );
    }
    json!({
        "name": spec::VOLUME_NAME,
        "csi": {"driver": spec::DRIVER_NAME, "readOnly": true, "volumeAttributes": attributes},
    })
}

fn mounts(refs: &[SecretRef]) -> Vec<Value> {
    let main = json!({"name": spec::VOLUME_NAME, "mountPath": spec::MOUNT_PATH, "readOnly": true});
    let external = refs.iter().filter_map(|r| match &r.target {
        Target::External(path) => Some(json!({
            "name": spec::VOLUME_NAME,
            "mountPath": path,
            "subPath": r.target.volume_path(),
            "readOnly": true,
        })),
        Target::InVolume(_) => None,
    });
    std::iter::once(main).chain(external).collect()
}

/// On reinvocation, a later webhook may have added a mount under `/run/secrets` (an identity
/// token, say): the volume must then pre-create its mount point, or the container cannot start.
fn refresh_mountpoints(
    volume: &Volume,
    index: usize,
    mountpoints: &[String],
    prefix: &[&str],
) -> Mutation {
    let wanted = mountpoints.join("\n");
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
            Value::String(wanted),
        ),
        None => patch.add(
            &["spec", "volumes", &index, "csi", "volumeAttributes"],
            json!({ spec::MOUNTPOINTS_ATTRIBUTE: wanted }),
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in h.finalize() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}
