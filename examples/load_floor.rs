//! The baseline of `benches/load.sh`: the least an HTTPS admission webhook can do per request,
//! measured in the same run as `runsecrets server` so the script's ratio says what the server
//! costs beyond its transport. It speaks TLS through rustls (ring, the same provider and the
//! server's own certificate), HTTP/1.1 through hyper on the same tokio runtime flavour, reads
//! every request's body whole and answers with canned bytes (the script gives it the answer
//! `/mutate` gave for the same body, so both send the same bytes back). No routing, limits,
//! deadlines, metrics or logging: those are what the server adds.
//!
//!   load_floor ADDR CERT_PEM KEY_PEM ANSWER_FILE LIFETIME_SECONDS
//!
//! It stops by itself after LIFETIME_SECONDS (the script also kills it when it is done).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key, answer, lifetime] = args.as_slice() else {
        return Err("usage: load_floor ADDR CERT_PEM KEY_PEM ANSWER_FILE LIFETIME_SECONDS".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let lifetime = Duration::from_secs(lifetime.parse()?);
    let answer = Bytes::from(std::fs::read(answer)?);
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    // The runtime `runsecrets server` starts (main.rs): multi-threaded, one worker per core
    // the process may run on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        let accepting = async {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, answer) = (acceptor.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request| respond(request, answer.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        };
        tokio::select! {
            () = accepting => {}
            () = tokio::time::sleep(lifetime) => {}
        }
        Ok::<_, Failure>(())
    })
}

/// Reads the body whole, then answers the canned review (400 when the body is unreadable).
async fn respond(
    request: Request<Incoming>,
    answer: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let read = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes());
    let (status, body) = match read {
        Ok(body) if !body.is_empty() => (StatusCode::OK, answer),
        _ => (StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
