//! The Compose bridge: `runsecrets compose convert` reads a Compose project as Docker Compose
//! does (the Compose specification; compose-go where it is silent) and turns it into
//! workloads whose pod templates declare their secrets in `runsecrets.io/secrets`, plus sealed
//! `RunSecret`s. What Compose would mount is what the pod gets: target, uid, gid and mode.
//!
//! Stages: [`load`] (discovery, `.env`, parsing into a positioned tree, interpolation,
//! `include`, `extends`, merging the files) → [`model`] (the typed project, profiles applied)
//! → [`convert`] (secrets, env credentials, workloads) → [`output`]. Nothing is written until
//! every stage succeeded.

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
