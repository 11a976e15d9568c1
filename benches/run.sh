#!/usr/bin/env bash
# Load benchmarks against release builds, on loopback only. Not part of CI.
#
#   benches/run.sh            # both: /mail and /api/expense
#
# Needs wrk, ab, redis-server and curl (apt-get install -y wrk apache2-utils redis-server curl). Starts a local stand-in for
# the identity platform and Graph (examples/bench_standin.rs) and the app, both
# release builds, and prints the figures the issues ask for.
set -euo pipefail
cd "$(dirname "$0")/.."

STANDIN=127.0.0.1:18081
APP=127.0.0.1:18080
APP_REDIS=127.0.0.1:18082
REDIS_PORT=18083
DURATION=${DURATION:-10s}
command -v wrk >/dev/null && command -v ab >/dev/null && command -v redis-server >/dev/null ||
  { echo "needs wrk, ab and redis-server: apt-get install -y wrk apache2-utils redis-server" >&2; exit 1; }

cargo build --release --quiet --bin outlook-inbox --example bench_standin --example bench_seed
work=$(mktemp -d)
cleanup() { kill "${app_pid:-}" "${redis_app_pid:-}" "${standin_pid:-}" "${redis_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/bench_seed "$work/data" 300000
./target/release/examples/bench_standin "$STANDIN" >"$work/standin.log" 2>&1 &
standin_pid=$!
for _ in $(seq 100); do curl -sf "http://$STANDIN/stats" >/dev/null && break; sleep 0.1; done
CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
BIND="$APP" PUBLIC_URL="http://$APP" ACTION_AUDIENCE=api://auth-am-bench DATA_DIR="$work/data" \
./target/release/outlook-inbox >"$work/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 100); do curl -sf "http://$APP/healthz" >/dev/null && break; sleep 0.1; done

workers=$(nproc)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "app workers: $workers"

# Sign in once through the real flow (the stand-in redirects straight back).
curl -s -L -c "$work/jar" -b "$work/jar" -o /dev/null "http://$APP/signin"
cookie=$(awk '$6=="inbox_session"{print $7}' "$work/jar")
[ -n "$cookie" ] || { echo "sign-in failed" >&2; cat "$work/app.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: inbox_session=$cookie" "http://$APP/mail")" = 200 ]

# Connections the stand-in has accepted so far, counting the one this /stats request came on.
connections() { curl -s "http://$STANDIN/stats" | sed -E 's/.*"connections":([0-9]+).*/\1/'; }
# Connections opened between two readings, less the one the second reading itself came on.
opened() { echo $(( $2 - $1 - 1 )); }
median() { awk '/^ +50%/{print $2}' "$1"; }
# A scenario that expects success fails the run on any non-2xx answer (wrk counts 3xx, 4xx and 5xx together).
only_2xx() {
  if grep -q "Non-2xx or 3xx responses" "$1"; then
    echo "FAILED: $(grep 'Non-2xx or 3xx responses' "$1") in $1" >&2
    exit 1
  fi
}
requests() { awk '/requests in/{print $1}' "$1"; }

echo
echo "== /mail overhead over the upstream call (1 connection, sequential)"
wrk -t1 -c1 -d"$DURATION" --latency -H "Authorization: Bearer x" \
  "http://$STANDIN/v1.0/me/mailfolders/inbox/messages" >"$work/upstream.txt"
wrk -t1 -c1 -d"$DURATION" --latency -H "Cookie: inbox_session=$cookie" "http://$APP/mail" >"$work/mail.txt"
only_2xx "$work/upstream.txt"; only_2xx "$work/mail.txt"
echo "upstream alone: median $(median "$work/upstream.txt"), $(requests "$work/upstream.txt") requests"
echo "/mail:          median $(median "$work/mail.txt"), $(requests "$work/mail.txt") requests"

echo
echo "== /mail/{id}/body for a 50 KB newsletter over the upstream call (1 connection, sequential)"
wrk -t1 -c1 -d"$DURATION" --latency -H "Authorization: Bearer x" \
  "http://$STANDIN/v1.0/me/messages/BENCH1?\$select=body" >"$work/body_upstream.txt"
wrk -t1 -c1 -d"$DURATION" --latency -H "Cookie: inbox_session=$cookie" "http://$APP/mail/BENCH1/body" >"$work/body.txt"
only_2xx "$work/body_upstream.txt"; only_2xx "$work/body.txt"
echo "upstream alone:   median $(median "$work/body_upstream.txt"), $(requests "$work/body_upstream.txt") requests"
echo "/mail/{id}/body:  median $(median "$work/body.txt"), $(requests "$work/body.txt") requests"

echo
echo "== upstream connections opened by /mail load"
before=$(connections)
ab -q -n 10000 -c "$workers" -C "inbox_session=$cookie" "http://$APP/mail" >"$work/ab.txt"
after=$(connections)
echo "10,000 requests at concurrency $workers (ab): $(awk '/Complete requests/{print $3}' "$work/ab.txt") complete, $(awk '/Failed requests/{print $3}' "$work/ab.txt") failed, $(awk '/Requests per second/{print $4}' "$work/ab.txt") req/s; new upstream connections: $(opened "$before" "$after")"
before=$(connections)
wrk -t2 -c32 -d"$DURATION" --latency -H "Cookie: inbox_session=$cookie" "http://$APP/mail" >"$work/mail_32.txt"
only_2xx "$work/mail_32.txt"
after=$(connections)
echo "-c32: $(requests "$work/mail_32.txt") requests, $(awk '/Requests\/sec/{print $2}' "$work/mail_32.txt") req/s, median $(median "$work/mail_32.txt"); new upstream connections: $(opened "$before" "$after")"
echo "app resident memory after load: $(awk '/VmRSS/{print $2, $3}' /proc/$app_pid/status)"

echo
echo "== POST /api/expense, seed shape (no expenseId), with a valid entra token (the same token every time, as the Actions service reuses one)"
token=$(curl -s "http://$STANDIN/action-token?aud=api://auth-am-bench")
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "http://$APP/api/expense")" = 200 ]
fetches_before=$(curl -s "http://$STANDIN/stats" | sed -E 's/.*"key_fetches":([0-9]+).*/\1/')
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"action":"approve"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/post.lua" "http://$APP/api/expense" >"$work/actions.txt"
only_2xx "$work/actions.txt"
fetches_after=$(curl -s "http://$STANDIN/stats" | sed -E 's/.*"key_fetches":([0-9]+).*/\1/')
grep -E "Requests/sec|requests in|50%|99%|Non-2xx" "$work/actions.txt" || true
echo "key fetches during the run: $((fetches_after - fetches_before))"

year=$(date -u +%Y)
echo
echo "== first decisions on new expenses (SQLite; each request a different expenseId)"
cat >"$work/first.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
local threads = 0
function setup(thread) thread:set("base", threads * 150000); threads = threads + 1 end
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"expenseId":"EXP-$year-%06d","action":"approve"}', base + n))
end
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/first.lua" "http://$APP/api/expense" >"$work/first.txt"
only_2xx "$work/first.txt"
grep -E "Requests/sec|requests in|50%|99%" "$work/first.txt" || true

echo
echo "== repeated presses on a decided expense (answer: already approved)"
cat >"$work/again.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"expenseId":"EXP-$year-000001","action":"approve"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/again.lua" "http://$APP/api/expense" >"$work/again.txt"
only_2xx "$work/again.txt"
grep -E "Requests/sec|requests in|50%|99%" "$work/again.txt" || true

echo
echo "== POST /api/expense/card (auto-invoke), alone and beside first decisions"
cat >"$work/card.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"expenseId":"EXP-$year-000002"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/card.lua" "http://$APP/api/expense/card" >"$work/card.txt"
only_2xx "$work/card.txt"
echo "alone: $(awk '/Requests\/sec/{print $2}' "$work/card.txt") req/s, p50 $(median "$work/card.txt"), p99 $(awk '/^ +99%/{print $2}' "$work/card.txt")"
sed -i 's/base \* 0/base/; s/threads \* 150000/threads * 150000 + 75000/' "$work/first.lua"
wrk -t1 -c16 -d"$DURATION" --latency -s "$work/first.lua" "http://$APP/api/expense" >"$work/first_beside.txt" &
first_pid=$!
wrk -t1 -c16 -d"$DURATION" --latency -s "$work/card.lua" "http://$APP/api/expense/card" >"$work/card_beside.txt"
wait "$first_pid"
only_2xx "$work/card_beside.txt"
echo "beside first decisions ($(awk '/Requests\/sec/{print $2}' "$work/first_beside.txt") req/s of them): $(awk '/Requests\/sec/{print $2}' "$work/card_beside.txt") req/s, p50 $(median "$work/card_beside.txt"), p99 $(awk '/^ +99%/{print $2}' "$work/card_beside.txt")"
echo "app resident memory at the end: $(awk '/VmRSS/{print $2, $3}' /proc/$app_pid/status)"

echo
echo "== /mail with the Redis session store beside the cookie store (-t2 -c32)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
BIND="$APP_REDIS" PUBLIC_URL="http://$APP_REDIS" SESSION_STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
./target/release/outlook-inbox >"$work/app_redis.log" 2>&1 &
redis_app_pid=$!
for _ in $(seq 100); do curl -sf "http://$APP_REDIS/healthz" >/dev/null && break; sleep 0.1; done
curl -s -L -c "$work/jar2" -b "$work/jar2" -o /dev/null "http://$APP_REDIS/signin"
redis_cookie=$(awk '$6=="inbox_session"{print $7}' "$work/jar2")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: inbox_session=$redis_cookie" "http://$APP_REDIS/mail")" = 200 ]
echo "cookie value: ${#cookie} bytes with the cookie store, ${#redis_cookie} bytes with Redis"
for store in cookie redis; do
  if [ $store = cookie ]; then target="http://$APP/mail"; c=$cookie; else target="http://$APP_REDIS/mail"; c=$redis_cookie; fi
  wrk -t2 -c32 -d"$DURATION" --latency -H "Cookie: inbox_session=$c" "$target" >"$work/store_$store.txt"
  only_2xx "$work/store_$store.txt"
  echo "$store store: $(awk '/Requests\/sec/{print $2}' "$work/store_$store.txt") req/s, median $(median "$work/store_$store.txt"), $(grep -c 'Non-2xx' "$work/store_$store.txt") non-2xx lines"
done
