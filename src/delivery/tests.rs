use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::TokenReview;

use super::auth::{unverified_claims, LocalAuthenticator};
use super::tokenreview::identity_of;
use super::*;
use crate::seal::Keyring;

const VALUE: &[u8] = b"delivered-value-never-logged";

#[derive(Default)]
struct Memory(Mutex<HashMap<(String, String), SecretRecord>>);

impl SecretLookup for Memory {
    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let map = self.0.lock().expect("lock");
        Ok(map.get(&(namespace.into(), name.into())).cloned())
    }
}

/// A service-account JWT with the claims a bound token carries (unsigned: local mode).
fn token(namespace: &str, sa: &str, pod: Option<(&str, &str)>, aud: &str, exp: i64) -> String {
    let mut k = serde_json::json!({
        "namespace": namespace, "serviceaccount": {"name": sa, "uid": "sa-uid"},
        "node": {"name": "node-1", "uid": "node-uid"},
    });
    if let Some((name, uid)) = pod {
        k["pod"] = serde_json::json!({"name": name, "uid": uid});
    }
    let payload = serde_json::json!({
        "aud": [aud], "exp": exp, "iat": exp - 600,
        "sub": format!("system:serviceaccount:{namespace}:{sa}"), "kubernetes.io": k,
    });
    format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

fn live(namespace: &str, sa: &str, pod: &str, uid: &str) -> String {
    token(
        namespace,
        sa,
        Some((pod, uid)),
        "runsecrets.io",
        auth::now_unix() + 600,
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    delivery: Delivery,
    node_token: String,
    memory: Arc<Memory>,
    ring: Keyring,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let local = LocalAuthenticator::load_or_create(dir.path()).expect("node token");
    let node_token = std::fs::read_to_string(auth::node_token_path(dir.path()))
        .expect("token file")
        .trim()
        .to_string();
    let ring = Keyring::generate();
    let memory = Arc::new(Memory::default());
    let delivery = Delivery {
        auth: Arc::new(local),
        secrets: memory.clone(),
        keyring: Arc::new(crate::seal::LiveKeyring::open(ring.clone(), None).expect("keyring")),
    };
    let s = Setup {
        _dir: dir,
        delivery,
        node_token,
        memory,
        ring,
    };
    s.add("shop", "db_password", &[]);
    s.add("shop", "web_only", &["web"]);
    s.add("bank", "vault_key", &[]);
    s
}

impl Setup {
    fn add(&self, ns: &str, name: &str, accounts: &[&str]) {
        let keys = self.ring.public_keys().expect("keys");
        let accounts = accounts.iter().map(|s| s.to_string()).collect();
        let record =
            SecretRecord::seal(&keys, ns, name, VALUE, BTreeMap::new(), accounts).expect("sealed");
        self.memory
            .0
            .lock()
            .expect("lock")
            .insert((ns.into(), name.into()), record);
    }

    async fn ask(
        &self,
        token: String,
        pod: (&str, &str, &str),
        secrets: &[&str],
    ) -> Result<PublishResponse, DeliveryError> {
        let request = PublishRequest {
            token: Zeroizing::new(token),
            pod_namespace: pod.0.into(),
            pod_name: pod.1.into(),
            pod_uid: pod.2.into(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            node_id: "node-1".into(),
        };
        self.delivery.publish(&self.node_token, request).await
    }
}

const WEB: (&str, &str, &str) = ("shop", "web-0", "uid-web-0");

#[tokio::test]
async fn the_bound_pod_gets_its_secrets_and_nothing_else() {
    let s = setup();
    let answer = s
        .ask(
            live("shop", "web", "web-0", "uid-web-0"),
            WEB,
            &["db_password", "web_only"],
        )
        .await
        .expect("granted");
    assert_eq!(answer.secrets.len(), 2);
    for secret in &answer.secrets {
        assert_eq!(B64.decode(secret.data.as_bytes()).expect("base64"), VALUE);
    }
}

#[tokio::test]
async fn a_secret_of_another_namespace_is_never_served() {
    let s = setup();
    let e = s
        .ask(
            live("shop", "web", "web-0", "uid-web-0"),
            WEB,
            &["vault_key"],
        )
        .await
        .expect_err("bank's secret");
    assert_eq!(e.reason, Reason::NotFound);
    assert!(e.message.contains("namespace shop"), "{}", e.message);
    // Claiming the other namespace in the request does not help: the token decides.
    let e = s
        .ask(
            live("shop", "web", "web-0", "uid-web-0"),
            ("bank", "web-0", "uid-web-0"),
            &["vault_key"],
        )
        .await
        .expect_err("namespace mismatch");
    assert_eq!(e.reason, Reason::Forbidden);
    assert!(
        e.message.contains("belongs to pod shop/web-0"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn another_pods_token_is_refused_and_says_whose_it_is() {
    let s = setup();
    let e = s
        .ask(
            live("shop", "web", "web-1", "uid-web-1"),
            WEB,
            &["db_password"],
        )
        .await
        .expect_err("web-1's token for web-0");
    assert_eq!(e.reason, Reason::Forbidden);
    assert!(
        e.message.contains("shop/web-1 (uid uid-web-1)"),
        "{}",
        e.message
    );
    // Same name, new pod (uid changed): the old pod's token does not carry over.
    let e = s
        .ask(
            live("shop", "web", "web-0", "uid-old"),
            WEB,
            &["db_password"],
        )
        .await
        .expect_err("stale uid");
    assert_eq!(e.reason, Reason::Forbidden);
}

#[tokio::test]
async fn token_failures_name_the_check() {
    let s = setup();
    let now = auth::now_unix();
    let cases = [
        (
            token(
                "shop",
                "web",
                Some(("web-0", "uid-web-0")),
                "other",
                now + 600,
            ),
            "audience",
        ),
        (
            token(
                "shop",
                "web",
                Some(("web-0", "uid-web-0")),
                "runsecrets.io",
                now - 1,
            ),
            "expired",
        ),
        (String::new(), "no token"),
        ("not-a-jwt".to_string(), "not a JWT"),
        (
            token("shop", "web", None, "runsecrets.io", now + 600),
            "not bound to a pod",
        ),
    ];
    for (token, expected) in cases {
        let e = s
            .ask(token, WEB, &["db_password"])
            .await
            .expect_err(expected);
        assert_eq!(e.reason, Reason::Forbidden, "{expected}");
        assert!(e.message.contains(expected), "{expected}: {}", e.message);
    }
}

#[tokio::test]
async fn service_account_allow_lists_are_enforced() {
    let s = setup();
    let e = s
        .ask(
            live("shop", "batch", "job-0", "uid-job-0"),
            ("shop", "job-0", "uid-job-0"),
            &["web_only"],
        )
        .await
        .expect_err("batch is not on the list");
    assert_eq!(e.reason, Reason::Forbidden);
    assert!(
        e.message
            .contains("only for service accounts web; the pod runs as batch"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn only_the_node_plugin_may_ask() {
    let s = setup();
    let request = PublishRequest {
        token: Zeroizing::new(live("shop", "web", "web-0", "uid-web-0")),
        pod_namespace: "shop".into(),
        pod_name: "web-0".into(),
        pod_uid: "uid-web-0".into(),
        secrets: vec!["db_password".into()],
        node_id: String::new(),
    };
    for bearer in ["", "wrong", &live("shop", "web", "web-0", "uid-web-0")] {
        let e = s
            .delivery
            .publish(bearer, request.clone())
            .await
            .expect_err("not the node");
        assert_eq!(e.reason, Reason::Unauthenticated);
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_before_any_review() {
    let s = setup();
    let t = || live("shop", "web", "web-0", "uid-web-0");
    for (pod, secrets) in [
        (("Shop", "web-0", "uid-web-0"), vec!["db_password"]),
        (("shop", "", "uid-web-0"), vec!["db_password"]),
        (WEB, vec![]),
        (WEB, vec!["../etc"]),
        (WEB, vec!["db_password", "db_password"]),
    ] {
        let e = s.ask(t(), pod, &secrets).await.expect_err("malformed");
        assert_eq!(e.reason, Reason::InvalidRequest, "{pod:?} {secrets:?}");
    }
}

#[tokio::test]
async fn ciphertext_that_does_not_open_is_an_error_without_the_value() {
    let s = setup();
    let mut record =
        s.memory.0.lock().expect("lock")[&("shop".to_string(), "db_password".to_string())].clone();
    record.name = "renamed".into();
    record.spec.name = "renamed".into();
    s.memory
        .0
        .lock()
        .expect("lock")
        .insert(("shop".into(), "renamed".into()), record);
    let e = s
        .ask(live("shop", "web", "web-0", "uid-web-0"), WEB, &["renamed"])
        .await
        .expect_err("moved ciphertext");
    assert_eq!(e.reason, Reason::Unavailable);
    assert!(
        e.message.contains("opening secret 'renamed'"),
        "{}",
        e.message
    );
}

/// A backend that hands back another namespace's record, untouched, under a name of `shop`
/// (a file copied between namespace directories): it is opened as the name asked for, so it
/// does not open.
#[tokio::test]
async fn a_record_of_another_namespace_served_under_our_name_does_not_open() {
    let s = setup();
    let stolen =
        s.memory.0.lock().expect("lock")[&("bank".to_string(), "vault_key".to_string())].clone();
    s.memory
        .0
        .lock()
        .expect("lock")
        .insert(("shop".into(), "vault_key".into()), stolen);
    let e = s
        .ask(
            live("shop", "web", "web-0", "uid-web-0"),
            WEB,
            &["vault_key"],
        )
        .await
        .expect_err("another namespace's value");
    assert_eq!(e.reason, Reason::Unavailable);
    assert!(
        e.message.contains("belongs to another secret"),
        "{}",
        e.message
    );
}

fn fixture(name: &str) -> TokenReview {
    serde_json::from_slice(&crate::corpus::fixture_bytes(name)).expect("a TokenReview")
}

#[test]
fn real_token_reviews_are_read_as_the_apiserver_meant_them() {
    let ok = identity_of(
        fixture("tokenreview-response-ok.json")
            .status
            .expect("status"),
    )
    .expect("authenticated");
    assert_eq!(ok.account(), "shop/web");
    let pod = ok.pod.expect("bound");
    assert_eq!(
        (pod.name.as_str(), pod.uid.as_str()),
        ("web-sa", "a5e3d57f-d0e0-490f-89da-1c15ed2326ba")
    );

    let status = |f: &str| fixture(f).status.expect("status");
    assert_eq!(
        identity_of(status("tokenreview-response-wrong-audience.json")),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        identity_of(status("tokenreview-response-deleted-pod.json")),
        Err(AuthError::Invalidated)
    );
    assert!(
        matches!(identity_of(status("tokenreview-response-invalid.json")), Err(AuthError::Invalid(m)) if m == "invalid bearer token")
    );
}

#[test]
fn the_real_kubelet_token_claims_are_read_in_local_mode() {
    let attr = String::from_utf8(crate::corpus::fixture_bytes("csi-token-attribute.json"))
        .expect("fixture is UTF-8");
    let map: serde_json::Value = serde_json::from_str(&attr).expect("json");
    let jwt = map["runsecrets.io"]["token"].as_str().expect("token");
    // The captured token expired at 19:17:26Z on the capture day.
    assert_eq!(
        unverified_claims(jwt, auth::now_unix()),
        Err(AuthError::Expired)
    );
    let identity = unverified_claims(jwt, 1_795_720_646 - 1).expect("valid then");
    assert_eq!(identity.account(), "shop/web");
    assert_eq!(identity.pod.expect("bound").name, "web-sa");
}

/// The local authenticator, with the node plugin's token bound to node `self.1`.
struct OnNode(LocalAuthenticator, &'static str);

impl Authenticator for OnNode {
    fn review<'a>(&'a self, token: &'a str) -> auth::BoxFuture<'a, Result<Identity, AuthError>> {
        self.0.review(token)
    }
    fn node<'a>(
        &'a self,
        bearer: &'a str,
    ) -> auth::BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move { self.0.node(bearer).await.map(|_| Some(self.1.to_string())) })
    }
}

#[tokio::test]
async fn a_pod_is_only_served_to_the_node_it_was_scheduled_to() {
    let s = setup();
    let on = |node: &'static str| Delivery {
        auth: Arc::new(OnNode(
            LocalAuthenticator::load_or_create(s._dir.path()).expect("same node token"),
            node,
        )),
        secrets: s.memory.clone(),
        keyring: Arc::new(crate::seal::LiveKeyring::open(s.ring.clone(), None).expect("keyring")),
    };
    let request = || PublishRequest {
        token: Zeroizing::new(live("shop", "web", "web-0", "uid-web-0")),
        pod_namespace: "shop".into(),
        pod_name: "web-0".into(),
        pod_uid: "uid-web-0".into(),
        secrets: vec!["db_password".into()],
        node_id: "node-2".into(),
    };
    let e = on("node-2")
        .publish(&s.node_token, request())
        .await
        .expect_err("web-0 runs on node-1");
    assert_eq!(e.reason, Reason::Forbidden);
    assert!(
        e.message
            .contains("runs on node node-1, not on the calling node plugin's node node-2"),
        "{}",
        e.message
    );
    on("node-1")
        .publish(&s.node_token, request())
        .await
        .expect("the pod's own node");
}

/// Found by the fuzz test: a request whose pod fields hold something else (here the token
/// itself) had them quoted whole in the refusal, which goes back to kubelet and into the
/// audit log. Pod names and uids are checked for shape first, so only valid ones are shown.
#[tokio::test]
async fn pod_fields_that_are_not_names_are_refused_without_quoting_them() {
    let s = setup();
    let token = live("shop", "web", "web-0", "uid-web-0");
    for pod in [
        ("shop", "web-0", token.as_str()),
        ("shop", token.as_str(), "uid-web-0"),
        ("shop", "web-0\nforged audit line", "uid-web-0"),
        ("shop", "web-0", "uid with spaces"),
    ] {
        let e = s
            .ask(token.clone(), pod, &["db_password"])
            .await
            .expect_err("refused");
        assert_eq!(e.reason, Reason::InvalidRequest, "{}", e.message);
        assert!(!e.message.contains(&token[..40]), "{}", e.message);
        assert!(!e.message.contains("forged"), "{}", e.message);
    }
}
