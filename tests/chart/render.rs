//! Linting and rendering the chart, the schema, the objects as Kubernetes types, and
//! manifests/ against the chart.

use super::*;

// ---------------------------------------------------------------------------------------------
// Lint and render

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
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
                    // The CRD is generated by `runsecrets crd` (tests/it/crd.rs checks it).
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
// manifests/

/// What manifests/runsecrets.yaml is rendered from (tests/it/generated.rs checks that the committed
/// file is this render).
#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn manifests_match_the_chart() {
    let fresh = &rendered(Set::Manifests).docs;
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
