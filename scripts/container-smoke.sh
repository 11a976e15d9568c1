#!/usr/bin/env bash
# Runs the demo inside a container the way the Dockerfile's runtime stage
# does: a shell-less image holding the release binary, glibc and libgcc, run as
# user 65532 with DATA_DIR=/data on a volume and `outlook-inbox healthcheck`
# as its HEALTHCHECK. Then it checks the health check, the pages, a graceful
# `stop`, and prints the image's size.
#
#   scripts/container-smoke.sh          # needs podman (apt-get install -y podman runc)
#   IMAGE=outlook-inbox scripts/container-smoke.sh   # an image `podman build --format docker .` made
#
# Without IMAGE, it does not run `docker build .`: the Dockerfile starts FROM
# rust:…-slim-bookworm and gcr.io/distroless/cc-debian12, and a machine
# without access to those registries cannot pull them. It assembles the same
# runtime layout from this Debian 12 host (distroless cc-debian12 carries
# Debian 12's glibc too) and the binary built here. That does not exercise the
# Dockerfile's build stages; the ENV, USER, VOLUME, HEALTHCHECK and ENTRYPOINT
# lines are the Dockerfile's own.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18555}
BUILT=${IMAGE:-}
IMAGE=${IMAGE:-localhost/outlook-inbox-smoke}
NAME=outlook-inbox-smoke
command -v podman >/dev/null || { echo "needs podman: apt-get install -y podman runc" >&2; exit 1; }
# Sandboxed machines often refuse crun's cgroup and rlimit setup; runc with
# cgroupfs works there. Override with PODMAN="podman" where the defaults work.
PODMAN=${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}
RUN_LIMITS=${RUN_LIMITS:---ulimit nofile=$(ulimit -n):$(ulimit -n) --ulimit nproc=4096:4096}

ctx=$(mktemp -d)
cleanup() { $PODMAN rm -f "$NAME" >/dev/null 2>&1 || true; $PODMAN volume rm -f "$NAME-data" >/dev/null 2>&1 || true; rm -rf "$ctx"; }
trap cleanup EXIT

if [ -n "$BUILT" ]; then
  about="built from the Dockerfile"
else
  cargo build --release --quiet --bin outlook-inbox

  mkdir -p "$ctx/root/app" "$ctx/root/etc" "$ctx/root/tmp" "$ctx/data"
  cp target/release/outlook-inbox "$ctx/root/app/"
  # The shared libraries the binary links (glibc, libgcc), at the same paths.
  ldd target/release/outlook-inbox | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
    mkdir -p "$ctx/root$(dirname "$lib")"
    cp -L "$lib" "$ctx/root$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/root/etc/group"
  chmod 1777 "$ctx/root/tmp"
  # The runtime stage's own lines (everything after its last COPY), taken from
  # the Dockerfile so that the two cannot drift apart.
  {
    echo 'FROM scratch'
    echo 'COPY root/ /'
    echo '# As in the Dockerfile: a new named volume takes the owner of this folder.'
    echo 'COPY --chown=65532:65532 data/ /data/'
    sed -n '/^COPY --from=builder --chown=65532:65532 \/data \/data/,$p' Dockerfile | tail -n +2
  } >"$ctx/Containerfile"
  grep -q '^HEALTHCHECK' "$ctx/Containerfile" || { echo "FAILED: the Dockerfile's last stage was not found" >&2; exit 1; }
  $PODMAN build -q --format docker -t "$IMAGE" "$ctx" >/dev/null
  about="binary $(stat -c %s target/release/outlook-inbox | awk '{printf "%.1f MB", $1/1e6}')"
fi
echo "image: $IMAGE, $($PODMAN image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}') ($about)"

# The demo needs a loopback PUBLIC_URL, so the container shares the host's
# network and listens on 127.0.0.1:$PORT.
# shellcheck disable=SC2086
$PODMAN run -d --name "$NAME" --network host $RUN_LIMITS \
  -v "$NAME-data:/data" \
  -e BIND="127.0.0.1:$PORT" -e PUBLIC_URL="http://127.0.0.1:$PORT" \
  "$IMAGE" >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
[ "$(curl -s "http://127.0.0.1:$PORT/healthz")" = ok ] || { $PODMAN logs "$NAME"; echo "FAILED: /healthz" >&2; exit 1; }
curl -s "http://127.0.0.1:$PORT/" | grep -q "demo" || { echo "FAILED: the home page" >&2; exit 1; }
# podman keeps HEALTHCHECK only in Docker-format images (`build --format docker`).
if ! $PODMAN healthcheck run "$NAME" >"$ctx/health.txt" 2>&1; then
  sed 's/^/  /' "$ctx/health.txt"
  echo "FAILED: the image's HEALTHCHECK did not pass (an OCI-format build drops it: use --format docker)" >&2
  exit 1
fi
echo "HEALTHCHECK (outlook-inbox healthcheck): healthy"
# The running process's real user id, read from the host's /proc.
pid=$($PODMAN inspect --format '{{.State.Pid}}' "$NAME")
user=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
echo "the server process runs as uid $user"
[ "$user" = 65532 ] || { echo "FAILED: uid $user" >&2; exit 1; }
$PODMAN stop -t 10 "$NAME" >/dev/null
code=$($PODMAN inspect --format '{{.State.ExitCode}}' "$NAME")
echo "after podman stop (SIGTERM): exit code $code"
$PODMAN logs "$NAME" 2>&1 | grep -E '"(decision store closed|stopped)' | sed 's/^/  /'
[ "$code" = 0 ] || { echo "FAILED: exit code $code" >&2; exit 1; }
echo "OK"
