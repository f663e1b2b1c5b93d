# Shared helpers for the local stack scripts. Sourced, not run.
#
# Everything lives under $SLUICE_LOCAL (default: <repo>/.local), which git
# ignores: downloaded servers in dist/, one folder per server with its data,
# config, log, pid and endpoint fragment, and stack.env, the one file that
# services, tests and the demo read to find the servers.

set -euo pipefail

SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SLUICE_LOCAL="${SLUICE_LOCAL:-$SLUICE_ROOT/.local}"
SLUICE_DIST="$SLUICE_LOCAL/dist"
STACK_ENV="$SLUICE_LOCAL/stack.env"
# shellcheck source=versions.env
source "$SLUICE_ROOT/deploy/local/versions.env"

log() { printf '[stack %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a loopback port nobody listens on, drawn at random so that two stacks
# (or a stack and a leftover) on one machine do not race for the same number.
# Drawn below the kernel's ephemeral range: a port inside it can become the
# local port of an outgoing connection before the server binds it (seen: the
# demo's outbox-relay exiting with "Address already in use").
free_port() {
  local port ephemeral_low _
  read -r ephemeral_low _ < /proc/sys/net/ipv4/ip_local_port_range
  (( ephemeral_low > 11000 )) || die "the ephemeral port range starts at $ephemeral_low; no room below it"
  for _ in $(seq 1 200); do
    port=$((10000 + RANDOM % (ephemeral_low - 10000)))
    if ! port_in_use "$port"; then echo "$port"; return 0; fi
  done
  die "no free loopback port found"
}

# True when the pid in file $1 is a live process (a zombie is not).
pid_alive() {
  [[ -s "$1" ]] || return 1
  local state; state="$(ps -o stat= -p "$(cat "$1")" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

# Runs "$@" until it succeeds or $1 seconds pass; $2 names what we wait for.
wait_for() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { log "gave up waiting for $what after ${seconds}s"; return 1; }
    sleep 0.5
  done
  log "$what is ready"
}

# Stops the process in pid file $1: TERM, then KILL after $2 seconds.
stop_pid() {
  local pidfile="$1" grace="${2:-20}"
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 2))); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.5
  done
  log "pid $pid did not stop in ${grace}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# Reads KEY from an env fragment file, empty when absent.
env_get() { [[ -f "$1" ]] && sed -n "s/^$2=//p" "$1" | tail -n1 || true; }

# Rebuilds stack.env from the endpoint fragments of the servers that run.
write_stack_env() {
  mkdir -p "$SLUICE_LOCAL"
  {
    echo "# Written by deploy/local/stack.sh; the addresses of the local stack."
    cat "$SLUICE_LOCAL"/*/endpoint.env 2>/dev/null || true
  } > "$STACK_ENV.tmp"
  mv "$STACK_ENV.tmp" "$STACK_ENV"
}

# Java 17 is what the Kafka broker and the registry are run with.
java_bin() {
  local java="${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}/bin/java"
  [[ -x "$java" ]] || java="$(command -v java)" || die "java not found (install openjdk-17-jre-headless)"
  echo "$java"
}

# For a harness that starts a fleet from a deployment's definitions (the
# chart-run, the compose-run): the running stack's addresses exported, and
# the outbox table, which is the user's (the relay reads it), made as the
# demo makes it.
fleet_on_the_stack() {
  bash "$SLUICE_ROOT/deploy/local/stack.sh" running \
    || die "the local stack does not run: bash deploy/local/stack.sh up"
  set -a
  # shellcheck source=/dev/null
  source "$STACK_ENV"
  set +a
  PGOPTIONS='-c client_min_messages=warning' bash "$SLUICE_ROOT/deploy/local/postgres.sh" psql -q \
    -f "$SLUICE_ROOT/services/fleet/outbox-relay/migrations/0001_outbox.sql"
}

# Removes the containers a killed `podman run` of a harness left behind.
remove_harness_containers() {
  command -v podman >/dev/null || return 0
  podman ps -aq --filter label=sluice.fleet=harness | xargs -r podman rm -f >/dev/null
}

# Builds the workspace's binaries and benchmarks ($@: a profile flag). As
# far as dependencies' features go this is the selection of make test's
# `cargo build --workspace --all-targets` (dev-dependencies count in both),
# so a script run after it reuses what it built: a subset of packages
# resolved other features and built about 70 crates again (7 minutes of a
# make test in CI).
build_binaries() { cargo build --locked --workspace --bins --benches "$@"; }

# A Python virtualenv at $1 with the packages of the requirements file $2;
# made again only when the file changes.
python_venv() {
  local venv="$1" requirements="$2"
  [[ -x "$venv/bin/python" ]] && cmp -s "$requirements" "$venv/requirements.txt" && return 0
  log "creating the virtualenv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
}

# Builds the Go command $1 (module path $2, version $3) from the module proxy
# into $SLUICE_LOCAL/bin, unless that version is there.
go_tool() {
  local bin="$SLUICE_LOCAL/bin"
  [[ -x "$bin/$1" && "$(cat "$bin/$1.version" 2>/dev/null)" == "$3" ]] && return 0
  command -v go >/dev/null || die "go not found: $1 is built with it"
  log "building $1 $3 from the Go module proxy"
  mkdir -p "$bin"
  GOBIN="$bin" go install "$2@$3"
  echo "$3" > "$bin/$1.version"
}

# What chart.sh checks the chart with: helm and kube-score, and
# kubernetes-validate in .local/chart-venv.
chart_tools() {
  go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
  go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"
  python_venv "$SLUICE_LOCAL/chart-venv" "$SLUICE_ROOT/deploy/local/chart/requirements.txt"
}
