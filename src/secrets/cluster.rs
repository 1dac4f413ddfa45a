//! What `secret rm` and `secret rotate` ask of the cluster beyond the store: which pods use a
//! secret, and the secrets annotation of a workload's pod template.

use std::str::FromStr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::Api;

use crate::spec::{parse_secrets, SECRETS_ANNOTATION};
use crate::store::kubernetes::KubeStore;
use crate::store::StoreError;

/// A workload whose pod template declares secrets, as `--workload KIND/NAME` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub name: String,
}

impl FromStr for WorkloadRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: use KIND/NAME, e.g. deployment/web"))?;
        let (group, version, kind, plural) = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => ("apps", "v1", "Deployment", "deployments"),
            "statefulset" | "statefulsets" | "sts" => ("apps", "v1", "StatefulSet", "statefulsets"),
            "daemonset" | "daemonsets" | "ds" => ("apps", "v1", "DaemonSet", "daemonsets"),
            "replicaset" | "replicasets" | "rs" => ("apps", "v1", "ReplicaSet", "replicasets"),
            "cronjob" | "cronjobs" | "cj" => ("batch", "v1", "CronJob", "cronjobs"),
            "replicationcontroller" | "replicationcontrollers" | "rc" => {
                ("", "v1", "ReplicationController", "replicationcontrollers")
            }
            "job" | "jobs" => {
                return Err(
                    "a Job's pod template cannot change: rotate its CronJob, or create a new Job"
                        .into(),
                )
            }
            other => return Err(format!("{other:?} is not a workload kind with a pod template (deployment, statefulset, daemonset, replicaset, cronjob, replicationcontroller)")),
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("{s:?}: use KIND/NAME, e.g. deployment/web"));
        }
        Ok(Self {
            group,
            version,
            kind,
            plural,
            name: name.to_string(),
        })
    }
}

impl WorkloadRef {
    /// Where the pod template sits in the object.
    pub fn template_path(&self) -> &'static [&'static str] {
        crate::admission::workload::template_path(self.group, self.kind).unwrap_or(&[])
    }

    fn resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: if self.group.is_empty() {
                self.version.into()
            } else {
                format!("{}/{}", self.group, self.version)
            },
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }
}

/// The cluster questions of `rm` and `rotate`.
pub trait Cluster {
    /// Names of the running or pending pods of `namespace` that declare `secret`.
    fn pods_using(&self, namespace: &str, secret: &str) -> Result<Vec<String>, StoreError>;
    /// The workload's pod-template secrets annotation (`None` when it declares none).
    fn template_secrets(
        &self,
        namespace: &str,
        workload: &WorkloadRef,
    ) -> Result<Option<String>, StoreError>;
    /// Sets the annotation, which rolls the workload.
    fn set_template_secrets(
        &self,
        namespace: &str,
        workload: &WorkloadRef,
        value: &str,
    ) -> Result<(), StoreError>;
}

/// The embedded store has no cluster: no pods use its secrets, and there are no workloads.
pub struct NoCluster;

fn no_cluster() -> StoreError {
    StoreError::Api {
        step: "moving the workload's reference",
        message: "--workload needs --store kubernetes".into(),
    }
}

impl Cluster for NoCluster {
    fn pods_using(&self, _: &str, _: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    fn template_secrets(&self, _: &str, _: &WorkloadRef) -> Result<Option<String>, StoreError> {
        Err(no_cluster())
    }
    fn set_template_secrets(&self, _: &str, _: &WorkloadRef, _: &str) -> Result<(), StoreError> {
        Err(no_cluster())
    }
}

/// Whether an annotation value declares `secret` (unparsable annotations declare nothing: the
/// webhook refuses such pods).
pub fn declares(annotation: &str, secret: &str) -> bool {
    parse_secrets(annotation).is_ok_and(|refs| refs.iter().any(|r| r.source == secret))
}

fn api_error(step: &'static str) -> impl FnOnce(kube::Error) -> StoreError {
    move |e| StoreError::Api {
        step,
        message: crate::delivery::tokenreview::describe_kube_error(&e),
    }
}

impl Cluster for KubeStore {
    fn pods_using(&self, namespace: &str, secret: &str) -> Result<Vec<String>, StoreError> {
        let pods: Api<Pod> = Api::namespaced(self.client().clone(), namespace);
        let list = self
            .block_on(pods.list(&ListParams::default()))
            .map_err(api_error("listing pods"))?;
        let mut names: Vec<String> = list
            .items
            .iter()
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SECRETS_ANNOTATION))
                    .is_some_and(|v| declares(v, secret))
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    fn template_secrets(
        &self,
        namespace: &str,
        workload: &WorkloadRef,
    ) -> Result<Option<String>, StoreError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client().clone(), namespace, &workload.resource());
        let object = self
            .block_on(api.get(&workload.name))
            .map_err(api_error("reading the workload"))?;
        let mut at = &object.data;
        for key in workload.template_path() {
            at = &at[*key];
        }
        Ok(at["metadata"]["annotations"][SECRETS_ANNOTATION]
            .as_str()
            .map(str::to_string))
    }

    fn set_template_secrets(
        &self,
        namespace: &str,
        workload: &WorkloadRef,
        value: &str,
    ) -> Result<(), StoreError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client().clone(), namespace, &workload.resource());
        let mut patch = serde_json::json!({
            "metadata": {"annotations": {SECRETS_ANNOTATION: value}}
        });
        for key in workload.template_path().iter().rev() {
            patch = serde_json::json!({ *key: patch });
        }
        self.block_on(api.patch(
            &workload.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        ))
        .map(|_| ())
        .map_err(api_error("updating the workload"))
    }
}
