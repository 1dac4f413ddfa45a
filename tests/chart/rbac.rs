//! RBAC: what the chart grants against the API calls the code makes.

use super::*;

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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
                rule(&[""], &["secrets"], &[&keyring], &["update"]),
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
