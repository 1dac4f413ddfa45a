//! The Kubernetes backend: `RunSecret` objects through the API, etcd as the replicated store.
//!
//! Two faces: [`KubeStore`] for the CLI (one call per verb, through a blocking facade over its
//! own small runtime), and [`KubeCatalogue`] for the server, a watch-backed cache (kube's
//! reflector) so admission reviews and deliveries never wait on the network. The keyring lives in
//! a Secret in the server's namespace, created by the first replica that starts; the public keys
//! are published in a ConfigMap so anyone can seal offline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use super::catalogue::{Catalogue, Grants, Presence};
use super::keyring::{KeyringPlace, Loaded};
use super::{object_name, RunSecret, SecretRecord, Store, StoreError};
use crate::delivery::SecretLookup;
use crate::seal::protector::Protector;
use crate::seal::PublicKeys;

pub use super::keyring::KEYRING_KEY;
/// The key of the public keys in their ConfigMap.
pub const PUBLIC_KEYS_KEY: &str = "keys.json";

fn api_error(step: &'static str) -> impl FnOnce(kube::Error) -> StoreError {
    move |e| StoreError::Api {
        step,
        message: crate::delivery::tokenreview::describe_kube_error(&e),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A `RunSecret` as the store's record; `None` for an object that is not one of ours (its
/// object name is not the one derived from `spec.name`).
pub fn record_of(object: &RunSecret) -> Option<SecretRecord> {
    let namespace = object.metadata.namespace.clone()?;
    let name = object.spec.name.clone();
    if object.metadata.name.as_deref() != Some(object_name(&name).as_str()) {
        return None;
    }
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    Some(SecretRecord {
        id: SecretRecord::derive_id(&namespace, &name, &object.spec.digest),
        namespace,
        name,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        updated: created.clone(),
        created,
        spec: object.spec.clone(),
    })
}

/// The object the store writes for a record.
pub fn resource_of(record: &SecretRecord) -> RunSecret {
    let mut object = RunSecret::new(&object_name(&record.name), record.spec.clone());
    object.metadata.namespace = Some(record.namespace.clone());
    if !record.labels.is_empty() {
        object.metadata.labels = Some(record.labels.clone());
    }
    object
}

/// The CLI's store: each call is one request to the apiserver, with kubeconfig credentials.
pub struct KubeStore {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl KubeStore {
    /// Connects with the kubeconfig (or in-cluster) credentials.
    pub fn connect() -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Api {
                step: "starting the client runtime",
                message: e.to_string(),
            })?;
        let client = runtime
            .block_on(Client::try_default())
            .map_err(api_error("connecting to the cluster"))?;
        Ok(Self { runtime, client })
    }

    /// A store over an existing client (tests point it at a stub apiserver).
    pub fn with_client(runtime: tokio::runtime::Runtime, client: Client) -> Self {
        Self { runtime, client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one API future to completion on the store's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn api(&self, namespace: &str) -> Api<RunSecret> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

impl Store for KubeStore {
    fn create(&self, record: &SecretRecord) -> Result<(), StoreError> {
        let object = resource_of(record);
        match self.block_on(
            self.api(&record.namespace)
                .create(&PostParams::default(), &object),
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Err(StoreError::AlreadyExists {
                namespace: record.namespace.clone(),
                name: record.name.clone(),
            }),
            Err(e) => Err(api_error("creating the RunSecret")(e)),
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let found = self
            .block_on(self.api(namespace).get_opt(&object_name(name)))
            .map_err(api_error("reading the RunSecret"))?;
        Ok(found
            .as_ref()
            .and_then(record_of)
            .filter(|r| r.name == name))
    }

    fn list(&self, namespace: Option<&str>) -> Result<Vec<SecretRecord>, StoreError> {
        let api: Api<RunSecret> = match namespace {
            Some(ns) => self.api(ns),
            None => Api::all(self.client.clone()),
        };
        let list = self
            .block_on(api.list(&ListParams::default()))
            .map_err(api_error("listing RunSecrets"))?;
        let mut records: Vec<SecretRecord> = list.items.iter().filter_map(record_of).collect();
        records.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(records)
    }

    fn replace(&self, old: &SecretRecord, new: &SecretRecord, tag: &str) -> Result<(), StoreError> {
        let api = self.api(&new.namespace);
        let object_name = object_name(&new.name);
        let changed = || StoreError::Changed {
            namespace: new.namespace.clone(),
            name: new.name.clone(),
        };
        let mut object = self
            .block_on(api.get_opt(&object_name))
            .map_err(api_error("reading the RunSecret"))?
            .filter(|o| o.spec.name == new.name)
            .ok_or_else(|| StoreError::NotFound(new.name.clone()))?;
        // The object must still be the one whose envelope was resealed: a secret removed and
        // created again with another value meanwhile is not overwritten with the old value.
        if object.spec != old.spec {
            return Err(changed());
        }
        // One update at the resourceVersion just read (kept in `object.metadata`): deliveries
        // see the old envelope or the new one, never no object, and a change between the read
        // and this write is a 409 that leaves the other writer's object as it is.
        object.spec = new.spec.clone();
        object
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                crate::spec::RESEAL_TAG_ANNOTATION.to_string(),
                tag.to_string(),
            );
        match self.block_on(api.replace(&object_name, &PostParams::default(), &object)) {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Err(changed()),
            Err(e) if is_status(&e, 404) => Err(StoreError::NotFound(new.name.clone())),
            Err(e) => Err(api_error(
                "updating the RunSecret with its resealed envelope",
            )(e)),
        }
    }

    fn delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        if self.get(namespace, name)?.is_none() {
            return Ok(false);
        }
        match self.block_on(
            self.api(namespace)
                .delete(&object_name(name), &DeleteParams::default()),
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(api_error("deleting the RunSecret")(e)),
        }
    }
}

/// Loads the keyring from `namespace/secret`, creating it when absent (see
/// [`KeyringPlace::load`]). When replicas start together, one create wins and the others read
/// the winner's keyring.
pub async fn ensure_keyring(
    client: &Client,
    namespace: &str,
    secret: &str,
    pkcs11: Option<&Protector>,
) -> Result<Loaded, StoreError> {
    KeyringPlace::Secret {
        client: client.clone(),
        namespace: namespace.to_string(),
        name: secret.to_string(),
    }
    .load(pkcs11)
    .await
}

/// Writes the public keys to `namespace/configmap` (`keys.json`), creating or updating it.
pub async fn publish_public_keys(
    client: &Client,
    namespace: &str,
    configmap: &str,
    keys: &PublicKeys,
) -> Result<(), StoreError> {
    let json = serde_json::to_string_pretty(keys).map_err(|source| StoreError::Serialize {
        what: "the public keys",
        source,
    })?;
    ensure_configmap(client, namespace, configmap, PUBLIC_KEYS_KEY, &json)
        .await
        .map(|_| ())
}

/// Makes `namespace/name` hold exactly `{key: value}`: created when absent (a concurrent
/// create by another replica is fine), replaced when different. Returns whether it changed.
pub async fn ensure_configmap(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let data = [(key.to_string(), value.to_string())].into();
    match api
        .get_opt(name)
        .await
        .map_err(api_error("reading a ConfigMap"))?
    {
        Some(existing) if existing.data.as_ref() == Some(&data) => Ok(false),
        Some(mut existing) => {
            existing.data = Some(data);
            api.replace(name, &PostParams::default(), &existing)
                .await
                .map(|_| true)
                .map_err(api_error("updating a ConfigMap"))
        }
        None => {
            let object = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => Ok(true),
                // Another replica published the same content first.
                Err(e) if is_status(&e, 409) => Ok(false),
                Err(e) => Err(api_error("creating a ConfigMap")(e)),
            }
        }
    }
}

/// The server's view of every `RunSecret`, kept current by a watch.
pub struct KubeCatalogue {
    reader: reflector::Store<RunSecret>,
    synced: AtomicBool,
}

impl KubeCatalogue {
    /// Starts the watch on the current runtime; the catalogue answers `Unknown` until the
    /// first full list has arrived.
    pub fn start(client: Client) -> Arc<Self> {
        let (reader, writer) = reflector::store();
        let catalogue = Arc::new(Self {
            reader: reader.clone(),
            synced: AtomicBool::new(false),
        });
        let stream = reflector::reflector(
            writer,
            watcher(Api::<RunSecret>::all(client), watcher::Config::default()),
        )
        .default_backoff();
        tokio::spawn(async move {
            use tokio_stream::StreamExt;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "RunSecret watch failed; serving the last known catalogue while it retries");
                }
            }
        });
        let waiting = catalogue.clone();
        tokio::spawn(async move {
            if reader.wait_until_ready().await.is_ok() {
                waiting.synced.store(true, Ordering::Relaxed);
                tracing::info!(secrets = reader.state().len(), "RunSecret catalogue synced");
            }
        });
        catalogue
    }

    /// True once the first list has been loaded.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    fn find(&self, namespace: &str, name: &str) -> Option<Arc<RunSecret>> {
        self.reader
            .get(&ObjectRef::new(&object_name(name)).within(namespace))
            .filter(|o| o.spec.name == name)
    }
}

impl Catalogue for KubeCatalogue {
    fn ready(&self) -> bool {
        self.is_synced()
    }

    fn presence(&self, namespace: &str, name: &str) -> Presence {
        if !self.is_synced() {
            return Presence::Unknown;
        }
        match self.find(namespace, name) {
            Some(object) => Presence::Present(Grants::new(&object.spec.service_accounts)),
            None => Presence::Absent,
        }
    }
}

impl SecretLookup for KubeCatalogue {
    fn lookup(&self, namespace: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        if !self.is_synced() {
            return Err(StoreError::Api {
                step: "reading the RunSecret cache",
                message: "the first list from the apiserver has not arrived yet".into(),
            });
        }
        Ok(self.find(namespace, name).as_deref().and_then(record_of))
    }
}

impl KubeStore {
    /// Reads the public keys the server published in `NAMESPACE/NAME`, to seal new secrets.
    pub fn public_keys(&self, configmap: &str) -> Result<PublicKeys, StoreError> {
        let (namespace, name) = configmap.split_once('/').ok_or_else(|| StoreError::Api {
            step: "finding the public keys",
            message: format!("{configmap:?} is not NAMESPACE/NAME"),
        })?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let object = self
            .block_on(api.get_opt(name))
            .map_err(api_error("reading the public-key ConfigMap"))?
            .ok_or_else(|| StoreError::Api {
                step: "reading the public-key ConfigMap",
                message: format!(
                    "ConfigMap {configmap} does not exist. `runsecrets server --store kubernetes` \
                     writes its public keys to the ConfigMap --public-keys-configmap (default \
                     runsecrets-public-keys) in its --namespace (env POD_NAMESPACE; in a cluster \
                     its own namespace, outside one `runsecrets`); point the CLI at it with \
                     --public-keys NAMESPACE/NAME (env RUNSECRETS_PUBLIC_KEYS)"
                ),
            })?;
        let text = object
            .data
            .as_ref()
            .and_then(|d| d.get(PUBLIC_KEYS_KEY))
            .ok_or_else(|| StoreError::Corrupt {
                path: format!("ConfigMap {configmap} (no {PUBLIC_KEYS_KEY})"),
            })?;
        serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
            path: format!("ConfigMap {configmap}"),
        })
    }
}
