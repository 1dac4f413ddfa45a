//! Admission review handling: body in, body out. Pure apart from the clock, so the server, the
//! tests and the offline CLI all run exactly the same decisions.

mod mutate;
mod patch;
pub mod workload;

pub use mutate::{mutate, Mutation};
pub use patch::PatchBuilder;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;

use crate::policy::{self, Levels, Report};
use crate::spec;
use workload::describe_json_error;

/// Why a request was refused; also the `reason` label of the review metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    InvalidAnnotation,
    Conflict,
    InvalidObject,
    Policy,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::InvalidAnnotation => "invalid-annotation",
            DenyReason::Conflict => "conflict",
            DenyReason::InvalidObject => "invalid-object",
            DenyReason::Policy => "policy",
        }
    }

    /// HTTP status the apiserver reports to the client (`kubectl` shows it).
    fn code(self) -> u16 {
        match self {
            DenyReason::Policy => 403,
            _ => 400,
        }
    }

    fn status_reason(self) -> &'static str {
        match self {
            DenyReason::Policy => "Forbidden",
            _ => "BadRequest",
        }
    }
}

/// A refusal: a value, not an error. The message names what to fix and never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

impl Denial {
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A body that is not an AdmissionReview: answered with HTTP 400, since there is no uid to
/// answer with.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("body is not an AdmissionReview: {0}")]
    Parse(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Which webhook is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate(Levels),
}

/// The short outcome of a review, for metrics and logs (never the object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `injected`, `unchanged`, `not-applicable`, `warned`, or a [`DenyReason`].
    pub reason: &'static str,
}

/// The answer to one review: the response body and what was decided.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub decision: Decision,
    pub uid: String,
}

/// Answers one AdmissionReview body.
pub fn review(endpoint: Endpoint, body: &[u8]) -> Result<Answer, BadReview> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| BadReview::Parse(describe_json_error(&e)))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| BadReview::NoRequest)?;
    let (response, decision) = match endpoint {
        Endpoint::Mutate => answer_mutate(&request),
        Endpoint::Validate(levels) => answer_validate(&request, levels),
    };
    let body = encode_response(response).map_err(|e| BadReview::Parse(describe_json_error(&e)))?;
    Ok(Answer {
        body,
        decision,
        uid: request.uid,
    })
}

/// Serialises the response review. kube's type writes the patch as an array of numbers; the
/// apiserver's own clients send `[]byte` as base64, which is also 2.6 times smaller.
fn encode_response(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review())?;
    if let (Some(patch), Some(slot)) = (patch, review.pointer_mut("/response/patch")) {
        *slot = base64::engine::general_purpose::STANDARD
            .encode(patch)
            .into();
    }
    serde_json::to_vec(&review)
}

fn deny(response: AdmissionResponse, denial: Denial) -> (AdmissionResponse, Decision) {
    let mut response = response.deny(denial.message);
    response.result.code = denial.reason.code();
    response.result.reason = denial.reason.status_reason().to_string();
    response.result.status = Some(kube::core::response::StatusSummary::Failure);
    let decision = Decision {
        allowed: false,
        reason: denial.reason.as_str(),
    };
    (response, decision)
}

const fn allow(reason: &'static str) -> Decision {
    Decision {
        allowed: true,
        reason,
    }
}

fn answer_mutate(request: &AdmissionRequest<DynamicObject>) -> (AdmissionResponse, Decision) {
    let response = AdmissionResponse::from(request);
    let is_pod_create = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.is_none()
        && matches!(request.operation, Operation::Create);
    let Some(object) = request.object.as_ref().filter(|_| is_pod_create) else {
        return (response, allow("not-applicable"));
    };
    let declares = object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(spec::SECRETS_ANNOTATION));
    if !declares {
        return (response, allow("not-applicable"));
    }
    let template = match workload::template("", "Pod", object) {
        Ok(Some(t)) => t,
        Ok(None) => return (response, allow("not-applicable")),
        Err(e) => {
            return deny(
                response,
                Denial::new(DenyReason::InvalidObject, e.to_string()),
            )
        }
    };
    match mutate(
        template.annotations.as_ref(),
        &template.spec,
        template.prefix,
    ) {
        Ok(Mutation::NotRequested) => (response, allow("not-applicable")),
        Ok(Mutation::AlreadyInjected) => (response, allow("unchanged")),
        Ok(Mutation::Patch(patch)) => match response.clone().with_patch(patch) {
            Ok(patched) => (patched, allow("injected")),
            Err(_) => deny(
                response,
                Denial::new(DenyReason::InvalidObject, "cannot serialise the patch"),
            ),
        },
        Err(denial) => deny(response, denial),
    }
}

/// `Pod "ns/name"`; workloads created with generateName have no name yet.
fn describe_object(request: &AdmissionRequest<DynamicObject>) -> String {
    let name = if request.name.is_empty() {
        request
            .object
            .as_ref()
            .and_then(|o| o.metadata.generate_name.as_deref())
            .map(|g| format!("{g}*"))
            .unwrap_or_default()
    } else {
        request.name.clone()
    };
    match &request.namespace {
        Some(ns) => format!("{} \"{ns}/{name}\"", request.kind.kind),
        None => format!("{} {name:?}", request.kind.kind),
    }
}

fn answer_validate(
    request: &AdmissionRequest<DynamicObject>,
    levels: Levels,
) -> (AdmissionResponse, Decision) {
    let mut response = AdmissionResponse::from(request);
    let checked = matches!(request.operation, Operation::Create | Operation::Update)
        && matches!(
            request.sub_resource.as_deref(),
            None | Some("ephemeralcontainers")
        )
        && levels.max() != policy::Level::Off;
    let Some(object) = request.object.as_ref().filter(|_| checked) else {
        return (response, allow("not-applicable"));
    };
    let (group, kind) = (request.kind.group.as_str(), request.kind.kind.as_str());
    let findings = |o: &DynamicObject| match workload::template(group, kind, o) {
        Ok(Some(t)) => {
            let allowed = policy::parse_allowed(
                t.annotations
                    .as_ref()
                    .and_then(|a| a.get(spec::ALLOW_ENV_ANNOTATION)),
            );
            Ok(Some(policy::check_spec(&t.spec, levels.max(), &allowed)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let (mut found, mut exempted) = match findings(object) {
        Ok(Some(f)) => f,
        Ok(None) => return (response, allow("not-applicable")),
        Err(e) => {
            return deny(
                response,
                Denial::new(DenyReason::InvalidObject, e.to_string()),
            )
        }
    };
    // An update is judged on what it adds: labelling an old pod must not start failing.
    if let (Operation::Update, Some(old)) = (&request.operation, request.old_object.as_ref()) {
        if let Ok(Some((old_found, old_exempted))) = findings(old) {
            found.retain(|f| !old_found.contains(f));
            exempted.retain(|f| !old_exempted.contains(f));
        }
    }
    let report = Report::new(&describe_object(request), levels, &found, &exempted);
    response.audit_annotations = report.audit.into_iter().collect();
    if !report.warnings.is_empty() {
        response.warnings = Some(report.warnings);
    }
    match report.denial {
        Some(message) => deny(response, Denial::new(DenyReason::Policy, message)),
        None if response.warnings.is_some() => (response, allow("warned")),
        None => (response, allow("allowed")),
    }
}

#[cfg(test)]
mod tests;
