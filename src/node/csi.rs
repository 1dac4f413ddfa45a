//! Rust types for the CSI Identity and Node services, generated at build time from
//! `proto/csi.proto`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("csi.v1");
