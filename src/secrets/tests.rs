use super::*;
use crate::seal::Keyring;
use crate::store::FileStore;

const VALUE: &[u8] = b"pa55-w0rd-never-printed";

fn setup() -> (tempfile::TempDir, FileStore, Keyring) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FileStore::open(dir.path()).expect("store");
    let ring = load_or_create_keyring(dir.path()).expect("keyring");
    (dir, store, ring)
}

fn add(store: &FileStore, ring: &Keyring, name: &str, labels: &[&str]) -> String {
    let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    create(
        store,
        &ring.public_keys().expect("keys"),
        "shop",
        name,
        Zeroizing::new(VALUE.to_vec()),
        parse_labels(&labels).expect("labels"),
        vec![],
    )
    .expect("created")
}

#[test]
fn create_ls_inspect_rm_round_trip_never_shows_the_value() {
    let (dir, store, ring) = setup();
    let id = add(&store, &ring, "db_password", &["env=prod"]);
    add(&store, &ring, "tls_key", &[]);

    let table = ls(&store, "shop", &[], &LsFormat::Table).expect("ls");
    assert!(table.starts_with("ID"));
    assert!(table.contains(&id) && table.contains("db_password") && table.contains("tls_key"));
    let quiet = ls(
        &store,
        "shop",
        &["label=env=prod".parse().expect("filter")],
        &LsFormat::Quiet,
    )
    .expect("ls");
    assert_eq!(quiet, format!("{id}\n"));
    let by_name = ls(
        &store,
        "shop",
        &["name=tls".parse().expect("filter")],
        &LsFormat::Template("{{.Name}}:{{.Size}}".into()),
    )
    .expect("ls");
    assert_eq!(by_name, format!("tls_key:{}\n", VALUE.len()));
    assert!(ls(&store, "other", &[], &LsFormat::Quiet)
        .expect("ls")
        .is_empty());

    let inspected = inspect(&store, "shop", &["db_password".into()], false).expect("inspect");
    let json: serde_json::Value = serde_json::from_str(&inspected).expect("json");
    assert_eq!(json[0]["labels"]["env"], "prod");
    assert!(json[0]["spec"].get("ciphertext").is_none());
    let pretty = inspect(&store, "shop", &["db_password".into()], true).expect("inspect");
    assert!(pretty.contains("Size:             23 bytes"), "{pretty}");
    for text in [&table, &inspected, &pretty] {
        assert!(!text.contains("pa55"), "value shown");
    }

    let record = store
        .get("shop", "db_password")
        .expect("get")
        .expect("exists");
    assert_eq!(record.unseal(&ring).expect("opens").as_slice(), VALUE);
    assert_eq!(
        rm(&store, "shop", &["tls_key".into()]).expect("rm"),
        "tls_key\n"
    );
    let err = rm(&store, "shop", &["tls_key".into()]).expect_err("gone");
    assert_eq!(err.to_string(), "No such secret: tls_key");
    drop(dir);
}

#[test]
fn the_keyring_is_created_once_and_private() {
    let (dir, _, ring) = setup();
    let again = load_or_create_keyring(dir.path()).expect("reloads");
    assert_eq!(again.keys()[0].id, ring.keys()[0].id);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("keyring.json"))
            .expect("file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_sealed_manifest_is_a_run_secret_that_opens_only_under_its_name() {
    let (dir, _, ring) = setup();
    let keys_file = dir.path().join("keys.json");
    std::fs::write(
        &keys_file,
        serde_json::to_string(&ring.public_keys().expect("keys")).expect("json"),
    )
    .expect("write");
    let keys = public_keys_from_file(&keys_file).expect("public keys");
    let yaml = seal_manifest(
        &keys,
        "shop",
        "mysql_root_password",
        Zeroizing::new(VALUE.to_vec()),
        BTreeMap::new(),
        vec!["web".into()],
    )
    .expect("sealed");
    assert!(!yaml.contains("pa55"));
    let resource: RunSecret = serde_norway::from_str(&yaml).expect("a RunSecret");
    assert_eq!(
        resource.metadata.name.as_deref(),
        Some(object_name("mysql_root_password").as_str())
    );
    assert_eq!(resource.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(resource.spec.service_accounts, ["web"]);
    let record = SecretRecord {
        namespace: "shop".into(),
        name: resource.spec.name.clone(),
        id: String::new(),
        labels: BTreeMap::new(),
        created: String::new(),
        updated: String::new(),
        spec: resource.spec.clone(),
    };
    assert_eq!(record.unseal(&ring).expect("opens").as_slice(), VALUE);
    let moved = SecretRecord {
        namespace: "other".into(),
        ..record
    };
    assert!(moved.unseal(&ring).is_err());
}

#[test]
fn object_names_are_valid_kubernetes_names_and_distinct() {
    use crate::store::object_name;
    assert_eq!(object_name("tls-key"), "tls-key");
    let a = object_name("mysql_root_password");
    let b = object_name("MYSQL-root-password");
    assert_ne!(a, b);
    for name in [
        a.as_str(),
        b.as_str(),
        &object_name("_"),
        &object_name(&"A".repeat(64)),
    ] {
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'),
            "{name}"
        );
        assert!(
            name.as_bytes()[0].is_ascii_alphanumeric()
                && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric(),
            "{name}"
        );
    }
}
