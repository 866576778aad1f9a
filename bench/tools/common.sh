# Shared by bench/algorithms.sh and bench/tls.sh (sourced, not run): a work
# directory and the processes started, both cleaned up on exit; waiting for a
# port; a process's CPU ticks; the median of a list.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    # TERM: HAProxy in -db mode lingers on INT while clients' connections close.
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT

wait_port() {  # PORT: until something listens on 127.0.0.1:PORT (10 s at most)
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$(basename "$0"): nothing listens on $1" >&2
    exit 1
}

ticks() {  # PID: utime + stime of a process, in clock ticks
    local s; s=$(cat "/proc/$1/stat"); s=${s##*) }
    read -r -a f <<<"$s"
    echo $((f[11] + f[12]))
}

cpu_us_per_request() {  # TICKS REQUESTS
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }'
}

median() {  # "v1 v2 ...": the median value
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
