//! Logging: `RUST_LOG` filters (default `info`); `LOG_FORMAT=text` writes one
//! readable line per event (colours only when standard output is a
//! terminal), `LOG_FORMAT=json` one JSON object per line, for log collectors:
//!
//! ```json
//! {"timestamp":"2026-12-03T21:09:01.368823Z","level":"INFO","fields":{"message":"request","method":"POST","route":"/api/expense","status":200,"duration_ms":0.412},"span":{"name":"request","request_id":"7bbbea6c-…"}}
//! ```
//!
//! `span` is there for every line written while a request ran.
//!
//! Lines are formatted on the thread that logs them and written by one
//! background thread in batches (see [`LogGuard`] and `Shared`): no wake-up
//! per line, one `write` for many lines. Nothing is dropped: when the buffer
//! is full, logging waits. Keep the returned guard until exit; dropping it
//! writes out what is still waiting.

use std::fmt;
use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::LogFormat;

/// Log lines are gathered here and written by one thread in batches.
///
/// tracing-appender's non-blocking writer hands every line to its writer
/// thread through a channel and wakes that thread for it: a futex call and a
/// context switch per line, which made logging a fifth of `/mail`'s time and
/// a sixth of an action's. Here a request thread only appends its line to a
/// buffer under a lock; the writer wakes every [`FLUSH_EVERY`] (or when the
/// buffer is half full), takes the whole buffer, and writes it with one call.
/// Lines keep their order, and none is dropped: when [`BUFFER_LIMIT`] bytes
/// are waiting, a request thread waits for room, as it would for a full
/// channel. Lines reach standard output within [`FLUSH_EVERY`]; everything
/// is written when the guard is dropped at exit.
struct Shared {
    lines: Mutex<Vec<u8>>,
    /// Signalled when the writer took the buffer.
    room: Condvar,
    /// Set by the guard: write what is left and stop.
    closing: AtomicBool,
    /// The writer, woken by the first line into an empty buffer.
    writer: std::sync::OnceLock<std::thread::Thread>,
}

/// How long a line may wait before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Bytes that may wait for the writer (two buffers of this size exist).
pub const BUFFER_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
struct LineWriter(Arc<Shared>);

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut lines = shared.lines.lock().unwrap_or_else(|p| p.into_inner());
        while !lines.is_empty()
            && lines.len() + line.len() > BUFFER_LIMIT
            && !shared.closing.load(Ordering::Relaxed)
        {
            lines = shared
                .room
                .wait_timeout(lines, FLUSH_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let was_empty = lines.is_empty();
        lines.extend_from_slice(line);
        drop(lines);
        // One wake-up per batch: the writer then gathers for FLUSH_EVERY.
        if was_empty && let Some(writer) = shared.writer.get() {
            writer.unpark();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes what is left and stops the writer when dropped (at exit).
pub struct LogGuard {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

/// The writer thread: asleep while nothing is logged; woken by a first
/// line, it gathers for FLUSH_EVERY and writes what came in one write.
fn write_batches(shared: Arc<Shared>, mut out: impl Write) {
    let mut batch = Vec::with_capacity(BUFFER_LIMIT);
    loop {
        // A wake-up may be spurious or early: then this round writes nothing.
        std::thread::park_timeout(Duration::from_secs(1));
        if !shared.closing.load(Ordering::SeqCst) {
            std::thread::sleep(FLUSH_EVERY);
        }
        let closing = shared.closing.load(Ordering::SeqCst);
        {
            let mut lines = shared.lines.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *lines, &mut batch);
        }
        shared.room.notify_all();
        if !batch.is_empty() {
            // Standard output gone (a closed pipe): nothing better to do.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closing {
            return;
        }
    }
}

pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stdout().is_terminal();
    let shared = Arc::new(Shared {
        lines: Mutex::new(Vec::with_capacity(BUFFER_LIMIT)),
        room: Condvar::new(),
        closing: AtomicBool::new(false),
        writer: std::sync::OnceLock::new(),
    });
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(shared, std::io::stdout()))
            .ok()
    };
    if let Some(w) = &writer {
        let _ = shared.writer.set(w.thread().clone());
    }
    let lines = LineWriter(shared.clone());
    let make_writer = move || lines.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(make_writer);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(terminal).try_init(),
        // No colour codes in the span text the JSON lines read ids from.
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).try_init(),
    };
    LogGuard { shared, writer }
}

/// One JSON object per event, written straight into the line: no map of
/// values is built, and the request's id is read from the span's own text
/// (tracing-subscriber's JSON format parses the span's fields back from JSON
/// for every event, which cost a tenth of the action endpoint's throughput).
/// Strings are escaped by serde_json.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        write!(
            writer,
            "{{\"timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"{}\",\"fields\":{{",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.microsecond(),
            event.metadata().level()
        )?;
        let mut fields = JsonFields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('}')?;
        if let Some(span) = ctx.lookup_current() {
            write!(writer, ",\"span\":{{\"name\":")?;
            json_string(&mut writer, span.name())?;
            let extensions = span.extensions();
            // Default field formatting: `name=value name=value`; our spans
            // carry only ids (no spaces), so splitting is exact for them.
            if let Some(text) = extensions.get::<FormattedFields<N>>() {
                for pair in text.fields.split(' ') {
                    if let Some((name, value)) = pair.split_once('=') {
                        writer.write_char(',')?;
                        json_string(&mut writer, name)?;
                        writer.write_char(':')?;
                        json_string(&mut writer, value)?;
                    }
                }
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes `value` as a JSON string.
fn json_string(out: &mut Writer<'_>, value: &str) -> fmt::Result {
    match serde_json::to_string(value) {
        Ok(quoted) => out.write_str(&quoted),
        Err(_) => Err(fmt::Error),
    }
}

struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.out.write_char(',')?;
        }
        self.first = false;
        json_string(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn put(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| write(self.out));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| json_string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |out| json_string(out, &format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| json_string(out, &value.to_string()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |out| json_string(out, &value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::JsonLines;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn each_event_is_one_json_object_with_typed_fields() {
        let got = lines(|| {
            let span = tracing::info_span!("request", request_id = %"4b1d-77");
            let _entered = span.enter();
            tracing::warn!(
                status = 401u16,
                ms = 0.25,
                ok = false,
                n = -3i64,
                reason = "a\nb\"c\u{1b}[31m\u{202e}",
                "refused"
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        let ts = line["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
        let f = &line["fields"];
        assert_eq!(f["message"], "refused");
        assert_eq!(f["status"], 401);
        assert_eq!(f["ms"], 0.25);
        assert_eq!(f["ok"], false);
        assert_eq!(f["n"], -3);
        // Control characters and quotes stay inside the string.
        assert_eq!(f["reason"], "a\nb\"c\u{1b}[31m\u{202e}");
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["request_id"], "4b1d-77");
    }

    #[test]
    fn outside_a_request_there_is_no_span() {
        let got = lines(|| tracing::info!(value = f64::NAN, "started"));
        assert!(got[0].get("span").is_none());
        assert_eq!(got[0]["fields"]["value"], "NaN");
    }
}
