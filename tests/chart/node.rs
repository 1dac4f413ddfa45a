//! The node plugin: its CSI driver, its command line and its wiring to kubelet and the server.

use super::*;

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
