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
    assert_eq!(
        record
            .unseal(&ring, "shop", "db_password")
            .expect("opens")
            .as_slice(),
        VALUE
    );
    assert_eq!(
        rm(&store, &NoCluster, "shop", &["tls_key".into()]).expect("rm"),
        "tls_key\n"
    );
    let err = rm(&store, &NoCluster, "shop", &["tls_key".into()]).expect_err("gone");
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
    let name = resource.spec.name.clone();
    assert_eq!(
        record
            .unseal(&ring, "shop", &name)
            .expect("opens")
            .as_slice(),
        VALUE
    );
    assert!(record.unseal(&ring, "other", &name).is_err());
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

/// A cluster with fixed pods and one workload, recording the annotation it is given.
struct FakeCluster {
    pods: Vec<(String, String)>,
    annotation: std::cell::RefCell<Option<String>>,
}

impl Cluster for FakeCluster {
    fn pods_using(&self, _: &str, secret: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .pods
            .iter()
            .filter(|(_, a)| cluster::declares(a, secret))
            .map(|(p, _)| p.clone())
            .collect())
    }
    fn template_secrets(&self, _: &str, _: &WorkloadRef) -> Result<Option<String>, StoreError> {
        Ok(self.annotation.borrow().clone())
    }
    fn set_template_secrets(&self, _: &str, _: &WorkloadRef, v: &str) -> Result<(), StoreError> {
        *self.annotation.borrow_mut() = Some(v.to_string());
        Ok(())
    }
}

#[test]
fn rm_is_refused_while_a_pod_declares_the_secret_and_removes_nothing() {
    let (_dir, store, ring) = setup();
    add(&store, &ring, "db_password", &[]);
    add(&store, &ring, "tls_key", &[]);
    let cluster = FakeCluster {
        pods: vec![
            ("web-0".into(), "source=db_password,target=db".into()),
            ("web-1".into(), "db_password\ntls_key".into()),
            ("other".into(), "unrelated".into()),
        ],
        annotation: Default::default(),
    };
    let err = rm(
        &store,
        &cluster,
        "shop",
        &["tls_key".into(), "db_password".into()],
    )
    .expect_err("in use");
    assert_eq!(
        err.to_string(),
        "secret 'tls_key' is in use by the following pods: web-1"
    );
    assert!(
        store.get("shop", "tls_key").expect("get").is_some(),
        "nothing removed"
    );
    assert!(store.get("shop", "db_password").expect("get").is_some());
}

#[test]
fn rotate_creates_the_next_version_and_moves_the_reference_keeping_the_target() {
    let (_dir, store, ring) = setup();
    add(&store, &ring, "db_password", &["env=prod"]);
    let cluster = FakeCluster {
        pods: vec![],
        annotation: std::cell::RefCell::new(Some(
            "db_password\nsource=tls_key,target=tls/key.pem".into(),
        )),
    };
    let workload: WorkloadRef = "deploy/web".parse().expect("workload");
    let keys = ring.public_keys().expect("keys");
    let new_value = Zeroizing::new(b"the-next-value".to_vec());
    let done = rotate(
        &store,
        &cluster,
        &keys,
        "shop",
        "db_password",
        new_value,
        Some(&workload),
    )
    .expect("rotated");
    assert_eq!(done.name, "db_password.v2");
    assert_eq!(done.workload.as_deref(), Some("deployment/web"));
    let record = store
        .get("shop", "db_password.v2")
        .expect("get")
        .expect("created");
    assert_eq!(record.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        &record
            .unseal(&ring, "shop", "db_password.v2")
            .expect("opens")[..],
        b"the-next-value"
    );
    // The old version stays for pods still running it; the file path does not move.
    assert!(store.get("shop", "db_password").expect("get").is_some());
    let annotation = cluster.annotation.borrow().clone().expect("patched");
    let refs = crate::spec::parse_secrets(&annotation).expect("parses");
    assert_eq!(refs[0].source, "db_password.v2");
    assert_eq!(refs[0].target.container_path(), "/run/secrets/db_password");
    assert_eq!(refs[1].source, "tls_key");

    // Rotating again from the original name skips to v3.
    let again = rotate(
        &store,
        &NoCluster,
        &keys,
        "shop",
        "db_password",
        Zeroizing::new(b"x".to_vec()),
        None,
    )
    .expect("rotated");
    assert_eq!(again.name, "db_password.v3");
}

#[test]
fn rotate_refuses_a_workload_that_does_not_use_the_secret_before_creating_anything() {
    let (_dir, store, ring) = setup();
    add(&store, &ring, "db_password", &[]);
    let cluster = FakeCluster {
        pods: vec![],
        annotation: std::cell::RefCell::new(Some("tls_key".into())),
    };
    let workload: WorkloadRef = "statefulset/db".parse().expect("workload");
    let keys = ring.public_keys().expect("keys");
    let err = rotate(
        &store,
        &cluster,
        &keys,
        "shop",
        "db_password",
        Zeroizing::new(b"v".to_vec()),
        Some(&workload),
    )
    .expect_err("not declared");
    assert!(
        err.to_string()
            .contains("statefulset/db does not declare secret 'db_password'"),
        "{err}"
    );
    assert!(store.get("shop", "db_password.v2").expect("get").is_none());
    assert!(matches!(
        rotate(
            &store,
            &NoCluster,
            &keys,
            "shop",
            "missing",
            Zeroizing::new(b"v".to_vec()),
            None
        ),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn version_names_and_workload_kinds() {
    assert_eq!(next_version("db").as_deref(), Some("db.v2"));
    assert_eq!(next_version("db.v9").as_deref(), Some("db.v10"));
    assert_eq!(next_version("db.vx").as_deref(), Some("db.vx.v2"));
    assert_eq!(next_version(&"a".repeat(64)), None);
    assert!("job/x"
        .parse::<WorkloadRef>()
        .expect_err("jobs")
        .contains("cannot change"));
    assert!("pod/x".parse::<WorkloadRef>().is_err());
    assert_eq!(
        "cj/nightly"
            .parse::<WorkloadRef>()
            .expect("cronjob")
            .template_path(),
        ["spec", "jobTemplate", "spec", "template"]
    );
}
