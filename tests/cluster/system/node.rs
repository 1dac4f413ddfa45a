//! `runsecrets node` as the chart's DaemonSet runs it: its flags with in-cluster paths mapped
//! to the kit's kubelet root, its projected token and CA, and node-driver-registrar.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use serde_json::Value;

use super::System;
use crate::chart::{container, flag, launch, port_of};
use crate::{eventually, say};

impl System {
    pub(super) fn start_node(&mut self) {
        say("  runsecrets node with the chart's arguments, node-driver-registrar");
        let pod = self.chart.node_pod();
        let plugin = container(&pod, "plugin").clone();
        let registrar = container(&pod, "node-driver-registrar");
        let ns = self.chart.namespace.clone();
        let sa = pod
            .service_account_name
            .clone()
            .expect("node ServiceAccount");
        // Its own identity, as the DaemonSet projects it.
        let (audience, seconds) = projected_token(&pod, &plugin, &flag(&plugin, "token-file"));
        let token = self.token(&ns, &sa, Some(&audience), seconds);
        let token_file = self.work.join("node-token");
        std::fs::write(&token_file, token).expect("write node token");

        // In-cluster paths under the chart's kubelet dir map to the kit's kubelet root.
        let kubelet_dir = flag(&plugin, "kubelet-dir");
        let host = |p: &str| -> PathBuf {
            let rest = p
                .strip_prefix(&kubelet_dir)
                .unwrap_or_else(|| panic!("{p} is not under the chart's --kubelet-dir"));
            PathBuf::from(format!("{}{rest}", self.env.kubelet_root.display()))
        };
        // kubelet dials the registration path; the plugin listens at --endpoint in its
        // container, whose directory is a hostPath: both must be the same file on the node.
        let chart_registration = flag(registrar, "kubelet-registration-path");
        let endpoint = flag(&plugin, "endpoint");
        let socket = endpoint.trim_start_matches("unix://");
        let (dir, file) = socket.rsplit_once('/').expect("--endpoint is a path");
        let host_dir = volume_at(&pod, &plugin, dir)
            .host_path
            .as_ref()
            .map(|h| h.path.clone())
            .expect("the plugin's socket directory is a hostPath");
        assert_eq!(
            format!("{host_dir}/{file}"),
            chart_registration,
            "the registrar registers the socket the plugin listens on"
        );
        let registration = host(&chart_registration);
        assert_eq!(
            registrar.args.as_ref().map(Vec::len),
            Some(2),
            "the registrar takes --csi-address and --kubelet-registration-path, which `kube registrar` sets"
        );
        assert!(
            registration.starts_with(&self.env.plugins_dir),
            "the plugin socket is under the kit's plugins dir"
        );
        let server_url = flag(&plugin, "server");
        let delivery_service = server_url
            .trim_start_matches("https://")
            .split('.')
            .next()
            .expect("service name")
            .to_string();
        let target = self
            .chart
            .target_port(&delivery_service, port_of(&server_url));
        let server = self.chart.server_pod();
        assert_eq!(
            target,
            port_of(&flag(container(&server, "server"), "delivery-listen")),
            "--server reaches the server's delivery listener"
        );
        let fields = self.pod_fields(&pod, "runsecrets-node-host");
        self.node = Some(launch(
            &plugin,
            &fields,
            &[
                ("endpoint", format!("unix://{}", registration.display())),
                (
                    "server",
                    format!("https://127.0.0.1:{}", self.delivery_port),
                ),
                (
                    "server-ca",
                    self.work.join("server-ca.crt").display().to_string(),
                ),
                ("token-file", token_file.display().to_string()),
                ("kubelet-dir", self.env.kubelet_root.display().to_string()),
                (
                    "admin-listen",
                    format!("127.0.0.1:{}", self.node_admin_port),
                ),
            ],
        ));
        // --node-id=$(NODE_NAME), NODE_NAME from spec.nodeName: the node the pods run on.
        let node_id = format!("--node-id={}", self.env.node_name);
        assert!(
            self.node.iter().any(|l| l.args.contains(&node_id)),
            "the plugin's --node-id is its node's name"
        );
        self.run_node();
        let driver = runsecrets::spec::DRIVER_NAME;
        self.kit.registrar(driver, &registration, &registration);
        let k = self.k.clone();
        let node = self.env.node_name.clone();
        eventually(
            "the CSINode to list runsecrets.io",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                let csinode: Value = k.get(None, &format!("csinode/{node}"))?;
                csinode["spec"]["drivers"]
                    .as_array()?
                    .iter()
                    .any(|d| d["name"] == driver)
                    .then_some(())
            },
        );
    }

    /// Starts the node plugin (again) with the chart's arguments.
    pub fn run_node(&mut self) {
        let launch = self.node.take().expect("start_node prepared the plugin");
        // No kubeconfig: the plugin never calls the Kubernetes API (the chart gives it no
        // API token either).
        self.procs.spawn("node", &launch, None);
        self.node = Some(launch);
        let port = self.node_admin_port;
        self.wait_ready("node", port);
    }
}

/// The ConfigMap (name, key) the DaemonSet mounts as the plugin's --server-ca.
pub(super) fn node_ca_configmap(pod: &PodSpec) -> (String, String) {
    let plugin = container(pod, "plugin");
    let ca = flag(plugin, "server-ca");
    let (dir, file) = ca.rsplit_once('/').expect("--server-ca is a path");
    let volume = volume_at(pod, plugin, dir);
    let cm = volume
        .config_map
        .as_ref()
        .expect("--server-ca comes from a ConfigMap");
    let key = cm
        .items
        .iter()
        .flatten()
        .find(|i| i.path == file)
        .map(|i| i.key.clone())
        .unwrap_or_else(|| file.to_string());
    (cm.name.clone(), key)
}

/// The (audience, expirationSeconds) of the projected token at `path` in `c`.
fn projected_token(pod: &PodSpec, c: &Container, path: &str) -> (String, i64) {
    let (dir, file) = path.rsplit_once('/').expect("--token-file is a path");
    let volume = volume_at(pod, c, dir);
    let source = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.service_account_token.as_ref()))
        .filter(|t| t.path == file)
        .expect("--token-file is a projected service-account token");
    (
        source.audience.clone().expect("audience"),
        source.expiration_seconds.unwrap_or(3600),
    )
}

fn volume_at<'a>(pod: &'a PodSpec, c: &Container, dir: &str) -> &'a Volume {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {dir}", c.name));
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("no volume {}", mount.name))
}
