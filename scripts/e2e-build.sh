#!/usr/bin/env bash
# Runs the image-build tests under nextest -j8 inside the events ledger, and shows from the
# daemon itself that:
#   - the eight tests sharing one session build got one build: one `tag` event for it;
#   - the ledger balances, images included (every built tag witnessed going);
#   - no new dangling image and no new build-step container is left: the intermediate images and
#     containers of every build (test, session, cached, failed, killed) went with it.
# Run through with-image.sh, which decides the session image. Another run's builds on the
# same daemon at the same time would show as new dangling images: run it alone.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"

logical=shared-app # the session build of eight_parallel_tests_share_one_session_build
mkdir -p "$DH_STATE"
state=$(mktemp -d "$DH_STATE/build.XXXXXX")
events="$state/tag-events.log"
dangling_before=$(docker images -q --no-trunc -f dangling=true | sort)
# A build step's container runs from the step before's image by ID; the daemon is shared, so
# only such containers count (another run's containers are none of this run's business).
build_containers() { docker ps -a --no-trunc --format '{{.ID}} {{.Image}}' | awk '$2 ~ /^(sha256:)?[0-9a-f]{12,64}$/ { print $1 }' | sort; }
containers_before=$(build_containers)

docker events --filter type=image --filter event=tag --format '{{.Actor.Attributes.name}}' \
    >"$events" 2>"$state/events.err" </dev/null &
epid=$!
finish() {
    kill "$epid" 2>/dev/null || true
    wait "$epid" 2>/dev/null || true
    rm -rf "$state"
}
trap finish EXIT
sleep 0.5 # let the subscription start before the first build

rc=0
cargo build -q -p e2e-tests --bins
target/debug/ledger --state-dir "$state/ledger" -- cargo nextest run -p e2e-tests -j8 -E 'binary(build)' || rc=$?
((rc == 0)) || dh_die "the build tests or their ledger failed (exit $rc)"

builds=$(grep -c -- "-$logical:" "$events" || true)
((builds == 1)) || dh_die "the session build $logical was tagged $builds times, expected once: $(cat "$events")"
dh_say "one build of $logical for eight tests (docker events: $builds tag event)"

new_dangling=$(comm -13 <(echo "$dangling_before") <(docker images -q --no-trunc -f dangling=true | sort) | sed '/^$/d')
[[ -z $new_dangling ]] || dh_die "builds left dangling images: $new_dangling"
new_containers=$(comm -13 <(echo "$containers_before") <(build_containers) | sed '/^$/d')
[[ -z $new_containers ]] || dh_die "builds left containers: $new_containers"
left=$(docker images -q -f label=docker-harness.managed)
[[ -z $left ]] || dh_die "built images are left: $left"
dh_say "no built image, intermediate image or build container is left"
