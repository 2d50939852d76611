#!/usr/bin/env bash
# Run a single-node Apache Kafka broker (KRaft) in the foreground, for use by hand. Ctrl-C stops it.
#
# Usage: run.sh [HOME]
#   HOME defaults to $STREAMTUNE_HOME or .streamtune; data, configs and the pid live in HOME/kafka and the
#   log in HOME/logs/kafka.log, as with streamtune.dev.LocalKafka, which reuses a broker started here.
#   Port: $STREAMTUNE_KAFKA_PORT (default 19092; the controller takes the next one).
#   Heap: $STREAMTUNE_KAFKA_HEAP (default 512m). Version: $STREAMTUNE_KAFKA_VERSION (default 4.1.1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${1:-${STREAMTUNE_HOME:-.streamtune}}"
mkdir -p "$home"
home="$(cd "$home" && pwd)"
port="${STREAMTUNE_KAFKA_PORT:-19092}"
cport=$((port + 1))
heap="${STREAMTUNE_KAFKA_HEAP:-512m}"
kdir="$home/kafka"
data="$kdir/data"
logdir="$home/logs"

libs="$("$here/fetch.sh")"
mkdir -p "$kdir" "$logdir"

# Keep these two files in step with streamtune/dev/kafka.py.
cat >"$kdir/server.properties" <<PROPS
# Written by streamtune on each start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${data}
num.partitions=1
default.replication.factor=1
offsets.topic.num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS

cat >"$kdir/log4j2.properties" <<'LOG4J'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.q0.name = kafka.request.logger
logger.q0.level = warn
logger.q1.name = org.apache.kafka.clients
logger.q1.level = warn
logger.q2.name = state.change.logger
logger.q2.level = warn
logger.q3.name = kafka.log.LogCleaner
logger.q3.level = warn
logger.q4.name = org.apache.kafka.common.config.AbstractConfig
logger.q4.level = warn
LOG4J

jvm=(-Dlog4j2.configurationFile="$kdir/log4j2.properties" -Djava.awt.headless=true -cp "$libs/*")
if [[ ! -f "$data/meta.properties" ]]; then
  cluster_id="$(java "${jvm[@]}" kafka.tools.StorageTool random-uuid)"
  java "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$kdir/server.properties"
fi

echo "run.sh: Kafka at 127.0.0.1:$port (log: $logdir/kafka.log); Ctrl-C to stop" >&2
# exec keeps this pid, so the pid file names the broker itself.
echo "$$" >"$kdir/broker.pid"
exec > >(tee -a "$logdir/kafka.log") 2>&1
exec java "-Xmx$heap" -XX:+ExitOnOutOfMemoryError "${jvm[@]}" kafka.Kafka "$kdir/server.properties"
