# The worker image: the worker (Temporal workers for the prediction and
# training queues) and the starter (operator CLI; `starter migrate` is the
# Kubernetes migration Job), with the ONNX Runtime library. Build from the
# repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t forewarm/worker:0.1.0 .

ARG GO_VERSION=1.26.8

# 1. The binaries (cgo: ONNX Runtime is called through its C API).
FROM golang:${GO_VERSION}-bookworm AS build
# The version every binary reports (`version`, /v1/info): --build-arg VERSION=v1.2.3.
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}" -o /out/ ./worker ./starter

# 2. The ONNX Runtime CPU library from its npm package, checksum verified;
#    the package's install script (which fetches GPU parts) never runs.
FROM node:22-bookworm-slim AS onnxruntime
ARG ORT_VERSION=1.24.3
ARG ORT_NPM_SHASUM=ec8da99c335aa5ea95559a3ac1ae915a89541d5e
WORKDIR /ort
RUN npm pack --silent "onnxruntime-node@${ORT_VERSION}" \
 && echo "${ORT_NPM_SHASUM}  onnxruntime-node-${ORT_VERSION}.tgz" | sha1sum -c - \
 && tar -xzf "onnxruntime-node-${ORT_VERSION}.tgz" package/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
 && mv package/bin/napi-v6/linux/x64/libonnxruntime.so.1 "libonnxruntime.so.${ORT_VERSION}"

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
