//! The `admission.k8s.io/v1` AdmissionReview as it crosses the wire. The objects stay raw JSON
//! until the request's kind says what to read them as, so a review costs one pass over the
//! body and nothing is parsed that no decision needs (managedFields, status, …).

use std::collections::BTreeMap;

use kube::core::admission::Operation;
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The only review the apiserver sends to webhooks that list `v1` in
/// `admissionReviewVersions`; anything else is not ours to answer.
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// An incoming review. Only the fields a decision reads are kept; the objects are borrowed
/// from the body, not copied.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<'a> {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(borrow)]
    pub request: Option<Request<'a>>,
}

impl Review<'_> {
    /// True for an `admission.k8s.io/v1` AdmissionReview.
    pub fn is_v1(&self) -> bool {
        self.api_version == API_VERSION && self.kind == KIND
    }
}

/// The request part of a review.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
}

impl Request<'_> {
    /// The object, unless it is absent or JSON `null` (as in DELETE).
    pub fn object(&self) -> Option<&str> {
        raw(&self.object)
    }

    pub fn old_object(&self) -> Option<&str> {
        raw(&self.old_object)
    }
}

fn raw<'a>(v: &Option<&'a RawValue>) -> Option<&'a str> {
    v.map(RawValue::get).filter(|s| *s != "null")
}

/// `status` of a denied response; the apiserver shows `message` to the client with `code`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

/// The response part of a review.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of a JSON Patch, as Go encodes `[]byte`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: &'a Response,
}

/// Serialises the answer as the `admission.k8s.io/v1` review it answers.
pub fn encode(response: &Response) -> Result<Vec<u8>, serde_json::Error> {
    // Sized for the usual answer (uid, decision and the patch), so it is written without
    // growing the buffer several times.
    let patch = response.patch.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(256 + patch);
    serde_json::to_writer(
        &mut out,
        &ResponseReview {
            api_version: API_VERSION,
            kind: KIND,
            response,
        },
    )?;
    Ok(out)
}
