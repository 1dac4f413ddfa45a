//! The conversion: load the project, resolve every service's secrets and environment, seal,
//! and build the objects. Everything is built in memory first; the caller writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use super::envcreds::EnvCredentials;
use super::error::ComposeError;
use super::load::{self, display, Loader};
use super::model::{self, Definition, Project, Source};
use super::report::Report;
use super::secrets::{self, ToSeal};
use super::service::Service;
use super::workload;
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

pub(super) fn object(
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

pub(super) fn to_json<T: serde::Serialize>(
    v: &T,
    what: &str,
) -> Result<serde_json::Value, ComposeError> {
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
    if let Some(version) = tree.get("version") {
        report.warn(
            Some(&version.pos),
            "the attribute `version` is obsolete and ignored (as Docker Compose says): remove it",
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
    let mut values = secrets::Values::default();
    let mut configmaps: BTreeMap<(String, String), Object> = BTreeMap::new();
    let mut claims: BTreeMap<(String, String), Object> = BTreeMap::new();
    one_object_per_name(&project)?;
    let mut names: BTreeMap<(String, String), &Service> = BTreeMap::new();
    for svc in &project.services {
        let namespace = namespace_of(opts, &project, svc)?;
        let object_name = workload::dns_label(&svc.name);
        if let Some(other) = names.insert((namespace.clone(), object_name.clone()), svc) {
            return Err(ComposeError::at(
                &svc.pos,
                format!(
                    "services {} and {} would both be named {object_name} in namespace {namespace} (Kubernetes names are lowercase [a-z0-9-]): rename one",
                    other.name, svc.name
                ),
            ));
        }
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
                    to_seal.add(&namespace, &def.name, origin, &def.pos, || {
                        values.get(def, &env, cwd)
                    })?;
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
            let value = g.value;
            to_seal.add(&namespace, &g.secret, origin, &g.pos, || Ok(Rc::new(value)))?;
        }
        let plan = super::plan::plan(
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

/// Two Compose names that Kubernetes' name rules turn into one (`app.conf` and `app_conf`,
/// `db_data` and `db-data`) would silently share one ConfigMap or claim: the second config's
/// content or the second volume's data would be the first's. Refused, as for services.
fn one_object_per_name(project: &Project) -> Result<(), ComposeError> {
    let mut configmaps: BTreeMap<String, &Definition> = BTreeMap::new();
    for def in project.configs.values() {
        if matches!(def.source, Source::External(_)) {
            continue;
        }
        let name = workload::dns_label(&def.key);
        if let Some(other) = configmaps.insert(name.clone(), def) {
            return Err(ComposeError::at(
                &def.pos,
                format!(
                    "configs {} and {} would both be ConfigMap {name} (Kubernetes names are lowercase [a-z0-9-]): rename one",
                    other.key, def.key
                ),
            ));
        }
    }
    let mut claims: BTreeMap<String, &str> = BTreeMap::new();
    for volume in &project.volumes {
        let name = workload::dns_label(volume);
        if let Some(other) = claims.insert(name.clone(), volume) {
            return Err(ComposeError::Input(format!(
                "volumes {other} and {volume} would both be PersistentVolumeClaim {name} (Kubernetes names are lowercase [a-z0-9-]): rename one"
            )));
        }
    }
    Ok(())
}
