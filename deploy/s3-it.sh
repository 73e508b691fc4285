#!/usr/bin/env bash
# The S3 resources (crates/tasks/src/s3.rs) against a real S3-compatible server: moto in server
# mode (PyPI), with signatures enforced. Creates a virtualenv with moto if missing
# ($EXPRESSWAY_S3_VENV, default ${TMPDIR:-/tmp}/expressway-venv-s3), starts moto on a free
# loopback port, creates an IAM user and access key (moto checks every later request's SigV4
# signature against it), creates the test bucket with boto3, runs the ignored tests of
# crates/tasks/tests/it/s3.rs and stops moto on exit. Extra arguments go to the test binary.
#
#   bash deploy/s3-it.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${EXPRESSWAY_S3_VENV:-${TMPDIR:-/tmp}/expressway-venv-s3}"
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import boto3" 2>/dev/null; then
  echo "== s3-it: creating $venv (moto[server])"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
echo "== s3-it: moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)')"

# Build first, so moto does not wait while the tests compile.
cargo test --locked -p expressway-tasks --test it --no-run

port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
# The first three requests (create user, its policy, its access key) need no signature; every
# request after them is authenticated and authorised as that user.
INITIAL_NO_AUTH_ACTION_COUNT=3 "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
cleanup() {
  local rc=$?
  kill "$moto" 2>/dev/null || true
  wait "$moto" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then tail -40 "$log" || true; fi
  rm -f "$log"
  exit "$rc"
}
trap cleanup EXIT
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('$endpoint/moto-api/')" 2>/dev/null; then break; fi
  sleep 0.2
done

read -r key secret < <(ENDPOINT="$endpoint" "$venv/bin/python" - <<'EOF'
import json, os, boto3
ep = os.environ["ENDPOINT"]
anon = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="expressway-it")
iam.put_user_policy(UserName="expressway-it", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="expressway-it")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3.create_bucket(Bucket="expressway-it")
print(k["AccessKeyId"], k["SecretAccessKey"])
EOF
)
export EXPRESSWAY_IT_S3_ENDPOINT="$endpoint"
export EXPRESSWAY_IT_S3_ACCESS_KEY_ID="$key"
export EXPRESSWAY_IT_S3_SECRET_ACCESS_KEY="$secret"
export EXPRESSWAY_IT_S3_BUCKET=expressway-it
echo "== s3-it: moto at $endpoint (signatures enforced), bucket expressway-it"
cargo test --locked -p expressway-tasks --test it s3:: -- --ignored --test-threads=2 "$@"
