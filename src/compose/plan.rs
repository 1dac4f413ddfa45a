//! The pod of one service: image, user, ports, configs mounted from ConfigMaps and named
//! volumes as PersistentVolumeClaims; what does not map is reported.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::convert::{object, to_json, Object};
use super::error::ComposeError;
use super::load::display;
use super::model::{Controller, Project, Source};
use super::report::Report;
use super::secrets;
use super::service::{Mount, Service};
use super::workload::{dns_label, ConfigMount, PodPlan};
use super::yaml::shorten;
use super::Environment;
use crate::spec;

/// Size of the claim made for each named volume (Compose volumes have no size).
const CLAIM_SIZE: &str = "1Gi";

/// Whether another service connects to `name`: lists it in `depends_on` or has it as the host
/// of an environment value (`db:3306`, `postgres://u@db/x`, `db`).
fn connected_to(project: &Project, name: &str) -> bool {
    let host_in = |value: &str| {
        let rest = value.rsplit("//").next().unwrap_or(value);
        let rest = rest.rsplit('@').next().unwrap_or(rest);
        let host = rest.split([':', '/', '?']).next().unwrap_or(rest);
        host == name
    };
    project.services.iter().filter(|s| s.name != name).any(|s| {
        s.depends_on.iter().any(|d| d == name)
            || s.environment
                .iter()
                .any(|e| e.value.as_deref().is_some_and(host_in))
    })
}

#[allow(clippy::too_many_arguments)]
pub fn plan<'a>(
    project: &Project,
    svc: &'a Service,
    namespace: String,
    refs: &[secrets::Reference],
    env_vars: Vec<(String, String)>,
    configmaps: &mut BTreeMap<(String, String), Object>,
    claims: &mut BTreeMap<(String, String), Object>,
    report: &mut Report,
    env: &Environment,
    cwd: &Path,
) -> Result<PodPlan<'a>, ComposeError> {
    let name = dns_label(&svc.name);
    if name != svc.name {
        report.warn(Some(&svc.pos), format!("service {} is named {name} in the cluster (Kubernetes names are lowercase [a-z0-9-]); other services must connect to {name}", shorten(&svc.name)));
    }
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.clone()),
        (
            "app.kubernetes.io/part-of".to_string(),
            project.name.clone(),
        ),
    ]);
    let mut annotations = project.hints.annotations.clone();
    annotations.extend(svc.hints.annotations.clone());
    if annotations.keys().any(|k| k.starts_with("runsecrets.io/")) {
        return Err(ComposeError::at(&svc.pos, "x-runsecrets.annotations must not set runsecrets.io/ annotations: declare secrets with secrets:"));
    }
    if !refs.is_empty() {
        annotations.insert(
            spec::SECRETS_ANNOTATION.to_string(),
            secrets::annotation(refs, &svc.pos)?,
        );
    }
    let image = match svc.image.as_deref().filter(|i| !i.is_empty()) {
        Some(i) => i.to_string(),
        None => {
            let built = format!("{}-{}", project.name, svc.name);
            if svc.has_build {
                report.warn(Some(&svc.pos), format!("service {} is built, not pulled: the image is named {built}, as Compose names it; push it where the cluster can pull it (or set image:)", svc.name));
            } else {
                return Err(ComposeError::at(
                    &svc.pos,
                    format!("service {} has no image: set image:", svc.name),
                ));
            }
            built
        }
    };
    if let Some((user, pos)) = &svc.user {
        if secrets::numeric_user(user).is_none() {
            report.warn(Some(pos), "user: is not numeric (UID[:GID]), so it is not set in the pod: the image's default user runs");
        }
    }
    for port in &svc.ports {
        if let Some(p) = &port.published {
            report.warn(Some(&port.pos), format!("published port {p} is not exposed outside the cluster: the Service {name} listens on {} (use kubectl port-forward or an Ingress)", port.target));
        }
    }
    if svc.ports.is_empty() && connected_to(project, &svc.name) {
        report.warn(Some(&svc.pos), format!("service {} has no ports: or expose:, so no Service is made and other services cannot reach it as {name} (Compose's network lets them); add expose: [PORT] if they connect to it", shorten(&svc.name)));
    }
    let mut configs = Vec::new();
    for c in &svc.configs {
        let def = project.configs.get(&c.source).ok_or_else(|| ComposeError::at(&c.pos, format!("service {} uses config {:?}, which the top-level configs: section does not define", svc.name, shorten(&c.source))))?;
        let cm_name = match &def.source {
            Source::External(n) => {
                report.warn(Some(&c.pos), format!("config {} is external: the ConfigMap {} must exist in {namespace} with the key content", def.key, dns_label(n)));
                dns_label(n)
            }
            _ => dns_label(&def.key),
        };
        if c.uid.is_some() || c.gid.is_some() {
            report.warn(Some(&c.pos), "config uid/gid cannot be set on a ConfigMap file (it is owned by root); set fsGroup if the process needs group access");
        }
        let target = c.target.clone().unwrap_or_else(|| format!("/{}", def.key));
        let target = if target.starts_with('/') {
            target
        } else {
            format!("/{target}")
        };
        configs.push(ConfigMount {
            configmap: cm_name.clone(),
            key: "content".into(),
            target,
            mode: c.mode.map(|m| m.bits).unwrap_or(0o444),
        });
        let key = (namespace.clone(), cm_name.clone());
        if configmaps.contains_key(&key) || matches!(def.source, Source::External(_)) {
            continue;
        }
        let bytes = match &def.source {
            Source::File(p) => std::fs::read(p).map_err(|source| ComposeError::ReadAt {
                pos: def.pos.clone(),
                what: format!(
                    "config {}: cannot read file {}",
                    shorten(&def.key),
                    display(p, cwd)
                ),
                source,
            })?,
            Source::Environment(v) => {
                env.get(v).map(|s| s.as_bytes().to_vec()).ok_or_else(|| {
                    ComposeError::at(
                        &def.pos,
                        format!(
                            "config {}: environment variable {v} is not set",
                            shorten(&def.key)
                        ),
                    )
                })?
            }
            Source::Content(t) => t.as_bytes().to_vec(),
            Source::External(_) => Vec::new(),
        };
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/part-of".to_string(),
                    project.name.clone(),
                )])),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        match String::from_utf8(bytes) {
            Ok(text) => cm.data = Some(BTreeMap::from([("content".to_string(), text)])),
            Err(e) => {
                cm.binary_data = Some(BTreeMap::from([(
                    "content".to_string(),
                    ByteString(e.into_bytes()),
                )]))
            }
        }
        configmaps.insert(
            key,
            object(
                "ConfigMap",
                &to_json(&cm, "a ConfigMap")?,
                &namespace,
                &cm_name,
            )?,
        );
    }
    let mut claim_mounts = Vec::new();
    let mut scratch = Vec::new();
    for m in &svc.mounts {
        match m {
            Mount::Volume {
                name: vol,
                target,
                read_only,
                pos,
            } => {
                if !project.volumes.contains(vol) {
                    return Err(ComposeError::at(pos, format!("service {} mounts volume {:?}, which the top-level volumes: section does not define", svc.name, shorten(vol))));
                }
                let claim = dns_label(vol);
                claim_mounts.push((claim.clone(), target.clone(), *read_only));
                let key = (namespace.clone(), claim.clone());
                if let std::collections::btree_map::Entry::Vacant(slot) = claims.entry(key) {
                    report.warn(Some(pos), format!("volume {vol} becomes PersistentVolumeClaim {claim} ({CLAIM_SIZE}, ReadWriteOnce, the default storage class)"));
                    let pvc = PersistentVolumeClaim {
                        metadata: ObjectMeta {
                            name: Some(claim.clone()),
                            namespace: Some(namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/part-of".to_string(),
                                project.name.clone(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        spec: Some(PersistentVolumeClaimSpec {
                            access_modes: Some(vec!["ReadWriteOnce".into()]),
                            resources: Some(VolumeResourceRequirements {
                                requests: Some(BTreeMap::from([(
                                    "storage".to_string(),
                                    Quantity(CLAIM_SIZE.into()),
                                )])),
                                ..VolumeResourceRequirements::default()
                            }),
                            ..PersistentVolumeClaimSpec::default()
                        }),
                        ..PersistentVolumeClaim::default()
                    };
                    slot.insert(object(
                        "PersistentVolumeClaim",
                        &to_json(&pvc, "a PersistentVolumeClaim")?,
                        &namespace,
                        &claim,
                    )?);
                }
            }
            Mount::Scratch { target, memory } => scratch.push((target.clone(), *memory)),
            Mount::Bind { pos } => report
                .unmapped
                .entry("volumes (bind mounts of host paths)".into())
                .or_default()
                .push(pos.clone()),
        }
    }
    let controller = svc
        .hints
        .controller
        .or(project.hints.controller)
        .unwrap_or(if svc.global {
            Controller::DaemonSet
        } else {
            Controller::Deployment
        });
    Ok(PodPlan {
        svc,
        name,
        namespace,
        labels,
        annotations,
        image,
        env: env_vars,
        configs,
        claims: claim_mounts,
        scratch,
        controller,
    })
}
