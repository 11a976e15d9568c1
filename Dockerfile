# syntax=docker/dockerfile:1
# outlook-inbox: a multi-stage build with a cached dependency layer
# (cargo-chef), a release build, and a small, shell-less runtime image that
# runs as a non-root user.
#
#   docker build -t outlook-inbox .
#   docker run --rm -p 8000:8000 -v outlook-inbox-data:/data outlook-inbox   # demo mode
#
# For real use, pass CLIENT_ID, CLIENT_SECRET, SESSION_KEY and PUBLIC_URL (the
# public https URL people reach); see the README.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies only: this layer is reused until Cargo.toml or Cargo.lock changes.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json --bin outlook-inbox
COPY . .
RUN cargo build --release --locked --bin outlook-inbox \
 && mkdir -p /data \
 && chown 65532:65532 /data

# distroless/cc: glibc and libgcc, no shell, no package manager; user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/outlook-inbox /app/outlook-inbox
COPY --from=builder --chown=65532:65532 /data /data
ENV BIND=0.0.0.0:8000 \
    DATA_DIR=/data \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8000
# Metrics are off unless METRICS_BIND is set (e.g. 0.0.0.0:9464); keep that
# port inside your network.
USER 65532:65532
# No shell or curl here: the binary checks its own /healthz (exit 0 on 200 within 2 s).
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/app/outlook-inbox", "healthcheck"]
ENTRYPOINT ["/app/outlook-inbox"]
