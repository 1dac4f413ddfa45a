//! The `admission.k8s.io/v1` AdmissionReview as it crosses the wire. A review is read in one
//! pass over the body: the apiserver writes the request's `kind` and `operation` before its
//! `object`, so by the time the object arrives it is known what to read it as, and it is read
//! straight into its kind's lean view (nothing is kept that no decision needs: managedFields,
//! status, …). A body in another order, an update (whose decision compares the old and new
//! objects as sent), or an object that does not read as its kind keeps its objects as raw
//! JSON borrowed from the body, read later by the same code, so its answer and every error
//! message are what they always were.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use kube::core::admission::Operation;
use kube::core::GroupVersionKind;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::workload;

/// The only review the apiserver sends to webhooks that list `v1` in
/// `admissionReviewVersions`; anything else is not ours to answer.
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// An incoming review. Only the fields a decision reads are kept.
#[derive(Debug)]
pub struct Review<'a> {
    pub api_version: String,
    pub kind: String,
    pub request: Option<Request<'a>>,
}

impl Review<'_> {
    /// True for an `admission.k8s.io/v1` AdmissionReview.
    pub fn is_v1(&self) -> bool {
        self.api_version == API_VERSION && self.kind == KIND
    }
}

/// Reads a review body: in one pass when it can, else with its objects kept raw; the error
/// is the second reading's, so a malformed body is described as it always was. A body is
/// checked as UTF-8 once, in bulk, instead of string by string.
pub fn parse(body: &[u8]) -> Result<Review<'_>, serde_json::Error> {
    let in_stream = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<Envelope<'_, InStream>>(text).ok());
    match in_stream {
        Some(review) => Ok(review.into_review()),
        None => serde_json::from_slice::<Envelope<'_, Deferred>>(body).map(Envelope::into_review),
    }
}

/// The review as serde reads it; `M` says whether objects may be read in the same pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "M: Mode"))]
struct Envelope<'a, M> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, borrow, deserialize_with = "request_in::<_, M>")]
    request: Option<Request<'a>>,
    #[serde(skip)]
    mode: PhantomData<M>,
}

impl<'a, M> Envelope<'a, M> {
    fn into_review(self) -> Review<'a> {
        Review {
            api_version: self.api_version,
            kind: self.kind,
            request: self.request,
        }
    }
}

/// Whether a request's objects are read while the request is (`InStream`) or kept raw.
trait Mode {
    const IN_STREAM: bool;
}

struct InStream;
struct Deferred;

impl Mode for InStream {
    const IN_STREAM: bool = true;
}

impl Mode for Deferred {
    const IN_STREAM: bool = false;
}

fn request_in<'de, D, M>(deserializer: D) -> Result<Option<Request<'de>>, D::Error>
where
    D: Deserializer<'de>,
    M: Mode,
{
    deserializer.deserialize_option(RequestVisitor::<M>(PhantomData))
}

/// The request part of a review.
#[derive(Debug)]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub object: Sent<'a>,
    pub old_object: Sent<'a>,
}

/// An object of the request as it was read.
#[derive(Debug, Default)]
pub enum Sent<'a> {
    /// Absent or JSON `null` (as in DELETE).
    #[default]
    Absent,
    /// Not read yet: the JSON text, borrowed from the body.
    Raw(&'a str),
    /// Read through its kind's view in the same pass as the request; `None` for an object of
    /// a kind without a pod template.
    Read(Option<Box<workload::Object>>),
}

impl<'a> Sent<'a> {
    /// The JSON text, unless absent or already read.
    pub fn raw(&self) -> Option<&'a str> {
        match self {
            Sent::Raw(text) => Some(text),
            _ => None,
        }
    }

    fn from_raw(value: Option<&'a RawValue>) -> Self {
        match value.map(RawValue::get) {
            None | Some("null") => Sent::Absent,
            Some(text) => Sent::Raw(text),
        }
    }
}

struct RequestVisitor<M>(PhantomData<M>);

/// The request's fields a decision reads (an escaped key, `"ui\u0064"`, is still `uid`).
#[derive(Deserialize, PartialEq)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    SubResource,
    Name,
    Namespace,
    Operation,
    Object,
    OldObject,
    #[serde(other)]
    Other,
}

impl<'de, M: Mode> Visitor<'de> for RequestVisitor<M> {
    type Value = Option<Request<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Request")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut sub_resource = None;
        let mut name = None;
        let mut namespace = None;
        let mut operation: Option<Operation> = None;
        let mut object = None;
        let mut old_object = None;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Uid => set(&mut uid, "uid", map.next_value()?)?,
                Field::Kind => set(&mut kind, "kind", map.next_value()?)?,
                Field::SubResource => set(&mut sub_resource, "subResource", map.next_value()?)?,
                Field::Name => set(&mut name, "name", map.next_value()?)?,
                Field::Namespace => set(&mut namespace, "namespace", map.next_value()?)?,
                Field::Operation => set(&mut operation, "operation", map.next_value()?)?,
                Field::Object | Field::OldObject => {
                    let (slot, field) = if key == Field::Object {
                        (&mut object, "object")
                    } else {
                        (&mut old_object, "oldObject")
                    };
                    if slot.is_some() {
                        return Err(de::Error::duplicate_field(field));
                    }
                    // Only creations: an update's decision also compares the objects as sent.
                    let view = kind
                        .as_ref()
                        .filter(|_| M::IN_STREAM && matches!(operation, Some(Operation::Create)))
                        .filter(|k| workload::template_path(&k.group, &k.kind).is_some());
                    *slot = Some(match view {
                        Some(k) => map.next_value_seed(ObjectSeed(k))?,
                        None => Sent::from_raw(map.next_value()?),
                    });
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(Request {
            uid: uid.ok_or_else(|| de::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            sub_resource: sub_resource.flatten(),
            name: name.unwrap_or_default(),
            namespace: namespace.flatten(),
            operation: operation.ok_or_else(|| de::Error::missing_field("operation"))?,
            object: object.unwrap_or_default(),
            old_object: old_object.unwrap_or_default(),
        }))
    }
}

/// A field read once: a second occurrence is refused, as serde's derived readers refuse it.
fn set<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads an object (or `null`) through the view of its kind; nothing of it is borrowed.
struct ObjectSeed<'k>(&'k GroupVersionKind);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Sent<'static>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Sent<'static>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Sent<'static>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} object", self.0.kind)
    }

    fn visit_none<E: de::Error>(self) -> Result<Sent<'static>, E> {
        Ok(Sent::Absent)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Sent<'static>, E> {
        Ok(Sent::Absent)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Sent<'static>, D::Error> {
        let object = workload::read_view(&self.0.group, &self.0.kind, d)?;
        Ok(Sent::Read(object.map(Box::new)))
    }
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
    /// Base64 of a JSON Patch, as Go encodes `[]byte`: a JSON string written as it is, since
    /// base64 never needs escaping (serde_json would check it byte by byte).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Box<RawValue>>,
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
    let patch = response.patch.as_ref().map_or(0, |p| p.get().len());
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

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &[u8] = include_bytes!("../../tests/fixtures/cluster/pod-secrets-short.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/cluster/pod-delete.json");

    fn request(body: &[u8]) -> Request<'_> {
        let review = parse(body).expect("a review");
        assert!(review.is_v1());
        review.request.expect("a request")
    }

    fn reordered(body: &[u8], change: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(body).expect("json");
        change(&mut v);
        // Without serde_json's preserve_order keys come out sorted: `object` before `operation`.
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn a_creation_in_the_apiservers_order_is_read_in_one_pass() {
        let r = request(CREATE);
        let Sent::Read(Some(object)) = &r.object else {
            panic!("not read in the request's pass: {:?}", r.object);
        };
        let template = object.template.as_ref().expect("a pod template");
        assert_eq!(template.spec.containers[0].name, "mysql");
        // kubectl's last-applied-configuration (a copy of the manifest) is skipped unread.
        assert!(std::str::from_utf8(CREATE)
            .expect("utf-8")
            .contains("kubectl.kubernetes.io/last-applied-configuration"));
        let kept: Vec<&str> = template
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(kept, ["runsecrets.io/secrets"]);
        assert_eq!(r.uid, "40aac077-793b-487a-ad91-a3dbf7b99656");
    }

    #[test]
    fn objects_stay_raw_when_their_kind_comes_too_late_or_the_request_is_an_update() {
        let sorted = reordered(CREATE, |_| {});
        assert!(matches!(request(&sorted).object, Sent::Raw(_)));
        let update = CREATE.to_vec();
        let update =
            String::from_utf8(update)
                .expect("utf-8")
                .replacen("\"CREATE\"", "\"UPDATE\"", 1);
        let r = request(update.as_bytes());
        assert!(matches!(r.operation, Operation::Update));
        assert!(r
            .object
            .raw()
            .is_some_and(|o| o.contains("\"managedFields\"")));
        assert!(matches!(request(DELETE).object, Sent::Absent));
    }

    #[test]
    fn an_object_that_does_not_read_as_its_kind_is_kept_raw_for_the_decision_to_judge() {
        let text = String::from_utf8(CREATE.to_vec()).expect("utf-8");
        let broken = text.replacen("\"containers\": [", "\"containers\": 7, \"x\": [", 1);
        assert_ne!(broken, text);
        let r = request(broken.as_bytes());
        assert!(r
            .object
            .raw()
            .is_some_and(|o| o.contains("\"containers\": 7")));
    }

    #[test]
    fn malformed_bodies_and_repeated_fields_are_errors() {
        assert!(parse(b"{\"request\": {\"uid\": ").is_err());
        let twice = reordered(CREATE, |_| {});
        let twice = String::from_utf8(twice).expect("utf-8").replacen(
            "\"uid\":",
            "\"uid\":\"x\",\"uid\":",
            1,
        );
        let error = parse(twice.as_bytes()).expect_err("a repeated uid");
        assert!(
            error.to_string().contains("duplicate field `uid`"),
            "{error}"
        );
        let missing = reordered(CREATE, |v| {
            v["request"]
                .as_object_mut()
                .expect("request")
                .remove("operation");
        });
        let error = parse(&missing).expect_err("no operation");
        assert!(
            error.to_string().contains("missing field `operation`"),
            "{error}"
        );
    }

    #[test]
    fn escaped_field_names_are_the_fields_they_spell() {
        let text = std::str::from_utf8(CREATE).expect("utf-8");
        let escaped = text.replacen("\"uid\":", "\"ui\\u0064\":", 1);
        assert_ne!(escaped, text);
        assert_eq!(
            request(escaped.as_bytes()).uid,
            "40aac077-793b-487a-ad91-a3dbf7b99656"
        );
    }
}
