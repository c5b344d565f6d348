# syntax=docker/dockerfile:1
# The twd image: the per-node KV-cache service twd, the operator CLI twctl and the CSI node
# plugin tw-csi (run as a second container of the twd pod when a TokenWarehouse sets
# spec.csi.enabled; that container alone runs as root, privileged, to make mounts).
#
# Build from the repository root (the build context must be the whole source tree):
#   docker build -f docker/twd.Dockerfile -t <registry>/tokenwarehouse/twd:<version> .
#
# Stage 1 installs the toolchain with scripts/bootstrap.sh and builds the release preset.
# Stage 2 is debian:bookworm-slim with only the shared libraries the two binaries load
# (docker/runtime-packages.sh derives the list from ldd). It runs as uid/gid 65532, never as
# root, with the supplementary group disk (gid 6), which owns NVMe block devices on Debian,
# Ubuntu and RHEL. tw-operator's DaemonSet adds the one capability twd may need (IPC_LOCK, to
# pin the DRAM arena) and mounts the socket directory, the NVMe paths and the config; nothing
# in the image needs to be writable.

FROM debian:bookworm-slim AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The dependency layer: rebuilt only when bootstrap.sh changes.
COPY scripts/bootstrap.sh scripts/bootstrap.sh
RUN TW_BOOTSTRAP_QUIET=1 scripts/bootstrap.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DTW_BUILD_TESTS=OFF -DTW_BUILD_BENCH=OFF \
 && cmake --build --preset release --target twd twctl tw-csi \
 && mkdir -p /out/bin \
 && cp build/release/bin/twd build/release/bin/twctl build/release/bin/tw-csi /out/bin/ \
 && strip --strip-debug /out/bin/* \
 && docker/runtime-packages.sh /out/bin/twd /out/bin/twctl /out/bin/tw-csi \
      > /out/runtime-packages.txt

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
# ibverbs-providers: the RDMA NICs' user-space drivers, which libibverbs loads at run time (ldd
# cannot see them); without them twd finds no RDMA device and the mesh uses TCP.
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y -qq --no-install-recommends \
      ca-certificates ibverbs-providers \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 65532 tokenwarehouse \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --groups disk tokenwarehouse
COPY --from=build /out/bin/twd /out/bin/twctl /out/bin/tw-csi /usr/local/bin/
LABEL org.opencontainers.image.title="twd" \
      org.opencontainers.image.description="Token Warehouse per-node KV-cache service, twctl and tw-csi"
USER 65532:65532
# Socket directory (a hostPath shared with inference pods) and the metrics/health port.
EXPOSE 9400
ENTRYPOINT ["/usr/local/bin/twd"]
