# syntax=docker/dockerfile:1
# The tw-operator image: the Kubernetes operator for TokenWarehouse objects.
#
# Build from the repository root (the build context must be the whole source tree):
#   docker build -f docker/operator.Dockerfile -t <registry>/tokenwarehouse/tw-operator:<version> .
#
# Stage 1 installs the toolchain with scripts/bootstrap.sh and builds the release preset.
# Stage 2 is debian:bookworm-slim with only the shared libraries tw-operator loads
# (docker/runtime-packages.sh derives the list from ldd) and the CA certificates. It runs as
# uid/gid 65532; the chart runs it with a read-only root filesystem and no capabilities.

FROM debian:bookworm-slim AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The dependency layer: rebuilt only when bootstrap.sh changes.
COPY scripts/bootstrap.sh scripts/bootstrap.sh
RUN TW_BOOTSTRAP_QUIET=1 scripts/bootstrap.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DTW_BUILD_TESTS=OFF -DTW_BUILD_BENCH=OFF \
 && cmake --build --preset release --target tw-operator \
 && mkdir -p /out/bin \
 && cp build/release/bin/tw-operator /out/bin/ \
 && strip --strip-debug /out/bin/* \
 && docker/runtime-packages.sh /out/bin/tw-operator > /out/runtime-packages.txt

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages.txt apt-get install -y -qq --no-install-recommends \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --system --gid 65532 tokenwarehouse \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tokenwarehouse
COPY --from=build /out/bin/tw-operator /usr/local/bin/
LABEL org.opencontainers.image.title="tw-operator" \
      org.opencontainers.image.description="Token Warehouse Kubernetes operator"
USER 65532:65532
# Metrics and /healthz, /readyz (the chart passes --metrics-address and --health-address).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/tw-operator"]
