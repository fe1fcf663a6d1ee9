# syntax=docker/dockerfile:1
#
# The sediment broker image: the `sediment` binary on Debian 12 slim, running as an
# unprivileged user. Build it from the repository's top directory:
#
#     docker build -t sediment:0.1.0 .
#
# Nobody builds it in this repository's CI: its machines have no Docker daemon (nor any other
# image builder). tests/deploy/check.sh only lints this file (checkov, trivy config); the
# first real build is the user's. docs/deployment.md says the same.

# The highest rust-version among the locked dependencies (foyer 0.22 needs 1.91; Cargo.toml's
# workspace rust-version says less). Bookworm in both stages: the binary then also runs on the
# Debian 12 instances of terraform/modules/brokers (glibc 2.36).
ARG RUST_VERSION=1.91
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- build stage
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# etcd-client generates its gRPC code with protoc at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The caches keep the registry and the build tree between builds on the same builder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sediment \
    && install -m 0755 target/release/sediment /usr/local/bin/sediment

# -------------------------------------------------------------------------- runtime stage
FROM debian:${DEBIAN_RELEASE}-slim
# CA certificates for TLS to S3 and the STS endpoint; nothing else is installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sediment \
    && useradd --system --uid 10001 --gid sediment --home-dir /var/lib/sediment \
       --no-create-home --shell /usr/sbin/nologin sediment \
    && install -d -o sediment -g sediment -m 0750 /var/lib/sediment
COPY --from=build /usr/local/bin/sediment /usr/local/bin/sediment
# Listen on every interface inside the container; the advertised address (which clients and
# followers connect to) must still be given: the broker refuses 0.0.0.0 without it.
ENV SEDIMENT_DATA_DIR=/var/lib/sediment \
    SEDIMENT_KAFKA_ADDR=0.0.0.0:9092 \
    SEDIMENT_HTTP_ADDR=0.0.0.0:9464
WORKDIR /var/lib/sediment
USER 10001:10001
# Kafka protocol, and HTTP: /health, /ready, /metrics.
EXPOSE 9092 9464
# Probes belong to the orchestrator (the Helm chart uses /health and /ready); the image has no
# curl to run a HEALTHCHECK with.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/sediment"]
CMD ["serve"]
