#!/usr/bin/env bash
# Run a standalone ZooKeeper server on 127.0.0.1 for development, tests and CI.
#
#   scripts/zookeeper.sh start  [--port P] [--dir D] [TLS]  start (idempotent), print 127.0.0.1:P
#   scripts/zookeeper.sh stop   [--dir D]              stop the server started with D (ok if none)
#   scripts/zookeeper.sh status [--dir D]              exit 0 when that server runs and answers
#
# Defaults: --port 2181, --dir ./state/zookeeper. The directory holds zoo.cfg, the
# data and transaction log directories, the server's output (zookeeper.log) and
# its pid file (zookeeper.pid). Debian's `zookeeper` package is installed with
# apt-get when its jar is missing.
# TLS: --tls-port T --tls-dir C [--tls-client-auth need|want|none] also serves
# TLS on 127.0.0.1:T (printed on a second line), with C/server.pem (the server's
# PEM private key followed by its certificate chain) and C/ca.pem (the CAs whose
# client certificates it accepts); client certificates are required by default
# (need). The plain port stays open on 127.0.0.1 for the health check.
# Ensemble: --server-id N --quorum Q1:E1,Q2:E2,Q3:E3 starts member N of an
# ensemble on 127.0.0.1 whose members talk on those quorum and election
# ports (member i uses the i-th pair); start each member with its own --dir
# and --port. Connect with all the members' client ports, comma-separated.
# Environment:
#   ZOOKEEPER_START_TIMEOUT  seconds to wait for `ruok` to answer `imok` (default 60)
#   ZOOKEEPER_JAR            server jar (default /usr/share/java/zookeeper.jar)
#   ZOOKEEPER_HEAP           JVM heap limit (default 256m)
#   ZOOKEEPER_FORCE_SYNC     yes|no: fsync the transaction log (default yes)
set -euo pipefail

usage() {
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
port=2181
dir=./state/zookeeper
tls_port=
tls_dir=
tls_client_auth=need
server_id=
quorum=
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --port=*) port=${1#--port=}; shift ;;
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        --dir=*) dir=${1#--dir=}; shift ;;
        --tls-port) tls_port=${2:?--tls-port needs a value}; shift 2 ;;
        --tls-port=*) tls_port=${1#--tls-port=}; shift ;;
        --tls-dir) tls_dir=${2:?--tls-dir needs a value}; shift 2 ;;
        --tls-dir=*) tls_dir=${1#--tls-dir=}; shift ;;
        --tls-client-auth) tls_client_auth=${2:?--tls-client-auth needs a value}; shift 2 ;;
        --tls-client-auth=*) tls_client_auth=${1#--tls-client-auth=}; shift ;;
        --server-id) server_id=${2:?--server-id needs a value}; shift 2 ;;
        --quorum) quorum=${2:?--quorum needs a value}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "zookeeper.sh: unknown argument: $1" >&2; usage ;;
    esac
done
case $port in
    ''|*[!0-9]*) echo "zookeeper.sh: --port must be a number, got '$port'" >&2; exit 2 ;;
esac
case $tls_port in
    *[!0-9]*) echo "zookeeper.sh: --tls-port must be a number, got '$tls_port'" >&2; exit 2 ;;
esac
if { [ -n "$tls_port" ] && [ -z "$tls_dir" ]; } || { [ -z "$tls_port" ] && [ -n "$tls_dir" ]; }; then
    echo "zookeeper.sh: --tls-port and --tls-dir go together" >&2
    exit 2
fi
if { [ -n "$server_id" ] && [ -z "$quorum" ]; } || { [ -z "$server_id" ] && [ -n "$quorum" ]; }; then
    echo "zookeeper.sh: --server-id and --quorum go together" >&2
    exit 2
fi
case $server_id in
    *[!0-9]*) echo "zookeeper.sh: --server-id must be a number, got '$server_id'" >&2; exit 2 ;;
esac
case $tls_client_auth in
    need|want|none) ;;
    *) echo "zookeeper.sh: --tls-client-auth must be need, want or none, got '$tls_client_auth'" >&2; exit 2 ;;
esac

jar=${ZOOKEEPER_JAR:-/usr/share/java/zookeeper.jar}
timeout_s=${ZOOKEEPER_START_TIMEOUT:-60}
heap=${ZOOKEEPER_HEAP:-256m}
force_sync=${ZOOKEEPER_FORCE_SYNC:-yes}

log() { echo "zookeeper.sh: $*" >&2; }

# Absolute directory, so that the pid check below can match the process's
# command line whatever the caller's working directory.
abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd -P)
}

ensure_installed() {
    if [ -f "$jar" ] && command -v java >/dev/null 2>&1; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Several test processes may start servers at once on a fresh machine:
    # install once, the others wait for it.
    (
        flock -w 600 9 || { log "timed out waiting for another install"; exit 1; }
        if [ ! -f "$jar" ]; then
            log "installing Debian's zookeeper package"
            $sudo apt-get update -qq >&2
            $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 zookeeper >&2
        fi
    ) 9>"${TMPDIR:-/tmp}/dspans-zookeeper-install.lock"
    if [ ! -f "$jar" ]; then
        log "zookeeper installed but $jar is missing"
        exit 1
    fi
    command -v java >/dev/null 2>&1 || { log "java not found"; exit 1; }
}

# ruok PORT: succeeds when the server answers imok.
ruok() {
    local answer
    answer=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf ruok >&3 && cat <&3" 2>/dev/null || true)
    [ "$answer" = imok ]
}

# running_pid DIR: prints the pid of the server started with DIR, if it runs.
running_pid() {
    local d=$1 pid
    [ -f "$d/zookeeper.pid" ] || return 1
    pid=$(cat "$d/zookeeper.pid" 2>/dev/null || true)
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be our server for DIR.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$d/zoo.cfg" || return 1
    echo "$pid"
}

configured_port() {
    sed -n 's/^clientPort=//p' "$1/zoo.cfg" 2>/dev/null | head -n1
}

do_start() {
    local d pid deadline
    d=$(abs_dir "$dir")
    if pid=$(running_pid "$d"); then
        local p
        p=$(configured_port "$d")
        if [ "$p" != "$port" ]; then
            log "a server already runs with $d on port $p (asked for $port)"
            exit 1
        fi
        if wait_ready "$d" "$pid" "$p"; then
            echo "127.0.0.1:$p"
            p=$(sed -n 's/^secureClientPort=//p' "$d/zoo.cfg" | head -n1)
            if [ -n "$p" ]; then
                echo "127.0.0.1:$p"
            fi
            return 0
        fi
        exit 1
    fi
    ensure_installed
    local classpath=$jar tls_config=
    if [ -n "$tls_dir" ]; then
        tls_config=$(tls_settings)
        # The Netty connection factory that TLS needs uses two jars of
        # Debian's libnetty-java that zookeeper.jar's manifest leaves out.
        local java_dir netty
        java_dir=$(dirname "$jar")
        for netty in netty-codec netty-resolver; do
            if [ ! -f "$java_dir/$netty.jar" ]; then
                log "$java_dir/$netty.jar is missing (Debian's libnetty-java)"
                exit 1
            fi
            classpath=$classpath:$java_dir/$netty.jar
        done
    fi
    mkdir -p "$d/data" "$d/datalog"
    local standalone=true members=
    if [ -n "$server_id" ]; then
        standalone=false
        echo "$server_id" >"$d/data/myid"
        local i=0 pair
        for pair in ${quorum//,/ }; do
            i=$((i + 1))
            members="${members}server.$i=127.0.0.1:$pair"$'\n'
        done
    fi
    cat >"$d/zoo.cfg" <<EOF
# Generated by scripts/zookeeper.sh: standalone server for durable-spans.
tickTime=500
initLimit=10
syncLimit=5
minSessionTimeout=1000
maxSessionTimeout=60000
dataDir=$d/data
dataLogDir=$d/datalog
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
standaloneEnabled=$standalone
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr
preAllocSize=4096
forceSync=$force_sync
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
$tls_config
$members
EOF
    # setsid: the server outlives the shell (and the test) that started it
    # until `stop` is called.
    setsid java "-Xmx$heap" -XX:+UseSerialGC -Dzookeeper.log.dir="$d" \
        -Dzookeeper.jmx.log4j.disable=true \
        -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
        >"$d/zookeeper.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$d/zookeeper.pid"
    if wait_ready "$d" "$pid" "$port"; then
        echo "127.0.0.1:$port"
        if [ -n "$tls_port" ]; then
            echo "127.0.0.1:$tls_port"
        fi
        return 0
    fi
    exit 1
}

# The zoo.cfg lines of the TLS port: the Netty connection factory (NIO has
# no TLS) with PEM key and trust stores. (Debian's 3.8 with its Netty speaks
# TLS 1.2.)
tls_settings() {
    local c f
    c=$(abs_dir "$tls_dir")
    for f in server.pem ca.pem; do
        if [ ! -r "$c/$f" ]; then
            log "--tls-dir $c has no readable $f"
            exit 1
        fi
    done
    cat <<EOF
secureClientPort=$tls_port
secureClientPortAddress=127.0.0.1
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$c/server.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$c/ca.pem
ssl.trustStore.type=PEM
ssl.clientAuth=$tls_client_auth
EOF
}

# wait_ready DIR PID PORT: bounded wait until the server answers ruok.
wait_ready() {
    local d=$1 pid=$2 p=$3 deadline
    deadline=$((SECONDS + timeout_s))
    while ! ruok "$p"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server exited during start-up; last lines of $d/zookeeper.log:"
            tail -n 20 "$d/zookeeper.log" >&2 || true
            rm -f "$d/zookeeper.pid"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "server did not answer ruok on 127.0.0.1:$p within ${timeout_s}s; see $d/zookeeper.log"
            tail -n 20 "$d/zookeeper.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

do_stop() {
    local d pid deadline
    if [ ! -d "$dir" ]; then
        return 0
    fi
    d=$(abs_dir "$dir")
    if ! pid=$(running_pid "$d"); then
        rm -f "$d/zookeeper.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "server $pid did not stop on TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$d/zookeeper.pid"
}

do_status() {
    local d pid p
    if [ ! -d "$dir" ]; then
        echo "stopped"
        exit 3
    fi
    d=$(abs_dir "$dir")
    if pid=$(running_pid "$d"); then
        p=$(configured_port "$d")
        if ruok "$p"; then
            echo "running 127.0.0.1:$p (pid $pid)"
            return 0
        fi
        echo "starting or unresponsive 127.0.0.1:$p (pid $pid)"
        exit 1
    fi
    echo "stopped"
    exit 3
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
