//! Opens what the server's `--store` and `--authenticator` name: the catalogue the webhook
//! checks, the lookup and keyring the delivery API unseals with, and the authenticator.

use std::sync::Arc;

use super::args::{AuthenticatorChoice, ServerConfig, StoreConfig};
use crate::delivery::auth::{Authenticator, LocalAuthenticator};
use crate::delivery::tokenreview::TokenReviewer;
use crate::delivery::{Delivery, SecretLookup};
use crate::seal::protector::Protector;
use crate::seal::LiveKeyring;
use crate::store::catalogue::{Catalogue, FileCatalogue};
use crate::store::keyring::{run_file, KeyringPlace};
use crate::store::kubernetes::{self, KubeCatalogue};
use crate::store::{FileStore, StoreError};

use super::ServerError;

/// The opened store, whatever its kind.
#[derive(Default)]
pub struct Backend {
    pub catalogue: Option<Arc<dyn Catalogue>>,
    /// The file catalogue is re-read periodically; the Kubernetes one is kept by its watch.
    pub refresh: Option<Arc<FileCatalogue>>,
    pub lookup: Option<Arc<dyn SecretLookup>>,
    /// Open, or locked (autolock) until unlocked; its public keys are served either way.
    pub keyring: Option<Arc<LiveKeyring>>,
    /// Where the keyring is stored and its public keys published, for renewal.
    pub renewal: Option<(KeyringPlace, Option<super::renew::Publisher>)>,
    client: Option<kube::Client>,
}

/// Says in the log what protects the keyring, or that nothing does.
fn announce(keyring: &LiveKeyring, place: &str) {
    if keyring.is_locked() {
        tracing::warn!(
            keyring = %keyring.id(), place,
            "the keyring is locked (autolock): deliveries are refused and /readyz answers 503 until `runsecrets unlock` or --unlock-key-file unlocks it"
        );
    } else if keyring.id() == "unwrapped" {
        tracing::warn!(
            place,
            "the keyring is stored unwrapped: whoever can read it opens every secret; protect it with `runsecrets keys protect --pkcs11 ...` or `--autolock`"
        );
    } else {
        tracing::info!(keyring = %keyring.id(), place, "the keyring is open (unwrapped in memory only)");
    }
}

fn blocking_failed(step: &'static str) -> impl FnOnce(tokio::task::JoinError) -> ServerError {
    move |e| {
        ServerError::Store(StoreError::Api {
            step,
            message: e.to_string(),
        })
    }
}

pub(super) async fn client() -> Result<kube::Client, ServerError> {
    kube::Client::try_default().await.map_err(|e| {
        ServerError::Store(StoreError::Api {
            step: "connecting to the cluster",
            message: crate::delivery::tokenreview::describe_kube_error(&e),
        })
    })
}

/// The PKCS#11 protector the server's flags configure, if any.
fn pkcs11(config: &ServerConfig) -> Result<Option<Protector>, ServerError> {
    Ok(config
        .pkcs11
        .config(false)
        .map_err(ServerError::Pkcs11)?
        .map(Protector::Pkcs11))
}

fn live(
    loaded: crate::store::keyring::Loaded,
    place: &KeyringPlace,
) -> Result<Arc<LiveKeyring>, ServerError> {
    let ring = loaded.into_live().map_err(|source| {
        ServerError::Store(StoreError::Keyring {
            step: "loading",
            place: place.describe(),
            source: Box::new(source),
        })
    })?;
    announce(&ring, &place.describe());
    Ok(Arc::new(ring))
}

impl Backend {
    /// `connected` is reused when the caller already connected (one client per start).
    pub async fn open(
        config: &ServerConfig,
        connected: Option<kube::Client>,
    ) -> Result<Self, ServerError> {
        match &config.store {
            StoreConfig::Kubernetes {
                namespace,
                keyring_secret,
                public_keys_configmap,
            } => {
                let client = match connected {
                    Some(client) => client,
                    None => client().await?,
                };
                let pkcs11 = pkcs11(config)?;
                let place = KeyringPlace::Secret {
                    client: client.clone(),
                    namespace: namespace.clone(),
                    name: keyring_secret.clone(),
                };
                let ring = live(place.load(pkcs11.as_ref()).await?, &place)?;
                kubernetes::publish_public_keys(
                    &client,
                    namespace,
                    public_keys_configmap,
                    &ring.public_keys(),
                )
                .await?;
                let catalogue = KubeCatalogue::start(client.clone());
                let publisher = super::renew::Publisher {
                    client: client.clone(),
                    namespace: namespace.clone(),
                    configmap: public_keys_configmap.clone(),
                };
                Ok(Self {
                    catalogue: Some(catalogue.clone()),
                    refresh: None,
                    lookup: Some(catalogue),
                    keyring: Some(ring),
                    renewal: Some((place, Some(publisher))),
                    client: Some(client),
                })
            }
            StoreConfig::File(dir) => {
                let place = KeyringPlace::File(dir.clone());
                let pkcs11 = pkcs11(config)?;
                let loading = place.clone();
                let loaded = tokio::task::spawn_blocking(move || {
                    run_file(&loading, loading.load(pkcs11.as_ref()))
                })
                .await
                .map_err(blocking_failed("loading the keyring"))??;
                let ring = live(loaded, &place)?;
                let store = FileStore::open(dir)?;
                let removed = store.sweep()?;
                if removed > 0 {
                    tracing::info!(removed, "removed temporary files of interrupted writes");
                }
                let lookup = store.clone();
                let catalogue = tokio::task::spawn_blocking(move || FileCatalogue::new(store))
                    .await
                    .map_err(blocking_failed("reading the store"))?;
                Ok(Self {
                    catalogue: Some(catalogue.clone()),
                    refresh: Some(catalogue),
                    lookup: Some(Arc::new(lookup)),
                    keyring: Some(ring),
                    renewal: Some((place, None)),
                    client: connected,
                })
            }
            StoreConfig::None => Ok(Self {
                client: connected,
                ..Self::default()
            }),
        }
    }

    /// The delivery service, when there is a store to deliver from.
    pub async fn delivery(
        &self,
        config: &ServerConfig,
    ) -> Result<Option<Arc<Delivery>>, ServerError> {
        let (Some(lookup), Some(keyring)) = (&self.lookup, &self.keyring) else {
            return Ok(None);
        };
        let auth: Arc<dyn Authenticator> = match config.authenticator {
            AuthenticatorChoice::Local => {
                let dir = config.data_dir.clone();
                let local =
                    tokio::task::spawn_blocking(move || LocalAuthenticator::load_or_create(&dir))
                        .await
                        .map_err(blocking_failed("creating the node token"))?
                        .map_err(|source| {
                            ServerError::Store(StoreError::Io {
                                step: "creating the node token in",
                                path: config.data_dir.display().to_string(),
                                source,
                            })
                        })?;
                tracing::warn!(
                    "delivery uses the local authenticator: pod tokens are not verified; not for clusters"
                );
                Arc::new(local)
            }
            AuthenticatorChoice::Kubernetes => {
                let client = match &self.client {
                    Some(c) => c.clone(),
                    None => client().await?,
                };
                Arc::new(TokenReviewer::new(
                    client,
                    config.node_service_account.clone(),
                ))
            }
        };
        Ok(Some(Arc::new(Delivery {
            auth,
            secrets: lookup.clone(),
            keyring: keyring.clone(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use clap::Parser;
    use http_body_util::Full;
    use hyper::body::Bytes;

    use super::*;
    use crate::server::ServerArgs;

    /// The default install (--tls-ca-secret with --store kubernetes) connects to the cluster
    /// once: the store works through the client the shared CA was read with, so its first call
    /// (reading the keyring Secret) reaches that client and no other.
    #[tokio::test]
    async fn the_kubernetes_store_uses_the_client_it_is_given() {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let apiserver = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
            seen.lock()
                .expect("lock")
                .push(request.uri().path().to_string());
            async {
                hyper::Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::from_static(b"{}")))
            }
        });
        let client = kube::Client::new(apiserver, "default");
        let config =
            ServerArgs::try_parse_from(["server", "--store=kubernetes", "--namespace=sec"])
                .expect("flags")
                .resolve()
                .expect("config");
        let opened = Backend::open(&config, Some(client)).await;
        assert!(opened.is_err(), "the apiserver answered 503");
        let paths = paths.lock().expect("lock").clone();
        assert_eq!(
            paths.first().map(String::as_str),
            Some("/api/v1/namespaces/sec/secrets/runsecrets-keyring"),
            "{paths:?}"
        );
    }
}
