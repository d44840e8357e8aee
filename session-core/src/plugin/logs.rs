//! Plugin logs: a minimal `tracing` subscriber inside the plugin that
//! forwards events through the host's [`LogSink`], and the host-side sink
//! that re-emits them through the host's own subscriber.
//!
//! A cdylib has its own copy of `tracing`'s statics, so without this the
//! plugin's events would go nowhere.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use session_abi::abi_stable::std_types::RStr;
use session_abi::{LogSink, level};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The sink a host hands to plugins.
pub(crate) fn host_sink() -> LogSink {
    let max = tracing::level_filters::LevelFilter::current();
    let max_level = match max.into_level() {
        None => 0,
        Some(Level::ERROR) => level::ERROR,
        Some(Level::WARN) => level::WARN,
        Some(Level::INFO) => level::INFO,
        Some(Level::DEBUG) => level::DEBUG,
        Some(Level::TRACE) => level::TRACE,
    };
    LogSink {
        log: host_log,
        max_level,
    }
}

extern "C" fn host_log(lvl: u8, target: RStr<'_>, message: RStr<'_>) {
    let target = target.as_str();
    let message = message.as_str();
    match lvl {
        level::ERROR => {
            tracing::error!(target: "berth::plugin", plugin_target = target, "{message}");
        }
        level::WARN => {
            tracing::warn!(target: "berth::plugin", plugin_target = target, "{message}");
        }
        level::INFO => {
            tracing::info!(target: "berth::plugin", plugin_target = target, "{message}");
        }
        level::DEBUG => {
            tracing::debug!(target: "berth::plugin", plugin_target = target, "{message}");
        }
        _ => {
            tracing::trace!(target: "berth::plugin", plugin_target = target, "{message}");
        }
    }
}

/// The plugin-side subscriber: formats each event into one line and hands
/// it to the host.
pub(crate) struct Forwarder {
    sink: LogSink,
    next_span: AtomicU64,
}

impl Forwarder {
    pub(crate) fn new(sink: LogSink) -> Forwarder {
        Forwarder {
            sink,
            next_span: AtomicU64::new(1),
        }
    }
}

fn code(level: &Level) -> u8 {
    match *level {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        code(metadata.level()) <= self.sink.max_level
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        let meta = event.metadata();
        (self.sink.log)(
            code(meta.level()),
            RStr::from_str(meta.target()),
            RStr::from_str(&line.0),
        );
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}
