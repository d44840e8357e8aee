//! The frozen, versioned FFI boundary between a berth host and a backend
//! built as a `cdylib` plugin.
//!
//! This crate holds only FFI-safe types and the loading call; it is the
//! only crate of berth that depends on `abi_stable`. The surface is small on
//! purpose and never grows in place:
//!
//! * [`PluginModule`], the root module: the plugin's [`ABI_VERSION`], an
//!   `init` call that hands the plugin the host's [`LogSink`] and returns its
//!   backend descriptors, and one `call` entry point.
//! * `call(op, request, sink, cancel)` takes an operation name and a JSON
//!   request and returns JSON bytes (or a JSON error). Streaming output
//!   travels through the [`OutputSink`] callback; the host cancels through
//!   the [`CancelToken`]. New operations are new `op` names — an old plugin
//!   answers "unknown operation" — so plugins built against an older berth
//!   keep loading.
//!
//! `abi_stable` checks the root module's layout when a library is loaded and
//! refuses an incompatible one; [`ABI_VERSION`] is checked on top of that,
//! for changes in meaning that keep the layout.

// abi_stable's derive and root-module macros expand to code that trips a few
// lints of this edition; they are allowed here and nowhere else.
#![allow(
    unsafe_code,
    missing_docs,
    non_local_definitions,
    unsafe_op_in_unsafe_fn
)]

use std::ffi::c_void;
use std::path::Path;

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings};

#[doc(hidden)]
pub use abi_stable;

/// The version of the meaning of the boundary. A host loads only plugins
/// that report the same number.
pub const ABI_VERSION: u32 = 1;

/// What a `call` returns: JSON bytes, or a JSON-encoded error.
pub type FfiResult = RResult<RVec<u8>, RString>;

/// Stream number for stdout in [`OutputSink::write`].
pub const STDOUT: u8 = 1;
/// Stream number for stderr in [`OutputSink::write`].
pub const STDERR: u8 = 2;

/// The root module a plugin exports.
#[repr(C)]
#[derive(StableAbi, Debug)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The [`ABI_VERSION`] the plugin was built against.
    pub abi_version: u32,
    /// Starts the plugin and returns a JSON array of its backend
    /// descriptors. Called once, before any `call`.
    pub init: extern "C" fn(log: LogSink) -> FfiResult,
    /// Runs one operation.
    #[sabi(last_prefix_field)]
    pub call: extern "C" fn(
        op: RStr<'_>,
        request: RSlice<'_, u8>,
        sink: OutputSink,
        cancel: CancelToken,
    ) -> FfiResult,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "berth_plugin";
    const NAME: &'static str = "berth_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Where a plugin writes a command's output while it runs.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct OutputSink {
    /// The host's context pointer, passed back to `write`.
    pub context: *const c_void,
    /// Delivers one chunk of stream [`STDOUT`] or [`STDERR`]. Returns
    /// `false` when the host no longer wants output: the plugin should then
    /// stop the command.
    pub write: extern "C" fn(context: *const c_void, stream: u8, bytes: RSlice<'_, u8>) -> bool,
}

// SAFETY: the host guarantees its context stays valid and may be used from
// any thread for as long as the call that received the sink runs.
unsafe impl Send for OutputSink {}
unsafe impl Sync for OutputSink {}

impl OutputSink {
    /// A sink that accepts and drops everything.
    pub fn discard() -> OutputSink {
        extern "C" fn discard(_: *const c_void, _: u8, _: RSlice<'_, u8>) -> bool {
            true
        }
        OutputSink {
            context: std::ptr::null(),
            write: discard,
        }
    }

    /// Sends a chunk; `false` means stop.
    pub fn send(&self, stream: u8, bytes: &[u8]) -> bool {
        (self.write)(self.context, stream, RSlice::from_slice(bytes))
    }
}

/// How the host tells a running call to stop.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct CancelToken {
    /// The host's context pointer, passed back to `is_cancelled`.
    pub context: *const c_void,
    /// Whether the host has cancelled the call.
    pub is_cancelled: extern "C" fn(context: *const c_void) -> bool,
}

// SAFETY: as for OutputSink.
unsafe impl Send for CancelToken {}
unsafe impl Sync for CancelToken {}

impl CancelToken {
    /// A token that is never cancelled.
    pub fn never() -> CancelToken {
        extern "C" fn never(_: *const c_void) -> bool {
            false
        }
        CancelToken {
            context: std::ptr::null(),
            is_cancelled: never,
        }
    }

    /// Whether the host cancelled.
    pub fn cancelled(&self) -> bool {
        (self.is_cancelled)(self.context)
    }
}

/// Log levels on the boundary, most severe first.
pub mod level {
    /// Error.
    pub const ERROR: u8 = 1;
    /// Warning.
    pub const WARN: u8 = 2;
    /// Information.
    pub const INFO: u8 = 3;
    /// Debug.
    pub const DEBUG: u8 = 4;
    /// Trace.
    pub const TRACE: u8 = 5;
}

/// Where a plugin sends its log events: the host re-emits them through its
/// own `tracing` subscriber.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct LogSink {
    /// Records one event.
    pub log: extern "C" fn(level: u8, target: RStr<'_>, message: RStr<'_>),
    /// The most verbose level the host wants (see [`level`]).
    pub max_level: u8,
}

/// Why a library could not be loaded as a plugin.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be opened, or it exports no berth root module.
    NotAPlugin(String),
    /// Its root module has an incompatible layout or version.
    Incompatible(String),
    /// Its root-module constructor failed or panicked.
    Failed(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotAPlugin(why) => write!(f, "not a berth plugin: {why}"),
            LoadError::Incompatible(why) => write!(f, "incompatible plugin: {why}"),
            LoadError::Failed(why) => write!(f, "plugin failed to start: {why}"),
        }
    }
}

/// Loads the library at `path` and returns its root module, checking its
/// layout. The library stays loaded for the life of the process.
pub fn load(path: &Path) -> Result<PluginModuleRef, LoadError> {
    let header = lib_header_from_path(path).map_err(|err| classify(&err))?;
    header
        .init_root_module::<PluginModuleRef>()
        .map_err(|err| classify(&err))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn classify(err: &LibraryError) -> LoadError {
    let text = one_line(&err.to_string());
    match err {
        LibraryError::OpenError { .. } | LibraryError::GetSymbolError { .. } => {
            LoadError::NotAPlugin(text)
        }
        LibraryError::RootModule { .. } => LoadError::Failed(text),
        _ => LoadError::Incompatible(text),
    }
}

/// What the export macro needs from `abi_stable`, re-exported so plugin
/// crates do not depend on it themselves.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::prefix_type::WithMetadata;
    pub use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
}

/// Builds a root module value (used by the export shims).
pub fn module(
    abi_version: u32,
    init: extern "C" fn(LogSink) -> FfiResult,
    call: extern "C" fn(RStr<'_>, RSlice<'_, u8>, OutputSink, CancelToken) -> FfiResult,
) -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        abi_version,
        init,
        call,
    }
    .leak_into_prefix()
}
