#!/usr/bin/env bash
# The loadtest figures on Apache Kafka (deploy/kafka/kafka.sh), as in README / ARCHITECTURE.md:
# one `expressway serve` pod on a start topic of 4 partitions (the other topics 1), the engine bench
# machine (a) at log level ALL with execution data; per run, 50,000 start events as fast as possible
# with the broker's raw produce+consume ceiling for the same record size measured first (`--raw`),
# and the serve process's CPU time; then 50,000 at half the median maximum rate (latency); on the
# single node also the pod's RSS idle and with 10,000 executions held in a 60 s Wait.
# Release builds of expressway and loadtest are expected in $TARGET (default target/release).
#
#   cargo build --release -p expressway-cli -p expressway-loadtest
#   bash loadtest/kafka-figures.sh single 3     # 3 runs on one node
#   bash loadtest/kafka-figures.sh cluster 3    # 3 runs on 3 nodes (acks=all, replication 3)
#
# Prints one JSON line per loadtest run (prefixed with its label) and a summary; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

setup="${1:?single or cluster}"
runs="${2:-3}"
count="${COUNT:-50000}"
target="${TARGET:-target/release}"
kafka=deploy/kafka/kafka.sh
name="lt-$setup"
work="$(mktemp -d -t expressway-figures.XXXXXX)"
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
  fi
  bash "$kafka" stop "$name" || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

bash "$kafka" "start-$setup" "$name" >/dev/null
brokers="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "target/kafka/run/$name/env")"
for t in expressway.start:4 expressway.logs:1 expressway.results:1 expressway.dlq:1 \
  expressway.definitions:1 expressway.loadtest.raw:1; do
  bash "$kafka" topics "$name" --create --topic "${t%%:*}" --partitions "${t##*:}" >/dev/null
done

mkdir -p "$work/defs"
cp crates/engine/benches/fixtures/pipeline.asl.json "$work/defs/pipeline.asl.json"
echo '{"loggingConfiguration":{"level":"ALL","includeExecutionData":true}}' >"$work/defs/pipeline.config.json"
echo '{"StartAt":"Hold","States":{"Hold":{"Type":"Wait","Seconds":60,"Next":"Done"},"Done":{"Type":"Succeed"}}}' \
  >"$work/defs/hold.asl.json"
input="$(cat crates/engine/benches/fixtures/pipeline.input.json)"

serve() { # extra serve args...
  local port
  port="$(free_port)"
  metrics="http://127.0.0.1:$port/metrics"
  "$target/expressway" serve --brokers "$brokers" --definitions "$work/defs" \
    --metrics-listen "127.0.0.1:$port" "$@" >"$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  echo "serve never became ready" >&2
  exit 1
}
stop_serve() {
  kill -TERM "$serve_pid"
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$serve_pid/stat"; }
rss_kb() { awk "/^$1:/ {print \$2}" "/proc/$serve_pid/status"; }

echo "== Apache Kafka $(cat "target/kafka/run/$name/version"), $setup ($brokers), $runs runs of $count"
serve
echo "serve RSS idle: $(rss_kb VmRSS) kB"
rates=()
for r in $(seq 1 "$runs"); do
  before="$(cpu_ticks)"
  out="$("$target/loadtest" --brokers "$brokers" --machine pipeline --input "$input" --count "$count" --raw 2>"$work/lt.err")"
  after="$(cpu_ticks)"
  cpu="$(awk -v a="$before" -v b="$after" -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / t}')"
  echo "max-rate run $r: serve_cpu_s=$cpu $out"
  rates+=("$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["executions_per_second"])')")
done
median="$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
half="$(awk -v m="$median" 'BEGIN {printf "%d", m / 2}')"
out="$("$target/loadtest" --brokers "$brokers" --machine pipeline --input "$input" --count "$count" --rate "$half" 2>"$work/lt.err")"
echo "half-rate run ($half/s): $out"
stop_serve

if [ "$setup" = single ]; then
  serve --max-in-flight-per-partition 10000 --max-in-flight 10000
  "$target/loadtest" --brokers "$brokers" --machine hold --count 10000 --timeout 100 >"$work/hold.json" 2>"$work/lt.err" &
  hold_pid=$!
  for _ in $(seq 1 600); do
    inflight="$(curl -sf "$metrics" | awk '/^expressway_executions_in_flight / {print $2}')"
    [ "${inflight%.*}" = 10000 ] && break
    sleep 0.1
  done
  echo "serve with ${inflight:-?} executions in flight: VmRSS $(rss_kb VmRSS) kB"
  wait "$hold_pid"
  echo "hold run: serve VmHWM $(rss_kb VmHWM) kB $(cat "$work/hold.json")"
  stop_serve
fi
echo "== max rate (median of $runs): $median executions/s; runs: ${rates[*]}"
rm -rf "$work"
