//! A local HTTPS stand-in for kube-apiserver: objects in memory, answered with the apiserver's
//! own response shapes (201 on create, `Status` bodies with `reason` and `code` for 404 and 409,
//! lists with a `resourceVersion`, newline-delimited watch events), and TokenReviews answered
//! with the real bodies in the fixtures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Objects = BTreeMap<(String, String, String), Value>;

#[derive(Default)]
struct Inner {
    /// (collection, namespace, name) → object; collection is `/apis/g/v/res` or `/api/v1/res`.
    objects: Objects,
    version: u64,
    watchers: Vec<(String, mpsc::Sender<Result<Bytes, std::io::Error>>)>,
    /// token → TokenReview fixture to answer with.
    reviews: BTreeMap<String, String>,
    /// token → TokenReview body to answer with (a fixture with fields changed).
    review_bodies: BTreeMap<String, Value>,
    /// Every request line, for assertions on what the client called.
    calls: Vec<String>,
    /// Successful updates (PUT), for tests of optimistic concurrency.
    puts: u64,
    /// The next `n` GETs of one object wait for each other, so concurrent writers all read
    /// the same version before any writes (see `gate_reads`).
    gate: Option<(String, usize, Arc<tokio::sync::Barrier>)>,
}

/// A running stub; objects can be seeded and inspected.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    pub ca_pem: String,
}

struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
}

/// `/api/v1[/namespaces/NS]/RES[/NAME]` or `/apis/G/V[/namespaces/NS]/RES[/NAME]`.
fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *parts.first()? {
        "api" => (format!("/api/{}", parts.get(1)?), &parts[2..]),
        "apis" => (
            format!("/apis/{}/{}", parts.get(1)?, parts.get(2)?),
            &parts[3..],
        ),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (res, name) = match rest {
        [res] => (res, None),
        [res, name] => (res, Some(name.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: format!("{prefix}/{res}"),
        namespace,
        name,
    })
}

/// The apiserver's failure body.
pub fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn resource_of(collection: &str) -> &str {
    collection.rsplit('/').next().unwrap_or("")
}

impl ApiServer {
    pub async fn start() -> Self {
        super::tls::init_crypto();
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("cert");
        let ca_pem = ca.cert.pem();
        let cert = rustls::pki_types::CertificateDer::from(ca.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ca.signing_key.serialize_der())
            .expect("key");
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            addr,
            ca_pem,
        };
        let router = Router::new().fallback(handle).with_state(server.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        server
    }

    /// A kube client for this stub, with `namespace` as its default namespace.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let mut config = kube::Config::new(format!("https://{}", self.addr).parse().expect("url"));
        config.default_namespace = namespace.to_string();
        use rustls::pki_types::pem::PemObject;
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA");
        config.root_cert = Some(vec![der.to_vec()]);
        kube::Client::try_from(config).expect("client")
    }

    /// A kubeconfig file pointing at this stub, for code that calls `Client::try_default`.
    pub fn kubeconfig(&self, dir: &std::path::Path, namespace: &str) -> std::path::PathBuf {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: admin-token\ncontexts:\n- name: stub\n  context: {{cluster: stub, user: admin, namespace: {namespace}}}\ncurrent-context: stub\n",
            self.addr
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    /// Answers TokenReviews of `token` with the fixture `file`.
    pub fn review(&self, token: &str, file: &str) {
        self.inner
            .lock()
            .expect("lock")
            .reviews
            .insert(token.into(), file.into());
    }

    /// `kubectl apply` of a RunSecret sealed offline with the keys the server published in
    /// `runsecrets/runsecrets-public-keys`.
    pub fn apply_sealed(&self, namespace: &str, name: &str, value: &[u8]) {
        let cm = self
            .get("/api/v1/configmaps", "runsecrets", "runsecrets-public-keys")
            .expect("the server published its public keys");
        let keys = serde_json::from_str(cm["data"]["keys.json"].as_str().expect("keys.json"))
            .expect("public keys");
        let manifest = runsecrets::secrets::seal_manifest(
            &keys,
            namespace,
            name,
            zeroize::Zeroizing::new(value.to_vec()),
            Default::default(),
            vec![],
        )
        .expect("sealed");
        let object = serde_norway::from_str(&manifest).expect("the manifest is YAML");
        self.put("/apis/runsecrets.io/v1/runsecrets", object);
    }

    /// Answers TokenReviews of `token` with `body`.
    pub fn review_body(&self, token: &str, body: Value) {
        self.inner
            .lock()
            .expect("lock")
            .review_bodies
            .insert(token.into(), body);
    }

    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .get(&(collection.into(), namespace.into(), name.into()))
            .cloned()
    }

    pub fn all(&self, collection: &str) -> Vec<Value> {
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .iter()
            .filter(|((c, _, _), _)| c == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Makes the next `n` GETs of the object named `name` wait until all `n` have arrived.
    pub fn gate_reads(&self, name: &str, n: usize) {
        self.inner.lock().expect("lock").gate =
            Some((name.to_string(), n, Arc::new(tokio::sync::Barrier::new(n))));
    }

    /// How many updates (PUT) succeeded.
    pub fn puts(&self) -> u64 {
        self.inner.lock().expect("lock").puts
    }

    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().expect("lock").calls.clone()
    }

    /// Stores an object as a create would, and tells the watchers.
    pub fn put(&self, collection: &str, mut object: Value) -> Value {
        let mut inner = self.inner.lock().expect("lock");
        inner.version += 1;
        let version = inner.version.to_string();
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(version);
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", inner.version));
            meta["creationTimestamp"] = json!("2026-11-26T19:07:27Z");
        }
        let ns = meta["namespace"].as_str().unwrap_or_default().to_string();
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let kind = if inner
            .objects
            .insert((collection.into(), ns, name), object.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        notify(&mut inner, collection, kind, &object);
        object
    }
}

fn notify(inner: &mut Inner, collection: &str, kind: &str, object: &Value) {
    let line = format!("{}\n", json!({"type": kind, "object": object}));
    inner
        .watchers
        .retain(|(c, tx)| c != collection || tx.try_send(Ok(Bytes::from(line.clone()))).is_ok());
}

async fn handle(State(server): State<ApiServer>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let query = parts.uri.query().unwrap_or("").to_string();
    server
        .inner
        .lock()
        .expect("lock")
        .calls
        .push(format!("{} {}", parts.method, parts.uri));
    let Some(target) = parse(parts.uri.path()) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    let res = resource_of(&target.collection).to_string();
    let key = |name: &str| {
        (
            target.collection.clone(),
            target.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    };
    let not_found = |name: &str| status(404, "NotFound", format!("{res} \"{name}\" not found"));
    match (parts.method.clone(), target.name.as_deref()) {
        (Method::POST, None) if res == "tokenreviews" => {
            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            // As the apiserver: a review for another audience fails whatever the token.
            if review["spec"]["audiences"] != json!(["runsecrets.io"]) {
                let wrong = super::fixture_bytes("tokenreview-response-wrong-audience.json");
                return (StatusCode::CREATED, wrong).into_response();
            }
            let body = server
                .inner
                .lock()
                .expect("lock")
                .review_bodies
                .get(token)
                .cloned();
            if let Some(body) = body {
                return (StatusCode::CREATED, axum::Json(body)).into_response();
            }
            let file = server
                .inner
                .lock()
                .expect("lock")
                .reviews
                .get(token)
                .cloned();
            let file = file.unwrap_or_else(|| "tokenreview-response-invalid.json".into());
            (StatusCode::CREATED, super::fixture_bytes(&file)).into_response()
        }
        (Method::POST, None) => {
            let mut object: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", format!("decoding body: {e}")),
            };
            object["metadata"]["namespace"] = json!(target.namespace.clone().unwrap_or_default());
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if server
                .inner
                .lock()
                .expect("lock")
                .objects
                .contains_key(&key(&name))
            {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{res} \"{name}\" already exists"),
                );
            }
            (
                StatusCode::CREATED,
                axum::Json(server.put(&target.collection, object)),
            )
                .into_response()
        }
        (Method::GET, Some(name)) => {
            let barrier = {
                let mut inner = server.inner.lock().expect("lock");
                match inner.gate.as_mut() {
                    Some((gated, left, barrier)) if gated == name && *left > 0 => {
                        *left -= 1;
                        Some(barrier.clone())
                    }
                    _ => None,
                }
            };
            if let Some(barrier) = barrier {
                barrier.wait().await;
            }
            match server.inner.lock().expect("lock").objects.get(&key(name)) {
                Some(object) => axum::Json(object.clone()).into_response(),
                None => not_found(name),
            }
        }
        (Method::GET, None) if query.contains("watch=true") || query.contains("watch=1") => {
            let (tx, rx) = mpsc::channel(64);
            server
                .inner
                .lock()
                .expect("lock")
                .watchers
                .push((target.collection.clone(), tx));
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
        (Method::GET, None) => {
            let inner = server.inner.lock().expect("lock");
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((c, ns, _), _)| {
                    c == &target.collection && target.namespace.as_ref().is_none_or(|t| t == ns)
                })
                .map(|(_, v)| v.clone())
                .collect();
            axum::Json(json!({
                "kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": inner.version.to_string()}, "items": items,
            }))
            .into_response()
        }
        (Method::PUT, Some(name)) => {
            let mut object: Value = serde_json::from_slice(&body).unwrap_or_default();
            // As the apiserver: the check and the write happen under one lock, and an update
            // naming a resourceVersion other than the stored one is a 409 Conflict.
            let mut inner = server.inner.lock().expect("lock");
            let Some(stored) = inner.objects.get(&key(name)) else {
                drop(inner);
                return not_found(name);
            };
            let expected = object["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if expected
                .is_some_and(|v| Some(v.as_str()) != stored["metadata"]["resourceVersion"].as_str())
            {
                drop(inner);
                return status(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {res} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                );
            }
            object["metadata"]["uid"] = stored["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] =
                stored["metadata"]["creationTimestamp"].clone();
            inner.puts += 1;
            drop(inner);
            axum::Json(server.put(&target.collection, object)).into_response()
        }
        (Method::PATCH, Some(name)) => {
            let Some(mut object) = server.get(&target.collection, &key(name).1, name) else {
                return not_found(name);
            };
            let mut patch: Value = serde_json::from_slice(&body).unwrap_or_default();
            let strategic = parts
                .headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes() == b"application/strategic-merge-patch+json");
            // Strategic merge of the one list this project patches: webhooks, merged by name.
            if let (true, Some(entries)) = (strategic, patch.get_mut("webhooks").map(Value::take)) {
                let Some(live) = object["webhooks"].as_array_mut() else {
                    return status(422, "Invalid", "no webhooks to merge into".into());
                };
                for entry in entries.as_array().into_iter().flatten() {
                    match live.iter_mut().find(|w| w["name"] == entry["name"]) {
                        Some(w) => json_patch::merge(w, entry),
                        None => live.push(entry.clone()),
                    }
                }
                if let Some(map) = patch.as_object_mut() {
                    map.remove("webhooks");
                }
            }
            json_patch::merge(&mut object, &patch);
            axum::Json(server.put(&target.collection, object)).into_response()
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = server.inner.lock().expect("lock");
            match inner.objects.remove(&key(name)) {
                Some(object) => {
                    notify(&mut inner, &target.collection, "DELETED", &object);
                    axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "kind": res}})).into_response()
                }
                None => {
                    drop(inner);
                    not_found(name)
                }
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method".into(),
        ),
    }
}
