//! The committed CustomResourceDefinition is the one the code generates.

#[test]
fn committed_crd_matches_the_rust_type() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/runsecrets/templates/crd-runsecret.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("committed CRD");
    assert!(
        committed == runsecrets::store::resource::crd_yaml(),
        "{path} is stale: regenerate it with `cargo run -- crd > {path}`"
    );
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_norway::from_str(&committed).expect("a CustomResourceDefinition");
    assert_eq!(crd.spec.group, "runsecrets.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    let schema = serde_json::to_string(&crd.spec.versions[0].schema).expect("json");
    assert!(schema.contains("self == oldSelf"), "spec is immutable");
}
