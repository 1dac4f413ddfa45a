//! The delivery client: one HTTPS call per publish to the server's `POST /v1/publish`,
//! trusting only the configured CA, with the plugin's own token re-read on every call (kubelet
//! rotates projected tokens) and the CA re-read when its file changes. Request and response
//! bodies carry tokens and secret values, so both are held in buffers that are wiped on drop.

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::delivery::wire::{DeliveryError, PublishRequest, PublishResponse, Reason, PUBLISH_PATH};

/// Largest response accepted: 256 secrets of 500 KiB, base64-encoded, fit well inside.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Longest server message passed on to kubelet.
const MAX_MESSAGE: usize = 512;

/// Where and how to reach the delivery API.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Base URL, `https://host:port`.
    pub server: String,
    pub ca: PathBuf,
    pub token_file: PathBuf,
    pub timeout: Duration,
}

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, SecretBody>;

/// Identity of the CA file's current content, to notice a replaced file cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// Calls the delivery API; cheap to clone.
#[derive(Clone)]
pub struct DeliveryClient {
    config: Arc<DeliveryConfig>,
    uri: Uri,
    cached: Arc<Mutex<Option<(Stamp, HttpClient)>>>,
}

/// Why the client could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("--server {server:?}: {problem}")]
pub struct ClientConfigError {
    server: String,
    problem: &'static str,
}

/// Why a publish call got no files, in delivery terms: the service decides what kubelet is
/// told (the gRPC code, and the step each text follows: "loading the server CA: <path>: …").
/// Texts name paths and the server, never a token or a value; the server's own message is
/// passed on cleaned (it never holds a secret).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}")]
    CaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    CaUnusable {
        path: PathBuf,
        #[source]
        source: CaError,
    },
    #[error("{path}")]
    TokenRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not text")]
    TokenNotText { path: PathBuf },
    #[error("{path} is empty")]
    TokenEmpty { path: PathBuf },
    #[error("the node token is not a valid header value")]
    TokenNotAHeader,
    #[error("encoding the request")]
    Encode(#[source] serde_json::Error),
    #[error("building the request")]
    Build(#[source] hyper::http::Error),
    #[error("no answer from {server} within {}s", .timeout.as_secs_f64())]
    Timeout { server: String, timeout: Duration },
    #[error("cannot reach the delivery server {server}")]
    Connect {
        server: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the server's answer")]
    Body(#[source] hyper::Error),
    #[error("the server's answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the server's publish response is not a valid PublishResponse")]
    Malformed,
    /// The server answered with an error: its reason when the body says one.
    #[error("{}", refusal_text(*.status, .reason.as_ref()))]
    Refused {
        status: u16,
        reason: Option<(Reason, String)>,
    },
}

fn refusal_text(status: u16, reason: Option<&(Reason, String)>) -> String {
    match reason {
        Some((reason, message)) => {
            format!("server refused ({reason:?}, HTTP {status}): {message}")
        }
        None => format!("server answered HTTP {status} without a delivery error body"),
    }
}

impl DeliveryClient {
    pub fn new(config: DeliveryConfig) -> Result<Self, ClientConfigError> {
        let bad = |problem| ClientConfigError {
            server: config.server.clone(),
            problem,
        };
        let base = config.server.trim_end_matches('/');
        let uri: Uri = format!("{base}{PUBLISH_PATH}")
            .parse()
            .map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(bad("must be an https:// URL with a host"));
        }
        if uri.query().is_some() || base.matches('/').count() > 2 {
            return Err(bad("must be a base URL without a path or query"));
        }
        Ok(Self {
            config: Arc::new(config),
            uri,
            cached: Arc::new(Mutex::new(None)),
        })
    }

    /// Asks for a pod's secrets, within the configured timeout.
    pub async fn publish(&self, request: &PublishRequest) -> Result<PublishResponse, ClientError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.call(request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                server: self.config.server.clone(),
                timeout,
            }),
        }
    }

    async fn call(&self, request: &PublishRequest) -> Result<PublishResponse, ClientError> {
        let client = self.client()?;
        let token = self.node_token().await?;
        let body = Zeroizing::new(serde_json::to_vec(request).map_err(ClientError::Encode)?);
        let bearer = Zeroizing::new(format!("Bearer {}", token.as_str()));
        let mut auth = HeaderValue::from_str(&bearer).map_err(|_| ClientError::TokenNotAHeader)?;
        auth.set_sensitive(true);
        let http_request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(SecretBody(Some(body)))
            .map_err(ClientError::Build)?;
        let response =
            client
                .request(http_request)
                .await
                .map_err(|source| ClientError::Connect {
                    server: self.config.server.clone(),
                    source,
                })?;
        let status = response.status().as_u16();
        let hint = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = read_body(response.into_body(), hint).await?;
        if status == 200 {
            return serde_json::from_slice::<PublishResponse>(&body)
                .map_err(|_| ClientError::Malformed);
        }
        Err(refusal(status, &body))
    }

    /// The plugin's own token, read fresh for every call.
    async fn node_token(&self) -> Result<Zeroizing<String>, ClientError> {
        let path = &self.config.token_file;
        let raw = Zeroizing::new(tokio::fs::read(path).await.map_err(|source| {
            ClientError::TokenRead {
                path: path.clone(),
                source,
            }
        })?);
        let text = std::str::from_utf8(&raw)
            .map_err(|_| ClientError::TokenNotText { path: path.clone() })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ClientError::TokenEmpty { path: path.clone() });
        }
        Ok(Zeroizing::new(token.to_string()))
    }

    /// The HTTP client for the CA file as it is now; rebuilt when the file changes.
    fn client(&self) -> Result<HttpClient, ClientError> {
        let path = &self.config.ca;
        let unreadable = |source| ClientError::CaRead {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let stamp = Stamp {
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((have, client)) = cached.as_ref() {
            if *have == stamp {
                return Ok(client.clone());
            }
        }
        let pem = std::fs::read(path).map_err(unreadable)?;
        let client =
            build_client(&pem, self.config.timeout).map_err(|source| ClientError::CaUnusable {
                path: path.clone(),
                source,
            })?;
        *cached = Some((stamp, client.clone()));
        Ok(client)
    }
}

/// Why a CA bundle cannot be used to trust the server.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("unreadable PEM")]
    Pem(#[source] rustls_pki_types::pem::Error),
    #[error("not a usable CA certificate")]
    Certificate(#[source] rustls::Error),
    #[error("no certificate in the file")]
    Empty,
    #[error("TLS setup")]
    Tls(#[source] rustls::Error),
}

pub(crate) fn build_client(ca_pem: &[u8], timeout: Duration) -> Result<HttpClient, CaError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(CaError::Pem)?)
            .map_err(CaError::Certificate)?;
    }
    if roots.is_empty() {
        return Err(CaError::Empty);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(CaError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        // A burst of publishes opens many connections; keep only a few for the next one.
        .pool_max_idle_per_host(4)
        .build(https))
}

/// Reads the whole body into a wiped-on-drop buffer, refusing more than [`MAX_BODY`].
async fn read_body(body: Incoming, hint: Option<usize>) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let mut body = std::pin::pin!(body);
    // Sized up front where possible: every reallocation would leave an unwiped copy behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(hint.unwrap_or(8192).min(MAX_BODY)));
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(ClientError::Body)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(ClientError::TooLarge);
            }
            if buf.len() + data.len() > buf.capacity() {
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    (buf.capacity() * 2)
                        .max(buf.len() + data.len())
                        .min(MAX_BODY),
                ));
                bigger.extend_from_slice(&buf);
                buf = bigger;
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// A refusal, with the server's reason and message when its body is a delivery error.
fn refusal(status: u16, body: &[u8]) -> ClientError {
    let reason = serde_json::from_slice::<DeliveryError>(body)
        .ok()
        .map(|e| (e.reason, clean(&e.message)));
    ClientError::Refused { status, reason }
}

/// The server's message, bounded and with control characters replaced.
fn clean(message: &str) -> String {
    crate::error::printable(message, MAX_MESSAGE)
}

/// A request body that wipes itself when hyper is done with it.
pub struct SecretBody(Option<Zeroizing<Vec<u8>>>);

impl SecretBody {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretBody(Some(bytes))
    }
}

impl Body for SecretBody {
    type Data = Cursor<Zeroizing<Vec<u8>>>;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(Cursor::new(b)))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}
