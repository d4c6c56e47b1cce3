#!/usr/bin/env bash
# Makes the certificates for a TLS daemon endpoint on loopback: scripts/certs.sh DIR
#   DIR/ca/{cert,key}.pem        a CA made for this run
#   DIR/server/{cert,key}.pem    the endpoint's certificate: IP SAN 127.0.0.1, DNS localhost
#   DIR/client/                  what DOCKER_CERT_PATH points at: ca.pem (the CA), and
#                                cert.pem and key.pem, a client certificate the CA signed
#   DIR/wrong-ca/                the same client files with another CA's ca.pem, which did
#                                not sign the endpoint's certificate
#   DIR/untrusted-client/        the right ca.pem with a client certificate of another CA,
#                                which the endpoint refuses
#   DIR/openssl.cnf              OPENSSL_CONF for socat: no TLS 1.3 session tickets. socat 1.7
#                                sets no session ID context, and OpenSSL then fails a client
#                                that resumes while client certificates are verified ("session
#                                id context uninitialized"); rustls resumes where it can.
# EC P-256 keys in PKCS#8, which both OpenSSL (socat) and rustls read. Everything is new on
# each run, valid for two days, and lives only in DIR; nothing is installed anywhere.
set -euo pipefail
(($# == 1)) || { echo "usage: $0 DIR" >&2; exit 64; }
dir=$1
command -v openssl >/dev/null || { echo "certs.sh: openssl is missing; install it (make deps)" >&2; exit 1; }
mkdir -p "$dir"/{ca,other-ca,server,client,wrong-ca,untrusted-client}

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # DIR NAME
    key "$1/key.pem"
    openssl req -x509 -new -key "$1/key.pem" -out "$1/cert.pem" -days 2 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

signed() { # DIR CA_DIR CN EXTENSIONS
    local ext
    ext=$(mktemp "$1/ext.XXXXXX")
    printf '%s\n' "$4" >"$ext"
    key "$1/key.pem"
    openssl req -new -key "$1/key.pem" -subj "/CN=$3" -out "$1/req.csr" 2>/dev/null
    openssl x509 -req -in "$1/req.csr" -CA "$2/cert.pem" -CAkey "$2/key.pem" -CAcreateserial \
        -out "$1/cert.pem" -days 2 -extfile "$ext" 2>/dev/null
    rm -f "$1/req.csr" "$ext"
}

ca "$dir/ca" "docker-harness test CA"
ca "$dir/other-ca" "docker-harness other CA"
signed "$dir/server" "$dir/ca" 127.0.0.1 \
    "$(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost')"
client_ext=$(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth')
signed "$dir/client" "$dir/ca" docker-harness-client "$client_ext"
signed "$dir/untrusted-client" "$dir/other-ca" docker-harness-stranger "$client_ext"

cp "$dir/ca/cert.pem" "$dir/client/ca.pem"
cp "$dir/ca/cert.pem" "$dir/untrusted-client/ca.pem"
cp "$dir/client/cert.pem" "$dir/client/key.pem" "$dir/wrong-ca/"
cp "$dir/other-ca/cert.pem" "$dir/wrong-ca/ca.pem"
chmod 600 "$dir"/*/key.pem
cat >"$dir/openssl.cnf" <<'EOF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
NumTickets = 0
EOF
