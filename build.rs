//! Compiles the CSI Identity and Node services (proto/csi.proto) with a pure-Rust protobuf
//! compiler, so building needs no `protoc`. Server code for the node plugin, client code for
//! the tests that drive it as kubelet does.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    let descriptors = protox::compile(["proto/csi.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
