use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use runsecrets::cli::{
    Cli, Command, ComposeVerb, ConvertArgs, KeysCommand, KeysVerb, ReviewArgs, ScanArgs, SealArgs,
    SecretCommand, SecretVerb, StoreLocation, UnlockArgs,
};
use runsecrets::config::ServerArgs;
use runsecrets::offline::{self, OutputFormat, ReviewOutput};
use runsecrets::seal::PublicKeys;
use runsecrets::secrets::{self, Cluster, LsFormat, NoCluster};
use runsecrets::server::Server;
use runsecrets::store::kubernetes::KubeStore;
use runsecrets::store::{FileStore, Store, StoreError};
use runsecrets::telemetry;
use zeroize::Zeroizing;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    // Once per process: the server's listeners and every kube client use it.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("runsecrets: a rustls crypto provider was already installed");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Server(args) => server(*args).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node(*args).map(|()| ExitCode::SUCCESS),
        Command::Review(args) => review(&args),
        Command::Scan(args) => Ok(scan(&args)),
        Command::Secret(args) => Ok(docker_style(secret(args))),
        Command::Seal(args) => Ok(docker_style(seal(args))),
        Command::Compose(cmd) => match cmd.verb {
            ComposeVerb::Convert(args) => compose_convert(&args),
        },
        Command::Keys(args) => Ok(docker_style(keys(args))),
        Command::Unlock(args) => Ok(docker_style(unlock(&args))),
        Command::Crd => {
            print!("{}", runsecrets::store::resource::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runsecrets: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(args).await.context("starting the server")?;
        if let Some(ca) = &server.generated_ca {
            tracing::info!(
                ca = %ca.display(),
                "no --tls-cert given: serving a generated certificate; clients must trust this CA"
            );
        }
        server.run(terminated()).await.context("serving")
    })
}

fn node(args: runsecrets::node::NodeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(runsecrets::node::run(args, terminated()))
        .context("node plugin")
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn review(args: &ReviewArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let text = offline::read_input(&args.file)?;
    match offline::review(&name, &text, args.level)? {
        ReviewOutput::Mutated(yaml) => {
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        ReviewOutput::Denied(lines) => {
            for line in lines {
                eprintln!("denied: {line}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn scan(args: &ScanArgs) -> ExitCode {
    let out = offline::scan(&args.paths, args.level);
    match args.format {
        OutputFormat::Text => {
            for f in &out.findings {
                println!("{}", f.line());
            }
        }
        OutputFormat::Json => match serde_json::to_string_pretty(&out.findings) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("runsecrets: printing findings: {e}"),
        },
    }
    for e in &out.errors {
        eprintln!("runsecrets: {e}");
    }
    if !out.errors.is_empty() {
        ExitCode::from(2)
    } else if !out.findings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the verb's output, or `Error: …` and exit 1, as the docker CLI does.
fn docker_style(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Reads secret data from a file or standard input into a buffer zeroized on drop.
fn read_data(path: &std::path::Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut data = Zeroizing::new(Vec::new());
    if path == std::path::Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.read_to_end(&mut data)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(data)
}

fn secret(args: SecretCommand) -> anyhow::Result<String> {
    match &args.target.store {
        StoreLocation::File(dir) => {
            let store = FileStore::open(dir)?;
            let keys = || secrets::file_public_keys(dir);
            verb(&store, &NoCluster, &keys, &args.target.namespace, args.verb)
        }
        StoreLocation::Kubernetes => {
            let store = KubeStore::connect()?;
            let keys = || store.public_keys(&args.target.public_keys);
            verb(&store, &store, &keys, &args.target.namespace, args.verb)
        }
    }
}

type KeySource<'a> = &'a dyn Fn() -> Result<PublicKeys, StoreError>;

fn verb(
    store: &dyn Store,
    cluster: &dyn Cluster,
    keys: KeySource<'_>,
    ns: &str,
    verb: SecretVerb,
) -> anyhow::Result<String> {
    Ok(match verb {
        SecretVerb::Create {
            labels,
            service_accounts,
            name,
            file,
        } => {
            let labels = secrets::parse_labels(&labels).map_err(anyhow::Error::msg)?;
            let data = read_data(&file)?;
            let id = secrets::create(store, &keys()?, ns, &name, data, labels, service_accounts)?;
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
            secrets::ls(store, ns, &filters, &format)?
        }
        SecretVerb::Inspect { names, pretty } => {
            secrets::inspect(store, ns, &names, pretty)? + "\n"
        }
        SecretVerb::Rm { names } => secrets::rm(store, cluster, ns, &names)?,
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
            let done =
                secrets::rotate(store, cluster, &keys()?, ns, &name, data, workload.as_ref())?;
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
    ca: &std::path::Path,
) -> anyhow::Result<String> {
    use runsecrets::secrets::reseal;
    use runsecrets::server::reseal::{ResealResponse, RESEAL_PATH};
    let newest = keys.newest()?.id.clone();
    let records = reseal::to_reseal(store, ns, names, all, &newest)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = String::new();
    for record in records {
        let body = Zeroizing::new(serde_json::to_vec(&reseal::request(&record))?);
        let (_, answer) = runtime
            .block_on(runsecrets::server::call::post(
                server,
                ca,
                RESEAL_PATH,
                body,
            ))
            .with_context(|| format!("resealing {}", record.name))?;
        let answer: ResealResponse = serde_json::from_slice(&answer)
            .with_context(|| format!("resealing {}: the server's answer", record.name))?;
        let new = reseal::resealed(&record, answer)?;
        store
            .replace(&new)
            .with_context(|| format!("storing the resealed {}", record.name))?;
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

fn seal(args: SealArgs) -> anyhow::Result<String> {
    let labels = secrets::parse_labels(&args.labels).map_err(anyhow::Error::msg)?;
    let keys = secrets::sealing_keys(
        args.key.as_deref(),
        &args.target.store,
        &args.target.public_keys,
    )?;
    let data = read_data(&args.file)?;
    Ok(secrets::seal_manifest(
        &keys,
        &args.target.namespace,
        &args.name,
        data,
        labels,
        args.service_accounts,
    )?)
}

fn keys(args: KeysCommand) -> anyhow::Result<String> {
    use runsecrets::seal::protector::{Protector, UnlockKey};
    use runsecrets::store::keyring::{run_file, KeyringPlace};
    use runsecrets::store::rotation::Opener;
    // The keyring's place, and for the Kubernetes store the client's runtime.
    let (place, kube) = match &args.store {
        StoreLocation::File(dir) => (KeyringPlace::File(dir.clone()), None),
        StoreLocation::Kubernetes => {
            let (namespace, name) = args
                .keyring
                .split_once('/')
                .with_context(|| format!("--keyring {:?} is not NAMESPACE/NAME", args.keyring))?;
            let store = KubeStore::connect()?;
            let place = KeyringPlace::Secret {
                client: store.client().clone(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            (place, Some(store))
        }
    };
    /// Runs a keyring operation on the client's runtime, or on the file store directly.
    fn on<T>(
        kube: &Option<KubeStore>,
        place: &KeyringPlace,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match kube {
            Some(store) => store.block_on(operation),
            None => run_file(place, operation),
        }
    }
    let protector = |open: &runsecrets::cli::OpenArgs| {
        let env = std::env::var("RUNSECRETS_UNLOCK_KEY")
            .ok()
            .map(Zeroizing::new);
        secrets::protector_from(open, env).map_err(|e| anyhow::anyhow!(e))
    };
    let publish = |public: &PublicKeys| -> anyhow::Result<()> {
        if let Some(store) = &kube {
            let (namespace, name) = args.public_keys.split_once('/').with_context(|| {
                format!("--public-keys {:?} is not NAMESPACE/NAME", args.public_keys)
            })?;
            store.block_on(runsecrets::store::kubernetes::publish_public_keys(
                store.client(),
                namespace,
                name,
                public,
            ))?;
        }
        Ok(())
    };
    match args.verb {
        KeysVerb::Protect(protect) => {
            let protector = if protect.autolock {
                Protector::Autolock(UnlockKey::generate()?)
            } else {
                let config = protect
                    .token
                    .config(protect.pkcs11_generate_key)
                    .context("reading the --pkcs11-* settings")?
                    .context("--pkcs11 needs --pkcs11-module")?;
                Protector::Pkcs11(config)
            };
            let protected = on(&kube, &place, place.protect(&protector))?;
            Ok(secrets::protected_report(
                &place.describe(),
                &protected,
                &protector,
            ))
        }
        KeysVerb::Ls => {
            let public = match &kube {
                Some(store) => store.public_keys(&args.public_keys)?,
                None => on(&kube, &place, place.public_keys())?,
            };
            Ok(secrets::ls_table(&public))
        }
        KeysVerb::Rotate { kem, open } => {
            let protector = protector(&open)?;
            let opener = protector.as_ref().map_or(Opener::Plain, Opener::Protector);
            let changed = on(
                &kube,
                &place,
                place.rotate(&opener, std::time::Duration::ZERO, kem),
            )?;
            let public = changed.ring.public_keys()?;
            publish(&public)?;
            let newest = public.newest()?;
            Ok(format!(
                "{}\nnew secrets are sealed with key {} ({}); the {} older key(s) keep opening what they sealed\n",
                newest.id,
                newest.id,
                newest.suite,
                public.keys.len() - 1
            ))
        }
        KeysVerb::Retire { key_id, open } => {
            match &kube {
                Some(store) => secrets::check_retirable(store, &key_id)?,
                None => {
                    let StoreLocation::File(dir) = &args.store else {
                        anyhow::bail!("no store");
                    };
                    secrets::check_retirable(&FileStore::open(dir)?, &key_id)?
                }
            }
            let protector = protector(&open)?;
            let opener = protector.as_ref().map_or(Opener::Plain, Opener::Protector);
            let changed = on(&kube, &place, place.retire(&opener, &key_id))?;
            publish(&changed.ring.public_keys()?)?;
            Ok(format!("{key_id}\n"))
        }
    }
}

/// `runsecrets unlock`: the key from --unlock-key-file, RUNSECRETS_UNLOCK_KEY or standard input.
fn unlock(args: &UnlockArgs) -> anyhow::Result<String> {
    use runsecrets::seal::protector::UnlockKey;
    let text = match (
        &args.unlock_key_file,
        std::env::var("RUNSECRETS_UNLOCK_KEY"),
    ) {
        (Some(file), _) => Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the unlock key file {}", file.display()))?,
        ),
        (None, Ok(key)) => Zeroizing::new(key),
        (None, Err(_)) => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the unlock key from standard input")?;
            line
        }
    };
    let key: UnlockKey = text.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = runtime.block_on(runsecrets::delivery::unlock::send(
        &args.server,
        &args.ca,
        &key,
    ))?;
    Ok(format!("{answer}\n"))
}

/// `compose convert`: everything is built and sealed first; then written (or printed), then the
/// report goes to standard error. Bad input exits 2 with nothing written.
fn compose_convert(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    use runsecrets::compose::{self, output, Environment};
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let opts = compose::Options {
        files: args.files.clone(),
        project_directory: args.project_directory.clone(),
        env_files: args.env_files.clone(),
        profiles: args.profiles.clone(),
        project_name: args.project_name.clone(),
        namespace: args.namespace.clone(),
        env_credentials: args.env_credentials,
        os_env: Environment::from_map(std::env::vars().collect()),
        cwd: cwd.clone(),
    };
    let keys = || match &args.public_keys {
        Some(configmap) => secrets::sealing_keys(None, &StoreLocation::Kubernetes, configmap),
        None => secrets::sealing_keys(
            args.key.as_deref(),
            &args.store,
            "runsecrets/runsecrets-public-keys",
        ),
    };
    let conversion = compose::convert(&opts, &keys)?;
    if args.output == std::path::Path::new("-") {
        print!("{}", output::stream(&conversion.objects));
    } else {
        output::write_dir(
            &cwd.join(&args.output),
            &conversion.objects,
            &conversion.report.files,
        )?;
    }
    eprint!("{}", conversion.report.render());
    Ok(ExitCode::SUCCESS)
}
