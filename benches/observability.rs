//! What one request's metrics and request line cost, each on its own: the
//! steady numbers behind `benches/observability.sh`, whose req/s move by
//! ±15% from run to run on a small shared machine.
//!
//! `cargo bench --bench observability`. Compare each figure with the app's
//! CPU time per `POST /api/expense` (the last column of the script's output).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use actix_web::http::Method;
use criterion::{Criterion, criterion_group, criterion_main};
use outlook_inbox::telemetry::JsonLines;

/// One request line as `observe::requests` writes it, inside the request's span.
fn request_line(dispatch: &tracing::Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        let id = uuid::Uuid::new_v4();
        let span = tracing::info_span!("request", request_id = %id);
        span.in_scope(|| {
            tracing::info!(method = %Method::POST, route = "/api/expense", status = 200u16, duration_ms = 0.412, "request");
        });
    });
}

/// What one approved action adds to the metrics (the request and its outcome).
fn count_one() {
    outlook_inbox::metrics::request(
        &Method::POST,
        black_box("/api/expense"),
        200,
        Duration::from_micros(412),
    );
    outlook_inbox::metrics::action("approved", "");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("per request");
    group.measurement_time(Duration::from_secs(3));

    // Before the recorder is installed (METRICS_BIND unset) the calls are no-ops.
    group.bench_function("metrics off: request + action", |b| b.iter(count_one));
    outlook_inbox::metrics::install().unwrap();
    group.bench_function("metrics on: request + action", |b| b.iter(count_one));

    // Both workers count the same series at once, as under load: the shared
    // atomics move between the cores. Time per call on each thread.
    group.bench_function("metrics on: request + action, 2 threads at once", |b| {
        b.iter_custom(|iterations| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iterations {
                            count_one();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });

    let text = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::sink)
            .finish(),
    );
    let json = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(JsonLines)
            .with_writer(std::io::sink)
            .finish(),
    );
    group.bench_function("request line, text", |b| b.iter(|| request_line(&text)));
    group.bench_function("request line, json", |b| b.iter(|| request_line(&json)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
