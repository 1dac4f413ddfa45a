//! Kubernetes objects for a service, built as k8s-openapi types so they are valid by
//! construction: the workload (Deployment, DaemonSet for `deploy.mode: global`, or what
//! `x-runsecrets.controller` asks for), a ClusterIP Service for its ports, and the volumes of
//! its configs and named volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction,
    KeyToPath, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SecurityContext, Service as KubeService, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::Controller;
use super::secrets::numeric_user;
use super::service::{Health, Service};

/// A DNS-1123 label for a Compose name: lowercase, `[a-z0-9-]`, starting with a letter,
/// at most 63 characters.
pub fn dns_label(name: &str) -> String {
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("x-{out}");
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

/// Kubernetes expands `$(VAR)` in env values, command and args and turns `$$` into `$`;
/// Compose values are final, so every `$` is doubled to reach the container unchanged.
pub fn escape_dollars(s: &str) -> String {
    s.replace('$', "$$")
}

fn escape_all(words: &Option<Vec<String>>) -> Option<Vec<String>> {
    words
        .as_ref()
        .map(|w| w.iter().map(|s| escape_dollars(s)).collect())
}

/// A config file mounted in the container.
pub struct ConfigMount {
    pub configmap: String,
    pub key: String,
    pub target: String,
    pub mode: u32,
}

/// Everything the pod of one service is made of, decided by the converter.
pub struct PodPlan<'a> {
    pub svc: &'a Service,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub configs: Vec<ConfigMount>,
    /// (claim name, mount path, read-only).
    pub claims: Vec<(String, String, bool)>,
    /// (mount path, in memory): `emptyDir`s for tmpfs and anonymous volumes.
    pub scratch: Vec<(String, bool)>,
    pub controller: Controller,
}

fn probe(h: &Health) -> Option<Probe> {
    let command = h.test.clone().filter(|t| !t.is_empty())?;
    Some(Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: h.interval,
        timeout_seconds: h.timeout,
        initial_delay_seconds: h.start_period,
        failure_threshold: h.retries,
        ..Probe::default()
    })
}

fn pod_spec(p: &PodPlan<'_>) -> PodSpec {
    let svc = p.svc;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, c) in p.configs.iter().enumerate() {
        let volume = format!("config-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: c.configmap.clone(),
                items: Some(vec![KeyToPath {
                    key: c.key.clone(),
                    path: c.key.clone(),
                    mode: i32::try_from(c.mode).ok(),
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: c.target.clone(),
            sub_path: Some(c.key.clone()),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    for (i, (claim, target, read_only)) in p.claims.iter().enumerate() {
        let volume = format!("data-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: read_only.then_some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: target.clone(),
            read_only: read_only.then_some(true),
            ..VolumeMount::default()
        });
    }
    for (i, (target, memory)) in p.scratch.iter().enumerate() {
        let volume = format!("scratch-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: memory.then(|| "Memory".to_string()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: target.clone(),
            ..VolumeMount::default()
        });
    }
    let mut ports: Vec<ContainerPort> = Vec::new();
    for port in &svc.ports {
        let protocol = if port.udp { "UDP" } else { "TCP" };
        let exists = ports.iter().any(|c| {
            c.container_port == i32::from(port.target) && c.protocol.as_deref() == Some(protocol)
        });
        if !exists {
            ports.push(ContainerPort {
                container_port: i32::from(port.target),
                protocol: Some(protocol.into()),
                ..ContainerPort::default()
            });
        }
    }
    let owner = svc.user.as_ref().and_then(|(u, _)| numeric_user(u));
    let container = Container {
        name: p.name.clone(),
        image: Some(p.image.clone()),
        command: escape_all(&svc.entrypoint),
        args: escape_all(&svc.command),
        working_dir: svc.working_dir.clone(),
        env: (!p.env.is_empty()).then(|| {
            p.env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(escape_dollars(value)),
                    ..EnvVar::default()
                })
                .collect()
        }),
        ports: (!ports.is_empty()).then_some(ports),
        readiness_probe: svc.healthcheck.as_ref().and_then(probe),
        security_context: owner.map(|(uid, gid)| SecurityContext {
            run_as_user: Some(i64::from(uid)),
            run_as_group: gid.map(i64::from),
            ..SecurityContext::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        restart_policy: (p.controller == Controller::Job).then(|| "OnFailure".to_string()),
        termination_grace_period_seconds: svc.grace_period,
        security_context: None::<PodSecurityContext>,
        ..PodSpec::default()
    }
}

fn meta(p: &PodPlan<'_>) -> ObjectMeta {
    ObjectMeta {
        name: Some(p.name.clone()),
        namespace: Some(p.namespace.clone()),
        labels: Some(p.labels.clone()),
        ..ObjectMeta::default()
    }
}

/// The workload object as YAML-ready JSON.
pub fn workload(p: &PodPlan<'_>) -> Result<(&'static str, serde_json::Value), serde_json::Error> {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(p.labels.clone()),
            annotations: (!p.annotations.is_empty()).then(|| p.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(p)),
    };
    let selector = LabelSelector {
        match_labels: Some(p.labels.clone()),
        ..LabelSelector::default()
    };
    let replicas = p.svc.replicas;
    Ok(match p.controller {
        Controller::Deployment => (
            "Deployment",
            serde_json::to_value(Deployment {
                metadata: meta(p),
                spec: Some(DeploymentSpec {
                    replicas,
                    selector,
                    template,
                    // A ReadWriteOnce claim attaches to one node: a rolling update's new pod
                    // could wait forever for the old one's volume, so the old pod goes first.
                    strategy: (!p.claims.is_empty()).then(|| DeploymentStrategy {
                        type_: Some("Recreate".into()),
                        ..DeploymentStrategy::default()
                    }),
                    ..DeploymentSpec::default()
                }),
                ..Deployment::default()
            })?,
        ),
        Controller::StatefulSet => (
            "StatefulSet",
            serde_json::to_value(StatefulSet {
                metadata: meta(p),
                spec: Some(StatefulSetSpec {
                    replicas,
                    selector,
                    template,
                    service_name: Some(p.name.clone()),
                    ..StatefulSetSpec::default()
                }),
                ..StatefulSet::default()
            })?,
        ),
        Controller::DaemonSet => (
            "DaemonSet",
            serde_json::to_value(DaemonSet {
                metadata: meta(p),
                spec: Some(DaemonSetSpec {
                    selector,
                    template,
                    ..DaemonSetSpec::default()
                }),
                ..DaemonSet::default()
            })?,
        ),
        Controller::Job => (
            "Job",
            serde_json::to_value(Job {
                metadata: meta(p),
                spec: Some(JobSpec {
                    template,
                    ..JobSpec::default()
                }),
                ..Job::default()
            })?,
        ),
    })
}

/// A ClusterIP Service on the container ports, named after the service so other services
/// reach it by the same host name as on the Compose network; None without ports.
pub fn service(p: &PodPlan<'_>) -> Result<Option<serde_json::Value>, serde_json::Error> {
    let mut ports: Vec<ServicePort> = Vec::new();
    for port in &p.svc.ports {
        let protocol = if port.udp { "UDP" } else { "TCP" };
        if ports
            .iter()
            .any(|s| s.port == i32::from(port.target) && s.protocol.as_deref() == Some(protocol))
        {
            continue;
        }
        ports.push(ServicePort {
            name: Some(format!("{}-{}", protocol.to_ascii_lowercase(), port.target)),
            port: i32::from(port.target),
            target_port: Some(IntOrString::Int(i32::from(port.target))),
            protocol: Some(protocol.into()),
            ..ServicePort::default()
        });
    }
    if ports.is_empty() {
        return Ok(None);
    }
    serde_json::to_value(KubeService {
        metadata: meta(p),
        spec: Some(ServiceSpec {
            selector: Some(p.labels.clone()),
            ports: Some(ports),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..KubeService::default()
    })
    .map(Some)
}
