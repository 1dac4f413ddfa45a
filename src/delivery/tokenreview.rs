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

/// Reviews tokens against the cluster's apiserver.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    /// The node plugin's service account, `NAMESPACE/NAME`.
    node_account: String,
}

impl TokenReviewer {
    pub fn new(client: Client, node_account: String) -> Self {
        Self {
            api: Api::all(client),
            node_account,
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
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(describe_kube_error(&e)))?;
        identity_of(answer.status.unwrap_or_default())
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
    Ok(identity)
}

impl Authenticator for TokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self.create(token))
    }

    fn node<'a>(&'a self, bearer: &'a str) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let identity = self.create(bearer).await?;
            if identity.account() == self.node_account {
                Ok(())
            } else {
                Err(AuthError::Invalid(format!(
                    "service account {} is not the node plugin's ({})",
                    identity.account(),
                    self.node_account
                )))
            }
        })
    }
}
