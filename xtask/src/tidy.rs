//! `cargo xtask tidy`: checks the invariants ARCHITECTURE.md states about
//! the repository itself, and prints each violation as `path:line: what`.
//!
//! * The crate graph (from `cargo metadata`): backend crates
//!   (`runtime-local`, `runtime-docker`, `runtime-api`, every crate under
//!   `plugins/`) never depend on one another, except that a plugin (a
//!   sandbox built on host processes) may build on `runtime-local`; no crate
//!   but `berth` (the host), `berth-python` (the host's session API as a
//!   Python module), `xtask` and `berth-bench` names every built-in
//!   backend, and the host names each of them.
//! * The SDK crate `berth-sdk` exists, and its normal dependencies, followed
//!   all the way down with the features building it alone turns on (from
//!   `cargo tree`: `cargo metadata` unifies features over the whole
//!   workspace, so it would blame the SDK for what the host turns on), hold
//!   no crate for file formats or compression.
//! * Every `.rs` file starts with a module doc (`//!`).
//! * Every `unsafe` block and `unsafe impl` has a `// SAFETY:` comment on
//!   its line, or one that ends within the three lines above it.
//! * No `.rs`, `.md` or `.toml` file cites a document outside the
//!   repository.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The backends linked into the host.
const BUILT_IN_BACKENDS: [&str; 3] = ["runtime-local", "runtime-docker", "runtime-api"];

/// The crates that may name every built-in backend.
const MAY_NAME_ALL_BACKENDS: [&str; 4] = ["berth", "berth-python", "xtask", "berth-bench"];

/// The host's package.
const HOST: &str = "berth";

/// The backend every sandbox built on host processes builds on.
const HOST_PROCESS_KIT: &str = "runtime-local";

/// The crate a plugin depends on.
const SDK: &str = "berth-sdk";

/// Crates the SDK's dependency tree must not hold: file formats and
/// compression that a backend never needs.
const NOT_IN_THE_SDK: [&str; 9] = [
    "parquet",
    "rusqlite",
    "libsqlite3-sys",
    "bzip2",
    "liblzma",
    "zstd",
    "csv",
    "flate2",
    "similar",
];

/// How many lines above an `unsafe` block its `SAFETY:` comment may end.
const SAFETY_REACH: usize = 3;

/// One broken invariant, at a place in a file (relative to the root).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Violation {
    path: PathBuf,
    line: usize,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.what)
    }
}

/// `cargo xtask tidy`: prints every violation; fails when there is one.
pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    if !args.is_empty() {
        bail!("usage: cargo xtask tidy");
    }
    let violations = check(&crate::workspace_root())?;
    for violation in &violations {
        println!("{violation}");
    }
    if violations.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "xtask tidy: {} problem{}",
            violations.len(),
            if violations.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Every violation in the workspace at `root`, sorted by place.
pub(crate) fn check(root: &Path) -> Result<Vec<Violation>> {
    let metadata = cargo_metadata(root)?;
    let packages = packages(&metadata, root)?;
    let mut violations = crate_graph(&packages, root);
    violations.extend(sdk_tree(&packages, root)?);
    for path in source_files(root)? {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // Not UTF-8: nothing of ours to check.
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        violations.extend(check_text(&relative, &text));
    }
    violations.sort();
    Ok(violations)
}

// ---------------------------------------------------------------------------
// The crate graph

/// A workspace member as the graph rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    /// Its manifest, relative to the root.
    manifest: PathBuf,
    /// The manifest's text, for line numbers.
    manifest_text: String,
    /// Declared dependencies: package name and kind (`normal`, `dev`,
    /// `build`).
    dependencies: Vec<(String, String)>,
}

impl Package {
    /// Whether it is a backend crate: a built-in, or a plugin.
    fn is_backend(&self) -> bool {
        BUILT_IN_BACKENDS.contains(&self.name.as_str()) || self.manifest.starts_with("plugins")
    }

    fn depends_on(&self, name: &str, kinds: &[&str]) -> bool {
        self.dependencies
            .iter()
            .any(|(dep, kind)| dep == name && kinds.contains(&kind.as_str()))
    }

    /// The manifest line that names `dependency` (1 if none does).
    fn line_of(&self, dependency: &str) -> usize {
        line_naming(&self.manifest_text, dependency)
    }
}

/// The 1-based number of the first line of `manifest` that starts with the
/// key `key` (`key = …`, `key.workspace = …`), or 1.
fn line_naming(manifest: &str, key: &str) -> usize {
    manifest
        .lines()
        .position(|line| {
            line.trim_start().strip_prefix(key).is_some_and(|rest| {
                rest.starts_with([' ', '.', '=']) || rest.starts_with("\"") || rest.is_empty()
            })
        })
        .map_or(1, |index| index + 1)
}

fn cargo_metadata(root: &Path) -> Result<Value> {
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")
}

/// The workspace members of `cargo metadata --no-deps` output.
fn packages(metadata: &Value, root: &Path) -> Result<Vec<Package>> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata lists no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut packages = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let Some(id) = package["id"].as_str() else {
            continue;
        };
        if !members.contains(id) {
            continue;
        }
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let manifest_text = std::fs::read_to_string(&manifest).unwrap_or_default();
        let dependencies = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|dep| {
                (
                    dep["name"].as_str().unwrap_or_default().to_owned(),
                    dep["kind"].as_str().unwrap_or("normal").to_owned(),
                )
            })
            .collect();
        packages.push(Package {
            name,
            manifest: manifest
                .strip_prefix(root)
                .unwrap_or(&manifest)
                .to_path_buf(),
            manifest_text,
            dependencies,
        });
    }
    Ok(packages)
}

/// The rules of ARCHITECTURE.md on which crate may depend on which.
fn crate_graph(packages: &[Package], root: &Path) -> Vec<Violation> {
    let mut violations = Vec::new();
    let backends: Vec<&Package> = packages.iter().filter(|p| p.is_backend()).collect();
    for backend in &backends {
        for other in &backends {
            if other.name == backend.name || !backend.depends_on(&other.name, &["normal", "build"])
            {
                continue;
            }
            let kit = other.name == HOST_PROCESS_KIT && backend.manifest.starts_with("plugins");
            if !kit {
                violations.push(Violation {
                    path: backend.manifest.clone(),
                    line: backend.line_of(&other.name),
                    what: format!(
                        "the backend {} depends on the backend {}: backends never depend on \
                         each other (only a plugin may build on {HOST_PROCESS_KIT})",
                        backend.name, other.name
                    ),
                });
            }
        }
    }
    for package in packages {
        let all = BUILT_IN_BACKENDS
            .iter()
            .all(|b| package.depends_on(b, &["normal", "build", "dev"]));
        if all && !MAY_NAME_ALL_BACKENDS.contains(&package.name.as_str()) {
            violations.push(Violation {
                path: package.manifest.clone(),
                line: package.line_of(BUILT_IN_BACKENDS[0]),
                what: format!(
                    "{} names every built-in backend: only {} may",
                    package.name,
                    MAY_NAME_ALL_BACKENDS.join(", ")
                ),
            });
        }
    }
    match packages.iter().find(|p| p.name == HOST) {
        Some(host) => {
            for backend in BUILT_IN_BACKENDS {
                if !host.depends_on(backend, &["normal"]) {
                    violations.push(Violation {
                        path: host.manifest.clone(),
                        line: 1,
                        what: format!(
                            "the host does not depend on {backend}: it must name every \
                             built-in backend, or that backend is not registered"
                        ),
                    });
                }
            }
        }
        None => violations.push(Violation {
            path: PathBuf::from("Cargo.toml"),
            line: line_naming(&read_manifest(root), "members"),
            what: format!("no workspace member is named {HOST}"),
        }),
    }
    violations
}

fn read_manifest(root: &Path) -> String {
    std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The SDK's dependency tree

/// Checks `berth-sdk`'s normal dependency tree, from `cargo tree`.
fn sdk_tree(packages: &[Package], root: &Path) -> Result<Vec<Violation>> {
    let Some(sdk) = packages.iter().find(|p| p.name == SDK) else {
        return Ok(vec![missing_sdk(root)]);
    };
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args([
            "tree",
            "--package",
            SDK,
            "--edges",
            "normal",
            "--target",
            "all",
            "--prefix",
            "depth",
            "--format",
            "{p}",
        ])
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree -p {SDK} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(forbidden_in_tree(
        sdk,
        &String::from_utf8_lossy(&output.stdout),
    ))
}

/// The violation when there is no SDK crate.
fn missing_sdk(root: &Path) -> Violation {
    Violation {
        path: PathBuf::from("Cargo.toml"),
        line: line_naming(&read_manifest(root), "members"),
        what: format!(
            "no workspace member is named {SDK}: plugins depend on that one crate, whose \
             normal dependencies must hold none of {}",
            NOT_IN_THE_SDK.join(", ")
        ),
    }
}

/// The forbidden crates in `tree`, the output of `cargo tree --prefix
/// depth --format {p}` rooted at `sdk`, each reported once with the path
/// that brings it in, at the line of `sdk`'s manifest naming the first step.
fn forbidden_in_tree(sdk: &Package, tree: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    // The names from the root to the current line.
    let mut path: Vec<String> = Vec::new();
    for line in tree.lines() {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let Some(name) = line[digits..].split_whitespace().next() else {
            continue;
        };
        path.truncate(depth);
        path.push(name.to_owned());
        if NOT_IN_THE_SDK.contains(&name) && seen.insert(name.to_owned()) {
            let first_step = path.get(1).map_or(name, String::as_str);
            violations.push(Violation {
                path: sdk.manifest.clone(),
                line: sdk.line_of(first_step),
                what: format!(
                    "{SDK}'s normal dependencies include {name} ({}): a plugin must not \
                     build file formats or compression it does not use",
                    path.join(" → ")
                ),
            });
        }
    }
    violations
}

// ---------------------------------------------------------------------------
// Source files

/// Every `.rs`, `.md` and `.toml` file under `root`, but not in `target/`
/// directories, hidden directories or the build directory.
fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    let build_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                let skip = name == "target"
                    || name.starts_with('.')
                    || build_dir.as_deref() == Some(path.as_path());
                if !skip {
                    pending.push(path);
                }
            } else if kind.is_file()
                && [".rs", ".md", ".toml"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The violations in one file's text.
fn check_text(path: &Path, text: &str) -> Vec<Violation> {
    let mut violations = outside_citations(path, text);
    if path.extension().is_some_and(|e| e == "rs") {
        violations.extend(module_doc(path, text));
        violations.extend(unsafe_without_safety(path, text));
    }
    violations
}

/// The ways to cite a document outside the repository, assembled so this
/// file does not cite one itself.
fn outside_documents() -> [String; 4] {
    [
        ["SPEC", ".md"].concat(),
        ["SPEC", " §"].concat(),
        ["DESIGN", ".md"].concat(),
        ["..", "/shared"].concat(),
    ]
}

fn outside_citations(path: &Path, text: &str) -> Vec<Violation> {
    let patterns = outside_documents();
    let mut violations = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for pattern in &patterns {
            if line.contains(pattern.as_str()) {
                violations.push(Violation {
                    path: path.to_path_buf(),
                    line: index + 1,
                    what: format!(
                        "cites `{pattern}`, a document outside the repository: cite one in \
                         it (README.md, ARCHITECTURE.md, SECURITY.md, BENCHMARKS.md, \
                         docs/backend-contract.md) or state the rule"
                    ),
                });
            }
        }
    }
    violations
}

fn module_doc(path: &Path, text: &str) -> Option<Violation> {
    let first = text
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty());
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => None,
        Some((index, _)) => Some(Violation {
            path: path.to_path_buf(),
            line: index + 1,
            what: "the file does not start with a module doc (`//!`)".to_owned(),
        }),
        None => Some(Violation {
            path: path.to_path_buf(),
            line: 1,
            what: "the file is empty: it needs at least a module doc (`//!`)".to_owned(),
        }),
    }
}

fn unsafe_without_safety(path: &Path, text: &str) -> Vec<Violation> {
    let code = code_only(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut violations = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let Some(what) = unsafe_use(line) else {
            continue;
        };
        if !has_safety_comment(&lines, index) {
            violations.push(Violation {
                path: path.to_path_buf(),
                line: index + 1,
                what: format!(
                    "`{what}` without a `// SAFETY:` comment on its line or ending within \
                     the {SAFETY_REACH} lines above"
                ),
            });
        }
    }
    violations
}

/// `unsafe {` or `unsafe impl` in a line of code, if there is one.
fn unsafe_use(code: &str) -> Option<&'static str> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for (at, word) in code.match_indices("unsafe") {
        if code[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let rest = &code[at + word.len()..];
        if rest.chars().next().is_some_and(ident) {
            continue;
        }
        let rest = rest.trim_start();
        if rest.starts_with('{') {
            return Some("unsafe {");
        }
        if rest
            .strip_prefix("impl")
            .is_some_and(|r| !r.chars().next().is_some_and(ident))
        {
            return Some("unsafe impl");
        }
    }
    None
}

/// Whether a `SAFETY:` comment is on line `index` or ends within the
/// lines above it (a comment block counts whole).
fn has_safety_comment(lines: &[&str], index: usize) -> bool {
    if lines.get(index).is_some_and(|l| l.contains("SAFETY:")) {
        return true;
    }
    for above in 1..=SAFETY_REACH {
        let Some(at) = index.checked_sub(above) else {
            return false;
        };
        if is_comment(lines[at]) {
            // The whole comment block this line ends.
            let mut line = at;
            loop {
                if lines[line].contains("SAFETY:") {
                    return true;
                }
                if line == 0 || !is_comment(lines[line - 1]) {
                    break;
                }
                line -= 1;
            }
            return false;
        }
        if lines[at].contains("SAFETY:") {
            return true;
        }
    }
    false
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// `text` with comments and the contents of string and character literals
/// replaced by spaces, lines kept where they were: what is left is code.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#.
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            for _ in i..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => {
                        out.push(' ');
                        if let Some(&escaped) = chars.get(i + 1) {
                            out.push(blank(escaped));
                        }
                        i += 2;
                    }
                    '"' => {
                        out.push(' ');
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(blank(other));
                        i += 1;
                    }
                }
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime.
            let literal_end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, manifest: &str, deps: &[(&str, &str)]) -> Package {
        let text: String = deps
            .iter()
            .map(|(dep, _)| format!("{dep}.workspace = true\n"))
            .collect();
        Package {
            name: name.to_owned(),
            manifest: PathBuf::from(manifest),
            manifest_text: format!("[package]\nname = \"{name}\"\n\n[dependencies]\n{text}"),
            dependencies: deps
                .iter()
                .map(|(dep, kind)| ((*dep).to_owned(), (*kind).to_owned()))
                .collect(),
        }
    }

    fn host() -> Package {
        package(
            "berth",
            "host/Cargo.toml",
            &[
                ("runtime-local", "normal"),
                ("runtime-docker", "normal"),
                ("runtime-api", "normal"),
            ],
        )
    }

    fn lines(violations: &[Violation]) -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn backends_may_not_depend_on_each_other_but_plugins_may_build_on_local() {
        let packages = vec![
            host(),
            package(
                "runtime-docker",
                "runtime-docker/Cargo.toml",
                &[("session-core", "normal"), ("runtime-api", "normal")],
            ),
            package(
                "runtime-api",
                "runtime-api/Cargo.toml",
                &[("runtime-local", "dev")],
            ),
            package(
                "runtime-namespace",
                "plugins/runtime-namespace/Cargo.toml",
                &[("runtime-local", "normal")],
            ),
            package(
                "bwrap",
                "plugins/bwrap/Cargo.toml",
                &[("runtime-local", "normal"), ("runtime-namespace", "build")],
            ),
        ];
        let found = lines(&crate_graph(&packages, Path::new("/nowhere")));
        assert_eq!(
            found,
            [
                "runtime-docker/Cargo.toml:6: the backend runtime-docker depends on the backend \
                 runtime-api: backends never depend on each other (only a plugin may build on \
                 runtime-local)",
                "plugins/bwrap/Cargo.toml:6: the backend bwrap depends on the backend \
                 runtime-namespace: backends never depend on each other (only a plugin may \
                 build on runtime-local)",
            ]
        );
    }

    #[test]
    fn only_the_hosts_xtask_and_bench_name_every_built_in_backend() {
        let all = [
            ("runtime-local", "normal"),
            ("runtime-docker", "dev"),
            ("runtime-api", "normal"),
        ];
        let packages = vec![
            host(),
            package("xtask", "xtask/Cargo.toml", &all),
            package("berth-bench", "bench/Cargo.toml", &all),
            package("berth-python", "python/Cargo.toml", &all),
            package(
                "runtime-conformance",
                "runtime-conformance/Cargo.toml",
                &all,
            ),
            package(
                "session-core",
                "session-core/Cargo.toml",
                &[("runtime-local", "dev")],
            ),
        ];
        let found = lines(&crate_graph(&packages, Path::new("/nowhere")));
        assert_eq!(
            found,
            [
                "runtime-conformance/Cargo.toml:5: runtime-conformance names every built-in \
              backend: only berth, berth-python, xtask, berth-bench may"
            ]
        );
        let lean_host = package("berth", "host/Cargo.toml", &[("runtime-local", "normal")]);
        let found = lines(&crate_graph(&[lean_host], Path::new("/nowhere")));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("does not depend on runtime-docker"),
            "{found:?}"
        );
    }

    #[test]
    fn the_sdk_tree_names_each_forbidden_crate_once_with_its_path() {
        let sdk = package(
            "berth-sdk",
            "sdk/Cargo.toml",
            &[("session-core", "normal"), ("runtime-local", "normal")],
        );
        let tree = "0berth-sdk v0.1.0 (/w/sdk)\n\
                    1runtime-local v0.1.0 (/w/runtime-local)\n\
                    2libc v0.2.170\n\
                    2session-core v0.1.0 (/w/session-core)\n\
                    3zstd v0.13.3\n\
                    4zstd-safe v7.2.4\n\
                    3parquet v56.2.0\n\
                    4flate2 v1.1.2\n\
                    1session-core v0.1.0 (/w/session-core) (*)\n\
                    1serde v1.0.219\n";
        let found = lines(&forbidden_in_tree(&sdk, tree));
        assert_eq!(
            found,
            [
                "sdk/Cargo.toml:6: berth-sdk's normal dependencies include zstd (berth-sdk → \
                 runtime-local → session-core → zstd): a plugin must not build file formats \
                 or compression it does not use",
                "sdk/Cargo.toml:6: berth-sdk's normal dependencies include parquet (berth-sdk \
                 → runtime-local → session-core → parquet): a plugin must not build file \
                 formats or compression it does not use",
                "sdk/Cargo.toml:6: berth-sdk's normal dependencies include flate2 (berth-sdk \
                 → runtime-local → session-core → parquet → flate2): a plugin must not build \
                 file formats or compression it does not use",
            ]
        );
        let lean = "0berth-sdk v0.1.0 (/w/sdk)\n1session-core v0.1.0 (/w/session-core)\n\
                    2serde v1.0.219\n2zstd-safe v7.2.4\n";
        assert!(forbidden_in_tree(&sdk, lean).is_empty());
    }

    #[test]
    fn a_missing_sdk_is_reported_at_the_workspace_members() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"host\"]\n",
        )
        .unwrap();
        let found = sdk_tree(&[host()], root.path()).unwrap();
        assert_eq!(found.len(), 1);
        let line = found[0].to_string();
        assert!(
            line.starts_with("Cargo.toml:3: no workspace member is named berth-sdk"),
            "{line}"
        );
        assert!(line.contains("parquet, rusqlite"), "{line}");
    }

    #[test]
    fn files_without_a_module_doc_are_found() {
        let check = |text: &str| lines(&check_text(Path::new("src/a.rs"), text));
        assert!(check("//! Docs.\nfn f() {}\n").is_empty());
        assert!(check("\n//! Docs after a blank line.\n").is_empty());
        assert_eq!(
            check("use std::fs;\n//! Too late.\n"),
            ["src/a.rs:1: the file does not start with a module doc (`//!`)"]
        );
        assert_eq!(
            check("/// An item doc is not a module doc.\nfn f() {}\n"),
            ["src/a.rs:1: the file does not start with a module doc (`//!`)"]
        );
        assert!(lines(&check_text(Path::new("README.md"), "# Title\n")).is_empty());
    }

    #[test]
    fn unsafe_blocks_and_impls_need_a_safety_comment_near_them() {
        let check = |code: &str| {
            let text = format!("//! Docs.\n{code}");
            lines(&check_text(Path::new("src/a.rs"), &text))
        };
        let reported = |line: usize, what: &str| {
            vec![format!(
                "src/a.rs:{line}: `{what}` without a `// SAFETY:` comment on its line or \
                 ending within the 3 lines above"
            )]
        };
        assert!(check("// SAFETY: fine.\nlet x = unsafe { f() };\n").is_empty());
        assert!(check("let x = unsafe { f() }; // SAFETY: fine.\n").is_empty());
        assert!(check("// SAFETY: a long reason\n// on two lines.\nunsafe { f() }\n").is_empty());
        assert!(
            check("// SAFETY: the reason,\n// a,\n// b,\n// c,\n// d.\nunsafe { f() }\n")
                .is_empty()
        );
        assert!(
            check("// SAFETY: three lines up.\nlet a = 1;\nlet b = 2;\nunsafe { f() }\n")
                .is_empty()
        );
        assert_eq!(
            check(
                "// SAFETY: four lines up.\nlet a = 1;\nlet b = 2;\nlet c = 3;\nunsafe { f() }\n"
            ),
            reported(6, "unsafe {")
        );
        assert_eq!(check("let x = unsafe { f() };\n"), reported(2, "unsafe {"));
        assert_eq!(check("let x = unsafe{ f() };\n"), reported(2, "unsafe {"));
        assert_eq!(
            check("unsafe impl Send for X {}\n"),
            reported(2, "unsafe impl")
        );
        assert_eq!(
            check("unsafe impl<T> Sync for X<T> {}\n"),
            reported(2, "unsafe impl")
        );
        // Another comment right above hides an older SAFETY comment.
        assert_eq!(
            check("// SAFETY: for the first.\nunsafe { f() }\n// Next.\nunsafe { g() }\n"),
            reported(5, "unsafe {")
        );
        // Not code, or not a block.
        assert!(check("// unsafe { in a comment }\n").is_empty());
        assert!(check("let s = \"unsafe { in a string }\";\n").is_empty());
        assert!(check("let s = r#\"unsafe { raw \"quoted\" }\"#;\n").is_empty());
        assert!(check("/* unsafe {\n unsafe impl */\n").is_empty());
        assert!(check("unsafe fn f() {}\nunsafe extern \"C\" {}\nlet is_unsafe = 1;\n").is_empty());
        assert!(check("fn f<'a>(x: &'a u8) -> char { 'u' }\n").is_empty());
        assert!(check("let c = '\"'; let s = \"x\";\n").is_empty());
    }

    #[test]
    fn citations_of_documents_outside_the_repository_are_found() {
        let [spec_file, spec_section, design, shared] = outside_documents();
        for (path, text) in [
            ("a.md", format!("See {spec_file}.\n")),
            ("a.rs", format!("//! Docs ({spec_section}5.4).\n")),
            ("Cargo.toml", format!("description = \"{design}\"\n")),
            ("b.md", format!("\nIn {shared}/x.\n")),
        ] {
            let found = lines(&check_text(Path::new(path), &text));
            assert_eq!(found.len(), 1, "{path}: {found:?}");
            assert!(
                found[0].contains("a document outside the repository"),
                "{found:?}"
            );
        }
        assert!(lines(&check_text(Path::new("a.md"), "See SECURITY.md.\n")).is_empty());
    }
}
