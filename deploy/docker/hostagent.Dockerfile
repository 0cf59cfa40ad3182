# The host agent image. Build from the repository root:
#   docker build -f deploy/docker/hostagent.Dockerfile -t forewarm/hostagent:0.1.0 .

ARG GO_VERSION=1.26.8

# 1. The binary (pure Go).
FROM golang:${GO_VERSION}-bookworm AS build
# The version every binary reports (`version`, /v1/info): --build-arg VERSION=v1.2.3.
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/forewarm/forewarm/internal/buildinfo.version=${VERSION}" -o /out/hostagent ./hostagent

# 2. The runtime: Debian slim (chown for the Kubernetes init container that
#    hands the node's data folder to the agent), a user without privileges.
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
