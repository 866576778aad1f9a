#!/usr/bin/env bash
# Complete sign-up flows per second (register -> verify-otp -> login OTP ->
# login token) on both storage backends, with the SMS provider writing to a
# file, at several concurrencies; and the storage round trips each flow makes,
# counted from MariaDB's and Redis's own statistics.
#
# Loopback only. Needs MariaDB/MySQL and Redis for the mysql_redis backend:
# OTPGATE_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/) and
# OTPGATE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/). A database of its
# own is created and dropped; Redis keys live under a prefix of their own.
#
# Every abuse limit is on (LIMITS=off turns them off, for comparison), with
# counts no run reaches: what is measured is their cost.
#
# Knobs: CONCURRENCY="4 16 64", SECONDS_PER_RUN=10, THREADS=2 (gateway
# worker threads), BACKENDS="embedded mysql_redis", LIMITS=on, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-"4 16 64"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
THREADS=${THREADS:-2}
BACKENDS=${BACKENDS:-"embedded mysql_redis"}
LIMITS=${LIMITS:-on}
case "$LIMITS" in
  on) limits='{ sms_per_mobile: ["5/1h"], sms_per_ip: ["100000000/1h"], sms_per_country: ["100000000/1h"], sms_global: ["100000000/24h"], verify_per_ip: ["100000000/1h"] }' ;;
  off) limits='{ sms_per_mobile: [], sms_per_ip: [], sms_per_country: [], sms_global: [], verify_per_ip: [], lockout: { burned: 0 } }' ;;
  *) echo "flows: LIMITS must be on or off" >&2; exit 1 ;;
esac
MYSQL_URL=${OTPGATE_BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3306/}
REDIS_URL=${OTPGATE_BENCH_REDIS_URL:-redis://127.0.0.1:6379/}
PORT=18190

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bin otpgate --example flow_load
fi
BIN=target/release/otpgate
LOAD=target/release/examples/flow_load

dir=$(mktemp -d -t otpgate-flows.XXXXXX)
db="otpgate_flows_$$"
gateway=""
cleanup() {
  [ -n "$gateway" ] && kill -INT "$gateway" 2>/dev/null && wait "$gateway" 2>/dev/null
  if [[ " $BACKENDS " == *" mysql_redis "* ]]; then
    mysql_cli -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# mariadb client arguments from the URL (user, password, host, port)
mysql_cli() {
  local rest="${MYSQL_URL#mysql://}" auth host
  rest="${rest%%/*}"
  if [[ "$rest" == *@* ]]; then auth="${rest%@*}"; host="${rest##*@}"; else auth=root; host="$rest"; fi
  local user="${auth%%:*}" pass=""
  [[ "$auth" == *:* ]] && pass="${auth#*:}"
  mariadb -u"$user" ${pass:+-p"$pass"} -h"${host%:*}" -P"${host##*:}" -N "$@"
}
redis_cli() { local hp="${REDIS_URL#redis://}"; hp="${hp%%/*}"; redis-cli -h "${hp%:*}" -p "${hp##*:}" "$@"; }

mysql_questions() { mysql_cli -e "SHOW GLOBAL STATUS LIKE 'Questions'" | awk '{print $2}'; }
redis_scripts() {
  redis_cli INFO commandstats | tr -d '\r' |
    awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ {n += $3} END {print n + 0}'
}

start_gateway() { # backend
  if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
    echo "flows: 127.0.0.1:$PORT is already in use" >&2; exit 1
  fi
  local storage
  case "$1" in
    embedded) storage="{ backend: embedded, sqlite_path: \"$dir/users-$RANDOM.sqlite3\" }" ;;
    mysql_redis)
      mysql_cli -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
      storage="{ backend: mysql_redis, mysql_url: \"${MYSQL_URL%/}/$db\", redis_url: \"$REDIS_URL\", redis_key_prefix: \"otpgate-flows-$$-$RANDOM:\" }" ;;
  esac
  : > "$dir/sms.jsonl"
  cat > "$dir/gateway.yaml" <<EOF
server: { listen: "127.0.0.1:$PORT", threads: $THREADS, access_log: false }
storage: $storage
sms: { provider: file, file_path: "$dir/sms.jsonl" }
jwt: { secret: "flows-bench-secret-0123456789abcdef0123" }
limits: $limits
routes: []
EOF
  (cd "$dir" && exec env -u PORT -u SECRET_KEY -u DB_USER -u DB_PASSWORD -u DB_HOST -u DB_PORT -u DB_NAME \
     -u REDIS_HOST -u REDIS_PORT OTPGATE_LOG=warn "$OLDPWD/$BIN" --config gateway.yaml \
     > "$dir/gateway.log" 2>&1) &
  gateway=$!
  for _ in $(seq 1 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && return 0
    kill -0 "$gateway" 2>/dev/null || { cat "$dir/gateway.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "flows: gateway did not start" >&2; cat "$dir/gateway.log" >&2; exit 1
}

stop_gateway() { kill -INT "$gateway" 2>/dev/null; wait "$gateway" 2>/dev/null || true; gateway=""; }

printf '%-12s %5s %8s %9s %8s %8s %7s %14s\n' backend conc flows "flows/s" "p50 ms" "p99 ms" errors "round trips"
for backend in $BACKENDS; do
  for c in $CONCURRENCY; do
    start_gateway "$backend"
    if [ "$backend" = mysql_redis ]; then q0=$(mysql_questions); r0=$(redis_scripts); fi
    line=$("$LOAD" --gateway "127.0.0.1:$PORT" --outbox "$dir/sms.jsonl" --concurrency "$c" --seconds "$SECONDS_PER_RUN")
    get() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
    trips="-"
    if [ "$backend" = mysql_redis ]; then
      q1=$(mysql_questions); r1=$(redis_scripts)
      # Questions counts this script's own status query too: subtract it.
      trips=$(awk -v q=$((q1 - q0 - 1)) -v r=$((r1 - r0)) -v f="$(get flows)" \
        'BEGIN { printf "%.2f+%.2f", q / f, r / f }')
    fi
    printf '%-12s %5s %8s %9s %8s %8s %7s %14s\n' "$backend" "$c" "$(get flows)" "$(get flows_per_s)" \
      "$(get p50_ms)" "$(get p99_ms)" "$(get errors)" "$trips"
    stop_gateway
  done
done
echo "round trips: MySQL statements + Redis scripts per complete flow (mysql_redis only);"
echo "  the counters of one send are one pipeline: several scripts, one round trip"
