//! JSON Patch (RFC 6902) building. The apiserver applies our patch to the object it sent, so
//! every path must exist or be created by an earlier operation: `add /spec/volumes/-` fails on
//! a pod without `volumes`, which is what most pods look like before admission.
//!
//! The webhook only ever adds a few known shapes (an annotation, its volume, its mounts, a
//! volume attribute), so operations are typed and serialised straight to the answer's bytes;
//! building a `serde_json::Value` tree first cost more than the rest of the mutation. Offline
//! tools and tests apply it as a [`json_patch::Patch`] ([`Patch::to_json_patch`]).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use serde::Serialize;

use crate::spec::{self, SecretRef, Target};

/// A patch of `add` operations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Patch(Vec<Add>);

impl Patch {
    /// The same operations as a generic JSON Patch, to apply to a document.
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::to_value(self).and_then(serde_json::from_value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Add {
    op: &'static str,
    path: String,
    value: Value,
}

/// What the webhook adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Volume(Volume),
    Mount(Mount),
    /// `volumeAttributes` of a volume that had none.
    Attributes(BTreeMap<&'static str, String>),
    Array(Vec<Value>),
}

/// The `runsecrets` CSI volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    name: &'static str,
    csi: Csi,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Csi {
    driver: &'static str,
    read_only: bool,
    volume_attributes: BTreeMap<&'static str, String>,
}

impl Volume {
    /// The volume for `refs`, with the directories other mounts need (`mountpoints`, the node
    /// plugin's attribute) when there are any.
    pub fn new(refs: &[SecretRef], mountpoints: String) -> Self {
        let mut attributes =
            BTreeMap::from([(spec::SECRETS_ATTRIBUTE, spec::canonical_list(refs))]);
        if !mountpoints.is_empty() {
            attributes.insert(spec::MOUNTPOINTS_ATTRIBUTE, mountpoints);
        }
        Self {
            name: spec::VOLUME_NAME,
            csi: Csi {
                driver: spec::DRIVER_NAME,
                read_only: true,
                volume_attributes: attributes,
            },
        }
    }
}

/// A read-only mount of the `runsecrets` volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    name: &'static str,
    mount_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_path: Option<String>,
    read_only: bool,
}

impl Mount {
    /// The mounts every selected container gets: `/run/secrets`, and one per target outside it.
    pub fn for_refs(refs: &[SecretRef]) -> Vec<Value> {
        let main = Mount {
            name: spec::VOLUME_NAME,
            mount_path: spec::MOUNT_PATH.into(),
            sub_path: None,
            read_only: true,
        };
        let external = refs.iter().filter_map(|r| match &r.target {
            Target::External(path) => Some(Mount {
                name: spec::VOLUME_NAME,
                mount_path: path.clone(),
                sub_path: Some(r.target.volume_path()),
                read_only: true,
            }),
            Target::InVolume(_) => None,
        });
        std::iter::once(main)
            .chain(external)
            .map(Value::Mount)
            .collect()
    }
}

/// Collects patch operations under a prefix (empty for a Pod, `/spec/template` for a workload).
#[derive(Debug)]
pub struct PatchBuilder<'p> {
    prefix: &'p [&'p str],
    ops: Vec<Add>,
}

impl<'p> PatchBuilder<'p> {
    /// A builder whose paths are relative to `prefix`, a list of unescaped tokens.
    pub fn under(prefix: &'p [&'p str]) -> Self {
        Self {
            prefix,
            ops: Vec::new(),
        }
    }

    /// Sets a member of an object; `tokens` are unescaped (`/` and `~` in keys are encoded).
    pub fn add(&mut self, tokens: &[&str], value: Value) {
        let path = PointerBuf::from_tokens(self.prefix.iter().chain(tokens).copied());
        self.ops.push(Add {
            op: "add",
            path: path.as_str().to_owned(),
            value,
        });
    }

    /// Appends items to an array, creating the array when the object has none.
    pub fn append(&mut self, tokens: &[&str], exists: bool, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if !exists {
            self.add(tokens, Value::Array(items));
            return;
        }
        let mut end: Vec<&str> = tokens.to_vec();
        end.push("-");
        for item in items {
            self.add(&end, item);
        }
    }

    pub fn build(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        let mut b = PatchBuilder::under(&[]);
        b.add(
            &["metadata", "annotations", "runsecrets.io/in~jected"],
            Value::Text("x".into()),
        );
        let text = serde_json::to_string(&b.build()).expect("serialises");
        assert!(
            text.contains("/metadata/annotations/runsecrets.io~1in~0jected"),
            "{text}"
        );
    }

    #[test]
    fn append_creates_a_missing_array_and_extends_an_existing_one() {
        let mut doc = json!({"spec": {"template": {"spec": {"volumes": [{"name": "a"}]}}}});
        let mut b = PatchBuilder::under(&["spec", "template"]);
        let refs = crate::spec::parse_secrets("db").expect("valid");
        b.append(
            &["spec", "volumes"],
            true,
            vec![Value::Volume(Volume::new(&refs, String::new()))],
        );
        b.append(
            &["spec", "containers"],
            false,
            vec![Value::Text("c".into())],
        );
        let patch = b.build().to_json_patch().expect("a JSON patch");
        json_patch::patch(&mut doc, &patch).expect("applies");
        let spec = &doc["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][1]["name"], "runsecrets");
        assert_eq!(spec["volumes"][1]["csi"]["readOnly"], true);
        assert_eq!(spec["containers"][0], "c");
    }

    #[test]
    fn mounts_outside_run_secrets_are_sub_path_mounts_of_the_volume() {
        let refs = crate::spec::parse_secrets("source=tls_key,target=/etc/tls/key.pem,mode=0400")
            .expect("valid");
        let mounts = serde_json::to_value(Mount::for_refs(&refs)).expect("json");
        assert_eq!(
            mounts,
            json!([
                {"name": "runsecrets", "mountPath": "/run/secrets", "readOnly": true},
                {"name": "runsecrets", "mountPath": "/etc/tls/key.pem",
                 "subPath": refs[0].target.volume_path(), "readOnly": true},
            ])
        );
    }
}
