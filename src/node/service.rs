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

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};

use super::client::{ClientError, DeliveryClient};
use super::csi::node_server;
use super::csi::{
    NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
    NodeGetInfoResponse, NodePublishVolumeRequest, NodePublishVolumeResponse,
    NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
};
use super::failure::Failure;
use super::locks::Locks;
use super::metrics::NodeMetrics;
use super::mounts::{MountState, Mounter};
use super::request::{self, Publish, POD_NAMESPACE_KEY, POD_NAME_KEY};
use super::target::{self, KubeletDir};
use super::volume::{first_mount, teardown, update};
use crate::delivery::wire::{PublishRequest, Reason};

const MIB: u64 = 1024 * 1024;
/// Filesystem steps (mount, write, unmount) running at once.
const FS_SLOTS: usize = 4;

/// What kubelet is told when the delivery call fails: the step, and the gRPC code for the
/// server's reason (CSI: InvalidArgument and PermissionDenied are final until the pod
/// changes, Unavailable is retried).
fn delivery_failure(e: ClientError) -> Failure {
    let code = match &e {
        ClientError::Refused { status, reason } => match reason.as_ref().map(|(r, _)| r) {
            Some(Reason::InvalidRequest) => Code::InvalidArgument,
            Some(Reason::Unauthenticated | Reason::Forbidden) => Code::PermissionDenied,
            Some(Reason::NotFound) => Code::NotFound,
            Some(Reason::Unavailable) => Code::Unavailable,
            None => match status {
                400 => Code::InvalidArgument,
                401 | 403 => Code::PermissionDenied,
                404 => Code::NotFound,
                500..=599 => Code::Unavailable,
                _ => Code::Unknown,
            },
        },
        ClientError::TokenNotAHeader => Code::FailedPrecondition,
        ClientError::Encode(_) | ClientError::Build(_) => Code::Internal,
        // The plugin's own files and the way to the server: kubelet retries.
        ClientError::CaRead { .. }
        | ClientError::CaUnusable { .. }
        | ClientError::TokenRead { .. }
        | ClientError::TokenNotText { .. }
        | ClientError::TokenEmpty { .. }
        | ClientError::Timeout { .. }
        | ClientError::Connect { .. }
        | ClientError::Body(_)
        | ClientError::TooLarge
        | ClientError::Malformed => Code::Unavailable,
    };
    let step = match &e {
        ClientError::CaRead { .. } | ClientError::CaUnusable { .. } => "loading the server CA",
        ClientError::TokenRead { .. }
        | ClientError::TokenNotText { .. }
        | ClientError::TokenEmpty { .. }
        | ClientError::TokenNotAHeader => "reading the node token",
        ClientError::Encode(_)
        | ClientError::Build(_)
        | ClientError::Timeout { .. }
        | ClientError::Connect { .. }
        | ClientError::Body(_)
        | ClientError::TooLarge
        | ClientError::Malformed
        | ClientError::Refused { .. } => "asking the server for the pod's secrets",
    };
    Failure::caused(code, step, e)
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
    mounter: Arc<dyn Mounter>,
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
    pub fn new(
        settings: Settings,
        client: DeliveryClient,
        mounter: Arc<dyn Mounter>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        Self {
            node_id: settings.node_id,
            kubelet: KubeletDir {
                configured: settings.kubelet_dir,
                real: settings.kubelet_real,
            },
            tmpfs_size: settings.tmpfs_size,
            client,
            mounter,
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
                reported.insert((target.to_string(), f.message()))
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
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| failed().because(e))?
    }

    async fn publish(&self, plan: Publish, republish: &mut bool) -> Result<&'static str, Failure> {
        let kubelet = self.kubelet.clone();
        let raw = plan.target_path.clone();
        target::check_pod_volume(&raw, &self.kubelet, &plan.pod_uid)?;
        let target = self
            .fs(move || target::check_publish(&raw, &kubelet))
            .await?;
        let _guard = self.locks.lock(target.real.clone()).await;
        let (real, m) = (target.real.clone(), self.mounter.clone());
        let state = self
            .fs(move || {
                m.state(&real)
                    .map_err(|e| Failure::caused(Code::Internal, "reading the mount table", e))
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
        let layout = answer
            .map_err(delivery_failure)
            .and_then(|response| plan.layout(response));
        let layout = match layout {
            Ok(layout) => layout,
            Err(f) if *republish => return Err(f.leaving("the volume keeps its last good files")),
            Err(f) => return Err(f),
        };
        let size = self
            .tmpfs_size
            .max(2 * layout.bytes_needed() + MIB)
            .div_ceil(4096)
            * 4096;
        let (path, m) = (target.real.clone(), self.mounter.clone());
        if *republish {
            self.fs(move || update(&*m, &path, &layout, size, sealed))
                .await
        } else {
            let existed = target.exists;
            self.fs(move || first_mount(&*m, &path, existed, &layout, size))
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
        let (path, m) = (target.real.clone(), self.mounter.clone());
        let unmounted = self.fs(move || teardown(&*m, &path)).await?;
        if unmounted {
            self.metrics.mounted_delta(-1);
        }
        Ok(())
    }
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
                    error = %failure.message(), ms = seconds * 1000.0,
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
                tracing::warn!(volume_id = %volume_id, target = %request::truncate(&target), outcome = "error", error = %failure.message(), "NodeUnpublishVolume");
                Err(failure.into())
            }
            Err(failure) => {
                tracing::debug!(volume_id = %volume_id, outcome = "error", error = %failure.message(), "NodeUnpublishVolume (failed as before)");
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

#[cfg(test)]
mod tests;
