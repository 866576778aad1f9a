#!/usr/bin/env bash
# The required route under each signing algorithm: HS256, RS256, ES256 and
# EdDSA, same machine, same run, interleaved rounds. For each algorithm it
# makes a key (otpgate keygen), starts otpgate (one worker thread, pinned to
# CPU 0) in front of a static nginx upstream, logs a user in through the real
# OTP flow for a token, and runs wrk (CPU 1) against /api/ with that token.
# Prints req/s and the gateway's CPU time per request, and each algorithm's
# ratio to HS256. Loopback only; everything it starts it stops.
#
#   bench/algorithms.sh            (OTPGATE_BIN=..., DURATION=5, ROUNDS=3, CONNS=64)
set -euo pipefail
cd "$(dirname "$0")/.."

OTPGATE_BIN=${OTPGATE_BIN:-target/release/otpgate}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PORT_UPSTREAM=${PORT_UPSTREAM:-18181}
PORT_GATEWAY=${PORT_GATEWAY:-18186}
ALGORITHMS=(HS256 RS256 ES256 EdDSA)

for tool in nginx wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "algorithms.sh: $tool is needed" >&2; exit 1; }
done
if [[ ! -x $OTPGATE_BIN ]]; then
    cargo build --release --bin otpgate
fi
# Absolute: otpgate is started from its work directory.
OTPGATE_BIN=$(realpath "$OTPGATE_BIN")

# shellcheck source=tools/common.sh
. bench/tools/common.sh

cat >"$WORK/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p;
  fastcgi_temp_path $WORK/f; uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  server { listen 127.0.0.1:$PORT_UPSTREAM; location / { return 200 "hello\n"; } }
}
NGINX
taskset -c 1 "$(command -v nginx || echo /usr/sbin/nginx)" -p "$WORK/" -c "$WORK/nginx.conf" &
PIDS+=($!)
wait_port "$PORT_UPSTREAM"

SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A TOKEN
start_gateway() {  # ALG: starts otpgate for ALG, sets GATEWAY_PID
    local alg=$1 dir=$WORK/$1 jwt
    mkdir -p "$dir"
    if [[ $alg == HS256 ]]; then
        jwt="{ algorithm: HS256, secret: \"$SECRET\" }"
    else
        [[ -e $dir/k.pem ]] || env -u SECRET_KEY "$OTPGATE_BIN" keygen --algorithm "$alg" --out "$dir" --kid k >/dev/null
        jwt="{ algorithm: $alg, secret: \"$SECRET\", keys: [{ kid: k, private_key_file: \"$dir/k.pem\" }] }"
    fi
    cat >"$dir/gateway.yaml" <<YAML
server: { listen: "127.0.0.1:$PORT_GATEWAY", threads: 1, access_log: false, grace_period: 0s }
storage: { backend: embedded, sqlite_path: "$dir/users.sqlite3" }
otp: { cooldown: 0s }
sms: { provider: file, file_path: "$dir/sms.jsonl" }
jwt: $jwt
routes:
  - { name: api, prefix: /api/, upstreams: ["127.0.0.1:$PORT_UPSTREAM"], auth: required }
YAML
    (cd "$dir" && OTPGATE_LOG=warn exec taskset -c 0 env -u SECRET_KEY -u PORT "$OTPGATE_BIN" --config gateway.yaml 2>>"$dir/stderr.log") &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    wait_port "$PORT_GATEWAY"
}

otp_of() {  # DIR MOBILE PURPOSE: the newest OTP in the SMS file
    python3 -c 'import json,sys
print([m for m in map(json.loads, open(sys.argv[1])) if m["to"]==sys.argv[2] and m["purpose"]==sys.argv[3]][-1]["otp"])' "$@"
}

login() {  # ALG: a token from the real flow
    local dir=$WORK/$1 url=http://127.0.0.1:$PORT_GATEWAY m=+15550009999 json=(-s -H 'Content-Type: application/json')
    curl "${json[@]}" "$url/register" -d "{\"mobile\":\"$m\",\"first_name\":\"B\",\"last_name\":\"M\",\"email\":\"b@example.com\"}" >/dev/null
    curl "${json[@]}" "$url/verify-otp" -d "{\"mobile\":\"$m\",\"otp\":\"$(otp_of "$dir/sms.jsonl" "$m" register)\"}" >/dev/null
    curl "${json[@]}" "$url/login" -d "{\"mobile\":\"$m\"}" >/dev/null
    curl "${json[@]}" "$url/login" -d "{\"mobile\":\"$m\",\"otp\":\"$(otp_of "$dir/sms.jsonl" "$m" login)\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

echo "otpgate $("$OTPGATE_BIN" --version) | wrk -t1 -c$CONNS -d${DURATION}s x $ROUNDS rounds | $(nproc) cores"
declare -A RPS CPU
for round in $(seq 1 "$ROUNDS"); do
    for alg in "${ALGORITHMS[@]}"; do
        start_gateway "$alg"
        TOKEN[$alg]=${TOKEN[$alg]:-$(login "$alg")}
        [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKEN[$alg]}" "http://127.0.0.1:$PORT_GATEWAY/api/x") == 200 ]] ||
            { echo "algorithms.sh: $alg token refused" >&2; exit 1; }
        before=$(ticks "$GATEWAY_PID")
        out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer ${TOKEN[$alg]}" "http://127.0.0.1:$PORT_GATEWAY/api/x")
        after=$(ticks "$GATEWAY_PID")
        requests=$(awk '/requests in/ { print $1 }' <<<"$out")
        rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
        cpu=$(cpu_us_per_request $((after - before)) "$requests")
        printf '[round %d] %-6s %10s req/s  %6s CPU us/req\n' "$round" "$alg" "$rps" "$cpu"
        RPS[$alg]+="$rps " CPU[$alg]+="$cpu "
        kill -INT "$GATEWAY_PID"; wait "$GATEWAY_PID" 2>/dev/null || true
    done
done
printf '\n%-6s %10s %12s %10s %10s\n' alg req/s "CPU us/req" "rps/HS256" "cpu/HS256"
base_rps=$(median "${RPS[HS256]}") base_cpu=$(median "${CPU[HS256]}")
for alg in "${ALGORITHMS[@]}"; do
    r=$(median "${RPS[$alg]}") c=$(median "${CPU[$alg]}")
    awk -v a="$alg" -v r="$r" -v c="$c" -v br="$base_rps" -v bc="$base_cpu" \
        'BEGIN { printf "%-6s %10.0f %12.2f %10.2f %10.2f\n", a, r, c, r / br, c / bc }'
done
