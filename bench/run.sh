#!/usr/bin/env bash
# otpgate benchmark harness: otpgate against nginx and HAProxy on loopback.
#
#   bench/run.sh                  correctness gate, then the wrk benchmark
#   bench/run.sh --check          start everything and run the correctness gate only
#   bench/run.sh --callgrind N    instructions per request under callgrind
#   bench/run.sh --help
#
# Every server runs as a child of this script, in its own `mktemp -d` directory,
# with its own config, pid file and logs, listening on 127.0.0.1 only. System
# configs and services are never touched. Everything started is stopped on exit.
# Environment knobs are listed in usage() below and in bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
CONF_DIR=$BENCH_DIR/conf
TOOLS_DIR=$BENCH_DIR/tools

# ---------------------------------------------------------------- knobs
DURATION=${DURATION:-10}          # seconds per measured run ("10" or "10s")
WARMUP=${WARMUP:-2}               # seconds of unrecorded warm-up per target and concurrency; 0 = none
ROUNDS=${ROUNDS:-5}               # interleaved rounds; the tables show medians over them
CONNS=${CONNS:-"64 256"}          # wrk connection counts
TARGETS=${TARGETS:-}              # subset of targets (space or comma separated); empty = all
PROXY_CPU=${PROXY_CPU:-0}         # core for the proxy under test
CLIENT_CPU=${CLIENT_CPU:-1}       # core for wrk
UPSTREAM_CPU=${UPSTREAM_CPU:-1}   # core(s) for the static upstream (shares wrk's core by default)
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
AUTHREQ_VALIDATOR=${AUTHREQ_VALIDATOR:-auto}  # auto | otpgate | haproxy
OTPGATE_LOG=${OTPGATE_LOG:-warn}  # otpgate's log filter: the peers log nothing per request either
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
CARGO_TARGET_DIR_=${CARGO_TARGET_DIR:-$REPO_DIR/target}
OTPGATE_BIN=${OTPGATE_BIN:-$CARGO_TARGET_DIR_/release/otpgate}
SKIP_BUILD=${SKIP_BUILD:-0}       # 1 = use the existing otpgate binary as is
SKIP_INSTALL=${SKIP_INSTALL:-0}   # 1 = never call apt-get
KEEP_TMP=${KEEP_TMP:-0}           # 1 = keep the servers' temp dirs (configs, logs)
CALLGRIND_TARGETS=${CALLGRIND_TARGETS:-"haproxy-jwt otpgate-required"}

# Fixed loopback ports (the contract of this harness; README lists them).
PORT_UPSTREAM=18081
PORT_NGINX=18082
PORT_HAPROXY=18083
PORT_HAPROXY_JWT=18084
PORT_AUTHREQ=18085
PORT_OTPGATE=18086

ALL_TARGETS=(upstream nginx haproxy haproxy-jwt nginx-authreq otpgate-public otpgate-required)

usage() {
    cat <<EOF
usage: bench/run.sh [--check | --callgrind N | --help]

Targets ($PORT_UPSTREAM..$PORT_OTPGATE on 127.0.0.1): ${ALL_TARGETS[*]}

Environment:
  DURATION=$DURATION  WARMUP=$WARMUP  ROUNDS=$ROUNDS  CONNS="$CONNS"
  TARGETS="..."            subset of the targets above (default: all)
  PROXY_CPU=$PROXY_CPU CLIENT_CPU=$CLIENT_CPU UPSTREAM_CPU=$UPSTREAM_CPU UPSTREAM_WORKERS=$UPSTREAM_WORKERS
  AUTHREQ_VALIDATOR=$AUTHREQ_VALIDATOR   validator behind nginx auth_request: auto|otpgate|haproxy
  OTPGATE_BIN=...          otpgate binary (default: target/release/otpgate, built first)
  SKIP_BUILD=1             do not run cargo build
  SKIP_INSTALL=1           do not apt-get install missing tools
  KEEP_TMP=1               keep the servers' temp dirs
  RESULTS_DIR=...          where results/<timestamp>/ goes (default: bench/results)
  CALLGRIND_TARGETS="$CALLGRIND_TARGETS"   (--callgrind; also: haproxy, otpgate-public)
EOF
}

# ---------------------------------------------------------------- output
log()  { printf '%s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
banner() {
    local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    printf '\n%s\n' "$line" >&2
    local l; for l in "$@"; do printf '!!! %s\n' "$l" >&2; done
    printf '%s\n\n' "$line" >&2
}

# ---------------------------------------------------------------- process supervision
# Every background process is registered here and stopped by the EXIT trap, even
# when the script fails half-way or is interrupted.
PIDS=()
TMPDIRS=()
declare -A STOP_SIGNAL=()  # pid -> signal that stops it quickly and cleanly
declare -A STOP_WAIT=()    # pid -> seconds to wait before SIGKILL
declare -A PID_NAME=()

pid_alive() {
    # A zombie (exited, not yet reaped) counts as dead.
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

stop_process() {
    local pid=$1 sig=${STOP_SIGNAL[$1]:-TERM} wait_s=${STOP_WAIT[$1]:-10}
    if pid_alive "$pid"; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + wait_s))
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if pid_alive "$pid"; then
            warn "${PID_NAME[$pid]:-pid $pid} did not stop on SIG$sig within ${wait_s}s: SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    # Forget it, so the EXIT trap never signals a recycled pid.
    local i
    for i in "${!PIDS[@]}"; do [[ ${PIDS[i]} == "$pid" ]] && unset 'PIDS[i]'; done
    PIDS=("${PIDS[@]}")
    return 0
}

cleanup() {
    local i
    while ((${#PIDS[@]})); do stop_process "${PIDS[-1]}"; done  # newest first
    if [[ $KEEP_TMP == 1 ]]; then
        if ((${#TMPDIRS[@]})); then log "kept temp dirs: ${TMPDIRS[*]}"; fi
    else
        for i in "${TMPDIRS[@]}"; do rm -rf -- "$i"; done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# new_tmpdir NAME: sets REPLY to a fresh private directory for one server.
new_tmpdir() {
    REPLY=$(mktemp -d "${TMPDIR:-/tmp}/otpgate-bench-$1.XXXXXX")
    # nginx workers may run as another user: let them traverse, not list.
    chmod 711 "$REPLY"
    TMPDIRS+=("$REPLY")
}

# start_bg NAME DIR SIGNAL WAIT_S CMD...: run CMD in the background, logs into DIR.
# Sets REPLY to its pid. CMD must exec (taskset/env/valgrind do), so the pid is
# the server's own pid.
start_bg() {
    local name=$1 dir=$2 sig=$3 wait_s=$4
    shift 4
    (cd "$dir" && exec "$@") >"$dir/stdout.log" 2>"$dir/stderr.log" &
    REPLY=$!
    PIDS+=("$REPLY")
    STOP_SIGNAL[$REPLY]=$sig
    STOP_WAIT[$REPLY]=$wait_s
    PID_NAME[$REPLY]=$name
}

# run_waited NAME OUTFILE CMD...: run a client (wrk, seqclient) to completion.
# Started in the background and waited for, because bash runs traps only
# between commands: a foreground wrk would delay Ctrl-C/SIGTERM handling (and
# the cleanup) until its run ends. Registered, so the cleanup stops it too.
run_waited() {
    local name=$1 outfile=$2 pid rc=0
    shift 2
    "$@" >"$outfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    PID_NAME[$pid]=$name
    wait "$pid" || rc=$?
    stop_process "$pid"  # already exited: this only unregisters it
    return "$rc"
}

port_open() {
    # Loopback connect, bounded by `timeout` in case something half-listens.
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# wait_port NAME PORT PID DEADLINE_S DIR: poll until PORT accepts, failing early
# if the process died, and showing its logs on failure.
wait_port() {
    local name=$1 port=$2 pid=$3 deadline=$((SECONDS + $4)) dir=$5
    until port_open "$port"; do
        if ! pid_alive "$pid"; then
            tail -n 30 "$dir"/*.log >&2 2>/dev/null || true
            die "$name exited before listening on 127.0.0.1:$port (logs above, dir $dir)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$dir"/*.log >&2 2>/dev/null || true
            die "$name did not listen on 127.0.0.1:$port within $4s"
        fi
        sleep 0.1
    done
}

# render TEMPLATE DEST DIR: fill the @...@ placeholders of a bench/conf template.
render() {
    local dir=$3
    sed -e "s|@DIR@|$dir|g" \
        -e "s|@SECRET@|$SECRET|g" \
        -e "s|@UPSTREAM_WORKERS@|$UPSTREAM_WORKERS|g" \
        -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
        -e "s|@PORT_NGINX@|$PORT_NGINX|g" \
        -e "s|@PORT_HAPROXY@|$PORT_HAPROXY|g" \
        -e "s|@PORT_HAPROXY_JWT@|$PORT_HAPROXY_JWT|g" \
        -e "s|@PORT_AUTHREQ@|$PORT_AUTHREQ|g" \
        -e "s|@PORT_OTPGATE@|$PORT_OTPGATE|g" \
        -e "s|@VALIDATOR_PORT@|${VALIDATOR_PORT:-}|g" \
        -e "s|@VALIDATOR_PATH@|${VALIDATOR_PATH:-}|g" \
        "$1" >"$2"
    chmod 600 "$2"  # it may hold the JWT secret
    if grep -q '@[A-Z_]*@' "$2"; then die "unfilled placeholder in $2"; fi
}

# ---------------------------------------------------------------- CPU accounting
CLK_TCK=$(getconf CLK_TCK)

# "utime stime" (clock ticks) of one process, all its threads included.
proc_ticks() {
    local s f
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "0 0"; return; }
    # Field 2 (comm) may contain spaces: split after its closing parenthesis.
    # Then f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
    s=${s##*) }
    read -r -a f <<<"$s"
    echo "${f[11]} ${f[12]}"
}

# "total system" ticks summed over the given pids and their direct children
# (nginx: master + workers). The kernel share tells syscall-heavy from
# compute-heavy proxies apart, which instruction counts (user space) cannot.
tree_ticks() {
    local user=0 sys=0 pid child u s
    for pid in "$@"; do
        # shellcheck disable=SC2013 # the children file is a space-separated pid list
        for child in "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
            read -r u s < <(proc_ticks "$child")
            user=$((user + u)) sys=$((sys + s))
        done
    done
    echo "$((user + sys)) $sys"
}

# ---------------------------------------------------------------- dependencies
APT_UPDATED=0
apt_install() {
    # apt_install PKG [ALTERNATIVE]: install PKG, or ALTERNATIVE if PKG does not exist.
    [[ $SKIP_INSTALL == 1 ]] && die "missing package $1 and SKIP_INSTALL=1"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $1"
        sudo=(sudo)
    fi
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $1"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$1" >&2 && return 0
    [[ -n ${2:-} ]] || die "apt-get install $1 failed"
    log "apt-get install $2"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$2" >&2 || die "apt-get install $2 failed"
}

# need CMD PKG [ALTERNATIVE_PKG]
need() {
    command -v "$1" >/dev/null && return 0
    # Debian puts nginx/haproxy in /usr/sbin, which a non-root PATH may lack.
    if [[ -x /usr/sbin/$1 ]]; then PATH=$PATH:/usr/sbin; return 0; fi
    apt_install "$2" "${3:-}"
    command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]] || die "$1 still missing after installing $2"
    [[ -x /usr/sbin/$1 ]] && PATH=$PATH:/usr/sbin
    return 0
}

ensure_tools() {
    need python3 python3
    need curl curl
    need taskset util-linux
    need nginx nginx-light nginx
    need haproxy haproxy
    need wrk wrk
    if [[ $MODE == callgrind ]]; then need valgrind valgrind; fi
    # Room for c=256 client connections plus as many upstream ones, and more.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    local cpus
    cpus=$(nproc)
    if ((cpus < 2)); then
        warn "only $cpus CPU: the proxy and wrk will share a core; ratios still compare, absolute numbers less so"
        PROXY_CPU=0 CLIENT_CPU=0 UPSTREAM_CPU=0
    fi
}

# HAProxy's JWT converters need HAProxy >= 2.5 built with OpenSSL.
HAPROXY_JWT_OK=1
check_haproxy_jwt() {
    local vv ver major minor
    vv=$(haproxy -vv 2>&1) || true
    ver=$(sed -n 's/^HA-\{0,1\}Proxy version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' <<<"$vv" | head -n1)
    read -r major minor <<<"$ver"
    if [[ -z ${major:-} ]] || ((major < 2 || (major == 2 && minor < 5))); then
        HAPROXY_JWT_OK=0
        banner "HAProxy ${major:-?}.${minor:-?} is too old for jwt_verify (needs >= 2.5 with OpenSSL)." \
            "The haproxy-jwt target (and an HAProxy-validated nginx-authreq) is SKIPPED." \
            "Install HAProxy >= 2.5 (e.g. the haproxy.debian.net packages) to compare against it."
    elif ! grep -qE 'USE_OPENSSL=1|\+OPENSSL' <<<"$vv"; then
        HAPROXY_JWT_OK=0
        banner "This HAProxy is built without OpenSSL: no jwt_verify. haproxy-jwt is SKIPPED."
    fi
}

# ---------------------------------------------------------------- otpgate build
OTPGATE_OK=0
build_otpgate() {
    if [[ $SKIP_BUILD != 1 ]]; then
        # pingora's zlib-ng build needs cmake (see PINGORA-NOTES).
        command -v cmake >/dev/null || apt_install cmake
        command -v cargo >/dev/null || { warn "cargo not found: cannot build otpgate"; return 1; }
        log "cargo build --release --bin otpgate (a cold build takes minutes; log: $RUN_DIR/cargo-build.log)"
        if ! (cd "$REPO_DIR" && cargo build --release --bin otpgate) >"$RUN_DIR/cargo-build.log" 2>&1; then
            tail -n 20 "$RUN_DIR/cargo-build.log" >&2
            warn "cargo build --release --bin otpgate failed"
            return 1
        fi
    fi
    [[ -x $OTPGATE_BIN ]] || { warn "no otpgate binary at $OTPGATE_BIN"; return 1; }
    OTPGATE_OK=1
}

# ---------------------------------------------------------------- target selection
declare -A T_PORT=() T_PATH=() T_AUTH=() T_JWT=() T_CPU=()
SELECTED=()

has() { local x; for x in "${@:2}"; do [[ $x == "$1" ]] && return 0; done; return 1; }

select_targets() {
    local requested=() t explicit=0
    if [[ -n $TARGETS ]]; then
        explicit=1
        read -r -a requested <<<"${TARGETS//,/ }"
        for t in "${requested[@]}"; do has "$t" "${ALL_TARGETS[@]}" || die "unknown target '$t' (known: ${ALL_TARGETS[*]})"; done
    else
        requested=("${ALL_TARGETS[@]}")
    fi

    # otpgate is needed by its own targets, and by nginx-authreq as its validator.
    local want_otpgate=0
    if has otpgate-public "${requested[@]}" || has otpgate-required "${requested[@]}"; then want_otpgate=1; fi
    if has nginx-authreq "${requested[@]}" && [[ $AUTHREQ_VALIDATOR != haproxy ]]; then want_otpgate=1; fi
    if ((want_otpgate)); then
        if ! build_otpgate; then
            if ((explicit)) && { has otpgate-public "${requested[@]}" || has otpgate-required "${requested[@]}"; }; then
                die "otpgate targets were requested but otpgate is not available"
            fi
            [[ $AUTHREQ_VALIDATOR == otpgate ]] && die "AUTHREQ_VALIDATOR=otpgate but otpgate is not available"
            banner "otpgate is NOT available (build failed or binary missing): its targets are SKIPPED." \
                "Ratios against otpgate-required will be empty."
        fi
    fi

    check_haproxy_jwt
    VALIDATOR=
    if has nginx-authreq "${requested[@]}"; then
        case $AUTHREQ_VALIDATOR in
            otpgate) VALIDATOR=otpgate ;;
            haproxy) VALIDATOR=haproxy-jwt ;;
            auto) if ((OTPGATE_OK)); then VALIDATOR=otpgate; else VALIDATOR=haproxy-jwt; fi ;;
            *) die "AUTHREQ_VALIDATOR must be auto, otpgate or haproxy" ;;
        esac
        if [[ $VALIDATOR == haproxy-jwt ]] && ((!HAPROXY_JWT_OK)); then VALIDATOR=; fi
        if [[ -z $VALIDATOR ]]; then warn "no validator available for nginx-authreq: SKIPPED"; fi
    fi

    for t in "${requested[@]}"; do
        case $t in
            otpgate-*) ((OTPGATE_OK)) || continue ;;
            haproxy-jwt) ((HAPROXY_JWT_OK)) || continue ;;
            nginx-authreq) [[ -n $VALIDATOR ]] || continue ;;
        esac
        SELECTED+=("$t")
    done
    ((${#SELECTED[@]})) || die "no target left to run"

    T_PORT=([upstream]=$PORT_UPSTREAM [nginx]=$PORT_NGINX [haproxy]=$PORT_HAPROXY
        [haproxy-jwt]=$PORT_HAPROXY_JWT [nginx-authreq]=$PORT_AUTHREQ
        [otpgate-public]=$PORT_OTPGATE [otpgate-required]=$PORT_OTPGATE)
    T_PATH=([upstream]=/ [nginx]=/ [haproxy]=/ [haproxy-jwt]=/ [nginx-authreq]=/
        [otpgate-public]=/public/ [otpgate-required]=/api/)
    # T_AUTH: the benchmark sends the token; T_JWT: the target must refuse bad tokens.
    local jwt_targets=(haproxy-jwt nginx-authreq otpgate-required)
    for t in "${ALL_TARGETS[@]}"; do
        T_AUTH[$t]=0 T_JWT[$t]=0
        if has "$t" "${jwt_targets[@]}"; then T_AUTH[$t]=1 T_JWT[$t]=1; fi
    done
}

# ---------------------------------------------------------------- servers
declare -A SERVER_PID=() SERVER_DIR=()

start_nginx() {  # NAME TEMPLATE PORT CPU
    local name=$1 tpl=$2 port=$3 cpu=$4 dir
    new_tmpdir "$name"; dir=$REPLY
    render "$CONF_DIR/$tpl" "$dir/nginx.conf" "$dir"
    # -e: the error log used before the config is read (the compiled-in one is stderr
    # or /var/log/nginx); -p: prefix, so nothing resolves into system paths.
    if ! nginx -q -t -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" 2>"$dir/check.log"; then
        cat "$dir/check.log" >&2
        die "nginx config for $name is invalid ($dir/nginx.conf)"
    fi
    # SIGTERM = nginx fast shutdown of master and workers.
    start_bg "$name" "$dir" TERM 10 taskset -c "$cpu" nginx -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf"
    SERVER_PID[$name]=$REPLY SERVER_DIR[$name]=$dir
    wait_port "$name" "$port" "$REPLY" 20 "$dir"
}

# start_haproxy NAME TEMPLATE PORT [WRAPPER...]: WRAPPER is e.g. valgrind.
start_haproxy() {
    local name=$1 tpl=$2 port=$3 dir
    shift 3
    new_tmpdir "$name"; dir=$REPLY
    render "$CONF_DIR/$tpl" "$dir/haproxy.cfg" "$dir"
    if ! haproxy -q -c -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1; then
        cat "$dir/check.log" >&2
        die "haproxy config for $name is invalid ($dir/haproxy.cfg)"
    fi
    # -db: foreground, no daemon, no master-worker: one process, one thread.
    local wait_s=10; (($#)) && wait_s=120
    start_bg "$name" "$dir" TERM "$wait_s" taskset -c "$PROXY_CPU" "$@" haproxy -db -f "$dir/haproxy.cfg"
    SERVER_PID[$name]=$REPLY SERVER_DIR[$name]=$dir
    wait_port "$name" "$port" "$REPLY" $(($# ? 120 : 20)) "$dir"
}

# The seed's .env variables override the YAML (SPEC section 1): make sure none
# leaks in from this shell, and run from the temp dir so no stray .env is read.
OTPGATE_ENV_UNSET=(-u PORT -u SECRET_KEY -u DB_USER -u DB_PASSWORD -u DB_NAME -u DB_HOST -u DB_PORT
    -u REDIS_HOST -u REDIS_PORT -u OTP_EXPIRY -u TWILIO_ACCOUNT_SID -u TWILIO_AUTH_TOKEN -u TWILIO_PHONE_NUMBER)

start_otpgate() {  # [WRAPPER...]
    local name=otpgate dir
    new_tmpdir "$name"; dir=$REPLY
    render "$CONF_DIR/otpgate.yaml" "$dir/otpgate.yaml" "$dir"
    if ! (cd "$dir" && env "${OTPGATE_ENV_UNSET[@]}" "$OTPGATE_BIN" check --config "$dir/otpgate.yaml") >"$dir/check.log" 2>&1; then
        cat "$dir/check.log" >&2
        die "otpgate check refused the bench config ($dir/otpgate.yaml)"
    fi
    # SIGINT: pingora's fast shutdown (SIGTERM would wait the grace period).
    local wait_s=15; (($#)) && wait_s=120
    start_bg "$name" "$dir" INT "$wait_s" taskset -c "$PROXY_CPU" \
        env "${OTPGATE_ENV_UNSET[@]}" OTPGATE_LOG="$OTPGATE_LOG" RUST_LOG="$OTPGATE_LOG" \
        "$@" "$OTPGATE_BIN" --config "$dir/otpgate.yaml"
    SERVER_PID[$name]=$REPLY SERVER_DIR[$name]=$dir
    wait_port "$name" "$PORT_OTPGATE" "$REPLY" $(($# ? 180 : 60)) "$dir"
}

start_servers() {
    local need_otpgate=0 need_hjwt=0
    has otpgate-public "${SELECTED[@]}" && need_otpgate=1
    has otpgate-required "${SELECTED[@]}" && need_otpgate=1
    has haproxy-jwt "${SELECTED[@]}" && need_hjwt=1
    if has nginx-authreq "${SELECTED[@]}"; then
        [[ $VALIDATOR == otpgate ]] && need_otpgate=1
        [[ $VALIDATOR == haproxy-jwt ]] && need_hjwt=1
    fi

    # Refuse to run against something that already listens on our ports.
    local p
    for p in $PORT_UPSTREAM $PORT_NGINX $PORT_HAPROXY $PORT_HAPROXY_JWT $PORT_AUTHREQ $PORT_OTPGATE; do
        port_open "$p" && die "127.0.0.1:$p is already in use by another process; stop it first"
    done

    start_nginx upstream upstream.nginx.conf "$PORT_UPSTREAM" "$UPSTREAM_CPU"
    if has nginx "${SELECTED[@]}"; then start_nginx nginx proxy.nginx.conf "$PORT_NGINX" "$PROXY_CPU"; fi
    if has haproxy "${SELECTED[@]}"; then start_haproxy haproxy plain.haproxy.cfg "$PORT_HAPROXY"; fi
    if ((need_hjwt)); then start_haproxy haproxy-jwt jwt.haproxy.cfg "$PORT_HAPROXY_JWT"; fi
    if ((need_otpgate)); then start_otpgate; fi
    if has nginx-authreq "${SELECTED[@]}"; then
        # The validator answers 2xx to a valid token, 401 otherwise: otpgate's
        # `required` route (forwarded to the upstream) or HAProxy's jwt frontend.
        if [[ $VALIDATOR == otpgate ]]; then
            VALIDATOR_PORT=$PORT_OTPGATE VALIDATOR_PATH=/api/auth-check
        else
            VALIDATOR_PORT=$PORT_HAPROXY_JWT VALIDATOR_PATH=/auth-check
        fi
        start_nginx nginx-authreq authreq.nginx.conf "$PORT_AUTHREQ" "$PROXY_CPU"
    fi

    # Which processes' CPU each target is charged with.
    T_CPU=([upstream]="${SERVER_PID[upstream]}")
    local t
    for t in nginx haproxy haproxy-jwt; do
        [[ -n ${SERVER_PID[$t]:-} ]] && T_CPU[$t]=${SERVER_PID[$t]}
    done
    [[ -n ${SERVER_PID[otpgate]:-} ]] && T_CPU[otpgate-public]=${SERVER_PID[otpgate]} T_CPU[otpgate-required]=${SERVER_PID[otpgate]}
    if [[ -n ${SERVER_PID[nginx-authreq]:-} ]]; then
        # auth_request does the JWT work in the validator: charge both.
        T_CPU[nginx-authreq]="${SERVER_PID[nginx-authreq]} ${SERVER_PID[$VALIDATOR]}"
    fi
}

# ---------------------------------------------------------------- tokens
declare -A TOKEN=()
mint_tokens() {
    # 48 random bytes of secret, as URL-safe text so it fits every config syntax.
    SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(36))')
    ((${#SECRET} == 48)) || die "secret generation failed"
    local kind tok
    while IFS=$'\t' read -r kind tok; do TOKEN[$kind]=$tok; done < <(python3 "$TOOLS_DIR/jwt.py" "$SECRET")
    [[ -n ${TOKEN[good]:-} ]] || die "token minting failed"
}

# ---------------------------------------------------------------- correctness gate
# http_status TARGET TOKEN_KIND BODY_FILE [MAX_SECONDS]: prints the status code
# ("missing" = no Authorization header). --noproxy: never go through an http_proxy.
http_status() {
    local t=$1 kind=$2 body=$3 max=${4:-5} hdr=()
    [[ $kind != missing ]] && hdr=(-H "Authorization: Bearer ${TOKEN[$kind]}")
    curl -s --noproxy '*' --max-time "$max" -o "$body" -w '%{http_code}' "${hdr[@]}" \
        "http://127.0.0.1:${T_PORT[$t]}${T_PATH[$t]}" || true
}

# Wait until each target answers the good request with 200 (upstream health
# checks, pools warming up), with a deadline, instead of a fixed sleep.
wait_ready() {
    local t code deadline body=$RUN_DIR/.body
    for t in "${SELECTED[@]}"; do
        deadline=$((SECONDS + 30))
        while :; do
            code=$(http_status "$t" good "$body")
            [[ $code == 200 ]] && break
            ((SECONDS < deadline)) || die "$t never answered 200 to a good request (last status $code)"
            sleep 0.2
        done
    done
    rm -f "$body"
}

# A benchmark of a gateway that accepts bad tokens is void: every JWT-checking
# target must pass a good token to the upstream and refuse each bad one with 401.
correctness_gate() {
    local bad_kinds=(expired wrong_key wrong_iss wrong_aud alg_none not_yet_valid malformed missing)
    local t kind code body=$RUN_DIR/.body failed=0 line
    log ""
    log "correctness gate (expect: good=200 with the upstream's body, every bad token=401)"
    for t in "${SELECTED[@]}"; do
        line=$(printf '  %-17s' "$t")
        code=$(http_status "$t" good "$body")
        if [[ $code == 200 && $(cat "$body") == hello ]]; then
            line+=" good=200"
        else
            line+=" good=$code(FAIL)"; failed=1
            log "  $t: good token got $code, body: $(head -c 200 "$body" 2>/dev/null)"
        fi
        if ((T_JWT[$t])); then
            for kind in "${bad_kinds[@]}"; do
                code=$(http_status "$t" "$kind" "$body")
                if [[ $code == 401 ]]; then
                    line+=" $kind=401"
                else
                    line+=" $kind=$code(FAIL)"; failed=1
                    if [[ $code == 2* ]]; then
                        banner "$t ACCEPTED A BAD TOKEN ($kind): status $code" \
                            "token: ${TOKEN[$kind]:-<none>}"
                    fi
                fi
            done
        fi
        log "$line"
    done
    rm -f "$body"
    ((failed == 0)) || die "correctness gate failed: no benchmark of a gateway that misbehaves"
    log "correctness gate passed"
}

# ---------------------------------------------------------------- measurement
CSV_HEADER=round,conns,target,duration_s,requests,rps,p50_us,p99_us,cpu_ticks,sys_ticks,clk_tck,cpu_us_per_req,core_pct,sys_pct,non2xx,sock_errors,cpu_processes

# run_wrk ROUND CONNS TARGET SECONDS RECORD(0/1)
run_wrk() {
    local round=$1 conns=$2 t=$3 secs=$4 record=$5
    local url="http://127.0.0.1:${T_PORT[$t]}${T_PATH[$t]}"
    local args=(-t1 -c"$conns" -d"${secs}s" --timeout 5s --latency -s "$TOOLS_DIR/wrk-report.lua")
    ((T_AUTH[$t])) && args+=(-H "Authorization: Bearer ${TOKEN[good]}")
    local pids=${T_CPU[$t]} t0 t1 s0 s1 out outfile=$RUN_DIR/wrk/r${round}-c${conns}-${t}.txt
    ((record)) || outfile=$RUN_DIR/wrk/warmup.txt
    # shellcheck disable=SC2086 # pids is a space-separated list on purpose
    read -r t0 s0 < <(tree_ticks $pids)
    if ! run_waited wrk "$outfile" timeout $((secs + 30)) taskset -c "$CLIENT_CPU" wrk "${args[@]}" "$url"; then
        cat "$outfile" >&2
        die "wrk failed against $t"
    fi
    # shellcheck disable=SC2086
    read -r t1 s1 < <(tree_ticks $pids)
    out=$(<"$outfile")
    ((record)) || return 0

    # The Lua hook's line: "WRKRESULT requests=.. duration_us=.. p50_us=.. ...".
    local res kv
    local -A w=()
    res=$(grep '^WRKRESULT ' <<<"$out") || die "no WRKRESULT line from wrk for $t"
    for kv in ${res#WRKRESULT }; do w[${kv%%=*}]=${kv#*=}; done
    local requests=${w[requests]} duration_us=${w[duration_us]} p50=${w[p50_us]} p99=${w[p99_us]}
    local non2xx=${w[non2xx]} sockerr=${w[sock_errors]}
    local ticks=$((t1 - t0)) sys_ticks=$((s1 - s0))
    local row
    row=$(awk -v r="$round" -v c="$conns" -v t="$t" -v n="$requests" -v d="$duration_us" \
        -v p50="$p50" -v p99="$p99" -v tk="$ticks" -v sk="$sys_ticks" -v hz="$CLK_TCK" \
        -v e="$non2xx" -v s="$sockerr" -v procs="${pids// /+}" 'BEGIN {
            secs = d / 1e6
            rps = (secs > 0) ? n / secs : 0
            cpu = (n > 0) ? tk * 1e6 / hz / n : 0
            core = (secs > 0) ? 100 * tk / hz / secs : 0
            sys = (tk > 0) ? 100 * sk / tk : 0
            printf "%d,%d,%s,%.3f,%d,%.1f,%d,%d,%d,%d,%d,%.2f,%.1f,%.1f,%d,%d,%s\n",
                r, c, t, secs, n, rps, p50, p99, tk, sk, hz, cpu, core, sys, e, s, procs
        }')
    printf '%s\n' "$row" >>"$RUN_DIR/raw.csv"
    local f
    IFS=, read -r -a f <<<"$row"
    local msg
    msg=$(printf '[round %s/%s] c=%-4s %-17s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %7.2f µs/req (%3.0f%% of a core)' \
        "$round" "$ROUNDS" "$conns" "$t" "${f[5]}" "$(awk -v x="$p50" 'BEGIN{print x/1000}')" \
        "$(awk -v x="$p99" 'BEGIN{print x/1000}')" "${f[11]}" "${f[12]}")
    ((non2xx + sockerr)) && msg+="  !! $non2xx non-2xx, $sockerr socket errors"
    log "$msg"
}

write_meta() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "kernel: $(uname -sr)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
        echo "nginx: $(nginx -v 2>&1 | sed 's/.*\///')"
        echo "haproxy: $(haproxy -v 2>&1 | head -n1) (jwt_verify usable: $HAPROXY_JWT_OK)"
        echo "wrk: $(wrk -v 2>&1 | head -n1)"
        [[ $MODE == callgrind ]] && echo "valgrind: $(valgrind --version)"
        ((OTPGATE_OK)) && echo "otpgate: $OTPGATE_BIN ($(stat -c %y "$OTPGATE_BIN"))"
        echo "targets: ${SELECTED[*]}"
        echo "nginx-authreq validator: ${VALIDATOR:-none}"
        echo "DURATION=$DUR WARMUP=$WARMUP ROUNDS=$ROUNDS CONNS=\"$CONNS\""
        echo "PROXY_CPU=$PROXY_CPU CLIENT_CPU=$CLIENT_CPU UPSTREAM_CPU=$UPSTREAM_CPU UPSTREAM_WORKERS=$UPSTREAM_WORKERS"
    } >"$RUN_DIR/meta.txt"
}

benchmark() {
    local conns t round n_runs
    read -r -a CONN_LIST <<<"${CONNS//,/ }"
    n_runs=$((ROUNDS * ${#CONN_LIST[@]} * ${#SELECTED[@]}))
    log ""
    log "benchmark: $n_runs runs of ${DUR}s (+ ${WARMUP}s warm-up per target and concurrency),"
    log "  about $(((n_runs * (DUR + 1) + ${#CONN_LIST[@]} * ${#SELECTED[@]} * (WARMUP + 1)) / 60 + 1)) min"
    mkdir -p "$RUN_DIR/wrk"
    echo "$CSV_HEADER" >"$RUN_DIR/raw.csv"
    if ((WARMUP > 0)); then
        for conns in "${CONN_LIST[@]}"; do
            for t in "${SELECTED[@]}"; do run_wrk 0 "$conns" "$t" "$WARMUP" 0; done
        done
        rm -f "$RUN_DIR/wrk/warmup.txt"
    fi
    # Interleaved: each round visits every target, so slow drifts of the machine
    # (thermal, noisy neighbours) spread over all targets instead of biasing one.
    for ((round = 1; round <= ROUNDS; round++)); do
        for conns in "${CONN_LIST[@]}"; do
            for t in "${SELECTED[@]}"; do run_wrk "$round" "$conns" "$t" "$DUR" 1; done
        done
    done
    python3 "$TOOLS_DIR/report.py" "$RUN_DIR/raw.csv" | tee "$RUN_DIR/summary.txt"
    log ""
    log "results: $RUN_DIR (raw.csv, summary.txt, meta.txt, wrk/)"
}

# ---------------------------------------------------------------- callgrind mode
# Instructions per request, start-up cancelled out: each target is run twice under
# callgrind, with N and with 2N requests (plus the same readiness probe), and
#   instructions/request = (Ir(2N) - Ir(N)) / N.
callgrind_total() {
    # The totals line of a callgrind output file (Ir, the first event).
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

callgrind_one() {  # TARGET COUNT: sets REPLY to the Ir total of one run
    local t=$1 count=$2 out name
    case $t in
        haproxy | haproxy-jwt) name=$t ;;
        otpgate-*) name=otpgate ;;
    esac
    # Relative output path: valgrind's working directory is the server's temp dir.
    local vg=(valgrind --tool=callgrind --callgrind-out-file=callgrind.out)
    case $t in
        haproxy) start_haproxy haproxy plain.haproxy.cfg "$PORT_HAPROXY" "${vg[@]}" ;;
        haproxy-jwt) start_haproxy haproxy-jwt jwt.haproxy.cfg "$PORT_HAPROXY_JWT" "${vg[@]}" ;;
        otpgate-*) start_otpgate "${vg[@]}" ;;
    esac
    local pid=${SERVER_PID[$name]} dir=${SERVER_DIR[$name]}
    out=$dir/callgrind.out
    local hdr=()
    ((T_AUTH[$t])) && hdr=("Bearer ${TOKEN[good]}")
    # Same readiness probe in both runs (1 request, retried until 200), with a
    # long per-request limit so a slow first answer under valgrind is not retried.
    local deadline=$((SECONDS + 120)) body=$dir/.body
    until [[ $(http_status "$t" good "$body" 60) == 200 ]]; do
        ((SECONDS < deadline)) || die "$t under callgrind never answered 200"
        sleep 0.5
    done
    log "  $t: $count requests under callgrind"
    if ! run_waited seqclient "$dir/seqclient.log" timeout 3600 \
        python3 "$TOOLS_DIR/seqclient.py" 127.0.0.1 "${T_PORT[$t]}" "${T_PATH[$t]}" "$count" "${hdr[@]}"; then
        cat "$dir/seqclient.log" >&2
        die "sequential client failed against $t"
    fi
    stop_process "$pid"
    local total
    total=$(callgrind_total "$out")
    [[ -n $total ]] || die "no callgrind totals in $out"
    cp "$out" "$RUN_DIR/callgrind.out.$t.$count"
    REPLY=$total
}

callgrind_mode() {
    local n=$1 t a b
    read -r -a CG_LIST <<<"${CALLGRIND_TARGETS//,/ }"
    for t in "${CG_LIST[@]}"; do
        has "$t" haproxy haproxy-jwt otpgate-public otpgate-required ||
            die "--callgrind supports haproxy, haproxy-jwt, otpgate-public, otpgate-required (not $t)"
    done
    TARGETS="${CG_LIST[*]}"
    select_targets
    # Upstream only: the callgrind targets are started one at a time below.
    for p in $PORT_UPSTREAM $PORT_HAPROXY $PORT_HAPROXY_JWT $PORT_OTPGATE; do
        port_open "$p" && die "127.0.0.1:$p is already in use by another process; stop it first"
    done
    start_nginx upstream upstream.nginx.conf "$PORT_UPSTREAM" "$UPSTREAM_CPU"
    write_meta
    local summary=$RUN_DIR/callgrind-summary.txt
    printf '%-18s %12s %16s %16s %14s\n' target N "Ir(N)" "Ir(2N)" "Ir/request" | tee "$summary"
    declare -A per_req=()
    for t in "${SELECTED[@]}"; do
        callgrind_one "$t" "$n"; a=$REPLY
        callgrind_one "$t" $((2 * n)); b=$REPLY
        per_req[$t]=$(((b - a) / n))
        printf '%-18s %12d %16d %16d %14d\n' "$t" "$n" "$a" "$b" "${per_req[$t]}" | tee -a "$summary"
    done
    if [[ -n ${per_req[otpgate-required]:-} && -n ${per_req[haproxy-jwt]:-} ]]; then
        awk -v o="${per_req[otpgate-required]}" -v h="${per_req[haproxy-jwt]}" \
            'BEGIN { printf "otpgate-required / haproxy-jwt instructions per request: %.2f\n", o / h }' | tee -a "$summary"
    fi
    log "results: $RUN_DIR (callgrind-summary.txt, callgrind.out.*; open with callgrind_annotate)"
}

# ---------------------------------------------------------------- main
MODE=bench
CALLGRIND_N=
while (($#)); do
    case $1 in
        --check) MODE=check ;;
        --callgrind)
            MODE=callgrind
            CALLGRIND_N=${2:-}
            [[ $CALLGRIND_N =~ ^[1-9][0-9]*$ ]] || die "--callgrind needs a request count N"
            shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

DUR=${DURATION%s}
[[ $DUR =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds, e.g. 10 or 10s"
WARMUP=${WARMUP%s}
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be whole seconds"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

RUN_DIR=$RESULTS_DIR/$(date +%Y%m%d-%H%M%S)-$MODE
mkdir -p "$RUN_DIR"
ensure_tools
mint_tokens

if [[ $MODE == callgrind ]]; then
    callgrind_mode "$CALLGRIND_N"
    exit 0
fi

select_targets
start_servers
write_meta
wait_ready
correctness_gate
[[ $MODE == check ]] && exit 0
benchmark
