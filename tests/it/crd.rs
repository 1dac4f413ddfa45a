//! The CustomResourceDefinition the code generates (tests/it/generated.rs checks that the
//! committed copy is this one).

#[test]
fn the_crd_is_namespaced_and_its_spec_immutable() {
    let generated = runsecrets::store::resource::crd_yaml();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_norway::from_str(&generated).expect("a CustomResourceDefinition");
    assert_eq!(crd.spec.group, "runsecrets.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    let schema = serde_json::to_string(&crd.spec.versions[0].schema).expect("json");
    assert!(schema.contains("self == oldSelf"), "spec is immutable");
}
