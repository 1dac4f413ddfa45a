//! Mutation cases the apiserver fixtures do not cover: other webhooks' mounts, reinvocation,
//! conflicts, and templates inside workloads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
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
    let spec: super::pod::PodSpec = serde_json::from_value(doc["spec"].clone()).expect("spec");
    match mutate(Some(&annotations), &spec, &[])? {
        Mutation::Patch(patch) => {
            let mut out = doc.clone();
            json_patch::patch(&mut out, &patch.to_json_patch().expect("a JSON patch"))
                .expect("patch applies");
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

/// What the webhook admits, the node plugin mounts: mount points the plugin would refuse
/// are denied at `kubectl apply`, not found later as a pod stuck in ContainerCreating.
#[test]
fn mount_points_the_node_plugin_would_refuse_are_denied() {
    let declared = annotations(&[(spec::SECRETS_ANNOTATION, "db")]);
    let mount = |path: String| json!({"name": "x", "mountPath": path});
    let doc = pod(&declared, app(json!([mount("/run/secrets//token".into())])));
    let denial = run(&doc).expect_err("an empty component");
    assert_eq!(denial.reason, DenyReason::Conflict);
    assert!(
        denial.message.contains("cannot be created"),
        "{}",
        denial.message
    );

    let many = |n: usize| {
        let mounts: Vec<Value> = (0..n)
            .map(|i| mount(format!("/run/secrets/tokens/t{i}")))
            .collect();
        pod(&declared, app(Value::Array(mounts)))
    };
    let out = run(&many(spec::MAX_MOUNTPOINTS))
        .expect("allowed")
        .expect("patched");
    let attribute = attribute(&out, spec::MOUNTPOINTS_ATTRIBUTE).expect("written");
    let refs = spec::parse_secrets("db").expect("refs");
    let read = spec::Mountpoints::parse(&attribute, &refs).expect("the plugin reads it");
    assert_eq!(read.dirs().len(), spec::MAX_MOUNTPOINTS + 1);
    let denial = run(&many(spec::MAX_MOUNTPOINTS + 1)).expect_err("too many");
    assert!(
        denial
            .message
            .contains("mount points a runsecrets volume holds"),
        "{}",
        denial.message
    );
}

#[test]
fn a_forged_volume_or_mount_is_not_trusted() {
    let doc = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([])),
    );
    let injected = run(&doc).expect("allowed").expect("patched");
    // The author copies the injected pod but makes the volume writable, or asks for other
    // secrets than the annotation declares, or mounts the volume writable somewhere.
    let mut writable = injected.clone();
    writable["spec"]["volumes"][0]["csi"]["readOnly"] = false.into();
    let mut other = injected.clone();
    other["spec"]["volumes"][0]["csi"]["volumeAttributes"][spec::SECRETS_ATTRIBUTE] =
        "source=other,target=db,uid=0,gid=0,mode=0444".into();
    let mut mounted = injected.clone();
    mounted["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = false.into();
    // Before injection, a mount named like our volume is refused outright.
    let early = pod(
        &annotations(&[(spec::SECRETS_ANNOTATION, "db")]),
        app(json!([{"name": "runsecrets", "mountPath": "/data"}])),
    );
    for (forged, says) in [
        (
            writable,
            "that runsecrets did not add for these secrets; remove it",
        ),
        (
            other,
            "that runsecrets did not add for these secrets; remove it",
        ),
        (mounted, "in a way runsecrets does not; remove that mount"),
        (early, "which runsecrets adds itself; remove that mount"),
    ] {
        let denial = run(&forged).expect_err("forged");
        assert_eq!(denial.reason, DenyReason::Conflict, "{}", denial.message);
        // kubectl shows the message as one sentence: no run of spaces, no line break.
        assert!(denial.message.contains(says), "{}", denial.message);
        assert!(
            !denial.message.contains("  ") && !denial.message.contains('\n'),
            "{:?}",
            denial.message
        );
    }
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
    json_patch::patch(
        &mut deployment,
        &patch.to_json_patch().expect("a JSON patch"),
    )
    .expect("applies");
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

/// Found by fuzzing: a pod with no `spec` (or `spec: null`) got a patch that adds
/// `/spec/volumes`, which cannot apply. Such a pod has nothing to mount into and the apiserver
/// refuses it after admission; it is left alone.
#[test]
fn a_pod_without_spec_gets_no_patch_that_cannot_apply() {
    for spec in [None, Some(Value::Null)] {
        let mut object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {spec::SECRETS_ANNOTATION: "db"}}});
        if let Some(spec) = spec {
            object["spec"] = spec;
        }
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "userInfo": {}, "name": "p", "namespace": "ns",
                "object": object.clone()}});
        let answer =
            review(Endpoint::Mutate, &serde_json::to_vec(&body).expect("json")).expect("answered");
        let out: Value = serde_json::from_slice(&answer.body).expect("json");
        if let Some(patch) = out["response"]["patch"].as_str() {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .expect("base64");
            let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch");
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &patch).expect("the patch applies");
        }
        assert_eq!(out["response"]["allowed"], true, "{out}");
    }
}
