#!/usr/bin/env bash
# Checks of what operators run: alert rules, Prometheus config, Grafana dashboard, Helm values
# schema, YAML style, docker-compose, and that every metric the dashboard/alerts use is exported.
# Idempotent; installs what it needs (Debian's prometheus for promtool; a venv with
# check-jsonschema and yamllint under target/ops-venv) and is fast when already installed.
# Helm is not available here: chart templates are NOT rendered (see the end of this script).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== deploy: $*"; }

# --- tools ------------------------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  step "installing Debian's prometheus package (promtool)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a server where an init system exists; promtool is all we need.
  $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null || fail "promtool is not installed"

VENV="${EXPRESSWAY_OPS_VENV:-target/ops-venv}"
if [ ! -x "$VENV/bin/check-jsonschema" ] || [ ! -x "$VENV/bin/yamllint" ]; then
  step "creating $VENV (check-jsonschema, yamllint)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check check-jsonschema yamllint
fi
PY="$VENV/bin/python"
CJS="$VENV/bin/check-jsonschema"
WORK=target/ops-check
mkdir -p "$WORK"

# --- Prometheus -------------------------------------------------------------------------------
step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

step "promtool check config deploy/prometheus/prometheus.yml (the compose Prometheus)"
promtool check config deploy/prometheus/prometheus.yml

# --- YAML style -------------------------------------------------------------------------------
step "yamllint (chart values, Chart.yaml, deploy/)"
"$VENV/bin/yamllint" --strict -c deploy/.yamllint \
  helm/expressway/Chart.yaml helm/expressway/values.yaml helm/expressway/ci deploy

# --- docker-compose ---------------------------------------------------------------------------
step "check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml"
"$CJS" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

# --- Helm values schema -----------------------------------------------------------------------
SCHEMA=helm/expressway/values.schema.json
step "values.schema.json is valid JSON Schema"
"$CJS" --check-metaschema "$SCHEMA"

# Helm validates the schema against the merged values (defaults + -f files): so do we.
ci_files=(helm/expressway/ci/*-values.yaml)
[ "${#ci_files[@]}" -ge 5 ] || fail "expected at least 5 helm/expressway/ci/*-values.yaml"
for required in default hpa keda gateway tls-sasl; do
  [ -f "helm/expressway/ci/$required-values.yaml" ] || fail "missing helm/expressway/ci/$required-values.yaml"
done
step "check-jsonschema --schemafile $SCHEMA helm/expressway/values.yaml"
"$CJS" --schemafile "$SCHEMA" helm/expressway/values.yaml
for f in "${ci_files[@]}"; do
  merged="$WORK/$(basename "$f" .yaml).json"
  "$PY" deploy/merge_values.py helm/expressway/values.yaml "$f" >"$merged"
  step "check-jsonschema --schemafile $SCHEMA (values.yaml + $f)"
  "$CJS" --schemafile "$SCHEMA" "$merged"
done

# Negative cases: each deploy/tests/invalid-*-values.yaml must be REJECTED.
for f in deploy/tests/invalid-*-values.yaml; do
  merged="$WORK/$(basename "$f" .yaml).json"
  "$PY" deploy/merge_values.py helm/expressway/values.yaml "$f" >"$merged"
  step "schema rejects $f"
  if out=$("$CJS" --schemafile "$SCHEMA" "$merged" 2>&1); then
    echo "$out"
    fail "$f was accepted by $SCHEMA"
  fi
  expect=$(sed -n 's/^# expect: //p' "$f")
  if [ -n "$expect" ] && ! grep -qF -- "$expect" <<<"$out"; then
    echo "$out"
    fail "$f was rejected, but not for the expected reason ($expect)"
  fi
  echo "rejected as expected ($expect)"
done

# --- Grafana dashboard and metric names -------------------------------------------------------
step "python3 -m json.tool deploy/grafana/expressway.json"
python3 -m json.tool deploy/grafana/expressway.json >/dev/null
grep -q '"${DS_PROMETHEUS}"' deploy/grafana/expressway.json || fail "dashboard must use the \${DS_PROMETHEUS} input"

step "metric names in the dashboard and alert rules are in deploy/metrics.txt"
"$PY" deploy/check_metric_names.py deploy/metrics.txt deploy/grafana/expressway.json deploy/prometheus/alerts.yml

# crates/executor/tests/dashboard_metrics.rs writes a real scrape here (and fails if a name in
# deploy/metrics.txt is missing from it).
if [ -s target/metrics-sample.txt ]; then
  step "promtool check metrics < target/metrics-sample.txt"
  promtool check metrics <target/metrics-sample.txt
  missing=0
  while read -r name; do
    [ -z "$name" ] && continue
    grep -qE "^${name}(\{| )" target/metrics-sample.txt || { echo "not in the scrape: $name" >&2; missing=1; }
  done <deploy/metrics.txt
  [ "$missing" = 0 ] || fail "target/metrics-sample.txt lacks names from deploy/metrics.txt"
else
  echo "(no target/metrics-sample.txt: run cargo test -p expressway-executor --test dashboard_metrics first)"
fi

# --- Helm templates ---------------------------------------------------------------------------
if command -v helm >/dev/null 2>&1; then
  step "helm lint / helm template with every ci values file"
  helm lint helm/expressway
  for f in "${ci_files[@]}"; do
    helm template ci helm/expressway -f "$f" >"$WORK/$(basename "$f" .yaml).rendered.yaml"
  done
else
  echo "== deploy: helm is not installed: chart templates were NOT rendered or validated"
fi

echo "== deploy: all checks passed"
