#!/usr/bin/env bash
# Tocsin local real-services harness: Mosquitto, Kafka (KRaft), InfluxDB 1.8 (v2 API), Prometheus.
# No Docker: binaries come from Debian packages, Maven Central (Kafka jars) and `go install` (influxd),
# cached outside the repository. Everything listens on 127.0.0.1 only.
#
# Usage: services.sh provision|up|down|status|check [svc...]   (svc: mosquitto kafka influxdb prometheus,
#        or kafka3 = kafka3-1 kafka3-2 kafka3-3: a 3-node KRaft cluster, not part of the default set)
#        services.sh env | logs-dir | help
# See deploy/local/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
ALL_SERVICES=(mosquitto kafka influxdb prometheus)

# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin ;; esac

CACHE=${TOCSIN_CACHE:-$HOME/.cache/tocsin}
STATE=${TOCSIN_STATE:-$HOME/.cache/tocsin/state}
LOG_DIR=$STATE/logs
RUN_DIR=$STATE/run

MQTT_PORT=${TOCSIN_MQTT_PORT:-1883}
MQTT_SECURE_PORT=${TOCSIN_MQTT_SECURE_PORT:-1884}
MQTT_TLS_PORT=${TOCSIN_MQTT_TLS_PORT:-8883}
MQTT_REGISTRY=${TOCSIN_MQTT_REGISTRY:-$REPO/deploy/docker/config/registry.json}
PKI_DIR=$STATE/pki
KAFKA_PORT=${TOCSIN_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${TOCSIN_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_SECURE=${TOCSIN_KAFKA_SECURE:-1}
KAFKA_SECURE_PORT=${TOCSIN_KAFKA_SECURE_PORT:-9094}
KAFKA_SCRAM_USER=${TOCSIN_KAFKA_SCRAM_USER:-tocsin}
INFLUX_PORT=${TOCSIN_INFLUX_PORT:-8086}
INFLUX_RPC_PORT=${TOCSIN_INFLUX_RPC_PORT:-$((INFLUX_PORT + 2))}
INFLUX_DB=${TOCSIN_INFLUX_DB:-tocsin}
PROMETHEUS_PORT=${TOCSIN_PROMETHEUS_PORT:-9090}
declare -A MAIN_PORT=([mosquitto]=$MQTT_PORT [kafka]=$KAFKA_PORT [influxdb]=$INFLUX_PORT [prometheus]=$PROMETHEUS_PORT)
# The 3-node cluster (profile kafka3): node n listens on KAFKA3_PORT+n-1, its controller on KAFKA3_PORT+2+n,
# i.e. by default 10 above the single broker's port (9102-9104, controllers 9105-9107), so both can run.
KAFKA3_NODES=(kafka3-1 kafka3-2 kafka3-3)
KAFKA3_PORT=${TOCSIN_KAFKA3_PORT:-$((KAFKA_PORT + 10))}
KAFKA3_HEAP=${TOCSIN_KAFKA3_HEAP:-256m}
for _n in 1 2 3; do MAIN_PORT[kafka3-$_n]=$((KAFKA3_PORT + _n - 1)); done


READY_TIMEOUT=${TOCSIN_READY_TIMEOUT:-60}
STOP_TIMEOUT=${TOCSIN_STOP_TIMEOUT:-20}

KAFKA_VERSION=4.0.2
KAFKA_LIB=$CACHE/kafka-$KAFKA_VERSION/lib
KAFKA_HEAP=${TOCSIN_KAFKA_HEAP:-512m}
KAFKA_DATA=$STATE/kafka/data
KAFKA_FRESH=0 # set once this run formatted the log dir
INFLUX_VERSION=v1.8.10
INFLUXD=$CACHE/bin/influxd

GO=${TOCSIN_GO:-go}
MVN=${TOCSIN_MVN:-mvn}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAVA_MAJOR=unknown # set by need_java17

APT_PACKAGES=(mosquitto mosquitto-clients kcat prometheus chromium chromium-driver)
APT_DONE=0

# ---------------------------------------------------------------------------------------------------------
# helpers

info() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

die_with_log() { # log message...
    local log=$1
    shift
    tail_log "$log" 15
    die "$@"
}

usage() {
    cat <<EOF
usage: ${0##*/} <command> [svc...]
  provision [svc...]  fetch/build/install what is missing (cache: $CACHE)
  up [svc...]         provision if needed, start, block until ready (prints time to ready)
  down [svc...]       SIGTERM, wait up to ${STOP_TIMEOUT}s, then SIGKILL
  status [svc...]     one line per service; exit 0 if all running, 3 otherwise
  check [svc...]      end-to-end smoke test against running services
  env                 print 'export TOCSIN_...' lines for the endpoints in use
  logs-dir            print the directory holding one log per service
  browser             install headless Chromium and chromedriver (Debian) for the console's browser tests
svc: ${ALL_SERVICES[*]} (default: all four), or kafka3 (= ${KAFKA3_NODES[*]}): a 3-node KRaft cluster
     (replication factor 3, min.insync.replicas 2) on ports ${KAFKA3_PORT}-$((KAFKA3_PORT + 5)), besides the single broker
EOF
}

# Microseconds since the epoch (EPOCHREALTIME may use a locale decimal comma).
now_us() {
    local t=$EPOCHREALTIME
    printf '%s' "${t//[!0-9]/}"
}

# Seconds since a now_us timestamp, one decimal.
secs_since() {
    local d=$(($(now_us) - $1))
    printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000))
}

need_cmd() { # cmd hint
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# Render a template: @KEY@ -> value for each KEY=value argument.
render() { # template output KEY=value...
    local template=$1 out=$2 text kv
    shift 2
    text=$(<"$template")
    for kv in "$@"; do
        text=${text//"@${kv%%=*}@"/"${kv#*=}"}
    done
    if grep -v '^[[:space:]]*#' <<<"$text" | grep -qE '@[A-Z][A-Z_]*@'; then
        die "unrendered placeholder left in $out (from $template)"
    fi
    printf '%s\n' "$text" >"$out.tmp"
    mv -f "$out.tmp" "$out"
}

port_open() { # port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_owner_pid() { # port -> pid of the listening process, if ss can tell
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true
}

ensure_ports_free() { # svc env-var-hint port...
    local svc=$1 hint=$2 port owner
    shift 2
    for port in "$@"; do
        port_open "$port" || continue
        owner=$(port_owner_pid "$port")
        if [[ -n $owner ]] && proc_alive "$owner" "$svc"; then
            die "$svc: 127.0.0.1:$port is held by pid $owner, the $svc this harness started earlier whose pid file" \
                "was lost: stop it with 'kill $owner' and run up again"
        fi
        die "$svc: 127.0.0.1:$port is already in use by another process${owner:+ (pid $owner:" \
            "$(tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | cut -c 1-80))} - stop it (e.g. a system" \
            "'$svc' service) or choose another port with $hint"
    done
}

http_code() { # url [curl args...]
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "$url" 2>/dev/null || true
}

log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

tail_log() { # file [lines]
    local f=$1 n=${2:-40}
    if [[ -s $f ]]; then
        printf -- '---- last %s lines of %s ----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf -- '----\n' >&2
    else
        printf '(%s is empty or missing)\n' "$f" >&2
    fi
}

# A string that identifies the service's process in /proc/<pid>/cmdline (guards against reused pids).
proc_marker() {
    case $1 in
        mosquitto) printf '%s' "$STATE/mosquitto/mosquitto.conf" ;;
        kafka) printf '%s' "$STATE/kafka/server.properties" ;;
        kafka3-[123]) printf '%s' "$STATE/kafka3/node-${1#kafka3-}/server.properties" ;;
        influxdb) printf '%s' "-pidfile $STATE/influxdb/influxd.pid" ;;
        prometheus) printf '%s' "--storage.tsdb.path=$STATE/prometheus/data" ;;
    esac
}

proc_alive() { # pid svc
    local pid=$1 svc=$2 cmdline state
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r /proc/$pid/cmdline ]] || return 0 # no procfs: trust kill -0
    # A zombie (nobody reaped it yet) has an empty cmdline and state Z: it is gone for our purposes.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [[ $state != Z ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $cmdline == *"$(proc_marker "$svc")"* ]]
}

# Print the pid of a running service; return 1 (and drop a stale pid file) if it is not running.
svc_pid() { # svc
    local svc=$1 pf pid
    pf=$(pid_file "$svc")
    [[ -f $pf ]] || return 1
    pid=$(<"$pf")
    if [[ $pid =~ ^[0-9]+$ ]] && proc_alive "$pid" "$svc"; then
        printf '%s' "$pid"
        return 0
    fi
    rm -f "$pf"
    warn "$svc: removed stale pid file (pid ${pid:-?} is not a running $svc)"
    return 1
}

# Start a daemon detached from this shell, log to <logs>/<svc>.log, pid in <run>/<svc>.pid.
start_daemon() { # svc cmd...
    local svc=$1 log pf i
    shift
    log=$(log_file "$svc")
    pf=$(pid_file "$svc")
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    [[ ! -f $log ]] || mv -f "$log" "$log.1"
    rm -f "$pf"
    local launcher=()
    if command -v setsid >/dev/null 2>&1; then launcher=(setsid); fi
    # The child writes its own pid, then execs the service: correct even if setsid forks.
    # 8>&- 9>&-: the daemon must not inherit (and hold forever) our lock files.
    # shellcheck disable=SC2016 # $$ and $@ expand in the child bash
    nohup "${launcher[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" >>"$log" 2>&1 </dev/null 8>&- 9>&- &
    for ((i = 0; i < 50; i++)); do
        [[ -s $pf ]] && return 0
        sleep 0.1
    done
    die "$svc: failed to launch (no pid file after 5 s)"
}

# Serialise up/down per state dir (e.g. several test workers calling `up` at once: the later caller waits,
# then finds the services running), and provisioning per cache dir (shared by all state dirs).
# fd 9 = state lock, held until exit; fd 8 = cache lock, held while provisioning.
take_state_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock -w 600 9 || die "could not lock $RUN_DIR/.lock within 600 s (another services.sh is stuck?)"
}

provision_all() { # svc...
    local svc
    if command -v flock >/dev/null 2>&1; then
        mkdir -p "$CACHE"
        exec 8>"$CACHE/.provision.lock"
        flock -w 900 8 || die "could not lock $CACHE/.provision.lock within 900 s (another provisioning stuck?)"
    fi
    for svc in "$@"; do "provision_$svc"; done
    exec 8>&-
}

fail_start() { # svc reason
    local svc=$1
    printf 'ERROR: %s: %s\n' "$svc" "$2" >&2
    tail_log "$(log_file "$svc")"
    printf 'Other services may still be running: %s status / %s down\n' "${0##*/}" "${0##*/}" >&2
    exit 1
}

stop_pid() { # svc pid
    local svc=$1 pid=$2 t0 deadline killed=0
    t0=$(now_us)
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while proc_alive "$pid" "$svc" && ((SECONDS < deadline)); do sleep 0.2; done
    if proc_alive "$pid" "$svc"; then
        warn "$svc: still running ${STOP_TIMEOUT}s after SIGTERM, sending SIGKILL to pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
        killed=1
        deadline=$((SECONDS + 5))
        while proc_alive "$pid" "$svc" && ((SECONDS < deadline)); do sleep 0.1; done
        proc_alive "$pid" "$svc" && die "$svc: pid $pid survived SIGKILL"
    fi
    rm -f "$(pid_file "$svc")"
    if declare -F "after_stop_$svc" >/dev/null; then "after_stop_$svc" "$killed"; fi
    info "$svc: stopped (pid $pid) in $(secs_since "$t0") s"
}

# ---------------------------------------------------------------------------------------------------------
# provisioning building blocks

# Mosquitto, its clients, kcat and Prometheus come from Debian: one `apt-get update` + install for all.
ensure_apt_tools() { # binary...
    local missing=() b sudo=() alog
    for b in "$@"; do command -v "$b" >/dev/null 2>&1 || missing+=("$b"); done
    ((${#missing[@]})) || return 0
    ((APT_DONE == 0)) || die "${missing[*]} still missing after apt-get install ${APT_PACKAGES[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "${missing[*]} not found and apt-get is unavailable: install ${APT_PACKAGES[*]} with your package manager"
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            die "${missing[*]} not found: run as root or install sudo, or install ${APT_PACKAGES[*]} by hand"
        sudo=(sudo)
    fi
    mkdir -p "$LOG_DIR"
    alog=$LOG_DIR/provision-apt.log
    info "provision: ${missing[*]} missing -> apt-get install ${APT_PACKAGES[*]} (log: $alog)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$alog" 2>&1 ||
        die_with_log "$alog" "apt-get update failed, see $alog"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PACKAGES[@]}" >>"$alog" 2>&1 ||
        die_with_log "$alog" "apt-get install -y ${APT_PACKAGES[*]} failed, see $alog"
    APT_DONE=1
    hash -r
    for b in "$@"; do need_cmd "$b" "still missing after apt-get install ${APT_PACKAGES[*]}"; done
    warn "Debian may have started system mosquitto/prometheus services on ports 1883/9090;" \
        "stop/disable them (systemctl disable --now mosquitto prometheus) or change TOCSIN_*_PORT"
}

kafka_lib_complete() {
    local jar
    for jar in "kafka_2.13-$KAFKA_VERSION" "kafka-server-$KAFKA_VERSION" "kafka-clients-$KAFKA_VERSION" \
        log4j-core-2.24.3 log4j-slf4j-impl-2.24.3; do
        [[ -f $KAFKA_LIB/$jar.jar ]] || return 1
    done
}

need_java17() {
    need_cmd "$JAVA" "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    local v
    v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    [[ -z $v || $v -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is Java $v: install openjdk-17 or set JAVA_HOME"
    JAVA_MAJOR=${v:-unknown}
}

# ---------------------------------------------------------------------------------------------------------
# mosquitto

provision_mosquitto() {
    ensure_apt_tools mosquitto mosquitto_passwd mosquitto_sub mosquitto_pub
}

# The harness's Python: the checkout's virtualenv if it has one, else a `tocsin` on PATH, else python3 with
# the repository on PYTHONPATH (needs pydantic, pydantic-settings, pyyaml).
tocsin_cli() { # args...
    if [[ -x $REPO/.venv/bin/python ]]; then
        "$REPO/.venv/bin/python" -m tocsin.cli "$@"
    elif command -v tocsin >/dev/null 2>&1; then
        tocsin "$@"
    else
        PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} python3 -m tocsin.cli "$@"
    fi
}

# CA, the brokers' server certificate (127.0.0.1/localhost), client certificates for the gateway and the
# worker, Kafka's PKCS12 keystore: made once per state dir (deploy/pki.sh), renewed when close to expiry.
ensure_pki() {
    mkdir -p "$LOG_DIR"
    bash "$SCRIPT_DIR/../pki.sh" "$PKI_DIR" gateway worker >"$LOG_DIR/pki.log" 2>&1 ||
        die_with_log "$LOG_DIR/pki.log" "deploy/pki.sh $PKI_DIR failed, see $LOG_DIR/pki.log"
}

# One MQTT user per registered device (TOCSIN_MQTT_REGISTRY) bound to its own topics, plus gateway, worker,
# operator (tocsin/mqtt_auth.py). Passwords: TOCSIN_MQTT_<ROLE>_PASSWORD if set, else random, kept in
# $STATE/mosquitto/credentials.json.
mosquitto_write_auth() {
    local dir=$STATE/mosquitto out fixed=() role var
    for role in gateway worker operator; do
        var=TOCSIN_MQTT_${role^^}_PASSWORD
        [[ -z ${!var:-} ]] || fixed+=(--password-from-env "$role=$var")
    done
    out=$(tocsin_cli mqtt-auth --registry "$MQTT_REGISTRY" --credentials "$dir/credentials.json" \
        --acl "$dir/acl" --passwd "$dir/passwd" "${fixed[@]}" 2>&1) ||
        die "mosquitto: tocsin mqtt-auth (ACL and passwords from $MQTT_REGISTRY) failed: $out"
}

mosquitto_render() { # out
    render "$SCRIPT_DIR/mosquitto/mosquitto.conf" "$1" \
        "MQTT_PORT=$MQTT_PORT" "MQTT_SECURE_PORT=$MQTT_SECURE_PORT" "MQTT_TLS_PORT=$MQTT_TLS_PORT" \
        "RUN_USER=$(id -un)" "PERSISTENCE_DIR=$STATE/mosquitto/data" "PASSWORD_FILE=$STATE/mosquitto/passwd" \
        "ACL_FILE=$STATE/mosquitto/acl" "PKI_DIR=$PKI_DIR"
}

start_mosquitto() {
    local dir=$STATE/mosquitto
    ensure_ports_free mosquitto "TOCSIN_MQTT_PORT / TOCSIN_MQTT_SECURE_PORT / TOCSIN_MQTT_TLS_PORT" \
        "$MQTT_PORT" "$MQTT_SECURE_PORT" "$MQTT_TLS_PORT"
    mkdir -p "$dir/data"
    ensure_pki
    mosquitto_write_auth
    mosquitto_render "$dir/mosquitto.conf"
    start_daemon mosquitto mosquitto -c "$dir/mosquitto.conf"
}

# A running broker whose configuration (ports, listeners) differs from what would be rendered now was
# started by an older harness: say why, and it is restarted.
stale_config_mosquitto() {
    local cur=$STATE/mosquitto/mosquitto.conf
    mosquitto_render "$cur.new"
    if cmp -s "$cur" "$cur.new"; then
        rm -f "$cur.new"
        return 1
    fi
    rm -f "$cur.new"
    printf 'configuration changed (listeners/ports)'
}

# Registry or passwords may have changed: regenerate the ACL and password file and reload (SIGHUP).
after_ready_mosquitto() {
    local pid
    ensure_pki
    mosquitto_write_auth
    pid=$(svc_pid mosquitto) && kill -HUP "$pid"
}

ready_mosquitto() {
    # shellcheck disable=SC2016 # $SYS is a literal MQTT topic
    port_open "$MQTT_PORT" && port_open "$MQTT_TLS_PORT" &&
        mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t '$SYS/broker/version' -C 1 -W 5 >/dev/null 2>&1
}

credential() { # user -> password from the credentials file
    tocsin_py -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$STATE/mosquitto/credentials.json" "$1"
}

tocsin_py() {
    if [[ -x $REPO/.venv/bin/python ]]; then "$REPO/.venv/bin/python" "$@"; else python3 "$@"; fi
}

check_mosquitto() {
    local out dev topic gw_pw dev_pw tls=(--cafile "$PKI_DIR/ca.crt")
    # the first device of the registry, and its own telemetry topic
    read -r dev topic < <(tocsin_py -c 'import json,sys; d=json.load(open(sys.argv[1]))["devices"][0]; print(d["device_id"], "tocsin/v1/%s/%s/%s/telemetry" % (d["family"], d["site"], d["device_id"]))' "$MQTT_REGISTRY") ||
        die "mosquitto: no device in $MQTT_REGISTRY"
    local sub=(mosquitto_sub -h 127.0.0.1 -C 1 -W 5 -t "$topic")
    local pub=(mosquitto_pub -h 127.0.0.1 -t "$topic" -q 1)
    gw_pw=$(credential gateway) && dev_pw=$(credential "$dev") || die "mosquitto: credentials missing"
    # anonymous round trip on the open listener
    out=$(
        "${sub[@]}" -p "$MQTT_PORT" &
        sleep 0.5
        "${pub[@]}" -p "$MQTT_PORT" -m anon-ok
        wait
    ) || true
    [[ $out == anon-ok ]] || die "mosquitto: anonymous pub/sub round trip on :$MQTT_PORT failed (got '$out')"
    # secure listeners: anonymous must be refused
    if mosquitto_pub -h 127.0.0.1 -p "$MQTT_SECURE_PORT" -t "$topic" -m x >/dev/null 2>&1; then
        die "mosquitto: secure listener :$MQTT_SECURE_PORT accepted an anonymous client"
    fi
    if mosquitto_pub -h 127.0.0.1 -p "$MQTT_TLS_PORT" "${tls[@]}" -t "$topic" -m x >/dev/null 2>&1; then
        die "mosquitto: TLS listener :$MQTT_TLS_PORT accepted an anonymous client"
    fi
    # over TLS (certificate verified), the gateway reads what a device writes on its own topic
    out=$(
        "${sub[@]}" -p "$MQTT_TLS_PORT" "${tls[@]}" -u gateway -P "$gw_pw" &
        sleep 0.5
        "${pub[@]}" -p "$MQTT_TLS_PORT" "${tls[@]}" -u "$dev" -P "$dev_pw" -m tls-ok
        wait
    ) || true
    [[ $out == tls-ok ]] || die "mosquitto: $dev -> gateway round trip over TLS on :$MQTT_TLS_PORT failed (got '$out')"
    info "mosquitto: OK (anonymous :$MQTT_PORT round trip; :$MQTT_SECURE_PORT and TLS :$MQTT_TLS_PORT refuse" \
        "anonymous; over TLS the gateway reads $dev)"
}

# ---------------------------------------------------------------------------------------------------------
# kafka

provision_kafka() {
    need_java17
    ensure_apt_tools kcat
    kafka_lib_complete && return 0
    need_cmd "$MVN" "install Maven (Debian: apt-get install maven) or set TOCSIN_MVN"
    local mlog=$LOG_DIR/provision-kafka-mvn.log tmp=$KAFKA_LIB.tmp t0
    mkdir -p "$LOG_DIR" "$(dirname "$KAFKA_LIB")"
    rm -rf "$tmp"
    t0=$(now_us)
    info "provision: resolving Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB (log: $mlog)"
    "$MVN" -q -B -f "$SCRIPT_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mlog" 2>&1 ||
        die_with_log "$mlog" "mvn dependency:copy-dependencies (deploy/local/kafka/pom.xml) failed, see $mlog"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    kafka_lib_complete || die "Kafka jars incomplete in $KAFKA_LIB after mvn, see $mlog"
    info "provision: kafka jars ready in $(secs_since "$t0") s"
}

kafka_java() { # args...
    "$JAVA" -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" -cp "$KAFKA_LIB/*" "$@"
}

# The settings that are baked into a formatted log dir; if they change, the old data cannot be reused.
kafka_identity() {
    grep -E '^(process\.roles|node\.id|controller\.quorum\.voters)=' "$STATE/kafka/server.properties"
}

# SCRAM password of the harness's Kafka user: TOCSIN_KAFKA_SCRAM_PASSWORD, else random, kept in the state dir.
kafka_scram_password() {
    local f=$STATE/kafka/scram.password
    if [[ -n ${TOCSIN_KAFKA_SCRAM_PASSWORD:-} ]]; then
        printf '%s' "$TOCSIN_KAFKA_SCRAM_PASSWORD"
        return 0
    fi
    if [[ ! -s $f ]]; then
        mkdir -p "$STATE/kafka"
        (umask 077 && openssl rand -hex 24 >"$f.tmp" && mv -f "$f.tmp" "$f") || die "kafka: cannot write $f"
    fi
    tr -d '\n' <"$f"
}

# What the broker's SCRAM store should hold (user and a hash of the password), to know when to update it.
kafka_scram_marker() {
    printf '%s:%s\n' "$KAFKA_SCRAM_USER" "$(kafka_scram_password | sha256sum | cut -c 1-64)"
}

kafka_render() { # out
    local listener="" settings="# SASL_SSL listener off (TOCSIN_KAFKA_SECURE=0)"
    if [[ $KAFKA_SECURE == 1 ]]; then
        ensure_pki
        listener=",SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT"
        settings="sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$PKI_DIR/kafka.p12
listener.name.sasl_ssl.ssl.keystore.password=$(<"$PKI_DIR/kafka.p12.password")"
    fi
    render "$SCRIPT_DIR/kafka/server.properties" "$1" \
        "KAFKA_PORT=$KAFKA_PORT" "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "KAFKA_LOG_DIR=$KAFKA_DATA" \
        "KAFKA_SECURE_LISTENER=$listener" "KAFKA_SECURE_SETTINGS=$settings"
    chmod 600 "$1"
}

stale_config_kafka() {
    local cur=$STATE/kafka/server.properties
    kafka_render "$cur.new"
    if cmp -s "$cur" "$cur.new"; then
        rm -f "$cur.new"
        return 1
    fi
    rm -f "$cur.new"
    printf 'configuration changed (listeners/ports, TOCSIN_KAFKA_SECURE)'
}

# The SCRAM user must exist in the cluster's metadata: formatting adds it; a log dir formatted without it
# (an older harness, or a changed password) gets it through the admin API on the PLAINTEXT listener.
after_ready_kafka() {
    [[ $KAFKA_SECURE == 1 ]] || return 0
    local marker=$KAFKA_DATA/.tocsin-scram clog=$LOG_DIR/kafka-scram.log
    cmp -s <(kafka_scram_marker) "$marker" && return 0
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$(kafka_scram_password)]" \
        --entity-type users --entity-name "$KAFKA_SCRAM_USER" >"$clog" 2>&1 ||
        die_with_log "$clog" "kafka: could not create SCRAM user $KAFKA_SCRAM_USER, see $clog"
    kafka_scram_marker >"$marker"
    info "kafka: SCRAM-SHA-512 user $KAFKA_SCRAM_USER set"
}

kafka_format() {
    local dir=$STATE/kafka flog=$LOG_DIR/kafka-format.log cluster_id scram=()
    if [[ -s $dir/cluster.id ]]; then
        cluster_id=$(<"$dir/cluster.id")
    else
        cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>"$flog" | tail -n 1) || true
        [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] ||
            die_with_log "$flog" "kafka: StorageTool random-uuid failed (got '$cluster_id'), see $flog"
        printf '%s\n' "$cluster_id" >"$dir/cluster.id"
    fi
    [[ $KAFKA_SECURE != 1 ]] ||
        scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,iterations=8192,password=$(kafka_scram_password)]")
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
        --ignore-formatted "${scram[@]}" >>"$flog" 2>&1 ||
        die_with_log "$flog" "kafka: StorageTool format failed, see $flog"
    kafka_identity >"$KAFKA_DATA/.tocsin-identity"
    [[ $KAFKA_SECURE != 1 ]] || kafka_scram_marker >"$KAFKA_DATA/.tocsin-scram"
    KAFKA_FRESH=1
    info "kafka: formatted $KAFKA_DATA (cluster id $cluster_id)"
}

kafka_wipe() { # reason
    warn "kafka: $1 -> discarding local data $KAFKA_DATA and reformatting (local state is disposable)"
    rm -rf "$KAFKA_DATA"
}

kafka_prepare() {
    local dir=$STATE/kafka
    mkdir -p "$dir" "$LOG_DIR"
    kafka_render "$dir/server.properties"
    if [[ -f $KAFKA_DATA/meta.properties ]] &&
        ! cmp -s <(kafka_identity) "$KAFKA_DATA/.tocsin-identity"; then
        kafka_wipe "node id / controller quorum changed since the log dir was formatted"
    elif [[ ${TOCSIN_KAFKA_WIPE:-0} == 1 && -d $KAFKA_DATA ]]; then
        # the test session asks for this: topics then hold only this run's records, so a worker in a new
        # consumer group (offset reset: earliest) does not replay the history of earlier runs
        kafka_wipe "TOCSIN_KAFKA_WIPE=1"
    fi
    # Formatting costs a JVM start (~2 s): only when the log dir is not formatted yet.
    [[ -f $KAFKA_DATA/meta.properties ]] || { mkdir -p "$KAFKA_DATA" && kafka_format; }
}

# Class-data sharing: the first broker run dumps the classes it loaded when it exits (during `down`, a few
# seconds, once) into the state dir; a clean stop publishes that into the cache, and later runs map it
# and skip most class loading (~40% less CPU to ready).
kafka_cds_opt() {
    [[ ${TOCSIN_KAFKA_CDS:-1} == 1 && $JAVA_MAJOR != unknown ]] || return 0
    local jsa=$CACHE/kafka-$KAFKA_VERSION/kafka-java$JAVA_MAJOR.jsa dump=$STATE/kafka/classes.jsa.new
    rm -f "$dump" "$STATE/kafka/classes.jsa.target"
    if [[ -s $jsa ]]; then
        printf '%s' "-XX:SharedArchiveFile=$jsa"
    else
        printf '%s\n' "$jsa" >"$STATE/kafka/classes.jsa.target"
        printf '%s' "-XX:ArchiveClassesAtExit=$dump"
    fi
}

after_stop_kafka() { # killed(0/1)
    local dump=$STATE/kafka/classes.jsa.new target
    [[ -f $STATE/kafka/classes.jsa.target ]] || return 0
    target=$(<"$STATE/kafka/classes.jsa.target")
    if (($1 == 0)) && [[ -s $dump && ! -s $target ]]; then
        if ! { cp "$dump" "$target.tmp.$$" && mv -f "$target.tmp.$$" "$target"; }; then
            rm -f "$target.tmp.$$"
            warn "kafka: could not store the class-data archive $target"
        fi
    fi
    rm -f "$dump" "$STATE/kafka/classes.jsa.target"
}

start_kafka() {
    local ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
    [[ $KAFKA_SECURE != 1 ]] || ports+=("$KAFKA_SECURE_PORT")
    ensure_ports_free kafka "TOCSIN_KAFKA_PORT / TOCSIN_KAFKA_CONTROLLER_PORT / TOCSIN_KAFKA_SECURE_PORT" "${ports[@]}"
    kafka_prepare
    local extra_opts=() cds
    read -r -a extra_opts <<<"${TOCSIN_KAFKA_JVM_OPTS:-}"
    cds=$(kafka_cds_opt)
    [[ -z $cds ]] || extra_opts+=("$cds")
    start_daemon kafka "$JAVA" "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dlog4j2.shutdownHookEnabled=false "${extra_opts[@]}" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$STATE/kafka/server.properties"
}

ready_kafka() {
    port_open "$KAFKA_PORT" && { [[ $KAFKA_SECURE != 1 ]] || port_open "$KAFKA_SECURE_PORT"; } &&
        kcat -L -b "127.0.0.1:$KAFKA_PORT" -m 5 2>/dev/null | grep -q '^ *broker 1 at '
}

# A broker that dies during startup usually trips over an old/inconsistent log dir (cluster/node id
# mismatch, corrupt metadata log). Print the reason and return 0 if wiping the log dir may help; not for
# JVM launch failures (no ERROR line), bad config or busy ports, which a reformat would not fix.
kafka_stale_state_reason() {
    local log reason
    log=$(log_file kafka)
    grep -q '\] ERROR ' "$log" 2>/dev/null || return 1
    reason=$(grep -m 1 -E '^[A-Za-z0-9_.$]+(Exception|Error)(: |$)' "$log" | cut -c 1-240 || true)
    [[ -n $reason ]] || reason=$(grep -m 1 '\] ERROR ' "$log" | cut -c 1-240)
    [[ $reason != *ConfigException* && $reason != *BindException* && $reason != *OutOfMemory* ]] || return 1
    printf '%s' "$reason"
}

recover_kafka() { # reason
    kafka_wipe "broker exited during startup: $1"
    start_kafka
}

check_kafka() {
    local topic=tocsin.harness.check msg out
    msg="check-$(now_us)"
    printf '%s\n' "$msg" | kcat -P -b "127.0.0.1:$KAFKA_PORT" -t "$topic" -m 10 ||
        die "kafka: kcat produce to $topic failed"
    out=$(kcat -C -b "127.0.0.1:$KAFKA_PORT" -t "$topic" -o -20 -e -q -m 10 2>/dev/null) ||
        die "kafka: kcat consume from $topic failed"
    grep -qx "$msg" <<<"$out" || die "kafka: produced message not read back from $topic"
    info "kafka: OK (metadata lists broker 1; produce/consume round trip on $topic)"
}

# ---------------------------------------------------------------------------------------------------------
# kafka3: three KRaft nodes (each broker + controller) on 127.0.0.1, replication factor 3, min ISR 2.
# Combined nodes rather than separate controllers: 3 JVMs instead of 6 on a small machine, and killing one
# node still leaves 2 of 3 voters (the quorum) and 2 of 3 replicas (min.insync.replicas) of every partition.
# Each node is its own service (pid, log, `up`/`down`), so a test can kill -9 one and `up` it again.

kafka3_port() { printf '%s' $((KAFKA3_PORT + $1 - 1)); }             # node -> client port
kafka3_controller_port() { printf '%s' $((KAFKA3_PORT + 2 + $1)); } # node -> controller port
kafka3_dir() { printf '%s/kafka3/node-%s' "$STATE" "$1"; }

kafka3_voters() {
    printf '1@127.0.0.1:%s,2@127.0.0.1:%s,3@127.0.0.1:%s' \
        "$(kafka3_controller_port 1)" "$(kafka3_controller_port 2)" "$(kafka3_controller_port 3)"
}

kafka3_render() { # node out
    render "$SCRIPT_DIR/kafka/cluster.properties" "$2" "NODE_ID=$1" "QUORUM_VOTERS=$(kafka3_voters)" \
        "KAFKA_PORT=$(kafka3_port "$1")" "KAFKA_CONTROLLER_PORT=$(kafka3_controller_port "$1")" \
        "KAFKA_LOG_DIR=$(kafka3_dir "$1")/data"
}

kafka3_identity() { # node
    grep -E '^(process\.roles|node\.id|controller\.quorum\.voters)=' "$(kafka3_dir "$1")/server.properties"
}

# All three nodes share one cluster id ($STATE/kafka3/cluster.id); each log dir is formatted once.
kafka3_prepare() { # node
    local n=$1 dir data flog=$LOG_DIR/kafka3-format.log cluster_id
    dir=$(kafka3_dir "$n")
    data=$dir/data
    mkdir -p "$dir" "$LOG_DIR"
    kafka3_render "$n" "$dir/server.properties"
    if [[ -f $data/meta.properties ]] && ! cmp -s <(kafka3_identity "$n") "$data/.tocsin-identity"; then
        warn "kafka3-$n: node id / quorum changed since the log dir was formatted -> discarding $data"
        rm -rf "$data"
    elif [[ ${TOCSIN_KAFKA_WIPE:-0} == 1 && -d $data ]]; then
        warn "kafka3-$n: TOCSIN_KAFKA_WIPE=1 -> discarding $data"
        rm -rf "$data"
    fi
    [[ ! -f $data/meta.properties ]] || return 0
    if [[ -s $STATE/kafka3/cluster.id ]] && [[ ${TOCSIN_KAFKA_WIPE:-0} != 1 || $n != 1 ]]; then
        cluster_id=$(<"$STATE/kafka3/cluster.id")
    else
        cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>"$flog" | tail -n 1) || true
        [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] ||
            die_with_log "$flog" "kafka3: StorageTool random-uuid failed (got '$cluster_id'), see $flog"
        printf '%s\n' "$cluster_id" >"$STATE/kafka3/cluster.id"
    fi
    mkdir -p "$data"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" --ignore-formatted \
        >>"$flog" 2>&1 || die_with_log "$flog" "kafka3-$n: StorageTool format failed, see $flog"
    kafka3_identity "$n" >"$data/.tocsin-identity"
    info "kafka3-$n: formatted $data (cluster id $cluster_id)"
}

start_kafka3() { # node
    local n=$1 extra_opts=() jsa=$CACHE/kafka-$KAFKA_VERSION/kafka-java$JAVA_MAJOR.jsa
    ensure_ports_free "kafka3-$n" TOCSIN_KAFKA3_PORT "$(kafka3_port "$n")" "$(kafka3_controller_port "$n")"
    kafka3_prepare "$n"
    read -r -a extra_opts <<<"${TOCSIN_KAFKA_JVM_OPTS:-}"
    # the single broker's class-data archive, if it made one (read only here)
    [[ ${TOCSIN_KAFKA_CDS:-1} != 1 || ! -s $jsa ]] || extra_opts+=("-XX:SharedArchiveFile=$jsa")
    start_daemon "kafka3-$n" "$JAVA" "-Xms$KAFKA3_HEAP" "-Xmx$KAFKA3_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dlog4j2.shutdownHookEnabled=false "${extra_opts[@]}" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$(kafka3_dir "$n")/server.properties"
}

# Ready: the node answers a metadata request that lists itself (a broker registers, unfenced, only once
# the controller quorum has a leader, i.e. once at least two nodes run).
ready_kafka3() { # node
    port_open "$(kafka3_port "$1")" &&
        kcat -L -b "127.0.0.1:$(kafka3_port "$1")" -m 5 2>/dev/null | grep -q "^ *broker $1 at "
}

stale_config_kafka3() { # node
    local cur
    cur=$(kafka3_dir "$1")/server.properties
    kafka3_render "$1" "$cur.new"
    if cmp -s "$cur" "$cur.new"; then
        rm -f "$cur.new"
        return 1
    fi
    rm -f "$cur.new"
    printf 'configuration changed (ports)'
}

check_kafka3() { # node
    local n=$1 topic=tocsin.harness.check3 msg out bootstrap
    bootstrap=$(kafka3_bootstrap)
    [[ $n == 1 ]] || return 0 # one cluster check for the three nodes
    out=$(kcat -L -b "$bootstrap" -m 5 2>/dev/null | grep -c '^ *broker [123] at ' || true)
    [[ $out == 3 ]] || die "kafka3: metadata lists $out brokers, expected 3"
    msg="check-$(now_us)"
    printf '%s\n' "$msg" | kcat -P -b "$bootstrap" -t "$topic" -X acks=all -m 10 ||
        die "kafka3: kcat produce (acks=all) to $topic failed"
    out=$(kcat -C -b "$bootstrap" -t "$topic" -o -20 -e -q -m 10 2>/dev/null) ||
        die "kafka3: kcat consume from $topic failed"
    grep -qx "$msg" <<<"$out" || die "kafka3: produced message not read back from $topic"
    out=$(kcat -L -b "$bootstrap" -t "$topic" -m 5 2>/dev/null | grep -m 1 'replicas: ' || true)
    [[ $out == *'replicas: '*,*,* ]] || die "kafka3: $topic is not replicated 3 times ($out)"
    info "kafka3: OK (3 brokers in the metadata; acks=all round trip on $topic, 3 replicas)"
}

kafka3_bootstrap() {
    printf '127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s' "$(kafka3_port 1)" "$(kafka3_port 2)" "$(kafka3_port 3)"
}

for _n in 1 2 3; do
    eval "provision_kafka3-$_n() { provision_kafka; }
start_kafka3-$_n() { start_kafka3 $_n; }
ready_kafka3-$_n() { ready_kafka3 $_n; }
stale_config_kafka3-$_n() { stale_config_kafka3 $_n; }
check_kafka3-$_n() { check_kafka3 $_n; }"
done

# ---------------------------------------------------------------------------------------------------------
# influxdb

provision_influxdb() {
    need_cmd curl "install curl (Debian: apt-get install curl)"
    [[ -x $INFLUXD ]] && return 0
    need_cmd "$GO" "install Go (>= 1.21) and put it on PATH (or set TOCSIN_GO) to build influxd $INFLUX_VERSION"
    local glog=$LOG_DIR/provision-influxdb-go.log t0
    mkdir -p "$LOG_DIR" "$CACHE/bin"
    t0=$(now_us)
    info "provision: building influxd $INFLUX_VERSION with go install (~2.5 min on a cold Go cache; log: $glog)"
    CGO_ENABLED=0 GOBIN=$CACHE/bin "$GO" install "github.com/influxdata/influxdb/cmd/influxd@$INFLUX_VERSION" \
        >"$glog" 2>&1 || die_with_log "$glog" "go install influxd@$INFLUX_VERSION failed, see $glog"
    [[ -x $INFLUXD ]] || die "go install influxd@$INFLUX_VERSION produced no $INFLUXD, see $glog"
    info "provision: influxd built in $(secs_since "$t0") s"
}

start_influxdb() {
    local dir=$STATE/influxdb
    ensure_ports_free influxdb "TOCSIN_INFLUX_PORT / TOCSIN_INFLUX_RPC_PORT" "$INFLUX_PORT" "$INFLUX_RPC_PORT"
    mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
    # -config /dev/null: ignore any ~/.influxdb or /etc/influxdb config; everything comes from env.
    start_daemon influxdb env \
        INFLUXDB_HTTP_BIND_ADDRESS="127.0.0.1:$INFLUX_PORT" \
        INFLUXDB_BIND_ADDRESS="127.0.0.1:$INFLUX_RPC_PORT" \
        INFLUXDB_HTTP_FLUX_ENABLED=true \
        INFLUXDB_META_DIR="$dir/meta" \
        INFLUXDB_DATA_DIR="$dir/data" \
        INFLUXDB_DATA_WAL_DIR="$dir/wal" \
        INFLUXDB_REPORTING_DISABLED=true \
        INFLUXDB_HTTP_LOG_ENABLED=false \
        INFLUXDB_DATA_QUERY_LOG_ENABLED=false \
        "$INFLUXD" run -config /dev/null -pidfile "$dir/influxd.pid"
}

influx_query() { # influxql
    curl -sS --max-time 5 -XPOST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode "q=$1"
}

ready_influxdb() {
    [[ $(http_code "http://127.0.0.1:$INFLUX_PORT/ping") == 204 ]] || return 1
    local out
    out=$(influx_query "CREATE DATABASE \"$INFLUX_DB\"" 2>&1) || return 1
    [[ $out != *'"error"'* ]] || {
        warn "influxdb: CREATE DATABASE $INFLUX_DB: $out"
        return 1
    }
}

check_influxdb() {
    local base="http://127.0.0.1:$INFLUX_PORT" code out ts
    ts=$(($(now_us) * 1000))
    code=$(http_code "$base/api/v2/write?bucket=$INFLUX_DB&org=-&precision=ns" -XPOST \
        --data-binary "harness_check,source=services.sh value=42 $ts")
    [[ $code == 204 ]] || die "influxdb: POST /api/v2/write returned HTTP $code (expected 204)"
    out=$(curl -sS --max-time 10 -XPOST "$base/api/v2/query" \
        -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' \
        --data "from(bucket: \"$INFLUX_DB\") |> range(start: -1h) |> filter(fn: (r) => r._measurement == \"harness_check\")") ||
        die "influxdb: POST /api/v2/query failed"
    grep -q ',harness_check,' <<<"$out" ||
        die "influxdb: Flux query returned no rows: $out"
    influx_query "DROP MEASUREMENT harness_check" >/dev/null 2>&1 || true
    info "influxdb: OK (v2 write 204; Flux query returned the row; bucket $INFLUX_DB)"
}

# ---------------------------------------------------------------------------------------------------------
# prometheus

provision_prometheus() {
    ensure_apt_tools promtool prometheus
    need_cmd curl "install curl (Debian: apt-get install curl)"
}

start_prometheus() {
    local dir=$STATE/prometheus out
    ensure_ports_free prometheus TOCSIN_PROMETHEUS_PORT "$PROMETHEUS_PORT"
    mkdir -p "$dir/data"
    render "$SCRIPT_DIR/prometheus/prometheus.yml" "$dir/prometheus.yml" "PROMETHEUS_PORT=$PROMETHEUS_PORT"
    out=$(promtool check config "$dir/prometheus.yml" 2>&1) ||
        die "prometheus: promtool check config rejected $dir/prometheus.yml: $out"
    start_daemon prometheus prometheus --config.file="$dir/prometheus.yml" \
        --storage.tsdb.path="$dir/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
}

ready_prometheus() {
    [[ $(http_code "http://127.0.0.1:$PROMETHEUS_PORT/-/ready") == 200 ]]
}

check_prometheus() {
    local out="" i
    # Targets show up a few seconds after start (first service-discovery sync), then get scraped.
    for ((i = 0; i < 40; i++)); do
        out=$(curl -sS --max-time 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D") ||
            die "prometheus: GET /api/v1/query failed"
        [[ $out != *'"value":['*',"1"]'* ]] || break
        sleep 0.5
    done
    [[ $out == *'"value":['*',"1"]'* ]] || die "prometheus: self-scrape up{job=\"prometheus\"} != 1 after 20 s: $out"
    info "prometheus: OK (/-/ready 200; self-scrape up{job=\"prometheus\"} == 1)"
}

# ---------------------------------------------------------------------------------------------------------
# commands

svc_ports() {
    case $1 in
        mosquitto) printf '%s,%s(auth),%s(tls)' "$MQTT_PORT" "$MQTT_SECURE_PORT" "$MQTT_TLS_PORT" ;;
        kafka)
            printf '%s,%s(controller)' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
            [[ $KAFKA_SECURE != 1 ]] || printf ',%s(sasl_ssl)' "$KAFKA_SECURE_PORT"
            ;;
        influxdb) printf '%s,%s(rpc)' "$INFLUX_PORT" "$INFLUX_RPC_PORT" ;;
        prometheus) printf '%s' "$PROMETHEUS_PORT" ;;
        kafka3-[123]) printf '%s,%s(controller)' "$(kafka3_port "${1#kafka3-}")" "$(kafka3_controller_port "${1#kafka3-}")" ;;
    esac
}

cmd_provision() {
    provision_all "$@"
    info "provision: ok ($*)"
}

after_ready() { # svc
    if declare -F "after_ready_$1" >/dev/null; then "after_ready_$1"; fi
}

# Start those of the given services that are not running yet, then poll every pending one until it is
# ready. Each service's time is measured from its own start.
start_and_wait() { # svc...
    local svc pid reason pending=() next=() kafka_retried=0
    local -A t0=() deadline=()
    for svc in "$@"; do
        t0[$svc]=$(now_us)
        if pid=$(svc_pid "$svc") && [[ ${TOCSIN_UP_NO_RESTART:-0} != 1 ]] &&
            declare -F "stale_config_$svc" >/dev/null && reason=$("stale_config_$svc"); then
            info "$svc: running (pid $pid) but $reason: restarting it"
            stop_pid "$svc" "$pid"
            "start_$svc"
        elif pid=$(svc_pid "$svc"); then
            if "ready_$svc"; then
                after_ready "$svc"
                info "$svc: already running (pid $pid) and ready, nothing to do"
                continue
            fi
            info "$svc: running (pid $pid) but not ready yet, waiting"
        else
            "start_$svc"
        fi
        deadline[$svc]=$((SECONDS + READY_TIMEOUT))
        pending+=("$svc")
    done
    while ((${#pending[@]})); do
        next=()
        for svc in "${pending[@]}"; do
            if ! svc_pid "$svc" >/dev/null 2>&1; then
                if [[ $svc == kafka ]] && ((KAFKA_FRESH == 0 && kafka_retried == 0)) &&
                    reason=$(kafka_stale_state_reason); then
                    kafka_retried=1
                    recover_kafka "$reason"
                    deadline[$svc]=$((SECONDS + READY_TIMEOUT))
                    next+=("$svc")
                    continue
                fi
                fail_start "$svc" "exited during startup, see $(log_file "$svc")"
            elif "ready_$svc"; then
                after_ready "$svc"
                info "$svc ready in $(secs_since "${t0[$svc]}") s (pid $(svc_pid "$svc"), port $(svc_ports "$svc"))"
            elif ((SECONDS >= deadline[$svc])); then
                pid=$(svc_pid "$svc" 2>/dev/null) && stop_pid "$svc" "$pid" >&2
                fail_start "$svc" "not ready after ${READY_TIMEOUT}s (stopped it), see $(log_file "$svc")"
            else
                next+=("$svc")
            fi
        done
        pending=("${next[@]}")
        ((${#pending[@]} == 0)) || sleep 0.2
    done
}

# Sequential by default: on a 2-CPU box Kafka's JVM and influxd's Flux init compete for CPU, so parallel
# boot saves nothing and blurs the per-service timings. TOCSIN_UP_PARALLEL=1 boots them together.
cmd_up() {
    local svc
    provision_all "$@"
    if [[ ${TOCSIN_UP_PARALLEL:-0} == 1 ]]; then
        start_and_wait "$@"
    else
        # The kafka3 nodes start together: none is ready before a majority of the quorum runs.
        local k3=()
        for svc in "$@"; do [[ $svc != kafka3-* ]] || k3+=("$svc"); done
        for svc in "$@"; do
            if [[ $svc != kafka3-* ]]; then
                start_and_wait "$svc"
            elif ((${#k3[@]})); then
                start_and_wait "${k3[@]}"
                k3=()
            fi
        done
    fi
}

cmd_down() {
    local svc pid i
    # kafka3 nodes get SIGTERM together: the last one stopped alone would wait for a quorum (2 of 3 voters)
    # that is gone, until the SIGKILL 20 s later.
    local -A termed=()
    for svc in "$@"; do
        [[ $svc == kafka3-* ]] && pid=$(svc_pid "$svc" 2>/dev/null) || continue
        kill -TERM "$pid" 2>/dev/null || true
        termed[$svc]=$pid
    done
    for ((i = $# ; i >= 1; i--)); do # reverse start order
        svc=${!i}
        if [[ -n ${termed[$svc]:-} ]] && ! proc_alive "${termed[$svc]}" "$svc"; then
            rm -f "$(pid_file "$svc")"
            info "$svc: stopped (pid ${termed[$svc]})"
        elif pid=$(svc_pid "$svc"); then
            stop_pid "$svc" "$pid"
        else
            info "$svc: not running, nothing to do"
        fi
    done
}

cmd_status() {
    local svc pid all=0 note
    for svc in "$@"; do
        if pid=$(svc_pid "$svc"); then
            note=""
            port_open "${MAIN_PORT[$svc]}" || note=" (not accepting connections yet)"
            printf '%-10s running  pid=%-8s port=%s%s\n' "$svc" "$pid" "$(svc_ports "$svc")" "$note"
        else
            printf '%-10s stopped  pid=%-8s port=%s\n' "$svc" - "$(svc_ports "$svc")"
            all=3
        fi
    done
    return "$all"
}

cmd_check() {
    local svc
    for svc in "$@"; do
        svc_pid "$svc" >/dev/null || die "$svc is not running (start it with: ${0##*/} up $svc)"
        "check_$svc"
    done
}

cmd_env() {
    printf 'export %s=%q\n' \
        TOCSIN_MQTT_HOST 127.0.0.1 \
        TOCSIN_MQTT_PORT "$MQTT_PORT" \
        TOCSIN_MQTT_SECURE_PORT "$MQTT_SECURE_PORT" \
        TOCSIN_MQTT_TLS_PORT "$MQTT_TLS_PORT" \
        TOCSIN_MQTT_CREDENTIALS "$STATE/mosquitto/credentials.json" \
        TOCSIN_PKI_DIR "$PKI_DIR" \
        TOCSIN_KAFKA_BOOTSTRAP "127.0.0.1:$KAFKA_PORT" \
        TOCSIN_INFLUX_URL "http://127.0.0.1:$INFLUX_PORT" \
        TOCSIN_INFLUX_BUCKET "$INFLUX_DB" \
        TOCSIN_INFLUX_ORG - \
        TOCSIN_PROMETHEUS_URL "http://127.0.0.1:$PROMETHEUS_PORT" \
        TOCSIN_KAFKA3_BOOTSTRAP "$(kafka3_bootstrap)"
    if [[ $KAFKA_SECURE == 1 ]]; then
        printf 'export %s=%q\n' \
            TOCSIN_KAFKA_SECURE_BOOTSTRAP "127.0.0.1:$KAFKA_SECURE_PORT" \
            TOCSIN_KAFKA_SCRAM_USER "$KAFKA_SCRAM_USER" \
            TOCSIN_KAFKA_SCRAM_PASSWORD_FILE "$STATE/kafka/scram.password"
    fi
}

# The console's browser tests: headless Chromium, its driver, and a CJK font for readable screenshots.
cmd_browser() {
    ensure_apt_tools chromium chromedriver
    if [[ -z $(fc-list :lang=zh 2>/dev/null) ]] && command -v apt-get >/dev/null 2>&1; then
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        info "provision: no CJK font -> apt-get install fonts-wqy-microhei"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-wqy-microhei >/dev/null 2>&1 ||
            warn "fonts-wqy-microhei not installed: screenshots will show boxes for Chinese text"
    fi
}

main() {
    local cmd=${1:-help} svc
    shift || true
    if (($# == 0)); then set -- "${ALL_SERVICES[@]}"; fi
    local expanded=()
    for svc in "$@"; do
        if [[ $svc == kafka3 ]]; then expanded+=("${KAFKA3_NODES[@]}"); else expanded+=("$svc"); fi
    done
    set -- "${expanded[@]}"
    for svc in "$@"; do
        [[ " ${ALL_SERVICES[*]} ${KAFKA3_NODES[*]} " == *" $svc "* ]] || {
            usage >&2
            die "unknown service '$svc'"
        }
    done
    case $cmd in
        provision) cmd_provision "$@" ;;
        up) take_state_lock && cmd_up "$@" ;;
        down) take_state_lock && cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        check) cmd_check "$@" ;;
        env) cmd_env ;;
        browser) cmd_browser ;;
        logs-dir) printf '%s\n' "$LOG_DIR" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            die "unknown command '$cmd'"
            ;;
    esac
}

main "$@"
