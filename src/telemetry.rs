//! Logging: `RUST_LOG` filters (default `info`); `LOG_FORMAT=text` writes one
//! readable line per event (colours only when standard output is a
//! terminal), `LOG_FORMAT=json` one JSON object per line with time, level,
//! message, fields and the request's id (`span.request_id`), for log
//! collectors.
//!
//! Lines are formatted on the thread that logs them and written by one
//! background thread through a buffer, so a busy server makes one `write`
//! for many lines instead of one per line. Nothing is dropped: when the
//! queue is full, logging waits. Keep the returned guard until exit; dropping
//! it writes out what is still queued.

use std::io::IsTerminal as _;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stdout().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(terminal).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    guard
}
