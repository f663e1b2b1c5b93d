#!/usr/bin/env bash
# docs/configuration.md, generated from the services' clap definitions: each
# binary's --help (flags, SLUICE_* variables, defaults), run with an empty
# environment so no local value leaks in.
#
#   config-reference.sh          write docs/configuration.md
#   config-reference.sh --check  fail when the committed file is out of date
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

COMMANDS=(
  "ingest"
  "outbox-relay"
  "transformer"
  "sheets-sink"
  "erp-sink"
  "saga-orchestrator run"
  "saga-orchestrator list"
  "saga-orchestrator show"
  "dlq-replayer"
  "sluice-provision apply"
  "sandbox serve"
)

render() {
  cat <<'HEAD'
# Configuration reference

Generated from the services' command-line definitions by
`deploy/local/config-reference.sh` (`make test` checks it is current). Every
flag can also be set by the environment variable shown, or by its long name in
a TOML file given with `--config` / `SLUICE_CONFIG`; flags win over the
environment, the environment over the file. Secrets (passwords, the database
URL) also take a `…-file` variant where shown.
HEAD
  for command in "${COMMANDS[@]}"; do
    read -r binary sub <<< "$command"
    printf '\n## %s\n\n```text\n' "$command"
    # shellcheck disable=SC2086
    env -i PATH="$PATH" "./target/debug/$binary" $sub --help
    printf '```\n'
  done
}

if [[ "${1:-}" == --check ]]; then
  diff -u docs/configuration.md <(render) > /dev/null \
    || die "docs/configuration.md is out of date: run deploy/local/config-reference.sh"
  log "docs/configuration.md matches the binaries' flags"
else
  render > docs/configuration.md
  log "wrote docs/configuration.md"
fi
