#!/usr/bin/env bash
# Prepares an OpenSSH server on loopback whose account runs `docker system dial-stdio`, as a
# remote build host does for DOCKER_HOST=ssh://…: scripts/sshd-setup.sh DIR PORT
# Starts nothing; the caller runs `/usr/sbin/sshd -D -e -f DIR/sshd_config` and stops it by
# its PID. Everything is in DIR, new on each run; the machine's own ssh configuration and
# keys are neither read nor changed:
#   DIR/sshd_config        port PORT on 127.0.0.1 only, key authentication only, for this
#                          user only, with DIR/authorized_keys (AuthorizedKeysFile)
#   DIR/authorized_keys    the client key, held to one command: dial-stdio to the daemon's
#                          socket (DH_E2E_DAEMON_SOCKET, else /var/run/docker.sock)
#   DIR/bin/ssh            what to put first on PATH: the system ssh with DIR/ssh_config
#                          (known hosts: DIR/known_hosts only) and the client key; the docker
#                          CLI and the harness both run `ssh` from PATH
#   DIR/stranger-bin/ssh   the same with a key the server does not know
#   DIR/docker-host        the DOCKER_HOST to use: ssh://USER@127.0.0.1:PORT
set -euo pipefail
(($# == 2)) || { echo "usage: $0 DIR PORT" >&2; exit 64; }
dir=$(mkdir -p "$1" && cd "$1" && pwd)
port=$2
socket=${DH_E2E_DAEMON_SOCKET:-/var/run/docker.sock}
user=$(id -un)
for tool in ssh ssh-keygen /usr/sbin/sshd; do
    command -v "$tool" >/dev/null || { echo "sshd-setup.sh: $tool is missing; install openssh-server (make deps)" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "sshd-setup.sh: the docker CLI is missing (the account runs docker system dial-stdio)" >&2; exit 1; }

rm -f "$dir"/host_ed25519* "$dir"/client_ed25519* "$dir"/stranger_ed25519*
ssh-keygen -q -t ed25519 -N '' -C docker-harness-host -f "$dir/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C docker-harness-client -f "$dir/client_ed25519"
ssh-keygen -q -t ed25519 -N '' -C docker-harness-stranger -f "$dir/stranger_ed25519"

printf 'command="DOCKER_HOST=unix://%s exec docker system dial-stdio",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding %s\n' \
    "$socket" "$(cat "$dir/client_ed25519.pub")" >"$dir/authorized_keys"

# MaxStartups: a parallel suite opens many connections at once, and the default (10:30:100)
# drops some of them before they authenticate.
cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 500
MaxSessions 100
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF

printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"
cat >"$dir/ssh_config" <<EOF
Host *
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
EOF

for who in client stranger; do
    bin=$dir/bin
    [[ $who == stranger ]] && bin=$dir/stranger-bin
    mkdir -p "$bin"
    printf '#!/bin/sh\nexec %s -F %s -i %s "$@"\n' "$(command -v ssh)" "$dir/ssh_config" "$dir/${who}_ed25519" >"$bin/ssh"
    chmod 755 "$bin/ssh"
done

# sshd refuses to start without its privilege separation directory, which Debian's service
# unit makes at boot; on a machine where that service never ran, it is missing.
if [[ ! -d /run/sshd ]]; then
    mkdir -p /run/sshd 2>/dev/null || { echo "sshd-setup.sh: cannot create /run/sshd (sshd needs it)" >&2; exit 1; }
fi
printf 'ssh://%s@127.0.0.1:%s\n' "$user" "$port" >"$dir/docker-host"
