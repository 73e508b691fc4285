#!/usr/bin/env bash
# Integration suite on a real Kafka-protocol broker: Tansu 0.6.0 (crates.io), in-memory storage.
# Installs Tansu only when missing (~20-35 min on 2 cores), starts it on a free port, runs the
# ignored tests of crates/cli/tests/tansu.rs (`expressway serve` processes: N in -> N results and
# logs, rebalance on join, SIGKILL, SIGTERM drain, dead letters, definitions topic, TLS through a
# terminator when openssl is installed) and stops everything it started on exit. Extra arguments go to the test binary (e.g. a test name filter).
#
#   bash deploy/tansu-it.sh            # what .ci/run does
#   EXPRESSWAY_IT_BROKERS=host:port cargo test -p expressway-cli --test tansu -- --ignored --test-threads=1
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
step() { echo "== tansu-it: $*"; }

if ! command -v tansu >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/tansu" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v tansu >/dev/null 2>&1 || ! tansu --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
  step "installing tansu $TANSU_VERSION (dynostore: without it the memory engine discards records)"
  # Its own target dir, so the workspace's build cache is not mixed with Tansu's.
  CARGO_TARGET_DIR="${TMPDIR:-/tmp}/tansu-install-target" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
  rm -rf "${TMPDIR:-/tmp}/tansu-install-target"
fi

port="${TANSU_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
log="$(mktemp -t tansu-it.XXXXXX.log)"
step "starting tansu on 127.0.0.1:$port (log $log)"
tansu broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >"$log" 2>&1 &
pids=("$!")
stop_all() {
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "${tls_dir:-}" ]; then rm -rf "$tls_dir"; fi
}
trap stop_all EXIT

wait_port() { # PORT PID LOG
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then
      cat "$3" >&2
      echo "process $2 exited before listening on $1" >&2
      exit 1
    fi
    sleep 0.1
  done
}
wait_port "$port" "${pids[0]}" "$log"
if ! grep -q dynostore "$log"; then
  cat "$log" >&2
  echo "this tansu was built without the dynostore feature (it would discard records);" \
    "reinstall: cargo install tansu --version $TANSU_VERSION --locked --features dynostore --force" >&2
  exit 1
fi

# TLS: a second Tansu behind deploy/tls-terminator.py with a throw-away self-signed certificate
# (Tansu 0.6.0's own tls:// listener does not complete handshakes). Skipped without openssl.
if command -v openssl >/dev/null 2>&1; then
  tls_dir="$(mktemp -d -t tansu-it-tls.XXXXXX)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/ca.pem" >/dev/null 2>&1
  cat "$tls_dir/ca.pem" "$tls_dir/key.pem" >"$tls_dir/server.pem"
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  plain_port="$(free_port)"
  tls_port="$(free_port)"
  step "TLS: tansu on 127.0.0.1:$plain_port behind a TLS terminator on 127.0.0.1:$tls_port"
  tansu broker --listener-url "tcp://127.0.0.1:$plain_port" \
    --advertised-listener-url "tcp://127.0.0.1:$tls_port" \
    --storage-engine memory://tansu-tls/ >"$tls_dir/tansu.log" 2>&1 &
  pids+=("$!")
  wait_port "$plain_port" "$!" "$tls_dir/tansu.log"
  python3 deploy/tls-terminator.py "$tls_port" "$plain_port" "$tls_dir/server.pem" >"$tls_dir/proxy.log" 2>&1 &
  pids+=("$!")
  wait_port "$tls_port" "$!" "$tls_dir/proxy.log"
  export EXPRESSWAY_IT_TLS_BROKERS="127.0.0.1:$tls_port" EXPRESSWAY_IT_TLS_CA="$tls_dir/ca.pem"
else
  step "openssl not found: the TLS test is skipped"
fi

step "running the suite"
started=$SECONDS
EXPRESSWAY_IT_BROKERS="127.0.0.1:$port" \
  cargo test --locked -p expressway-cli --test tansu -- --ignored --test-threads=1 "$@"
step "suite passed in $((SECONDS - started)) s"
