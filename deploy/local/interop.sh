#!/usr/bin/env bash
# The Python virtualenv with Confluent's client that the wire-format tests use
# as an independent reader. Recreated only when requirements.txt changes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$SLUICE_LOCAL/venv"
REQUIREMENTS="$SLUICE_ROOT/deploy/local/interop/requirements.txt"

if [[ -x "$VENV/bin/python" ]] && cmp -s "$REQUIREMENTS" "$VENV/requirements.txt"; then
  exit 0
fi
log "creating the interop virtualenv in $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
cp "$REQUIREMENTS" "$VENV/requirements.txt"
