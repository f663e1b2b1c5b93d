#!/usr/bin/env bash
# Installs what the local stack and the build need from Debian's packages,
# when something is missing: Java 17 and Maven (Kafka, the registry),
# PostgreSQL 15, kcat, jq, Chromium (the demo's browser check), docker-compose
# (validating the compose file), Prometheus (promtool checks and unit-tests
# the alert rules; the stall test and the chart-run fire them on a server of
# their own) with prometheus-postgres-exporter, and the C toolchain and
# libraries librdkafka builds with (OpenSSL, libcurl for OIDC, zlib); podman
# with runc and mmdebstrap (the image, built and run by `make image`);
# gnuplot (`make bench` plots the saga's capacity curve).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(openjdk-17-jre-headless maven postgresql-15 kcat curl jq chromium docker-compose build-essential pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev python3 python3-venv prometheus prometheus-postgres-exporter podman runc mmdebstrap gnuplot-nox)

# A python3 from elsewhere (pyenv, say) that can make virtualenvs does too.
provided_elsewhere() {
  case "$1" in
    python3) command -v python3 >/dev/null ;;
    python3-venv) python3 -m venv --help >/dev/null 2>&1 ;;
    *) false ;;
  esac
}

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && continue
  provided_elsewhere "$package" || missing+=("$package")
done

if (( ${#missing[@]} )); then
  log "installing from Debian: ${missing[*]}"
  sudo_cmd=()
  [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || die "cargo not found: install Rust 1.95 or newer with rustup"
command -v go >/dev/null || die "go not found: install Go 1.24 or newer (fetch.sh builds Jaeger with it)"
