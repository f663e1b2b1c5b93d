#!/usr/bin/env bash
# The compose-run (`make image`): docker-compose.yml's Sluice services in
# containers of the image under podman, with the file's commands,
# environment and volumes, on the running local stack (its Kafka, Postgres
# and registry stand for the file's, whose images are on Docker Hub); a
# stream pushed through them and reconciled (sluice-compose-run,
# services/tools/demo). Needs the stack up, the workspace built and the
# image built (image.sh).
#
#   compose-run.sh [image]   (default localhost/sluice:local)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$SLUICE_ROOT/deploy/local"
cd "$SLUICE_ROOT"

IMAGE="${1:-localhost/sluice:local}"
podman image exists "$IMAGE" || die "no image $IMAGE: run deploy/local/image.sh"
bash "$HERE/stack.sh" running || die "the local stack does not run: bash deploy/local/stack.sh up"
set -a
# shellcheck source=/dev/null
source "$STACK_ENV"
set +a
# The outbox table is the user's (the relay reads it); the demo makes it the same way.
PGOPTIONS='-c client_min_messages=warning' bash "$HERE/postgres.sh" psql -q \
  -f services/fleet/outbox-relay/migrations/0001_outbox.sql

# Containers a killed `podman run` left behind.
remove_containers() {
  podman ps -aq --filter label=sluice.fleet=harness | xargs -r podman rm -f >/dev/null
}
remove_containers
trap remove_containers EXIT
rm -rf "$SLUICE_LOCAL/compose-run"
log "compose-run: docker-compose.yml in $IMAGE"
./target/debug/sluice-compose-run --image "$IMAGE" --work-dir "$SLUICE_LOCAL/compose-run"
