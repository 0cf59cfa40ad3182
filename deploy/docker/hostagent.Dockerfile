# The host agent image. Build from the repository root, for one or several
# architectures (deploy/README.md, Images):
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(git describe --tags --always) \
#     -f deploy/docker/hostagent.Dockerfile -t ghcr.io/forewarm/hostagent:VERSION --push .

ARG GO_VERSION=1.26.8

# 1. The binary (pure Go): built on the builder's own platform and
#    cross-compiled, so no architecture is emulated for the build.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
# The version every binary reports (`version`, /v1/info): --build-arg VERSION=v1.2.3.
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}" -o /out/hostagent ./hostagent

# 2. The runtime: Debian slim, a user without privileges. The data folder
#    belongs to it for runs without Kubernetes; in a pod an emptyDir is
#    mounted there and fsGroup gives it to the agent.
FROM debian:bookworm-slim AS runtime
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin forewarm \
 && mkdir -p /var/lib/forewarm-agent && chown 10001:10001 /var/lib/forewarm-agent
COPY --from=build /out/hostagent /usr/local/bin/hostagent
ENV HOSTAGENT_LISTEN=0.0.0.0:7071 \
    HOSTAGENT_DATA_DIR=/var/lib/forewarm-agent
USER 10001:10001
EXPOSE 7071
VOLUME ["/var/lib/forewarm-agent"]
ENTRYPOINT ["/usr/local/bin/hostagent"]
