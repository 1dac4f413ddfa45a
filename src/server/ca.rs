//! A CA the server's replicas share through a Secret, and its publication to the clients that
//! must trust it: the webhook configurations' `caBundle` and a ConfigMap for the node plugins.
//!
//! With it an install needs neither cert-manager nor a CA rendered by Helm (which changes on
//! every `helm template`, so GitOps tools would rotate it on every sync): the manifests are
//! deterministic and the first replica to start makes the CA.

use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::tls;
use super::ServerError;
use crate::store::kubernetes::ensure_configmap;
use crate::store::StoreError;

/// Keys of the CA Secret and of the published ConfigMap.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";

/// Where `--publish-ca-to` puts the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaTarget {
    /// Every webhook's `clientConfig.caBundle` in this MutatingWebhookConfiguration.
    Mutating(String),
    /// Likewise for a ValidatingWebhookConfiguration.
    Validating(String),
    /// Key `ca.crt` of a ConfigMap in the server's namespace.
    ConfigMap(String),
}

impl FromStr for CaTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once('/')
            .filter(|(_, n)| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| format!("{s:?}: use KIND/NAME"))?;
        match kind.to_ascii_lowercase().as_str() {
            "mutatingwebhookconfiguration" => Ok(Self::Mutating(name.into())),
            "validatingwebhookconfiguration" => Ok(Self::Validating(name.into())),
            "configmap" => Ok(Self::ConfigMap(name.into())),
            other => Err(format!(
                "{other:?}: use mutatingwebhookconfiguration, validatingwebhookconfiguration or configmap"
            )),
        }
    }
}

fn api_error(step: &'static str) -> impl FnOnce(kube::Error) -> ServerError {
    move |e| {
        ServerError::Store(StoreError::Api {
            step,
            message: crate::delivery::tokenreview::describe_kube_error(&e),
        })
    }
}

/// Loads the CA from `namespace/secret`, creating it when absent (one replica's create wins;
/// the others read it), and installs it in `data_dir/tls`. Returns the CA certificate (PEM).
pub async fn ensure_shared_ca(
    client: &Client,
    namespace: &str,
    secret: &str,
    data_dir: &Path,
) -> Result<String, ServerError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |object: &Secret| -> Option<(String, zeroize::Zeroizing<String>)> {
        let data = object.data.as_ref()?;
        let cert = String::from_utf8(data.get(CA_CERT_KEY)?.0.clone()).ok()?;
        let key = String::from_utf8(data.get(CA_KEY_KEY)?.0.clone()).ok()?;
        Some((cert, zeroize::Zeroizing::new(key)))
    };
    let corrupt = || {
        ServerError::Store(StoreError::Corrupt {
            path: format!("Secret {namespace}/{secret} (needs {CA_CERT_KEY} and {CA_KEY_KEY})"),
        })
    };
    let existing = api
        .get_opt(secret)
        .await
        .map_err(api_error("reading the CA Secret"))?;
    let (cert, key) = match existing {
        Some(object) => read(&object).ok_or_else(corrupt)?,
        None => {
            let (cert, key) = tls::new_ca()?;
            let object = Secret {
                metadata: ObjectMeta {
                    name: Some(secret.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(
                        [("app.kubernetes.io/part-of".into(), "runsecrets".into())].into(),
                    ),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(
                    [
                        (
                            CA_CERT_KEY.to_string(),
                            ByteString(cert.as_bytes().to_vec()),
                        ),
                        (CA_KEY_KEY.to_string(), ByteString(key.as_bytes().to_vec())),
                    ]
                    .into(),
                ),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    tracing::info!(secret = %format!("{namespace}/{secret}"), "created the CA");
                    (cert, key)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let winner = api
                        .get(secret)
                        .await
                        .map_err(api_error("reading the CA Secret"))?;
                    read(&winner).ok_or_else(corrupt)?
                }
                Err(e) => return Err(api_error("creating the CA Secret")(e)),
            }
        }
    };
    let dir = data_dir.to_path_buf();
    let ca = cert.clone();
    tokio::task::spawn_blocking(move || tls::install_ca(&dir, &ca, &key))
        .await
        .map_err(|e| {
            ServerError::Store(StoreError::Api {
                step: "installing the CA",
                message: e.to_string(),
            })
        })??;
    Ok(cert)
}

/// The strategic-merge patch that sets `caBundle` on the named webhooks (merged by name, so
/// the rest of each entry is left as it is).
fn ca_bundle_patch(names: &[String], ca_pem: &str) -> serde_json::Value {
    let bundle = B64.encode(ca_pem.as_bytes());
    let webhooks: Vec<_> = names
        .iter()
        .map(|n| json!({"name": n, "clientConfig": {"caBundle": bundle}}))
        .collect();
    json!({ "webhooks": webhooks })
}

/// Sets `caBundle` on every webhook of configuration `name` that lacks it; true when it patched.
/// `bundles` lists a configuration's webhooks with their current bundle.
async fn set_ca_bundles<K>(
    api: &Api<K>,
    name: &str,
    ca_pem: &str,
    bundles: impl Fn(K) -> Vec<(String, Option<ByteString>)>,
) -> Result<bool, ServerError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let current = api
        .get(name)
        .await
        .map_err(api_error("reading a webhook configuration"))?;
    let stale: Vec<String> = bundles(current)
        .into_iter()
        .filter(|(_, bundle)| bundle.as_ref() != Some(&wanted))
        .map(|(webhook, _)| webhook)
        .collect();
    if stale.is_empty() {
        return Ok(false);
    }
    let patch = Patch::Strategic(ca_bundle_patch(&stale, ca_pem));
    api.patch(name, &PatchParams::default(), &patch)
        .await
        .map_err(api_error("setting the webhooks' caBundle"))?;
    Ok(true)
}

/// Publishes the CA to one target; returns whether it changed.
async fn publish_to(
    client: &Client,
    namespace: &str,
    ca_pem: &str,
    target: &CaTarget,
) -> Result<bool, ServerError> {
    match target {
        CaTarget::Mutating(name) => {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            set_ca_bundles(&api, name, ca_pem, |c| {
                let all = c.webhooks.unwrap_or_default().into_iter();
                all.map(|w| (w.name, w.client_config.ca_bundle)).collect()
            })
            .await
        }
        CaTarget::Validating(name) => {
            let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            set_ca_bundles(&api, name, ca_pem, |c| {
                let all = c.webhooks.unwrap_or_default().into_iter();
                all.map(|w| (w.name, w.client_config.ca_bundle)).collect()
            })
            .await
        }
        CaTarget::ConfigMap(name) => ensure_configmap(client, namespace, name, CA_CERT_KEY, ca_pem)
            .await
            .map_err(ServerError::Store),
    }
}

/// Publishes the CA to every target, each independently (one that does not exist yet does not
/// hold up the others); returns whether anything changed, or the first failure.
pub async fn publish(
    client: &Client,
    namespace: &str,
    ca_pem: &str,
    targets: &[CaTarget],
) -> Result<bool, ServerError> {
    let mut changed = false;
    let mut first_error = None;
    for target in targets {
        match publish_to(client, namespace, ca_pem, target).await {
            Ok(c) => changed |= c,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(changed),
    }
}

/// While publishing fails, how long until the next attempt. Right after `helm install` the
/// server usually starts before Helm has created the webhook configurations (they come last),
/// and until the caBundle is set the apiserver cannot call the webhooks.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes the CA now, then every `interval` (a re-applied configuration loses its
/// `caBundle`), and every few seconds while it fails; logs only the first failure of a streak.
pub async fn keep_published(
    client: Client,
    namespace: String,
    ca_pem: String,
    targets: Vec<CaTarget>,
    interval: std::time::Duration,
) {
    let mut failing = false;
    loop {
        match publish(&client, &namespace, &ca_pem, &targets).await {
            Ok(changed) => {
                if changed || failing {
                    tracing::info!("published the CA to the webhook configurations and ConfigMaps");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::error::Chain(&e), "publishing the CA failed; retrying every {RETRY_AFTER_FAILURE:?}");
                }
                failing = true;
            }
        }
        tokio::time::sleep(if failing {
            RETRY_AFTER_FAILURE
        } else {
            interval
        })
        .await;
    }
}
