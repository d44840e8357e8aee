//! The command line: every command, flag and its help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use session_core::compression::Compression;
use session_core::spec::Mode;

/// Runs commands in isolated sessions, snapshots and diffs directories, and
/// reaps what crashed sessions left behind.
///
/// Exit codes: `run` passes the command's exit code through (124 on
/// timeout, 128+N when signal N killed it); `diff` exits 0 when the trees
/// are equal and 1 when they differ; every command exits 125 when berth
/// itself fails (bad arguments, a bad spec, an unknown backend, I/O), and
/// 141 (128 + SIGPIPE), printing nothing, when its stdout or stderr was
/// closed before it finished writing (`berth … | head -1`).
///
/// `--json`: a command given it prints exactly one JSON object on stdout,
/// its result or, when berth fails, `{"error": {"message": ..., "kind":
/// ...}}`, where kind is `usage` (the command line), `spec` (a spec, an
/// asset map, a glob), `backend` (an unknown type, a plugin, setup, a
/// runtime, a remote server), `io` (files, directories, archives) or
/// `internal`.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Whether the command prints JSON on stdout (`--json`), so that a
    /// failure of berth's is printed as JSON there too.
    pub(crate) fn json(&self) -> bool {
        match &self.command {
            Command::Run(args) => args.json,
            Command::Plugins(args) => match &args.action {
                Some(PluginsAction::Test(test)) => test.json,
                Some(PluginsAction::Install(_)) => false,
                None => args.json,
            },
            Command::Snapshot(args) => args.json,
            Command::Diff(args) => args.json,
            Command::Doctor(args) => args.json,
            Command::Gc(args) => args.json,
            Command::Serve(_) | Command::Completions(_) | Command::Man(_) => false,
        }
    }
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Directory to load backend plugins from [default: $BERTH_PLUGIN_DIR,
    /// else $XDG_DATA_HOME/berth/plugins, else ~/.local/share/berth/plugins]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) plugin_dir: Option<PathBuf>,

    /// Where session directories (those of `berth serve`'s remote sessions
    /// too) are created and where `gc` looks for them [default: the system's
    /// temporary directory, $TMPDIR or /tmp]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) temp_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Run(RunArgs),
    Plugins(PluginsArgs),
    Snapshot(SnapshotArgs),
    Diff(DiffArgs),
    Doctor(DoctorArgs),
    Gc(GcArgs),
    Serve(ServeArgs),
    Completions(crate::manual::CompletionsArgs),
    Man(crate::manual::ManArgs),
}

/// Run one command in a fresh session and pass its exit code through.
///
/// The workspace starts as a copy of `--workspace DIR` (DIR itself is never
/// modified) or empty. The command's stdout and stderr are streamed live;
/// berth's own messages go to stderr.
///
/// The command: `-- PROGRAM ARGS...` runs PROGRAM with exactly these
/// arguments (no word is split, globbed or expanded) as the session's shell
/// process itself (`exec`), so a signal that kills it is reported as that
/// signal; as with `docker run`, PROGRAM is looked up in PATH, and shell
/// builtins, keywords and functions are not programs. `-c 'STRING'` hands
/// a shell string to the session's shell as it is (`a && b`, `$VAR`,
/// pipes).
///
/// Stdin: berth's stdin is forwarded to the command as it arrives when it
/// is a pipe or a file (`producer | berth run -- cat`), in bounded memory,
/// and its end closes the command's stdin. A terminal is not forwarded
/// unless `-i` asks for it (the command reads an empty stdin). A backend
/// that takes stdin only whole gets it all read first; one that takes none
/// gets none (berth says so).
///
/// Variables, lowest precedence first: the host environment (only when the
/// spec sets `environment.include_os_env`), the spec's `environment.env`,
/// each `--env-file` in order, each `-e` in order. They reach the spec's
/// setup commands too. On the `local` backend, commands also get the host's
/// PATH and HOME unless something above sets them. `--env` names the spec,
/// not a variable: `--env FOO=bar` is refused with a pointer to `-e`.
///
/// Checkpoints: with `--checkpoint OUT`, OUT holds exactly the workspace's
/// files afterwards (files the command deleted are gone, and so is
/// anything else OUT held), and berth prints what changed since the
/// workspace was prepared. The new content is written beside OUT and
/// swapped in whole (in place where it cannot be). OUT must be missing,
/// empty, or a directory berth wrote a checkpoint to (marked by the
/// extended attribute `user.berth.checkpoint`); any other non-empty OUT is
/// refused unless `--force`.
///
/// Exit code: the command's own; 124 when a wall or idle timeout killed it;
/// 128+N when signal N killed it; 130 (128+N) when berth itself was
/// interrupted by SIGINT (SIGTERM, SIGHUP), after killing the command and
/// removing the session (a second signal, a quarter of a second or more
/// after the first, exits at once and leaves what is left to `berth gc`);
/// 141 when berth's stdout was closed (the command is killed, the session
/// removed, nothing printed); 125 when berth failed (bad spec, unknown
/// backend, setup or spawn failure, a cleanup that failed).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth run --env python.yaml --workspace ./project -- pytest -q\n  berth run -e DEBUG=1 --env-file ci.env -- ./test.sh\n  gunzip -c data.gz | berth run -- wc -l\n  berth run -c 'make && ./a.out > result.txt' --checkpoint out/"
)]
pub(crate) struct RunArgs {
    /// The environment spec (YAML, or JSON by its `.json` suffix); without
    /// it, `type: local` with default settings
    #[arg(long = "env", value_name = "SPEC")]
    pub(crate) spec: Option<PathBuf>,

    /// Set a variable: KEY=VALUE, or KEY alone to pass berth's own value
    /// (an error when berth has none). Repeatable; wins over --env-file and
    /// the spec
    #[arg(short = 'e', long = "var", value_name = "KEY[=VALUE]")]
    pub(crate) vars: Vec<String>,

    /// Read variables from FILE, in docker's format: one KEY=VALUE per line
    /// (the value as it is, quotes included), KEY alone for berth's own
    /// value, `#` comment lines and blank lines skipped. Repeatable; later
    /// files win
    #[arg(long = "env-file", value_name = "FILE")]
    pub(crate) env_files: Vec<PathBuf>,

    /// Forward stdin even when it is a terminal
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,

    /// Directory the workspace starts from (a snapshot of it is taken)
    #[arg(long, short = 'w', value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,

    /// Static asset map; paths in it are relative to its own directory
    #[arg(long, value_name = "ASSETS")]
    pub(crate) assets: Option<PathBuf>,

    /// Session mode [default: agent with --checkpoint, else eval]
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) mode: Option<ModeArg>,

    /// Kill the command's process tree after this many seconds (the spec's
    /// `limits.wall_timeout` applies too: the smaller wins)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub(crate) timeout: Option<Duration>,

    /// After the command, make this directory hold exactly the workspace's
    /// files and print what changed (agent mode; refused with `--mode
    /// eval`)
    #[arg(long, value_name = "OUT_DIR")]
    pub(crate) checkpoint: Option<PathBuf>,

    /// Replace a non-empty --checkpoint directory that berth did not write
    #[arg(long, requires = "checkpoint")]
    pub(crate) force: bool,

    /// Print one JSON result object on stdout instead of streaming output
    ///
    /// Fields: status (exited, signaled, timed_out, idle_timed_out,
    /// spawn_failed, lost), exit_code (-N when signal N killed it), signal,
    /// timed_out, elapsed_secs, stdout and stderr (each {text, utf8, base64,
    /// truncated, total_bytes, spill_path}: text is UTF-8 with U+FFFD for
    /// invalid bytes, and when utf8 is false, base64 holds the exact bytes),
    /// usage, checkpoint ({dir, diff} with --checkpoint, else null). The exit
    /// code is the same as without --json.
    #[arg(long)]
    pub(crate) json: bool,

    /// A shell string to run as it is, instead of PROGRAM ARGS
    #[arg(
        short = 'c',
        long = "command",
        value_name = "SHELL_STRING",
        conflicts_with = "argv"
    )]
    pub(crate) shell_command: Option<String>,

    /// The program and its arguments, best after `--`
    #[arg(value_name = "PROGRAM", trailing_var_arg = true, num_args = 0..)]
    pub(crate) argv: Vec<String>,
}

/// The session modes as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// An agent works in the workspace: assets are copied in.
    Agent,
    /// The workspace is evaluated: assets stay outside, eval setup runs.
    #[value(alias = "evaluation")]
    Eval,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Agent => Mode::Agent,
            ModeArg::Eval => Mode::Evaluation,
        }
    }
}

/// List every backend type: where it came from, its version and
/// capabilities, and the plugins that could not be loaded; test a plugin
/// library or install one.
///
/// Without a subcommand, lists. `berth plugins test LIB` runs the
/// conformance suite against a library through the real loader (no berth
/// checkout or cargo needed); `berth plugins install LIB` checks that it
/// loads and copies it into the plugin directory.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  berth plugins\n  berth plugins test target/release/libmy_backend.so\n  berth plugins install target/release/libmy_backend.so"
)]
pub(crate) struct PluginsArgs {
    #[command(subcommand)]
    pub(crate) action: Option<PluginsAction>,

    /// Print JSON instead of lines
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsAction {
    Test(PluginTestArgs),
    Install(PluginInstallArgs),
}

/// Run the whole conformance suite against a plugin library.
///
/// LIB is copied into a private temporary plugin directory (in
/// `--temp-root`) and loaded through berth's real loader (trust checks, ABI
/// version and layout, declared types, no clash with a built-in type);
/// every case then runs against every backend type it declares, each in
/// fresh sessions. One line per case (`pass`, `FAIL` with the reason, `skip`
/// with why), then `N passed, N failed, N skipped`. No berth checkout and no
/// cargo are needed. $BERTH_CONFORMANCE_FILTER=NAME runs only the cases
/// whose name contains NAME. Only errors are logged unless RUST_LOG says
/// otherwise (the suite makes setups fail on purpose).
///
/// Exit code: 0 when the library loaded and no case failed; 1 when it did
/// not load or a case failed; 125 when berth itself failed (LIB missing).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  berth plugins test target/release/libmy_backend.so")]
pub(crate) struct PluginTestArgs {
    /// The plugin library (`.so`)
    #[arg(value_name = "LIB")]
    pub(crate) library: PathBuf,

    /// Print one JSON object: the library, its types, each case's type,
    /// name, outcome (passed, failed, skipped), reason and duration_ms, and
    /// the totals
    #[arg(long)]
    pub(crate) json: bool,
}

/// Install a plugin library into the plugin directory.
///
/// LIB is first loaded from a private temporary copy: it must pass the
/// loader's checks (ABI version, layout, declared types) and declare no type
/// a built-in serves, nor one another library in the plugin directory
/// serves (unless `--force`, which removes that library). It is then copied
/// into the plugin directory under its own name, atomically (a temporary
/// file in that directory, synced, then renamed), mode 0755; the directory
/// is created (mode 0755) when missing. A library of the same name is
/// replaced. The loader's trust rules are checked on the result.
///
/// The plugin directory: `--plugin-dir DIR`, else $BERTH_PLUGIN_DIR, else
/// $XDG_DATA_HOME/berth/plugins, else ~/.local/share/berth/plugins.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  berth plugins install target/release/libmy_backend.so --plugin-dir ~/.local/share/berth/plugins"
)]
pub(crate) struct PluginInstallArgs {
    /// The plugin library (`.so`)
    #[arg(value_name = "LIB")]
    pub(crate) library: PathBuf,

    /// Replace the library that already serves a type LIB declares
    #[arg(long)]
    pub(crate) force: bool,
}

/// Snapshot a directory into a tar archive written exactly at ARCHIVE.
///
/// What goes in follows the rules of a spec's `snapshot:` block: with
/// `--keep`, only files matching a keep glob; never a path matching an
/// ignore glob (an ignored directory is not walked); ignore beats keep.
/// Without `--env`, nothing is left out but what `--ignore` and `--keep`
/// say; with `--env SPEC`, the spec's `snapshot.keep_globs` and
/// `snapshot.ignore_globs` apply (its default ignores when it sets none),
/// and `--keep` and `--ignore` add to them. Globs are berth's dialect: `*`
/// and `?` cross `/` (`*.pyc` matches `a/b.pyc`), `**/` matches any
/// number of directories, `[...]` and `{a,b}` work, `\` escapes.
///
/// The archive's name says its format: .tar, .tar.gz/.tgz, .tar.bz2/.tbz2,
/// .tar.xz/.txz, .tar.zst/.tzst. Any other name is refused unless
/// `--compression` says the format (the spec's `snapshot.compression` does
/// not: the name would lie about the file). `berth diff` reads every
/// archive this writes, whatever its name.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth snapshot project/ -o project.tar.zst --ignore 'target/*' --ignore '*.log'\n  berth snapshot project/ -o src.tar --keep 'src/**/*.rs' --json\n  berth snapshot project/ -o project.tar.gz --env python.yaml"
)]
pub(crate) struct SnapshotArgs {
    /// The directory to snapshot (symlinks are stored as links, never
    /// followed)
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// The archive to write
    #[arg(long, short = 'o', value_name = "ARCHIVE")]
    pub(crate) output: PathBuf,

    /// Compression [default: from ARCHIVE's suffix]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) compression: Option<CompressionArg>,

    /// Leave out the paths this glob matches (repeatable)
    #[arg(long = "ignore", value_name = "GLOB")]
    pub(crate) ignore: Vec<String>,

    /// Keep only the files one of these globs matches (repeatable)
    #[arg(long = "keep", value_name = "GLOB")]
    pub(crate) keep: Vec<String>,

    /// Take the keep and ignore globs of this environment spec's
    /// `snapshot:` block
    #[arg(long = "env", value_name = "SPEC")]
    pub(crate) spec: Option<PathBuf>,

    /// Print one JSON object on stdout: archive (its path), checksum,
    /// entries, bytes (of content), archive_bytes, compression, and left_out
    /// (the paths the rules left out; a directory ends with `/`)
    #[arg(long)]
    pub(crate) json: bool,
}

/// The compression formats as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    Gz,
    Bz2,
    Xz,
    Zstd,
    None,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Compression {
        match arg {
            CompressionArg::Gz => Compression::Gzip,
            CompressionArg::Bz2 => Compression::Bzip2,
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
}

/// Compare two trees, each a directory or a snapshot archive.
///
/// An archive is a tar archive, plain or compressed with gzip, bzip2, xz or
/// zstd: its format is read from its first bytes, whatever its name (every
/// archive `berth snapshot` writes is one). Only changed files are
/// read: text files up to 4 MiB get a text diff while the diff has read
/// less than 32 MiB of text; larger ones, like binary files, are reported
/// with their sizes. Exit code: 0 when equal, 1 when different, 125 on
/// error.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The old tree
    #[arg(value_name = "A")]
    pub(crate) old: PathBuf,

    /// The new tree
    #[arg(value_name = "B")]
    pub(crate) new: PathBuf,

    /// Print one line per changed path and a summary instead of the text
    #[arg(long, conflicts_with = "json")]
    pub(crate) stat: bool,

    /// Print the whole diff as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

/// Check what works on this machine: every backend's own checks, the plugin
/// directory, namespaces, the temporary directory.
///
/// Failed checks are reported, not fatal: the exit code is 0 unless berth
/// itself fails.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print JSON instead of lines
    #[arg(long)]
    pub(crate) json: bool,
}

/// Find and remove what crashed sessions left behind: session directories
/// whose owner process is gone, and whatever each backend reports.
///
/// A session directory (a remote session of a killed `berth serve`
/// included) is removed when its marker names a process of this host that
/// no longer exists; pass the same `--temp-root` as the process that made
/// it. One owned by a live process or another host is left alone. One
/// without a readable marker is reported, and removed only when it was last
/// modified more than an hour ago and holds nothing but a session's
/// `workspace/` and `archives/`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Report what would be removed, remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Print JSON instead of lines
    #[arg(long)]
    pub(crate) json: bool,
}

/// Serve this host's backends (built-ins and plugins) to remote `type: api`
/// clients over HTTP.
///
/// Every request needs the bearer token: from `--token-file`, else
/// `$BERTH_TOKEN`, else a fresh token printed once on stderr. A token
/// shorter than 16 bytes is refused, and so is a token file that group or
/// others may read or write (`chmod 600` it). The server binds loopback
/// unless told otherwise and warns when it listens elsewhere without TLS.
/// Remote sessions live in `--temp-root`, where `berth gc` finds them if the
/// server is killed. SIGINT or SIGTERM stops it and closes every remote
/// session. It logs on stderr at info (`RUST_LOG` changes that): each
/// session's opening and closing, with its id, backend type and the
/// client's address. `type: api` is never served: a server does not relay
/// sessions to another one. A docker spec with `docker.pool` gets a warm
/// pool of started containers here (unless `--no-warm-pools`); SIGINT or
/// SIGTERM removes them.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  berth serve --listen 127.0.0.1:7341 --token-file ~/.config/berth/token"
)]
pub(crate) struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7341")]
    pub(crate) listen: std::net::SocketAddr,

    /// File holding the bearer token clients must send
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,

    /// Serve only this backend type to clients (repeatable; default: every
    /// registered type but `api`). A client's token lets it run whatever the served
    /// backends allow, as this server's user: `type: local` is a shell on
    /// this host
    #[arg(long = "backend", value_name = "TYPE")]
    pub(crate) backends: Vec<String>,

    /// Keep no warm pools: a docker spec's `docker.pool` is ignored and
    /// every session creates its container (by default the server keeps
    /// each pool's containers started, and removes them when it stops)
    #[arg(long)]
    pub(crate) no_warm_pools: bool,
}

/// The command line as berth parses it: [`Cli`]'s, with every option that
/// takes a value also taking one that starts with `-` and reads as a
/// number, so `--timeout -1` is the value error it is, not "unexpected
/// argument" (whatever option a command gains later).
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory as _;
    fn numbers_as_values(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|arg| {
            if !arg.is_positional() && arg.get_action().takes_values() {
                arg.allow_negative_numbers(true)
            } else {
                arg
            }
        })
        .mut_subcommands(numbers_as_values)
    }
    numbers_as_values(Cli::command())
}

/// Parses berth's own arguments with [`command`].
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// Parses `args` (the program's name first) with [`command`].
pub(crate) fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches as _;
    let mut command = command();
    let matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
}

/// Parses a positive, finite number of seconds (`10`, `0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{text}`: the timeout must be greater than zero"));
    }
    if secs > session_core::runtime::MAX_TIMEOUT.as_secs_f64() {
        return Err(format!(
            "`{text}` is too long a timeout: berth takes at most {} s (about a century)",
            session_core::runtime::MAX_TIMEOUT.as_secs()
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|err| format!("`{text}`: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    /// Every option that takes a value, on every command, takes `-1` as
    /// one: whatever it then says about it, it never calls it an unknown
    /// argument.
    #[test]
    fn every_option_takes_a_leading_minus_as_a_value() {
        fn walk(cmd: &clap::Command, path: &mut Vec<String>, checked: &mut usize) {
            for arg in cmd.get_arguments() {
                if arg.is_positional() || !arg.get_action().takes_values() {
                    continue;
                }
                let flag = match (arg.get_long(), arg.get_short()) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(short)) => format!("-{short}"),
                    (None, None) => continue,
                };
                let mut argv = path.clone();
                argv.push(flag.clone());
                argv.push("-1".to_owned());
                if let Err(err) = parse_from(&argv) {
                    assert!(
                        !matches!(err.kind(), clap::error::ErrorKind::UnknownArgument),
                        "{argv:?}: {err}"
                    );
                }
                *checked += 1;
            }
            for sub in cmd.get_subcommands() {
                path.push(sub.get_name().to_owned());
                walk(sub, path, checked);
                path.pop();
            }
        }
        let mut checked = 0;
        walk(&command(), &mut vec!["berth".to_owned()], &mut checked);
        assert!(checked > 5, "only {checked} options were checked");
    }

    #[test]
    fn a_negative_timeout_is_a_value_error() {
        let err = parse_from(["berth", "run", "--timeout", "-1", "--", "true"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.to_string();
        assert!(
            text.contains("invalid value '-1' for '--timeout <SECONDS>'"),
            "{text}"
        );
        assert!(text.contains("greater than zero"), "{text}");
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn run_keeps_everything_after_the_program_verbatim() {
        let cli = Cli::try_parse_from([
            "berth", "run", "--json", "--", "printf", "--json", "-c", "x",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.json);
        assert_eq!(run.shell_command, None);
        assert_eq!(run.argv, ["printf", "--json", "-c", "x"]);

        let cli = Cli::try_parse_from(["berth", "run", "echo", "-n", "hi"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.argv, ["echo", "-n", "hi"]);
    }

    #[test]
    fn run_refuses_both_a_shell_string_and_argv() {
        assert!(Cli::try_parse_from(["berth", "run", "-c", "true", "--", "false"]).is_err());
    }
}
