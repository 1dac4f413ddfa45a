//! A TLS test client that trusts a given CA and speaks HTTP/1.1 over one kept-alive connection.

use std::net::SocketAddr;
use std::sync::{Arc, Once};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Installs the process-wide rustls provider once, as `main` does.
pub fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn connector(ca_pem: &[u8]) -> TlsConnector {
    connector_with_alpn(ca_pem, b"http/1.1")
}

pub fn connector_with_alpn(ca_pem: &[u8], alpn: &[u8]) -> TlsConnector {
    init_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Opens a TLS connection to `addr`, verifying the name `localhost`.
pub async fn connect(addr: SocketAddr, ca_pem: &[u8]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    connector(ca_pem)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// The DER of the certificate the server presented.
pub fn peer_cert(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().expect("server cert")[0].to_vec()
}

/// An HTTP/1.1 client on one connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn new(stream: TlsStream<TcpStream>) -> Self {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        Self { sender }
    }

    pub async fn open(addr: SocketAddr, ca_pem: &[u8]) -> Self {
        Self::new(connect(addr, ca_pem).await).await
    }

    /// Sends a request; `None` when the connection is gone.
    pub async fn try_send(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Option<(u16, Vec<u8>)> {
        self.try_send_with(method, path, &[], body).await
    }

    /// Sends a request with extra headers.
    pub async fn try_send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<(u16, Vec<u8>)> {
        self.sender.ready().await.ok()?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let response = self.sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .ok()?
            .to_bytes()
            .to_vec();
        Some((status, body))
    }

    pub async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.try_send(method, path, body)
            .await
            .expect("request answered")
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// GET over plain HTTP (the admin listener).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect admin");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("admin answers");
    let (status, body) = read_response(response).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Status and whole body of a response.
async fn read_response(response: hyper::Response<hyper::body::Incoming>) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body");
    (status, body.to_bytes().to_vec())
}

/// One HTTP/2 request over a fresh TLS connection that negotiated `h2`, as the apiserver does.
pub async fn h2_post(addr: SocketAddr, ca_pem: &[u8], path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let stream = connector_with_alpn(ca_pem, b"h2")
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "server offers h2"
    );
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .expect("answered over h2");
    read_response(response).await
}
