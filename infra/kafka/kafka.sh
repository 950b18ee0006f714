#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller node) for tests and local development.
#
#   kafka.sh fetch                 download the jars from Maven Central (needs mvn + java 17)
#   kafka.sh start DATA_DIR [PORT] start a broker on 127.0.0.1; prints 127.0.0.1:PORT last
#   kafka.sh stop DATA_DIR         stop it (TERM, then KILL after 10 s); idempotent
#   kafka.sh status DATA_DIR       print the bootstrap and exit 0 when running, else exit 1
#
# Starting again on an existing DATA_DIR keeps the stored data and reuses the ports in
# DATA_DIR/server.properties (so a client's bootstrap stays valid across a broker restart).
#
# Environment:
#   GUARD_KAFKA_HOME       cache for the jars (default ~/.cache/healing-guard/kafka-4.1.1)
#   GUARD_KAFKA_HEAP_OPTS  default "-Xms128m -Xmx512m"
#   GUARD_KAFKA_JVM_OPTS   default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k"... (see below)
#   GUARD_KAFKA_EXTRA_PROPERTIES  extra server.properties lines appended on first start
#   GUARD_KAFKA_SASL_USERS "admin:PW worker:PW ..." on first start: SASL/PLAIN on every listener (no
#                          PLAINTEXT port), these users only, the StandardAuthorizer with no ACL = denied;
#                          the first user is the broker's own and the only super user (create the ACLs
#                          with it: healing_guard.brokers.create_acls). Readiness is then checked as it.
#   GUARD_KAFKA_START_TIMEOUT     seconds to wait for readiness (default 60)
#   GUARD_KAFKA_WATCH_PID  when set, the broker is stopped once that process exits
#                          (the Python wrapper passes its own pid: no stray JVM after a crash)
#   GUARD_PYTHON           a python with aiokafka: used for a real metadata request at start
#   JAVA_HOME              java to use (default: java on PATH)
set -euo pipefail

KAFKA_VERSION=4.1.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
LOG4J_CONF="$HERE/log4j2.properties"
KAFKA_HOME_DIR="${GUARD_KAFKA_HOME:-${HOME}/.cache/healing-guard/kafka-${KAFKA_VERSION}}"
LIBS="$KAFKA_HOME_DIR/libs"
MARKER="$LIBS/.complete"
START_TIMEOUT="${GUARD_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT=10

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        die "java not found (Java 17+ is needed; set JAVA_HOME or put java on PATH)"
    fi
}

python_bin() {
    if [[ -n "${GUARD_PYTHON:-}" ]]; then echo "$GUARD_PYTHON"
    elif command -v python3 >/dev/null 2>&1; then command -v python3
    else die "python3 not found (used to pick free ports)"; fi
}

pom_digest() { sha256sum "$POM" | cut -d' ' -f1; }

libs_complete() {
    [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$(pom_digest)" ]]
}

cmd_fetch() {
    if libs_complete; then
        log "jars already in $LIBS"
        echo "$LIBS"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven 3.8+ fetches the Kafka jars from Maven Central)"
    mkdir -p "$KAFKA_HOME_DIR"
    # One fetch at a time per cache dir (parallel test sessions).
    exec 9>"$KAFKA_HOME_DIR/.fetch.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if libs_complete; then
        log "jars already in $LIBS"
        echo "$LIBS"
        return 0
    fi
    local tmp="$KAFKA_HOME_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime >&2; then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (network to Maven Central?)"
    fi
    compgen -G "$tmp/kafka_2.13-${KAFKA_VERSION}.jar" >/dev/null \
        || { rm -rf "$tmp"; die "kafka_2.13-${KAFKA_VERSION}.jar missing after mvn"; }
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    pom_digest >"$MARKER"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars into $LIBS"
    echo "$LIBS"
}

free_port() {
    "$(python_bin)" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

prop() {  # prop FILE KEY -> value (empty when absent)
    sed -n "s/^$2=//p" "$1" | tail -n1
}

# Is PID running? A zombie counts as gone (PID 1 may reap orphans late).
pid_alive() {
    local pid="$1" state
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" ]]
}

# Is PID alive and our Kafka for DATA_DIR?
is_our_kafka() {
    local pid="$1" data_dir="$2"
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data_dir/server.properties"
}

tail_logs() {
    local data_dir="$1"
    {
        echo "---- tail of $data_dir/kafka.log ----"
        tail -n 40 "$data_dir/kafka.log" 2>/dev/null || echo "(no kafka.log)"
        if [[ -s "$data_dir/kafka.out" ]]; then
            echo "---- tail of $data_dir/kafka.out (stdout/stderr) ----"
            tail -n 20 "$data_dir/kafka.out"
        fi
    } >&2
}

write_properties() {
    local data_dir="$1" port="$2" cport="$3"
    cat >"$data_dir/server.properties" <<EOF
# Generated by infra/kafka/kafka.sh: one KRaft node (broker+controller) on loopback for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${data_dir}/data

# Single node: everything replicated once.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true

# Fast group joins; Faust uses broker_session_timeout=4 s (Kafka's default minimum is 6 s).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# Log chunks and dead letters can be several MiB.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216

# Small footprint for tests.
log.segment.bytes=33554432
log.retention.hours=24
log.retention.check.interval.ms=60000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF
    if [[ -n "${GUARD_KAFKA_SASL_USERS:-}" ]]; then
        sasl_properties "$data_dir" "$port" "$cport"
    fi
    if [[ -n "${GUARD_KAFKA_EXTRA_PROPERTIES:-}" ]]; then
        printf '\n# GUARD_KAFKA_EXTRA_PROPERTIES\n%s\n' "$GUARD_KAFKA_EXTRA_PROPERTIES" >>"$data_dir/server.properties"
    fi
}

sasl_properties() {  # SASL/PLAIN + ACLs; later lines of server.properties win over the PLAINTEXT ones above
    local data_dir="$1" port="$2" cport="$3" entry user pass admin="" admin_pass="" users=""
    for entry in $GUARD_KAFKA_SASL_USERS; do
        user="${entry%%:*}"
        pass="${entry#*:}"
        [[ "$entry" == *:* && "$user" =~ ^[A-Za-z0-9._-]+$ && "$pass" =~ ^[A-Za-z0-9._~+/=-]+$ ]] \
            || die "GUARD_KAFKA_SASL_USERS: expected USER:PASSWORD words (letters, digits, ._-; password also ~+/=)"
        if [[ -z "$admin" ]]; then admin="$user"; admin_pass="$pass"; fi
        users+=" user_${user}=\"${pass}\""
    done
    [[ -n "$admin" ]] || die "GUARD_KAFKA_SASL_USERS holds no user"
    local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${admin}\" password=\"${admin_pass}\"${users};"
    cat >>"$data_dir/server.properties" <<EOF

# GUARD_KAFKA_SASL_USERS: SASL/PLAIN on both listeners, ACLs (StandardAuthorizer), ${admin} the super user
listeners=SASL_PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:${port}
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=${jaas}
listener.name.controller.plain.sasl.jaas.config=${jaas}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:${admin}
allow.everyone.if.no.acl.found=false
EOF
    chmod 600 "$data_dir/server.properties"  # it holds the passwords
}

started_since() {  # started_since LOGFILE BYTE_OFFSET: the start line logged after OFFSET
    # (grep reads all input: with pipefail, `grep -q` could fail the pipe with SIGPIPE)
    tail -c "+$(($2 + 1))" "$1" 2>/dev/null | grep "Kafka Server started" >/dev/null
}

tcp_open() {  # tcp_open PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

metadata_ok() {  # real Kafka metadata request, only when GUARD_PYTHON has aiokafka
    local bootstrap="$1"
    [[ -n "${GUARD_PYTHON:-}" ]] || return 0
    "$GUARD_PYTHON" - "$bootstrap" <<'EOF' >/dev/null 2>&1
import asyncio, sys
try:
    from aiokafka.admin import AIOKafkaAdminClient
except ImportError:
    sys.exit(0)
import os
async def main():
    kw = {}
    users = os.environ.get("GUARD_KAFKA_SASL_USERS", "").split()
    if users:  # as the broker's own user (the first)
        user, _, password = users[0].partition(":")
        kw = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username=user,
                  sasl_plain_password=password)
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000, **kw)
    await asyncio.wait_for(admin.start(), 8)
    try:
        await asyncio.wait_for(admin.list_topics(), 8)
    finally:
        await admin.close()
asyncio.run(main())
EOF
}

cmd_start() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh start DATA_DIR [PORT]"
    mkdir -p "$1"
    local data_dir
    data_dir="$(cd "$1" && pwd)"
    local want_port="${2:-}"
    local props="$data_dir/server.properties"
    local pidfile="$data_dir/kafka.pid"

    if [[ -f "$pidfile" ]] && is_our_kafka "$(cat "$pidfile")" "$data_dir"; then
        die "a broker is already running for $data_dir (pid $(cat "$pidfile")); stop it first"
    fi
    rm -f "$pidfile" "$data_dir/watchdog.pid"

    cmd_fetch >/dev/null
    local java
    java="$(java_bin)"

    local port cport
    if [[ -f "$props" ]]; then
        # Restart on existing data: keep the ports unless a new broker port is asked for.
        port="$(prop "$props" listeners | sed -n 's#.*PLAINTEXT://127.0.0.1:\([0-9]*\).*#\1#p')"
        cport="$(prop "$props" controller.quorum.voters | sed -n 's#.*:\([0-9]*\)$#\1#p')"
        if [[ -n "$want_port" && "$want_port" != "$port" ]]; then
            port="$want_port"
            write_properties "$data_dir" "$port" "$cport"
        fi
    else
        port="${want_port:-$(free_port)}"
        cport="$(free_port)"
        while [[ "$cport" == "$port" ]]; do cport="$(free_port)"; done
        write_properties "$data_dir" "$port" "$cport"
    fi
    [[ -n "$port" && -n "$cport" ]] || die "could not determine ports from $props"
    if tcp_open "$port"; then
        die "port $port is already in use"
    fi

    local cp="$LIBS/*"
    # shellcheck disable=SC2206
    local heap=(${GUARD_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m})
    # shellcheck disable=SC2206
    local jvm=(${GUARD_KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true})
    local logopts=(-Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$data_dir")

    if [[ ! -f "$data_dir/data/meta.properties" ]]; then
        local cluster_id
        cluster_id="$("$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "${logopts[@]}" \
            -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$data_dir/kafka.out" | tail -n1)"
        [[ -n "$cluster_id" ]] || { tail_logs "$data_dir"; die "StorageTool random-uuid failed"; }
        if ! "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "${logopts[@]}" -cp "$cp" \
                kafka.tools.StorageTool format -t "$cluster_id" -c "$props" \
                >>"$data_dir/kafka.out" 2>&1; then
            tail_logs "$data_dir"
            rm -f "$props"  # nothing stored yet: the next start writes fresh properties
            die "StorageTool format failed"
        fi
    fi

    local started_at=$SECONDS
    local log_offset
    log_offset="$(stat -c %s "$data_dir/kafka.log" 2>/dev/null || echo 0)"
    # The JVM must not hold the caller's stdout/stderr (a subprocess.run caller would hang).
    "$java" "${heap[@]}" "${jvm[@]}" "${logopts[@]}" -cp "$cp" kafka.Kafka "$props" \
        </dev/null >>"$data_dir/kafka.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"

    if [[ -n "${GUARD_KAFKA_WATCH_PID:-}" ]]; then
        local watch="$GUARD_KAFKA_WATCH_PID"
        (
            trap '' HUP INT
            while pid_alive "$watch" && pid_alive "$pid"; do sleep 1; done
            if pid_alive "$pid"; then
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 1 $((STOP_TIMEOUT * 5))); do
                    pid_alive "$pid" || exit 0
                    sleep 0.2
                done
                kill -KILL "$pid" 2>/dev/null || true
            fi
        ) </dev/null >/dev/null 2>&1 &
        echo $! >"$data_dir/watchdog.pid"
    fi

    local bootstrap="127.0.0.1:$port"
    local deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! is_our_kafka "$pid" "$data_dir"; then
            tail_logs "$data_dir"
            rm -f "$pidfile"
            die "Kafka exited during startup (see $data_dir/kafka.log)"
        fi
        if tcp_open "$port" && started_since "$data_dir/kafka.log" "$log_offset" \
                && metadata_ok "$bootstrap"; then
            break
        fi
        if (( SECONDS >= deadline )); then
            tail_logs "$data_dir"
            cmd_stop "$data_dir" >/dev/null 2>&1 || true
            die "Kafka did not become ready on $bootstrap within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    log "Kafka $KAFKA_VERSION ready on $bootstrap in $((SECONDS - started_at))s (pid $pid, logs $data_dir/kafka.log)"
    echo "$bootstrap"
}

cmd_stop() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh stop DATA_DIR"
    [[ -d "$1" ]] || { log "no data dir $1: nothing to stop"; return 0; }
    local data_dir
    data_dir="$(cd "$1" && pwd)"
    local pidfile="$data_dir/kafka.pid"
    if [[ -f "$data_dir/watchdog.pid" ]]; then
        kill -TERM "$(cat "$data_dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$data_dir/watchdog.pid"
    fi
    if [[ ! -f "$pidfile" ]]; then
        log "not running ($data_dir)"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    if ! is_our_kafka "$pid" "$data_dir"; then
        rm -f "$pidfile"
        log "not running ($data_dir)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        is_our_kafka "$pid" "$data_dir" || break
        sleep 0.1
    done
    if is_our_kafka "$pid" "$data_dir"; then
        log "Kafka (pid $pid) still running after ${STOP_TIMEOUT}s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_our_kafka "$pid" "$data_dir" || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    log "stopped Kafka (pid $pid)"
}

cmd_status() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh status DATA_DIR"
    local data_dir
    data_dir="$(cd "$1" 2>/dev/null && pwd)" || exit 1
    local pidfile="$data_dir/kafka.pid"
    [[ -f "$pidfile" ]] && is_our_kafka "$(cat "$pidfile")" "$data_dir" || exit 1
    local port
    port="$(prop "$data_dir/server.properties" listeners | sed -n 's#.*PLAINTEXT://127.0.0.1:\([0-9]*\).*#\1#p')"
    echo "127.0.0.1:$port"
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
        fetch) cmd_fetch "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        *) echo "usage: $0 {fetch|start DATA_DIR [PORT]|stop DATA_DIR|status DATA_DIR}" >&2; exit 2 ;;
    esac
}

main "$@"
