# The worker image: the worker (Temporal workers for the prediction and
# training queues) and the starter (operator CLI; `starter migrate` is the
# Kubernetes migration Job), with the ONNX Runtime library. Build from the
# repository root, for one or several architectures (deploy/README.md,
# Images):
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(git describe --tags --always) \
#     -f deploy/docker/worker.Dockerfile -t ghcr.io/forewarm/worker:VERSION --push .

ARG GO_VERSION=1.26.8

# 1. The binaries (cgo: ONNX Runtime is called through its C API), built on
#    the builder's own platform with a C cross compiler for the target, so
#    no architecture is emulated for the build.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
# The version every binary reports (`version`, /v1/info): --build-arg VERSION=v1.2.3.
ARG VERSION=dev
# The image's gcc builds for its own architecture; another one needs
# Debian's cross compiler and C library (amd64 and arm64 here).
RUN set -e; native=$(dpkg --print-architecture); \
    if [ "${TARGETARCH}" = "$native" ]; then echo gcc > /tmp/cc; exit 0; fi; \
    case "${TARGETARCH}" in \
      amd64) triple=x86_64-linux-gnu; pkg=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-linux-gnu; pkg=gcc-aarch64-linux-gnu ;; \
      *) echo "worker.Dockerfile: TARGETARCH ${TARGETARCH}: only amd64 and arm64 are built" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends "$pkg" "libc6-dev-${TARGETARCH}-cross"; \
    rm -rf /var/lib/apt/lists/*; \
    echo "$triple-gcc" > /tmp/cc
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 GOOS=${TARGETOS} GOARCH=${TARGETARCH} CC="$(cat /tmp/cc)" go build -trimpath -ldflags="-s -w -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}" -o /out/ ./worker ./starter

# 2. The ONNX Runtime CPU library of the target architecture from its npm
#    package (one package holds x64 and arm64), checksum verified; the
#    package's install script (which fetches GPU parts) never runs.
FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS onnxruntime
ARG TARGETARCH
ARG ORT_VERSION=1.24.3
ARG ORT_NPM_SHASUM=ec8da99c335aa5ea95559a3ac1ae915a89541d5e
WORKDIR /ort
RUN set -e; \
    case "${TARGETARCH}" in amd64) arch=x64 ;; arm64) arch=arm64 ;; \
      *) echo "worker.Dockerfile: no ONNX Runtime library for ${TARGETARCH}" >&2; exit 1 ;; esac; \
    npm pack --silent "onnxruntime-node@${ORT_VERSION}"; \
    echo "${ORT_NPM_SHASUM}  onnxruntime-node-${ORT_VERSION}.tgz" | sha1sum -c -; \
    tar -xzf "onnxruntime-node-${ORT_VERSION}.tgz" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"; \
    mv "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "libonnxruntime.so.${ORT_VERSION}"

# 3. The runtime: Debian slim, a user without privileges.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin forewarm
COPY --from=build /out/worker /out/starter /usr/local/bin/
COPY --from=onnxruntime /ort/libonnxruntime.so.1.24.3 /opt/onnxruntime/libonnxruntime.so.1.24.3
ENV ONNXRUNTIME_LIB=/opt/onnxruntime/libonnxruntime.so.1.24.3 \
    FOREWARM_METRICS_LISTEN=0.0.0.0:9464
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/worker"]
