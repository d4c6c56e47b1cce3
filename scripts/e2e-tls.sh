#!/usr/bin/env bash
# Runs CMD [ARGS...] (through with-image.sh) against the local daemon reached over TLS, as
# a remote engine started with --tlsverify is reached: a socat proxy on a free loopback
# port presents a certificate for 127.0.0.1 (IP SAN) and lets in only clients whose
# certificate its CA signed; CMD runs with DOCKER_HOST=tcp://127.0.0.1:PORT,
# DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=target/docker-harness/tls/client, the way the
# docker CLI reads them. The certificates are made anew for each run (scripts/certs.sh).
# PORT is DOCKER_HARNESS_TLS_PORT, else the first free one from 23800. socat runs in a
# session of its own, logs to target/docker-harness/tls/socat.log, and is stopped with the
# connections it forked, by its PID, when this script ends, however it ends.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"

(($# > 0)) || { echo "usage: $0 CMD [ARGS...]" >&2; exit 64; }
socket=$(dh_local_socket)
command -v socat >/dev/null || dh_die "socat is missing; install it (make deps)"
port=$(dh_free_port DOCKER_HARNESS_TLS_PORT 23800)

dir="$DH_STATE/tls"
rm -rf "$dir"
"$here/certs.sh" "$dir"
listen="OPENSSL-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,cert=$dir/server/cert.pem,key=$dir/server/key.pem,cafile=$dir/ca/cert.pem,verify=1"
answers() {
    DOCKER_HOST="tcp://127.0.0.1:$port" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$dir/client" \
        timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}
# `group`: the children socat forks per connection share its process group, and go with it.
dh_start_proxy "$dir/socat-$port.pid" "$dir/socat.log" "OPENSSL-LISTEN:$port," group \
    "the TLS proxy on 127.0.0.1:$port" \
    "the TLS proxy on 127.0.0.1:$port to $socket did not answer as a Docker daemon" answers -- \
    env OPENSSL_CONF="$dir/openssl.cnf" socat -t 30 "$listen" "UNIX-CONNECT:$socket"
export DOCKER_HOST="tcp://127.0.0.1:$port" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$dir/client"
export DH_E2E_DAEMON_SOCKET="$socket"
dh_say "a socat TLS proxy (PID $DH_PROXY_PID) on 127.0.0.1:$port stands in for a remote daemon with --tlsverify; DOCKER_HOST=$DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$DOCKER_CERT_PATH"

rc=0
"$here/with-image.sh" "$@" || rc=$?
exit "$rc"
