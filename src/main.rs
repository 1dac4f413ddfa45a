use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use runsecrets::cli::{Cli, Command, ReviewArgs, ScanArgs};
use runsecrets::config::ServerArgs;
use runsecrets::offline::{self, OutputFormat, ReviewOutput};
use runsecrets::server::Server;
use runsecrets::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Server(args) => server(*args).map(|()| ExitCode::SUCCESS),
        Command::Review(args) => review(&args),
        Command::Scan(args) => Ok(scan(&args)),
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
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
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
