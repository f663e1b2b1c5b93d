#!/usr/bin/env bash
# `make image`: the Sluice image, built with podman from the repository's
# Dockerfile as users build it elsewhere. Docker Hub is not reachable from
# these machines, so the Dockerfile's two bases are made first from
# Debian's packages and passed as its build args:
#   localhost/sluice-base/debian:<suite>-slim     mmdebstrap's minbase, imported
#   localhost/sluice-base/rust:<v>-slim-<suite>   deploy/image/rust.Dockerfile on it
# Each base is made once (delete it with `podman rmi` to remake it); the
# image is built every time, podman's layer cache keeping the dependencies
# until Cargo.lock changes. podman runs with runc: crun fails on these
# machines' hybrid cgroups, and a build without raised ulimits is refused.
#
#   image.sh [tag]   (default sluice:local)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

TAG="${1:-sluice:local}"
PODMAN=(podman --runtime runc)
# runc refuses limits above what this sandbox grants (seen: nofile above
# the hard limit, nproc above 32768 though the hard limit is higher), and
# podman's defaults are above them.
nofile=$(ulimit -Hn)
nofile=${nofile/unlimited/-1}
LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=32768:32768)
command -v podman >/dev/null && command -v mmdebstrap >/dev/null \
  || die "podman or mmdebstrap is missing: run deploy/local/prerequisites.sh"

# The bases the Dockerfile names by default, read from it.
default_arg() { sed -n "s/^ARG $1=//p" Dockerfile; }
RUST_IMAGE="$(default_arg RUST_IMAGE)"       # rust:1.95-slim-bookworm
RUNTIME_IMAGE="$(default_arg RUNTIME_IMAGE)" # debian:bookworm-slim
SUITE="${RUNTIME_IMAGE#debian:}" && SUITE="${SUITE%-slim}"
RUST_VERSION="${RUST_IMAGE#rust:}" && RUST_VERSION="${RUST_VERSION%%-*}"
[[ -n "$SUITE" && -n "$RUST_VERSION" ]] || die "cannot read the bases from the Dockerfile"
DEBIAN_BASE="localhost/sluice-base/debian:$SUITE-slim"
RUST_BASE="localhost/sluice-base/rust:$RUST_VERSION-slim-$SUITE"

exists() { "${PODMAN[@]}" image exists "$1"; }

if ! exists "$DEBIAN_BASE"; then
  log "making $DEBIAN_BASE with mmdebstrap"
  # With this machine's own CAs (its egress is a TLS-intercepting proxy):
  # the build's downloads (rustup, crates) go through it.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" - http://deb.debian.org/debian \
    | "${PODMAN[@]}" import --change 'CMD ["bash"]' - "$DEBIAN_BASE" >/dev/null
fi
if ! exists "$RUST_BASE"; then
  log "making $RUST_BASE (rustup, toolchain $RUST_VERSION)"
  "${PODMAN[@]}" build "${LIMITS[@]}" --network host -q \
    --build-arg "BASE=$DEBIAN_BASE" --build-arg "RUST_VERSION=$RUST_VERSION" \
    -f deploy/image/rust.Dockerfile -t "$RUST_BASE" deploy/image >/dev/null
fi

log "building $TAG from the Dockerfile (bases $RUST_BASE, $DEBIAN_BASE)"
started=$SECONDS
"${PODMAN[@]}" build "${LIMITS[@]}" --network host \
  --build-arg "RUST_IMAGE=$RUST_BASE" --build-arg "RUNTIME_IMAGE=$DEBIAN_BASE" \
  -t "$TAG" .
log "built $TAG in $((SECONDS - started)) s: $("${PODMAN[@]}" image inspect --format '{{.Id}} {{.Size}}' "$TAG")"
