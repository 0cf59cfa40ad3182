# Forewarm's entry points. `make demo` and `make test` each do their own
# set-up on a fresh machine (tools into .tools/, state into .state/).
SHELL := /bin/bash
LOCAL := deploy/local

# Demo knobs (see README): minutes of live replay (empty: the demo's own
# default, 6 through the gateway), number of apps, trace.
DEMO_MINUTES ?=
DEMO_APPS ?= 36
DEMO_TRACE ?= testdata/azure2019-sample

.PHONY: up down test test-cluster test-k8s soak demo bench bench-scale bench-gateway build vet results fuzz images

up:
	@$(LOCAL)/up.sh

down:
	@$(LOCAL)/down.sh

# The whole suite, integration tests included, then the race detector over
# the concurrent packages (RACE_ARGS; empty skips it; the worker's adapters
# are unit-tested in worker/adapters); KEEP=1 leaves the
# stack up.
TEST_ARGS ?= ./...
RACE_ARGS ?= ./agent/... ./hostagent ./gateway ./activities ./workflows ./worker/adapters
test:
	@$(LOCAL)/install.sh browser compose
	@$(LOCAL)/with-stack.sh bash -c 'go test -count=1 -timeout 30m $(TEST_ARGS) && if [ -n "$(RACE_ARGS)" ]; then go test -race -count=1 -timeout 15m $(RACE_ARGS); fi'

# Beyond one machine (deploy/README.md): the store on two ClickHouse
# replicas (one killed and caught up), the worker's end-to-end and
# worker-loss tests on a Temporal server on PostgreSQL, the store's SQL on
# ClickHouse 26.x (chDB). Installs and starts what it needs; KEEP=1 leaves
# the services up.
test-cluster:
	@$(LOCAL)/test-cluster.sh

# The Kubernetes driver on a real control plane (deploy/local/kube.sh:
# etcd, API server, controller manager, scheduler and kwok, built from the
# Go module proxy the first time, about 10 minutes): warm pods of an
# application's Deployment, the janitor, Knative windows, every overlay
# applied with server-side dry run, and a loop on Temporal and ClickHouse
# warming pods. Needs root (a network namespace for the pods' addresses);
# starts and stops everything; KEEP=1 leaves the control plane up.
test-k8s:
	@$(LOCAL)/test-k8s.sh

# The fault soak (deploy/local/soak.sh, about 5 minutes): a live replay of
# real HTTP requests through the gateway to real instance processes, during
# which the gateway (twice), a host agent and an instance process are
# SIGKILLed and ClickHouse is cut for 15 s, at seeded random times; fails
# unless every answered request is counted once in the arrivals, no lease,
# instance process or cgroup is left, no workflow terminated and no router-
# mode loop slept through a cold arrival (wakes_lost, deploy/README.md).
# SOAK_ARGS go to the soak, e.g. SOAK_ARGS="--seed 42", or
# SOAK_ARGS="--traffic workflows" (serve-request workflows, worker kills).
SOAK_ARGS ?=
soak:
	@$(LOCAL)/soak.sh $(SOAK_ARGS)

demo:
	@DEMO_MINUTES=$(DEMO_MINUTES) DEMO_APPS=$(DEMO_APPS) DEMO_TRACE=$(DEMO_TRACE) $(LOCAL)/demo.sh

# Every benchmark, once, against the real stack (deploy/README.md records the sizing figures).
BENCH_ARGS ?= ./...
bench:
	@$(LOCAL)/with-stack.sh go test -run '^$$' -bench . -benchmem $(BENCH_ARGS)

# The scale benchmark (docs/scale.md): SCALE_APPS prediction loops on one
# worker against a Temporal dev server of its own, arrivals of the Azure
# sample reported router-style; prints one line of JSON last and fails when
# the p99 decision lag reaches a bin. SCALE_MODE=ticking decides every bin;
# SCALE_LIVE_BIN, SCALE_WINDOW and the rest: bin/benchscale --help.
SCALE_APPS ?= 50000
bench-scale:
	@SCALE_APPS=$(SCALE_APPS) $(LOCAL)/bench-scale.sh $(SCALE_ARGS)

# The gateway's warm path (deploy/local/bench-gateway.sh): an agent and a
# gateway of its own, one warm instance of samples/trivial; requests side by
# side direct and through the gateway at BENCH_GATEWAY_RATE/s, then as many
# as BENCH_GATEWAY_CONCURRENCY clients send; one line of JSON last.
# BENCH_GATEWAY_ARGS=--spool: the gateway spools every request's count.
BENCH_GATEWAY_RATE ?= 1000
BENCH_GATEWAY_CONCURRENCY ?= 32
BENCH_GATEWAY_ARGS ?=
bench-gateway:
	@$(LOCAL)/bench-gateway.sh --rate $(BENCH_GATEWAY_RATE) --concurrency $(BENCH_GATEWAY_CONCURRENCY) $(BENCH_GATEWAY_ARGS)

# The policy comparison of docs/results.md, regenerated (~10 min on 2 cores).
results:
	@$(LOCAL)/install.sh onnxruntime
	@docs/results/regenerate.sh

# Every fuzz target in the repository (func Fuzz* in a test file), each for
# FUZZTIME, starting from its committed corpus in testdata/fuzz/; an input
# that fails is written there and fails the run.
FUZZTIME ?= 30s
fuzz:
	@set -e; for f in $$(git ls-files --cached --others --exclude-standard '*_test.go'); do \
	  for n in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do \
	    echo "== $$(dirname $$f) $$n for $(FUZZTIME)"; \
	    go test -run '^$$' -fuzz "^$$n\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
	  done; \
	done

build:
	@mkdir -p bin && go build -o bin/ ./worker ./starter ./hostagent ./gateway/cmd/gateway

# The images for amd64 and arm64, stamped with the version, pushed to
# IMAGE_REGISTRY (a multi-platform image cannot be loaded into a local
# engine; deploy/README.md, Images). Needs docker buildx.
IMAGE_REGISTRY ?= ghcr.io/forewarm
IMAGE_VERSION ?= $(shell git describe --tags --always)
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
images:
	@set -e; for i in worker hostagent; do \
	  docker buildx build --platform $(IMAGE_PLATFORMS) --build-arg VERSION=$(IMAGE_VERSION) \
	    -f deploy/docker/$$i.Dockerfile -t $(IMAGE_REGISTRY)/$$i:$(IMAGE_VERSION) --push .; \
	done

vet:
	@gofmt -l . | grep . && exit 1 || true
	@go vet ./...

# The sample applications and their specs (samples/README.md): builds the Go
# samples into samples/bin/ and writes the go-model's weights file there.
.PHONY: samples
samples:
	@samples/build.sh
