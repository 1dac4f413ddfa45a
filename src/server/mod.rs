//! `runsecrets server`: the HTTPS admission webhook and the plain-HTTP admin listener.

pub mod args;
mod backend;
pub mod body;
pub mod ca;
pub mod call;
pub mod connections;
mod listener;
pub mod metrics;
mod poll;
pub mod renew;
pub mod reseal;
pub mod routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::delivery::Delivery;
use crate::store::catalogue::FileCatalogue;
use crate::store::StoreError;
use args::TlsSource;
pub use args::{ServerArgs, ServerConfig};
use backend::Backend;

/// How often the CA is published again (a re-applied webhook configuration loses its caBundle).
const CA_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Connections on the admin listener: probes and a scraper.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// How often the catalogue of existing secrets is reread; misses are checked directly.
const CATALOGUE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
use connections::Connections;
use metrics::Metrics;
use routes::AppState;
use tls::{Certificates, TlsError};

/// A failure to start the server; each names the step, and its cause follows in the chain
/// (`main` prints the chain, so a cause in the text would be said twice).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("loading TLS")]
    Tls(#[from] TlsError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("opening the secret store")]
    Store(#[from] StoreError),
    #[error("reading the --pkcs11-* settings")]
    Pkcs11(#[source] crate::seal::protector::pkcs11::Pkcs11Error),
    #[error("choosing the server's namespace (--namespace)")]
    Namespace(#[source] StoreError),
    #[error("shutdown: connections still open after {0:?}")]
    Drain(std::time::Duration),
}

/// Lets the process hold as many sockets as its hard limit allows: two listeners of
/// `--max-connections` each do not fit in the soft limit of 1024 that many runtimes give a
/// container (Go does the same at start).
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let raise = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) => current < maximum,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if raise {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the open files limit");
        }
    }
}

/// The CA of `--tls-ca-secret`, and where to keep it published.
struct SharedCa {
    client: kube::Client,
    namespace: String,
    pem: String,
    publish_to: Vec<ca::CaTarget>,
}

/// A server whose sockets are bound and whose certificate is loaded, not yet serving.
pub struct Server {
    /// When the CA is shared through a Secret: where it is published.
    shared_ca: Option<SharedCa>,
    config: ServerConfig,
    catalogue: Option<Arc<FileCatalogue>>,
    renewal: Option<(
        crate::store::keyring::KeyringPlace,
        Option<renew::Publisher>,
    )>,
    delivery: Option<(Arc<Delivery>, TcpListener, Arc<Connections>)>,
    certs: Arc<Certificates>,
    webhook: (TcpListener, Arc<Connections>),
    admin: TcpListener,
    state: AppState,
    /// Set when the CA was generated here: clients must trust this file.
    pub generated_ca: Option<std::path::PathBuf>,
}

impl Server {
    /// Loads (or generates) the certificate and binds both listeners.
    pub async fn bind(args: ServerArgs) -> Result<Self, ServerError> {
        let config = args.resolve()?;
        raise_open_files_limit();
        // With --tls-ca-secret the CA comes from the cluster, then the usual generation issues
        // this replica's serving certificate from it. The client is the one the store uses too.
        let (shared_ca, sans) = match &config.tls {
            TlsSource::Files(_) => (None, Vec::new()),
            TlsSource::Generated { sans } => (None, sans.clone()),
            TlsSource::SharedCa {
                namespace,
                secret,
                publish_to,
                sans,
            } => {
                let client = backend::client().await?;
                let pem =
                    ca::ensure_shared_ca(&client, namespace, secret, &config.data_dir).await?;
                let shared = SharedCa {
                    client,
                    namespace: namespace.clone(),
                    pem,
                    publish_to: publish_to.clone(),
                };
                (Some(shared), sans.clone())
            }
        };
        let (paths, generated_ca) = match &config.tls {
            TlsSource::Files(paths) => (paths.clone(), None),
            _ => {
                let data_dir = config.data_dir.clone();
                let generated =
                    tokio::task::spawn_blocking(move || tls::ensure_generated(&data_dir, &sans))
                        .await
                        .map_err(|e| TlsError::Write {
                            path: config.data_dir.clone(),
                            source: std::io::Error::other(e),
                        })??;
                (generated.pair, Some(generated.ca))
            }
        };
        let certs = Certificates::load(paths)?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let client = shared_ca.as_ref().map(|shared| shared.client.clone());
        let backend = Backend::open(&config, client).await?;
        let delivery = match backend.delivery(&config).await? {
            Some(service) => Some((service, bind(config.delivery_listen).await?)),
            None => None,
        };
        let webhook = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        let metrics = Arc::new(Metrics::default());
        let table =
            |name| Connections::new(name, config.max_connections, metrics.connections(name));
        let webhook = (webhook, table("webhook"));
        let delivery = delivery.map(|(service, socket)| (service, socket, table("delivery")));
        let mut listeners = vec![webhook.1.clone()];
        listeners.extend(delivery.as_ref().map(|(_, _, table)| table.clone()));
        let state = AppState {
            metrics,
            defaults: config.defaults,
            options: config.options,
            catalogue: backend.catalogue.clone(),
            keyring: backend.keyring.clone(),
            ready: Arc::new(AtomicBool::new(false)),
            listeners: listeners.into(),
            max_body: config.max_body_bytes,
        };
        Ok(Self {
            shared_ca,
            config,
            catalogue: backend.refresh.clone(),
            renewal: backend.renewal,
            delivery,
            certs,
            webhook,
            admin,
            state,
            generated_ca,
        })
    }

    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook.0.local_addr().unwrap_or(self.config.listen)
    }

    /// The delivery listener's address, when the server delivers secrets.
    pub fn delivery_addr(&self) -> Option<SocketAddr> {
        self.delivery
            .as_ref()
            .map(|(_, l, _)| l.local_addr().unwrap_or(self.config.delivery_listen))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_listen)
    }

    /// Serves until `shutdown` completes, then drains within `--shutdown-timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (webhook_addr, admin_addr) = (self.webhook_addr(), self.admin_addr());
        let delivery_addr = self.delivery_addr();
        if let Some(ca) = &self.generated_ca {
            tracing::info!(
                ca = %ca.display(),
                "no --tls-cert given: serving a generated certificate; clients must trust this CA"
            );
        }
        let Server {
            shared_ca,
            config,
            catalogue,
            renewal,
            delivery,
            certs,
            webhook,
            admin,
            state,
            ..
        } = self;
        let acceptor = TlsAcceptor::from(certs.server_config()?);
        let reloading = certs.clone();
        let reloader = tokio::spawn(poll::every(
            config.tls_reload_interval,
            "TLS certificate reload",
            move || reloading.reload(),
        ));
        let publisher = shared_ca.map(|shared| {
            tokio::spawn(ca::keep_published(
                shared.client,
                shared.namespace,
                shared.pem,
                shared.publish_to,
                CA_PUBLISH_INTERVAL,
            ))
        });
        let unlocker = match (&state.keyring, &config.unlock_key_file) {
            (Some(keyring), Some(file)) if keyring.is_locked() => Some(tokio::spawn(
                crate::delivery::unlock::watch_file(keyring.clone(), file.clone()),
            )),
            _ => None,
        };
        let renewer =
            match (renewal, &state.keyring) {
                (Some((place, publisher)), Some(keyring)) => Some(tokio::spawn(
                    renew::keep_renewed(place, keyring.clone(), config.key_renew_period, publisher),
                )),
                _ => None,
            };
        let refresher = catalogue.map(|c| {
            tokio::spawn(poll::every(
                CATALOGUE_REFRESH,
                "secret catalogue refresh",
                move || c.refresh(),
            ))
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let grace = config.shutdown_timeout;
        let webhook_router = routes::webhook(state.clone(), config.request_timeout);
        let limits = || listener::Limits {
            grace,
            deadlines: config.deadlines,
        };
        let delivery_task = delivery.map(|(service, socket, connections)| {
            tokio::spawn(listener::serve(
                socket,
                Some(acceptor.clone()),
                crate::delivery::routes::router(service, state.metrics.clone()),
                connections,
                state.metrics.clone(),
                stop_rx.clone(),
                limits(),
            ))
        });
        let webhook_task = tokio::spawn(listener::serve(
            webhook.0,
            Some(acceptor),
            webhook_router,
            webhook.1,
            state.metrics.clone(),
            stop_rx,
            limits(),
        ));
        // The admin listener outlives the drain, so probes see "not ready" instead of a refusal.
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(listener::serve(
            admin,
            None,
            routes::admin(state.clone()),
            Connections::new(
                "admin",
                ADMIN_MAX_CONNECTIONS,
                state.metrics.connections("admin"),
            ),
            state.metrics.clone(),
            admin_stop_rx,
            limits(),
        ));
        state.ready.store(true, Ordering::Relaxed);
        match delivery_addr {
            Some(delivery) => {
                tracing::info!(webhook = %webhook_addr, delivery = %delivery, admin = %admin_addr, "serving")
            }
            None => {
                tracing::info!(webhook = %webhook_addr, admin = %admin_addr, "serving (no store: no delivery API)")
            }
        }

        shutdown.await;
        state.ready.store(false, Ordering::Relaxed);
        if !config.shutdown_delay.is_zero() {
            tracing::info!(delay = ?config.shutdown_delay, "shutting down: not ready, still serving while endpoints update");
            tokio::time::sleep(config.shutdown_delay).await;
        }
        tracing::info!("shutting down: no new connections, draining in-flight reviews");
        let _ = stop_tx.send(true);
        reloader.abort();
        if let Some(publisher) = publisher {
            publisher.abort();
        }
        if let Some(refresher) = refresher {
            refresher.abort();
        }
        if let Some(unlocker) = unlocker {
            unlocker.abort();
        }
        if let Some(renewer) = renewer {
            renewer.abort();
        }
        let mut drained = webhook_task.await.unwrap_or(false);
        if let Some(task) = delivery_task {
            drained &= task.await.unwrap_or(false);
        }
        let _ = admin_stop_tx.send(true);
        let _ = admin_task.await;
        if drained {
            tracing::info!("shutdown complete");
            Ok(())
        } else {
            Err(ServerError::Drain(grace))
        }
    }
}
