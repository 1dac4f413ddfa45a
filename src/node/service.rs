//! The CSI Node service: NodePublishVolume and NodeUnpublishVolume as kubelet calls them for
//! an inline ephemeral volume.
//!
//! Decisions worth knowing:
//! - `readonly: false` is refused with InvalidArgument: the volume is always read-only, and
//!   the caller must fix the pod (`readOnly: true`) before a retry can succeed.
//! - A republish (the target already holds our tmpfs) that cannot reach the server, or that
//!   the server refuses, keeps the last good files and returns the error: kubelet records an
//!   event and retries at the next republish, and the running pod keeps its files. A republish
//!   whose data did not change leaves the mount untouched (it stays read-only throughout).
//! - Publishes of different targets run in parallel; the same target is serialised by a
//!   per-target lock, never held across other targets.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use zeroize::Zeroizing;

use super::client::DeliveryClient;
use super::csi::node_server;
use super::csi::{
    NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
    NodeGetInfoResponse, NodePublishVolumeRequest, NodePublishVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
};
use super::locks::Locks;
use super::metrics::NodeMetrics;
use super::mounts::{self, MountState};
use super::request::{self, Publish, POD_NAMESPACE_KEY, POD_NAME_KEY};
use super::target::{self, KubeletDir};
use super::volume::{first_mount, teardown, update};
use super::writer::{FileSpec, Layout};
use crate::delivery::wire::{PublishRequest, PublishResponse};

const MIB: u64 = 1024 * 1024;
/// Filesystem steps (mount, write, unmount) running at once.
const FS_SLOTS: usize = 4;

/// A failed step: the gRPC code kubelet acts on, and a message naming the step. Never holds a
/// token or a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {message}")]
pub struct Failure {
    pub code: Code,
    pub step: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, step: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            step,
            message: message.into(),
        }
    }

    /// Metric label: the gRPC code in snake case.
    pub fn reason(&self) -> &'static str {
        match self.code {
            Code::InvalidArgument => "invalid_argument",
            Code::PermissionDenied => "permission_denied",
            Code::NotFound => "not_found",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unavailable => "unavailable",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Internal => "internal",
            _ => "other",
        }
    }
}

impl From<Failure> for Status {
    fn from(f: Failure) -> Self {
        Status::new(f.code, f.to_string())
    }
}

/// What the service needs from the flags.
pub struct Settings {
    pub node_id: String,
    pub kubelet_dir: PathBuf,
    pub kubelet_real: PathBuf,
    pub tmpfs_size: u64,
}

/// The Node service.
pub struct NodeService {
    node_id: String,
    kubelet: KubeletDir,
    tmpfs_size: u64,
    client: DeliveryClient,
    metrics: Arc<NodeMetrics>,
    locks: Locks,
    /// Bounds filesystem steps in flight: mount calls serialise in the kernel anyway, and each
    /// blocking thread costs memory (stack, allocator arena).
    fs_slots: Semaphore,
    /// Unpublish failures already logged, by target and message: kubelet retries an unpublish
    /// for as long as it fails, and a directory left in place fails the same way every time.
    reported: Mutex<HashSet<(String, String)>>,
}

/// Most unpublish failures remembered as logged; past it the memory starts over.
const REPORTED_MAX: usize = 4096;

impl NodeService {
    pub fn new(settings: Settings, client: DeliveryClient, metrics: Arc<NodeMetrics>) -> Self {
        Self {
            node_id: settings.node_id,
            kubelet: KubeletDir {
                configured: settings.kubelet_dir,
                real: settings.kubelet_real,
            },
            tmpfs_size: settings.tmpfs_size,
            client,
            metrics,
            locks: Locks::default(),
            fs_slots: Semaphore::new(FS_SLOTS),
            reported: Mutex::new(HashSet::new()),
        }
    }

    /// True the first time `failure` is seen for `target`; a success forgets the target.
    fn first_report(&self, target: &str, failure: Option<&Failure>) -> bool {
        let Ok(mut reported) = self.reported.lock() else {
            return true;
        };
        match failure {
            None => {
                reported.retain(|(t, _)| t != target);
                false
            }
            Some(f) => {
                if reported.len() >= REPORTED_MAX {
                    reported.clear();
                }
                reported.insert((target.to_string(), f.to_string()))
            }
        }
    }

    /// Runs a filesystem step on the blocking pool, at most [`FS_SLOTS`] at a time.
    async fn fs<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let failed = || {
            Failure::new(
                Code::Internal,
                "running a filesystem step",
                "the task did not complete",
            )
        };
        let _slot = self.fs_slots.acquire().await.map_err(|_| failed())?;
        tokio::task::spawn_blocking(f).await.map_err(|_| failed())?
    }

    async fn publish(&self, plan: Publish, republish: &mut bool) -> Result<&'static str, Failure> {
        let kubelet = self.kubelet.clone();
        let raw = plan.target_path.clone();
        target::check_pod_volume(&raw, &self.kubelet, &plan.pod_uid)?;
        let target = self
            .fs(move || target::check_publish(&raw, &kubelet))
            .await?;
        let _guard = self.locks.lock(target.real.clone()).await;
        let real = target.real.clone();
        let state = self
            .fs(move || {
                mounts::state(&real).map_err(|e| {
                    Failure::new(Code::Internal, "reading the mount table", e.to_string())
                })
            })
            .await?;
        let mut sealed = true;
        match state {
            MountState::Ours { sealed: s } => {
                *republish = true;
                sealed = s;
            }
            MountState::NotMounted => {}
            MountState::Foreign(fs_type) => {
                return Err(Failure::new(
                    Code::FailedPrecondition,
                    "checking the target path",
                    format!("a {fs_type} filesystem that runsecrets did not mount is there"),
                ))
            }
        }
        let wire = PublishRequest {
            token: plan.token.clone(),
            pod_namespace: plan.pod_namespace.clone(),
            pod_name: plan.pod_name.clone(),
            pod_uid: plan.pod_uid.clone(),
            secrets: plan.secret_names(),
            node_id: self.node_id.clone(),
        };
        let answer = self.client.publish(&wire).await;
        drop(wire);
        let layout = answer.and_then(|response| layout(&plan, response));
        let layout = match layout {
            Ok(layout) => layout,
            Err(mut f) if *republish => {
                f.message.push_str("; the volume keeps its last good files");
                return Err(f);
            }
            Err(f) => return Err(f),
        };
        let size = self
            .tmpfs_size
            .max(2 * layout.bytes_needed() + MIB)
            .div_ceil(4096)
            * 4096;
        let path = target.real.clone();
        if *republish {
            self.fs(move || update(&path, &layout, size, sealed)).await
        } else {
            let existed = target.exists;
            self.fs(move || first_mount(&path, existed, &layout, size))
                .await?;
            self.metrics.mounted_delta(1);
            Ok("mounted")
        }
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<(), Failure> {
        let invalid = |m: &str| Failure::new(Code::InvalidArgument, "checking the request", m);
        if req.volume_id.is_empty() {
            return Err(invalid("volume_id is missing"));
        }
        if req.target_path.is_empty() {
            return Err(invalid("target_path is missing"));
        }
        let kubelet = self.kubelet.clone();
        let raw = req.target_path.clone();
        let Some(target) = self
            .fs(move || target::check_unpublish(&raw, &kubelet))
            .await?
        else {
            return Ok(());
        };
        let _guard = self.locks.lock(target.real.clone()).await;
        let path = target.real.clone();
        let unmounted = self.fs(move || teardown(&path)).await?;
        if unmounted {
            self.metrics.mounted_delta(-1);
        }
        Ok(())
    }
}

/// Maps the server's answer onto files: one per reference, so two references to one secret
/// give two files.
fn layout(plan: &Publish, response: PublishResponse) -> Result<Layout, Failure> {
    let step = "reading the server's answer";
    let mut values: HashMap<String, Zeroizing<Vec<u8>>> = HashMap::new();
    for secret in response.secrets {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.data.as_bytes())
            .map_err(|_| {
                Failure::new(
                    Code::Unavailable,
                    step,
                    format!(
                        "secret {:?} is not valid base64",
                        request::truncate(&secret.name)
                    ),
                )
            })?;
        values.insert(secret.name, Zeroizing::new(bytes));
    }
    let mut files = Vec::with_capacity(plan.refs.len());
    for r in &plan.refs {
        let Some(data) = values.get(&r.source) else {
            return Err(Failure::new(
                Code::Internal,
                step,
                format!("the server did not return secret {:?}", r.source),
            ));
        };
        files.push(FileSpec {
            path: r.target.volume_path(),
            data: Zeroizing::new(data.to_vec()),
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
        });
    }
    Ok(Layout {
        files,
        dirs: plan.dirs.clone(),
    })
}

#[tonic::async_trait]
impl node_server::Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let started = Instant::now();
        let mut req = request.into_inner();
        let ctx = |key: &str| req.volume_context.get(key).cloned().unwrap_or_default();
        let (namespace, pod) = (ctx(POD_NAMESPACE_KEY), ctx(POD_NAME_KEY));
        let volume_id = req.volume_id.clone();
        let mut republish = false;
        let mut names = Vec::new();
        let result = match request::check_publish(&mut req) {
            Ok(plan) => {
                names = plan.secret_names();
                self.publish(plan, &mut republish).await
            }
            Err(f) => Err(f),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.publish(
            republish,
            result.as_ref().err().map(Failure::reason),
            seconds,
        );
        let secrets = names.join(",");
        match result {
            Ok(outcome) => {
                tracing::info!(
                    pod_namespace = %namespace, pod_name = %pod, volume_id = %volume_id,
                    secrets = %secrets, republish, outcome, ms = seconds * 1000.0,
                    "NodePublishVolume"
                );
                Ok(Response::new(NodePublishVolumeResponse {}))
            }
            Err(failure) => {
                tracing::warn!(
                    pod_namespace = %namespace, pod_name = %pod, volume_id = %volume_id,
                    secrets = %secrets, republish, outcome = "error", code = ?failure.code,
                    error = %failure, ms = seconds * 1000.0,
                    "NodePublishVolume"
                );
                Err(failure.into())
            }
        }
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let (volume_id, target) = (req.volume_id.clone(), req.target_path.clone());
        match self.unpublish(req).await {
            Ok(()) => {
                self.first_report(&target, None);
                self.metrics.unpublished();
                tracing::info!(volume_id = %volume_id, outcome = "ok", "NodeUnpublishVolume");
                Ok(Response::new(NodeUnpublishVolumeResponse {}))
            }
            Err(failure) if self.first_report(&target, Some(&failure)) => {
                tracing::warn!(volume_id = %volume_id, target = %request::truncate(&target), outcome = "error", error = %failure, "NodeUnpublishVolume");
                Err(failure.into())
            }
            Err(failure) => {
                tracing::debug!(volume_id = %volume_id, outcome = "error", error = %failure, "NodeUnpublishVolume (failed as before)");
                Err(failure.into())
            }
        }
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        // No staging, stats or expansion: publish and unpublish are the whole lifecycle.
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}
