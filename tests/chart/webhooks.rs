//! The webhook configurations: the routes they call and the objects they see.

use super::*;

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn pod_webhooks_never_see_kube_system_or_the_release_namespace() {
    for set in [
        Set::Default,
        Set::Helm,
        Set::Secret,
        Set::CertManager,
        Set::Tuned,
    ] {
        let r = rendered(set);
        for (name, _, exprs, _) in r.webhooks() {
            if name == RUNSECRET_HOOK {
                continue;
            }
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

/// The RunSecret webhook.
const RUNSECRET_HOOK: &str = "runsecrets.validate.runsecrets.io";

/// The RunSecret check runs in every namespace, kube-system, the release's own and
/// webhook.excludeNamespaces included: an excluded namespace would take any spec update
/// unchecked (a value swapped under its name, a guess tested without the reseal tag).
#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn the_runsecret_webhook_sees_every_namespace() {
    for set in [Set::Default, Set::Tuned] {
        let r = rendered(set);
        let hook = r
            .validating()
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .find(|w| w.name == RUNSECRET_HOOK)
            .unwrap_or_else(|| panic!("{set:?}: no {RUNSECRET_HOOK}"));
        assert_eq!(
            hook.namespace_selector, None,
            "{set:?}: {RUNSECRET_HOOK} leaves namespaces out"
        );
        assert_eq!(hook.object_selector, None, "{set:?}");
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"), "{set:?}");
    }
}

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
                assert_eq!(rules[0].operations, Some(strings(&["CREATE", "UPDATE"])));
                // An update reaches the server only when it changes the envelope (a reseal).
                let conditions = hook.match_conditions.clone().expect("matchConditions");
                assert_eq!(
                    conditions[0].expression,
                    "request.operation == 'CREATE' || object.spec != oldObject.spec"
                );
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
