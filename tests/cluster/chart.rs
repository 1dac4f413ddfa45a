//! The chart, rendered with its default values (tls.mode=server) by tests/helm/render.py (Helm's
//! Go SDK), and what of it reaches the cluster: the objects that need no pod network are applied
//! as rendered; the Deployment and the DaemonSet become host processes with the rendered
//! arguments; each Service a webhook calls becomes a loopback URL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Applied to the cluster exactly as rendered (webhooks: Service swapped for a URL).
pub const APPLIED: [&str; 8] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "CSIDriver",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Rendered but not applied, and what stands in for each.
pub const REPLACED: [(&str, &str); 5] = [
    ("Deployment", "`runsecrets server` as a host process"),
    (
        "DaemonSet",
        "`runsecrets node` and `kube registrar` as host processes",
    ),
    (
        "Service",
        "https://127.0.0.1:PORT URLs (the kit has no Services)",
    ),
    ("PodDisruptionBudget", "nothing: no server pods to disrupt"),
    (
        "CustomResourceDefinition",
        "the same CRD from `runsecrets crd`",
    ),
];

pub struct Chart {
    pub docs: Vec<Value>,
    pub namespace: String,
}

impl Chart {
    pub fn render() -> Chart {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        // render.py makes (once) and uses the virtualenv tests/chart/main.rs uses too.
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
        let out = Command::new("python3")
            .arg(repo.join("tests/helm/render.py"))
            .arg("--venv")
            .arg(&venv)
            .current_dir(repo)
            .output()
            .expect("run python3 tests/helm/render.py");
        assert!(
            out.status.success(),
            "the chart does not render:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = String::from_utf8(out.stdout).expect("utf-8 YAML");
        let docs: Vec<Value> = serde_norway::Deserializer::from_str(&yaml)
            .map(|doc| Value::deserialize(doc).expect("a YAML document"))
            .filter(|v| !v.is_null())
            .collect();
        let namespace = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .and_then(|d| d["metadata"]["namespace"].as_str())
            .expect("the server Deployment's namespace")
            .to_string();
        let chart = Chart { docs, namespace };
        // A kind the chart gains must be placed in one of the two lists, not dropped unseen.
        for doc in &chart.docs {
            let kind = doc["kind"].as_str().unwrap_or_default();
            assert!(
                APPLIED.contains(&kind) || REPLACED.iter().any(|(k, _)| *k == kind),
                "the chart renders a {kind}, which the cluster test neither applies nor replaces"
            );
        }
        chart
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "the chart renders one {kind}");
        serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    pub fn server_pod(&self) -> PodSpec {
        let d: Deployment = self.one("Deployment");
        d.spec
            .and_then(|s| s.template.spec)
            .expect("server pod spec")
    }

    pub fn node_pod(&self) -> PodSpec {
        let d: DaemonSet = self.one("DaemonSet");
        d.spec.and_then(|s| s.template.spec).expect("node pod spec")
    }

    /// The objects to apply, each webhook's Service replaced by its base URL in `urls` (by
    /// Service name) followed by the webhook's path.
    pub fn applied(&self, urls: &BTreeMap<String, String>) -> Vec<Value> {
        let mut out = Vec::new();
        for doc in &self.docs {
            let kind = doc["kind"].as_str().unwrap_or_default();
            if !APPLIED.contains(&kind) {
                continue;
            }
            let mut doc = doc.clone();
            if let Some(hooks) = doc["webhooks"].as_array_mut() {
                for hook in hooks {
                    let config = &mut hook["clientConfig"];
                    let service = config
                        .as_object_mut()
                        .and_then(|c| c.remove("service"))
                        .expect("the chart's webhooks call a Service");
                    let name = service["name"].as_str().expect("service name");
                    let base = urls.get(name).unwrap_or_else(|| {
                        panic!("a webhook calls Service {name}, which has no stand-in")
                    });
                    let path = service["path"].as_str().unwrap_or("/");
                    config["url"] = Value::String(format!("{base}{path}"));
                }
            }
            out.push(doc);
        }
        out
    }

    /// The Service `name`'s target port for its service port `port`.
    pub fn target_port(&self, name: &str, port: i32) -> i32 {
        let service = self
            .of_kind("Service")
            .into_iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Service {name} in the chart"));
        let service: Service = serde_json::from_value(service.clone()).expect("Service");
        let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
        let found = ports
            .iter()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("Service {name} has no port {port}"));
        match &found.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p)) => *p,
            other => panic!("Service {name}: target port {other:?} is not a number"),
        }
    }

    /// (kind in lower case, name) of the rendered webhook configurations.
    pub fn webhook_configurations(&self) -> Vec<(String, String)> {
        self.docs
            .iter()
            .filter(|d| d["webhooks"].is_array())
            .filter_map(|d| {
                Some((
                    d["kind"].as_str()?.to_ascii_lowercase(),
                    d["metadata"]["name"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Service names, to map each to the listener it reaches.
    pub fn services(&self) -> Vec<String> {
        self.of_kind("Service")
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }
}

pub fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in the chart's pod"))
}

/// The value of `--name=value` in a container's args.
pub fn flag(c: &Container, name: &str) -> String {
    let prefix = format!("--{name}=");
    let found: Vec<&str> = c
        .args
        .iter()
        .flatten()
        .filter_map(|a| a.strip_prefix(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "{}: one --{name}", c.name);
    found[0].to_string()
}

/// A container as a host process: its args and env as kubelet would give them.
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The container's env, resolved as kubelet does: literal values, and the Downward API fields
/// in `fields` (`spec.nodeName`, `metadata.namespace`, ...). Anything else fails the test, so a
/// chart change that needs more is seen here.
fn container_env(c: &Container, fields: &[(&str, String)]) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .map(|var| {
            if let Some(value) = &var.value {
                return (var.name.clone(), value.clone());
            }
            let path = var
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str())
                .unwrap_or_else(|| {
                    panic!("{}: env {} is not a literal or a field", c.name, var.name)
                });
            let value = fields
                .iter()
                .find(|(f, _)| *f == path)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: env {} reads {path}, which the test does not provide",
                        c.name, var.name
                    )
                });
            (var.name.clone(), value)
        })
        .collect()
}

/// `$(VAR)` references in an argument, expanded from the container's env as kubelet does.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_string();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

/// The container as a host process: env resolved from `fields`, `$(VAR)` expanded in the args,
/// then each `--flag=` in `swaps` given its host value. Every swapped flag must be in the chart
/// (a renamed flag fails here), and every other flag is kept as rendered: that is what the test
/// proves about the chart's wiring.
pub fn launch(c: &Container, fields: &[(&str, String)], swaps: &[(&str, String)]) -> Launch {
    let env = container_env(c, fields);
    let mut seen = vec![false; swaps.len()];
    let args: Vec<String> = c
        .args
        .iter()
        .flatten()
        .map(|arg| {
            for (i, (name, value)) in swaps.iter().enumerate() {
                if arg.starts_with(&format!("--{name}=")) {
                    seen[i] = true;
                    return format!("--{name}={value}");
                }
            }
            expand(arg, &env)
        })
        .collect();
    for (i, (name, _)) in swaps.iter().enumerate() {
        assert!(seen[i], "{}: the chart has no --{name}", c.name);
    }
    for arg in &args {
        assert!(
            !arg.contains("$("),
            "{}: {arg} refers to an env var it does not have",
            c.name
        );
    }
    Launch { args, env }
}

/// The port of a `HOST:PORT` listen address.
pub fn port_of(addr: &str) -> i32 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr}: no port"))
}
