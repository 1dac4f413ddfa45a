//! Certificate reload on the HTTPS server, end to end on 127.0.0.1: kubelet-style symlink swaps
//! are picked up, a broken pair keeps the old certificate until a good one comes.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::binary::ServerProcess;
use common::tls::{connect, peer_cert, Client};

/// Lays out a directory the way kubelet writes a Secret volume: files are symlinks through
/// `..data`, which points at a timestamped directory and is swapped by rename.
fn kubelet_write(dir: &Path, generation: &str, cert: &str, key: &str) {
    let target = dir.join(generation);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("tls.crt"), cert).unwrap();
    std::fs::write(target.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(generation, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), link).unwrap();
        }
    }
}

fn issue(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    (
        params.signed_by(&key, ca).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// Waits (up to 10 s) for a log line after the first `after` lines that holds every one of
/// `needles`; returns it.
async fn logged_after(server: &ServerProcess, after: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = server.lines();
        if let Some(line) = lines
            .iter()
            .skip(after)
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} after line {after} within 10 s; the log:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server runs as its own process so its log can be read: a broken pair must be seen and
/// refused by a reload tick (its warning), not merely survive a pause in which no tick need
/// have run, and the reloads must go on after it (the next good pair is served).
#[tokio::test]
async fn certificate_rotation_by_symlink_swap_and_broken_pairs_keep_the_old_one() {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let (cert_a, key_a) = issue(&issuer, "first");
    kubelet_write(&secret, "..2026_11_26_a", &cert_a, &key_a);
    let (cert_path, key_path) = (secret.join("tls.crt"), secret.join("tls.key"));
    let server = ServerProcess::server(
        dir.path(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--tls-reload-interval",
            "100ms",
        ],
        &[],
    );
    let webhook = server.serving().webhook;
    assert!(
        !dir.path().join("tls/ca.crt").exists(),
        "no CA generated when a cert is given"
    );

    let der_of = |pem: &str| {
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    use rustls::pki_types::pem::PemObject;
    let served = || async { peer_cert(&connect(webhook, ca_pem.as_bytes()).await) };
    let wait_served = |pem: String, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while served().await != der_of(&pem) {
            assert!(Instant::now() < deadline, "{what} not served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = connect(webhook, ca_pem.as_bytes()).await;
    assert_eq!(peer_cert(&first), der_of(&cert_a));
    let mut kept = Client::new(first).await;

    let (cert_b, key_b) = issue(&issuer, "second");
    kubelet_write(&secret, "..2026_11_26_b", &cert_b, &key_b);
    wait_served(cert_b.clone(), "the second certificate").await;
    // A connection made before the swap keeps working.
    assert_eq!(kept.send("GET", "/livez", vec![]).await.0, 200);

    // A broken pair (key of another cert): a reload tick reads it and refuses it, and the
    // last good pair stays.
    let before = server.lines().len();
    kubelet_write(&secret, "..2026_11_26_c", &cert_a, &key_b);
    let refused = logged_after(
        &server,
        before,
        &[
            "TLS certificate reload",
            "failed; keeping the last good state",
            "certificate and key do not form a usable pair",
        ],
    )
    .await;
    assert_eq!(served().await, der_of(&cert_b), "after: {refused}");

    // Reloading goes on: the next good pair is served, and the log says it recovered.
    let before = server.lines().len();
    let (cert_d, key_d) = issue(&issuer, "fourth");
    kubelet_write(&secret, "..2026_11_26_d", &cert_d, &key_d);
    wait_served(cert_d, "the pair after the broken one").await;
    logged_after(&server, before, &["TLS certificate reload", "recovered"]).await;

    let log = server.stop();
    for key in [&key_a, &key_b, &key_d] {
        let body = key.lines().nth(1).expect("a PEM body line");
        assert!(
            !log.iter().any(|l| l.contains(body)),
            "key material in the log"
        );
    }
}
