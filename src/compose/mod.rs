//! The Compose bridge: `runsecrets compose convert` reads a Compose project as Docker Compose
//! does (the Compose specification; compose-go where it is silent) and turns it into
//! workloads whose pod templates declare their secrets in `runsecrets.io/secrets`, plus sealed
//! `RunSecret`s. What Compose would mount is what the pod gets: target, uid, gid and mode.
//!
//! Stages: [`load`] (discovery, `.env`, parsing into a positioned tree, interpolation,
//! `include`, `extends`, merging the files) → [`model`] (the typed project, profiles applied)
//! → [`convert`] (secrets, env credentials, workloads) → [`output`]. Nothing is written until
//! every stage succeeded.

pub mod args;
mod convert;
mod dotenv;
mod envcreds;
mod error;
mod extends;
mod flow;
pub mod interpolate;
pub mod load;
mod merge;
pub mod mode;
pub mod model;
pub mod output;
mod paths;
mod plan;
pub mod report;
pub mod scan;
mod secrets;
pub mod service;
mod syntax;
mod workload;
pub mod yaml;

pub use convert::{convert, Conversion, EnvCredentials, Object, Options};
pub use error::ComposeError;
pub use report::Report;

use std::collections::BTreeMap;

use crate::config::StoreLocation;

/// `runsecrets compose convert`: everything is built and sealed first; then written (or
/// printed), then the report goes to standard error. Bad input fails with nothing written.
pub fn run_convert(args: &args::ConvertArgs) -> Result<(), ComposeError> {
    let cwd = std::env::current_dir().map_err(ComposeError::WorkingDirectory)?;
    let opts = Options {
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
        Some(configmap) => {
            crate::secrets::sealing_keys(None, &StoreLocation::Kubernetes, configmap)
        }
        None => crate::secrets::sealing_keys(
            args.key.as_deref(),
            &args.store,
            "runsecrets/runsecrets-public-keys",
        ),
    };
    let conversion = convert(&opts, &keys)?;
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
    Ok(())
}

/// The variables interpolation sees: `.env` files overlaid with the process environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Self { vars }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `other` wins where both define a name.
    pub fn overlay(&mut self, other: &Environment) {
        for (k, v) in &other.vars {
            self.vars.insert(k.clone(), v.clone());
        }
    }

    pub fn insert(&mut self, name: String, value: String) {
        self.vars.insert(name, value);
    }
}

#[cfg(test)]
mod tests;
