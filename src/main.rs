use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use runsecrets::cli::{Cli, Command};
use runsecrets::compose::args::ComposeVerb;
use runsecrets::server::Server;
use runsecrets::{compose, offline, secrets, telemetry};

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
        Command::Server(args) => runtime().and_then(|runtime| {
            runtime.block_on(async {
                let server = Server::bind(*args).await.context("starting the server")?;
                server.run(terminated()).await.context("serving")
            })
        }),
        Command::Node(args) => runtime().and_then(|runtime| {
            let node = runsecrets::node::run(*args, terminated());
            runtime.block_on(node).context("node plugin")
        }),
        Command::Review(args) => return exit(offline::run_review(&args)),
        Command::Scan(args) => return offline::run_scan(&args),
        Command::Secret(args) => return secrets::print(secrets::secret(args)),
        Command::Seal(args) => return secrets::print(secrets::seal(args)),
        Command::Keys(args) => return secrets::print(secrets::keys(args)),
        Command::Unlock(args) => return secrets::print(secrets::unlock(&args)),
        Command::Compose(cmd) => match cmd.verb {
            ComposeVerb::Convert(args) => compose::run_convert(&args).map_err(Into::into),
        },
        Command::Crd => {
            print!("{}", runsecrets::store::resource::crd_yaml());
            Ok(())
        }
    };
    exit(result.map(|()| ExitCode::SUCCESS))
}

/// The command's exit code, or its error chain on standard error and exit 2.
fn exit<E: Into<anyhow::Error>>(result: Result<ExitCode, E>) -> ExitCode {
    result.map_err(Into::into).unwrap_or_else(|e| {
        eprintln!("runsecrets: {e:#}");
        ExitCode::from(2)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
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
