//! The CLI's calls to a running server over TLS (`runsecrets unlock`, `secret reseal`),
//! trusting only the given CA, as the node plugin does.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use hyper::header;
use zeroize::Zeroizing;

/// Why a call got no successful answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("--server {0:?} is not an https:// base URL")]
    Server(String),
    #[error("loading the server CA {path}: {problem}")]
    Ca { path: String, problem: String },
    #[error("reaching {server}")]
    Unreachable {
        server: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the answer of {server}")]
    Answer {
        server: String,
        #[source]
        source: axum::Error,
    },
    #[error("the server refused (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
}

/// The server's text answer, bounded and with control characters replaced, for the terminal.
pub fn printable(answer: &[u8]) -> String {
    crate::error::printable(String::from_utf8_lossy(answer).trim(), 512)
}

/// Posts JSON `body` (wiped after sending) to `server` + `path`; the answer of a 2xx, else
/// `Refused` with the server's message.
pub async fn post(
    server: &str,
    ca: &Path,
    path: &str,
    body: Zeroizing<Vec<u8>>,
) -> Result<(u16, Vec<u8>), CallError> {
    let base = server.trim_end_matches('/');
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|_| CallError::Server(server.to_string()))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(CallError::Server(server.to_string()));
    }
    let ca_error = |problem: String| CallError::Ca {
        path: ca.display().to_string(),
        problem,
    };
    let pem = std::fs::read(ca).map_err(|e| ca_error(e.to_string()))?;
    let client = crate::node::client::build_client(&pem, Duration::from_secs(10))
        .map_err(|e| ca_error(crate::error::Chain(&e).to_string()))?;
    let request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(crate::node::client::SecretBody::new(body))
        .map_err(|_| CallError::Server(server.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|source| CallError::Unreachable {
            server: server.to_string(),
            source,
        })?;
    let status = response.status();
    let answer = axum::body::to_bytes(Body::new(response.into_body()), 4 * 1024 * 1024)
        .await
        .map_err(|source| CallError::Answer {
            server: server.to_string(),
            source,
        })?;
    if status.is_success() {
        Ok((status.as_u16(), answer.to_vec()))
    } else {
        Err(CallError::Refused {
            status: status.as_u16(),
            message: printable(&answer),
        })
    }
}
