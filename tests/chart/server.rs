//! The server: its command line, its CA in tls.mode=server, its Services and its pod.

use super::*;

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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

/// tls.mode=server: the names the server is given are the objects the chart renders (and the
/// one it must not render), so renaming one side without the other fails here.
#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
