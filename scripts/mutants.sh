#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the modules .cargo/mutants.toml names:
# token verification, actions, the store, cards, the sanitizer, sessions and
# sign-in. Each mutant is judged by the whole suite. Not in CI: all ~700 mutants
# take many hours on 2 cores.
#
#   scripts/mutants.sh                      # every mutant
#   scripts/mutants.sh --shard 3/20         # a sample: every 20th mutant
#   git diff main > /tmp/d; scripts/mutants.sh --in-diff /tmp/d   # a change's mutants
#   scripts/mutants.sh --list               # what would be tried
#
# Needs cargo-mutants (cargo install cargo-mutants --locked) and redis-server;
# uses cargo-nextest when installed (it stops at a mutant's first failing test).
# Results: mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || { echo "needs cargo-mutants: cargo install cargo-mutants --locked" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server: apt-get install -y redis-server" >&2; exit 1; }

redis_dir=$(mktemp -d)
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
  --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
trap 'kill "$(cat "$redis_dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 50); do [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || { echo "the private Redis did not answer" >&2; exit 1; }
export OUTLOOK_INBOX_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"

tool=()
if command -v cargo-nextest >/dev/null; then
  tool=(--test-tool nextest)
  # The suite waits on sockets and timers more than it computes: on two
  # cores it took 86 s with nextest's default of two tests at once and 63 s
  # with eight; six leaves the builds some room.
  export NEXTEST_TEST_THREADS=${NEXTEST_TEST_THREADS:-6}
fi
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout: still summed up.
status=0
cargo mutants "${tool[@]}" "$@" || status=$?
# Where the results went: mutants.out/, or under --output's directory.
out=.
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --output|-o) out=${args[$((i + 1))]:-.} ;;
    --output=*) out=${args[$i]#--output=} ;;
  esac
done
if [ -f "$out/mutants.out/outcomes.json" ] && [[ " $* " != *" --list "* ]]; then
  OUTCOMES="$out/mutants.out/outcomes.json" python3 - <<'PY'
import json, os
o = json.load(open(os.environ["OUTCOMES"]))
counts = {k: o.get(k, 0) for k in ("caught", "missed", "timeout", "unviable")}
viable = counts["caught"] + counts["missed"] + counts["timeout"]
if viable:
    print("caught %d of %d viable mutants (%.1f%%), timeouts %d counted as caught by cargo-mutants' rules: %.1f%%; unviable %d"
          % (counts["caught"], viable, 100 * counts["caught"] / viable, counts["timeout"],
             100 * (counts["caught"] + counts["timeout"]) / viable, counts["unviable"]))
PY
fi
exit "$status"
