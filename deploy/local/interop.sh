#!/usr/bin/env bash
# The Python virtualenv with Confluent's client that the wire-format tests use
# as an independent reader. Recreated only when requirements.txt changes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$SLUICE_LOCAL/venv"
REQUIREMENTS="$SLUICE_ROOT/deploy/local/interop/requirements.txt"

python_venv "$VENV" "$REQUIREMENTS"
