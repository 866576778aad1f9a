#!/usr/bin/env bash
# The required route over HTTPS: otpgate terminating TLS (server.tls) next to
# HAProxy terminating TLS with the same certificate and checking the same
# HS256 token (jwt_verify, as in conf/jwt.haproxy.cfg), same machine, same
# run, interleaved rounds. HTTP/1.1 with wrk, HTTP/2 with h2load. Each proxy
# runs one thread pinned to CPU 0; the load tool and the static nginx
# upstream share CPU 1. Prints req/s and the proxy's CPU time per request.
# Loopback only; everything it starts it stops.
#
#   bench/tls.sh          (OTPGATE_BIN=..., DURATION=5, ROUNDS=3, CONNS=64, STREAMS=10)
set -euo pipefail
cd "$(dirname "$0")/.."

OTPGATE_BIN=${OTPGATE_BIN:-target/release/otpgate}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
PORT_UPSTREAM=${PORT_UPSTREAM:-18281}
PORT_OTPGATE=${PORT_OTPGATE:-18286}
PORT_HAPROXY=${PORT_HAPROXY:-18284}

for tool in nginx haproxy wrk h2load curl python3 openssl taskset; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
        { echo "tls.sh: $tool is needed (apt-get install nginx-light haproxy wrk nghttp2-client)" >&2; exit 1; }
done
[[ -x $OTPGATE_BIN ]] || cargo build --release --bin otpgate
# Absolute: otpgate is started from the work directory.
OTPGATE_BIN=$(realpath "$OTPGATE_BIN")

# shellcheck source=tools/common.sh
. bench/tools/common.sh

# One certificate for both proxies.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKEN=$(python3 bench/tools/jwt.py "$SECRET" | awk -F'\t' '$1 == "good" { print $2 }')

cat >"$WORK/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 2048; }
http {
  access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p;
  fastcgi_temp_path $WORK/f; uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT_UPSTREAM; location / { return 200 "hello\n"; } }
}
NGINX
taskset -c 1 "$(command -v nginx || echo /usr/sbin/nginx)" -p "$WORK/" -c "$WORK/nginx.conf" &
PIDS+=($!)
wait_port "$PORT_UPSTREAM"

cat >"$WORK/otpgate.yaml" <<YAML
server:
  listen: "127.0.0.1:$PORT_OTPGATE"
  threads: 1
  access_log: false
  grace_period: 0s
  tls: { cert_file: "$WORK/cert.pem", key_file: "$WORK/key.pem" }
storage: { backend: embedded, sqlite_path: "$WORK/users.sqlite3" }
jwt: { secret: "$SECRET" }
routes:
  - { name: api, prefix: /api/, upstreams: ["127.0.0.1:$PORT_UPSTREAM"], auth: required }
YAML
(cd "$WORK" && OTPGATE_LOG=warn exec taskset -c 0 env -u SECRET_KEY -u PORT "$OTPGATE_BIN" --config otpgate.yaml 2>>"$WORK/otpgate.log") &
OTPGATE_PID=$!
PIDS+=("$OTPGATE_PID")

sed -e "s|bind 127.0.0.1:@PORT_HAPROXY_JWT@|bind 127.0.0.1:$PORT_HAPROXY ssl crt $WORK/haproxy.pem alpn h2,http/1.1|" \
    -e "s|@SECRET@|$SECRET|" -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|" bench/conf/jwt.haproxy.cfg >"$WORK/haproxy.cfg"
taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_port "$PORT_OTPGATE"
wait_port "$PORT_HAPROXY"

declare -A PORT=([otpgate]=$PORT_OTPGATE [haproxy]=$PORT_HAPROXY) PID=([otpgate]=$OTPGATE_PID [haproxy]=$HAPROXY_PID)
for target in otpgate haproxy; do
    for proto in --http1.1 --http2; do
        got=$(curl -s --cacert "$WORK/cert.pem" $proto -o /dev/null -w '%{http_code} %{http_version}' \
            -H "Authorization: Bearer $TOKEN" "https://localhost:${PORT[$target]}/api/x")
        [[ $got == "200 "* ]] || { echo "tls.sh: $target $proto answered $got" >&2; exit 1; }
        bad=$(curl -s --cacert "$WORK/cert.pem" $proto -o /dev/null -w '%{http_code}' "https://localhost:${PORT[$target]}/api/x")
        [[ $bad == 401 ]] || { echo "tls.sh: $target $proto let a request without a token through ($bad)" >&2; exit 1; }
    done
done

echo "otpgate $("$OTPGATE_BIN" --version) | $(haproxy -v | head -1 | cut -d' ' -f1-3) | $(nproc) cores | ${DURATION}s x $ROUNDS rounds, c=$CONNS (h2: $STREAMS streams each)"
declare -A RPS CPU
for round in $(seq 1 "$ROUNDS"); do
    for target in otpgate haproxy; do
        for proto in h1 h2; do
            url="https://127.0.0.1:${PORT[$target]}/api/x"
            before=$(ticks "${PID[$target]}")
            if [[ $proto == h1 ]]; then
                out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$url")
                requests=$(awk '/requests in/ { print $1 }' <<<"$out")
                rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
            else
                out=$(taskset -c 1 h2load -D "$DURATION" -c "$CONNS" -m "$STREAMS" -t 1 \
                    -H "authorization: Bearer $TOKEN" "$url" 2>&1)
                requests=$(awk '/^requests:/ { print $8 }' <<<"$out")
                rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' <<<"$out")
            fi
            after=$(ticks "${PID[$target]}")
            cpu=$(cpu_us_per_request $((after - before)) "$requests")
            printf '[round %d] %-8s %s %10s req/s  %6s CPU us/req\n' "$round" "$target" "$proto" "$rps" "$cpu"
            RPS[$target-$proto]+="$rps " CPU[$target-$proto]+="$cpu "
        done
    done
done
printf '\n%-8s %-5s %10s %12s\n' proxy proto req/s "CPU us/req"
for target in otpgate haproxy; do
    for proto in h1 h2; do
        printf '%-8s %-5s %10.0f %12.2f\n' "$target" "$proto" "$(median "${RPS[$target-$proto]}")" "$(median "${CPU[$target-$proto]}")"
    done
done
