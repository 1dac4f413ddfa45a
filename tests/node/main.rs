//! The node plugin's tests: driven as kubelet drives it over its unix socket, against a stub
//! delivery server (`common::node`), and end to end with the real server.

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod end_to_end;
mod plugin;
mod refusals;
mod sanity;
