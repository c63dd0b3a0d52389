# enlist: `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

# Node.js 24 LTS first on PATH for every recipe (hack/node.sh installs it when the machine's
# node is older), so npm, tsc, tap and enlist itself all run on it.
NODE_BIN := $(shell hack/node.sh)
ifeq ($(NODE_BIN),)
$(error hack/node.sh found or installed no Node.js 24; see its messages above)
endif
export PATH := $(NODE_BIN):$(PATH)

VERSION := $(shell node -p "require('./package.json').version" 2>/dev/null || echo 0.0.0)
IMAGE   ?= enlist:$(VERSION)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

dist/.built: node_modules/.installed tsconfig.build.json scripts/compile-policy-validator.mjs $(shell find src -type f 2>/dev/null)
	npm run --silent build
	@chmod +x dist/cli/main.js
	@touch $@

.PHONY: help deps build typecheck lint test unit e2e bench bench-scale bench-node certs image docker-image deploy demo control-plane clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-14s %s\n", $$1, $$2}'

deps: node_modules/.installed ## install Node dependencies (npm ci)

build: dist/.built ## compile TypeScript to dist/

typecheck: deps ## type-check sources, tests and benchmarks
	npx --no-install tsc -p tsconfig.json

lint: deps ## lint sources, tests and benchmarks with ESLint and typescript-eslint (eslint.config.js)
	npx --no-install eslint --max-warnings 0 .

test: build typecheck lint ## run every test (unit and end-to-end on a real control plane)
	ENLIST_BUILT=1 scripts/test.sh

unit: build lint ## run the tests that need no control plane
	ENLIST_BUILT=1 ENLIST_NO_CONTROL_PLANE=1 scripts/test.sh test/unit test/server test/cli

e2e: build ## run the end-to-end tests on a real control plane
	ENLIST_BUILT=1 scripts/test.sh test/e2e

control-plane: ## build or locate etcd, kube-apiserver, kube-controller-manager, kubectl, kube-scheduler, kubelet, kube-proxy
	hack/control-plane-assets.sh

demo: build ## start a control plane and a real node with enlist, and show it inject, register and deregister a pod
	scripts/demo.sh

bench: build ## measure admission throughput and latency against the baseline
	npx --no-install tsx bench/run.ts

bench-scale: build ## enlist at bank size: 50,000 managed pods and 10,000 namespaces on a real apiserver (memory, start-up, sweep, failover, a 1000-pod rollout)
	ENLIST_ASSETS=$$(hack/control-plane-assets.sh) npx --no-install tsx bench/scale.ts $(ARGS)

bench-node: build ## measure what enlist adds to a pod's start-up on the real node (with and without)
	hack/test-packages.sh node
	npx --no-install tsx bench/node-startup.ts

certs: build ## make a CA and serving certificate in certs/, and the Secret and caBundle for manifests/overlays/certs
	node dist/cli/main.js certs

image: build ## build enlist's image without a registry or engine: build/enlist-VERSION.oci.tar (ctr images import)
	hack/images.sh --archive build/enlist-$(VERSION).oci.tar >/dev/null

docker-image: ## build the image from the Dockerfile with a container engine (IMAGE=enlist:VERSION)
	docker build -t $(IMAGE) .

OVERLAY ?= self-managed

deploy: ## install into the current kubectl context (OVERLAY=self-managed, cert-manager or certs)
	kubectl apply -k manifests/overlays/$(OVERLAY)

clean: ## remove build output and test results
	rm -rf dist build .tap coverage bench/results
