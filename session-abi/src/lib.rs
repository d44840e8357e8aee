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
//! * The symbol [`BUILD_SYMBOL`], outside the root module, says which
//!   package, version and berth a library was built from, so a host can name
//!   both sides of a mismatch even when the root module cannot be read.
//!
//! `abi_stable` checks the root module's layout when a library is loaded and
//! refuses an incompatible one (the first differing item is named in the one
//! line [`LoadError`] prints); [`ABI_VERSION`] is checked on top of that, for
//! changes in meaning that keep the layout.

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

use abi_stable::library::{
    LibHeader, LibraryError, RawLibrary, RootModule, lib_header_from_raw_library,
};
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
    /// Only in test builds of an incompatible layout (see the
    /// `test-layout-mismatch` feature).
    #[cfg(feature = "test-layout-mismatch")]
    pub test_extra: u64,
    /// Starts the plugin and returns a JSON array of its backend
    /// descriptors. Called once, before any `call` but `describe` (which
    /// asks for the same descriptors without starting anything; plugins
    /// built before it answer with an error, and are started first).
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

/// Where a plugin writes a command's output while it runs: a context
/// pointer of the host's and the function that takes chunks for it. Made
/// only through the `unsafe` [`OutputSink::new`], so that a sink in hand
/// always holds a context its function accepts.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct OutputSink {
    /// The host's context pointer, passed back to `write`.
    context: *const c_void,
    /// Delivers one chunk of stream [`STDOUT`] or [`STDERR`] (or, for an
    /// operation that answers before its work is done, the chunk of the
    /// stream number that operation names as its end). Returns `false`
    /// when the host no longer wants output: the plugin should then stop
    /// the command.
    write: extern "C" fn(context: *const c_void, stream: u8, bytes: RSlice<'_, u8>) -> bool,
}

// SAFETY: `OutputSink::new`'s contract: the context stays valid and may be
// used from any thread for as long as the sink may be used (the call that
// received it, or the later end of an operation that says so).
unsafe impl Send for OutputSink {}
unsafe impl Sync for OutputSink {}

impl OutputSink {
    /// A sink whose chunks go to `write(context, stream, bytes)`.
    ///
    /// # Safety
    ///
    /// `write` must accept `context`, from any thread, for as long as the
    /// sink (or a copy of it) can be used — until the `call` that received
    /// it has returned, or, for an operation that answers at once and ends
    /// later through the sink, until that end — and must not unwind.
    pub unsafe fn new(
        context: *const c_void,
        write: extern "C" fn(*const c_void, u8, RSlice<'_, u8>) -> bool,
    ) -> OutputSink {
        OutputSink { context, write }
    }

    /// A sink that accepts and drops everything.
    pub fn discard() -> OutputSink {
        extern "C" fn discard(_: *const c_void, _: u8, _: RSlice<'_, u8>) -> bool {
            true
        }
        // SAFETY: `discard` never looks at its context.
        unsafe { OutputSink::new(std::ptr::null(), discard) }
    }

    /// Sends a chunk; `false` means stop.
    pub fn send(&self, stream: u8, bytes: &[u8]) -> bool {
        // `new`'s contract: `write` accepts `context` while the sink can be
        // used. (The pointer types stay safe `extern "C" fn`s: their
        // qualifiers are part of the layout plugins are checked against.)
        (self.write)(self.context, stream, RSlice::from_slice(bytes))
    }
}

/// How the host tells a running call to stop: a context pointer of the
/// host's and the function that reads it. Made only through the `unsafe`
/// [`CancelToken::new`].
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct CancelToken {
    /// The host's context pointer, passed back to `is_cancelled`.
    context: *const c_void,
    /// Whether the host has cancelled the call.
    is_cancelled: extern "C" fn(context: *const c_void) -> bool,
}

// SAFETY: as for OutputSink, by `CancelToken::new`'s contract.
unsafe impl Send for CancelToken {}
unsafe impl Sync for CancelToken {}

impl CancelToken {
    /// A token whose state `is_cancelled(context)` reads.
    ///
    /// # Safety
    ///
    /// As for [`OutputSink::new`]: `is_cancelled` must accept `context`,
    /// from any thread, for as long as the token can be used, and must not
    /// unwind.
    pub unsafe fn new(
        context: *const c_void,
        is_cancelled: extern "C" fn(*const c_void) -> bool,
    ) -> CancelToken {
        CancelToken {
            context,
            is_cancelled,
        }
    }

    /// A token that is never cancelled.
    pub fn never() -> CancelToken {
        extern "C" fn never(_: *const c_void) -> bool {
            false
        }
        // SAFETY: `never` never looks at its context.
        unsafe { CancelToken::new(std::ptr::null(), never) }
    }

    /// Whether the host cancelled.
    pub fn cancelled(&self) -> bool {
        // `new`'s contract, as for `OutputSink::send`.
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

/// The name of the symbol through which a library says what it was built
/// from: a [`BuildFn`] returning [`Build::encode`]'s text. It lives outside
/// the root module, so it can be read when the root module's layout or ABI
/// version does not match this host's.
pub const BUILD_SYMBOL: &str = "berth_plugin_build";

/// The type of the [`BUILD_SYMBOL`] function.
pub type BuildFn = extern "C" fn() -> RStr<'static>;

/// This host's berth version (the crates of a berth release share one).
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a library was built from, as its [`BUILD_SYMBOL`] says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Build {
    /// The plugin's package name.
    pub package: String,
    /// The plugin's package version.
    pub version: String,
    /// The berth version it was built against.
    pub berth: String,
    /// The plugin ABI version it speaks.
    pub abi_version: u32,
}

impl Build {
    /// The text the symbol returns: one `key=value` line per field.
    pub fn encode(&self) -> String {
        format!(
            "package={}\nversion={}\nberth={}\nabi={}",
            self.package, self.version, self.berth, self.abi_version
        )
    }

    /// Reads [`encode`](Self::encode)'s text; unknown keys are ignored, and
    /// text without a package is no record at all.
    pub fn decode(text: &str) -> Option<Build> {
        let mut build = Build::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            // Bounded and printable: this text ends up in one-line messages.
            let value: String = value
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            match key {
                "package" => build.package = value,
                "version" => build.version = value,
                "berth" => build.berth = value,
                "abi" => build.abi_version = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        (!build.package.is_empty()).then_some(build)
    }
}

/// A library loaded as a plugin: its checked root module and what it says
/// about its build.
pub struct Library {
    /// The root module, its layout checked against this host's.
    pub module: PluginModuleRef,
    /// What the library says it was built from (`None` for libraries built
    /// before berth recorded it).
    pub build: Option<Build>,
    /// The `session-abi` version recorded in the library's `abi_stable`
    /// header.
    pub abi_crate: String,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("abi_version", &self.module.abi_version())
            .field("build", &self.build)
            .field("abi_crate", &self.abi_crate)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Both sides' versions, for messages: `host: berth 0.1.0, plugin ABI
    /// 1; library: my-backend 0.3.0, built with berth 0.1.0 for plugin ABI
    /// 1`.
    pub fn versions(&self) -> String {
        versions(self.build.as_ref(), &self.abi_crate)
    }
}

fn versions(build: Option<&Build>, abi_crate: &str) -> String {
    let library = match build {
        Some(build) => format!(
            "{} {}, built with berth {} for plugin ABI {}",
            build.package, build.version, build.berth, build.abi_version
        ),
        None => format!("no build record, session-abi {abi_crate}"),
    };
    format!("host: berth {HOST_VERSION}, plugin ABI {ABI_VERSION}; library: {library}")
}

/// Why a library could not be loaded as a plugin. Each prints as one line.
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
/// layout, with what it says about its build. The library stays loaded
/// for the life of the process.
pub fn load(path: &Path) -> Result<Library, LoadError> {
    let raw = RawLibrary::load_at(path).map_err(|err| classify(&err))?;
    // SAFETY: the library is never unloaded once the header is taken (it
    // is leaked below on success; on failure nothing taken from it is
    // kept), so the header's 'static references stay valid.
    let header: &'static LibHeader =
        unsafe { lib_header_from_raw_library(&raw) }.map_err(|err| classify(&err))?;
    let build = read_build(&raw);
    // Leaked on purpose: a plugin's code and statics are used until exit.
    std::mem::forget(raw);
    let abi_crate = header.version_strings().to_string();
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|err| match err {
            LibraryError::AbiInstability(_) => LoadError::Incompatible(format!(
                "its root module's layout differs from this host's {}; {}",
                first_difference(header).unwrap_or_else(|| last_error_line(&err)),
                versions(build.as_ref(), &abi_crate)
            )),
            LibraryError::IncompatibleVersionNumber {
                expected_version,
                actual_version,
                ..
            } => LoadError::Incompatible(format!(
                "built with session-abi {actual_version}, which this host's \
                 {expected_version} cannot load; {}",
                versions(build.as_ref(), &abi_crate)
            )),
            other => classify(&other),
        })?;
    Ok(Library {
        module,
        build,
        abi_crate,
    })
}

/// Calls the library's [`BUILD_SYMBOL`] function, if it has one.
fn read_build(raw: &RawLibrary) -> Option<Build> {
    let mut name = BUILD_SYMBOL.as_bytes().to_vec();
    name.push(0);
    // SAFETY: the library exports berth's root module, and berth's export
    // macro declares this symbol with exactly the type `BuildFn`; the
    // symbol is used while `raw` is alive.
    let function: BuildFn = *unsafe { raw.get::<BuildFn>(&name) }.ok()?;
    let text = function();
    Build::decode(text.as_str())
}

/// The first item where the library's root module differs from this
/// host's, from `abi_stable`'s structured layout errors: the field path and
/// what differs there, with both sides.
fn first_difference(header: &LibHeader) -> Option<String> {
    use abi_stable::abi_stability::abi_checking::AbiInstabilityErrors;

    let found = header.layout()?;
    let expected = <PluginModuleRef as StableAbi>::LAYOUT;
    let err = abi_stable::abi_stability::check_layout_compatibility(expected, found)
        .into_result()
        .err()?;
    let errors = err.downcast_ref::<AbiInstabilityErrors>()?;
    // Sorted outermost first; entries without errors only lead to others.
    let first = errors.errors.iter().find(|e| !e.errs.is_empty())?;
    // `PrefixRef`'s pointer field (`0`) is how abi_stable reaches the
    // module; the path starts at the module itself.
    let mut path = vec!["PluginModule".to_owned()];
    path.extend(
        first
            .stack_trace
            .iter()
            .map(|step| item_name(&step.expected))
            .filter(|name| !name.chars().all(|c| c.is_ascii_digit())),
    );
    let what = instability(&first.errs[0]);
    Some(format!("at `{}`: {what}", path.join(".")))
}

fn item_name(item: &abi_stable::type_layout::TLFieldOrFunction) -> String {
    use abi_stable::type_layout::TLFieldOrFunction;
    match item {
        TLFieldOrFunction::Field(field) => field.name().to_owned(),
        TLFieldOrFunction::Function(function) => format!("{}()", function.name.as_str()),
    }
}

/// One layout difference in a line: what differs, expected and found.
fn instability(err: &abi_stable::abi_stability::abi_checking::AbiInstability) -> String {
    use abi_stable::abi_stability::abi_checking::AbiInstability as AI;
    fn pair(what: &str, expected: impl std::fmt::Display, found: impl std::fmt::Display) -> String {
        one_line(&format!(
            "{what} (this host: {expected}, the library: {found})"
        ))
    }
    match err {
        AI::Name(v) => pair("different types", v.expected, v.found),
        AI::Package(v) => pair("types from different packages", v.expected, v.found),
        AI::PackageVersion(v) => pair("incompatible package versions", v.expected, v.found),
        AI::MismatchedPrefixSize(v) => {
            pair("a different number of prefix fields", v.expected, v.found)
        }
        AI::Size(v) => pair("a different size in bytes", v.expected, v.found),
        AI::Alignment(v) => pair("a different alignment", v.expected, v.found),
        AI::FieldCountMismatch(v) => pair("a different number of fields", v.expected, v.found),
        AI::TooManyVariants(v) => pair("a different number of variants", v.expected, v.found),
        AI::UnexpectedField(v) => pair("a different field", v.expected.name(), v.found.name()),
        AI::MismatchedPrimitive(v) => pair(
            "a different primitive type",
            format!("{:?}", v.expected),
            format!("{:?}", v.found),
        ),
        AI::NonZeroness(v) => pair("a different non-zeroness", v.expected, v.found),
        AI::GenericParamCount(v) => pair(
            "a different number of generic parameters",
            v.expected,
            v.found,
        ),
        AI::FnQualifierMismatch(_) => "function pointers with different qualifiers".to_owned(),
        AI::FnLifetimeMismatch(_) | AI::FieldLifetimeMismatch(_) => {
            "references with different lifetimes".to_owned()
        }
        AI::TLDataDiscriminant(v) => pair(
            "a different kind of type",
            format!("{:?}", v.expected),
            format!("{:?}", v.found),
        ),
        AI::UnexpectedVariant(v) => pair("a different variant", v.expected, v.found),
        AI::ReprAttr(v) => pair(
            "different repr attributes",
            format!("{:?}", v.expected),
            format!("{:?}", v.found),
        ),
        AI::EnumDiscriminant(v) => pair(
            "different discriminants",
            format!("{:?}", v.expected),
            format!("{:?}", v.found),
        ),
        _ => "an incompatible layout".to_owned(),
    }
}

/// The last `Error:` paragraph of `abi_stable`'s long text, in one line:
/// only used when its structured errors cannot be read.
fn last_error_line(err: &LibraryError) -> String {
    let text = err.to_string();
    let tail = text.rsplit_once("Error:").map_or(text.as_str(), |(_, t)| t);
    format!("where abi_stable reports: {}", one_line(tail))
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
        #[cfg(feature = "test-layout-mismatch")]
        test_extra: 0,
        init,
        call,
    }
    .leak_into_prefix()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_record_round_trips_and_stays_one_printable_line() {
        let build = Build {
            package: "my-backend".into(),
            version: "0.3.0".into(),
            berth: "0.1.0".into(),
            abi_version: 7,
        };
        assert_eq!(Build::decode(&build.encode()), Some(build.clone()));
        assert_eq!(
            versions(Some(&build), "0.1.0"),
            format!(
                "host: berth {HOST_VERSION}, plugin ABI {ABI_VERSION}; library: my-backend 0.3.0, \
                 built with berth 0.1.0 for plugin ABI 7"
            )
        );
        // Control characters are dropped and values are bounded; a record
        // without a package is none.
        let hostile = format!("package=a\x1b[2Jb\rc\nversion={}\nother=x", "9".repeat(500));
        let decoded = Build::decode(&hostile).unwrap();
        assert_eq!(decoded.package, "a[2Jbc");
        assert_eq!(decoded.version.len(), 100);
        assert_eq!(Build::decode("version=1\nberth=2"), None);
        assert!(versions(None, "0.1.0").ends_with("library: no build record, session-abi 0.1.0"));
    }
}
