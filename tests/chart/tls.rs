//! TLS names: the certificates cover every name a client uses.

use super::*;

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn generated_certificate_verifies_for_every_service_name() {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    let r = rendered(Set::Helm);
    let secret: Secret = r.one("Secret", Some(&r.name("tls")));
    let data = secret.data.expect("data");
    let ca = CertificateDer::from_pem_slice(&data["ca.crt"].0).expect("ca.crt PEM");
    let leaf = CertificateDer::from_pem_slice(&data["tls.crt"].0).expect("tls.crt PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    for name in service_names(r) {
        let server_name = ServerName::try_from(name.clone()).expect("DNS name");
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| {
                panic!("the generated certificate does not verify for {name}: {e}")
            });
    }
    // The server loads the pair as the chart mounts it (sprig writes an RSA PKCS#1 key).
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = runsecrets::server::tls::PairPaths {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&paths.cert, &data["tls.crt"].0).expect("write tls.crt");
    std::fs::write(&paths.key, &data["tls.key"].0).expect("write tls.key");
    if let Err(e) = runsecrets::server::tls::load_pair(&paths) {
        panic!("the server cannot load the generated certificate: {e}");
    }
    // The node plugin dials a name the certificate covers.
    let pod = pod_spec_of_daemonset(&r.node());
    let server = flag(container(&pod, "plugin"), "server");
    let host = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("host:port")
        .0;
    assert!(service_names(r).iter().any(|n| n == host), "{host}");
}

#[test]
#[ignore = "needs PyPI: Helm's SDK (helm-python-sdk), pip-installed into a virtualenv once"]
fn cert_manager_certificate_covers_every_service_name() {
    let set = Set::CertManager;
    let r = rendered(set);
    let cert = r
        .of_kind("Certificate")
        .into_iter()
        .find(|c| c["metadata"]["name"] == r.name("tls").as_str())
        .expect("serving Certificate");
    let dns: BTreeSet<String> =
        serde_json::from_value(cert["spec"]["dnsNames"].clone()).expect("dnsNames");
    for name in service_names(r) {
        assert!(dns.contains(&name), "{set:?}: Certificate lacks {name}");
    }
    // The Secret it writes is the one both components mount.
    let secret_name = cert["spec"]["secretName"].as_str().expect("secretName");
    let server = pod_spec_of_deployment(&r.server());
    let tls = volume_at(&server, container(&server, "server"), "/etc/runsecrets/tls");
    assert_eq!(
        tls.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some(secret_name)
    );
    let node = pod_spec_of_daemonset(&r.node());
    let ca_file = flag(container(&node, "plugin"), "server-ca");
    let ca = volume_at(
        &node,
        container(&node, "plugin"),
        ca_file.rsplit_once('/').expect("dir").0,
    );
    assert_eq!(
        ca.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some(secret_name)
    );
    // Its issuer chain is rendered too.
    let issuer = cert["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuerRef");
    assert!(r
        .of_kind("Issuer")
        .iter()
        .any(|i| i["metadata"]["name"] == issuer));
}
