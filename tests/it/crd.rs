//! The CustomResourceDefinition the code generates (tests/it/generated.rs checks that the
//! committed copy is this one).

#[test]
fn the_crd_is_namespaced_and_only_a_reseal_changes_its_spec() {
    let generated = runsecrets::store::resource::crd_yaml();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_norway::from_str(&generated).expect("a CustomResourceDefinition");
    assert_eq!(crd.spec.group, "runsecrets.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    let schema = serde_json::to_string(&crd.spec.versions[0].schema).expect("json");
    // Only a reseal's change passes: name, size (the plaintext's) and grants stay as they were;
    // the real apiserver's verdicts are tests/cluster's `crd::spec_is_immutable`.
    let validations = &crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("spec"))
        .and_then(|s| s.x_kubernetes_validations.clone())
        .expect("spec has CEL rules");
    assert_eq!(validations.len(), 1);
    let rule = &validations[0];
    for kept in [
        "self.name == oldSelf.name",
        "self.size == oldSelf.size",
        "self.serviceAccounts == oldSelf.serviceAccounts",
    ] {
        assert!(rule.rule.contains(kept), "{}", rule.rule);
    }
    for sealing in ["ciphertext", "keyId", "digest"] {
        assert!(!rule.rule.contains(sealing), "{}", rule.rule);
    }
    assert_eq!(
        rule.message.as_deref(),
        Some("a RunSecret's spec is immutable: store the new value as a new secret")
    );
    assert!(schema.contains("oldSelf"), "a transition rule");
}
