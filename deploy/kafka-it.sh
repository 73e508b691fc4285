#!/usr/bin/env bash
# Integration suite on Apache Kafka 4.x (KRaft, jars from Maven Central through deploy/kafka/kafka.sh):
# starts a single node, a node with SSL / mutual-TLS / SASL_SSL-SCRAM listeners and a 3-node cluster
# on free loopback ports, runs the ignored tests of crates/cli/tests/broker.rs against them
# (`expressway serve` processes: N in -> N results and logs, rebalance on join, rebalance figures for
# join / SIGTERM leave / SIGKILL, SIGTERM drain, dead letters, definitions topic, TLS, mutual TLS,
# SCRAM, losing one node of three, exactly-once: a SIGKILLed pod, a pod joining, a SIGSTOP zombie,
# callbacks: a pod SIGKILLed while 20 executions wait, whose callbacks complete them on its replacement,
# a Distributed Map reading its items from a topic between two timestamps)
# and stops every node it started on exit. The brokers' logs stay
# under target/kafka/run/it-*/ and their tails are printed when the suite fails. Extra arguments go to
# the test binary (e.g. a test name filter).
#
#   bash deploy/kafka-it.sh                     # what .ci/run does
#   bash deploy/kafka-it.sh node_loss           # one test
set -euo pipefail
cd "$(dirname "$0")/.."

kafka=deploy/kafka/kafka.sh
step() { echo "== kafka-it: $*"; }
setups=(it-single it-secure it-cluster)
stop_all() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for s in "${setups[@]}"; do KAFKA_LOG_LINES=80 bash "$kafka" logs "$s" || true; done
  fi
  bash "$kafka" stop "${setups[@]}" || true
  exit "$rc"
}
trap stop_all EXIT

step "$(bash "$kafka" fetch)"
# Build first, so the brokers do not wait (and compete for the two cores) while the suite compiles.
cargo test --locked -p expressway-cli --test broker --no-run

step "starting a single node, the secure node and a 3-node cluster"
get() { sed -n "s/^$2=//p" "target/kafka/run/$1/env"; }
starts=()
for s in "${setups[@]}"; do
  bash "$kafka" "start-${s#it-}" "$s" >/dev/null &
  starts+=("$!")
done
for pid in "${starts[@]}"; do wait "$pid"; done
export EXPRESSWAY_IT_BROKERS="$(get it-single KAFKA_BOOTSTRAP)"
export EXPRESSWAY_IT_SSL_BROKERS="$(get it-secure KAFKA_SSL_BOOTSTRAP)"
export EXPRESSWAY_IT_MTLS_BROKERS="$(get it-secure KAFKA_MTLS_BOOTSTRAP)"
export EXPRESSWAY_IT_SASL_SSL_BROKERS="$(get it-secure KAFKA_SASL_SSL_BOOTSTRAP)"
export EXPRESSWAY_IT_CA="$(get it-secure KAFKA_CA)"
export EXPRESSWAY_IT_CLIENT_CERT="$(get it-secure KAFKA_CLIENT_CERT)"
export EXPRESSWAY_IT_CLIENT_KEY="$(get it-secure KAFKA_CLIENT_KEY)"
export EXPRESSWAY_IT_SCRAM_USER="$(get it-secure KAFKA_SCRAM_USER)"
export EXPRESSWAY_IT_SCRAM_PASSWORD="$(get it-secure KAFKA_SCRAM_PASSWORD)"
export EXPRESSWAY_IT_CLUSTER_BROKERS="$(get it-cluster KAFKA_BOOTSTRAP)"
export EXPRESSWAY_IT_CLUSTER_NAME=it-cluster
step "single $EXPRESSWAY_IT_BROKERS; SSL $EXPRESSWAY_IT_SSL_BROKERS, mTLS $EXPRESSWAY_IT_MTLS_BROKERS, SASL_SSL $EXPRESSWAY_IT_SASL_SSL_BROKERS; cluster $EXPRESSWAY_IT_CLUSTER_BROKERS"

step "running the suite"
started=$SECONDS
# --nocapture: the rebalance figures and the node-loss summary go to the log.
cargo test --locked -p expressway-cli --test broker -- --ignored --test-threads=1 --nocapture "$@"
step "suite passed in $((SECONDS - started)) s"
