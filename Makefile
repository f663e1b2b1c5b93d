# Sluice: the commands a developer and CI use. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help
# The workspace's binaries, built as make test builds them (lib.sh says why).
BINARIES := source deploy/local/lib.sh && build_binaries

.PHONY: help demo demo-down test bench chaos fuzz chart-run image build lint stack-up stack-down stack-status stack-clean provision

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: ## Start the local stack, provision it, send events through Kafka and ingest (fresh machine: this is all)
	bash deploy/local/demo.sh

demo-down: ## Stop the demo's fleet and the local stack
	bash deploy/local/demo.sh down

test: ## Lint, build, start the local stack, run every test, stop the stack (fresh machine: this is all)
	bash deploy/local/test.sh

bench: ## Benchmarks side by side with their references (broker perf tools, Debezium, Kafka Streams); results in bench-results/ and docs/BENCHMARKS.md
	bash deploy/local/bench.sh

chaos: ## The whole fleet on a 3-node Kafka cluster under SIGKILLs (services, brokers, Postgres), a node cut off and API storms, reconciled (results in bench-results/chaos.md)
	bash deploy/local/chaos.sh

fuzz: ## Schemathesis against ingest on the running local stack for 10 minutes (make test runs it for one)
	$(BINARIES)
	bash deploy/local/fuzz.sh 600

chart-run: ## The fleet started from the Helm chart's rendered objects on the running local stack, a stream reconciled (default values; production values over TLS)
	$(BINARIES)
	bash deploy/local/chart.sh
	bash deploy/local/chart-run.sh

image: ## The image built with podman from the Dockerfile (its bases made from Debian), then the chart-run and the compose file's services in containers of it
	bash deploy/local/image.sh sluice:local
	$(BINARIES)
	bash deploy/local/chart.sh
	bash deploy/local/stack.sh up
	SLUICE_CHART_RUN_IMAGE=localhost/sluice:local bash deploy/local/chart-run.sh
	bash deploy/local/compose-run.sh localhost/sluice:local

build: ## Build every crate, test and example
	cargo build --workspace --all-targets --locked

lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

stack-up: ## Start Kafka, Postgres, the schema registry and Jaeger under .local/
	bash deploy/local/stack.sh up

stack-down: ## Stop them (data stays in .local/)
	bash deploy/local/stack.sh down

stack-status: ## What runs where
	bash deploy/local/stack.sh status

stack-clean: ## Stop them and delete their data
	bash deploy/local/stack.sh clean

provision: ## Create the topics and register the schemas on the running local stack
	$(BINARIES)
	set -a && source .local/stack.env && set +a && ./target/debug/sluice-provision apply --replication-factor 1
