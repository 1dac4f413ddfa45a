//! The parts of a pod spec that a review reads: containers with their mounts and environment,
//! volumes, and the service account. k8s-openapi's `PodSpec` reads every field of the spec
//! (resources, probes, tolerations, affinity, …) into owned values on every review; these
//! views read only what the mutation and the env policy decide on and skip the rest unread,
//! which took a third off the review's cost. Field names and types follow k8s-openapi's, so
//! the code reads the same, and so does what a missing or `null` field becomes: an absent
//! `Option`, or the default of a field Kubernetes requires (as k8s-openapi reads them).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// A pod spec, as far as runsecrets looks at it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "required")]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    /// Judged by the env policy like the others (`kubectl debug` adds them).
    pub ephemeral_containers: Option<Vec<Container>>,
    pub volumes: Option<Vec<Volume>>,
    pub service_account_name: Option<String>,
    /// The deprecated alias of `serviceAccountName`, still honoured by the apiserver.
    pub service_account: Option<String>,
}

impl PodSpec {
    /// The service account the pod runs as: the apiserver's ServiceAccount admission sets the
    /// name before webhooks run, and an object without one runs as `default`, as kubelet
    /// would run it.
    pub fn service_account(&self) -> &str {
        [&self.service_account_name, &self.service_account]
            .into_iter()
            .flatten()
            .find(|name| !name.is_empty())
            .map_or("default", String::as_str)
    }
}

/// A container, an init container or an ephemeral container: the same fields for each.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, deserialize_with = "required")]
    pub name: String,
    pub env: Option<Vec<EnvVar>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default, deserialize_with = "required")]
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub secret_key_ref: Option<SecretReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    pub prefix: Option<String>,
    pub secret_ref: Option<SecretReference>,
}

/// A Kubernetes Secret named by `secretKeyRef` or `envFrom.secretRef`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SecretReference {
    #[serde(default, deserialize_with = "required")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    #[serde(default, deserialize_with = "required")]
    pub name: String,
    #[serde(default, deserialize_with = "required")]
    pub mount_path: String,
    pub read_only: Option<bool>,
    pub sub_path: Option<String>,
    pub sub_path_expr: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Volume {
    #[serde(default, deserialize_with = "required")]
    pub name: String,
    pub csi: Option<CsiVolumeSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsiVolumeSource {
    #[serde(default, deserialize_with = "required")]
    pub driver: String,
    pub read_only: Option<bool>,
    pub fs_type: Option<String>,
    /// Only whether it is there matters: the webhook never adds one.
    pub node_publish_secret_ref: Option<serde::de::IgnoredAny>,
    pub volume_attributes: Option<BTreeMap<String, String>>,
}

/// A field Kubernetes requires: `null` reads as its default, as k8s-openapi reads it (the
/// apiserver's own validation, after admission, refuses what is really missing).
fn required<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}
