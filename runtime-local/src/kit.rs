//! The kit for backends whose commands are host processes: a whole
//! [`Runtime`] generic over how one command is put in its sandbox.
//!
//! A backend that runs each command inside a tool (`bwrap … -- sh -c CMD`,
//! `nsjail`, `firejail`, `systemd-run`) or enters its sandbox between fork
//! and exec (the `namespace` plugin) differs from the `local` backend in
//! one place: how a command is started. Everything else is the same and is
//! done here once, as the `local` backend does it:
//!
//! * the environment: the backend's base (`PATH`, `HOME`), the spec's and
//!   the session's variables over it, each command's over those;
//! * the process table: starting, streaming, wall and idle timeouts,
//!   `output_limit` and spilling, stdin, `kill`, `poll`, `cleanup`, and
//!   killing everything when the runtime is dropped;
//! * a cgroup per command for `limits.pids`, `limits.memory` and
//!   `limits.cpus`, and `limits.file_size` as an rlimit;
//! * the setup commands at spawn (or a probe), cleaning up when they fail.
//!
//! A backend implements [`Sandbox`] — usually just [`Sandbox::wrap`], and
//! [`Sandbox::finish`] when its tool reports the command's end in its own
//! way — and returns [`HostRuntime::spawn`] from [`Backend::spawn`]:
//!
//! ```
//! use runtime_local::kit::{HostRuntime, HostSettings, Sandbox};
//! use runtime_local::process::Launch;
//! use session_core::runtime::ExecCommand;
//!
//! /// Runs each command at a lower CPU priority.
//! #[derive(Debug)]
//! struct Nice;
//!
//! impl Sandbox for Nice {
//!     fn wrap(&self, launch: &mut Launch, _cmd: &ExecCommand) -> Result<(), String> {
//!         launch.program = launch.program.wrapped_in(["nice", "-n", "10"]);
//!         Ok(())
//!     }
//! }
//!
//! # async fn spawn(
//! #     spec: &session_core::EnvironmentSpec,
//! #     ctx: session_core::runtime::SpawnContext,
//! # ) -> session_core::Result<Box<dyn session_core::runtime::Runtime>> {
//! let settings = HostSettings::for_spec("nice", spec)?;
//! Ok(Box::new(HostRuntime::spawn(Nice, settings, spec, ctx).await?))
//! # }
//! ```
//!
//! [`Backend::spawn`]: session_core::runtime::Backend::spawn

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use session_core::assets::ResolvedAsset;
use session_core::runtime::{
    Capabilities, EventStream, ExecCommand, ExecResult, ExecStatus, Runtime, RuntimeStatus,
    SetupOutput, SpawnContext, run_setup,
};
use session_core::spec::{EnvironmentSpec, Limits};
use session_core::{Error, Result};

use crate::cgroup::{CgroupHost, CgroupLimits};
use crate::process::{self, InShellsPlace, Launch, ProcessTable, Program, Rlimits, Started, Watch};

/// How a host-process sandbox starts one command, and how it reads the
/// command's end. Every method has a default that behaves as the `local`
/// backend does, so a sandbox overrides only what differs.
pub trait Sandbox: Send + Sync + std::fmt::Debug + 'static {
    /// Puts one command in the sandbox by rewriting its launch: usually
    /// its program (`launch.program = launch.program.wrapped_in(["bwrap",
    /// …, "--"])`), sometimes its environment, its working directory, the
    /// [`Launch::pre_exec`] hook or whether a keeper contains its tree
    /// ([`Launch::keeper`]). The launch arrives as the `local` backend would
    /// start the command: `shell -c COMMAND`, under a keeper, in the workspace, with the runtime's environment.
    ///
    /// `Err(message)`: the command cannot be started; its stream ends at
    /// once as [`ExecStatus::SpawnFailed`] with `message` on stderr.
    fn wrap(&self, launch: &mut Launch, cmd: &ExecCommand) -> std::result::Result<(), String> {
        let _ = (launch, cmd);
        Ok(())
    }

    /// Starts the wrapped launch. The default is [`process::start`]; a
    /// sandbox that learns of its own failures in the child (through a pipe
    /// its hook writes) overrides it to read them. `Err(message)` as for
    /// [`Sandbox::wrap`].
    fn start(&self, launch: Launch) -> std::result::Result<Started, String> {
        process::start(&launch)
            .map_err(|err| format!("cannot start `{}`: {err}", launch.program.executable()))
    }

    /// Turns the command's result into the one its caller sees: a wrapping
    /// tool's `128 + N` back into signal N ([`exit_as_signal`]), or the
    /// tool's own failure into a spawn failure ([`wrapper_failed`]). The
    /// default changes nothing.
    fn finish(&self, result: ExecResult) -> ExecResult {
        result
    }

    /// Where `asset` appears to commands ([`Runtime::asset_path`]). The
    /// default is its path on the host, for sandboxes that show the host's
    /// file system.
    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        asset.absolute_path.display().to_string()
    }

    /// Whether a command of literal words — `exec` and words
    /// ([`literal_exec`]), or words naming a program ([`literal_simple`]) —
    /// may start its program without the shell, where the shell is
    /// `/bin/sh` and dash (which would only exec it, or fork it and wait),
    /// with the environment dash would pass on, and, for a program dash
    /// would fork, a process that does what dash would do around it
    /// ([`InShellsPlace::Fork`]). The default is `false`, as the
    /// launch a sandbox wraps may rely on the shell.
    fn skips_the_shell(&self) -> bool {
        false
    }

    /// Whether a command with a cgroup may skip the shell too
    /// ([`Sandbox::skips_the_shell`]): the sandbox's own program joins the
    /// cgroup, so a launch in the shell's place keeps it. The default is
    /// `false`.
    fn joins_cgroups(&self) -> bool {
        false
    }

    /// The command's working directory as the command sees it, where that
    /// is not the workspace's host path (a sandbox with a root of its own):
    /// the `PWD` a shell there would set, for a command that skips the
    /// shell ([`Sandbox::skips_the_shell`]). The default is `None`: the
    /// workspace's physical path on the host.
    fn working_directory(&self) -> Option<&str> {
        None
    }
}

/// What a [`HostRuntime`] takes besides its [`Sandbox`]: what the `local`
/// backend decides from its spec, which another backend may decide
/// otherwise.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// The spec `type` the runtime reports and names in its errors.
    pub type_name: String,
    /// The shell that runs command strings.
    pub shell: PathBuf,
    /// The environment commands start from; the spec's and the session's
    /// variables are set over it (all of the host's when the spec sets
    /// `environment.include_os_env`).
    pub base_env: IndexMap<String, String>,
    /// What the runtime claims; `None` for the host's
    /// ([`host_capabilities`]), found the first time they are asked for:
    /// finding them looks at the host's cgroups, which a runtime whose
    /// commands never ask about them need not pay for.
    pub capabilities: Option<Capabilities>,
    /// What each command's cgroup enforces (empty: no cgroup).
    pub cgroup_limits: CgroupLimits,
    /// Run `true` at spawn when there are no setup commands, so a sandbox
    /// that cannot be built fails the spawn rather than every command.
    pub probe: bool,
}

impl HostSettings {
    /// The `local` backend's settings for `spec`: `/bin/sh`, the host's
    /// `PATH` (unless the spec takes the host's whole environment), the
    /// capabilities of host processes under a keeper with the limits this
    /// host enforces ([`host_capabilities`]), `spec`'s cgroup limits
    /// ([`cgroup_limits`]: a spec error when one cannot be enforced here),
    /// and a probe.
    pub fn for_spec(type_name: &str, spec: &EnvironmentSpec) -> Result<HostSettings> {
        let mut base_env = IndexMap::new();
        if !spec.environment.include_os_env
            && let Some(path) = std::env::var_os("PATH")
        {
            base_env.insert("PATH".to_owned(), path.to_string_lossy().into_owned());
        }
        Ok(HostSettings {
            type_name: type_name.to_owned(),
            shell: PathBuf::from("/bin/sh"),
            base_env,
            capabilities: None,
            cgroup_limits: cgroup_limits(spec)?,
            probe: true,
        })
    }
}

/// What host processes under a keeper support here: stdin, live output,
/// signals, timeouts, output limits, concurrent commands, usage, the file
/// size limit, and the pids, memory and cpu limits where berth can make a
/// cgroup with their controller on this host.
pub fn host_capabilities() -> Capabilities {
    let host = CgroupHost::get();
    let one = |limits: CgroupLimits| host.check(&limits).is_ok();
    Capabilities {
        stdin: true,
        stdin_streaming: true,
        live_streaming: true,
        signals: true,
        timeouts: true,
        output_limit: true,
        concurrent_commands: true,
        usage: true,
        pids_limit: one(CgroupLimits {
            pids: Some(1),
            ..CgroupLimits::default()
        }),
        memory_limit: one(CgroupLimits {
            memory: Some(1 << 30),
            ..CgroupLimits::default()
        }),
        cpu_limit: one(CgroupLimits {
            cpus: Some(1.0),
            ..CgroupLimits::default()
        }),
        file_size_limit: true,
        ..Capabilities::default()
    }
}

/// The limits of `spec` a cgroup enforces, checked against this host:
/// [`Error::Spec`] naming the limit when one cannot be enforced here (or
/// has a value no cgroup takes), and why.
pub fn cgroup_limits(spec: &EnvironmentSpec) -> Result<CgroupLimits> {
    crate::cgroup_limits(spec)
}

/// A result whose exit code `128 + N` (a wrapping tool's report of a
/// command that signal `N` killed) as [`ExecStatus::Signaled`] by `N`, as if
/// no tool stood between. Other results are returned unchanged.
pub fn exit_as_signal(mut result: ExecResult) -> ExecResult {
    if result.status == ExecStatus::Exited && (129..=128 + 64).contains(&result.exit_code) {
        let signal = result.exit_code - 128;
        result.status = ExecStatus::Signaled;
        result.signal = Some(signal);
        result.exit_code = -signal;
    }
    result
}

/// A result turned into a spawn failure of the wrapping tool: its stderr
/// (what the tool said) kept, `message` put before it.
pub fn wrapper_failed(mut result: ExecResult, message: &str) -> ExecResult {
    let said = result.stderr_lossy().trim().to_owned();
    let text = if said.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {said}")
    };
    let mut failed = ExecResult::spawn_failed(&text, result.elapsed);
    failed.stdout = std::mem::take(&mut result.stdout);
    failed.usage = result.usage;
    failed
}

struct Inner<S> {
    sandbox: S,
    settings: HostSettings,
    /// What the runtime claims, once asked ([`HostSettings::capabilities`]).
    capabilities: OnceLock<Capabilities>,
    workspace: PathBuf,
    /// The workspace's physical path (symlinks resolved), found the first
    /// time a command skips the shell: the `PWD` dash would give it.
    physical_workspace: OnceLock<Option<String>>,
    env: IndexMap<String, String>,
    limits: Limits,
    setup: OnceLock<SetupOutput>,
    /// The commands started, running or lingering.
    processes: Arc<ProcessTable>,
}

/// A runtime whose commands are host processes started through a
/// [`Sandbox`]. Dropping it kills every process it started.
pub struct HostRuntime<S: Sandbox> {
    inner: Arc<Inner<S>>,
}

impl<S: Sandbox> std::fmt::Debug for HostRuntime<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRuntime")
            .field("type", &self.inner.settings.type_name)
            .field("sandbox", &self.inner.sandbox)
            .field("workspace", &self.inner.workspace)
            .field("running", &self.inner.processes.running())
            .finish_non_exhaustive()
    }
}

impl<S: Sandbox> Drop for HostRuntime<S> {
    fn drop(&mut self) {
        self.inner.processes.close();
    }
}

/// How long the probe at spawn may take before the sandbox counts as
/// broken.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: Sandbox> HostRuntime<S> {
    /// Makes the runtime for the prepared workspace in `ctx` and runs the
    /// setup commands in it (the probe when there are none and
    /// [`HostSettings::probe`] is set). A setup command that fails is
    /// [`Error::SetupFailed`] unless the spec allows it; a sandbox that
    /// cannot start a command during setup is [`Error::Backend`] with the
    /// sandbox's message. Either way nothing of the runtime is left.
    pub async fn spawn(
        sandbox: S,
        settings: HostSettings,
        spec: &EnvironmentSpec,
        ctx: SpawnContext,
    ) -> Result<HostRuntime<S>> {
        if !ctx.workspace.is_dir() {
            return Err(Error::Backend {
                backend: settings.type_name.clone(),
                message: format!("workspace `{}` is not a directory", ctx.workspace.display()),
            });
        }
        let mut env = settings.base_env.clone();
        env.extend(spec.full_env(&ctx.env));
        let runtime = HostRuntime {
            inner: Arc::new(Inner {
                sandbox,
                settings,
                capabilities: OnceLock::new(),
                workspace: ctx.workspace.clone(),
                physical_workspace: OnceLock::new(),
                env,
                limits: spec.limits.clone(),
                setup: OnceLock::new(),
                processes: Arc::new(ProcessTable::new()),
            }),
        };
        match runtime.set_up(&ctx.setup_commands(spec), spec).await {
            Ok(()) => Ok(runtime),
            Err(err) => {
                let _ = runtime.cleanup().await;
                Err(err)
            }
        }
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &S {
        &self.inner.sandbox
    }

    /// The workspace on the host.
    pub fn workspace(&self) -> &std::path::Path {
        &self.inner.workspace
    }

    /// Runs `cmd` to its end; a command the sandbox cannot start is
    /// [`Error::Backend`] with the sandbox's message rather than a
    /// `SpawnFailed` result (how setup commands and the probe run).
    pub async fn execute_or_fail(&self, cmd: ExecCommand) -> Result<ExecResult> {
        let stream = self.launch(cmd, true).map_err(|message| Error::Backend {
            backend: self.inner.settings.type_name.clone(),
            message,
        })?;
        let result = stream.finish().await;
        if result.status == ExecStatus::SpawnFailed {
            return Err(Error::Backend {
                backend: self.inner.settings.type_name.clone(),
                message: result.stderr_lossy().trim().to_owned(),
            });
        }
        Ok(result)
    }

    async fn set_up(&self, commands: &[String], spec: &EnvironmentSpec) -> Result<()> {
        if commands.is_empty() && self.inner.settings.probe {
            // Without the command cgroup: the probe shows that the sandbox
            // can be built, and `true` needs no limit. (Moving a process into
            // a cgroup can take the kernel a millisecond or more when no
            // other move happened just before, which the probe would add to
            // every spawn; the limits were checked against this host when
            // the settings were made.)
            let stream = self
                .launch(ExecCommand::new("true").wall_timeout(PROBE_TIMEOUT), false)
                .map_err(|message| Error::Backend {
                    backend: self.inner.settings.type_name.clone(),
                    message,
                })?;
            let result = stream.finish().await;
            if !result.success() {
                return Err(Error::Backend {
                    backend: self.inner.settings.type_name.clone(),
                    message: format!(
                        "the sandbox's probe command `true` failed ({:?}, exit code {}): {}",
                        result.status,
                        result.exit_code,
                        result.stderr_lossy().trim()
                    ),
                });
            }
        }
        let output = run_setup(commands, spec, |cmd| self.execute_or_fail(cmd)).await?;
        let _ = self.inner.setup.set(output);
        Ok(())
    }

    /// Starts `cmd` through the sandbox, in a cgroup of its own when the
    /// spec sets limits and `limited`. `Err` says why it could not start
    /// (then nothing of it is left).
    fn launch(
        &self,
        mut cmd: ExecCommand,
        limited: bool,
    ) -> std::result::Result<EventStream, String> {
        let inner = &self.inner;
        let mut env = inner.env.clone();
        env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let shell = || Program::shell(&inner.settings.shell, cmd.command.clone());
        // A command with a cgroup goes through the shell unless the sandbox
        // joins it in its own program: the keeper program joins none, and a
        // fork of berth's process, which does, cannot stand in for the
        // shell ([`Launch::in_shells_place`]).
        let cgroup = limited && !inner.settings.cgroup_limits.is_empty();
        let skips = !cgroup || inner.sandbox.joins_cgroups();
        let direct = match inner.sandbox.skips_the_shell() && skips {
            true => {
                let inside = inner.sandbox.working_directory();
                let workdir = inside.map_or(inner.workspace.as_path(), Path::new);
                inside
                    .or_else(|| {
                        inner
                            .physical_workspace
                            .get_or_init(|| {
                                let physical = std::fs::canonicalize(&inner.workspace).ok()?;
                                physical.into_os_string().into_string().ok()
                            })
                            .as_deref()
                    })
                    .and_then(|physical| {
                        direct_exec(&inner.settings.shell, &cmd.command, &env, workdir, physical)
                    })
            }
            false => None,
        };
        // A program that cannot be started this way is left to the shell,
        // which fails as it always has (its message, 127 or 126).
        let started = match direct {
            Some(direct) => {
                let place = match direct.forked {
                    true => InShellsPlace::Fork,
                    false => InShellsPlace::Exec,
                };
                self.start(Program::Argv(direct.argv), direct.env, &cmd, limited, place)
                    .or_else(|_| self.start(shell(), env, &cmd, limited, InShellsPlace::No))?
            }
            None => self.start(shell(), env, &cmd, limited, InShellsPlace::No)?,
        };
        let watch = Watch {
            wall_timeout: cmd.wall_timeout.or(inner.limits.wall_timeout),
            idle_timeout: cmd.idle_timeout.or(inner.limits.idle_timeout),
            output_limit: cmd.output_limit.unwrap_or(inner.limits.output_limit),
            spill_dir: cmd.spill_dir.clone(),
            events_only: cmd.events_only,
            stdin: None,
            stdin_source: cmd.take_stdin(),
        };
        let this = Arc::clone(inner);
        Ok(inner
            .processes
            .run_mapped(started, watch, move |result| this.sandbox.finish(result)))
    }

    /// Starts `program` for `cmd` through the sandbox, in a cgroup of its
    /// own when the spec sets limits and `limited`.
    fn start(
        &self,
        program: Program,
        env: IndexMap<String, String>,
        cmd: &ExecCommand,
        limited: bool,
        in_shells_place: InShellsPlace,
    ) -> std::result::Result<Started, String> {
        let inner = &self.inner;
        let mut launch = Launch::new(program, &inner.workspace, env);
        launch.with_stdin = cmd.has_stdin();
        launch.in_shells_place = in_shells_place;
        launch.rlimits = Rlimits {
            address_space: None,
            file_size: inner.limits.file_size,
        };
        inner.sandbox.wrap(&mut launch, cmd)?;
        // Made last, so a refused wrap leaves no cgroup behind.
        if limited && !inner.settings.cgroup_limits.is_empty() {
            let cgroup = CgroupHost::get()
                .create(&inner.settings.cgroup_limits, &inner.settings.type_name)
                .map_err(|err| format!("cannot make the command's cgroup: {err}"))?;
            launch.cgroup = Some(Arc::new(cgroup));
        }
        inner.sandbox.start(launch)
    }
}

/// The words of `command` when it is `exec` followed by literal words
/// only, written as berth quotes an argv for a shell: words of the
/// characters no shell treats specially (letters, digits, `_-./,:@%+=`),
/// and single-quoted ones, with `'\''` for a quote — and whose program's
/// name does not start with `-`. A shell given such a command has nothing
/// to expand, split or redirect: it only execs those words. `None` for
/// anything else.
pub fn literal_exec(command: &str) -> Option<Vec<String>> {
    literal_words(command.strip_prefix("exec ")?)
}

/// dash's builtins, which it runs in its own process whatever `PATH`
/// holds.
pub const DASH_BUILTINS: [&str; 39] = [
    ".", ":", "[", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo", "eval",
    "exec", "exit", "export", "false", "fg", "getopts", "hash", "jobs", "kill", "local", "printf",
    "pwd", "read", "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type",
    "ulimit", "umask", "unalias", "unset", "wait",
];

/// The shell's reserved words (of the characters [`literal_exec`] takes).
const RESERVED_WORDS: [&str; 13] = [
    "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while",
];

/// The words of `command` when it is literal words only, as for
/// [`literal_exec`] but without `exec`, and the first names a program:
/// not one of dash's builtins ([`DASH_BUILTINS`]), not a reserved word,
/// not a variable assignment (no `=`). dash forks such a command's
/// program, which execs those words, and waits for it. `None` for
/// anything else.
pub fn literal_simple(command: &str) -> Option<Vec<String>> {
    let words = literal_words(command)?;
    let program = words.first()?.as_str();
    if program.contains('=')
        || DASH_BUILTINS.contains(&program)
        || RESERVED_WORDS.contains(&program)
    {
        return None;
    }
    Some(words)
}

/// The words of `text` when it is literal words only (see
/// [`literal_exec`]) and the first does not start with `-`.
fn literal_words(text: &str) -> Option<Vec<String>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c);
    let mut words: Vec<String> = Vec::new();
    for piece in split_words(text)? {
        let mut word = String::new();
        let mut chars = piece.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                },
                '\\' if chars.next()? == '\'' => word.push('\''),
                c if plain(c) => word.push(c),
                _ => return None,
            }
        }
        words.push(word);
    }
    // A first word starting with `-` (`--` included) is an option to
    // some shells' `exec` and a program's name to others' (dash's): the
    // shell decides.
    match words.first() {
        Some(program) if !program.starts_with('-') => Some(words),
        _ => None,
    }
}

/// `text` cut at single spaces outside single quotes (and not escaped);
/// `None` when a quote is not closed or a word is empty.
fn split_words(text: &str) -> Option<Vec<&str>> {
    let mut words = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !quoted => escaped = true,
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                words.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    words.push(&text[start..]);
    (!quoted && words.iter().all(|word| !word.is_empty())).then_some(words)
}

/// The program that `shell -c command` would exec, when `shell` is
/// `/bin/sh` and is dash, `command` is a [`literal_exec`] or a
/// [`literal_simple`], and `PATH` is set (without dash's `%` suffixes):
/// dash then only execs the words — itself, or in the child it forks and
/// waits for — with its environment as it imported it (variables whose
/// names are not shell names are dropped) and `PWD` set to `physical`,
/// the working directory's physical path.
/// Starting the program directly saves the shell's own start, a
/// dynamically linked program's, and its fork.
///
/// Left to the shell: an environment with `IFS`, `OPTIND` or `PPID`,
/// which dash sets to values of its own, and one with a `PWD` other than
/// the working directory's path, which dash keeps when it names that
/// directory in the shell's own process (`/proc/self/cwd` does).
fn direct_exec(
    shell: &Path,
    command: &str,
    env: &IndexMap<String, String>,
    workdir: &Path,
    physical: &str,
) -> Option<Direct> {
    if shell != Path::new("/bin/sh") || !sh_is_dash() {
        return None;
    }
    if env.get("PATH").is_none_or(|path| path.contains('%')) {
        return None;
    }
    if ["IFS", "OPTIND", "PPID"]
        .iter()
        .any(|name| env.contains_key(*name))
    {
        return None;
    }
    let (argv, forked) = match literal_exec(command) {
        Some(argv) => (argv, false),
        None => (literal_simple(command)?, true),
    };
    let mut env: IndexMap<String, String> = env
        .iter()
        .filter(|(name, _)| is_shell_name(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    match env.get("PWD") {
        None => {
            env.insert("PWD".to_owned(), physical.to_owned());
        }
        Some(pwd) if pwd == physical || Path::new(pwd) == workdir => {}
        Some(_) => return None,
    }
    Some(Direct {
        argv: argv.into_iter().map(OsString::from).collect(),
        env,
        forked,
    })
}

/// A program started without the shell ([`direct_exec`]).
struct Direct {
    argv: Vec<OsString>,
    env: IndexMap<String, String>,
    /// dash would have forked it (a [`literal_simple`] command), rather
    /// than exec'd it.
    forked: bool,
}

/// Whether `name` is a name a POSIX shell gives variables: a letter or
/// `_`, then letters, digits and `_`.
pub fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `/bin/sh` is dash (whose `exec` of literal words adds nothing
/// but `PWD`), looked at once.
fn sh_is_dash() -> bool {
    static DASH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DASH.get_or_init(|| {
        std::fs::canonicalize("/bin/sh")
            .is_ok_and(|path| path.file_name() == Some(std::ffi::OsStr::new("dash")))
    })
}

#[async_trait]
impl<S: Sandbox> Runtime for HostRuntime<S> {
    fn backend_type(&self) -> &str {
        &self.inner.settings.type_name
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities.get_or_init(|| {
            self.inner
                .settings
                .capabilities
                .clone()
                .unwrap_or_else(host_capabilities)
        })
    }

    fn asset_path(&self, asset: &ResolvedAsset) -> String {
        self.inner.sandbox.asset_path(asset)
    }

    fn setup_output(&self) -> &SetupOutput {
        static EMPTY: SetupOutput = SetupOutput {
            commands: Vec::new(),
        };
        self.inner.setup.get().unwrap_or(&EMPTY)
    }

    async fn stream(&self, cmd: ExecCommand) -> Result<EventStream> {
        if self.inner.processes.is_closed() {
            return Err(Error::RuntimeClosed {
                backend: self.inner.settings.type_name.clone(),
            });
        }
        let begun = tokio::time::Instant::now();
        Ok(self.launch(cmd, true).unwrap_or_else(|message| {
            EventStream::finished(ExecResult::spawn_failed(&message, begun.elapsed()))
        }))
    }

    async fn poll(&self) -> RuntimeStatus {
        self.inner.processes.status()
    }

    async fn kill(&self) -> Result<()> {
        self.inner.processes.kill_all();
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner
            .processes
            .close_and_wait(&self.inner.settings.type_name)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_of_literal_words_is_read_back_word_for_word() {
        let cases: [(&str, &[&str]); 5] = [
            ("exec true", &["true"]),
            (
                "exec ls -la src/main.rs a=b x@y:1,2%+",
                &["ls", "-la", "src/main.rs", "a=b", "x@y:1,2%+"],
            ),
            (
                "exec printf '%s|' 'a b' '' 'it'\\''s' 'é' '$HOME'",
                &["printf", "%s|", "a b", "", "it's", "é", "$HOME"],
            ),
            ("exec 'a\nb' '*.py' '#x' '~'", &["a\nb", "*.py", "#x", "~"]),
            ("exec pre'mid dle'post", &["premid dlepost"]),
        ];
        for (command, words) in cases {
            assert_eq!(
                literal_exec(command).as_deref(),
                Some(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>()[..]),
                "{command:?}"
            );
        }
    }

    #[test]
    fn anything_a_shell_would_do_more_with_is_left_to_it() {
        for command in [
            "true",
            "exec",
            "exec ",
            "exec  true",
            "exec true ",
            "exec $X",
            "exec ~/bin/x",
            "exec a;b",
            "exec a && b",
            "exec a | b",
            "exec a > f",
            "exec a 2>&1",
            "exec \"a\"",
            "exec a\\ b",
            "exec 'a",
            "exec a\nb",
            "exec *.py",
            "exec -x",
            "exec --",
            "exec -- x",
            "exec -- -x y",
            "exec a #comment",
            "exec `id`",
            "exec a\tb",
            "  exec a",
            "EXEC a",
        ] {
            assert_eq!(literal_exec(command), None, "{command:?}");
        }
    }

    #[test]
    fn the_direct_environment_is_the_one_dash_would_exec_with() {
        let workdir = tempfile::tempdir().unwrap();
        let physical = std::fs::canonicalize(workdir.path()).unwrap();
        let physical = physical.to_str().unwrap();
        let env: IndexMap<String, String> = [
            ("PATH", "/usr/bin:/bin"),
            ("A-B", "dropped"),
            ("1X", "dropped"),
            ("_ok", "kept"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let direct = |env: &IndexMap<String, String>, command: &str| {
            direct_exec(Path::new("/bin/sh"), command, env, workdir.path(), physical)
        };
        if !sh_is_dash() {
            assert!(direct(&env, "exec env").is_none());
            return;
        }
        let Direct {
            argv,
            env: got,
            forked,
        } = direct(&env, "exec env").unwrap();
        assert_eq!(argv, [OsString::from("env")]);
        assert!(!forked);
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(names, ["PATH", "_ok", "PWD"]);
        assert_eq!(got["PWD"], physical);
        // A PWD that is the working directory's path stays.
        let with = |name: &str, value: &str| {
            let mut env = env.clone();
            env.insert(name.to_owned(), value.to_owned());
            env
        };
        let got = direct(&with("PWD", physical), "exec env").unwrap().env;
        assert_eq!(got["PWD"], physical);
        // Without `exec`, the same program and environment, forked.
        let simple = direct(&env, "env -0").unwrap();
        assert_eq!(simple.argv, [OsString::from("env"), OsString::from("-0")]);
        assert_eq!(simple.env.keys().collect::<Vec<_>>(), names);
        assert!(simple.forked);
        // Left to the shell: another PWD (dash judges it in its own
        // process), the variables dash sets itself, no PATH, another
        // shell, more than literal words.
        for env in [
            with("PWD", "/"),
            with("PWD", "/proc/self/cwd"),
            with("IFS", "x"),
            with("OPTIND", "5"),
            with("PPID", "1"),
            with("PATH", "/usr/bin%builtin:/bin"),
        ] {
            assert!(direct(&env, "exec env").is_none(), "{env:?}");
        }
        let mut no_path = env.clone();
        no_path.shift_remove("PATH");
        assert!(direct(&no_path, "exec env").is_none());
        assert!(
            direct_exec(
                Path::new("/bin/bash"),
                "exec env",
                &env,
                workdir.path(),
                physical
            )
            .is_none()
        );
        assert!(direct(&env, "exec env $X").is_none());
        assert!(direct(&env, "echo hi").is_none());
    }

    #[test]
    fn literal_commands_name_programs_not_builtins() {
        assert_eq!(
            literal_simple("python3 -c 'print(1)' a=b").as_deref(),
            Some(&["python3", "-c", "print(1)", "a=b"].map(String::from)[..])
        );
        assert_eq!(
            literal_simple("/bin/echo hi").as_deref(),
            Some(&["/bin/echo", "hi"].map(String::from)[..])
        );
        for command in [
            "echo hi",
            "'echo' hi",
            "cd /",
            "true",
            ": x",
            ". ./env",
            "[ -d / ]",
            "exec",
            "if true",
            "while",
            "A=1 env",
            "A=1",
            "-x",
            "a;b",
            "a $X",
            "",
            " a",
        ] {
            assert_eq!(literal_simple(command), None, "{command:?}");
        }
    }

    #[test]
    fn every_builtin_of_this_machines_dash_is_known() {
        if !sh_is_dash() {
            runtime_conformance::skip::record("/bin/sh is not dash here");
            return;
        }
        // Every name on PATH and every name dash may know, through dash's
        // `type`: a builtin that is not in the list would run here in
        // place of a program of that name.
        let mut names: Vec<String> = DASH_BUILTINS.map(String::from).to_vec();
        for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if literal_words(&name).is_some() {
                    names.push(name);
                }
            }
        }
        names.extend(["fc", "let", "source", "declare", "history", "help"].map(String::from));
        names.sort();
        names.dedup();
        let script: String = names.iter().map(|n| format!("type '{n}'\n")).collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        let mut builtins: Vec<&str> = said
            .lines()
            .filter_map(|line| {
                line.strip_suffix(" is a shell builtin")
                    .or_else(|| line.strip_suffix(" is a special shell builtin"))
            })
            .collect();
        builtins.sort();
        let mut known = DASH_BUILTINS.to_vec();
        known.sort();
        assert_eq!(builtins, known);
    }
}
