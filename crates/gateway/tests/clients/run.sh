#!/usr/bin/env bash
# Drives the gateway with the real PyPI clients (boto3, AWS CLI):
#   1. creates a virtualenv with boto3 + awscli if missing ($EXPRESSWAY_VENV, default
#      ${TMPDIR:-/tmp}/expressway-venv-gw),
#   2. builds the `expressway` binary,
#   3. starts `expressway dev` (embedded broker + executor + unsigned gateway) and a second,
#      SigV4-checking `expressway gateway` on the same broker,
#   4. runs test_clients.py; exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
cd "$root"

venv="${EXPRESSWAY_VENV:-${TMPDIR:-/tmp}/expressway-venv-gw}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import boto3" 2>/dev/null || [ ! -x "$venv/bin/aws" ]; then
  echo "== creating $venv (boto3, awscli)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check boto3 awscli
fi
"$venv/bin/python" -c "import boto3, botocore; print('boto3', boto3.__version__, 'botocore', botocore.__version__)"

echo "== building expressway"
cargo build --quiet --locked -p expressway-cli
target="${CARGO_TARGET_DIR:-$root/target}"
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

# dev's pod and both gateways share the task token key (SendTask* in test_clients.py).
export EXPRESSWAY_TASK_TOKEN_KEY="clients-test-task-token-key-0123456789"
echo "== starting expressway dev"
RUST_LOG="${RUST_LOG:-warn}" "$bin" dev --definitions examples --metrics-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 \
  >"$work/dev.out" 2>"$work/dev.err" &
pids+=($!)
wait_for "$work/dev.out" "gateway:"
brokers="$(awk '/bootstrap:/ {print $2}' "$work/dev.out")"
dev_url="$(awk '/gateway:/ {print $2}' "$work/dev.out")"

echo "== starting expressway gateway (SigV4) on $brokers"
access_key="AKIDEXPRESSWAYTEST"
secret_key="expressway-test-secret"
EXPRESSWAY_ACCESS_KEY_ID="$access_key" EXPRESSWAY_SECRET_ACCESS_KEY="$secret_key" RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" gateway --brokers "$brokers" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  >"$work/gw.out" 2>"$work/gw.err" &
pids+=($!)
wait_for "$work/gw.out" "expressway gateway:"
signed_port="$(sed -n 's/^expressway gateway: http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/gw.out")"
signed_url="http://localhost:$signed_port"
echo "dev gateway $dev_url, signed gateway $signed_url"

echo "== starting expressway serve + gateway --definitions DIR (separate processes, own start topic and group)"
mkdir -p "$work/files"
cat >"$work/files/files-hello.asl.json" <<'JSON'
{"StartAt":"Greet","States":{"Greet":{"Type":"Pass","Parameters":{"greeting.$":"States.Format('Hello, {}!', $.name)"},"End":true}}}
JSON
# The first start event creates the topic (the mock cluster creates topics on produce), so the
# consumer finds it when it subscribes.
"$bin" start --brokers "$brokers" --topic files-it.start files-hello --input '{"name":"warm-up"}' >/dev/null
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --brokers "$brokers" --definitions "$work/files" --group files-it \
  --start-topic files-it.start --metrics-listen 127.0.0.1:0 --drain-timeout 5s \
  --kafka session.timeout.ms=6000 --kafka heartbeat.interval.ms=500 \
  >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
EXPRESSWAY_ACCESS_KEY_ID="$access_key" EXPRESSWAY_SECRET_ACCESS_KEY="$secret_key" RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" gateway --brokers "$brokers" --definitions "$work/files" --start-topic files-it.start \
  --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 >"$work/fgw.out" 2>"$work/fgw.err" &
pids+=($!)
wait_for "$work/fgw.out" "expressway gateway:"
files_port="$(sed -n 's/^expressway gateway: http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/fgw.out")"

status=0
FILES_URL="http://localhost:$files_port" DEV_URL="$dev_url" SIGNED_URL="$signed_url" BROKERS="$brokers" \
  EXPRESSWAY_BIN="$bin" AWS_CLI="$venv/bin/aws" ACCESS_KEY="$access_key" SECRET_KEY="$secret_key" \
  AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" AWS_DEFAULT_REGION=us-east-1 \
  PYTHONPATH="$here" "$venv/bin/python" "$here/test_files.py" || status=$?
[ "$status" -eq 0 ] && DEV_URL="$dev_url" SIGNED_URL="$signed_url" BROKERS="$brokers" EXPRESSWAY_BIN="$bin" AWS_CLI="$venv/bin/aws" \
  ACCESS_KEY="$access_key" SECRET_KEY="$secret_key" \
  AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key" AWS_DEFAULT_REGION=us-east-1 \
  "$venv/bin/python" "$here/test_clients.py" || status=$?
if [ "$status" -eq 0 ]; then
  echo "== the README's AWS CLI commands (Step Functions API section), against $dev_url"
  "$venv/bin/python" - "$root/README.md" >"$work/readme.sh" <<'PY'
import sys
text = open(sys.argv[1]).read()
section = text[text.index("## Step Functions API"):]
print(section.split("```sh\n", 1)[1].split("```", 1)[0])
PY
  sed -i "s|^EP=http://localhost:8083$|EP=$dev_url|" "$work/readme.sh"
  (export PATH="$venv/bin:$PATH"; set -e; . "$work/readme.sh") >"$work/readme.out" 2>&1 || {
    status=$?; echo "README commands failed:" >&2; tail -n 30 "$work/readme.out" >&2; }
  [ "$status" -eq 0 ] && echo "README commands: ok ($(grep -c '"status": "SUCCEEDED"' "$work/readme.out") SUCCEEDED responses)"
fi
if [ "$status" -ne 0 ]; then
  echo "== dev stderr (tail)"; tail -n 40 "$work/dev.err" >&2 || true
  echo "== gateway stderr (tail)"; tail -n 40 "$work/gw.err" >&2 || true
  echo "== files serve / gateway stderr (tail)"; tail -n 20 "$work/serve.err" "$work/fgw.err" >&2 || true
fi
exit "$status"
