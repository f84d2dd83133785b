# Sluice. `make demo` and `make test` work from a fresh clone: both run `make setup` first.
SHELL := /bin/bash
export PKG_CONFIG_PATH := $(CURDIR)/.deps/librdkafka/lib/pkgconfig
SWIFT ?= swift
SLUICE := .build/debug/sluice
DEMO_FLAGS ?=

.PHONY: setup build release test unit-test api-test chaos demo dev bench-micro clean

## setup: install what a fresh machine needs (Debian packages, librdkafka 2.10+, Tansu); idempotent
setup:
	@bash scripts/setup.sh

## build: debug build of the `sluice` binary
build: setup
	$(SWIFT) build

## release: optimised build
release: setup
	$(SWIFT) build -c release

## test: every test, against a real broker and Redis started on free loopback ports.
## Serially: each integration test runs a whole stack (worker, gateway, provider) and
## asserts timings; thirty of them at once on two cores measure the machine, not Sluice.
test: build
	$(SWIFT) build --build-tests
	bash scripts/with-services.sh $(SWIFT) test --skip-build --no-parallel
	$(MAKE) --no-print-directory api-test

## api-test: lint the OpenAPI document (openapi-spec-validator) and run schemathesis
## against a live gateway, worker and mock provider with it (scripts/api-test.sh)
api-test: build
	bash scripts/api-test.sh

## unit-test: every test that needs no broker or Redis (parsers, models, the offset
## tracker, the job runner's retries and the worker's commit-after-acknowledgement against
## fakes, the HTTP client against an in-process provider, limiters, deployment files);
## suites marked `.needsServices` are skipped
unit-test: build
	$(SWIFT) build --build-tests
	env -u SLUICE_TEST_KAFKA_BROKERS -u SLUICE_TEST_REDIS_URL $(SWIFT) test --skip-build

## chaos: the chaos test at full size (500 jobs through worker processes that are killed,
## joined, with a Redis restart and poison records); `make test` runs it with 150
chaos: build
	$(SWIFT) build --build-tests
	SLUICE_CHAOS_JOBS=$${SLUICE_CHAOS_JOBS:-500} bash scripts/with-services.sh $(SWIFT) test --skip-build --filter ChaosTests

## demo: start the local stack, stream one job to the terminal, print its metrics, stop
demo: build
	$(SLUICE) dev --demo $(DEMO_FLAGS)

## dev: start the local stack and keep it running (Ctrl-C stops it)
dev: build
	$(SLUICE) dev $(DEMO_FLAGS)

## bench-micro: ordo-one micro-benchmarks of the worker's chunk path and the gateway's
## relay, per chunk (Benchmarks/, a package of its own; not part of `make test`). Builds
## the whole tree in release in Benchmarks/.build: tens of minutes the first time.
## Options for the plugin go in BENCH_MICRO_FLAGS, e.g. `run --format markdown`.
BENCH_MICRO_FLAGS ?=
bench-micro: setup
	cd Benchmarks && $(SWIFT) package benchmark $(BENCH_MICRO_FLAGS)

clean:
	rm -rf .build .run Benchmarks/.build
