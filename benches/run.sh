#!/usr/bin/env bash
# Load benchmarks against release builds, on loopback only. Not part of CI.
#
#   benches/run.sh            # every scenario, about 4 minutes after the build
#   DURATION=30s benches/run.sh
#
# Needs wrk, ab, redis-server, curl and python3 (apt-get install -y wrk apache2-utils
# redis-server curl python3). Starts a local stand-in for the identity platform and
# Graph (examples/bench_standin.rs) and the app, both release builds, and prints the
# figures the issues ask for. Every scenario fails the run on any non-2xx answer and
# on any wrk socket error or timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

STANDIN=127.0.0.1:18081
APP=127.0.0.1:18080
APP_REDIS=127.0.0.1:18082
REDIS_PORT=18083
DURATION=${DURATION:-10s}
command -v wrk >/dev/null && command -v ab >/dev/null && command -v redis-server >/dev/null ||
  { echo "needs wrk, ab and redis-server: apt-get install -y wrk apache2-utils redis-server" >&2; exit 1; }

# The app is built on its own, as the Dockerfile builds it: built together
# with the examples, it would get the features the dev-dependencies turn on
# (hyper's HTTP/2 for wiremock, among others) and not be the binary that ships.
cargo build --release --quiet --bin outlook-inbox
cargo build --release --quiet --example bench_standin --example bench_seed
work=$(mktemp -d)
cleanup() {
  kill "${app_pid:-}" "${redis_app_pid:-}" "${legacy_pid:-}" "${flask_pid:-}" "${gunicorn_pid:-}" \
    "${standin_pid:-}" "${redis_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

./target/release/examples/bench_seed "$work/data" 300000
./target/release/examples/bench_standin "$STANDIN" >"$work/standin.log" 2>&1 &
standin_pid=$!
for _ in $(seq 100); do curl -sf "http://$STANDIN/stats" >/dev/null && break; sleep 0.1; done
CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
BIND="$APP" PUBLIC_URL="http://$APP" NOTIFICATIONS=webhook ACTION_AUDIENCE=api://auth-am-bench DATA_DIR="$work/data" \
./target/release/outlook-inbox >"$work/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 100); do curl -sf "http://$APP/healthz" >/dev/null && break; sleep 0.1; done

workers=$(nproc)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "app: release build, $workers workers, default log level; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
rss() { awk '/VmRSS/{r=$2} /RssAnon/{a=$2} /RssFile/{f=$2} END {printf "%.1f MiB (anon %.1f, file %.1f)", r/1024, a/1024, f/1024}' "/proc/$1/status"; }
echo "app resident memory when ready: $(rss $app_pid)"

# The session's cookies (one or more pieces) from a curl jar, as a Cookie header value.
cookie_header() { awk '$6 ~ /^inbox_session(\.[0-9]+)?$/ {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$1"; }
# Sign in once through the real flow (the stand-in redirects straight back).
curl -s -L -c "$work/jar" -b "$work/jar" -o /dev/null "http://$APP/signin"
cookie=$(cookie_header "$work/jar")
[ -n "$cookie" ] || { echo "sign-in failed" >&2; cat "$work/app.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://$APP/mail")" = 200 ]

# Connections the stand-in has accepted so far, counting the one this /stats request came on.
connections() { curl -s "http://$STANDIN/stats" | sed -E 's/.*"connections":([0-9]+).*/\1/'; }
# Connections opened between two readings, less the one the second reading itself came on.
opened() { echo $(( $2 - $1 - 1 )); }
median() { awk '/^ +50%/{print $2}' "$1"; }
p99() { awk '/^ +99%/{print $2}' "$1"; }
rate() { awk '/Requests\/sec/{print $2}' "$1"; }
requests() { awk '/requests in/{print $1}' "$1"; }
# A wrk run that expects success fails the whole run on any non-2xx answer (wrk
# counts 3xx, 4xx and 5xx together) and on any socket error or timeout.
check() {
  local f
  for f in "$@"; do
    grep -q "requests in" "$f" || { echo "FAILED: $f has no result" >&2; cat "$f" >&2; exit 1; }
    if grep -q "Non-2xx or 3xx responses" "$f"; then
      echo "FAILED: $(grep 'Non-2xx or 3xx responses' "$f") in $f" >&2; exit 1
    fi
    if grep -q "Socket errors" "$f"; then
      echo "FAILED: $(grep 'Socket errors' "$f") in $f" >&2; exit 1
    fi
  done
}
summary() { echo "$(rate "$1") req/s ($(requests "$1") requests), p50 $(median "$1"), p99 $(p99 "$1")"; }

aud=api://auth-am-bench
year=$(date -u +%Y)

echo
echo "== POST /api/expense with a fresh Entra v1 token per press (as the Actions service sends them)"
pool=40000
curl -s "http://$STANDIN/action-tokens?aud=$aud&n=$pool" >"$work/tokens.txt"
[ "$(wc -l <"$work/tokens.txt")" -ge $((pool - 1)) ] || { echo "the token pool is short" >&2; exit 1; }
# Each wrk thread cycles its own half of the pool: a token comes back only after
# 20,000 others of its thread, twice the memory of verified tokens (10,000).
# A wrk script where each of two threads cycles its own half of a token pool
# (one token a line in $1), written to $2.
pool_script() {
  cat >"$2" <<LUA
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args)
  tokens = {}
  local i = 0
  for line in io.lines("$1") do
    if i % 2 == id then tokens[#tokens + 1] = "Bearer " .. line end
    i = i + 1
  end
  n = 0
end
function request()
  n = n % #tokens + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = tokens[n]}, '{"action":"approve"}')
end
LUA
}
pool_script "$work/tokens.txt" "$work/fresh.lua"
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/fresh.lua" "http://$APP/api/expense" >"$work/fresh.txt"
check "$work/fresh.txt"
echo "$(summary "$work/fresh.txt") from a pool of $pool distinct tokens"
echo "  app resident memory now: $(rss $app_pid)"

echo
echo "== the same, one token for every press (measures the memory of verified tokens)"
token=$(head -1 "$work/tokens.txt")
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "http://$APP/api/expense")" = 200 ]
fetches_before=$(curl -s "http://$STANDIN/stats" | sed -E 's/.*"key_fetches":([0-9]+).*/\1/')
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"action":"approve"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/post.lua" "http://$APP/api/expense" >"$work/actions.txt"
check "$work/actions.txt"
fetches_after=$(curl -s "http://$STANDIN/stats" | sed -E 's/.*"key_fetches":([0-9]+).*/\1/')
echo "$(summary "$work/actions.txt"); key fetches during the run: $((fetches_after - fetches_before))"
echo "  app resident memory now: $(rss $app_pid)"

echo
echo "== /mail overhead over the upstream call (1 connection, sequential)"
wrk -t1 -c1 -d"$DURATION" --latency -H "Authorization: Bearer x" \
  "http://$STANDIN/v1.0/me/mailfolders/inbox/messages" >"$work/upstream.txt"
wrk -t1 -c1 -d"$DURATION" --latency -H "Cookie: $cookie" "http://$APP/mail" >"$work/mail.txt"
check "$work/upstream.txt" "$work/mail.txt"
echo "upstream alone: p50 $(median "$work/upstream.txt"), $(requests "$work/upstream.txt") requests"
echo "/mail:          p50 $(median "$work/mail.txt"), $(requests "$work/mail.txt") requests"
# The floor of any answer here: the app's static icon, no upstream call, no
# session. What /mail adds over the upstream call and over this floor is what
# the app can cut; the floor itself is mostly waking idle cores.
wrk -t1 -c1 -d"$DURATION" --latency "http://$APP/static/icon.svg" >"$work/static.txt"
check "$work/static.txt"
echo "a static file:  p50 $(median "$work/static.txt"), $(requests "$work/static.txt") requests"

echo
echo "== /mail/{id}/body, a 50 KB newsletter, over the upstream call (1 connection, sequential)"
wrk -t1 -c1 -d"$DURATION" --latency -H "Authorization: Bearer x" \
  "http://$STANDIN/v1.0/me/messages/BENCH1?\$select=changeKey,body" >"$work/body_upstream.txt"
# First views: a message id never read before on every request.
cat >"$work/first_view.lua" <<LUA
wrk.headers["Cookie"] = "$cookie"
local n = 0
function request() n = n + 1; return wrk.format("GET", string.format("/mail/BENCHFIRST%08d/body", n)) end
LUA
wrk -t1 -c1 -d"$DURATION" --latency -s "$work/first_view.lua" "http://$APP" >"$work/body_first.txt"
wrk -t1 -c1 -d"$DURATION" --latency -H "Cookie: $cookie" "http://$APP/mail/BENCH1/body" >"$work/body.txt"
check "$work/body_upstream.txt" "$work/body_first.txt" "$work/body.txt"
echo "upstream alone: p50 $(median "$work/body_upstream.txt"), $(requests "$work/body_upstream.txt") requests"
echo "first views:    p50 $(median "$work/body_first.txt"), $(requests "$work/body_first.txt") requests (each a new message id)"
echo "repeat views:   p50 $(median "$work/body.txt"), $(requests "$work/body.txt") requests (one message, from the reader's memory)"
echo "  app resident memory now: $(rss $app_pid)"

echo
echo "== upstream connections opened by /mail load"
before=$(connections)
ab -q -n 10000 -c "$workers" -H "Cookie: $cookie" "http://$APP/mail" >"$work/ab.txt"
after=$(connections)
[ "$(awk '/Failed requests/{print $3}' "$work/ab.txt")" = 0 ] && ! grep -q "Non-2xx" "$work/ab.txt" ||
  { echo "FAILED: ab saw failures" >&2; cat "$work/ab.txt" >&2; exit 1; }
echo "10,000 requests at concurrency $workers (ab): $(awk '/Complete requests/{print $3}' "$work/ab.txt") complete, $(awk '/Requests per second/{print $4}' "$work/ab.txt") req/s; new upstream connections: $(opened "$before" "$after")"
before=$(connections)
wrk -t2 -c32 -d"$DURATION" --latency -H "Cookie: $cookie" "http://$APP/mail" >"$work/mail_32.txt"
check "$work/mail_32.txt"
after=$(connections)
echo "-c32: $(summary "$work/mail_32.txt"); new upstream connections: $(opened "$before" "$after")"
echo "app resident memory after the /mail loads: $(rss $app_pid)"

echo
echo "== a 100 MB attachment through the app (streamed from \$value)"
att="http://$APP/mail/BENCH1/attachments/AAMkATTBIG1"
rss_before=$(awk '/VmRSS/{print $2}' "/proc/$app_pid/status")
( while kill -0 $app_pid 2>/dev/null; do awk '/VmRSS/{print $2}' "/proc/$app_pid/status"; sleep 0.02; done ) >"$work/rss_samples.txt" &
sampler=$!
for i in 1 2 3; do
  curl -s -o /dev/null -H "Cookie: $cookie" -w '%{http_code} %{size_download} %{speed_download}\n' "$att" >>"$work/download.txt"
done
kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
awk '$1 != 200 || $2 != 104857600 {print "FAILED: download answered " $1 " with " $2 " bytes"; bad=1} END {exit bad}' "$work/download.txt" >&2
rss_peak=$(sort -n "$work/rss_samples.txt" | tail -1)
echo "3 downloads: $(awk '{printf "%s%.0f MB/s", sep, $3/1e6; sep=", "}' "$work/download.txt"); RSS $((rss_before / 1024)) MiB before, peak $((rss_peak / 1024)) MiB (+$(( (rss_peak - rss_before) / 1024 )) MiB)"

echo
echo "== POST /notifications with a valid batch (one change notification, Graph's shape)"
cat >"$work/notify.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"value":[{"subscriptionId":"bench-subscription","clientState":"bench-client-state-test-only","changeType":"created","resource":"Users/00000000-0000-0000-66f3-3332eca7ea81/Messages/AAMkADnew","subscriptionExpirationDateTime":"2099-01-01T00:00:00Z","tenantId":"9188040d-6c67-4c5b-b112-36a304b66dad"}]}'
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/notify.lua" "http://$APP/notifications" >"$work/notify.txt"
check "$work/notify.txt"
echo "$(summary "$work/notify.txt")"
echo "  app resident memory now: $(rss $app_pid)"
python3 benches/live.py latency "$APP" "$STANDIN" "$cookie" 300

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
check "$work/first.txt"
echo "$(summary "$work/first.txt")"
echo "  app resident memory now: $(rss $app_pid)"

echo
echo "== repeated presses on a decided expense (answer: already approved)"
cat >"$work/again.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"expenseId":"EXP-$year-000001","action":"approve"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/again.lua" "http://$APP/api/expense" >"$work/again.txt"
check "$work/again.txt"
echo "$(summary "$work/again.txt")"
echo "  app resident memory now: $(rss $app_pid)"

echo
echo "== POST /api/expense/card (auto-invoke), alone and beside first decisions"
cat >"$work/card.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"expenseId":"EXP-$year-000002"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/card.lua" "http://$APP/api/expense/card" >"$work/card.txt"
check "$work/card.txt"
echo "alone: $(summary "$work/card.txt")"
sed -i 's/threads \* 150000/threads * 150000 + 75000/' "$work/first.lua"
wrk -t1 -c16 -d"$DURATION" --latency -s "$work/first.lua" "http://$APP/api/expense" >"$work/first_beside.txt" &
first_pid=$!
wrk -t1 -c16 -d"$DURATION" --latency -s "$work/card.lua" "http://$APP/api/expense/card" >"$work/card_beside.txt"
wait "$first_pid"
check "$work/first_beside.txt" "$work/card_beside.txt"
echo "beside first decisions ($(rate "$work/first_beside.txt") req/s of them): $(summary "$work/card_beside.txt")"
echo "app resident memory after the standard loads: $(rss $app_pid)"

echo
echo "== 1,000 open live-Inbox streams (200 sign-ins, five streams each)"
for i in $(seq 200); do
  curl -s -L -c "$work/jar_$i" -b "$work/jar_$i" -o /dev/null "http://$APP/signin"
  cookie_header "$work/jar_$i"; echo
done >"$work/stream_cookies.txt"
python3 benches/live.py streams "$APP" "$work/stream_cookies.txt" "$app_pid" 1000

echo
echo "== /mail with the Redis session store beside the cookie store (-t2 -c32)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
BIND="$APP_REDIS" PUBLIC_URL="http://$APP_REDIS" SESSION_STORE=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
DATA_DIR="$work/data_redis" ./target/release/outlook-inbox >"$work/app_redis.log" 2>&1 &
redis_app_pid=$!
for _ in $(seq 100); do curl -sf "http://$APP_REDIS/healthz" >/dev/null && break; sleep 0.1; done
curl -s -L -c "$work/jar2" -b "$work/jar2" -o /dev/null "http://$APP_REDIS/signin"
redis_cookie=$(cookie_header "$work/jar2")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $redis_cookie" "http://$APP_REDIS/mail")" = 200 ]
echo "cookie header: ${#cookie} bytes with the cookie store, ${#redis_cookie} bytes with Redis"
for store in cookie redis; do
  if [ $store = cookie ]; then target="http://$APP/mail"; c=$cookie; else target="http://$APP_REDIS/mail"; c=$redis_cookie; fi
  wrk -t2 -c32 -d"$DURATION" --latency -H "Cookie: $c" "$target" >"$work/store_$store.txt"
  check "$work/store_$store.txt"
  echo "$store store: $(summary "$work/store_$store.txt")"
done

echo
echo "== legacy (EAT) tokens, a fresh one per press: the app vs the old Flask sample (-t2 -c32)"
# The app in the legacy scheme with the sample's checks (sender, performer's
# domain), and benches/flask_sample/app.py: the sample's per-press work on
# Flask's own server as the sample runs it, then under gunicorn with one
# process a core. Both are sent the same pool of distinct tokens.
LEGACY=127.0.0.1:18084
FLASK=127.0.0.1:18085
GUNICORN=127.0.0.1:18086
CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
BIND="$LEGACY" PUBLIC_URL="http://$LEGACY" ACTION_TOKEN=legacy ACTION_KEYS_URL="http://$STANDIN/keys" \
ACTION_SENDERS=lob@contoso.com ACTION_PERFORMERS=@contoso.com DATA_DIR="$work/data_legacy" \
./target/release/outlook-inbox >"$work/app_legacy.log" 2>&1 &
legacy_pid=$!
for _ in $(seq 100); do curl -sf "http://$LEGACY/healthz" >/dev/null && break; sleep 0.1; done
curl -s "http://$STANDIN/action-tokens?aud=http://$LEGACY&n=$pool&scheme=legacy" >"$work/legacy_tokens.txt"
[ "$(wc -l <"$work/legacy_tokens.txt")" -ge $((pool - 1)) ] || { echo "the legacy token pool is short" >&2; exit 1; }
pool_script "$work/legacy_tokens.txt" "$work/legacy.lua"
wrk -t2 -c32 -d"$DURATION" --latency -s "$work/legacy.lua" "http://$LEGACY/api/expense" >"$work/legacy_app.txt"
check "$work/legacy_app.txt"
echo "the app: $(summary "$work/legacy_app.txt")"
kill "$legacy_pid"

# The sample's dependencies in a virtualenv kept between runs (PyPI is needed once).
venv=${XDG_CACHE_HOME:-$HOME/.cache}/outlook-inbox-bench/venv
if [ -x "$venv/bin/gunicorn" ] || { python3 -m venv "$venv" >/dev/null &&
  "$venv/bin/pip" install -q -r benches/flask_sample/requirements.txt >"$work/pip.log" 2>&1; }; then
  export SAMPLE_DISCOVERY_URL="http://$STANDIN/sts/common/.well-known/openid-configuration"
  export SAMPLE_SERVICE_URL="http://$LEGACY"
  (cd benches/flask_sample && SAMPLE_PORT=${FLASK##*:} exec "$venv/bin/python" app.py) >"$work/flask.log" 2>&1 &
  flask_pid=$!
  (cd benches/flask_sample && exec "$venv/bin/gunicorn" -w "$workers" -b "$GUNICORN" app:app) >"$work/gunicorn.log" 2>&1 &
  gunicorn_pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$FLASK/" && curl -s -o /dev/null "http://$GUNICORN/" && break
    sleep 0.1
  done
  wrk -t2 -c32 -d"$DURATION" --latency -s "$work/legacy.lua" "http://$FLASK/api/expense" >"$work/legacy_flask.txt"
  check "$work/legacy_flask.txt"
  echo "the Flask sample on Flask's server (app.run()): $(summary "$work/legacy_flask.txt")"
  kill "$flask_pid"
  wrk -t2 -c32 -d"$DURATION" --latency -s "$work/legacy.lua" "http://$GUNICORN/api/expense" >"$work/legacy_gunicorn.txt"
  check "$work/legacy_gunicorn.txt"
  echo "the Flask sample under gunicorn, $workers processes: $(summary "$work/legacy_gunicorn.txt")"
  awk -v a="$(rate "$work/legacy_app.txt")" -v f="$(rate "$work/legacy_flask.txt")" -v g="$(rate "$work/legacy_gunicorn.txt")" \
    'BEGIN {printf "the app is %.1f times the sample on its own server, %.1f times the sample under gunicorn\n", a / f, a / g}'
else
  echo "skipped the Flask sample: its virtualenv could not be made (PyPI unreachable?):"
  tail -3 "$work/pip.log" 2>/dev/null || true
fi
