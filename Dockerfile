# syntax=docker/dockerfile:1
# One image for `runsecrets server` and `runsecrets node`: a static musl binary on distroless.
#   docker build -t runsecrets:dev .
#   helm install runsecrets charts/runsecrets -n runsecrets --create-namespace \
#     --set image.repository=runsecrets --set image.tag=dev

FROM rust:1-bookworm AS build
# musl-tools: the C compiler for ring's C and assembly parts on the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# build.rs compiles proto/csi.proto with a pure-Rust compiler: no protoc needed.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY benches ./benches
# The registry and target caches (BuildKit) keep rebuilds incremental; the binary is copied
# out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin runsecrets \
 && cp target/x86_64-unknown-linux-musl/release/runsecrets /runsecrets

# static-debian12: no libc, no shell; CA certificates and a passwd entry for uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /runsecrets /runsecrets
# The server runs as this uid; the node plugin's DaemonSet runs it as root (CSI mounts).
USER 65532:65532
ENTRYPOINT ["/runsecrets"]
CMD ["--help"]
