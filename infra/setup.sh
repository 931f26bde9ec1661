#!/usr/bin/env bash
# Idempotent set-up shared by `npm start`, `npm test` and `npm run bench`:
# Debian's nats-server, redis-server, redis-tools, redis-sentinel, iproute2, iptables, openssl and tcl when missing, `npm ci` when node_modules is missing or stale, then build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# redis-benchmark through the front doors in `npm run bench` (bench/redis_benchmark.ts), and redis-cli: Debian's redis-tools.
command -v redis-benchmark >/dev/null 2>&1 || [ -x /usr/bin/redis-benchmark ] || need+=(redis-tools)
# The failover bench's Redis + Sentinel baseline (bench/sentinel_failover.ts; it falls back to redis-server --sentinel).
command -v redis-sentinel >/dev/null 2>&1 || [ -x /usr/bin/redis-sentinel ] || need+=(redis-sentinel)
# The network-namespace test's hosts (test/helpers/netns.ts): ip netns, veths, a bridge, iptables DROP rules.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
# The CA and certificates of a TLS bus (`npm start --tls`, infra/tls/make-certs.sh).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Redis's own Tcl test suite against the front doors (`npm run redis-suite`, bench/redis_suite.ts).
command -v tclsh >/dev/null 2>&1 || need+=(tcl)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian's packages" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages' own service scripts from starting servers we did not ask for.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

npx tsc -p tsconfig.json >&2
# Every actor process and the CLI run from one bundle each (dist/bundle/, infra/bundle.mjs says why).
node infra/bundle.mjs >&2
# The CLI and actors are run as programs (npx redis-qjm, node dist/actors/…; bundle.mjs makes dist/bundle's so).
chmod +x dist/actors/*.js
# Redis 7.0.15's test suite (3 MB from Debian's archive, checksum-verified) cached once under .cache/redis-suite, so
# the runner and its integration test work offline afterwards. Without the network: a warning, nothing fails here.
node dist/bench/redis_suite_run.js --fetch >/dev/null 2>&1 || echo "setup: warning: Redis's test suite not cached (npm run redis-suite will say why)" >&2
