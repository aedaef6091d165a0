# syntax=docker/dockerfile:1
#
# The `weir` binary that deploy/kubernetes/ runs:
#   docker build -t REGISTRY/weir:TAG .
#   docker run -v $PWD/weir.yaml:/etc/weir/weir.yaml:ro -p 8080:8080 REGISTRY/weir:TAG
# The config must bind 0.0.0.0 (not loopback) to be reachable from outside
# the container; deploy/kubernetes/config.yaml is one that does.

# --- build -----------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between
# builds (BuildKit); the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p weir-control --locked \
 && install -D -m 0755 target/release/weir /out/weir

# --- run -------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: the Kubernetes API server and external analysis providers
# are reached over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 weir \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/weir \
      --shell /usr/sbin/nologin weir \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/weir \
 && install -d -m 0755 /etc/weir
COPY --from=build /out/weir /usr/local/bin/weir
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /var/lib/weir
# 8080: the listener of deploy/kubernetes/config.yaml; 9900: the admin API.
EXPOSE 8080 9900
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["run", "--config", "/etc/weir/weir.yaml"]
