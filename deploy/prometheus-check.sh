#!/usr/bin/env bash
# The dashboard and the alert rules against a real Prometheus: Debian's prometheus (installed
# when missing) scrapes `expressway dev` (and a second `expressway serve` pod that joins and
# leaves its group, for a rebalance) with the job and labels of deploy/prometheus/prometheus.yml
# and the rules of deploy/prometheus/alerts.yml, under a short scripted load; then every panel
# query of deploy/grafana/expressway.json and every rule is evaluated through the HTTP API
# (deploy/prometheus_check.py). Fails when a panel has no data, a query errors, a rule does not
# evaluate, or an alert the load should raise is not pending/firing. About two minutes.
# Everything it starts listens on loopback and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1; then
  echo "== prometheus-check: installing Debian's prometheus package"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a server where an init system exists; this check starts its own.
  $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
fi
echo "== prometheus-check: $(prometheus --version 2>&1 | head -1)"

BIN="${EXPRESSWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/expressway}"
if [ ! -x "$BIN" ]; then
  echo "== prometheus-check: building $BIN"
  cargo build --quiet --locked -p expressway-cli --bin expressway
fi

WORK="${CARGO_TARGET_DIR:-target}/prometheus-check"
rm -rf "$WORK"
mkdir -p "$WORK"
exec python3 deploy/prometheus_check.py --bin "$BIN" --work "$WORK"
