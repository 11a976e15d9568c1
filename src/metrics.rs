//! Metrics in the Prometheus text format, on `METRICS_BIND` only (never on the
//! public port). The `metrics` facade with its Prometheus exporter: the
//! recording calls below are no-ops until [`install`] runs, so with
//! `METRICS_BIND` unset nothing is counted and nothing is served.
//!
//! Names and labels (all bounded: route patterns, never raw paths):
//! - `http_requests_total{method, route, status}` and
//!   `http_request_duration_seconds{method, route, status}` (histogram);
//! - `upstream_requests_total{service, status}` and
//!   `upstream_request_duration_seconds{service}` (histogram), where `service`
//!   is `identity`, `graph`, `sharepoint` or `keys`, and `status` the HTTP
//!   status or `timeout`/`error`;
//! - `actions_total{outcome, reason}`: `approved`, `rejected`, `already`,
//!   `conflict`, `unknown_expense`, or `refused` with its reason;
//! - `key_fetches_total{result}`: `ok` or `failed`;
//! - `session_store_errors_total{operation}` (`load`, `save`, `update`,
//!   `update_ttl`, `delete`, or `ping` when a page or `/healthz` found Redis
//!   down) and `decision_store_errors_total`.

use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use std::cell::RefCell;
use std::collections::HashMap;

use metrics::{Counter, Histogram, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls share it).
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    describe_counter!(
        "http_requests_total",
        "Requests answered, by route pattern and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a request, by route pattern and status."
    );
    describe_counter!(
        "upstream_requests_total",
        "Calls to Microsoft's services (identity, graph, sharepoint, keys), by status."
    );
    describe_histogram!(
        "upstream_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time until an upstream answered (headers), by service."
    );
    describe_counter!(
        "actions_total",
        "Actionable Message actions, by outcome (and reason when refused)."
    );
    describe_counter!("key_fetches_total", "Signing-key set downloads, by result.");
    describe_counter!(
        "session_store_errors_total",
        "Failed Redis session operations, by operation."
    );
    describe_counter!(
        "decision_store_errors_total",
        "Decision-store calls that failed (the action got 503)."
    );
}

/// Serves `GET /metrics` on its own listener (one worker).
pub fn serve(listener: TcpListener, handle: PrometheusHandle) -> std::io::Result<Server> {
    let handle = web::Data::new(handle);
    let upkeep = handle.clone();
    // Histograms are drained into their buckets here too, so memory stays
    // flat when nobody scrapes.
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(handle.clone())
            .route("/metrics", web::get().to(render))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn render(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// Binds `METRICS_BIND`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// The method label: the standard methods by name, anything else `OTHER`
/// (a client can send any token as a method).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

type RequestSeries = Vec<(&'static str, u16, Counter, Histogram)>;

thread_local! {
    /// Each worker's handles to the request series it has used, by route:
    /// after the first request of a kind, counting it is an atomic add and a
    /// histogram push, with no label strings built and no registry lookup.
    static REQUESTS: RefCell<HashMap<String, RequestSeries>> = RefCell::new(HashMap::new());
}

/// One answered request.
pub fn request(method: &actix_web::http::Method, route: &str, status: u16, elapsed: Duration) {
    let method = method_label(method);
    let seconds = elapsed.as_secs_f64();
    REQUESTS.with(|series| {
        let mut series = series.borrow_mut();
        if let Some(known) = series.get(route)
            && let Some((_, _, counter, histogram)) = known
                .iter()
                .find(|(m, s, _, _)| *m == method && *s == status)
        {
            counter.increment(1);
            histogram.record(seconds);
            return;
        }
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let counter = counter!("http_requests_total", &labels);
        let histogram = histogram!("http_request_duration_seconds", &labels);
        counter.increment(1);
        histogram.record(seconds);
        series
            .entry(route.to_owned())
            .or_default()
            .push((method, status, counter, histogram));
    });
}

/// Which of Microsoft's services a call went to.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    Identity,
    Graph,
    SharePoint,
    Keys,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Graph => "graph",
            Service::SharePoint => "sharepoint",
            Service::Keys => "keys",
        }
    }
}

/// One upstream call, from its start to its answer's headers (or failure).
pub fn upstream(service: Service, started: Instant, result: &reqwest::Result<reqwest::Response>) {
    let status = match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "error".to_owned(),
    };
    counter!("upstream_requests_total", "service" => service.as_str(), "status" => status)
        .increment(1);
    histogram!("upstream_request_duration_seconds", "service" => service.as_str())
        .record(started.elapsed().as_secs_f64());
}

/// A call given up on before its answer's head arrived (a deadline of the
/// caller's own, not the client's).
pub fn upstream_timed_out(service: Service) {
    counter!("upstream_requests_total", "service" => service.as_str(), "status" => "timeout")
        .increment(1);
}

/// Sends `request`, counting it under `service`.
pub async fn send(
    service: Service,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let started = Instant::now();
    let result = request.send().await;
    upstream(service, started, &result);
    result
}

/// An action's outcome; `reason` is empty unless it was refused.
pub fn action(outcome: &'static str, reason: &'static str) {
    counter!("actions_total", "outcome" => outcome, "reason" => reason).increment(1);
}

/// A change or lifecycle notification, or a step of the live Inbox, by outcome.
pub fn notification(outcome: &'static str) {
    counter!("notifications_total", "outcome" => outcome).increment(1);
}

/// `n` notifications with the same outcome.
pub fn notifications(outcome: &'static str, n: usize) {
    counter!("notifications_total", "outcome" => outcome).increment(n as u64);
}

/// Live Inbox streams open on this instance.
pub fn live_streams(n: usize) {
    metrics::gauge!("live_streams").set(n as f64);
}

/// A signing-key set download.
pub fn key_fetch(ok: bool) {
    counter!("key_fetches_total", "result" => if ok { "ok" } else { "failed" }).increment(1);
}

/// A Redis session operation that failed.
pub fn session_store_error(operation: &'static str) {
    counter!("session_store_errors_total", "operation" => operation).increment(1);
}

/// A decision-store call that failed.
pub fn decision_store_error() {
    counter!("decision_store_errors_total").increment(1);
}
