//! The integration tests of the webhook, the server, delivery, the stores, the keyring, the
//! CLI, the Compose bridge and the generated files: one test binary, so kube, tonic and axum are linked once for all
//! of them instead of once per file. The node plugin's tests (tests/node), the chart's
//! (tests/chart) and the cluster test (tests/cluster) are binaries of their own.
//!
//! Every test here runs unprivileged and offline, except the check of manifests/ (it renders the
//! chart with Helm's SDK from PyPI, and says so in its `#[ignore]`). Tests share this process:
//! one that needs a process-wide setting (`KUBECONFIG`) runs itself alone in a child
//! (`common::own_process`).

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod admission_policy;
mod admission_runsecret;
mod cli;
mod compose;
mod compose_cluster;
mod compose_common;
mod compose_input;
mod compose_scan;
mod crd;
mod delivery;
mod dockerfile;
mod generated;
mod keyring;
mod keyring_pkcs11;
mod keyring_rotation;
mod kubernetes;
mod kubernetes_reseal;
mod kubernetes_server;
mod post_quantum;
mod secret_cli;
mod server;
mod server_ca;
mod server_connections;
mod server_reload;
mod store_crash;
