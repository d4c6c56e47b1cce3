#!/usr/bin/env bash
# Runs CMD [ARGS...] (through with-image.sh) against the local daemon reached over ssh, as
# a remote build host is reached with DOCKER_HOST=ssh://user@host: an OpenSSH server of
# this run's own (Debian's /usr/sbin/sshd with its own config, set up by
# scripts/sshd-setup.sh) on a free loopback port, key authentication only, whose account
# runs `docker system dial-stdio`. CMD runs with DOCKER_HOST=ssh://USER@127.0.0.1:PORT and
# PATH starting with an `ssh` that uses that setup's config and known hosts (the machine's
# ~/.ssh is neither read nor changed). The suite's own witness client (bollard, no ssh
# transport) talks to the daemon's socket directly: DH_E2E_WITNESS_HOST.
# PORT is DOCKER_HARNESS_SSH_PORT, else the first free one from 23850. sshd runs in a
# session of its own, logs to target/docker-harness/ssh/sshd.log, and is stopped by its PID
# when this script ends, however it ends.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"

(($# > 0)) || { echo "usage: $0 CMD [ARGS...]" >&2; exit 64; }
socket=$(dh_local_socket)
port=$(dh_free_port DOCKER_HARNESS_SSH_PORT 23850)

dir="$DH_STATE/ssh"
rm -rf "$dir"
DH_E2E_DAEMON_SOCKET="$socket" "$here/sshd-setup.sh" "$dir" "$port"
log="$dir/sshd.log"
pidfile="$dir/sshd-$port.pid.started"
pid=
stop_sshd() {
    [[ -n $pid ]] || return 0
    if dh_recorded_pid "$pidfile" "sshd -D -e -f $dir/sshd_config" >/dev/null; then
        dh_end_pid "$pid" 50
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
trap stop_sshd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dh_start_detached "$pidfile" "$log" /usr/sbin/sshd -D -e -f "$dir/sshd_config"
pid=$DH_STARTED_PID

export PATH="$dir/bin:$PATH"
export DOCKER_HOST
DOCKER_HOST=$(<"$dir/docker-host")
export DH_E2E_WITNESS_HOST="unix://$socket" DH_E2E_DAEMON_SOCKET="$socket"
answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
dh_wait_ready "$pid" 50 "$log" "sshd on 127.0.0.1:$port" answers ||
    dh_die "sshd on 127.0.0.1:$port did not reach the daemon through docker system dial-stdio"
dh_say "an OpenSSH server (PID $pid) on 127.0.0.1:$port stands in for a remote build host; DOCKER_HOST=$DOCKER_HOST"

rc=0
"$here/with-image.sh" "$@" || rc=$?
exit "$rc"
