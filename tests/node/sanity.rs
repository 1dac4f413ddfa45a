//! The checks of csi-sanity (github.com/kubernetes-csi/csi-test, pkg/sanity identity.go and
//! node.go) that apply to a node-only plugin, reproduced in Rust because there is no Go
//! toolchain here. Each test is named after the csi-sanity case it mirrors
//! (`<Describe>_<It>`), and sends what that case sends.
//!
//! Not reproducible without a Controller service (csi-sanity needs CreateVolume for them):
//! "Node Service should work", "should be idempotent", "NodeUnpublishVolume should remove
//! target path" (mirrored below with an ephemeral publish instead). Skipped by csi-sanity
//! itself because runsecrets advertises no such capability: NodeStageVolume,
//! NodeUnstageVolume, NodeGetVolumeStats, NodeExpandVolume, and the single-node-multi-writer
//! cases; their RPCs answer UNIMPLEMENTED, checked here too.

use crate::common::node as node_harness;

use node_harness::{kubelet_request, Harness};
use runsecrets::node::csi::node_service_capability::rpc;
use runsecrets::node::csi::plugin_capability::{service, volume_expansion, Type};
use runsecrets::node::csi::{
    GetPluginCapabilitiesRequest, GetPluginInfoRequest, NodeGetCapabilitiesRequest,
    NodeGetInfoRequest, NodePublishVolumeRequest, NodeUnpublishVolumeRequest, ProbeRequest,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

const SECRETS: &[(&str, &[u8])] = &[("mysql_root_password", b"hunter2-root")];

/// csi-sanity's `sc.TargetPath + "/target"`: a directory the plugin must create itself. The
/// plugin only publishes at kubelet's per-pod path, so csi-sanity's target is that path here
/// (run csi-sanity itself with `--csi.targetpath` set to such a directory).
fn sanity_target(h: &Harness) -> std::path::PathBuf {
    h.target("csi-sanity-pod")
}

/// csi-sanity's `GenerateUniqueValidVolumeID`.
const VOLUME_ID: &str = "fake-volume-id-sanity";

#[tokio::test]
async fn identity_service_get_plugin_capabilities_should_return_appropriate_capabilities() {
    let h = Harness::start(SECRETS).await;
    let caps = h
        .identity
        .clone()
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .expect("no error")
        .into_inner();
    for cap in caps.capabilities {
        match cap.r#type {
            Some(Type::Service(s)) => {
                let t = service::Type::try_from(s.r#type).expect("known service");
                assert!(matches!(
                    t,
                    service::Type::ControllerService
                        | service::Type::VolumeAccessibilityConstraints
                        | service::Type::GroupControllerService
                ));
                assert_ne!(t, service::Type::ControllerService, "node-only plugin");
            }
            Some(Type::VolumeExpansion(v)) => {
                let t = volume_expansion::Type::try_from(v.r#type).expect("known mode");
                assert!(matches!(
                    t,
                    volume_expansion::Type::Online | volume_expansion::Type::Offline
                ));
            }
            None => panic!("Unknown capability"),
        }
    }
}

#[tokio::test]
async fn identity_service_probe_should_return_appropriate_information() {
    let h = Harness::start(SECRETS).await;
    let res = h
        .identity
        .clone()
        .probe(ProbeRequest {})
        .await
        .expect("OK (csi-sanity also accepts FailedPrecondition)")
        .into_inner();
    assert_eq!(res.ready, Some(true));
}

#[tokio::test]
async fn identity_service_get_plugin_info_should_return_appropriate_information() {
    let h = Harness::start(SECRETS).await;
    let res = h
        .identity
        .clone()
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("no error")
        .into_inner();
    let name = res.name;
    assert!(!name.is_empty() && name.len() <= 63);
    // ^[a-zA-Z][A-Za-z0-9-\.\_]{0,61}[a-zA-Z]$
    let bytes = name.as_bytes();
    assert!(bytes[0].is_ascii_alphabetic() && bytes[bytes.len() - 1].is_ascii_alphabetic());
    assert!(bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    assert_eq!(name, "runsecrets.io");
    assert_eq!(res.vendor_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn node_service_node_get_capabilities_should_return_appropriate_capabilities() {
    let h = Harness::start(SECRETS).await;
    let caps = h
        .node
        .clone()
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .expect("no error")
        .into_inner();
    for cap in caps.capabilities {
        let Some(runsecrets::node::csi::node_service_capability::Type::Rpc(r)) = cap.r#type else {
            panic!("capability without rpc");
        };
        let t = rpc::Type::try_from(r.r#type).expect("known capability");
        assert_ne!(t, rpc::Type::StageUnstageVolume, "no staging");
    }
}

#[tokio::test]
async fn node_service_node_get_info_should_return_appropriate_values() {
    let h = Harness::start(SECRETS).await;
    let info = h
        .node
        .clone()
        .node_get_info(NodeGetInfoRequest {})
        .await
        .expect("no error")
        .into_inner();
    assert_eq!(info.node_id, "node-1");
    assert!(info.max_volumes_per_node >= 0);
    // VOLUME_ACCESSIBILITY_CONSTRAINTS is not advertised, so no topology is required.
    assert!(info.accessible_topology.is_none());
}

async fn publish_code(h: &Harness, req: NodePublishVolumeRequest) -> Code {
    h.node
        .clone()
        .node_publish_volume(req)
        .await
        .expect_err("must fail")
        .code()
}

#[tokio::test]
async fn node_service_node_publish_volume_should_fail_when_no_volume_id_is_provided() {
    let h = Harness::start(SECRETS).await;
    let code = publish_code(&h, NodePublishVolumeRequest::default()).await;
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test]
async fn node_service_node_publish_volume_should_fail_when_no_target_path_is_provided() {
    let h = Harness::start(SECRETS).await;
    let req = NodePublishVolumeRequest {
        volume_id: VOLUME_ID.into(),
        ..Default::default()
    };
    assert_eq!(publish_code(&h, req).await, Code::InvalidArgument);
}

#[tokio::test]
async fn node_service_node_publish_volume_should_fail_when_no_volume_capability_is_provided() {
    let h = Harness::start(SECRETS).await;
    let req = NodePublishVolumeRequest {
        volume_id: VOLUME_ID.into(),
        target_path: sanity_target(&h).to_string_lossy().into_owned(),
        volume_capability: None,
        ..Default::default()
    };
    assert_eq!(publish_code(&h, req).await, Code::InvalidArgument);
    assert!(!sanity_target(&h).exists());
}

async fn unpublish_code(h: &Harness, req: NodeUnpublishVolumeRequest) -> Code {
    h.node
        .clone()
        .node_unpublish_volume(req)
        .await
        .expect_err("must fail")
        .code()
}

#[tokio::test]
async fn node_service_node_unpublish_volume_should_fail_when_no_volume_id_is_provided() {
    let h = Harness::start(SECRETS).await;
    let code = unpublish_code(&h, NodeUnpublishVolumeRequest::default()).await;
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test]
async fn node_service_node_unpublish_volume_should_fail_when_no_target_path_is_provided() {
    let h = Harness::start(SECRETS).await;
    let req = NodeUnpublishVolumeRequest {
        volume_id: VOLUME_ID.into(),
        target_path: String::new(),
    };
    assert_eq!(unpublish_code(&h, req).await, Code::InvalidArgument);
}

/// csi-sanity creates the volume with CreateVolume; a node-only plugin gets its volume from
/// kubelet's ephemeral request instead. The checks are csi-sanity's: the plugin creates
/// `TargetPath/target`, and unpublish removes it.
#[tokio::test]
#[ignore = "needs root: mounts tmpfs"]
async fn node_service_node_unpublish_volume_should_remove_target_path_ephemeral_variant() {
    let h = Harness::start(SECRETS).await;
    let target = sanity_target(&h);
    let req = kubelet_request(&target, "mysql_root_password");
    h.publish(req.clone()).await.expect("publish");
    assert!(target.exists(), "created by the plugin");
    h.unpublish(&req.volume_id, &target)
        .await
        .expect("unpublish");
    assert!(!target.exists(), "removed by the plugin");
}

/// What csi-sanity would hit if it called RPCs the plugin does not advertise: UNIMPLEMENTED,
/// as the CSI specification asks.
#[tokio::test]
async fn unadvertised_rpcs_are_unimplemented() {
    let h = Harness::start(SECRETS).await;
    let channel = node_harness::uds_channel(h.socket.clone()).await;
    for path in [
        "/csi.v1.Node/NodeStageVolume",
        "/csi.v1.Node/NodeUnstageVolume",
        "/csi.v1.Node/NodeGetVolumeStats",
        "/csi.v1.Node/NodeExpandVolume",
        "/csi.v1.Controller/ControllerGetCapabilities",
        "/csi.v1.Controller/CreateVolume",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let codec = tonic_prost::ProstCodec::<NodeGetInfoRequest, NodeGetInfoRequest>::default();
        let err = grpc
            .unary(
                tonic::Request::new(NodeGetInfoRequest {}),
                PathAndQuery::from_static(path),
                codec,
            )
            .await
            .expect_err("not served");
        assert_eq!(err.code(), Code::Unimplemented, "{path}");
    }
}
