//! Admission review handling: body in, body out. Pure apart from the clock, so the server, the
//! tests and the offline CLI all run exactly the same decisions.

mod mutate;
mod patch;
pub mod pod;
mod runsecret;
mod wire;
pub mod workload;

pub use mutate::{declared, mutate, mutate_declared, Declared, Mutation};
pub use patch::Patch;

use std::collections::HashSet;

use kube::core::admission::Operation;

use crate::policy::{self, Levels, Report};
use crate::seal::{Keyring, PublicKeys};
use crate::spec;
use crate::store::catalogue::{Catalogue, Presence};
use workload::describe_json_error;

/// Why a request was refused; also the `reason` label of the review metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    InvalidAnnotation,
    Conflict,
    InvalidObject,
    Policy,
    UnknownSecret,
    /// A declared secret is not granted to the pod's service account.
    NotGranted,
    StoreUnavailable,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::InvalidAnnotation => "invalid-annotation",
            DenyReason::Conflict => "conflict",
            DenyReason::InvalidObject => "invalid-object",
            DenyReason::Policy => "policy",
            DenyReason::UnknownSecret => "unknown-secret",
            DenyReason::NotGranted => "not-granted",
            DenyReason::StoreUnavailable => "store-unavailable",
        }
    }

    /// HTTP status the apiserver reports to the client (`kubectl` shows it).
    fn code(self) -> u16 {
        match self {
            DenyReason::Policy | DenyReason::NotGranted => 403,
            DenyReason::UnknownSecret => 404,
            DenyReason::StoreUnavailable => 503,
            _ => 400,
        }
    }

    fn status_reason(self) -> &'static str {
        match self {
            DenyReason::Policy | DenyReason::NotGranted => "Forbidden",
            DenyReason::UnknownSecret => "NotFound",
            DenyReason::StoreUnavailable => "ServiceUnavailable",
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
    /// Another API version or kind: quoting nothing from the body, like every other refusal.
    #[error("body is not an admission.k8s.io/v1 AdmissionReview (apiVersion or kind differs)")]
    NotV1,
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

/// What one decision produced, before it is put on the wire.
#[derive(Debug)]
struct Outcome {
    decision: Decision,
    denial: Option<Denial>,
    patch: Option<Patch>,
    report: Report,
}

impl Outcome {
    fn allow(reason: &'static str) -> Self {
        Self {
            decision: Decision {
                allowed: true,
                reason,
            },
            denial: None,
            patch: None,
            report: Report::default(),
        }
    }

    fn deny(denial: Denial) -> Self {
        Self {
            decision: Decision {
                allowed: false,
                reason: denial.reason.as_str(),
            },
            denial: Some(denial),
            patch: None,
            report: Report::default(),
        }
    }
}

/// Cluster-wide choices that change how reviews are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Whether the per-object `runsecrets.io/allow-env` annotation exempts variables. An
    /// exemption is the object author's own call; clusters that want exemptions to be an
    /// administrator's decision turn this off.
    pub allow_env_exemptions: bool,
    /// Whether a pod that declares secrets is refused when the secret store cannot be read
    /// (fail closed), or admitted without the existence check.
    pub deny_when_store_unavailable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_env_exemptions: true,
            deny_when_store_unavailable: true,
        }
    }
}

/// What a review may consult besides the request.
#[derive(Clone, Copy, Default)]
pub struct Context<'a> {
    pub options: Options,
    /// Which secrets exist; without one, declared secrets are not checked for existence.
    pub catalogue: Option<&'a dyn Catalogue>,
    /// The cluster's public keys; `RunSecret`s sealed with another key are refused.
    pub keys: Option<&'a PublicKeys>,
    /// The open keyring: a reseal (an update of a `RunSecret`'s envelope) is allowed only when
    /// both envelopes open to the same value, so without it (locked) a reseal is refused.
    pub keyring: Option<&'a Keyring>,
}

/// Answers one AdmissionReview body with the default [`Options`] and no catalogue.
pub fn review(endpoint: Endpoint, body: &[u8]) -> Result<Answer, BadReview> {
    review_with(endpoint, Context::default(), body)
}

/// Answers one AdmissionReview body.
pub fn review_with(
    endpoint: Endpoint,
    context: Context<'_>,
    body: &[u8],
) -> Result<Answer, BadReview> {
    let review = wire::parse(body).map_err(|e| BadReview::Parse(describe_json_error(&e)))?;
    if !review.is_v1() {
        return Err(BadReview::NotV1);
    }
    let mut request = review.request.ok_or(BadReview::NoRequest)?;
    let outcome = match endpoint {
        Endpoint::Mutate => answer_mutate(&mut request, context),
        Endpoint::Validate(_) if runsecret::applies(&request) => {
            match runsecret::check(&request, context.keys, context.keyring) {
                Some(denial) => Outcome::deny(denial),
                None => Outcome::allow("allowed"),
            }
        }
        Endpoint::Validate(levels) => answer_validate(&mut request, levels, context.options),
    };
    let decision = outcome.decision;
    let response = to_response(request.uid.clone(), outcome)
        .map_err(|e| BadReview::Parse(describe_json_error(&e)))?;
    let body = wire::encode(&response).map_err(|e| BadReview::Parse(describe_json_error(&e)))?;
    Ok(Answer {
        body,
        decision,
        uid: request.uid,
    })
}

fn to_response(uid: String, outcome: Outcome) -> Result<wire::Response, serde_json::Error> {
    use base64::Engine;
    let patch = match outcome.patch {
        Some(p) => {
            let json = serde_json::to_vec(&p)?;
            let mut text = String::with_capacity(json.len().div_ceil(3) * 4 + 2);
            text.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(json, &mut text);
            text.push('"');
            Some(serde_json::value::RawValue::from_string(text)?)
        }
        None => None,
    };
    Ok(wire::Response {
        uid,
        allowed: outcome.decision.allowed,
        status: outcome.denial.map(|d| wire::Status {
            status: "Failure",
            code: d.reason.code(),
            reason: d.reason.status_reason(),
            message: d.message,
        }),
        patch_type: patch.as_ref().map(|_| "JSONPatch"),
        patch,
        audit_annotations: outcome.report.audit,
        warnings: outcome.report.warnings,
    })
}

fn read(
    request: &wire::Request<'_>,
    raw: &str,
) -> Result<Option<workload::Object>, workload::InvalidObject> {
    let mut de = serde_json::Deserializer::from_str(raw);
    workload::read_object(&request.kind.group, &request.kind.kind, &mut de)
}

/// The request's object read through its kind's view (now, unless the review's own pass
/// already did); `None` when it has none.
fn take_object<'a>(
    request: &mut wire::Request<'a>,
) -> Option<Result<Option<workload::Object>, (workload::InvalidObject, &'a str)>> {
    match std::mem::take(&mut request.object) {
        wire::Sent::Absent => None,
        wire::Sent::Read(object) => Some(Ok(object.map(|o| *o))),
        wire::Sent::Raw(raw) => Some(read(request, raw).map_err(|e| (e, raw))),
    }
}

/// Refuses references to secrets the catalogue does not hold, naming each with the command
/// that creates it, and then secrets not granted to the pod's service account, with the
/// message the node plugin would fail the mount with.
fn check_existence(
    request: &wire::Request<'_>,
    refs: &[spec::SecretRef],
    service_account: &str,
    context: Context<'_>,
) -> Option<Denial> {
    let catalogue = context.catalogue?;
    let namespace = request.namespace.as_deref().unwrap_or("default");
    // The caller's mistake, not the store's: no lookup could succeed.
    if let Err(e) = crate::store::check_namespace(namespace) {
        return Some(Denial::new(
            DenyReason::InvalidObject,
            format!("namespace of the request: {e}"),
        ));
    }
    let mut missing = Vec::new();
    let mut refused = Vec::new();
    for r in refs {
        match catalogue.presence(namespace, &r.source) {
            Presence::Present(grants) if grants.admits(service_account) => {}
            Presence::Present(grants) => refused.push(grants.refusal(&r.source, service_account)),
            Presence::Absent => missing.push(r.source.as_str()),
            Presence::Unknown if context.options.deny_when_store_unavailable => {
                return Some(Denial::new(
                    DenyReason::StoreUnavailable,
                    "the runsecrets secret store cannot be read, so the declared secrets cannot be \
                     checked; try again shortly",
                ));
            }
            Presence::Unknown => {}
        }
    }
    if missing.is_empty() {
        return (!refused.is_empty())
            .then(|| Denial::new(DenyReason::NotGranted, refused.join("; ")));
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|name| {
            format!(
                "secret {name:?} does not exist in namespace {namespace:?}; create it with: \
                 runsecrets secret create -n {namespace} {name} FILE"
            )
        })
        .collect();
    Some(Denial::new(DenyReason::UnknownSecret, lines.join("; ")))
}

fn answer_mutate(request: &mut wire::Request<'_>, context: Context<'_>) -> Outcome {
    let is_pod_create = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.is_none()
        && matches!(request.operation, Operation::Create);
    if !is_pod_create {
        return Outcome::allow("not-applicable");
    }
    let template = match take_object(request) {
        Some(Ok(Some(workload::Object {
            template: Some(t), ..
        }))) => t,
        None | Some(Ok(_)) => return Outcome::allow("not-applicable"),
        // Only pods that declare secrets are ours to refuse; the apiserver judges the rest.
        Some(Err((_, raw))) if !workload::declares(raw, spec::SECRETS_ANNOTATION) => {
            return Outcome::allow("not-applicable")
        }
        Some(Err((e, _))) => {
            return Outcome::deny(Denial::new(DenyReason::InvalidObject, e.to_string()))
        }
    };
    let declared = match declared(template.annotations.as_ref()) {
        Ok(Some(d)) => d,
        Ok(None) => return Outcome::allow("not-applicable"),
        Err(denial) => return Outcome::deny(denial),
    };
    let mutation = mutate_declared(
        &declared,
        template.annotations.as_ref(),
        &template.spec,
        template.prefix,
    );
    if mutation.is_ok() {
        let service_account = template.spec.service_account();
        if let Some(denial) = check_existence(request, &declared.refs, service_account, context) {
            return Outcome::deny(denial);
        }
    }
    match mutation {
        Ok(Mutation::NotRequested) => Outcome::allow("not-applicable"),
        Ok(Mutation::AlreadyInjected) => Outcome::allow("unchanged"),
        Ok(Mutation::Patch(patch)) => Outcome {
            patch: Some(patch),
            ..Outcome::allow("injected")
        },
        Err(denial) => Outcome::deny(denial),
    }
}

/// `Pod "ns/name"`; objects created with generateName have no name yet.
fn describe_object(request: &wire::Request<'_>, meta: &workload::Meta) -> String {
    let name = if request.name.is_empty() {
        meta.generate_name
            .as_deref()
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

type Findings = (Vec<policy::Finding>, Vec<policy::Finding>);

/// True when two objects of a kind have the same pod template apart from ephemeral
/// containers, compared as the apiserver sent them: every field, not only those the views
/// read (a new image is a changed template).
fn same_template(prefix: &[&str], old: &str, new: &str) -> bool {
    let template = |raw: &str| -> Option<(serde_json::Value, serde_json::Value)> {
        let mut object: serde_json::Value = serde_json::from_str(raw).ok()?;
        let template = prefix
            .iter()
            .try_fold(&mut object, |v, key| v.get_mut(*key))?;
        let annotations = template
            .pointer_mut("/metadata/annotations")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        let mut spec = template
            .get_mut("spec")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("ephemeralContainers");
        }
        Some((annotations, spec))
    };
    matches!((template(old), template(new)), (Some(a), Some(b)) if a == b)
}

fn findings(object: &workload::Object, level: policy::Level, options: Options) -> Option<Findings> {
    let t = object.template.as_ref()?;
    let exemptions = t
        .annotations
        .as_ref()
        .and_then(|a| a.get(spec::ALLOW_ENV_ANNOTATION))
        .filter(|_| options.allow_env_exemptions);
    let allowed = policy::parse_allowed(exemptions);
    Some(policy::check_spec(&t.spec, level, &allowed))
}

fn answer_validate(request: &mut wire::Request<'_>, levels: Levels, options: Options) -> Outcome {
    let checked = matches!(request.operation, Operation::Create | Operation::Update)
        && matches!(
            request.sub_resource.as_deref(),
            None | Some("ephemeralcontainers")
        )
        && levels.max() != policy::Level::Off;
    if !checked {
        return Outcome::allow("not-applicable");
    }
    let raw = request.object.raw();
    let object = match take_object(request) {
        Some(Ok(Some(o))) => o,
        None | Some(Ok(None)) => return Outcome::allow("not-applicable"),
        // Warn and audit entries never refuse; an object the apiserver accepted but we cannot
        // read is only refused where the namespace enforces.
        Some(Err(_)) if levels.enforce == policy::Level::Off => {
            return Outcome::allow("unreadable")
        }
        Some(Err((e, _))) => {
            return Outcome::deny(Denial::new(DenyReason::InvalidObject, e.to_string()))
        }
    };
    let Some((mut found, mut exempted)) = findings(&object, levels.max(), options) else {
        return Outcome::allow("not-applicable");
    };
    // Pod Security Admission's rule for updates: when the pod template is unchanged apart from
    // ephemeral containers (relabelling, scaling, `kubectl debug`), only what the update adds
    // is judged, so old objects stay manageable; any other template change is judged whole.
    // An update's objects are always kept as sent (see `wire`).
    let update = matches!(request.operation, Operation::Update);
    let sent = raw.zip(request.old_object.raw()).filter(|_| update);
    if let (Some((new, old)), Some(t)) = (sent, &object.template) {
        let unchanged =
            !(found.is_empty() && exempted.is_empty()) && same_template(t.prefix, old, new);
        let old = if unchanged {
            read(request, old).ok().flatten()
        } else {
            None
        };
        if let Some((old_found, old_exempted)) =
            old.and_then(|old| findings(&old, levels.max(), options))
        {
            let old_found: HashSet<&policy::Finding> = old_found.iter().collect();
            let old_exempted: HashSet<&policy::Finding> = old_exempted.iter().collect();
            found.retain(|f| !old_found.contains(f));
            exempted.retain(|f| !old_exempted.contains(f));
        }
    }
    let mut report = Report::new(
        &describe_object(request, &object.meta),
        levels,
        &found,
        &exempted,
    );
    match report.denial.take() {
        Some(message) => Outcome {
            report,
            ..Outcome::deny(Denial::new(DenyReason::Policy, message))
        },
        None if !report.warnings.is_empty() => Outcome {
            report,
            ..Outcome::allow("warned")
        },
        None => Outcome {
            report,
            ..Outcome::allow("allowed")
        },
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
