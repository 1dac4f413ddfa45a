//! The conversion: load the project, resolve every service's secrets and environment, seal,
//! and build the objects. Everything is built in memory first; the caller writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

pub use super::envcreds::EnvCredentials;
use super::error::ComposeError;
use super::load::{self, display, Loader};
use super::model::{self, Controller, Project, Source};
use super::report::Report;
use super::secrets::{self, SealItem, ToSeal};
use super::service::{Mount, Service};
use super::workload::{self, dns_label, ConfigMount, PodPlan};
use super::yaml::shorten;
use super::{envcreds, Environment};
use crate::seal::PublicKeys;
use crate::spec::{self, SecretRef, Target};
use crate::store::{self, StoreError};

/// What `compose convert` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    pub project_name: Option<String>,
    pub namespace: Option<String>,
    pub env_credentials: EnvCredentials,
    /// The process environment (it wins over `.env`).
    pub os_env: Environment,
    /// Where relative paths given on the command line start.
    pub cwd: PathBuf,
}

/// One generated object, printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub yaml: String,
}

#[derive(Debug)]
pub struct Conversion {
    pub objects: Vec<Object>,
    pub report: Report,
}

/// Size of the claim made for each named volume (Compose volumes have no size).
const CLAIM_SIZE: &str = "1Gi";

fn object(
    kind: &str,
    value: &serde_json::Value,
    namespace: &str,
    name: &str,
) -> Result<Object, ComposeError> {
    let yaml = serde_norway::to_string(value).map_err(|source| ComposeError::Print {
        what: format!("{kind} {name}"),
        source,
    })?;
    Ok(Object {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        yaml,
    })
}

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<serde_json::Value, ComposeError> {
    serde_json::to_value(v).map_err(|_| ComposeError::Input(format!("cannot print {what}")))
}

fn namespace_of(opts: &Options, project: &Project, svc: &Service) -> Result<String, ComposeError> {
    let (ns, pos) = match (
        &svc.hints.namespace,
        &opts.namespace,
        &project.hints.namespace,
    ) {
        (Some((ns, pos)), _, _) => (ns.clone(), Some(pos)),
        (None, Some(ns), _) => (ns.clone(), None),
        (None, None, Some((ns, pos))) => (ns.clone(), Some(pos)),
        (None, None, None) => ("default".to_string(), None),
    };
    store::check_namespace(&ns).map_err(|e| match pos {
        Some(p) => ComposeError::at(p, e.to_string()),
        None => ComposeError::Input(e.to_string()),
    })?;
    Ok(ns)
}

/// Converts the project `opts` describes; `keys` is asked for the sealing keys only when
/// there is something to seal.
pub fn convert(
    opts: &Options,
    keys: &dyn Fn() -> Result<PublicKeys, StoreError>,
) -> Result<Conversion, ComposeError> {
    let cwd = opts.cwd.as_path();
    let mut report = Report::default();
    let files: Vec<PathBuf> = if opts.files.is_empty() {
        let (files, warnings) = load::discover(cwd)?;
        for w in warnings {
            report.warn(None, w);
        }
        files
    } else {
        opts.files
            .iter()
            .map(|f| super::paths::normalise(&cwd.join(f)))
            .collect()
    };
    for f in &files {
        if !f.is_file() {
            return Err(ComposeError::Input(format!(
                "Compose file {} does not exist",
                display(f, cwd)
            )));
        }
    }
    let project_dir = match &opts.project_directory {
        Some(d) => cwd.join(d),
        None => files
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.to_path_buf()),
    };
    let env_files: Vec<PathBuf> = opts.env_files.iter().map(|f| cwd.join(f)).collect();
    let env = load::environment(&project_dir, &env_files, &opts.os_env, cwd)?;
    let mut loader = Loader::new(cwd);
    let tree = loader.load(&files, &project_dir, &env)?;
    for name in &loader.notes.unset {
        report.warn(
            None,
            format!("variable {name} is not set: it became an empty string"),
        );
    }
    let from_tree = tree
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let raw_name = opts
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").map(str::to_string))
        .or(from_tree)
        .or_else(|| {
            project_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let name = model::normalise_project_name(&raw_name);
    if name.is_empty() {
        return Err(ComposeError::Input(
            "the project has no usable name: pass -p NAME".into(),
        ));
    }
    let profiles: Vec<String> = if opts.profiles.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        opts.profiles.clone()
    };
    let project = model::project(&tree, name, &profiles)?;
    report.project = project.name.clone();
    report.files = files.iter().map(|f| display(f, cwd)).collect();
    report.unmapped = project.unmapped.clone();
    if !project.disabled.is_empty() {
        report.warn(
            None,
            format!(
                "services not enabled by the active profiles (skipped): {}",
                project.disabled.join(", ")
            ),
        );
    }
    let mut objects: Vec<(u8, Object)> = Vec::new();
    let mut to_seal = ToSeal::default();
    let mut configmaps: BTreeMap<(String, String), Object> = BTreeMap::new();
    let mut claims: BTreeMap<(String, String), Object> = BTreeMap::new();
    for svc in &project.services {
        let namespace = namespace_of(opts, &project, svc)?;
        let (mut refs, used) = secrets::references(&project, svc, &mut report)?;
        for def in used {
            match &def.source {
                Source::External(secret) => {
                    report
                        .must_exist
                        .entry(format!("{namespace}/{secret}"))
                        .or_default()
                        .insert(svc.name.clone());
                }
                source => {
                    let origin = match source {
                        Source::File(p) => format!("file {}", display(p, cwd)),
                        Source::Environment(v) => format!("environment variable {v}"),
                        _ => "inline content".into(),
                    };
                    to_seal.add(
                        &namespace,
                        &def.name,
                        SealItem {
                            data: secrets::value(def, &env, cwd)?,
                            origin,
                            pos: def.pos.clone(),
                        },
                    )?;
                }
            }
        }
        let service_env = envcreds::service_env(svc, &env, opts.env_credentials, cwd, &mut report)?;
        // Generated secrets get the service's numeric user as owner, as declared ones do.
        let owner = svc
            .user
            .as_ref()
            .and_then(|(u, _)| secrets::numeric_user(u));
        for g in service_env.generated {
            let entry = SecretRef {
                source: g.secret.clone(),
                target: Target::parse(&g.secret)
                    .map_err(|e| ComposeError::at(&g.pos, e.to_string()))?,
                uid: owner.map(|(u, _)| u).unwrap_or(0),
                gid: owner.and_then(|(_, g)| g).unwrap_or(0),
                mode: spec::DEFAULT_MODE,
            };
            secrets::push(&mut refs, entry, &g.pos)?;
            let origin = format!("environment {} of service {}", g.variable, svc.name);
            to_seal.add(
                &namespace,
                &g.secret,
                SealItem {
                    data: g.value,
                    origin,
                    pos: g.pos,
                },
            )?;
        }
        let plan = plan(
            &project,
            svc,
            namespace,
            &refs,
            service_env.plain,
            &mut configmaps,
            &mut claims,
            &mut report,
            &env,
            cwd,
        )?;
        let (kind, value) = workload::workload(&plan)
            .map_err(|_| ComposeError::Input("cannot print a workload".into()))?;
        objects.push((3, object(kind, &value, &plan.namespace, &plan.name)?));
        if let Some(service) = workload::service(&plan)
            .map_err(|_| ComposeError::Input("cannot print a Service".into()))?
        {
            objects.push((4, object("Service", &service, &plan.namespace, &plan.name)?));
        }
    }
    objects.extend(configmaps.into_values().map(|o| (1, o)));
    objects.extend(claims.into_values().map(|o| (2, o)));
    if !to_seal.items.is_empty() {
        let keys = keys().map_err(ComposeError::Keys)?;
        for ((namespace, name), item) in &to_seal.items {
            let labels = BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                project.name.clone(),
            )]);
            let resource = crate::secrets::sealed_resource(
                &keys,
                namespace,
                name,
                &item.data,
                labels,
                Vec::new(),
            )
            .map_err(|source| ComposeError::Seal {
                name: name.clone(),
                namespace: namespace.clone(),
                source,
            })?;
            report
                .sealed
                .push(format!("{namespace}/{name} (from {})", item.origin));
            objects.push((
                0,
                object(
                    "RunSecret",
                    &to_json(&resource, "a RunSecret")?,
                    namespace,
                    &store::object_name(name),
                )?,
            ));
        }
    }
    objects.sort_by(|a, b| (a.0, &a.1.namespace, &a.1.name).cmp(&(b.0, &b.1.namespace, &b.1.name)));
    report.objects = objects.len();
    Ok(Conversion {
        objects: objects.into_iter().map(|(_, o)| o).collect(),
        report,
    })
}

#[allow(clippy::too_many_arguments)]
fn plan<'a>(
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
    let image = match &svc.image {
        Some(i) => i.clone(),
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
    let mut tmpfs = Vec::new();
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
                if !claims.contains_key(&key) {
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
                    claims.insert(
                        key,
                        object(
                            "PersistentVolumeClaim",
                            &to_json(&pvc, "a PersistentVolumeClaim")?,
                            &namespace,
                            &claim,
                        )?,
                    );
                }
            }
            Mount::Tmpfs { target } => tmpfs.push(target.clone()),
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
        tmpfs,
        controller,
    })
}
