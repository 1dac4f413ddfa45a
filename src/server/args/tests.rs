use super::*;

#[test]
fn the_namespace_is_the_flag_the_pods_own_or_runsecrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let mounted = dir.path().join("namespace");
    let absent = dir.path().join("absent");
    assert_eq!(resolve_namespace(None, &absent).unwrap(), "runsecrets");
    std::fs::write(&mounted, "secrets-system\n").expect("write");
    assert_eq!(resolve_namespace(None, &mounted).unwrap(), "secrets-system");
    assert_eq!(
        resolve_namespace(Some("platform"), &mounted).unwrap(),
        "platform"
    );
    std::fs::write(&mounted, "").expect("write");
    assert_eq!(resolve_namespace(None, &mounted).unwrap(), "runsecrets");
    let bad = resolve_namespace(Some("Platform_X"), &absent).expect_err("invalid");
    assert!(
        bad.to_string().contains("invalid namespace \"Platform_X\""),
        "{bad}"
    );
}

/// The server outside a cluster publishes where the CLI looks by default.
#[test]
fn the_server_publishes_where_the_cli_looks() {
    use clap::Parser;
    let server = ServerArgs::try_parse_from(["server"]).expect("defaults");
    let cli = crate::cli::Cli::try_parse_from(["runsecrets", "secret", "ls"]).expect("cli");
    let crate::cli::Command::Secret(secret) = cli.command else {
        panic!("secret command");
    };
    assert_eq!(
        secret.target.public_keys,
        format!("{DEFAULT_NAMESPACE}/{}", server.public_keys_configmap)
    );
}

fn resolved(argv: &[&str]) -> ServerConfig {
    let args = ServerArgs::try_parse_from(std::iter::once("server").chain(argv.iter().copied()))
        .expect("flags parse");
    args.resolve().expect("resolves")
}

/// Each flag's default follows the others: the store from --data-dir, the authenticator
/// from the store, the certificate from --tls-cert or --tls-ca-secret.
#[test]
fn defaults_follow_the_other_flags() {
    let plain = resolved(&["--data-dir", "/d"]);
    assert_eq!(plain.store, StoreConfig::File("/d".into()));
    assert_eq!(plain.authenticator, AuthenticatorChoice::Local);
    assert!(
        matches!(&plain.tls, TlsSource::Generated { sans } if sans == &["localhost", "127.0.0.1"])
    );

    let cluster = resolved(&[
        "--store=kubernetes",
        "--namespace=sec",
        "--tls-ca-secret=ca",
        "--tls-san=a.example,localhost",
    ]);
    assert_eq!(
        cluster.store,
        StoreConfig::Kubernetes {
            namespace: "sec".into(),
            keyring_secret: "runsecrets-keyring".into(),
            public_keys_configmap: "runsecrets-public-keys".into(),
        }
    );
    assert_eq!(cluster.authenticator, AuthenticatorChoice::Kubernetes);
    let TlsSource::SharedCa {
        namespace,
        secret,
        sans,
        ..
    } = &cluster.tls
    else {
        panic!("shared CA: {:?}", cluster.tls);
    };
    assert_eq!((namespace.as_str(), secret.as_str()), ("sec", "ca"));
    assert_eq!(sans, &["localhost", "127.0.0.1", "a.example"]);

    let none = resolved(&["--store=none", "--tls-cert=c", "--tls-key=k"]);
    assert_eq!(none.store, StoreConfig::None);
    assert!(matches!(none.tls, TlsSource::Files(_)));
    assert!(
        resolved(&["--authenticator=kubernetes"]).authenticator == AuthenticatorChoice::Kubernetes
    );
}

/// A bad --namespace only matters where something lives in it.
#[test]
fn the_namespace_is_checked_only_when_used() {
    assert!(ServerArgs::try_parse_from(["server", "--namespace=Bad_NS"])
        .expect("parses")
        .resolve()
        .is_ok());
    let e = ServerArgs::try_parse_from(["server", "--namespace=Bad_NS", "--store=kubernetes"])
        .expect("parses")
        .resolve()
        .expect_err("refused");
    assert!(matches!(e, ServerError::Namespace(_)), "{e:?}");
}
