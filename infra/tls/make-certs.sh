#!/usr/bin/env bash
# The certificates of a TLS bus (docs/operations.md, "TLS"): a CA, nats-server's certificate, and the certificate every
# actor, the CLI and clients present (nats-server runs with `verify: true`: a connection without one signed by this CA
# is refused at the handshake, before the per-role NATS users and permissions even see it).
#
#   infra/tls/make-certs.sh <dir> [name-or-ip ...]
#
# Writes into <dir> (made 0700): ca.pem ca-key.pem, server.pem server-key.pem, client.pem client-key.pem; keys 0600.
# nats-server's certificate names localhost and 127.0.0.1, plus each extra argument (a DNS name, or an IPv4/IPv6
# address) — the names and addresses clients and other nats-servers (routes) dial on other hosts. It serves for routes
# too (server and client auth). Idempotent: an existing file is never overwritten; a certificate whose names lack one
# asked for is reported (delete server.pem and server-key.pem to issue it again).
set -euo pipefail
umask 077

if [ $# -lt 1 ] || [ "${1:0:1}" = "-" ]; then
  echo "usage: $0 <dir> [name-or-ip ...]" >&2
  exit 2
fi
dir=$1
shift
command -v openssl >/dev/null 2>&1 || { echo "make-certs: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"

DAYS_CA=3650
# Leaf certificates: 825 days, the longest clients such as macOS accept.
DAYS_LEAF=825

# A P-256 key: quick to make, and every TLS stack nats-server and Node use speaks ECDSA.
newkey() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

if [ ! -e ca.pem ]; then
  [ -e ca-key.pem ] || newkey ca-key.pem
  openssl req -x509 -new -key ca-key.pem -sha256 -days "$DAYS_CA" -subj "/O=redis-qjm/CN=redis-qjm CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
  chmod 644 ca.pem
  echo "make-certs: made the CA $dir/ca.pem" >&2
fi

# sign <name> <subject CN> <extensions>: <name>.pem from <name>-key.pem (made when missing), signed by the CA.
sign() {
  local name=$1 cn=$2 ext=$3
  [ -e "$name.pem" ] && return 0
  [ -e ca-key.pem ] || { echo "make-certs: $dir/ca-key.pem is missing: cannot sign $name.pem" >&2; exit 1; }
  [ -e "$name-key.pem" ] || newkey "$name-key.pem"
  local extfile csr
  extfile=$(mktemp "$name.ext.XXXXXX")
  csr=$(mktemp "$name.csr.XXXXXX")
  trap 'rm -f "$extfile" "$csr"' RETURN
  printf '%b' "$ext" >"$extfile"
  openssl req -new -key "$name-key.pem" -subj "/O=redis-qjm/CN=$cn" -out "$csr"
  openssl x509 -req -in "$csr" -CA ca.pem -CAkey ca-key.pem -set_serial "0x$(openssl rand -hex 16)" -sha256 \
    -days "$DAYS_LEAF" -extfile "$extfile" -out "$name.pem" 2>/dev/null
  chmod 644 "$name.pem"
  echo "make-certs: made $dir/$name.pem" >&2
}

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san="$san,IP:$n"; else san="$san,DNS:$n"; fi
done
sign server "redis-qjm nats-server" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=$san\n"
sign client "redis-qjm client" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"

# A server certificate kept from an earlier run may lack a name asked for now: say so rather than fail at a handshake.
names=$(openssl x509 -in server.pem -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')
for n in "$@"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then want="IPAddress:$n"; else want="DNS:$n"; fi
  case ",$names," in
    *",$want,"*) ;;
    *) echo "make-certs: $dir/server.pem does not name $n: delete server.pem and server-key.pem, then run this again" >&2 ;;
  esac
done
