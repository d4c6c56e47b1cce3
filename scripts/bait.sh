#!/usr/bin/env bash
# The e2e suite's bait that a killed run left behind: scripts/bait.sh sweep|list
#
# Every container, network and volume the suite makes outside the harness on purpose
# carries the suite's own label, DH_BAIT_LABEL=<host>/<pid>/<start>@<created> (lib.sh);
# the chaos driver's canaries carry DH_CHAOS_CANARY_LABEL with a value of the same form.
# A run killed midway (nextest's terminate-after, a cancelled CI job, Ctrl-C) leaves it
# there, and the harness never touches it: that is what bait is for. So every make target
# that runs the suite calls `sweep` first, which removes stale bait:
#
#   - bait whose owner is a process of this host that is gone (no such PID, a zombie, or
#     the PID now belongs to a process with another start time): whoever made it can no
#     longer remove it, so it is stale at once, however young;
#   - bait whose owner cannot be checked from here (another host's name, or a value this
#     script cannot read) once it is older than DH_BAIT_MAX_AGE seconds (600).
#
# Bait of a live owner on this host is never removed, however old: the owner is a test
# process, the test that started a bait-making child, or the make process that created
# the canary, so two runs at once (make e2e-concurrent, e2e-shards, two `make e2e` in two
# checkouts) never remove each other's live bait, and a canary created before a long cold
# build is still there for its check. Nothing without the label is ever touched.
#
# `sweep` also tidies what the suite writes on the host for a run that is over:
#   - canary records (target/docker-harness/canary/<pid>-<start>) whose make is gone;
#   - the suite's temporary directories left by killed runs, each once nothing in it
#     changed for DH_BAIT_MAX_AGE seconds: what is in e2e-tmp in the harness's session
#     state directories, and what older versions of the suite left in
#     <temp dir>/docker-harness-e2e/ and <temp dir>/dh-e2e-files-*.
#
# `list` prints every piece of bait with its verdict (live, stale or young) and removes
# nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

max_age=${DH_BAIT_MAX_AGE:-600}
[[ $max_age =~ ^[0-9]+$ ]] || dh_die "DH_BAIT_MAX_AGE=$max_age is not a number of seconds"

# Prints one line per piece of bait: KIND<TAB>ID<TAB>NAME<TAB>VALUE<TAB>LABEL, every container first,
# then the networks, then the volumes. Bait is what carries the suite's label, or the label
# of the chaos driver's canaries (DH_CHAOS_CANARY_LABEL: a run killed midway leaves them;
# their value has the same form); only ever by one of these exact labels.
bait() {
    local fmt label
    for label in "$DH_BAIT_LABEL" "$DH_CHAOS_CANARY_LABEL"; do
        fmt="{{.ID}}\t{{.Names}}\t{{.Label \"$label\"}}\t$label"
        docker ps -a --no-trunc --filter "label=$label" --format "$fmt" | sed 's/^/container\t/'
    done
    for label in "$DH_BAIT_LABEL" "$DH_CHAOS_CANARY_LABEL"; do
        fmt="{{.ID}}\t{{.Name}}\t{{.Label \"$label\"}}\t$label"
        docker network ls --no-trunc --filter "label=$label" --format "$fmt" | sed 's/^/network\t/'
    done
    for label in "$DH_BAIT_LABEL" "$DH_CHAOS_CANARY_LABEL"; do
        fmt="{{.Name}}\t{{.Name}}\t{{.Label \"$label\"}}\t$label"
        docker volume ls --filter "label=$label" --format "$fmt" | sed 's/^/volume\t/'
    done
}

# Prints live, stale or young for a bait label's value: see the rule above. A chaos canary
# whose value has no owner was made by a driver from before owners were recorded: it may
# belong to a run going on now, and is left to whoever made it (unowned).
verdict() { # VALUE [LABEL]
    local value=$1 owner created host now
    if [[ ${2:-} == "$DH_CHAOS_CANARY_LABEL" && $value != *@* ]]; then
        echo unowned
        return
    fi
    owner=${value%@*}
    created=${value##*@}
    host=${owner%%/*}
    if [[ $value == *@* && $owner =~ ^[^/]+/[0-9]+/[0-9]+$ && $created =~ ^[0-9]+$ && $host == "$(dh_place)" ]]; then
        if dh_owner_alive "$owner"; then echo live; else echo stale; fi
        return
    fi
    now=$(date +%s)
    if [[ $created =~ ^[0-9]+$ ]] && ((now - created <= max_age)); then echo young; else echo stale; fi
}

exists() { # KIND ID
    case $1 in
    container) docker container inspect "$2" >/dev/null 2>&1 ;;
    network) docker network inspect "$2" >/dev/null 2>&1 ;;
    volume) docker volume inspect "$2" >/dev/null 2>&1 ;;
    esac
}

remove() { # KIND ID
    case $1 in
    # With its anonymous volumes; by force, since a sleeping PID 1 ignores SIGTERM.
    container) docker rm --force --volumes "$2" ;;
    network) docker network rm "$2" ;;
    volume) docker volume rm "$2" ;;
    esac
}

# Removes DIR when nothing under it changed for max_age seconds.
tidy_dir() { # DIR
    [[ -d $1 ]] || return 0
    [[ -z $(find "$1" -newermt "@$(($(date +%s) - max_age))" -print -quit 2>/dev/null) ]] || return 0
    if rm -rf -- "$1" 2>/dev/null; then ((++tidied)); fi
}

sweep() {
    local kind id name value v removed=0 spared=0 failed=0 listing
    local -a stale=()
    listing=$(bait)
    while IFS=$'\t' read -r kind id name value label; do
        [[ -n $kind ]] || continue
        v=$(verdict "$value" "$label")
        if [[ $v == stale ]]; then stale+=("$kind"$'\t'"$id"$'\t'"$name"); else ((++spared)); fi
    done <<<"$listing"
    # Containers first, then networks, then volumes: what is in use goes after its user.
    # The listing is already in that order.
    local entry
    for entry in ${stale[@]+"${stale[@]}"}; do
        IFS=$'\t' read -r kind id name <<<"$entry"
        if remove "$kind" "$id" >/dev/null 2>&1 || ! exists "$kind" "$id"; then
            ((++removed))
            printf 'bait: removed stale %s %s\n' "$kind" "$name"
        else
            ((++failed))
            dh_say "warning: could not remove stale bait: $kind $name ($id)"
        fi
    done

    # Canary records whose make is gone (their canary went above).
    local rec pid start
    # The one record the canary.sh of before owners kept (its canary carried no bait label):
    # made by this checkout, whose runs no longer write it, so nothing live uses it.
    for kind in container network volume; do
        [[ -s $DH_STATE/canary/$kind ]] || continue
        id=$(<"$DH_STATE/canary/$kind")
        if remove "$kind" "$id" >/dev/null 2>&1; then printf 'bait: removed an earlier canary %s %s\n' "$kind" "$id"; fi
        rm -f -- "$DH_STATE/canary/$kind"
    done
    rm -f -- "$DH_STATE/canary/image"
    for rec in "$DH_STATE"/canary/*-*; do
        [[ -d $rec ]] || continue
        pid=${rec##*/}
        start=${pid#*-}
        pid=${pid%%-*}
        [[ $(dh_process_start "$pid" 2>/dev/null) == "$start" ]] || rm -rf -- "$rec"
    done

    # One entry at a time, so a live run's directory stays beside a dead one's.
    tidied=0
    local tmp=${TMPDIR:-/tmp}
    local root=${DOCKER_HARNESS_STATE_DIR:-$tmp/docker-harness-$(id -u)}
    for rec in "$root"/sessions/*/e2e-tmp/* "$tmp"/docker-harness-e2e/* "$tmp"/dh-e2e-files-*; do
        tidy_dir "$rec"
    done
    rmdir "$tmp"/docker-harness-e2e 2>/dev/null || true

    local more=""
    ((failed == 0)) || more+=", $failed could not be removed"
    ((tidied == 0)) || more+="; $tidied stale temporary director(ies) removed"
    printf 'bait: %d stale piece(s) of e2e bait removed, %d live or young spared%s\n' "$removed" "$spared" "$more"
    # A piece that could not be removed is reported, and `make leftovers` fails on it; the
    # run itself can still go ahead.
    return 0
}

list() {
    local kind id name value
    while IFS=$'\t' read -r kind id name value label; do
        [[ -n $kind ]] || continue
        printf '%-9s %-7s %s %s\n' "$kind" "$(verdict "$value" "$label")" "$name" "$value"
    done <<<"$(bait)"
}

case "${1:-}" in
sweep | list) "$1" ;;
*) echo "usage: $0 sweep|list" >&2; exit 64 ;;
esac
