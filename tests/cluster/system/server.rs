//! `runsecrets server` as the chart's Deployment runs it, and its tls.mode=server CA: created
//! in a Secret, published to the webhook configurations and the node plugins' ConfigMap.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::node::node_ca_configmap;
use super::System;
use crate::api::http_get;
use crate::chart::{container, flag, launch};
use crate::{eventually, say};

impl System {
    pub(super) fn start_server(&mut self) {
        say("  runsecrets server with the chart's arguments");
        let pod = self.chart.server_pod();
        let c = container(&pod, "server").clone();
        let ns = self.chart.namespace.clone();
        let sa = pod
            .service_account_name
            .clone()
            .expect("server ServiceAccount");
        let kubeconfig = self.work.join("server.kubeconfig");
        self.service_account_kubeconfig(&ns, &sa, &kubeconfig);
        let fields = self.pod_fields(&pod, "runsecrets-server-host");
        let launch = launch(
            &c,
            &fields,
            &[
                ("listen", format!("127.0.0.1:{}", self.webhook_port)),
                ("admin-listen", format!("127.0.0.1:{}", self.admin_port)),
                (
                    "delivery-listen",
                    format!("127.0.0.1:{}", self.delivery_port),
                ),
                (
                    "data-dir",
                    self.work.join("server-data").display().to_string(),
                ),
            ],
        );
        self.procs.spawn("server", &launch, Some(&kubeconfig));
        let admin = self.admin_port;
        self.wait_ready("server", admin);

        // tls.mode=server: the CA Secret the server made, published where the chart says.
        let ca_secret = flag(&c, "tls-ca-secret");
        let secret: Secret = self
            .k
            .get(Some(&ns), &format!("secret/{ca_secret}"))
            .unwrap_or_else(|| panic!("the server did not create Secret {ns}/{ca_secret}"));
        let data = secret.data.unwrap_or_default();
        assert!(data.contains_key("ca.key"), "the CA Secret holds its key");
        let ca = String::from_utf8(data.get("ca.crt").expect("ca.crt").0.clone()).expect("PEM");
        let bundle = B64.encode(&ca);
        // Every --publish-ca-to target gets it, and they cover what must trust the server: the
        // chart's webhook configurations and the ConfigMap the DaemonSet mounts as --server-ca.
        let targets: Vec<(String, String)> = c
            .args
            .iter()
            .flatten()
            .filter_map(|a| a.strip_prefix("--publish-ca-to="))
            .filter_map(|t| t.split_once('/'))
            .map(|(kind, name)| (kind.to_ascii_lowercase(), name.to_string()))
            .collect();
        let (cm_name, cm_key) = node_ca_configmap(&self.chart.node_pod());
        let mut needed = self.chart.webhook_configurations();
        needed.push(("configmap".into(), cm_name.clone()));
        for target in &needed {
            assert!(
                targets.contains(target),
                "the server does not publish its CA to {}/{}",
                target.0,
                target.1
            );
        }
        let k = self.k.clone();
        let mut published = String::new();
        for (kind, name) in &targets {
            let what = format!("the CA in {kind}/{name}");
            eventually(
                &what,
                Duration::from_secs(30),
                Duration::from_millis(250),
                || {
                    let object: Value = k.get(Some(&ns), &format!("{kind}/{name}"))?;
                    if kind == "configmap" {
                        published = object["data"][&cm_key].as_str()?.to_string();
                        return (published == ca).then_some(());
                    }
                    let hooks = object["webhooks"].as_array()?;
                    (!hooks.is_empty()
                        && hooks
                            .iter()
                            .all(|w| w["clientConfig"]["caBundle"] == bundle))
                    .then_some(())
                },
            );
        }
        std::fs::write(self.work.join("server-ca.crt"), &published).expect("write CA");
    }

    pub(super) fn wait_ready(&mut self, name: &str, port: u16) {
        let procs = &mut self.procs;
        eventually(
            &format!("{name} /readyz"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                assert!(
                    procs.alive(name),
                    "{name} exited:\n{}",
                    procs.log_tail(name)
                );
                (http_get(port, "/readyz").map(|(s, _)| s) == Some(200)).then_some(())
            },
        );
    }
}
