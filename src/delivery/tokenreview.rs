//! The cluster authenticator: every token is checked with a TokenReview for audience
//! `runsecrets.io`. The apiserver verifies the signature, the expiry and that the bound pod
//! still exists; the review's `user.extra` names that pod.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use kube::{Api, Client};

use super::auth::{AuthError, Authenticator, BoundPod, BoxFuture, Identity};
use super::wire::TOKEN_AUDIENCE;

/// The `user.extra` keys the apiserver sets for pod-bound service-account tokens.
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// A review that takes longer is treated as unavailable (the node plugin gives up at 10 s).
const REVIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an accepted node-plugin token is remembered: every publish and republish carries
/// it, and the apiserver itself caches successful reviews for 10 s.
const NODE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const NODE_CACHE_MAX: usize = 4096;

type NodeCache =
    std::sync::Mutex<std::collections::HashMap<[u8; 32], (std::time::Instant, Option<String>)>>;

/// Reviews tokens against the cluster's apiserver.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    /// The node plugin's service account, `NAMESPACE/NAME`.
    node_account: String,
    /// SHA-256 of accepted node tokens → when accepted, and the node they are bound to.
    accepted_nodes: NodeCache,
}

impl TokenReviewer {
    pub fn new(client: Client, node_account: String) -> Self {
        Self {
            api: Api::all(client),
            node_account,
            accepted_nodes: Default::default(),
        }
    }

    async fn create(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            self.api.create(&PostParams::default(), &review),
        )
        .await;
        let mut review = review;
        wipe(&mut review);
        let mut answer = answer
            .map_err(|_| {
                AuthError::Unavailable(format!("no TokenReview answer within {REVIEW_TIMEOUT:?}"))
            })?
            .map_err(|e| AuthError::Unavailable(describe_kube_error(&e)))?;
        // The apiserver echoes the token in `spec`; only `status` is read.
        wipe(&mut answer);
        identity_of(answer.status.unwrap_or_default())
    }
}

/// Overwrites the token a review carries before it is dropped.
fn wipe(review: &mut TokenReview) {
    use zeroize::Zeroize;
    if let Some(token) = review.spec.token.as_mut() {
        token.zeroize();
    }
}

/// A kube client error without the request body (which would hold the token).
pub(crate) fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!(
            "apiserver answered {} {}: {}",
            status.code, status.reason, status.message
        ),
        kube::Error::HyperError(e) => format!("connection failed: {e}"),
        kube::Error::Service(e) => format!("connection failed: {e}"),
        other => format!("{other}"),
    }
}

/// Reads a TokenReview's status. An unauthenticated review carries only `error` (and neither
/// `authenticated` nor `audiences`), so the error text is what tells the cases apart.
pub fn identity_of(status: TokenReviewStatus) -> Result<Identity, AuthError> {
    if status.authenticated != Some(true) {
        let error = status.error.unwrap_or_default();
        return Err(if error.contains("audience") {
            AuthError::WrongAudience
        } else if error.contains("expired") {
            AuthError::Expired
        } else if error.contains("invalidated") || error.contains("not found") {
            AuthError::Invalidated
        } else {
            AuthError::Invalid(if error.is_empty() {
                "the apiserver did not authenticate it".into()
            } else {
                error.chars().take(200).collect()
            })
        });
    }
    let audiences = status.audiences.unwrap_or_default();
    if !audiences.iter().any(|a| a == TOKEN_AUDIENCE) {
        return Err(AuthError::WrongAudience);
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let mut identity = Identity::from_username(&username)
        .ok_or_else(|| AuthError::NotServiceAccount(username.chars().take(80).collect()))?;
    let extra = user.extra.unwrap_or_default();
    let one = |key: &str| {
        extra
            .get(key)
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    if let (Some(name), Some(uid)) = (one(EXTRA_POD_NAME), one(EXTRA_POD_UID)) {
        identity.pod = Some(BoundPod { name, uid });
    }
    identity.node = one(EXTRA_NODE_NAME);
    Ok(identity)
}

impl Authenticator for TokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self.create(token))
    }

    fn node<'a>(&'a self, bearer: &'a str) -> BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move {
            use sha2::{Digest, Sha256};
            let key: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
            if let Ok(cache) = self.accepted_nodes.lock() {
                if let Some((at, node)) = cache.get(&key) {
                    if at.elapsed() < NODE_CACHE_TTL {
                        return Ok(node.clone());
                    }
                }
            }
            let identity = self.create(bearer).await?;
            if identity.account() != self.node_account {
                return Err(AuthError::Invalid(format!(
                    "service account {} is not the node plugin's ({})",
                    identity.account(),
                    self.node_account
                )));
            }
            if let Ok(mut cache) = self.accepted_nodes.lock() {
                if cache.len() >= NODE_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (std::time::Instant::now(), identity.node.clone()));
            }
            Ok(identity.node)
        })
    }
}
