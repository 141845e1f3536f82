# The two commands of the README: `make run` and `make test`. Both start the local
# services first (scripts/dev-env: PostgreSQL primary + streaming replica, RabbitMQ).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
DEV_ENV := scripts/dev-env

.PHONY: run test bench drills drill-restore load services services-down lint build image release test-image k8s-check api-fuzz api-fuzz-long s3-check

## Start the services, migrate, seed a 1,000-store chain if empty, run `storeops all`.
run: services
	scripts/run-local

## Start the services, then fmt, clippy and the whole test suite against them.
test: services
	scripts/test

## Benchmarks (release build) against baselines measured in the same run → docs/PERFORMANCE.md.
bench: services
	scripts/bench

## Failure drills on a local multi-process cluster (loadtests/cluster, its own PostgreSQL,
## RabbitMQ and HAProxy): up, every drill, down, also when a drill fails; then the
## point-in-time restore drill. Several minutes; not part of `make test`.
## STOREOPS_BIN=path skips the build and uses that binary.
drills:
	scripts/drills

## The point-in-time restore drill alone (Barman Cloud to the local SeaweedFS, its own
## PostgreSQL instance, no cluster; about a minute): docs/RELIABILITY.md.
drill-restore:
	scripts/drills restore

## The goose load test of a 1,000-store chain on the local cluster (target/load/).
load:
	scripts/load

services:
	$(DEV_ENV) up

services-down:
	$(DEV_ENV) down

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

build:
	cargo build --locked

## The OCI image and its SBOM (target/image/*.cdx.json), offline with buildah
## (`cargo build --release` first; STOREOPS_BINARY=path reuses a binary).
image:
	scripts/image

## Push the image and pin its digest in the production overlay: make release REPOSITORY=... TAG=...
release:
	scripts/release "$(REPOSITORY)" "$(TAG)"

## Build the image from the debug binary and run it as Kubernetes would (needs `make build` first).
test-image: services
	scripts/test-image

## Render k8s/ (base and every overlay), validate it offline, prove broken manifests fail.
k8s-check:
	py=$$(scripts/py-env) && "$$py" k8s/check.py --self-test

## Schemathesis over every operation with every role's token (needs `make build` first).
## CI mode: a few minutes; docs/API-FUZZING.md.
api-fuzz: services
	scripts/test-api-fuzz

## The long run: at least 50,000 cases (about 20 minutes on 2 cores).
api-fuzz-long: services
	API_FUZZ_MODE=long scripts/test-api-fuzz

## What the local S3 store (SeaweedFS) enforces on presigned uploads: docs/OBJECT-STORAGE.md.
s3-check:
	$(DEV_ENV) up seaweedfs
	eval "$$($(DEV_ENV) env)" && py=$$(scripts/py-env s3) && "$$py" scripts/s3_presign_check.py
