//! Where the pod templates are in each kind the policy checks, so that a credential in a
//! Deployment is refused at `kubectl apply` and not later as a ReplicaSet event.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

/// One pod template inside an object.
#[derive(Debug)]
pub struct Template {
    /// Path of the template (the object holding `metadata` and `spec`) from the object root.
    pub prefix: &'static [&'static str],
    pub annotations: Option<BTreeMap<String, String>>,
    pub spec: PodSpec,
}

/// The object could not be read as the kind it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the {kind} pod template at /{path}: {problem}")]
pub struct InvalidObject {
    pub kind: String,
    pub path: String,
    pub problem: String,
}

/// Where a kind keeps its pod template, for the kinds runsecrets understands.
pub fn template_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("", "Pod") => Some(&[]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Reads the pod template of `object`. `Ok(None)` for kinds without one, and for workloads
/// whose template is absent (the apiserver would refuse those anyway).
pub fn template(
    group: &str,
    kind: &str,
    object: &DynamicObject,
) -> Result<Option<Template>, InvalidObject> {
    let Some(prefix) = template_path(group, kind) else {
        return Ok(None);
    };
    let invalid = |problem: String| InvalidObject {
        kind: kind.to_string(),
        path: prefix.join("/"),
        problem,
    };
    let (annotations, spec) = if prefix.is_empty() {
        (object.metadata.annotations.clone(), object.data.get("spec"))
    } else {
        let Some(template) = prefix.iter().try_fold(&object.data, |v, k| v.get(*k)) else {
            return Ok(None);
        };
        let annotations = template
            .pointer("/metadata/annotations")
            .map(BTreeMap::<String, String>::deserialize)
            .transpose()
            .map_err(|e| invalid(describe_json_error(&e)))?;
        (annotations, template.get("spec"))
    };
    let spec = match spec {
        Some(v) => PodSpec::deserialize(v).map_err(|e| invalid(describe_json_error(&e)))?,
        None => PodSpec::default(),
    };
    Ok(Some(Template {
        prefix,
        annotations,
        spec,
    }))
}

/// Describes a JSON error by its category and position only: serde's own messages quote the
/// offending value, which may be a credential.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "malformed JSON",
        Category::Data => "unexpected field type or shape",
        Category::Eof => "truncated JSON",
    };
    if e.line() == 0 {
        what.to_string()
    } else {
        format!("{what} at line {} column {}", e.line(), e.column())
    }
}

/// A convenience for callers holding plain JSON (the offline CLI).
pub fn object_from_value(value: Value) -> Result<DynamicObject, String> {
    DynamicObject::deserialize(value).map_err(|e| describe_json_error(&e))
}
