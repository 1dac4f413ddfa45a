//! The node plugin's tests: driven as kubelet drives it over its unix socket, against a stub
//! delivery server (`common::node`), and end to end with the real server. The ones that mount
//! tmpfs need root: each says so in its `#[ignore]` reason, plain `cargo test` runs the others
//! (refusals, identity, argument checks), and `.ci/run` (as root) runs them all with
//! `--include-ignored`.

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod end_to_end;
mod plugin;
mod refusals;
mod sanity;
