//! berth's log: events on stderr, filtered by `RUST_LOG`, coloured only on
//! a terminal without `NO_COLOR`.

use std::any::TypeId;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::EnvFilter;

use crate::term;

/// Sends logs to stderr, filtered by `RUST_LOG`, or at `default` and more
/// severe (warnings and errors, say) when it is unset; an invalid `RUST_LOG`
/// also means `default`.
pub(crate) fn init(default: tracing::Level) {
    let builder = || {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(term::stderr_colour())
            .with_target(false)
            // A closed stderr loses the event; reporting that on stderr
            // would panic.
            .log_internal_errors(false)
    };
    let _ = match std::env::var_os(EnvFilter::DEFAULT_ENV) {
        Some(_) => {
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(default.as_str()));
            tracing::subscriber::set_global_default(builder().with_env_filter(filter).finish())
        }
        None => tracing::subscriber::set_global_default(Deferred::new(default, move || {
            builder().with_max_level(default).finish()
        })),
    };
}

/// A level filter in front of a subscriber made when the first span or
/// event passes the filter. Most runs log nothing, and making the
/// formatter (its span registry) costs a `berth run` tens of
/// microseconds. Interest is decided by level alone, as the subscriber it
/// makes decides it.
struct Deferred<S, F> {
    level: LevelFilter,
    make: F,
    made: OnceLock<S>,
}

impl<S: Subscriber, F: Fn() -> S> Deferred<S, F> {
    fn new(level: tracing::Level, make: F) -> Self {
        Deferred {
            level: LevelFilter::from_level(level),
            make,
            made: OnceLock::new(),
        }
    }

    fn subscriber(&self) -> &S {
        self.made.get_or_init(&self.make)
    }
}

impl<S, F> Subscriber for Deferred<S, F>
where
    S: Subscriber + Send + Sync + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.subscriber().new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.subscriber().record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.subscriber().record_follows_from(span, follows);
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.subscriber().event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        self.subscriber().event(event);
    }

    fn enter(&self, span: &Id) {
        self.subscriber().enter(span);
    }

    fn exit(&self, span: &Id) {
        self.subscriber().exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.subscriber().clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.subscriber().try_close(id)
    }

    fn current_span(&self) -> Current {
        // Nothing was entered before the subscriber was made.
        self.made
            .get()
            .map_or_else(Current::none, Subscriber::current_span)
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the caller's contract, passed on.
        self.made
            .get()
            .and_then(|made| unsafe { made.downcast_raw(id) })
    }
}
