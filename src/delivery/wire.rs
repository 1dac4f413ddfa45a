//! The delivery API's JSON bodies, shared by the server (`delivery`) and the node plugin
//! (`node`), so both ends are one type.
//!
//! `POST /v1/publish` on the delivery listener, `Authorization: Bearer <node plugin token>`.
//! The node plugin forwards what kubelet gave it; the server trusts none of the pod fields
//! until the pod's own token has been reviewed and is bound to exactly that pod.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Path of the one delivery call.
pub const PUBLISH_PATH: &str = "/v1/publish";

/// Audience of the tokens kubelet requests for our CSIDriver (`tokenRequests`) and of the
/// node plugin's own projected token.
pub const TOKEN_AUDIENCE: &str = "runsecrets.io";

/// What a node plugin asks for when kubelet publishes a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    /// The pod's bound service-account token for [`TOKEN_AUDIENCE`], from the volume
    /// context's `csi.storage.k8s.io/serviceAccount.tokens`.
    pub token: Zeroizing<String>,
    /// The pod as kubelet named it (`csi.storage.k8s.io/pod.*`); only used to cross-check the
    /// identity the token review returns.
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// Secret names the volume references (the `source` of each entry), deduplicated.
    pub secrets: Vec<String>,
    /// The node the plugin runs on, for the audit line.
    #[serde(default)]
    pub node_id: String,
}

impl PublishRequest {
    /// Reads a request body. The error names the position and the kind of problem, never the
    /// content (serde's own messages can quote it, and the body carries a token).
    pub fn from_body(body: &[u8]) -> Result<Self, DeliveryError> {
        serde_json::from_slice(body).map_err(|e| DeliveryError {
            reason: Reason::InvalidRequest,
            message: format!(
                "the body is not a publish request (line {}, column {}: {:?})",
                e.line(),
                e.column(),
                e.classify()
            ),
        })
    }
}

/// The granted secrets' values, by name; the node plugin lays them out as files.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishResponse {
    pub secrets: Vec<DeliveredSecret>,
}

/// One secret's value. `data` is standard base64; both ends keep it in zeroizing buffers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveredSecret {
    pub name: String,
    pub data: Zeroizing<String>,
}

/// Why a publish was refused; the HTTP status carries the same class, the body says which
/// check failed. Never contains a token or a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryError {
    pub reason: Reason,
    pub message: String,
}

/// Error classes, mapped to HTTP statuses by the server and to gRPC codes by the node plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// 400: the request is malformed. gRPC InvalidArgument.
    InvalidRequest,
    /// 401: the caller is not the node plugin. gRPC PermissionDenied.
    Unauthenticated,
    /// 403: the pod's token is invalid, expired, for another audience or another pod, or the
    /// pod may not have a secret. gRPC PermissionDenied.
    Forbidden,
    /// 404: a requested secret does not exist in the pod's namespace. gRPC NotFound.
    NotFound,
    /// 503: the store or the token review is unavailable. gRPC Unavailable.
    Unavailable,
}

impl Reason {
    pub fn status(self) -> u16 {
        match self {
            Reason::InvalidRequest => 400,
            Reason::Unauthenticated => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::Unavailable => 503,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::InvalidRequest => "invalid_request",
            Reason::Unauthenticated => "unauthenticated",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::Unavailable => "unavailable",
        }
    }
}
