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
cd "$SLUICE_ROOT"

IMAGE="${1:-localhost/sluice:local}"
podman image exists "$IMAGE" || die "no image $IMAGE: run deploy/local/image.sh"
fleet_on_the_stack
remove_harness_containers
trap remove_harness_containers EXIT
rm -rf "$SLUICE_LOCAL/compose-run"
log "compose-run: docker-compose.yml in $IMAGE"
./target/debug/sluice-compose-run --image "$IMAGE" --work-dir "$SLUICE_LOCAL/compose-run"
