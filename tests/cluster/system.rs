//! The system under test on the kit: the chart's objects applied, `runsecrets server` and
//! `runsecrets node` as host processes with the chart's arguments, node-driver-registrar, and
//! the namespaces and secrets the scenarios use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{json, Value};

use crate::api::{self, Kubectl, Out};
use crate::chart::{container, flag, port_of, Chart, Launch};
use crate::kit::{pick_port, Env, Kit};
use crate::{eventually, say};

mod node;
pub mod procs;
mod server;
pub mod values;

pub use procs::Procs;
pub use values::Values;

/// Namespaces of the scenarios.
pub const SHOP: &str = "shop";
pub const OTHER: &str = "other";
pub const ENFORCED: &str = "enforced";
pub const WARNED: &str = "warned";

/// The namespace editor who creates the secrets (RBAC `edit`, which the chart's
/// `runsecrets-edit` aggregates into).
const EDITOR: &str = "deployer";

pub struct System {
    pub kit: Kit,
    pub env: Env,
    pub k: Kubectl,
    pub chart: Chart,
    pub work: PathBuf,
    pub values: Values,
    pub procs: Procs,
    /// Host ports of the server's webhook, delivery and admin listeners, and the node's admin.
    pub webhook_port: u16,
    pub delivery_port: u16,
    pub admin_port: u16,
    pub node_admin_port: u16,
    /// The node plugin's command, kept for its restart.
    node: Option<Launch>,
    editor_kubeconfig: PathBuf,
}

/// The binary under test.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_runsecrets")
}

impl System {
    pub fn start(kit: &Kit) -> System {
        say("  kube up + node-up");
        let env = kit.up();
        let k = Kubectl {
            bin: env.bin.join("kubectl"),
            kubeconfig: env.kubeconfig.clone(),
        };
        say("  render the chart");
        let chart = Chart::render();
        let work = kit.work();
        let mut system = System {
            kit: kit.clone(),
            k,
            work: work.clone(),
            values: Values::new(),
            procs: Procs::new(work.clone()),
            webhook_port: pick_port(),
            delivery_port: pick_port(),
            admin_port: pick_port(),
            node_admin_port: pick_port(),
            node: None,
            editor_kubeconfig: work.join("editor.kubeconfig"),
            chart,
            env,
        };
        system.install();
        system.start_server();
        system.start_node();
        system.create_secrets();
        system
    }

    /// Namespace, CRD and the chart's objects that need no pod network.
    fn install(&self) {
        say("  namespace, CRD from `runsecrets crd`, the chart's RBAC, CSIDriver and webhooks");
        let ns = &self.chart.namespace;
        self.k.apply(&[namespace(
            ns,
            &[("pod-security.kubernetes.io/enforce", "privileged")],
        )]);
        let crd = api::run(Command::new(exe()).arg("crd"), None);
        assert!(crd.ok, "runsecrets crd: {}", crd.stderr);
        self.k.ok(&["apply", "-f", "-"], Some(&crd.stdout));
        self.k.ok(
            &[
                "wait",
                "--for=condition=Established",
                "crd/runsecrets.runsecrets.io",
                "--timeout=60s",
            ],
            None,
        );
        // Each Service stands for the server listener its target port reaches.
        let server = self.chart.server_pod();
        let c = container(&server, "server");
        let mut urls = BTreeMap::new();
        for service in self.chart.services() {
            let target = self.chart.target_port(&service, 443);
            let host_port = if target == port_of(&flag(c, "listen")) {
                self.webhook_port
            } else if target == port_of(&flag(c, "delivery-listen")) {
                self.delivery_port
            } else {
                panic!("Service {service} reaches port {target}, no listener of the server")
            };
            urls.insert(service, format!("https://127.0.0.1:{host_port}"));
        }
        self.k.apply(&self.chart.applied(&urls));
    }

    /// A kubeconfig for a ServiceAccount: what its in-cluster token gives a pod, with the
    /// pod's namespace as the default one (the server's own namespace comes from there).
    fn service_account_kubeconfig(&self, ns: &str, sa: &str, path: &Path) {
        let token = self.token(ns, sa, None, 7200);
        let admin: Value = serde_norway::from_str(
            &std::fs::read_to_string(&self.env.kubeconfig).expect("admin kubeconfig"),
        )
        .expect("kubeconfig YAML");
        let cluster = admin["clusters"][0]["cluster"].clone();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube", "cluster": cluster}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": sa, "context": {"cluster": "kube", "user": sa, "namespace": ns}}],
            "current-context": sa,
        });
        std::fs::write(path, config.to_string()).expect("write kubeconfig");
    }

    /// What the Downward API would tell the chart's pod `name` here.
    fn pod_fields(&self, pod: &PodSpec, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("metadata.name", name.to_string()),
            ("metadata.namespace", self.chart.namespace.clone()),
            ("spec.nodeName", self.env.node_name.clone()),
            (
                "spec.serviceAccountName",
                pod.service_account_name.clone().unwrap_or_default(),
            ),
            ("status.podIP", "127.0.0.1".into()),
            ("status.hostIP", "127.0.0.1".into()),
        ]
    }

    /// A TokenRequest for `ns/sa`.
    fn token(&self, ns: &str, sa: &str, audience: Option<&str>, seconds: i64) -> String {
        let mut args = vec![
            "create".to_string(),
            "token".into(),
            sa.into(),
            "-n".into(),
            ns.into(),
            format!("--duration={seconds}s"),
        ];
        if let Some(audience) = audience {
            args.push(format!("--audience={audience}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.k.ok(&args, None).trim().to_string()
    }

    /// The test namespaces and secrets, created by a namespace editor with the CLI.
    fn create_secrets(&mut self) {
        say("  namespaces, and secrets created with `runsecrets secret create` by an editor");
        self.k.apply(&[
            namespace(SHOP, &[]),
            namespace(OTHER, &[]),
            namespace(ENFORCED, &[("runsecrets.io/enforce", "baseline")]),
            namespace(WARNED, &[("runsecrets.io/warn", "baseline")]),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": EDITOR, "namespace": SHOP}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": EDITOR, "namespace": SHOP},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"kind": "ServiceAccount", "name": EDITOR, "namespace": SHOP}]}),
        ]);
        // The aggregation controller adds runsecrets-edit to `edit` shortly after it exists.
        let k = self.k.clone();
        let who = format!("--as=system:serviceaccount:{SHOP}:{EDITOR}");
        eventually(
            "`edit` to include RunSecrets (aggregated runsecrets-edit)",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                let out = k.run(
                    &[
                        "auth",
                        "can-i",
                        "create",
                        "runsecrets.runsecrets.io",
                        "-n",
                        SHOP,
                        &who,
                    ],
                    None,
                );
                (out.stdout.trim() == "yes").then_some(())
            },
        );
        let kubeconfig = self.editor_kubeconfig.clone();
        self.service_account_kubeconfig(SHOP, EDITOR, &kubeconfig);
        for (name, value, extra) in self.values.initial() {
            let mut args = vec!["create"];
            args.extend(extra.iter().map(String::as_str));
            args.extend([name, "-"]);
            let out = self.secret(&args, Some(value.as_bytes()));
            assert!(out.ok, "secret create {name}: {}", out.stderr);
        }
    }

    /// `runsecrets secret ARGS --store kubernetes -n shop` as the namespace editor.
    pub fn secret(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        self.as_editor(&["secret"], args, stdin)
    }

    /// `runsecrets seal ARGS --store kubernetes -n shop` as the namespace editor.
    pub fn seal(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        self.as_editor(&["seal"], args, stdin)
    }

    fn as_editor(&self, verb: &[&str], args: &[&str], stdin: Option<&[u8]>) -> Out {
        api::run(
            Command::new(exe())
                .env_clear()
                .env("KUBECONFIG", &self.editor_kubeconfig)
                .args(verb)
                .args(["--store", "kubernetes", "-n", SHOP])
                .args(args),
            stdin,
        )
    }

    /// Stops our processes (the kit's go with `kube down`).
    pub fn stop(mut self) {
        self.procs.stop_all();
    }
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}
