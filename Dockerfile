# syntax=docker/dockerfile:1
#
# One image with all four binaries: xmppfed-operator, xmppfed-proxy, xmppfed-gateway and the
# xmppfed command line, in /usr/local/bin. One image because the operator stamps its own image
# (XMPPFED_IMAGE, by default the same as the operator's) into the proxy and gateway pods it
# creates: one tag then pins one version of everything, and the nodes pull the shared layers once.
#
#   docker build -t ghcr.io/xmppfed/xmppfed:0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ) .
#
# Needs BuildKit (the default builder of Docker 23+ and of buildx) for the cache mounts. See
# docs/helm.md ("The container image") for what has and has not been tried.

ARG RUST_IMAGE=rust:1.89-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG TARGETARCH
WORKDIR /src
# The sources are bind-mounted, not copied: no layer holds them, and a change to one file
# reaches the build through the cache mounts below, which keep the downloaded crates and the
# compiled dependencies between builds (only the workspace's own crates are rebuilt). Nothing
# is downloaded but the crates Cargo.lock pins (--locked).
RUN --mount=type=bind,target=/src,rw \
    --mount=type=cache,id=xmppfed-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=xmppfed-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=xmppfed-target-${TARGETARCH},target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p xmppfed-operator -p xmppfed-proxy -p xmppfed-gateway -p xmppfed \
    && mkdir -p /out \
    && cp target/release/xmppfed-operator target/release/xmppfed-proxy \
          target/release/xmppfed-gateway target/release/xmppfed /out/

# glibc and libgcc_s (all the binaries link; TLS is rustls with ring, no OpenSSL), the CA bundle
# /etc/ssl/certs/ca-certificates.crt (the proxy's default for partners' CAs), no shell, and the
# user nonroot (65532).
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="xmppfed" \
      org.opencontainers.image.description="XMPP federation edge for Kubernetes: operator, edge proxy, gateway and command line" \
      org.opencontainers.image.source="https://github.com/xmppfed/xmppfed" \
      org.opencontainers.image.url="https://github.com/xmppfed/xmppfed" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build --chown=0:0 --chmod=0755 /out/ /usr/local/bin/
USER 65532:65532
# The command line by default (`docker run IMAGE validate -f /manifests`); the operator's
# Deployment and the proxy and gateway pods name their binary in `command`.
ENTRYPOINT ["/usr/local/bin/xmppfed"]
