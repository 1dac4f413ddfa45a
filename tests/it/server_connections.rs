//! The HTTPS listeners' connections, end to end on 127.0.0.1: graceful shutdown, deadlines for
//! silent, idle and trickling connections, eviction when the table is full, and thousands of
//! idle connections against one review.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{ca, seed};
use clap::Parser;
use common::server::Running;
use common::tls::{connect, plain_get, Client};
use common::*;
use runsecrets::server::ServerArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

#[tokio::test]
async fn shutdown_finishes_in_flight_reviews_and_closes_idle_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--shutdown-timeout", "5s"]).await;
    let ca_pem = ca(dir.path());
    let mut idle = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle.send("GET", "/livez", vec![]).await.0, 200);

    // A review whose body is still arriving when SIGTERM comes.
    let body = fixture_bytes("pod-secrets-short.json");
    let mut raw = connect(server.webhook, &ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&body[..100]).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let admin = server.admin;
    let webhook = server.webhook;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        plain_get(admin, "/readyz").await.0,
        503,
        "not ready while draining"
    );
    assert!(
        tokio::net::TcpStream::connect(webhook).await.is_err(),
        "no new connections"
    );

    raw.write_all(&body[100..]).await.unwrap();
    raw.flush().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight review answered: {text:.200}"
    );
    assert!(text.contains("40aac077-793b-487a-ad91-a3dbf7b99656"));

    stopping.await.unwrap().expect("drained in time");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle keep-alive did not hold shutdown"
    );
    assert!(
        idle.try_send("GET", "/livez", vec![]).await.is_none(),
        "idle connection closed"
    );
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &["--shutdown-delay", "800ms"]).await;
    let ca_pem = ca(dir.path());
    let (admin, webhook) = (server.admin, server.webhook);
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        plain_get(admin, "/readyz").await.0,
        503,
        "not ready at once"
    );
    let mut late = Client::open(webhook, &ca_pem).await;
    assert_eq!(
        late.send("GET", "/livez", vec![]).await.0,
        200,
        "still accepting during the delay"
    );
    stopping.await.unwrap().expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(webhook).await.is_err(),
        "stopped listening"
    );
}

#[test]
fn zero_durations_are_refused_at_startup() {
    for flag in [
        "--tls-reload-interval",
        "--request-timeout",
        "--shutdown-timeout",
    ] {
        let e = ServerArgs::try_parse_from(["server", flag, "0s"]).expect_err("zero refused");
        assert!(e.to_string().contains("greater than zero"), "{flag}: {e}");
    }
    assert!(ServerArgs::try_parse_from(["server", "--shutdown-delay", "0s"]).is_ok());
}

/// Sends the headers and the first bytes of a review, so the request stays in flight.
async fn start_review(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let body = fixture_bytes("pod-secrets-short.json");
    let mut raw = connect(addr, ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&body[..100]).await.unwrap();
    raw.flush().await.unwrap();
    raw
}

/// Whether the server has closed the connection: a read sees EOF or an error at once.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_newcomer_evicts_an_idle_connection_but_waits_for_a_busy_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &["--max-connections", "1"]).await;
    let ca_pem = ca(dir.path());
    // An idle kept-alive connection gives up its slot to a new one…
    let mut idle = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle.send("GET", "/livez", vec![]).await.0, 200);
    let mut second = tokio::time::timeout(
        Duration::from_secs(2),
        Client::open(server.webhook, &ca_pem),
    )
    .await
    .expect("an idle connection does not block a new one");
    assert_eq!(second.send("GET", "/livez", vec![]).await.0, 200);
    assert!(
        idle.try_send("GET", "/livez", vec![]).await.is_none(),
        "the idle one was closed"
    );
    drop(second);

    // …but a connection with a request in flight keeps it, and /readyz says why others wait.
    let mut busy = start_review(server.webhook, &ca_pem).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (addr, pem) = (server.webhook, ca_pem.clone());
    let waiting = tokio::spawn(async move { Client::open(addr, &pem).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served beyond --max-connections");
    let (status, text) = plain_get(server.admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(text.contains("webhook listener saturated"), "{text}");
    // The request completes; its connection is idle again and makes room.
    let body = fixture_bytes("pod-secrets-short.json");
    busy.write_all(&body[100..]).await.unwrap();
    let mut answer = vec![0u8; 12];
    busy.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the request ended")
        .expect("task");
    assert_eq!(waited.send("GET", "/livez", vec![]).await.0, 200);
    assert_eq!(plain_get(server.admin, "/readyz").await.0, 200);
    server.stop().await.expect("clean stop");
}

/// Slowloris on the body: every slot holds a request whose body trickles in. A review still
/// gets through once the oldest has been in flight for 2 s, instead of after the 10 s
/// request timeout, and the slow peer loses its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_trickling_bodies_give_way_to_a_review() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--max-connections", "4"]).await;
    let ca_pem = ca(dir.path());
    let mut slow = Vec::new();
    // No request of these began before this instant, so none is 2 s old before 2 s from it.
    let first = Instant::now();
    for _ in 0..4 {
        slow.push(start_review(server.webhook, &ca_pem).await);
    }
    // Their headers are read: all four are in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let mut client = tokio::time::timeout(
        Duration::from_secs(5),
        Client::open(server.webhook, &ca_pem),
    )
    .await
    .expect("a slot within 5 s");
    let (status, body) = client
        .send("POST", "/mutate", fixture_bytes("pod-secrets-short.json"))
        .await;
    let took = asked.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        response(&body, &fixture("pod-secrets-short.json"))["allowed"],
        true
    );
    assert!(
        first.elapsed() >= Duration::from_secs(2),
        "a request younger than 2 s was cut: {:?} after the first began",
        first.elapsed()
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    eprintln!("a review with every slot held by a trickling body: {took:?}");
    assert!(
        closed_by_server(&mut slow[0]).await,
        "the slowest peer kept its connection"
    );
    let metrics = plain_get(server.admin, "/metrics").await.1;
    let line = r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="slow_request"} 1"#;
    assert!(metrics.contains(line), "{line} not in\n{metrics}");
    drop(slow);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_at_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(
        dir.path(),
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    )
    .await;
    let ca_pem = ca(dir.path());
    let started = Instant::now();
    // TCP only, no handshake; a finished handshake and nothing more; a request, then idle
    // over HTTP/1.1 and over HTTP/2.
    // Each check waits from when its own connection's deadline started, so slow set-up on a
    // loaded runner cannot eat the margins.
    let mut silent_tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    let tcp_at = tokio::time::Instant::now();
    let mut silent_tls = connect(server.webhook, &ca_pem).await;
    let tls_at = tokio::time::Instant::now();
    let mut idle_h1 = Client::open(server.webhook, &ca_pem).await;
    assert_eq!(idle_h1.send("GET", "/livez", vec![]).await.0, 200);
    let (status, _h2_sender, h2) = h2_session(server.webhook, &ca_pem).await;
    assert_eq!(status, 200);
    let h2_at = tokio::time::Instant::now();

    tokio::time::sleep_until(tcp_at + Duration::from_millis(500)).await;
    assert!(
        !closed_by_server(&mut silent_tcp).await,
        "closed before its deadline"
    );
    tokio::time::sleep_until(tls_at + Duration::from_millis(1_600)).await;
    assert!(
        closed_by_server(&mut silent_tcp).await,
        "silent TCP peer still open"
    );
    assert!(
        closed_by_server(&mut silent_tls).await,
        "silent TLS peer still open"
    );
    // Their idle deadlines run from later than tls_at + 2 s.
    assert!(
        !idle_h1.is_closed() && !h2.is_finished(),
        "idle peers closed before the idle deadline"
    );
    tokio::time::sleep_until(h2_at + Duration::from_millis(2_800)).await;
    assert!(
        idle_h1.try_send("GET", "/livez", vec![]).await.is_none(),
        "idle HTTP/1.1 connection still open"
    );
    assert!(h2.is_finished(), "idle HTTP/2 connection still open");
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = plain_get(server.admin, "/metrics").await.1;
    for line in [
        r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="first_request_deadline"} 2"#,
        r#"runsecrets_connections_closed_by_server_total{listener="webhook",reason="idle_deadline"} 2"#,
        r#"runsecrets_connections{listener="webhook"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await.expect("clean stop");
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>;

/// One request over a new HTTP/2 connection that is then left open: the status, the sender
/// (the client closes the connection when it is dropped), and the connection's task, which
/// ends when the server closes it.
async fn h2_session(addr: SocketAddr, ca_pem: &[u8]) -> (u16, H2Sender, JoinHandle<()>) {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = common::tls::connector_with_alpn(ca_pem, b"h2")
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::builder()
        .uri("https://localhost/livez")
        .body(Full::new(hyper::body::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.expect("answered");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    (status, sender, task)
}

/// Issue 10's check: an idle-connection flood against both TLS listeners does not keep a real
/// review from its answer, and every idle connection is closed by its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_per_listener_do_not_stop_a_review() {
    const FLOOD: usize = 2_000;
    const DEADLINE: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let server = Running::start(dir.path(), &["--header-timeout", "4s"]).await;
    let delivery = server.delivery;
    let ca_pem = Arc::new(ca(dir.path()));
    let connector = common::tls::connector(&ca_pem);
    let mut flood = tokio::task::JoinSet::new();
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..2 * FLOOD {
        let addr = if i % 2 == 0 { server.webhook } else { delivery };
        let (connector, opening) = (connector.clone(), opening.clone());
        flood.spawn(async move {
            let _permit = opening.acquire_owned().await;
            let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
            let handshake = async {
                let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                connector.connect(name, tcp).await.ok()
            };
            let stream = tokio::time::timeout(Duration::from_secs(10), handshake)
                .await
                .ok()??;
            Some((Instant::now(), stream))
        });
    }
    let mut idle = Vec::with_capacity(2 * FLOOD);
    while let Some(joined) = flood.join_next().await {
        idle.extend(joined.expect("task"));
    }
    // Every handshake of the flood completed (evicting older idle peers as it went).
    assert_eq!(idle.len(), 2 * FLOOD, "flood connections refused");
    assert_eq!(
        plain_get(server.admin, "/readyz").await.0,
        200,
        "idle peers do not make a replica unready"
    );

    let request = fixture("pod-secrets-short.json");
    let asked = Instant::now();
    let mut client = Client::open(server.webhook, &ca_pem).await;
    let (status, body) = client
        .send(
            "POST",
            "/mutate?timeout=5s",
            fixture_bytes("pod-secrets-short.json"),
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(status, 200);
    assert_eq!(response(&body, &request)["allowed"], true);
    assert!(
        took < Duration::from_secs(1),
        "review answered after {took:?}"
    );
    eprintln!("a review through {FLOOD} idle TLS connections per listener: {took:?}");
    let asked = Instant::now();
    let mut client = Client::open(delivery, &ca_pem).await;
    assert_eq!(client.send("GET", "/livez", vec![]).await.0, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "delivery listener answered after {:?}",
        asked.elapsed()
    );

    // Every flood connection is closed by the server within its deadline (plus the second a
    // closing connection is given).
    let latest = idle.iter().map(|(opened, _)| *opened).max().expect("flood");
    tokio::time::sleep_until((latest + DEADLINE + Duration::from_millis(1_200)).into()).await;
    let mut open = 0;
    for (_, stream) in &mut idle {
        if !closed_by_server(stream).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "flood connections still open after the deadline");
    server.stop().await.expect("clean stop");
}
