#!/usr/bin/env bash
# Apache Kafka (KRaft) from Maven Central on one machine, for the integration suite, the loadtest and CI.
# No distribution tarball: the broker's jars come from Maven (deploy/kafka/pom.xml, cached in ~/.m2),
# `kafka.tools.StorageTool format` prepares each node's storage and `kafka.Kafka server.properties`
# runs it, the way the distribution's scripts do. Everything lives under target/kafka/ (override with
# KAFKA_WORK); ports are free loopback ports picked at start.
#
#   deploy/kafka/kafka.sh fetch                 # jars into target/kafka/libs-VERSION (prints the version)
#   deploy/kafka/kafka.sh latest                # the newest 4.x release on Maven Central
#   deploy/kafka/kafka.sh start-single [NAME]   # one combined broker+controller node
#   deploy/kafka/kafka.sh start-cluster [NAME]  # 3 combined nodes, replication 3, min.insync.replicas 2
#   deploy/kafka/kafka.sh start-secure [NAME]   # one node with SSL, mutual-TLS and SASL_SSL/SCRAM-SHA-512
#   deploy/kafka/kafka.sh env NAME              # prints KAFKA_BOOTSTRAP=... (and the TLS/SCRAM settings)
#   deploy/kafka/kafka.sh topics NAME ARGS...   # kafka-topics (org.apache.kafka.tools.TopicCommand)
#   deploy/kafka/kafka.sh tool NAME CLASS ARGS  # any tool class from the same jars, e.g.
#                                               # org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
#   deploy/kafka/kafka.sh node-stop NAME N [-9] # stop (SIGTERM, or SIGKILL with -9) one node of a setup
#   deploy/kafka/kafka.sh node-start NAME N     # start it again on the same ports and data
#   deploy/kafka/kafka.sh logs NAME             # the tail of every node's server.log
#   deploy/kafka/kafka.sh stop [NAME]           # stop the nodes this script started (all setups)
#
# NAME defaults to the command's setup (single, cluster, secure). `stop` signals only the PIDs recorded
# in target/kafka/run/NAME/node-N/pid whose command line is that node's; data and logs stay until the
# next start of the same NAME. Heap and threads are sized for a 2-core machine (KAFKA_HEAP, default
# -Xmx768m for one node, -Xmx512m per node of the cluster).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${KAFKA_WORK:-$repo/target/kafka}"
version="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")}"
libs="$work/libs-$version"
run="$work/run"

say() { echo "kafka.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

mvn_() { mvn -B -q -Dstyle.color=never -f "$here/pom.xml" "$@"; }

cmd_fetch() {
  command -v java >/dev/null || die "java is not installed (OpenJDK 17 or newer)"
  command -v mvn >/dev/null || die "mvn is not installed (Maven 3.8 or newer)"
  if [ ! -f "$libs/.complete" ]; then
    say "fetching org.apache.kafka:kafka_2.13:$version and its dependencies from Maven Central"
    rm -rf "$libs"
    mvn_ -Dkafka.version="$version" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >&2
    [ -f "$libs/kafka_2.13-$version.jar" ] || die "kafka_2.13-$version.jar is missing from $libs"
    touch "$libs/.complete"
  fi
  echo "Apache Kafka $version ($(find "$libs" -name '*.jar' | wc -l) jars in $libs)"
}

cmd_latest() {
  local out
  out="$(mktemp)"
  mvn_ -Dkafka.version='[4.0.0,4.999]' dependency:list -DincludeArtifactIds=kafka_2.13 \
    -DoutputFile="$out" >&2
  sed -n 's/.*org.apache.kafka:kafka_2.13:jar:\([^:]*\):.*/\1/p' "$out"
  rm -f "$out"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

java_() { # HEAP CLASS ARGS... (foreground, tool logging to stderr at WARN)
  local heap="$1"
  shift
  java "$heap" -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2-tools.properties" "$@"
}

# Writes node N's server.properties. Globals: dir, setup, controllers, heap.
write_node() { # N BROKER_PORT CONTROLLER_PORT REPLICATION MIN_ISR
  local n="$1" bport="$2" cport="$3" rf="$4" isr="$5" nd="$dir/node-$1"
  mkdir -p "$nd"
  cat >"$nd/server.properties" <<EOF
# Written by deploy/kafka/kafka.sh ($setup, node $n). KRaft, combined broker + controller.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$controllers
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL
log.dirs=$nd/data
# Two cores: few threads.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# Replication (1 on a single node; 3 / min.insync 2 on the cluster), internal topics too.
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Tests: a group forms at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
log.retention.hours=2
EOF
  cat >"$nd/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $nd/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = warn
EOF
  echo "$heap" >"$nd/heap"
  echo "$bport" >"$nd/port"
}

format_node() { # N [EXTRA FORMAT ARGS...]
  local nd="$dir/node-$1"
  shift
  java_ -Xmx256m kafka.tools.StorageTool format -t "$(cat "$dir/cluster-id")" \
    -c "$nd/server.properties" --ignore-formatted "$@" >"$nd/format.log" 2>&1 ||
    {
      cat "$nd/format.log" >&2
      die "formatting $nd failed"
    }
}

node_pid() { # DIR N: the recorded PID if that process is still this node
  local nd="$1/node-$2" pid
  [ -f "$nd/pid" ] || return 1
  pid="$(cat "$nd/pid")"
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$nd/server.properties" &&
    echo "$pid"
}

start_node() { # DIR N (returns at once; wait_started waits)
  local nd="$1/node-$2"
  # shellcheck disable=SC2046
  nohup java $(cat "$nd/heap") -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$nd/log4j2.properties" -cp "$libs/*" \
    kafka.Kafka "$nd/server.properties" >"$nd/stdout.log" 2>&1 </dev/null &
  echo $! >"$nd/pid"
}

wait_started() { # DIR N...
  local d="$1" n pid
  shift
  for n in "$@"; do
    local nd="$d/node-$n"
    for _ in $(seq 1 600); do
      if grep -q "Kafka Server started" "$nd/server.log" 2>/dev/null; then continue 2; fi
      pid="$(node_pid "$d" "$n")" || {
        tail -n 40 "$nd/stdout.log" "$nd/server.log" >&2 2>/dev/null || true
        die "node $n of $(basename "$d") exited before it started (logs in $nd)"
      }
      sleep 0.2
    done
    die "node $n of $(basename "$d") did not start within 120 s (logs in $nd)"
  done
}

new_setup() { # NAME
  setup="$1"
  dir="$run/$setup"
  if [ -d "$dir" ]; then cmd_stop "$setup"; fi
  rm -rf "$dir"
  mkdir -p "$dir"
  cmd_fetch >&2
  java_ -Xmx128m kafka.tools.StorageTool random-uuid >"$dir/cluster-id"
  echo "$version" >"$dir/version"
}

cmd_start_single() {
  new_setup "${1:-single}"
  heap="${KAFKA_HEAP:--Xms256m -Xmx768m}"
  local b c
  b="$(free_port)" c="$(free_port)"
  controllers="1@127.0.0.1:$c"
  write_node 1 "$b" "$c" 1 1
  format_node 1
  start_node "$dir" 1
  wait_started "$dir" 1
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$b" >"$dir/env"
  say "Apache Kafka $version: $setup on 127.0.0.1:$b (logs in $dir/node-1/server.log)"
  cat "$dir/env"
}

cmd_start_cluster() {
  new_setup "${1:-cluster}"
  heap="${KAFKA_HEAP:--Xms192m -Xmx512m}"
  local b=() c=() n boot=""
  for n in 1 2 3; do
    b[n]="$(free_port)"
    c[n]="$(free_port)"
  done
  controllers="1@127.0.0.1:${c[1]},2@127.0.0.1:${c[2]},3@127.0.0.1:${c[3]}"
  for n in 1 2 3; do
    write_node "$n" "${b[n]}" "${c[n]}" 3 2
    format_node "$n"
    boot="${boot:+$boot,}127.0.0.1:${b[n]}"
  done
  for n in 1 2 3; do start_node "$dir" "$n"; done
  wait_started "$dir" 1 2 3
  echo "KAFKA_BOOTSTRAP=$boot" >"$dir/env"
  say "Apache Kafka $version: $setup of 3 nodes on $boot (logs in $dir/node-N/server.log)"
  cat "$dir/env"
}

# A throw-away CA, a broker certificate for 127.0.0.1/localhost and a client certificate (for mutual
# TLS), all PEM (Kafka reads PEM key stores and trust stores directly).
make_certs() { # DIR
  local t="$1"
  mkdir -p "$t"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=expressway-test-ca" \
    -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
  local who
  for who in broker client; do
    local cn="$who"
    [ "$who" = broker ] && cn=localhost
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$t/$who.key.rsa" -out "$t/$who.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$t/$who.ext"
    openssl x509 -req -in "$t/$who.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 2 \
      -extfile "$t/$who.ext" -out "$t/$who.pem" 2>/dev/null
    # PKCS#8, as Kafka's PEM key store wants it.
    openssl pkcs8 -topk8 -nocrypt -in "$t/$who.key.rsa" -out "$t/$who.key"
    cat "$t/$who.key" "$t/$who.pem" >"$t/$who.keystore.pem"
  done
}

cmd_start_secure() {
  new_setup "${1:-secure}"
  heap="${KAFKA_HEAP:--Xms256m -Xmx768m}"
  command -v openssl >/dev/null || die "openssl is needed for the certificates"
  local b c ssl mtls sasl tls="$dir/tls" user=expressway pass
  b="$(free_port)" c="$(free_port)" ssl="$(free_port)" mtls="$(free_port)" sasl="$(free_port)"
  pass="$(openssl rand -hex 12)"
  make_certs "$tls"
  controllers="1@127.0.0.1:$c"
  write_node 1 "$b" "$c" 1 1
  local nd="$dir/node-1"
  sed -i "s|^listeners=.*|listeners=PLAINTEXT://127.0.0.1:$b,CONTROLLER://127.0.0.1:$c,SSL://127.0.0.1:$ssl,MTLS://127.0.0.1:$mtls,SASL_SSL://127.0.0.1:$sasl|;
          s|^advertised.listeners=.*|advertised.listeners=PLAINTEXT://127.0.0.1:$b,SSL://127.0.0.1:$ssl,MTLS://127.0.0.1:$mtls,SASL_SSL://127.0.0.1:$sasl|" \
    "$nd/server.properties"
  cat >>"$nd/server.properties" <<EOF
# TLS: one key store (PEM: PKCS#8 key + certificate) for every TLS listener.
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
ssl.client.auth=none
ssl.endpoint.identification.algorithm=
# MTLS: the same certificates, and a client certificate signed by the CA is required.
listener.name.mtls.ssl.client.auth=required
# SASL_SSL: SCRAM-SHA-512 users (created at format time with --add-scram).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  format_node 1 --add-scram "SCRAM-SHA-512=[name=$user,password=$pass]"
  start_node "$dir" 1
  wait_started "$dir" 1
  cat >"$dir/env" <<EOF
KAFKA_BOOTSTRAP=127.0.0.1:$b
KAFKA_SSL_BOOTSTRAP=127.0.0.1:$ssl
KAFKA_MTLS_BOOTSTRAP=127.0.0.1:$mtls
KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$sasl
KAFKA_CA=$tls/ca.pem
KAFKA_CLIENT_CERT=$tls/client.pem
KAFKA_CLIENT_KEY=$tls/client.key
KAFKA_SCRAM_USER=$user
KAFKA_SCRAM_PASSWORD=$pass
EOF
  say "Apache Kafka $version: $setup, SSL 127.0.0.1:$ssl, mutual TLS 127.0.0.1:$mtls, SASL_SSL/SCRAM-SHA-512 127.0.0.1:$sasl (logs in $nd/server.log)"
  cat "$dir/env"
}

setup_dir() { # NAME
  local d="$run/$1"
  [ -f "$d/env" ] || die "no running setup '$1' (start it first: start-single / start-cluster / start-secure)"
  echo "$d"
}

bootstrap_of() { sed -n 's/^KAFKA_BOOTSTRAP=//p' "$(setup_dir "$1")/env"; }

cmd_env() { cat "$(setup_dir "${1:?setup name}")/env"; }

cmd_topics() {
  local name="${1:?setup name}"
  shift
  java_ -Xmx256m org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_of "$name")" "$@"
}

cmd_tool() {
  local name="${1:?setup name}" class="${2:?tool class}"
  shift 2
  java_ -Xmx256m "$class" --bootstrap-server "$(bootstrap_of "$name")" "$@"
}

signal_nodes() { # DIR SIGNAL N...: signals the nodes' recorded PIDs, then waits for them to exit.
  # All at once: a KRaft node stopped after the others lost the controller quorum would wait for it.
  local d="$1" sig="$2" n pid pids=()
  shift 2
  for n in "$@"; do
    if pid="$(node_pid "$d" "$n")"; then
      kill "-$sig" "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || continue 2
      sleep 0.1
    done
    say "PID $pid of $(basename "$d") did not stop on SIG$sig within 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cmd_node_stop() {
  local d
  d="$(setup_dir "${1:?setup name}")"
  local sig=TERM
  [ "${3:-}" = "-9" ] && sig=KILL
  signal_nodes "$d" "$sig" "${2:?node number}"
}

cmd_node_start() {
  local d
  d="$(setup_dir "${1:?setup name}")"
  local n="${2:?node number}"
  if node_pid "$d" "$n" >/dev/null; then die "node $n of $1 is running"; fi
  # The new run's "started" line must not be confused with the previous one.
  [ -f "$d/node-$n/server.log" ] && mv "$d/node-$n/server.log" "$d/node-$n/server.log.$(date +%s)"
  start_node "$d" "$n"
  wait_started "$d" "$n"
}

cmd_logs() {
  local d nd
  d="$run/${1:?setup name}"
  for nd in "$d"/node-*; do
    [ -d "$nd" ] || continue
    echo "---- $nd/server.log (last ${KAFKA_LOG_LINES:-60} lines)"
    tail -n "${KAFKA_LOG_LINES:-60}" "$nd/server.log" 2>/dev/null || true
  done
}

cmd_stop() {
  local names=("$@") d nd
  if [ ${#names[@]} -eq 0 ]; then
    for d in "$run"/*/; do [ -d "$d" ] && names+=("$(basename "$d")"); done
  fi
  for name in "${names[@]}"; do
    d="$run/$name"
    local nodes=()
    for nd in "$d"/node-*; do
      [ -d "$nd" ] && nodes+=("${nd##*-}")
    done
    if [ ${#nodes[@]} -gt 0 ]; then signal_nodes "$d" TERM "${nodes[@]}"; fi
    rm -f "$d/env"
  done
}

command="${1:-}"
shift || true
case "$command" in
fetch) cmd_fetch ;;
latest) cmd_latest ;;
start-single) cmd_start_single "$@" ;;
start-cluster) cmd_start_cluster "$@" ;;
start-secure) cmd_start_secure "$@" ;;
env) cmd_env "$@" ;;
topics) cmd_topics "$@" ;;
tool) cmd_tool "$@" ;;
node-stop) cmd_node_stop "$@" ;;
node-start) cmd_node_start "$@" ;;
logs) cmd_logs "$@" ;;
stop) cmd_stop "$@" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
