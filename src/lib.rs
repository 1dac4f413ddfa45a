//! runsecrets: Docker Compose/Swarm secrets for Kubernetes pods. Secrets arrive as read-only
//! files under `/run/secrets`, never as env vars; the admission webhook injects the mounts and
//! refuses plaintext credentials.

pub mod admission;
mod atomic_file;
pub mod cli;
pub mod compose;
pub mod config;
#[cfg(test)]
mod corpus;
pub mod delivery;
pub mod error;
pub mod node;
pub mod offline;
pub mod policy;
pub mod seal;
pub mod secrets;
pub mod server;
pub mod spec;
pub mod store;
pub mod telemetry;
