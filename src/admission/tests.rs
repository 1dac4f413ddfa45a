//! Mutation cases the apiserver fixtures do not cover: other webhooks' mounts, reinvocation,
//! conflicts, and templates inside workloads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::{json, Value};

use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(annotations: &BTreeMap<String, String>, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": annotations}, "spec": spec})
}

/// Runs the mutation on a pod document and applies the patch, as the apiserver would.
fn run(doc: &Value) -> Result<Option<Value>, Denial> {
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(doc["metadata"]["annotations"].clone()).expect("annotations");
    let spec: PodSpec = serde_json::from_value(doc["spec"].clone()).expect("spec");
    match mutate(Some(&annotations), &spec, &[])? {
        Mutation::Patch(patch) => {
            let mut out = doc.clone();
            json_patch::patch(&mut out, &patch).expect("patch applies");
            serde_json::from_value::<Pod>(out.clone()).expect("still a Pod");
            Ok(Some(out))
        }
        Mutation::AlreadyInjected | Mutation::NotRequested => Ok(None),
    }
}

fn attribute(doc: &Value, key: &str) -> Option<String> {
    let volumes = doc["spec"]["volumes"].as_array()?;
    let ours = volumes.iter().find(|v| v["name"] == "runsecrets")?;
    ours["csi"]["volumeAttributes"][key]
        .as_str()
        .map(str::to_string)
}

fn app(mounts: Value) -> Value {
    json!({"containers": [{"name": "app", "image": "busybox", "volumeMounts": mounts}]})
}

#[test]
fn pods_without_the_annotation_are_not_touched() {
    let doc = pod(&annotations(&[("other", "x")]), app(json!([])));
    assert!(run(&doc).expect("allowed").is_none());
}

#[test]
fn mounts_of_other_webhooks_under_run_secrets_become_mount_points() {
    let spec = app(json!([
        {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"},
        {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        {"name": "azure", "mountPath": "/run/secrets/azure/tokens/"},
    ]));
    let doc = pod(&annotations(&[(spec::SECRETS_ANNOTATION, "db")]), spec);
    let out = run(&doc).expect("allowed").expect("patched");
    assert_eq!(
        attribute(&out, spec::MOUNTPOINTS_ATTRIBUTE).as_deref(),
        Some("azure/tokens\neks.amazonaws.com/serviceaccount")
    );
}

#[test]
fn reinvocation_after_another_webhook_adds_a_mount_refreshes_mount_points_once() {
    let doc = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([])),
    );
    let mut injected = run(&doc).expect("allowed").expect("patched");
    assert_eq!(attribute(&injected, spec::MOUNTPOINTS_ATTRIBUTE), None);
    // A later webhook (e.g. EKS pod identity) adds its token mount; we are reinvoked.
    injected["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}));
    let refreshed = run(&injected)
        .expect("allowed")
        .expect("mount points updated");
    assert_eq!(
        attribute(&refreshed, spec::MOUNTPOINTS_ATTRIBUTE).as_deref(),
        Some("eks.amazonaws.com/serviceaccount")
    );
    let mounts = refreshed["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert_eq!(
        mounts.iter().filter(|m| m["name"] == "runsecrets").count(),
        1,
        "no second mount"
    );
    assert!(
        run(&refreshed).expect("allowed").is_none(),
        "third pass is a no-op"
    );
}

#[test]
fn changed_references_on_an_injected_pod_are_refused() {
    let doc = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([])),
    );
    let mut injected = run(&doc).expect("allowed").expect("patched");
    injected["metadata"]["annotations"][spec::SECRETS_ANNOTATION] = "db;other".into();
    let denial = run(&injected).expect_err("stale injection");
    assert_eq!(denial.reason, DenyReason::Conflict);
    assert!(denial
        .message
        .contains("already has a volume named \"runsecrets\""));
}

#[test]
fn a_user_volume_named_runsecrets_is_a_conflict() {
    let mut spec = app(json!([]));
    spec["volumes"] = json!([{"name": "runsecrets", "emptyDir": {}}]);
    let doc = pod(&annotations(&[(spec::SECRETS_ANNOTATION, "db")]), spec);
    assert_eq!(
        run(&doc).expect_err("conflict").reason,
        DenyReason::Conflict
    );
}

#[test]
fn a_mount_at_an_absolute_target_or_over_a_target_is_a_conflict() {
    let declared = annotations(&[(
        spec::SECRETS_ANNOTATION,
        "source=tok,target=/etc/app/token;db",
    )]);
    for (mount_path, needle) in [
        ("/etc/app/token", "overlaps the target of secret \"tok\""),
        // A directory mount above the file would hide it.
        ("/etc/app", "overlaps the target of secret \"tok\""),
        (
            "/run/secrets/db",
            "shares the directory \"db\" with the target of secret \"db\"",
        ),
    ] {
        let doc = pod(
            &declared,
            app(json!([{"name": "cfg", "mountPath": mount_path}])),
        );
        let denial = run(&doc).expect_err("conflict");
        assert_eq!(denial.reason, DenyReason::Conflict);
        assert!(
            denial.message.contains(needle),
            "{mount_path}: {}",
            denial.message
        );
    }
}

#[test]
fn mount_paths_that_could_smuggle_lines_or_files_are_refused() {
    let declared = annotations(&[(spec::SECRETS_ANNOTATION, "db")]);
    for (mount, needle) in [
        (
            json!({"name": "x", "mountPath": "/var/run/secrets/x\n/etc/cron.d"}),
            "control character",
        ),
        (
            json!({"name": "x", "mountPath": "/run/secrets/a/../../etc"}),
            "\"..\"",
        ),
        (
            json!({"name": "x", "mountPath": "/run/secrets/legacy", "subPath": "token"}),
            "subPath",
        ),
        (
            json!({"name": "x", "mountPath": "/run/secrets/db_dir/x"}),
            "cannot be created",
        ),
    ] {
        let spec = app(json!([mount]));
        let declared = if needle == "cannot be created" {
            annotations(&[(spec::SECRETS_ANNOTATION, "source=db,target=db_dir/file")])
        } else {
            declared.clone()
        };
        match run(&pod(&declared, spec)) {
            Err(d) => assert!(
                d.message.contains(needle) || d.message.contains("shares the directory"),
                "{needle}: {}",
                d.message
            ),
            Ok(out) => panic!("{needle}: accepted {out:?}"),
        }
    }
}

#[test]
fn a_forged_volume_or_mount_is_not_trusted() {
    let doc = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([])),
    );
    let injected = run(&doc).expect("allowed").expect("patched");
    // The author copies the injected pod but makes the volume writable.
    let mut forged = injected.clone();
    forged["spec"]["volumes"][0]["csi"]["readOnly"] = false.into();
    assert_eq!(
        run(&forged).expect_err("forged").reason,
        DenyReason::Conflict
    );
    // Or asks for other secrets than the annotation declares.
    let mut forged = injected.clone();
    forged["spec"]["volumes"][0]["csi"]["volumeAttributes"][spec::SECRETS_ATTRIBUTE] =
        "source=other,target=db,uid=0,gid=0,mode=0444".into();
    assert_eq!(
        run(&forged).expect_err("forged").reason,
        DenyReason::Conflict
    );
    // Or mounts the volume writable somewhere.
    let mut forged = injected.clone();
    forged["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = false.into();
    assert_eq!(
        run(&forged).expect_err("forged").reason,
        DenyReason::Conflict
    );
    // Before injection, a mount named like our volume is refused outright.
    let early = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([{"name": "runsecrets", "mountPath": "/data"}])),
    );
    assert!(run(&early)
        .expect_err("refused")
        .message
        .contains("runsecrets adds itself"));
}

#[test]
fn sidecars_added_after_injection_are_left_alone() {
    let doc = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([])),
    );
    let mut injected = run(&doc).expect("allowed").expect("patched");
    injected["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({
            "name": "mesh-proxy", "image": "proxy",
            "volumeMounts": [{"name": "old", "mountPath": "/run/secrets"}],
        }));
    assert!(run(&injected)
        .expect("a later sidecar does not deny the pod")
        .is_none());
}

#[test]
fn unknown_container_names_are_listed_with_the_real_ones() {
    let declared = annotations(&[
        (spec::SECRETS_ANNOTATION, "db"),
        (spec::CONTAINERS_ANNOTATION, "app,sidecar"),
    ]);
    let denial = run(&pod(&declared, app(json!([])))).expect_err("unknown");
    assert_eq!(denial.reason, DenyReason::InvalidAnnotation);
    assert!(
        denial
            .message
            .contains("\"sidecar\" match no container (the pod has: app)"),
        "{}",
        denial.message
    );
}

#[test]
fn an_empty_volume_list_is_appended_to() {
    let mut spec = app(json!([]));
    spec["volumes"] = json!([]);
    let out = run(&pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        spec,
    ))
    .expect("allowed")
    .expect("patched");
    assert_eq!(out["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/run/secrets"
    );
}

#[test]
fn workload_templates_are_mutated_under_their_prefix() {
    let template_annotations = annotations(&[(spec::SECRETS_ANNOTATION, "db")]);
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"metadata": {"annotations": template_annotations}, "spec": app(json!(null))}},
    });
    let t = workload::read_object("apps", "Deployment", deployment.clone())
        .expect("readable")
        .expect("has a template kind")
        .template
        .expect("has a template");
    let Mutation::Patch(patch) = mutate(t.annotations.as_ref(), &t.spec, t.prefix).expect("ok")
    else {
        panic!("expected a patch");
    };
    json_patch::patch(&mut deployment, &patch).expect("applies");
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["spec"]["volumes"][0]["csi"]["driver"],
        "runsecrets.io"
    );
    assert!(template["metadata"]["annotations"][spec::INJECTED_ANNOTATION].is_string());
}

#[test]
fn kinds_without_templates_are_not_read() {
    for (group, kind) in [
        ("", "ConfigMap"),
        ("apps", "ControllerRevision"),
        ("batch", "Pod"),
    ] {
        assert!(
            workload::template_path(group, kind).is_none(),
            "{group}/{kind}"
        );
    }
    assert_eq!(
        workload::template_path("batch", "CronJob"),
        Some(&["spec", "jobTemplate", "spec", "template"][..])
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn mount_path() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("/run/secrets".to_string()),
            3 => Just("/var/run/secrets/kubernetes.io/serviceaccount".to_string()),
            2 => "/(var/)?run/secrets/[a-z.]{1,6}(/[a-z.\\n]{1,6}){0,2}",
            6 => "/[a-z]{1,5}(/[a-z]{1,5}){0,2}",
            1 => "\\PC{0,20}",
        ]
    }

    fn container() -> impl Strategy<Value = Value> {
        (
            prop_oneof![Just("app"), Just("side"), Just("init")],
            prop::collection::vec((mount_path(), any::<bool>()), 0..3),
            prop::collection::vec(("[A-Z_]{1,12}", "[a-zA-Z0-9/+:@.-]{0,30}"), 0..3),
        )
            .prop_map(|(name, mounts, env)| {
                let mounts: Vec<Value> = mounts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (path, sub))| {
                        let mut m = json!({"name": format!("v{i}"), "mountPath": path});
                        if sub {
                            m["subPath"] = "f".into();
                        }
                        m
                    })
                    .collect();
                // Every value carries a marker so the test can look for it in answers.
                let env: Vec<Value> = env
                    .into_iter()
                    .map(|(k, v)| json!({"name": k, "value": format!("zq9{v}")}))
                    .collect();
                json!({"name": name, "image": "i", "volumeMounts": mounts, "env": env})
            })
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a-z][a-z0-9_]{0,8}",
            2 => ("[a-z]{1,6}", "[a-z./]{1,12}", "[0-9]{1,4}")
                .prop_map(|(s, t, m)| format!("source={s},target={t},mode={m}")),
            3 => ("[a-z]{1,6}", "/[a-z]{1,5}(/[a-z]{1,5}){0,2}")
                .prop_map(|(s, t)| format!("src={s},target={t},uid=7")),
            1 => "\\PC{0,16}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn review_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = review(Endpoint::Mutate, &body);
            let _ = review(Endpoint::Validate(Levels::only(policy::Mode::Enforce, policy::Level::Strict)), &body);
        }

        #[test]
        fn review_never_panics_on_mangled_pods(
            spec in json_value(),
            secrets in "\\PC{0,80}",
            containers in "\\PC{0,20}",
            operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        ) {
            let body = json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "operation": operation, "userInfo": {}, "name": "p", "namespace": "ns",
                    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
                        spec::SECRETS_ANNOTATION: secrets, spec::CONTAINERS_ANNOTATION: containers}},
                        "spec": spec},
                    "oldObject": null,
                }
            });
            let bytes = serde_json::to_vec(&body).expect("json");
            for endpoint in [Endpoint::Mutate, Endpoint::Validate(Levels::only(policy::Mode::Warn, policy::Level::Strict))] {
                let answer = review(endpoint, &bytes).expect("a parsed review is always answered");
                let out: Value = serde_json::from_slice(&answer.body).expect("json answer");
                prop_assert_eq!(&out["response"]["uid"], "u");
            }
        }

        #[test]
        fn pod_shaped_input_gives_valid_patches_and_never_echoes_values(
            containers in prop::collection::vec(container(), 1..4),
            entries in prop::collection::vec(entry(), 1..4),
            selection in prop_oneof![6 => Just(None), 3 => Just(Some("app")), 1 => Just(Some("app,ghost"))],
        ) {
            let mut annotations = serde_json::Map::new();
            annotations.insert(spec::SECRETS_ANNOTATION.into(), entries.join("\n").into());
            if let Some(sel) = selection {
                annotations.insert(spec::CONTAINERS_ANNOTATION.into(), sel.into());
            }
            let object = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": annotations},
                "spec": {"containers": containers}});
            let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "operation": "CREATE", "userInfo": {}, "name": "p", "namespace": "ns",
                    "object": object.clone()}});
            let bytes = serde_json::to_vec(&body).expect("json");
            for endpoint in [Endpoint::Mutate, Endpoint::Validate(Levels::only(policy::Mode::Enforce, policy::Level::Baseline))] {
                let answer = review(endpoint, &bytes).expect("answered");
                let text = String::from_utf8_lossy(&answer.body).into_owned();
                prop_assert!(!text.contains("zq9"), "an env value reached the answer: {}", text);
                let out: Value = serde_json::from_slice(&answer.body).expect("json");
                let Some(patch) = out["response"]["patch"].as_str() else { continue };
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
                let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
                let mut patched = object.clone();
                json_patch::patch(&mut patched, &patch).expect("patch applies");
                let pod: Pod = serde_json::from_value(patched.clone()).expect("a Pod");
                let volume = pod.spec.expect("spec").volumes.expect("volumes")
                    .into_iter().find(|v| v.name == spec::VOLUME_NAME).expect("our volume");
                let attributes = volume.csi.expect("csi").volume_attributes.expect("attributes");
                prop_assert!(spec::parse_secrets(&attributes[spec::SECRETS_ATTRIBUTE]).is_ok());
                for line in attributes.get(spec::MOUNTPOINTS_ATTRIBUTE).into_iter().flat_map(|v| v.lines()) {
                    prop_assert!(
                        matches!(spec::Target::parse(line), Ok(spec::Target::InVolume(_))),
                        "mount point {:?} is not a clean relative path", line
                    );
                }
                // Reposting the injected pod is a no-op.
                let mut again = body.clone();
                again["request"]["object"] = patched;
                let second = review(Endpoint::Mutate, &serde_json::to_vec(&again).expect("json")).expect("answered");
                let second: Value = serde_json::from_slice(&second.body).expect("json");
                prop_assert_eq!(&second["response"]["allowed"], true);
                prop_assert!(second["response"].get("patch").is_none());
            }
        }
    }
}
