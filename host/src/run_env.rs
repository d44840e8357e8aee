//! `berth run`'s variables: `-e KEY=VALUE`, `-e KEY`, `--env-file FILE`,
//! and the error for `--env KEY=VALUE` (where `--env` names a spec).
//!
//! Precedence, lowest first: the host environment (when the spec sets
//! `environment.include_os_env`), the spec's `environment.env`, each
//! `--env-file` in order, then each `-e` in order. They apply to the spec's
//! setup commands and to the command.

use std::path::Path;

use anyhow::{Context as _, bail};
use indexmap::IndexMap;
use session_core::paths::quote_path;

/// The variables `--env-file` and `-e` set, later ones winning.
pub(crate) fn variables(
    env_files: &[std::path::PathBuf],
    vars: &[String],
) -> anyhow::Result<IndexMap<String, String>> {
    let lookup = |key: &str| std::env::var_os(key);
    let mut env = IndexMap::new();
    for file in env_files {
        let text = std::fs::read(file)
            .with_context(|| format!("reading the env file {}", quote_path(file)))?;
        for (key, value) in parse_env_file(file, &text, lookup)? {
            env.insert(key, value);
        }
    }
    for var in vars {
        let (key, value) = parse_var(var, lookup)?;
        env.insert(key, value);
    }
    Ok(env)
}

/// One `-e`: `KEY=VALUE` (split at the first `=`), or `KEY` for berth's
/// own value of it.
fn parse_var(
    var: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> anyhow::Result<(String, String)> {
    match var.split_once('=') {
        Some(("", _)) => bail!("-e `{var}`: the variable's name is empty"),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None if var.is_empty() => bail!("-e needs KEY=VALUE or KEY, not an empty word"),
        None => match lookup(var) {
            Some(value) => match value.into_string() {
                Ok(value) => Ok((var.to_owned(), value)),
                Err(_) => bail!("-e {var}: berth's value of `{var}` is not UTF-8"),
            },
            None => bail!(
                "-e {var}: `{var}` is not set in berth's environment (give a value: -e {var}=VALUE)"
            ),
        },
    }
}

/// An env file in docker's format: one `KEY=VALUE` per line, the value
/// taken as it is (no quotes removed, nothing expanded); a line with only
/// `KEY` takes berth's value of it (unset is an error, as for `-e KEY`);
/// lines whose first non-blank character is `#`, and blank lines, are
/// skipped. Leading blanks of a line and a trailing `\r` are dropped; a
/// name with a blank in it is an error.
fn parse_env_file(
    file: &Path,
    text: &[u8],
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> anyhow::Result<Vec<(String, String)>> {
    let shown = quote_path(file);
    let text = std::str::from_utf8(text)
        .map_err(|err| anyhow::anyhow!("env file {shown} is not UTF-8 ({err})"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            bail!("env file {shown}, line {number}: the variable's name is empty");
        }
        if key.contains(char::is_whitespace) {
            bail!("env file {shown}, line {number}: the variable's name `{key}` contains blanks");
        }
        let value = match value {
            Some(value) => value.to_owned(),
            None => match lookup(key).map(std::ffi::OsString::into_string) {
                Some(Ok(value)) => value,
                Some(Err(_)) => {
                    bail!("env file {shown}, line {number}: berth's value of `{key}` is not UTF-8")
                }
                None => bail!(
                    "env file {shown}, line {number}: `{key}` is not set in berth's environment (give \
                     a value: {key}=VALUE)"
                ),
            },
        };
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// Refuses `--env X` when no file `X` exists and `X` reads as a variable
/// (`FOO=bar`, or a bare `FOO`): a habit from `docker run --env`, where
/// berth's `--env` names the environment spec.
pub(crate) fn check_spec_path(spec: &Path) -> anyhow::Result<()> {
    if spec.exists() {
        return Ok(());
    }
    let Some(text) = spec.to_str() else {
        return Ok(());
    };
    let name = runtime_local::kit::is_shell_name;
    match text.split_once('=') {
        Some((key, _)) if name(key) => bail!(
            "`--env {text}`: --env names the environment spec file (there is no file `{text}`); \
             to set a variable, use -e {text} (or --var {text})"
        ),
        None if name(text) && text.chars().any(|c| c.is_ascii_uppercase()) => bail!(
            "`--env {text}`: --env names the environment spec file, and there is no file \
             `{text}`; to pass berth's variable {text} to the command, use -e {text} (or --var \
             {text})"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.into())
    }

    #[test]
    fn a_var_is_key_value_or_a_key_from_berths_environment() {
        let host = env(&[("TOKEN", "s3cret")]);
        assert_eq!(
            parse_var("A=b=c", &host).unwrap(),
            ("A".into(), "b=c".into())
        );
        assert_eq!(
            parse_var("EMPTY=", &host).unwrap(),
            ("EMPTY".into(), String::new())
        );
        assert_eq!(
            parse_var("TOKEN", &host).unwrap(),
            ("TOKEN".into(), "s3cret".into())
        );
        let err = parse_var("MISSING", &host).unwrap_err().to_string();
        assert!(err.contains("`MISSING` is not set"), "{err}");
        assert!(parse_var("=x", &host).is_err());
        assert!(parse_var("", &host).is_err());
    }

    #[test]
    fn env_files_read_as_docker_reads_them() {
        let host = env(&[("FROM_HOST", "h")]);
        let text = "\u{feff}# a comment\n\nA=1\n  B = two \nC=\"quoted\" # not a comment\r\n\
                    FROM_HOST\n   # indented comment\nD=x=y\n";
        let vars = parse_env_file(Path::new("vars.env"), text.as_bytes(), &host);
        assert_eq!(
            vars.unwrap_err().to_string(),
            "env file vars.env, line 4: the variable's name `B ` contains blanks"
        );
        let text = text.replace("  B = two \n", "B= two \n");
        let vars = parse_env_file(Path::new("vars.env"), text.as_bytes(), &host).unwrap();
        assert_eq!(
            vars,
            [
                ("A".into(), "1".into()),
                ("B".into(), " two ".into()),
                ("C".into(), "\"quoted\" # not a comment".into()),
                ("FROM_HOST".into(), "h".into()),
                ("D".into(), "x=y".into()),
            ]
        );
        let err = parse_env_file(Path::new("f"), b"X=1\nUNSET\n", &host)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("`UNSET` is not set"),
            "{err}"
        );
    }

    #[test]
    fn later_sources_win() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.env");
        let second = dir.path().join("second.env");
        std::fs::write(&first, "A=file1\nB=file1\nC=file1\n").unwrap();
        std::fs::write(&second, "B=file2\nC=file2\n").unwrap();
        let vars = variables(&[first, second], &["C=flag".to_owned()]).unwrap();
        assert_eq!(vars["A"], "file1");
        assert_eq!(vars["B"], "file2");
        assert_eq!(vars["C"], "flag");
    }

    #[test]
    fn a_docker_habit_with_env_names_the_right_flag() {
        let err = check_spec_path(Path::new("FOO=bar"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("-e FOO=bar"), "{err}");
        let err = check_spec_path(Path::new("FOO")).unwrap_err().to_string();
        assert!(err.contains("-e FOO"), "{err}");
        // Anything that reads as a path is left to the spec loader.
        check_spec_path(Path::new("missing.yaml")).unwrap();
        check_spec_path(Path::new("dir/a=b.yaml")).unwrap();
    }
}
