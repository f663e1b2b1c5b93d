# syntax=docker/dockerfile:1
# One image with every Sluice binary; the container's command picks one:
#   docker run sluice ingest | outbox-relay | transformer | sheets-sink |
#              erp-sink | saga-orchestrator run | dlq-replayer … |
#              sluice-provision apply | sandbox serve …
# Dependencies are built in a layer of their own (cargo-chef), so a change to
# Sluice's code rebuilds only Sluice.

# The two bases: the usual ones by default; a machine that cannot reach
# Docker Hub passes its own (deploy/local/image.sh makes them from Debian).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config libssl-dev libcurl4-openssl-dev libsasl2-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
      -p sluice-ingest -p sluice-outbox-relay -p sluice-transformer -p sluice-sheets-sink -p sluice-erp-sink \
      -p sluice-saga-orchestrator -p sluice-dlq-replayer -p sluice-sandbox -p sluice-provision \
 && mkdir /out \
 && for bin in ingest outbox-relay transformer sheets-sink erp-sink saga-orchestrator dlq-replayer sandbox sluice-provision; do \
      cp "target/release/$bin" /out/; \
    done

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libcurl4 libssl3 libsasl2-2 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid sluice --no-create-home --shell /usr/sbin/nologin sluice
COPY --from=builder /out/ /usr/local/bin/
COPY services/fleet/transformer/rules.toml /usr/share/sluice/rules.toml
ENV SLUICE_TRANSFORMER_RULES=/usr/share/sluice/rules.toml \
    SLUICE_LOG_FORMAT=json \
    SLUICE_HTTP_LISTEN=0.0.0.0:9464
USER 10001:10001
EXPOSE 9464
# No default binary: the command names the service.
ENTRYPOINT []
CMD ["ingest"]
