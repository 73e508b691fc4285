#!/usr/bin/env bash
# Exactly-once against at-least-once on Apache Kafka (deploy/kafka/kafka.sh), same machine, same
# workload, alternating modes: one `expressway serve` pod on a start topic of 4 partitions, the
# engine bench machine at log level ALL; per run and mode, COUNT start events as fast as possible,
# then COUNT at RATE/s (latency). Every mode gets fresh topics and group. Results are read with
# --read-committed in both modes (records of a non-transactional producer are all committed).
# Release builds of expressway and loadtest are expected in $TARGET (default target/release).
#
#   cargo build --release -p expressway-cli -p expressway-loadtest
#   bash loadtest/eos-figures.sh 3            # 3 runs per mode on a fresh single node
#   KAFKA_NAME=single bash loadtest/eos-figures.sh 1  # on a running kafka.sh setup (left running)
#
# Prints one JSON line per loadtest run (prefixed with its mode and kind) and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-3}"
count="${COUNT:-20000}"
rate="${RATE:-1000}"
target="${TARGET:-target/release}"
kafka=deploy/kafka/kafka.sh
name="${KAFKA_NAME:-lt-eos}"
work="$(mktemp -d -t expressway-eos-figures.XXXXXX)"
serve_pid=""
started_broker=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
  fi
  [ -n "$started_broker" ] && bash "$kafka" stop "$name" || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [ -z "${KAFKA_NAME:-}" ]; then
  bash "$kafka" start-single "$name" >/dev/null
  started_broker=1
fi
brokers="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "target/kafka/run/$name/env")"
mkdir -p "$work/defs"
cp crates/engine/benches/fixtures/pipeline.asl.json "$work/defs/pipeline.asl.json"
echo '{"loggingConfiguration":{"level":"ALL","includeExecutionData":true}}' >"$work/defs/pipeline.config.json"
input="$(cat crates/engine/benches/fixtures/pipeline.input.json)"

create_topics() { # prefix
  for t in start:4 logs:1 results:1 dlq:1 definitions:1; do
    bash "$kafka" topics "$name" --create --topic "$1.${t%%:*}" --partitions "${t##*:}" >/dev/null
  done
}

serve() { # prefix guarantee
  local port
  port="$(free_port)"
  "$target/expressway" serve --brokers "$brokers" --definitions "$work/defs" --group "$1-group" \
    --start-topic "$1.start" --logs-topic "$1.logs" --results-topic "$1.results" --dlq-topic "$1.dlq" \
    --definitions-topic "$1.definitions" --guarantee "$2" \
    --metrics-listen "127.0.0.1:$port" >"$work/serve-$1.log" 2>&1 &
  serve_pid=$!
  metrics="http://127.0.0.1:$port/metrics"
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/serve-$1.log" >&2
  echo "serve never became ready" >&2
  exit 1
}
stop_serve() {
  kill -TERM "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}
lt() { # prefix extra...
  local p="$1"
  shift
  "$target/loadtest" --brokers "$brokers" --machine pipeline --input "$input" --count "$count" \
    --start-topic "$p.start" --results-topic "$p.results" --read-committed "$@" 2>>"$work/lt.err"
}

echo "== Apache Kafka $(cat "target/kafka/run/$name/version" 2>/dev/null || echo '?') single node ($brokers), $runs runs of $count per mode"
for r in $(seq 1 "$runs"); do
  for mode in at-least-once exactly-once; do
    prefix="eosfig$$-$r-$mode"
    create_topics "$prefix"
    serve "$prefix" "$mode"
    echo "$mode max-rate run $r: $(lt "$prefix")"
    echo "$mode rate-$rate run $r: $(lt "$prefix" --rate "$rate")"
    if [ "$mode" = exactly-once ]; then
      curl -sf "$metrics" | grep -E '^expressway_transactions_total|^expressway_transaction_(executions|commit_seconds)_(sum|count)' | tr '\n' ' '
      echo
    fi
    stop_serve
  done
done
