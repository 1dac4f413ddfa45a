//! The Helm chart (charts/runsecrets) and manifests/, checked with real Helm.
//!
//! tests/helm/render.py lints and renders the chart with Helm's own Go SDK (PyPI
//! `helm-python-sdk`, pinned in tests/helm/requirements.txt). This file makes the virtualenv it
//! runs in (once, under CARGO_TARGET_TMPDIR; needs python3 with venv and pip, and PyPI), renders
//! each values set once, and checks the objects against the binary: its command line, its
//! routes, its CSI driver name and the API calls it makes.

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

const REGENERATE: &str = "python3 tests/helm/render.py --manifests > manifests/runsecrets.yaml";

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

// ---------------------------------------------------------------------------------------------
// Lint and render

#[test]
fn chart_lints_and_renders_in_every_tls_mode() {
    // server (the default): nothing TLS is rendered; the server makes its CA, keeps it in a
    // Secret and fills caBundle itself (server_mode_manages_its_own_ca checks the wiring).
    let server = rendered(Set::Default);
    assert!(
        server.of_kind("Secret").is_empty(),
        "server mode renders no Secret"
    );
    assert!(
        server.of_kind("ConfigMap").is_empty(),
        "server mode renders no ConfigMap: the server owns the CA ConfigMap"
    );
    assert!(server.of_kind("Certificate").is_empty());
    assert!(server.of_kind("Issuer").is_empty());
    for annotations in [
        server.mutating().metadata.annotations,
        server.validating().metadata.annotations,
    ] {
        assert!(
            !annotations
                .unwrap_or_default()
                .contains_key("cert-manager.io/inject-ca-from"),
            "server mode needs no cert-manager"
        );
    }
    for (name, client, ..) in server.webhooks() {
        assert!(
            client.ca_bundle.is_none(),
            "{name}: in server mode the server writes caBundle"
        );
    }

    // helm: the chart makes the CA and the certificate, and puts the CA in every webhook.
    let helm = rendered(Set::Helm);
    let secret: Secret = helm.one("Secret", Some(&helm.name("tls")));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("data");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(data.contains_key(key), "generated Secret lacks {key}");
    }
    assert!(helm.of_kind("Certificate").is_empty());
    for (name, client, ..) in helm.webhooks() {
        assert_eq!(
            client.ca_bundle.as_ref().map(|b| &b.0),
            Some(&data["ca.crt"].0),
            "{name}: caBundle is not the generated CA"
        );
    }

    // secret: the user's Secret and caBundle; the CA reaches the node plugin via a ConfigMap.
    let user = rendered(Set::Secret);
    assert!(
        user.of_kind("Secret").is_empty(),
        "secret mode must not create a Secret"
    );
    assert!(user.of_kind("Certificate").is_empty());
    let ca: ConfigMap = user.one("ConfigMap", Some(&user.name("ca")));
    assert_eq!(
        ca.data.expect("data")["ca.crt"].trim(),
        fake_ca().0.trim(),
        "ConfigMap ca.crt is not tls.caBundle"
    );
    for (name, client, ..) in user.webhooks() {
        assert_eq!(
            client.ca_bundle.as_ref().map(|b| b.0.clone()),
            Some(fake_ca().0.clone().into_bytes()),
            "{name}: caBundle is not tls.caBundle"
        );
    }
    let server = pod_spec_of_deployment(&user.server());
    let tls = volume_at(&server, container(&server, "server"), "/etc/runsecrets/tls");
    assert_eq!(
        tls.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("my-serving-cert")
    );

    // certManager: Issuers and Certificates; cainjector fills caBundle from the annotation.
    let cm = rendered(Set::CertManager);
    assert!(cm.of_kind("Secret").is_empty());
    assert_eq!(
        cm.of_kind("Certificate").len(),
        2,
        "CA and serving Certificates"
    );
    assert_eq!(cm.of_kind("Issuer").len(), 2, "self-signed and CA Issuers");
    let inject = format!("{}/{}", cm.ns(), cm.name("tls"));
    let mutating = cm.mutating();
    let validating = cm.validating();
    for annotations in [
        mutating.metadata.annotations,
        validating.metadata.annotations,
    ] {
        assert_eq!(
            annotations
                .unwrap_or_default()
                .get("cert-manager.io/inject-ca-from"),
            Some(&inject)
        );
    }
    for (name, client, ..) in cm.webhooks() {
        assert!(
            client.ca_bundle.is_none(),
            "{name}: caBundle must come from cainjector"
        );
    }
}

#[test]
fn secret_mode_requires_a_ca_bundle() {
    let err = render_py(&strings(&[
        "--tls-mode",
        "secret",
        "--set",
        "tls.existingSecret=my-serving-cert",
    ]))
    .expect_err("secret mode without tls.caBundle must fail");
    assert!(
        err.contains("tls.caBundle is required when tls.mode is secret"),
        "unclear error:\n{err}"
    );
    let err = render_py(&strings(&[
        "--tls-mode",
        "secret",
        "--set",
        "tls.existingSecret=x,tls.caBundle=bm90IGEgY2VydA==",
    ]))
    .expect_err("a caBundle that is not a PEM certificate must fail");
    assert!(
        err.contains("tls.caBundle must be base64 of a PEM certificate"),
        "{err}"
    );
}

#[test]
fn schema_rejects_unknown_and_invalid_values() {
    // `off` unquoted in a values file is YAML's false: the schema catches it.
    let err = render_py(&strings(&[
        "--set-json",
        r#"policy={"defaults":{"enforce":false,"warn":"baseline","audit":"baseline"}}"#,
    ]))
    .expect_err("a boolean level must fail");
    assert!(err.contains("/policy/defaults/enforce"), "{err}");
    let err = render_py(&strings(&["--set", "sever.replicas=3"])).expect_err("a typo must fail");
    assert!(err.contains("sever"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes types

/// Parses as `T` and serialises back to the same JSON: a misspelt or misplaced field (which
/// Kubernetes would drop or reject) does not survive the round trip.
fn check_type<T: DeserializeOwned + serde::Serialize>(doc: &Value) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{kind} {name} does not parse: {e}"));
    let back = serde_json::to_value(&typed).expect("serialise");
    assert_eq!(
        &back, doc,
        "{kind} {name}: fields lost in a round trip through k8s-openapi"
    );
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    for set in SETS {
        let r = rendered(set);
        let mut kinds = BTreeSet::new();
        for doc in &r.docs {
            let kind = doc["kind"].as_str().expect("kind");
            kinds.insert(kind.to_string());
            match kind {
                "Namespace" => check_type::<Namespace>(doc),
                "Deployment" => check_type::<Deployment>(doc),
                "DaemonSet" => check_type::<DaemonSet>(doc),
                "Service" => check_type::<Service>(doc),
                "ServiceAccount" => check_type::<ServiceAccount>(doc),
                "ClusterRole" => check_type::<ClusterRole>(doc),
                "ClusterRoleBinding" => check_type::<ClusterRoleBinding>(doc),
                "Role" => check_type::<Role>(doc),
                "RoleBinding" => check_type::<RoleBinding>(doc),
                "CSIDriver" => check_type::<CSIDriver>(doc),
                "MutatingWebhookConfiguration" => check_type::<MutatingWebhookConfiguration>(doc),
                "ValidatingWebhookConfiguration" => {
                    check_type::<ValidatingWebhookConfiguration>(doc)
                }
                "PodDisruptionBudget" => check_type::<PodDisruptionBudget>(doc),
                "Secret" => check_type::<Secret>(doc),
                "ConfigMap" => check_type::<ConfigMap>(doc),
                "CustomResourceDefinition" => {
                    // The CRD is generated by `runsecrets crd` (tests/crd.rs checks it).
                    let _: CustomResourceDefinition =
                        serde_json::from_value(doc.clone()).expect("CustomResourceDefinition");
                }
                "Issuer" | "Certificate" => {
                    assert_eq!(doc["apiVersion"], "cert-manager.io/v1");
                    assert!(doc["spec"].is_object(), "{kind} has a spec");
                }
                other => panic!("{set:?}: unexpected kind {other}"),
            }
            // Namespaced objects land in the release namespace.
            let cluster_scoped = [
                "Namespace",
                "ClusterRole",
                "ClusterRoleBinding",
                "CSIDriver",
                "CustomResourceDefinition",
                "MutatingWebhookConfiguration",
                "ValidatingWebhookConfiguration",
            ];
            let ns = &doc["metadata"]["namespace"];
            if cluster_scoped.contains(&kind) {
                assert!(
                    ns.is_null(),
                    "{set:?}: cluster-scoped {kind} has a namespace"
                );
            } else {
                assert_eq!(ns, r.ns(), "{set:?}: {kind} outside the release namespace");
            }
        }
        for expected in [
            "Deployment",
            "DaemonSet",
            "Service",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "CSIDriver",
            "CustomResourceDefinition",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(expected), "{set:?}: no {expected} rendered");
        }
        // Unique (kind, namespace, name).
        let mut seen = BTreeSet::new();
        for doc in &r.docs {
            let key = (
                doc["kind"].to_string(),
                doc["metadata"]["namespace"].to_string(),
                doc["metadata"]["name"].to_string(),
            );
            assert!(seen.insert(key.clone()), "{set:?}: {key:?} rendered twice");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server

#[test]
fn server_args_are_the_binarys_flags() {
    let sets = [Set::Default, Set::Helm, Set::Secret, Set::Tuned];
    for set in sets {
        let r = rendered(set);
        let pod = pod_spec_of_deployment(&r.server());
        let c = container(&pod, "server");
        assert!(
            server_listen(c).ip().is_unspecified(),
            "{set:?}: the webhook must listen on the pod IP"
        );
        assert_eq!(
            container_port(c, "webhook"),
            i32::from(server_listen(c).port())
        );
        assert_eq!(
            container_port(c, "admin"),
            port_of(&flag(c, "admin-listen"))
        );
        assert_eq!(
            container_port(c, "delivery"),
            port_of(&flag(c, "delivery-listen"))
        );
        assert_eq!(flag(c, "store"), "kubernetes");
        assert_eq!(flag(c, "authenticator"), "kubernetes");
        assert_eq!(
            flag(c, "node-service-account"),
            format!("{}/{}", r.ns(), r.name("node")),
            "only the node plugin's ServiceAccount may fetch secrets"
        );
        assert_eq!(
            pod_spec_of_daemonset(&r.node()).service_account_name,
            Some(r.name("node"))
        );
        assert_eq!(flag(c, "log-format"), "json");
        for m in c.volume_mounts.as_ref().expect("mounts") {
            assert!(
                m.sub_path.is_none(),
                "{}: subPath mounts never see renewals",
                m.name
            );
        }
        if tls_mode(set) == "server" {
            // The server issues its certificate from its CA Secret: no files, no TLS volume.
            for name in ["tls-cert", "tls-key"] {
                assert!(
                    flags(c, name).is_empty(),
                    "{set:?}: --{name} in server mode"
                );
            }
            assert!(
                c.volume_mounts
                    .iter()
                    .flatten()
                    .all(|m| m.mount_path != "/etc/runsecrets/tls"),
                "{set:?}: TLS volume in server mode"
            );
            assert!(
                pod.volumes.iter().flatten().all(|v| v.secret.is_none()),
                "{set:?}: the server pod mounts no Secret in server mode"
            );
            assert!(!flag(c, "tls-ca-secret").is_empty());
        } else {
            // Cert and key come from the TLS Secret volume, reloaded in place (no subPath).
            let tls = volume_at(&pod, c, "/etc/runsecrets/tls");
            assert!(tls.secret.is_some(), "TLS from a Secret");
            assert_eq!(flag(c, "tls-cert"), "/etc/runsecrets/tls/tls.crt");
            assert_eq!(flag(c, "tls-key"), "/etc/runsecrets/tls/tls.key");
            for name in ["tls-ca-secret", "tls-san", "publish-ca-to"] {
                assert!(
                    flags(c, name).is_empty(),
                    "{set:?}: --{name} outside server mode"
                );
            }
        }
        // The data directory is writable (the root filesystem is not).
        let data = volume_at(&pod, c, &flag(c, "data-dir"));
        assert!(data.empty_dir.is_some());
    }
    // Policy defaults reach the server (the `default` webhook entries use them).
    let tuned = rendered(Set::Tuned);
    let pod = pod_spec_of_deployment(&tuned.server());
    let c = container(&pod, "server");
    assert_eq!(flag(c, "default-enforce"), "strict");
    assert_eq!(flag(c, "default-warn"), "off");

    // Last, so that every check above runs even while the binary lacks a flag: the binary's own
    // parser accepts the args of every set, and reads the ports the container declares.
    let mut refused = Vec::new();
    for set in sets {
        let r = rendered(set);
        let pod = pod_spec_of_deployment(&r.server());
        let c = container(&pod, "server");
        let cli = match parse_cli(c) {
            Ok(cli) => cli,
            Err(e) => {
                refused.push(format!("{set:?}: server args: {e}"));
                continue;
            }
        };
        let Sub::Server(server) = cli.command else {
            panic!("{set:?}: not `runsecrets server`")
        };
        assert_eq!(
            u16::try_from(container_port(c, "webhook")).ok(),
            Some(server.listen.port())
        );
        assert_eq!(
            u16::try_from(container_port(c, "admin")).ok(),
            Some(server.admin_listen.port())
        );
        assert!(server.listen.ip().is_unspecified());
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

/// The server's --listen address, as the chart writes it.
fn server_listen(c: &Container) -> std::net::SocketAddr {
    let listen = flag(c, "listen");
    listen
        .parse()
        .unwrap_or_else(|e| panic!("--listen={listen}: {e}"))
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

/// tls.mode=server: the names the server is given are the objects the chart renders (and the
/// one it must not render), so renaming one side without the other fails here.
#[test]
fn server_mode_manages_its_own_ca() {
    for set in [Set::Default, Set::Tuned, Set::Manifests] {
        let r = rendered(set);
        let pod = pod_spec_of_deployment(&r.server());
        let c = container(&pod, "server");

        // The CA Secret: the chart's default name, or tls.server.caSecret.
        let expected_ca_secret = match set {
            Set::Tuned => "my-runsecrets-ca".to_string(),
            _ => r.name("server-ca"),
        };
        assert_eq!(flag(c, "tls-ca-secret"), expected_ca_secret, "{set:?}");
        assert!(
            r.of_kind("Secret").is_empty(),
            "{set:?}: the server creates its CA Secret; Helm must not"
        );

        // Certificates for every name a client dials.
        let sans: BTreeSet<String> = flags(c, "tls-san")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::to_string)
            .collect();
        assert_eq!(
            sans,
            service_names(r).into_iter().collect::<BTreeSet<_>>(),
            "{set:?}: --tls-san"
        );
        let node = pod_spec_of_daemonset(&r.node());
        let plugin = container(&node, "plugin");
        let dialed = flag(plugin, "server");
        let host = dialed
            .trim_start_matches("https://")
            .rsplit_once(':')
            .expect("host:port")
            .0;
        assert!(sans.contains(host), "{set:?}: the node plugin dials {host}");

        // The CA goes where it is read: both webhook configurations the chart renders, and the
        // ConfigMap the node plugin mounts as its --server-ca.
        let ca_file = flag(plugin, "server-ca");
        let ca_volume = volume_at(&node, plugin, ca_file.rsplit_once('/').expect("dir").0);
        let ca_config_map = ca_volume
            .config_map
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| panic!("{set:?}: the node plugin's CA is not a ConfigMap"));
        assert_ne!(
            ca_volume.config_map.as_ref().and_then(|c| c.optional),
            Some(true),
            "{set:?}: the node pods wait for the CA ConfigMap"
        );
        let mut expected = BTreeSet::new();
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let objects = r.of_kind(kind);
            assert!(!objects.is_empty(), "{set:?}: no {kind}");
            for o in objects {
                let name = o["metadata"]["name"].as_str().expect("name");
                expected.insert(format!("{}/{name}", kind.to_lowercase()));
            }
        }
        expected.insert(format!("configmap/{ca_config_map}"));
        let published: BTreeSet<String> = flags(c, "publish-ca-to")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::to_string)
            .collect();
        assert_eq!(published, expected, "{set:?}: --publish-ca-to");
        assert!(
            r.of_kind("ConfigMap")
                .iter()
                .all(|m| m["metadata"]["name"] != ca_config_map.as_str()),
            "{set:?}: Helm must not template {ca_config_map}, the server owns it"
        );

        // Nothing for cert-manager, no caBundle (the server patches it in), and nothing that
        // changes between renders.
        assert!(r.of_kind("Certificate").is_empty() && r.of_kind("Issuer").is_empty());
        for (name, client, ..) in r.webhooks() {
            assert!(client.ca_bundle.is_none(), "{set:?}: {name} has a caBundle");
        }
        for annotations in [
            r.mutating().metadata.annotations,
            r.validating().metadata.annotations,
        ] {
            assert!(annotations.unwrap_or_default().is_empty(), "{set:?}");
        }
        for template in [
            r.server().spec.expect("spec").template,
            r.node().spec.expect("spec").template,
        ] {
            let annotations = template.metadata.and_then(|m| m.annotations);
            assert!(
                annotations.is_none_or(|a| !a.contains_key("checksum/tls")),
                "{set:?}: no certificate material to follow"
            );
        }
    }
    // Rendered twice, the same bytes: GitOps sees no drift.
    assert_eq!(
        render_py(&Set::Default.args()).expect("render"),
        render_py(&Set::Default.args()).expect("render")
    );
}

#[test]
fn services_route_to_the_server_ports() {
    for set in [Set::Default, Set::Secret] {
        let r = rendered(set);
        let deployment = r.server();
        let pod_labels = deployment
            .spec
            .clone()
            .expect("spec")
            .template
            .metadata
            .expect("metadata")
            .labels
            .expect("labels");
        let pod = pod_spec_of_deployment(&deployment);
        let c = container(&pod, "server");
        for (svc, port_name) in [("webhook", "webhook"), ("delivery", "delivery")] {
            let service: Service = r.one("Service", Some(&r.name(svc)));
            let spec = service.spec.expect("spec");
            for (k, v) in spec.selector.expect("selector") {
                assert_eq!(
                    pod_labels.get(&k),
                    Some(&v),
                    "{svc} Service does not select the server"
                );
            }
            let ports = spec.ports.expect("ports");
            assert_eq!(ports.len(), 1);
            assert_eq!(ports[0].port, 443);
            assert_eq!(
                ports[0].target_port,
                Some(IntOrString::Int(container_port(c, port_name))),
                "{svc} Service targets the wrong port"
            );
        }
        // The ports the Services target are the ones the binary listens on.
        let listen = port_of(&flag(c, "listen"));
        assert_eq!(container_port(c, "webhook"), listen);
        // Probes on the admin listener.
        let admin = port_of(&flag(c, "admin-listen"));
        assert_eq!(container_port(c, "admin"), admin);
        for (probe, path) in [
            (&c.liveness_probe, "/livez"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("httpGet probe");
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("admin".into()));
            assert!(get.scheme.is_none(), "admin is plain HTTP");
        }
    }
}

#[test]
fn webhooks_call_routes_the_server_serves() {
    for set in [
        Set::Default,
        Set::Helm,
        Set::Secret,
        Set::CertManager,
        Set::Tuned,
    ] {
        let r = rendered(set);
        let hooks = r.webhooks();
        let mut names = BTreeSet::new();
        for (name, client, ..) in &hooks {
            assert!(names.insert(name.clone()), "{set:?}: webhook {name} twice");
            assert!(
                name.ends_with(".runsecrets.io"),
                "{name}: not fully qualified"
            );
            assert!(
                client.url.is_none(),
                "{name}: in-cluster webhooks use the Service"
            );
            let svc = client.service.as_ref().expect("service");
            assert_eq!(svc.name, r.name("webhook"), "{name}");
            assert_eq!(svc.namespace, r.ns(), "{name}");
            assert_eq!(svc.port, Some(443), "{name}: the webhook Service's port");
            // /mutate, /validate, /validate/{mode}/{level|default}: see server::routes::webhook.
            let path = svc.path.as_deref().expect("path");
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                ["mutate"] | ["validate"] => {}
                ["validate", mode, level] => {
                    mode.parse::<Mode>()
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(
                        *level == "default" || level.parse::<Level>().is_ok(),
                        "{name}: {path}"
                    );
                }
                _ => panic!("{name}: the server has no route {path}"),
            }
        }
        let mutating = r.mutating().webhooks.expect("webhooks");
        assert_eq!(mutating.len(), 1);
        assert_eq!(
            mutating[0]
                .client_config
                .service
                .as_ref()
                .and_then(|s| s.path.as_deref()),
            Some("/mutate")
        );
    }
}

#[test]
fn mutating_webhook_sees_only_pods_that_declare_secrets() {
    let r = rendered(Set::Default);
    let hooks = r.mutating().webhooks.expect("webhooks");
    let hook = &hooks[0];
    let rules = hook.rules.clone().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups, Some(strings(&[""])));
    assert_eq!(rules[0].resources, Some(strings(&["pods"])));
    assert_eq!(rules[0].operations, Some(strings(&["CREATE"])));
    let conditions = hook.match_conditions.clone().expect("matchConditions");
    assert_eq!(conditions.len(), 1);
    let cel = &conditions[0].expression;
    assert!(
        cel.contains(&format!(
            "'{SECRETS_ANNOTATION}' in object.metadata.annotations"
        )),
        "{cel}"
    );
    assert!(
        cel.starts_with("has(object.metadata.annotations) &&"),
        "pods without annotations must not fail the expression: {cel}"
    );
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(hook.admission_review_versions, strings(&["v1"]));
    assert!(
        hook.timeout_seconds.is_some_and(|t| t <= 5),
        "small timeout"
    );
}

#[test]
fn webhooks_never_see_kube_system_or_the_release_namespace() {
    for set in [
        Set::Default,
        Set::Helm,
        Set::Secret,
        Set::CertManager,
        Set::Tuned,
    ] {
        let r = rendered(set);
        for (name, _, exprs, _) in r.webhooks() {
            let excluded = exprs
                .iter()
                .find(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
                .and_then(|e| e.values.clone())
                .unwrap_or_else(|| panic!("{set:?}: {name} excludes no namespace"));
            for ns in ["kube-system", r.ns()] {
                assert!(
                    excluded.iter().any(|e| e == ns),
                    "{set:?}: {name} does not exclude {ns}"
                );
            }
            if set == Set::Tuned {
                assert!(
                    excluded.iter().any(|e| e == "cert-manager"),
                    "webhook.excludeNamespaces"
                );
            }
        }
    }
}

#[test]
fn validating_webhooks_follow_the_namespace_labels() {
    let workload_rules: BTreeSet<(String, String, String)> = [
        ("", "pods", "CREATE,UPDATE"),
        ("", "pods/ephemeralcontainers", "UPDATE"),
        ("", "replicationcontrollers", "CREATE,UPDATE"),
        ("apps", "deployments", "CREATE,UPDATE"),
        ("apps", "statefulsets", "CREATE,UPDATE"),
        ("apps", "daemonsets", "CREATE,UPDATE"),
        ("apps", "replicasets", "CREATE,UPDATE"),
        ("batch", "jobs", "CREATE,UPDATE"),
        ("batch", "cronjobs", "CREATE,UPDATE"),
    ]
    .iter()
    .map(|(g, r, o)| (g.to_string(), r.to_string(), o.to_string()))
    .collect();

    // (set, enforce failurePolicy, modes whose default is off: no `default` entry)
    for (set, enforce_policy, off) in [
        (Set::Default, "Ignore", vec![Mode::Enforce]),
        (Set::Tuned, "Fail", vec![Mode::Warn]),
    ] {
        let r = rendered(set);
        let hooks = r.validating().webhooks.expect("webhooks");
        let mut expected = BTreeSet::from(["runsecrets.validate.runsecrets.io".to_string()]);
        for mode in Mode::ALL {
            for level in ["baseline", "strict", "default"] {
                if level != "default" || !off.contains(&mode) {
                    expected.insert(format!("{}-{level}.validate.runsecrets.io", mode.as_str()));
                }
            }
        }
        let names: BTreeSet<String> = hooks.iter().map(|h| h.name.clone()).collect();
        assert_eq!(names, expected, "{set:?}");

        for hook in &hooks {
            let path = hook
                .client_config
                .service
                .as_ref()
                .and_then(|s| s.path.clone())
                .expect("path");
            assert_eq!(hook.side_effects, "None");
            assert_eq!(hook.admission_review_versions, strings(&["v1"]));
            if hook.name == "runsecrets.validate.runsecrets.io" {
                assert_eq!(path, "/validate");
                assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
                let rules = hook.rules.clone().expect("rules");
                assert_eq!(rules.len(), 1);
                assert_eq!(rules[0].api_groups, Some(strings(&["runsecrets.io"])));
                assert_eq!(rules[0].resources, Some(strings(&["runsecrets"])));
                assert_eq!(rules[0].operations, Some(strings(&["CREATE"])));
                continue;
            }
            let (mode_level, _) = hook.name.split_once('.').expect("qualified");
            let (mode, level) = mode_level.split_once('-').expect("mode-level");
            let mode: Mode = mode.parse().expect("mode");
            assert_eq!(path, format!("/validate/{}/{level}", mode.as_str()));
            let policy = if mode == Mode::Enforce {
                enforce_policy
            } else {
                "Ignore"
            };
            assert_eq!(
                hook.failure_policy.as_deref(),
                Some(policy),
                "{}",
                hook.name
            );

            // The namespace label picks the entry, as in Pod Security Admission.
            let exprs = hook
                .namespace_selector
                .clone()
                .and_then(|s| s.match_expressions)
                .expect("matchExpressions");
            let on_label: Vec<&LabelSelectorRequirement> =
                exprs.iter().filter(|e| e.key == mode.label()).collect();
            assert_eq!(
                on_label.len(),
                1,
                "{}: one expression on {}",
                hook.name,
                mode.label()
            );
            if level == "default" {
                assert_eq!(on_label[0].operator, "DoesNotExist", "{}", hook.name);
            } else {
                assert_eq!(on_label[0].operator, "In");
                assert_eq!(
                    on_label[0].values,
                    Some(vec![level.to_string()]),
                    "{}",
                    hook.name
                );
            }

            let mut got = BTreeSet::new();
            for rule in hook.rules.clone().expect("rules") {
                let ops = rule.operations.clone().unwrap_or_default().join(",");
                assert_eq!(rule.api_versions, Some(strings(&["v1"])));
                for g in rule.api_groups.clone().unwrap_or_default() {
                    for res in rule.resources.clone().unwrap_or_default() {
                        got.insert((g.clone(), res, ops.clone()));
                    }
                }
            }
            assert_eq!(got, workload_rules, "{}: checked kinds", hook.name);
        }
    }
}

#[test]
fn server_pod_is_restricted_and_highly_available() {
    let r = rendered(Set::Default);
    let deployment = r.server();
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let pod = pod_spec_of_deployment(&deployment);
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u > 0));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.host_network, None);
    for c in &pod.containers {
        let sc = c
            .security_context
            .clone()
            .expect("container securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_ne!(sc.privileged, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.clone().and_then(|c| c.drop),
            Some(strings(&["ALL"])),
            "{}",
            c.name
        );
        assert!(sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_none());
        let resources = c.resources.clone().expect("resources");
        assert!(resources
            .requests
            .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
        assert!(resources.limits.is_some_and(|l| l.contains_key("memory")));
    }
    // Where Helm knows the certificate material (helm mode), a new one rolls the pods.
    let helm_annotations = rendered(Set::Helm)
        .server()
        .spec
        .expect("spec")
        .template
        .metadata
        .expect("meta")
        .annotations;
    assert!(helm_annotations.is_some_and(|a| a.get("checksum/tls").is_some_and(|c| c.len() == 64)));
    // Spread over nodes, and never below one replica during drains.
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("podAntiAffinity");
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .expect("preferred");
    assert_eq!(
        preferred[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let pdb: PodDisruptionBudget = r.one("PodDisruptionBudget", None);
    let pdb_spec = pdb.spec.expect("spec");
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb_spec.selector.and_then(|s| s.match_labels),
        deployment.spec.expect("spec").selector.match_labels
    );
    // One replica: no PDB (it would block every drain).
    assert!(rendered(Set::Tuned)
        .of_kind("PodDisruptionBudget")
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// RBAC

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        verbs: strings(verbs),
        non_resource_urls: None,
    }
}

#[test]
fn rbac_grants_exactly_what_the_code_calls() {
    for set in [
        Set::Default,
        Set::Helm,
        Set::Secret,
        Set::CertManager,
        Set::Tuned,
    ] {
        let r = rendered(set);
        let server_name = r.name("server");
        let pod = pod_spec_of_deployment(&r.server());
        let c = container(&pod, "server");
        let keyring = flag(c, "keyring-secret");
        let public_keys = flag(c, "public-keys-configmap");
        let server_mode = tls_mode(set) == "server";

        let cluster_roles: BTreeMap<String, ClusterRole> = r
            .of_kind("ClusterRole")
            .into_iter()
            .map(|d| {
                (
                    d["metadata"]["name"].as_str().expect("name").to_string(),
                    serde_json::from_value(d.clone()).expect("ClusterRole"),
                )
            })
            .collect();
        let edit = r.name("edit");
        let view = r.name("view");
        assert_eq!(
            cluster_roles.keys().cloned().collect::<BTreeSet<_>>(),
            BTreeSet::from([server_name.clone(), edit.clone(), view.clone()]),
            "{set:?}: ClusterRoles"
        );
        let mut cluster_rules = vec![
            rule(
                &["authentication.k8s.io"],
                &["tokenreviews"],
                &[],
                &["create"],
            ),
            rule(
                &["runsecrets.io"],
                &["runsecrets"],
                &[],
                &["get", "list", "watch"],
            ),
        ];
        let mut secrets = vec![keyring.clone()];
        let mut config_maps = vec![public_keys.clone()];
        if server_mode {
            // --publish-ca-to: get and patch of the rendered webhook configurations, by name;
            // the CA Secret and the CA ConfigMap next to the keyring and the public keys.
            for (kind, resource) in [
                (
                    "MutatingWebhookConfiguration",
                    "mutatingwebhookconfigurations",
                ),
                (
                    "ValidatingWebhookConfiguration",
                    "validatingwebhookconfigurations",
                ),
            ] {
                let names: Vec<&str> = r
                    .of_kind(kind)
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().expect("name"))
                    .collect();
                cluster_rules.push(rule(
                    &["admissionregistration.k8s.io"],
                    &[resource],
                    &names,
                    &["get", "patch"],
                ));
            }
            secrets.push(flag(c, "tls-ca-secret"));
            let node = pod_spec_of_daemonset(&r.node());
            let plugin = container(&node, "plugin");
            let ca_file = flag(plugin, "server-ca");
            let ca = volume_at(&node, plugin, ca_file.rsplit_once('/').expect("dir").0);
            config_maps.push(ca.config_map.as_ref().expect("CA ConfigMap").name.clone());
        }
        assert_eq!(
            cluster_roles[&server_name].rules,
            Some(cluster_rules),
            "{set:?}: server ClusterRole"
        );
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let config_maps: Vec<&str> = config_maps.iter().map(String::as_str).collect();
        let role: Role = r.one("Role", Some(&server_name));
        assert_eq!(role.metadata.name.as_deref(), Some(server_name.as_str()));
        assert_eq!(
            role.rules,
            Some(vec![
                rule(&[""], &["secrets"], &[], &["create"]),
                rule(&[""], &["secrets"], &secrets, &["get"]),
                rule(&[""], &["configmaps"], &[], &["create"]),
                rule(&[""], &["configmaps"], &config_maps, &["get", "update"]),
            ]),
            "{set:?}: server Role"
        );
        // Anyone signed in may read the public keys (the CLI seals with them), nothing else.
        let readers = format!("{server_name}-public-keys");
        let reader: Role = r.one("Role", Some(&readers));
        assert_eq!(
            reader.rules,
            Some(vec![rule(
                &[""],
                &["configmaps"],
                &[&public_keys],
                &["get"]
            )])
        );
        let reader_binding: RoleBinding = r.one("RoleBinding", Some(&readers));
        assert_eq!(reader_binding.role_ref.name, readers);
        let subjects = reader_binding.subjects.expect("subjects");
        assert_eq!(
            (
                subjects.len(),
                subjects[0].kind.as_str(),
                subjects[0].name.as_str()
            ),
            (1, "Group", "system:authenticated")
        );
        // User-facing roles, aggregated into the built-in ones.
        let labels = |name: &str| {
            cluster_roles[name]
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
        };
        for key in [
            "rbac.authorization.k8s.io/aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-admin",
        ] {
            assert_eq!(
                labels(&edit).get(key).map(String::as_str),
                Some("true"),
                "{key}"
            );
        }
        assert_eq!(
            labels(&view)
                .get("rbac.authorization.k8s.io/aggregate-to-view")
                .map(String::as_str),
            Some("true")
        );
        assert!(!labels(&view).contains_key("rbac.authorization.k8s.io/aggregate-to-edit"));
        assert_eq!(
            cluster_roles[&edit].rules,
            Some(vec![rule(
                &["runsecrets.io"],
                &["runsecrets"],
                &[],
                &["get", "list", "watch", "create", "delete", "patch", "update"]
            )])
        );
        assert_eq!(
            cluster_roles[&view].rules,
            Some(vec![rule(
                &["runsecrets.io"],
                &["runsecrets"],
                &[],
                &["get", "list", "watch"]
            )])
        );

        // Bindings: the server's roles to the server's ServiceAccount, nothing to the node's.
        let crb: ClusterRoleBinding = r.one("ClusterRoleBinding", None);
        let rb: RoleBinding = r.one("RoleBinding", Some(&server_name));
        assert_eq!(crb.role_ref.name, server_name);
        assert_eq!(crb.role_ref.kind, "ClusterRole");
        assert_eq!(rb.role_ref.name, server_name);
        assert_eq!(rb.role_ref.kind, "Role");
        for subjects in [crb.subjects, rb.subjects] {
            let subjects = subjects.expect("subjects");
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0].kind, "ServiceAccount");
            assert_eq!(subjects[0].name, server_name);
            assert_eq!(subjects[0].namespace.as_deref(), Some(r.ns()));
        }
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(server_name.as_str())
        );
        let node_sa: ServiceAccount = r.one("ServiceAccount", Some(&r.name("node")));
        assert_eq!(node_sa.automount_service_account_token, Some(false));
    }
}

// ---------------------------------------------------------------------------------------------
// The node plugin

#[test]
fn csi_driver_is_the_one_the_webhook_writes() {
    let r = rendered(Set::Default);
    let driver: CSIDriver = r.one("CSIDriver", None);
    assert_eq!(driver.metadata.name.as_deref(), Some(DRIVER_NAME));
    let spec = driver.spec;
    assert_eq!(spec.attach_required, Some(false));
    assert_eq!(spec.pod_info_on_mount, Some(true));
    assert_eq!(spec.volume_lifecycle_modes, Some(strings(&["Ephemeral"])));
    assert_eq!(spec.requires_republish, Some(true));
    assert_eq!(spec.fs_group_policy.as_deref(), Some("None"));
    let tokens = spec.token_requests.expect("tokenRequests");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].audience, DRIVER_NAME);
    assert!(tokens[0].expiration_seconds.is_none_or(|s| s >= 600));
}

#[test]
fn node_args_are_the_binarys_flags() {
    for set in [Set::Default, Set::Helm, Set::Secret, Set::Tuned] {
        let r = rendered(set);
        let pod = pod_spec_of_daemonset(&r.node());
        let plugin = container(&pod, "plugin");
        let cli = parse_cli(plugin).unwrap_or_else(|e| panic!("{set:?}: node args: {e}"));
        assert!(
            format!("{:?}", cli.command).starts_with("Node("),
            "{set:?}: not `runsecrets node`"
        );
    }
}

#[test]
fn node_plugin_is_wired_to_kubelet_and_the_server() {
    for (set, kubelet) in [
        (Set::Default, "/var/lib/kubelet"),
        (Set::Tuned, "/var/lib/k0s/kubelet"),
    ] {
        let r = rendered(set);
        let daemonset = r.node();
        let ds_spec = daemonset.spec.clone().expect("spec");
        let strategy = ds_spec.update_strategy.expect("updateStrategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            strategy.rolling_update.and_then(|u| u.max_unavailable),
            Some(IntOrString::Int(1))
        );
        let pod = pod_spec_of_daemonset(&daemonset);
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let tolerations = pod.tolerations.clone().expect("tolerations");
        assert!(
            tolerations
                .iter()
                .any(|t| t.operator.as_deref() == Some("Exists")
                    && t.key.is_none()
                    && t.effect.is_none()),
            "tolerates every taint"
        );
        let plugin = container(&pod, "plugin");
        // The plugin refuses targets outside its kubelet dir: it must be the one mounted.
        assert_eq!(flag(plugin, "kubelet-dir"), kubelet, "{set:?}");
        let registrar = container(&pod, "node-driver-registrar");
        assert!(registrar.image.as_deref().is_some_and(
            |i| i.starts_with("registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.")
        ));

        // One socket: the plugin serves it, the registrar connects to it, kubelet finds it at
        // the host path the registrar registers.
        let endpoint = flag(plugin, "endpoint");
        let socket = endpoint.strip_prefix("unix://").expect("unix endpoint");
        assert_eq!(flag(registrar, "csi-address"), socket);
        let (socket_dir, socket_file) = socket.rsplit_once('/').expect("dir/file");
        let plugin_dir = volume_at(&pod, plugin, socket_dir);
        assert_eq!(
            volume_at(&pod, registrar, socket_dir).name,
            plugin_dir.name,
            "the registrar and the plugin share the socket directory"
        );
        let host_dir = plugin_dir.host_path.as_ref().expect("hostPath");
        assert_eq!(host_dir.path, format!("{kubelet}/plugins/{DRIVER_NAME}"));
        assert_eq!(host_dir.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(
            flag(registrar, "kubelet-registration-path"),
            format!("{}/{socket_file}", host_dir.path)
        );
        let registration = volume_at(&pod, registrar, "/registration");
        assert_eq!(
            registration.host_path.as_ref().map(|h| h.path.clone()),
            Some(format!("{kubelet}/plugins_registry"))
        );

        // Pod volumes: kubelet's pods directory at the same path, mounts propagated back.
        let pods_path = format!("{kubelet}/pods");
        let mount = plugin
            .volume_mounts
            .as_ref()
            .and_then(|m| m.iter().find(|m| m.mount_path == pods_path))
            .expect("kubelet pods directory mounted");
        assert_eq!(mount.mount_propagation.as_deref(), Some("Bidirectional"));
        assert_eq!(
            volume(&pod, &mount.name)
                .host_path
                .as_ref()
                .map(|h| h.path.clone()),
            Some(pods_path.clone())
        );
        // Bidirectional propagation is only allowed for privileged containers; the registrar
        // is not one.
        assert_eq!(
            plugin.security_context.as_ref().and_then(|s| s.privileged),
            Some(true)
        );
        let rsc = registrar
            .security_context
            .clone()
            .expect("registrar securityContext");
        assert_ne!(rsc.privileged, Some(true));
        assert_eq!(rsc.allow_privilege_escalation, Some(false));

        // Node identity from the downward API.
        assert_eq!(flag(plugin, "node-id"), "$(NODE_NAME)");
        let env = plugin.env.clone().expect("env");
        let node_name = env
            .iter()
            .find(|e| e.name == "NODE_NAME")
            .expect("NODE_NAME");
        assert_eq!(
            node_name
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("spec.nodeName")
        );

        // Its own token: projected, for the server only.
        let token_file = flag(plugin, "token-file");
        let (token_dir, token_name) = token_file.rsplit_once('/').expect("dir/file");
        let token = volume_at(&pod, plugin, token_dir)
            .projected
            .clone()
            .expect("projected token");
        let source = token.sources.expect("sources")[0]
            .service_account_token
            .clone()
            .expect("serviceAccountToken");
        assert_eq!(source.audience.as_deref(), Some(DRIVER_NAME));
        assert_eq!(source.path, token_name);
        assert_eq!(source.expiration_seconds, Some(3600));

        // The server: the delivery Service, verified with the CA only.
        assert_eq!(
            flag(plugin, "server"),
            format!("https://{}.{}.svc:443", r.name("delivery"), r.ns())
        );
        let ca_file = flag(plugin, "server-ca");
        let (ca_dir, ca_name) = ca_file.rsplit_once('/').expect("dir/file");
        let ca = volume_at(&pod, plugin, ca_dir);
        let items = ca
            .secret
            .as_ref()
            .and_then(|s| s.items.clone())
            .or_else(|| ca.config_map.as_ref().and_then(|c| c.items.clone()))
            .expect("items: only ca.crt");
        assert_eq!(items.len(), 1, "never the private key");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("ca.crt", ca_name)
        );

        // Probes on its admin port.
        let admin = port_of(&flag(plugin, "admin-listen"));
        assert_eq!(container_port(plugin, "admin"), admin);
        for (probe, path) in [
            (&plugin.liveness_probe, "/livez"),
            (&plugin.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("httpGet probe");
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("admin".into()));
        }
    }
    // In secret mode the CA comes from the chart's ConfigMap of tls.caBundle.
    let r = rendered(Set::Secret);
    let pod = pod_spec_of_daemonset(&r.node());
    let ca_file = flag(container(&pod, "plugin"), "server-ca");
    let ca = volume_at(
        &pod,
        container(&pod, "plugin"),
        ca_file.rsplit_once('/').expect("dir").0,
    );
    assert_eq!(
        ca.config_map.as_ref().map(|c| c.name.clone()),
        Some(r.name("ca"))
    );
}

// ---------------------------------------------------------------------------------------------
// TLS names

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

#[test]
fn generated_certificate_verifies_for_every_service_name() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    let r = rendered(Set::Helm);
    let secret: Secret = r.one("Secret", Some(&r.name("tls")));
    let data = secret.data.expect("data");
    let ca = CertificateDer::from_pem_slice(&data["ca.crt"].0).expect("ca.crt PEM");
    let leaf = CertificateDer::from_pem_slice(&data["tls.crt"].0).expect("tls.crt PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    for name in service_names(r) {
        let server_name = ServerName::try_from(name.clone()).expect("DNS name");
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| {
                panic!("the generated certificate does not verify for {name}: {e}")
            });
    }
    // The server loads the pair as the chart mounts it (sprig writes an RSA PKCS#1 key).
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = runsecrets::server::tls::PairPaths {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&paths.cert, &data["tls.crt"].0).expect("write tls.crt");
    std::fs::write(&paths.key, &data["tls.key"].0).expect("write tls.key");
    if let Err(e) = runsecrets::server::tls::load_pair(&paths) {
        panic!("the server cannot load the generated certificate: {e}");
    }
    // The node plugin dials a name the certificate covers.
    let pod = pod_spec_of_daemonset(&r.node());
    let server = flag(container(&pod, "plugin"), "server");
    let host = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("host:port")
        .0;
    assert!(service_names(r).iter().any(|n| n == host), "{host}");
}

#[test]
fn cert_manager_certificate_covers_every_service_name() {
    let set = Set::CertManager;
    let r = rendered(set);
    let cert = r
        .of_kind("Certificate")
        .into_iter()
        .find(|c| c["metadata"]["name"] == r.name("tls").as_str())
        .expect("serving Certificate");
    let dns: BTreeSet<String> =
        serde_json::from_value(cert["spec"]["dnsNames"].clone()).expect("dnsNames");
    for name in service_names(r) {
        assert!(dns.contains(&name), "{set:?}: Certificate lacks {name}");
    }
    // The Secret it writes is the one both components mount.
    let secret_name = cert["spec"]["secretName"].as_str().expect("secretName");
    let server = pod_spec_of_deployment(&r.server());
    let tls = volume_at(&server, container(&server, "server"), "/etc/runsecrets/tls");
    assert_eq!(
        tls.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some(secret_name)
    );
    let node = pod_spec_of_daemonset(&r.node());
    let ca_file = flag(container(&node, "plugin"), "server-ca");
    let ca = volume_at(
        &node,
        container(&node, "plugin"),
        ca_file.rsplit_once('/').expect("dir").0,
    );
    assert_eq!(
        ca.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some(secret_name)
    );
    // Its issuer chain is rendered too.
    let issuer = cert["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuerRef");
    assert!(r
        .of_kind("Issuer")
        .iter()
        .any(|i| i["metadata"]["name"] == issuer));
}

// ---------------------------------------------------------------------------------------------
// manifests/

#[test]
fn manifests_match_the_chart() {
    let path = repo().join("manifests/runsecrets.yaml");
    let committed = std::fs::read_to_string(&path).expect("manifests/runsecrets.yaml");
    let committed = parse_documents(&committed);
    let fresh = &rendered(Set::Manifests).docs;
    assert_eq!(
        committed.len(),
        fresh.len(),
        "manifests/runsecrets.yaml is stale: regenerate it with `{REGENERATE}`"
    );
    for (old, new) in committed.iter().zip(fresh) {
        assert!(
            old == new,
            "manifests/runsecrets.yaml is stale at {} {}: regenerate it with `{REGENERATE}`",
            new["kind"],
            new["metadata"]["name"]
        );
    }
    // `kubectl apply -f` creates the namespace first, and the rest goes into it.
    let ns: Namespace = serde_json::from_value(fresh[0].clone()).expect("Namespace first");
    assert_eq!(ns.metadata.name.as_deref(), Some("runsecrets"));
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
        "the node plugin is privileged"
    );
    // The chart's default values (tls.mode=server) and nothing else: no cert-manager objects,
    // no Helm-generated key material.
    assert_eq!(
        &fresh[1..],
        &rendered(Set::Default).docs[..],
        "manifests/runsecrets.yaml is not the chart with its default values"
    );
    assert!(fresh.iter().all(|d| d["kind"] != "Secret"));
    assert!(fresh.iter().all(|d| !d["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("cert-manager.io/"))));
}
