//! Who is asking: the node plugin's own token, and the pod whose token it forwards.
//!
//! In a cluster both are Kubernetes service-account tokens checked with a TokenReview
//! ([`super::tokenreview`]). Without a cluster, [`LocalAuthenticator`] stands in: a node token
//! file in the data directory, and pod tokens whose claims are read without a signature check.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
// The node token is compared in constant time: how long a refusal takes tells nothing.
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::wire::TOKEN_AUDIENCE;

/// Where the local authenticator keeps the node token, relative to the data directory.
pub const NODE_TOKEN_FILE: &str = "delivery/node-token";

/// A boxed future, so authenticators can live behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reviewed token: the service account, and the pod and node it is bound to (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
    pub pod: Option<BoundPod>,
    /// The node the bound pod was scheduled to, when the issuer says (Kubernetes ≥ 1.30).
    pub node: Option<String>,
}

/// The pod a token is bound to, as the token's issuer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPod {
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// `system:serviceaccount:NS:NAME` → identity without a pod binding.
    pub fn from_username(username: &str) -> Option<Self> {
        let rest = username.strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = rest.split_once(':')?;
        if namespace.is_empty() || name.is_empty() || name.contains(':') {
            return None;
        }
        Some(Self {
            namespace: namespace.to_string(),
            service_account: name.to_string(),
            pod: None,
            node: None,
        })
    }

    /// `NAMESPACE/NAME`, as `--node-service-account` is written.
    pub fn account(&self) -> String {
        format!("{}/{}", self.namespace, self.service_account)
    }
}

/// Why a token was not accepted. The messages say which check failed and never quote the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was presented")]
    Missing,
    #[error("the token is not valid for audience {TOKEN_AUDIENCE}")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been invalidated (its pod or service account was deleted)")]
    Invalidated,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token belongs to {0}, which is not a service account")]
    NotServiceAccount(String),
    /// The review itself could not be done: the caller may retry.
    #[error("the token review failed: {0}")]
    Unavailable(String),
}

/// Reviews tokens. Implementations do the network call (TokenReview) or read local state.
pub trait Authenticator: Send + Sync {
    /// Checks the token of a pod (audience [`TOKEN_AUDIENCE`]) and says whose it is.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>>;

    /// Checks that `bearer` is the node plugin's token; returns the node the plugin runs on
    /// when its token says, so pods are only served to the node they were scheduled to.
    fn node<'a>(&'a self, bearer: &'a str) -> BoxFuture<'a, Result<Option<String>, AuthError>>;
}

/// The no-cluster authenticator: **not for clusters**. The node plugin proves itself with a
/// random token kept in the data directory; pod tokens are trusted for their claims (audience,
/// expiry, `kubernetes.io` pod binding) without a signature check, since there is no issuer to
/// ask.
pub struct LocalAuthenticator {
    node_token: Zeroizing<String>,
}

impl LocalAuthenticator {
    /// Loads `DATA/delivery/node-token`, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = node_token_path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok(Self {
                    node_token: Zeroizing::new(text.trim().to_string()),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
        let token = Zeroizing::new(crate::seal::hex(bytes.as_ref()));
        let line = Zeroizing::new(format!("{}\n", token.as_str()));
        // Replaced whole: a node plugin reading it at that moment gets the old token or the new.
        crate::atomic_file::replace(
            &path,
            line.as_bytes(),
            crate::atomic_file::NewFile::mode(0o600),
        )?;
        Ok(Self { node_token: token })
    }
}

/// `DATA/delivery/node-token`.
pub fn node_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(NODE_TOKEN_FILE)
}

impl Authenticator for LocalAuthenticator {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move { unverified_claims(token, now_unix()) })
    }

    fn node<'a>(&'a self, bearer: &'a str) -> BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move {
            if bearer.is_empty() {
                Err(AuthError::Missing)
            } else if bool::from(bearer.as_bytes().ct_eq(self.node_token.as_bytes())) {
                Ok(None)
            } else {
                Err(AuthError::Invalid("not the node plugin's token".into()))
            }
        })
    }
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Audience,
    exp: Option<i64>,
    #[serde(default)]
    sub: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    pod: Option<NamedUid>,
    serviceaccount: Option<NamedUid>,
    node: Option<NamedUid>,
}

#[derive(Deserialize)]
struct NamedUid {
    name: String,
    uid: String,
}

/// Reads a service-account JWT's claims **without verifying its signature** (local mode only).
pub fn unverified_claims(token: &str, now: i64) -> Result<Identity, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err(AuthError::Invalid("not a JWT".into())),
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| AuthError::Invalid("the payload is not base64url".into()))?;
    let claims: Claims = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Invalid("the payload is not a JSON claim set".into()))?;
    let audience_ok = match &claims.aud {
        Audience::One(a) => a == TOKEN_AUDIENCE,
        Audience::Many(all) => all.iter().any(|a| a == TOKEN_AUDIENCE),
        Audience::None => false,
    };
    if !audience_ok {
        return Err(AuthError::WrongAudience);
    }
    match claims.exp {
        Some(exp) if exp > now => {}
        Some(_) => return Err(AuthError::Expired),
        None => return Err(AuthError::Invalid("the token has no expiry".into())),
    }
    let mut identity = Identity::from_username(&claims.sub)
        .ok_or_else(|| AuthError::NotServiceAccount(claims.sub.chars().take(80).collect()))?;
    if let Some(k) = claims.kubernetes {
        let sa_matches = k
            .serviceaccount
            .as_ref()
            .is_none_or(|sa| sa.name == identity.service_account);
        if k.namespace != identity.namespace || !sa_matches {
            return Err(AuthError::Invalid(
                "the subject and the kubernetes.io claims disagree".into(),
            ));
        }
        identity.pod = k.pod.map(|p| BoundPod {
            name: p.name,
            uid: p.uid,
        });
        identity.node = k.node.map(|n| n.name);
    }
    Ok(identity)
}
