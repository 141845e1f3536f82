# The storeops image: one static root filesystem, run as uid/gid 65532 (`nonroot`), with
# only the binary, the shared libraries it links, the loader and the CA bundle
# (scripts/image-rootfs). No shell, no package manager, no sources, no toolchain.
#
# With a registry (CI elsewhere, docker/podman/buildah):
#   docker build -t storeops .
# Offline on a development machine (`make image`): scripts/image builds the binary here
# and passes it in as the build context with --build-arg ROOTFS=context, so the Rust
# stage is skipped and nothing is pulled.
#
# The roles are arguments: `api`, `worker --queues ...`, `scheduler`, `migrate up`
# (k8s/ sets them); configuration is environment variables (README.md).
ARG RUST_VERSION=1.95
ARG ROOTFS=build

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && scripts/image-rootfs target/release/storeops /rootfs

FROM scratch AS rootfs-build
COPY --from=build /rootfs/ /

# scripts/image: the context is a directory holding rootfs/ (made by scripts/image-rootfs).
FROM scratch AS rootfs-context
COPY rootfs/ /

FROM rootfs-${ROOTFS}
LABEL org.opencontainers.image.title="storeops" \
      org.opencontainers.image.description="Daily operations of a retail chain: api, worker and scheduler roles"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/storeops"]
