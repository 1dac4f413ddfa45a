//! `runsecrets secret …` and `runsecrets seal` as the binary runs them: the store the flags
//! name, the value from a file or standard input, and for `reseal` the server that reseals.
//! Each returns what it prints; [`print`] writes it, or the error, the way the docker CLI does.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use zeroize::Zeroizing;

use super::args::{SealArgs, SecretCommand, SecretVerb};
use super::{Cluster, LsFormat, NoCluster};
use crate::config::StoreLocation;
use crate::error::Chain;
use crate::seal::protector::ProtectError;
use crate::seal::{PublicKeys, SealError};
use crate::server::call::CallError;
use crate::store::kubernetes::KubeStore;
use crate::store::{FileStore, Store, StoreError};

/// Why a `secret`, `seal`, `keys` or `unlock` command failed; each names its step, and the
/// cause follows in the chain.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Protect(#[from] ProtectError),
    #[error(transparent)]
    Call(#[from] CallError),
    /// A flag's value that does not say what it must (a label, NAMESPACE/NAME).
    #[error("{0}")]
    Usage(String),
    #[error("reading standard input")]
    Stdin(#[source] std::io::Error),
    #[error("reading the unlock key from standard input")]
    UnlockKeyStdin(#[source] std::io::Error),
    #[error("{step} {path}")]
    File {
        step: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("encoding the reseal request of {name}")]
    ResealRequest {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("resealing {name}")]
    Reseal {
        name: String,
        #[source]
        source: CallError,
    },
    #[error("resealing {name}: the server's answer")]
    ResealAnswer {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("storing the resealed {name}")]
    StoreResealed {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("reading the --pkcs11-* settings")]
    Pkcs11(#[source] crate::seal::protector::pkcs11::Pkcs11Error),
    #[error("--pkcs11 needs --pkcs11-module")]
    NoPkcs11Module,
    /// What opens a protected keyring could not be read (a token, an unlock key).
    #[error(transparent)]
    Opener(Box<dyn std::error::Error + Send + Sync>),
}

/// Prints the verb's output, or `Error: …` and exit 1, as the docker CLI does.
pub fn print(result: Result<String, CommandError>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {}", Chain(&e));
            ExitCode::from(1)
        }
    }
}

/// A current-thread runtime for the one network call a verb makes.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)
}

/// Reads secret data from a file or standard input (`-`) into a buffer zeroized on drop.
fn read_data(path: &Path) -> Result<Zeroizing<Vec<u8>>, CommandError> {
    let mut data = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(CommandError::Stdin)?;
    } else {
        let at = |step| {
            move |source| CommandError::File {
                step,
                path: path.display().to_string(),
                source,
            }
        };
        let mut file = std::fs::File::open(path).map_err(at("opening"))?;
        file.read_to_end(&mut data).map_err(at("reading"))?;
    }
    Ok(data)
}

fn labels(labels: &[String]) -> Result<std::collections::BTreeMap<String, String>, CommandError> {
    super::parse_labels(labels).map_err(CommandError::Usage)
}

/// `runsecrets secret VERB`, on the store `--store` names.
pub fn secret(args: SecretCommand) -> Result<String, CommandError> {
    let namespace = &args.target.namespace;
    match &args.target.store {
        StoreLocation::File(dir) => {
            let store = FileStore::open(dir)?;
            let keys = || super::file_public_keys(dir);
            verb(&store, &NoCluster, &keys, namespace, args.verb)
        }
        StoreLocation::Kubernetes => {
            let store = KubeStore::connect()?;
            let keys = || store.public_keys(&args.target.public_keys);
            verb(&store, &store, &keys, namespace, args.verb)
        }
        StoreLocation::None => Err(StoreError::NoStore.into()),
    }
}

type KeySource<'a> = &'a dyn Fn() -> Result<PublicKeys, StoreError>;

fn verb(
    store: &dyn Store,
    cluster: &dyn Cluster,
    keys: KeySource<'_>,
    ns: &str,
    verb: SecretVerb,
) -> Result<String, CommandError> {
    Ok(match verb {
        SecretVerb::Create {
            labels: given,
            service_accounts,
            name,
            file,
        } => {
            let labels = labels(&given)?;
            let data = read_data(&file)?;
            let id = super::create(store, &keys()?, ns, &name, data, labels, service_accounts)?;
            format!("{id}\n")
        }
        SecretVerb::Ls {
            quiet,
            filters,
            format,
        } => {
            let format = match (quiet, format.as_deref()) {
                (true, _) => LsFormat::Quiet,
                (false, Some("json")) => LsFormat::Json,
                (false, Some(t)) => LsFormat::Template(t.to_string()),
                (false, None) => LsFormat::Table,
            };
            super::ls(store, ns, &filters, &format)?
        }
        SecretVerb::Inspect { names, pretty } => super::inspect(store, ns, &names, pretty)? + "\n",
        SecretVerb::Rm { names } => super::rm(store, cluster, ns, &names)?,
        SecretVerb::Reseal {
            names,
            all,
            server,
            ca,
        } => reseal(store, &keys()?, ns, &names, all, &server, &ca)?,
        SecretVerb::Rotate {
            workload,
            name,
            file,
        } => {
            let data = read_data(&file)?;
            let done = super::rotate(store, cluster, &keys()?, ns, &name, data, workload.as_ref())?;
            match done.workload {
                Some(w) => format!(
                    "{}\n{} now uses {} (same target); it rolls out\n",
                    done.id, w, done.name
                ),
                None => format!(
                    "{}\ncreated {}; move references from {name} to it (or use --workload)\n",
                    done.id, done.name
                ),
            }
        }
    })
}

/// `secret reseal`: each envelope goes to the server, which answers with the same value sealed
/// to its newest key; the checked record replaces the old one. One line per secret.
fn reseal(
    store: &dyn Store,
    keys: &PublicKeys,
    ns: &str,
    names: &[String],
    all: bool,
    server: &str,
    ca: &Path,
) -> Result<String, CommandError> {
    use super::reseal;
    use crate::server::reseal::{ResealResponse, RESEAL_PATH};
    let newest = keys.newest()?.id.clone();
    let records = reseal::to_reseal(store, ns, names, all, &newest)?;
    let runtime = runtime()?;
    let mut out = String::new();
    for record in records {
        let name = || record.name.clone();
        let body = serde_json::to_vec(&reseal::request(&record)).map_err(|source| {
            CommandError::ResealRequest {
                name: name(),
                source,
            }
        })?;
        let post = crate::server::call::post(server, ca, RESEAL_PATH, Zeroizing::new(body));
        let (_, answer) = runtime
            .block_on(post)
            .map_err(|source| CommandError::Reseal {
                name: name(),
                source,
            })?;
        let answer: ResealResponse =
            serde_json::from_slice(&answer).map_err(|source| CommandError::ResealAnswer {
                name: name(),
                source,
            })?;
        let (new, tag) = reseal::resealed(&record, answer)?;
        store
            .replace(&record, &new, &tag)
            .map_err(|source| CommandError::StoreResealed {
                name: name(),
                source,
            })?;
        out.push_str(&format!(
            "{}: {} -> {}\n",
            record.name, record.spec.key_id, new.spec.key_id
        ));
    }
    if out.is_empty() {
        out = format!("every secret asked for is sealed with the newest key {newest}\n");
    }
    Ok(out)
}

/// `runsecrets seal`: a RunSecret manifest, sealed offline.
pub fn seal(args: SealArgs) -> Result<String, CommandError> {
    let labels = labels(&args.labels)?;
    let keys = super::sealing_keys(
        args.key.as_deref(),
        &args.target.store,
        &args.target.public_keys,
    )?;
    let data = read_data(&args.file)?;
    Ok(super::seal_manifest(
        &keys,
        &args.target.namespace,
        &args.name,
        data,
        labels,
        args.service_accounts,
    )?)
}
