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
host=$(<"$dir/docker-host")
# The server starts with this script's environment; only the probe and CMD get the ssh setup.
answers() { PATH="$dir/bin:$PATH" DOCKER_HOST=$host timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
dh_start_proxy "$dir/sshd-$port.pid.started" "$dir/sshd.log" "sshd -D -e -f $dir/sshd_config" pid \
    "sshd on 127.0.0.1:$port" \
    "sshd on 127.0.0.1:$port did not reach the daemon through docker system dial-stdio" answers -- \
    /usr/sbin/sshd -D -e -f "$dir/sshd_config"
export PATH="$dir/bin:$PATH" DOCKER_HOST=$host
export DH_E2E_WITNESS_HOST="unix://$socket" DH_E2E_DAEMON_SOCKET="$socket"
dh_say "an OpenSSH server (PID $DH_PROXY_PID) on 127.0.0.1:$port stands in for a remote build host; DOCKER_HOST=$DOCKER_HOST"

rc=0
"$here/with-image.sh" "$@" || rc=$?
exit "$rc"
