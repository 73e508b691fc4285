#!/usr/bin/env bash
# Integration suite on a real Kafka-protocol broker: Tansu 0.6.0 (crates.io), in-memory storage.
# Installs Tansu only when missing (~20-35 min on 2 cores), starts it on a free port, runs the
# ignored tests of crates/cli/tests/tansu.rs (`expressway serve` processes: N in -> N results and
# logs, rebalance on join, SIGKILL, SIGTERM drain, dead letters, definitions topic) and stops the
# broker on exit. Extra arguments go to the test binary (e.g. a test name filter).
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
tansu_pid=$!
stop_broker() {
  if kill -0 "$tansu_pid" 2>/dev/null; then
    kill "$tansu_pid" 2>/dev/null || true
    wait "$tansu_pid" 2>/dev/null || true
  fi
}
trap stop_broker EXIT

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$tansu_pid" 2>/dev/null; then
    cat "$log" >&2
    echo "tansu exited before listening" >&2
    exit 1
  fi
  sleep 0.1
done
if ! grep -q dynostore "$log"; then
  cat "$log" >&2
  echo "this tansu was built without the dynostore feature (it would discard records);" \
    "reinstall: cargo install tansu --version $TANSU_VERSION --locked --features dynostore --force" >&2
  exit 1
fi

step "running the suite"
started=$SECONDS
EXPRESSWAY_IT_BROKERS="127.0.0.1:$port" \
  cargo test --locked -p expressway-cli --test tansu -- --ignored --test-threads=1 "$@"
step "suite passed in $((SECONDS - started)) s"
