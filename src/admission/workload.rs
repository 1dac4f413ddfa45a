//! Where the pod templates are in each kind the policy checks, so that a credential in a
//! Deployment is refused at `kubectl apply` and not later as a ReplicaSet event. Objects are
//! read through lean views: only names, annotations and the pod spec.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::pod::PodSpec;
use crate::spec::ANNOTATION_PREFIX;

/// The metadata a decision uses.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub generate_name: Option<String>,
    /// The object's own `runsecrets.io/` annotations; a Pod's are in its [`Template`], not
    /// repeated here.
    #[serde(default, deserialize_with = "own_annotations")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Only runsecrets' own annotations are kept. The others are skipped unread: the usual one is
/// kubectl's last-applied-configuration, a copy of the whole manifest escaped into a string,
/// which would otherwise be unescaped and copied on every review.
fn own_annotations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    d.deserialize_option(OwnAnnotations)
}

struct OwnAnnotations;

impl<'de> Visitor<'de> for OwnAnnotations {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of annotations")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut own = BTreeMap::new();
        while let Some(key) = map.next_key_seed(OwnKey)? {
            match key {
                Some(key) => {
                    own.insert(key, map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(own))
    }
}

/// An annotation's key, copied only when it is one of ours.
struct OwnKey;

impl<'de> DeserializeSeed<'de> for OwnKey {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for OwnKey {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an annotation key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(key.starts_with(ANNOTATION_PREFIX).then(|| key.to_string()))
    }
}

/// One pod template inside an object.
#[derive(Debug)]
pub struct Template {
    /// Path of the template (the object holding `metadata` and `spec`) from the object root.
    pub prefix: &'static [&'static str],
    pub annotations: Option<BTreeMap<String, String>>,
    pub spec: PodSpec,
}

/// An object of a kind with a pod template.
#[derive(Debug)]
pub struct Object {
    pub meta: Meta,
    /// `None` when a workload has no template, or a pod or template has no spec (the apiserver
    /// refuses those anyway).
    pub template: Option<Template>,
}

/// The object could not be read as the kind it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the {kind}: {problem}")]
pub struct InvalidObject {
    pub kind: String,
    pub problem: String,
}

#[derive(Deserialize)]
struct PodView {
    #[serde(default)]
    metadata: Option<Meta>,
    #[serde(default)]
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
struct TemplateHolder {
    #[serde(default)]
    template: Option<PodView>,
}

#[derive(Deserialize)]
struct WorkloadView {
    #[serde(default)]
    metadata: Option<Meta>,
    #[serde(default)]
    spec: Option<TemplateHolder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobTemplate {
    #[serde(default)]
    spec: Option<TemplateHolder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    #[serde(default)]
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize)]
struct CronJobView {
    #[serde(default)]
    metadata: Option<Meta>,
    #[serde(default)]
    spec: Option<CronJobSpec>,
}

#[derive(Deserialize)]
struct MetaView {
    #[serde(default)]
    metadata: Option<Meta>,
}

/// Whether a JSON object's own metadata carries annotation `key`; reads nothing else, so it
/// works on objects whose spec does not parse.
pub fn declares(raw: &str, key: &str) -> bool {
    serde_json::from_str::<MetaView>(raw)
        .ok()
        .and_then(|v| v.metadata)
        .and_then(|m| m.annotations)
        .is_some_and(|a| a.contains_key(key))
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

/// Reads an object of `group`/`kind`; `Ok(None)` for kinds without a pod template.
pub fn read_object<'de, D: Deserializer<'de>>(
    group: &str,
    kind: &str,
    object: D,
) -> Result<Option<Object>, InvalidObject>
where
    D::Error: Into<ObjectError>,
{
    read_view(group, kind, object).map_err(|e| InvalidObject {
        kind: kind.to_string(),
        problem: e.into().describe(),
    })
}

/// [`read_object`] with the deserialiser's own error, for reading an object in the middle of
/// a review (a failure there sends the review down the path that reads objects apart). An
/// object of a kind without a pod template is left unread: a caller in the middle of a stream
/// reads only kinds that have one.
pub fn read_view<'de, D: Deserializer<'de>>(
    group: &str,
    kind: &str,
    object: D,
) -> Result<Option<Object>, D::Error> {
    let Some(prefix) = template_path(group, kind) else {
        return Ok(None);
    };
    let (meta, template) = match prefix.len() {
        0 => {
            // A pod is its own template: its annotations move there instead of being copied.
            let pod = PodView::deserialize(object)?;
            let mut meta = pod.metadata.unwrap_or_default();
            let template = PodView {
                metadata: Some(Meta {
                    annotations: meta.annotations.take(),
                    ..Meta::default()
                }),
                spec: pod.spec,
            };
            (meta, Some(template))
        }
        2 => {
            let w = WorkloadView::deserialize(object)?;
            (
                w.metadata.unwrap_or_default(),
                w.spec.and_then(|s| s.template),
            )
        }
        _ => {
            let c = CronJobView::deserialize(object)?;
            let template = c
                .spec
                .and_then(|s| s.job_template)
                .and_then(|j| j.spec)
                .and_then(|s| s.template);
            (c.metadata.unwrap_or_default(), template)
        }
    };
    // A template without a spec has nothing to mount into or check, and the apiserver refuses
    // it after admission; a patch under its `/spec` could not even apply.
    let template = template.filter(|t| t.spec.is_some());
    Ok(Some(Object {
        meta,
        template: template.map(|t| Template {
            prefix,
            annotations: t.metadata.and_then(|m| m.annotations),
            spec: t.spec.unwrap_or_default(),
        }),
    }))
}

/// A deserialisation error from JSON or from a `serde_json::Value`, described without the
/// offending value (serde's own messages quote it, and it may be a credential).
pub struct ObjectError(serde_json::Error);

impl From<serde_json::Error> for ObjectError {
    fn from(e: serde_json::Error) -> Self {
        Self(e)
    }
}

impl ObjectError {
    pub fn describe(&self) -> String {
        describe_json_error(&self.0)
    }
}

/// Describes a JSON error by its category and position only.
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
