#!/usr/bin/env bash
# Browser test of the console (issue #18), in Debian's chromium driven by playwright-core:
#   1. installs chromium (apt) if /usr/bin/chromium is missing, and the npm packages of
#      package-lock.json (`npm ci`) if node_modules does not match it,
#   2. builds the `expressway` binary (debug),
#   3. starts `expressway dev` on free ports with examples/hello plus this directory's
#      definitions, and an `expressway gateway --console` (HTTP basic) on the same broker,
#   4. runs console.test.mjs; screenshots go to target/console-screenshots/ (CI artifacts).
# Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
shots="$target/console-screenshots"

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (Debian)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null || true

if ! (cd "$here" && [ -d node_modules/playwright-core ] && npm ls --silent >/dev/null 2>&1); then
  echo "== npm ci (playwright-core; no browser download)"
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

echo "== building expressway"
cargo build --quiet --locked -p expressway-cli
bin="$target/debug/expressway"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # file pattern
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" >&2 || true
  return 1
}

mkdir -p "$work/defs"
cp examples/hello.asl.json examples/hello.config.json "$here"/definitions/*.json "$work/defs/"

echo "== starting expressway dev"
RUST_LOG="${RUST_LOG:-info}" "$bin" dev --definitions "$work/defs" --metrics-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 \
  >"$work/dev.out" 2>"$work/dev.err" &
pids+=($!)
wait_for "$work/dev.out" "Ctrl-C stops."
brokers="$(awk '/bootstrap:/ {print $2}' "$work/dev.out")"
console_url="$(awk '/console:/ {print $2}' "$work/dev.out")"
grep -q "console reader: reading executions" "$work/dev.err" || wait_for "$work/dev.err" "console reader: reading executions"

echo "== starting expressway gateway --console (HTTP basic) on $brokers"
EXPRESSWAY_ACCESS_KEY_ID="AKIDCONSOLETEST" EXPRESSWAY_SECRET_ACCESS_KEY="console-test-secret" RUST_LOG="${RUST_LOG:-info}" \
  "$bin" gateway --brokers "$brokers" --definitions "$work/defs" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --console \
  >"$work/gw.out" 2>"$work/gw.err" &
pids+=($!)
wait_for "$work/gw.out" "console:"
secure_url="$(awk '/console:/ {print $2}' "$work/gw.out")"
echo "dev console $console_url, signed gateway console $secure_url"

echo "== browser test"
rc=0
CONSOLE_URL="$console_url" SECURE_CONSOLE_URL="$secure_url" SECURE_USER="AKIDCONSOLETEST" SECURE_PASSWORD="console-test-secret" \
  EXPRESSWAY_BIN="$bin" BROKERS="$brokers" SCREENSHOTS="$shots" \
  node "$here/console.test.mjs" || rc=$?
if [ "$rc" != 0 ]; then
  echo "--- dev stderr (tail)" >&2; tail -n 40 "$work/dev.err" >&2 || true
  echo "--- gateway stderr (tail)" >&2; tail -n 20 "$work/gw.err" >&2 || true
fi
echo "screenshots: $shots"
exit "$rc"
