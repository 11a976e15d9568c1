#!/usr/bin/env bash
# What metrics and JSON logs cost on POST /api/expense (issue 12: at most 5%).
# Release builds, loopback only; not part of CI.
#
#   benches/observability.sh            # 3 rounds of each setting, 10 s each
#   ROUNDS=5 DURATION=20s benches/observability.sh
#   SETTINGS="plain both" ROUNDS=7 benches/observability.sh           # only those settings
#   BEFORE_BIN=/path/to/older/outlook-inbox benches/observability.sh   # adds that build as "before"
#   PIN=1 benches/observability.sh      # the app on one core, the load on the other
#   LOGS=discard benches/observability.sh   # logs to /dev/null: the app's own work, without the disk's
#   THREADS=1 CONNECTIONS=1 PIN=1 benches/observability.sh   # one request at a time: CPU per request without a queue
#
# Each round starts the app afresh in every setting, in turn (starting one
# setting further along each round), so that a slow moment of the machine
# does not land on one setting only:
#   plain    LOG_FORMAT=text, no METRICS_BIND (the defaults)
#   metrics  LOG_FORMAT=text, METRICS_BIND set
#   json     LOG_FORMAT=json, no METRICS_BIND
#   both     LOG_FORMAT=json, METRICS_BIND set
#   again    the same as plain (SETTINGS="plain again"): the noise floor
# Logs go to a file, as under a container runtime. Needs wrk and curl.
# Each line also gives the app's CPU time per request. On a 2-core machine
# shared with wrk and the stand-in, req/s moves by ±15% between rounds; the
# per-round share of plain's req/s cancels some of that, and
# `cargo bench --bench observability` times the added work on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

STANDIN=127.0.0.1:18091
APP=127.0.0.1:18090
METRICS=127.0.0.1:18094
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
# PIN=1: the app on the first core, wrk and the stand-in on the second, so
# that they do not take turns on the same cores.
app_cpu="" load_cpu=""
if [ -n "${PIN:-}" ]; then app_cpu="taskset -c 0" load_cpu="taskset -c 1"; fi
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk" >&2; exit 1; }

cargo build --release --quiet --bin outlook-inbox --example bench_standin
work=$(mktemp -d)
cleanup() { kill "${app_pid:-}" "${standin_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

$load_cpu ./target/release/examples/bench_standin "$STANDIN" >"$work/standin.log" 2>&1 &
standin_pid=$!
for _ in $(seq 100); do curl -sf "http://$STANDIN/stats" >/dev/null && break; sleep 0.1; done
token=$(curl -s "http://$STANDIN/action-token?aud=api://auth-am-bench")
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"action":"approve"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

cpu_ticks() { # user + system CPU time of process $1 so far, in clock ticks
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

log_file() { # where setting $1's logs go: a file, or nowhere with LOGS=discard
  if [ "${LOGS:-file}" = discard ]; then echo /dev/null; else echo "$work/app-$1.log"; fi
}

run() { # $1 = setting name, then env assignments
  local name=$1; shift
  env CLIENT_ID=bench-client CLIENT_SECRET=bench-secret-test-only \
    AUTHORITY="http://$STANDIN/common" MAIL_API_URL="http://$STANDIN/v1.0" \
    BIND="$APP" PUBLIC_URL="http://$APP" ACTION_AUDIENCE=api://auth-am-bench \
    DATA_DIR="$work/data" "$@" $app_cpu "${BIN:-./target/release/outlook-inbox}" >"$(log_file "$name")" 2>&1 &
  app_pid=$!
  for _ in $(seq 100); do curl -sf "http://$APP/healthz" >/dev/null && break; sleep 0.1; done
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "http://$APP/api/expense")" = 200 ]
  local before; before=$(cpu_ticks "$app_pid")
  $load_cpu wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "http://$APP/api/expense" >"$work/wrk.txt"
  local used=$(( $(cpu_ticks "$app_pid") - before ))
  if grep -q "Non-2xx" "$work/wrk.txt"; then echo "FAILED: $(grep Non-2xx "$work/wrk.txt")" >&2; exit 1; fi
  if [ -n "${CHECK_METRICS:-}" ]; then
    curl -s "http://$METRICS/metrics" | grep -E '^http_requests_total\{method="POST",route="/api/expense",status="200"\}' || true
  fi
  kill "$app_pid"; wait "$app_pid" 2>/dev/null || true
  local requests; requests=$(awk '/requests in/{print $1}' "$work/wrk.txt")
  # The app's own CPU time (all its threads, the log writer's too) per
  # request. Contention moves it too (fewer requests per wake-up cost more
  # each), but it leaves out the time wrk and the stand-in take.
  local cpu_us; cpu_us=$(awk -v t="$used" -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t * 1e6 / hz / n}')
  echo "$name $(awk '/Requests\/sec/{print $2}' "$work/wrk.txt") $(awk '/^ +50%/{print $2}' "$work/wrk.txt") $(awk '/^ +99%/{print $2}' "$work/wrk.txt") $(wc -l <"$(log_file "$name")") $cpu_us" >>"$work/results"
  rm -f "$work/app-$name.log" # up to 300 MB a run
  tail -1 "$work/results"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t$THREADS -c$CONNECTIONS -d$DURATION${PIN:+; app pinned to core 0, load to core 1}"
echo "setting req/s median p99 log-lines cpu-us/request"
names=${SETTINGS:-plain metrics json both}
[ -n "${BEFORE_BIN:-}" ] && names="before $names"
# Each round starts one setting further along, so that no setting always
# runs first or last (after the others' log files have been written).
read -r -a order <<<"$names"
for round in $(seq 0 $((ROUNDS - 1))); do
  for i in "${!order[@]}"; do
    name=${order[$(( (i + round) % ${#order[@]} ))]}
    case $name in
      before) BIN="$BEFORE_BIN" run before ;;
      plain) run plain ;;
      again) run again ;; # plain once more: what the method shows for no change at all
      metrics) CHECK_METRICS=1 run metrics METRICS_BIND="$METRICS" ;;
      json) run json LOG_FORMAT=json ;;
      both) CHECK_METRICS=1 run both LOG_FORMAT=json METRICS_BIND="$METRICS" ;;
    esac
  done
done
median() { sort -n | awk '{a[NR]=$1} END{if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
echo "medians over $ROUNDS rounds: req/s, app CPU µs per request, and req/s as a share of"
echo "plain's in the same round (the machine's slow moments cancel out of that one)"
for name in $names; do
  printf '%-8s %10s %8s %8s\n' "$name" \
    "$(awk -v n="$name" '$1==n{print $2}' "$work/results" | median)" \
    "$(awk -v n="$name" '$1==n{print $6}' "$work/results" | median)" \
    "$(awk -v n="$name" '{v[$1, ++k[$1]] = $2} END{for (i = 1; i <= k[n]; i++) if (v["plain", i]) printf "%.3f\n", v[n, i] / v["plain", i]}' "$work/results" | median)"
done
