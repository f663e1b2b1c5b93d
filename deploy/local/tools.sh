#!/usr/bin/env bash
# Fetches and builds everything the tests use besides the Rust workspace: the
# Kafka, Apicurio, Kafka Connect + Debezium and Kafka Streams jars (Maven
# Central), Jaeger, helm and kube-score (Go module proxy), and the Python
# virtualenvs (interop, chart, fuzz; PyPI). Each part is skipped when it is
# already there.
#
# test.sh runs it beside the cargo build: on a fresh machine most of it waits
# on the network while rustc has the cores, instead of after it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"

bash "$HERE/interop.sh"
chart_tools
python_venv "$SLUICE_LOCAL/fuzz-venv" "$HERE/fuzz/requirements.txt"
bash "$HERE/fetch.sh"
bash "$HERE/connect.sh" fetch
bash "$HERE/streams.sh" build
