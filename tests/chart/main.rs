//! The Helm chart (charts/runsecrets) and manifests/, checked with real Helm.
//!
//! tests/helm/render.py lints and renders the chart with Helm's own Go SDK (PyPI
//! `helm-python-sdk`, pinned in tests/helm/requirements.txt). This file makes the virtualenv it
//! runs in (once, under CARGO_TARGET_TMPDIR; needs python3 with venv and pip, and PyPI), renders
//! each values set once, and checks the objects against the binary: its command line, its
//! routes, its CSI driver name and the API calls it makes.
//!
//! Every test is ignored by plain `cargo test` (it needs PyPI); `--include-ignored` runs them,
//! as `.ci/run` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount, Volume,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use runsecrets::cli::{Cli, Command as Sub};
use runsecrets::policy::{Level, Mode};
use runsecrets::spec::{DRIVER_NAME, SECRETS_ANNOTATION};

mod node;
mod rbac;
mod render;
mod server;
mod tls;
mod webhooks;

// ---------------------------------------------------------------------------------------------
// Rendering

/// The values sets the tests look at; each is rendered once per test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    /// Default values (tls.mode=server), release `runsecrets` in namespace `runsecrets`.
    Default,
    /// tls.mode=helm: Helm generates the CA and the certificate.
    Helm,
    /// tls.mode=secret, release `rs` in namespace `secrets-system`: names and exclusions must
    /// follow the release, not a hard-coded `runsecrets`.
    Secret,
    /// tls.mode=certManager.
    CertManager,
    /// Non-default policy, placement and CA Secret name values (tls.mode=server).
    Tuned,
    /// What `--manifests` renders for manifests/runsecrets.yaml.
    Manifests,
}

const SETS: [Set; 6] = [
    Set::Default,
    Set::Helm,
    Set::Secret,
    Set::CertManager,
    Set::Tuned,
    Set::Manifests,
];

impl Set {
    fn release(self) -> &'static str {
        match self {
            Set::Secret => "rs",
            _ => "runsecrets",
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Set::Secret => "secrets-system",
            _ => "runsecrets",
        }
    }

    fn args(self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--release".into(),
            self.release().into(),
            "--namespace".into(),
            self.namespace().into(),
        ];
        let extra: Vec<String> = match self {
            Set::Default => vec![],
            Set::Helm => vec!["--tls-mode".into(), "helm".into()],
            Set::Secret => vec![
                "--tls-mode".into(),
                "secret".into(),
                "--set".into(),
                "tls.existingSecret=my-serving-cert".into(),
                "--set".into(),
                format!("tls.caBundle={}", fake_ca().1),
            ],
            Set::CertManager => vec!["--tls-mode".into(), "certManager".into()],
            Set::Tuned => vec![
                "--set-json".into(),
                r#"policy={"defaults":{"enforce":"strict","warn":"off","audit":"baseline"},"failurePolicy":"Fail"}"#.into(),
                "--set".into(),
                "server.replicas=1,node.kubeletDir=/var/lib/k0s/kubelet".into(),
                "--set-json".into(),
                r#"webhook={"excludeNamespaces":["cert-manager"]}"#.into(),
                "--set".into(),
                "tls.server.caSecret=my-runsecrets-ca".into(),
            ],
            Set::Manifests => return vec!["--manifests".into()],
        };
        args.extend(extra);
        args
    }
}

/// A CA certificate for secret mode: (PEM, base64 of the PEM).
fn fake_ca() -> &'static (String, String) {
    static CA: OnceLock<(String, String)> = OnceLock::new();
    CA.get_or_init(|| {
        use base64::Engine;
        let ca = rcgen::generate_simple_self_signed(vec!["example-ca".to_string()])
            .expect("self-signed CA");
        let pem = ca.cert.pem();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
        (pem, b64)
    })
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv's python, with tests/helm/requirements.txt installed. Built beside its final
/// place and renamed into it, so a concurrent run never uses a half-made one; a marker file
/// holding the requirements says it is complete (render.py uses the same place and marker).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
        let requirements = repo().join("tests/helm/requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).expect("tests/helm/requirements.txt");
        let marker = ".runsecrets-requirements";
        let python = venv.join("bin/python");
        if std::fs::read_to_string(venv.join(marker)).ok().as_deref() == Some(wanted.as_str())
            && python.exists()
        {
            return python;
        }
        let staging = venv.with_file_name(format!("helm-venv.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(staging.parent().expect("parent")).expect("target tmp dir");
        run_quietly(
            Command::new("python3").arg("-m").arg("venv").arg(&staging),
            "python3 -m venv (Debian/Ubuntu: apt-get install python3-venv)",
        );
        run_quietly(
            Command::new(staging.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "pip install -r tests/helm/requirements.txt (needs PyPI)",
        );
        std::fs::write(staging.join(marker), &wanted).expect("marker");
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&staging, &venv).is_err() {
            // Another test run finished first; its venv is as good.
            let _ = std::fs::remove_dir_all(&staging);
        }
        python
    })
}

fn run_quietly(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs render.py; Ok(stdout) or Err(stderr).
fn render_py(args: &[String]) -> Result<String, String> {
    let out = Command::new(python())
        .arg(repo().join("tests/helm/render.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run tests/helm/render.py");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8 YAML"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// One rendered values set.
struct Rendered {
    set: Set,
    docs: Vec<Value>,
}

fn rendered(set: Set) -> &'static Rendered {
    static CACHE: [OnceLock<Rendered>; SETS.len()] = [const { OnceLock::new() }; SETS.len()];
    let index = SETS.iter().position(|s| *s == set).expect("a known set");
    CACHE[index].get_or_init(|| {
        let yaml = render_py(&set.args())
            .unwrap_or_else(|e| panic!("{set:?}: chart does not lint/render:\n{e}"));
        let docs = parse_documents(&yaml);
        assert!(!docs.is_empty(), "{set:?}: nothing rendered");
        Rendered { set, docs }
    })
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The one object of this kind (and name, when given), as its Kubernetes type.
    fn one<T: DeserializeOwned>(&self, kind: &str, name: Option<&str>) -> T {
        let found: Vec<&Value> = self
            .of_kind(kind)
            .into_iter()
            .filter(|d| name.is_none_or(|n| d["metadata"]["name"] == n))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{:?}: expected one {kind} {name:?}, found {}",
            self.set,
            found.len()
        );
        serde_json::from_value(found[0].clone())
            .unwrap_or_else(|e| panic!("{:?}: {kind} {name:?}: {e}", self.set))
    }

    fn name(&self, suffix: &str) -> String {
        let prefix = match self.set {
            Set::Secret => "rs-runsecrets",
            _ => "runsecrets",
        };
        format!("{prefix}-{suffix}")
    }

    fn ns(&self) -> &'static str {
        self.set.namespace()
    }

    fn server(&self) -> Deployment {
        self.one("Deployment", Some(&self.name("server")))
    }

    fn node(&self) -> DaemonSet {
        self.one("DaemonSet", Some(&self.name("node")))
    }

    fn mutating(&self) -> MutatingWebhookConfiguration {
        self.one("MutatingWebhookConfiguration", None)
    }

    fn validating(&self) -> ValidatingWebhookConfiguration {
        self.one("ValidatingWebhookConfiguration", None)
    }

    /// Every webhook of both configurations: (name, clientConfig, namespace-selector
    /// expressions, failurePolicy).
    fn webhooks(
        &self,
    ) -> Vec<(
        String,
        WebhookClientConfig,
        Vec<LabelSelectorRequirement>,
        String,
    )> {
        let mut all = Vec::new();
        for w in self.mutating().webhooks.unwrap_or_default() {
            let exprs = w
                .namespace_selector
                .and_then(|s| s.match_expressions)
                .unwrap_or_default();
            all.push((
                w.name,
                w.client_config,
                exprs,
                w.failure_policy.unwrap_or_default(),
            ));
        }
        for w in self.validating().webhooks.unwrap_or_default() {
            let exprs = w
                .namespace_selector
                .and_then(|s| s.match_expressions)
                .unwrap_or_default();
            all.push((
                w.name,
                w.client_config,
                exprs,
                w.failure_policy.unwrap_or_default(),
            ));
        }
        all
    }
}

fn pod_spec_of_deployment(d: &Deployment) -> PodSpec {
    d.spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
}

fn pod_spec_of_daemonset(d: &DaemonSet) -> PodSpec {
    d.spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn volume<'a>(pod: &'a PodSpec, name: &str) -> &'a Volume {
    pod.volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == name))
        .unwrap_or_else(|| panic!("volume {name}"))
}

/// The volume mounted at `path` in `c`.
fn volume_at<'a>(pod: &'a PodSpec, c: &Container, path: &str) -> &'a Volume {
    let mount = c
        .volume_mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.mount_path == path))
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name));
    volume(pod, &mount.name)
}

fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

/// The value of `--flag=value` in a container's args.
fn flag(c: &Container, name: &str) -> String {
    let prefix = format!("--{name}=");
    let found: Vec<String> = args(c)
        .iter()
        .filter_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{}: expected one --{name}, args {:?}",
        c.name,
        args(c)
    );
    found[0].clone()
}

/// Every value of a repeatable `--flag=value` in a container's args.
fn flags(c: &Container, name: &str) -> Vec<String> {
    let prefix = format!("--{name}=");
    args(c)
        .iter()
        .filter_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn port_of(addr: &str) -> i32 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

fn container_port(c: &Container, name: &str) -> i32 {
    c.ports
        .as_ref()
        .and_then(|p| p.iter().find(|p| p.name.as_deref() == Some(name)))
        .unwrap_or_else(|| panic!("{}: no port named {name}", c.name))
        .container_port
}

/// The binary's own parser on the container's args (the image's ENTRYPOINT is the binary).
fn parse_cli(c: &Container) -> Result<Cli, String> {
    Cli::try_parse_from(std::iter::once("runsecrets".to_string()).chain(args(c)))
        .map_err(|e| e.render().to_string())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The tls.mode a set renders.
fn tls_mode(set: Set) -> &'static str {
    match set {
        Set::Helm => "helm",
        Set::Secret => "secret",
        Set::CertManager => "certManager",
        Set::Default | Set::Tuned | Set::Manifests => "server",
    }
}

/// Every name a client uses: the apiserver (webhook Service) and the node plugins (delivery).
fn service_names(r: &Rendered) -> Vec<String> {
    let mut names = Vec::new();
    for svc in ["webhook", "delivery"] {
        let svc: Service = r.one("Service", Some(&r.name(svc)));
        let name = svc.metadata.name.expect("name");
        names.push(format!("{name}.{}.svc", r.ns()));
        names.push(format!("{name}.{}.svc.cluster.local", r.ns()));
    }
    names
}
