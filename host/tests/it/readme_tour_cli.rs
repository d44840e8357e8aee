//! The README's tour, run as written: its spec (`# env.yaml`) and each line
//! of its shell block, with the `berth` binary under test first in PATH, in
//! an empty directory. Nothing it uses needs more than a POSIX shell.

use std::path::Path;
use std::process::Command;

use crate::common::{Sandbox, code, stderr, stdout};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md exists")
}

/// The fenced block whose first line is `first` (fences left out).
fn block_starting(text: &str, first: &str) -> String {
    let start = text
        .find(&format!("\n{first}\n"))
        .unwrap_or_else(|| panic!("the README has no block starting `{first}`"))
        + 1;
    let end = start + text[start..].find("\n```").expect("the block ends");
    text[start..end].to_owned()
}

/// The shell block after `marker`.
fn shell_block_after(text: &str, marker: &str) -> Vec<String> {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("the README has no `{marker}`"));
    let rest = &text[at..];
    let start = rest.find("```sh\n").expect("a shell block follows") + "```sh\n".len();
    let end = start + rest[start..].find("```").expect("the block ends");
    rest[start..end].lines().map(str::to_owned).collect()
}

/// Runs one line of the tour in `dir` with the binary under test in PATH.
fn sh(sb: &Sandbox, dir: &Path, line: &str) -> std::process::Output {
    let berth = Path::new(env!("CARGO_BIN_EXE_berth"));
    let path = format!(
        "{}:{}",
        berth.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .args(["-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env("TMPDIR", sb.temp())
        .env("BERTH_PLUGIN_DIR", sb.files().join("no-plugins"))
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn the_readme_tour_runs_as_written() {
    let text = readme();
    let spec = block_starting(&text, "# env.yaml");
    assert!(spec.contains("name:"), "{spec}");
    let lines = shell_block_after(&text, "From the shell (each line works as written");
    assert_eq!(lines.len(), 5, "{lines:#?}");

    let sb = Sandbox::new();
    let dir = sb.files().join("tour");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("env.yaml"), &spec).unwrap();
    let mut outputs = Vec::new();
    for line in &lines {
        let out = sh(&sb, &dir, line);
        // `berth diff` exits 1 when the trees differ, as they do here.
        let expected = if line.starts_with("berth diff") { 1 } else { 0 };
        assert_eq!(code(&out), expected, "`{line}`: {out:?}");
        outputs.push(out);
    }

    // The command ran in a copy of problem/, with the spec's variable and
    // its setup; the checkpoint holds its work but what the spec ignores.
    assert_eq!(
        std::fs::read_to_string(dir.join("out/results/greeting.txt")).unwrap(),
        "hello\n"
    );
    assert!(!dir.join("out/run.log").exists());
    assert!(
        !dir.join("problem/results").exists(),
        "problem/ was modified"
    );
    assert!(stdout(&outputs[2]).contains("A results/greeting.txt"));
    assert!(
        stdout(&outputs[3]).contains("2 entries"),
        "{:?}",
        outputs[3]
    );
    assert!(dir.join("out.tar.zst").is_file());
    assert_eq!(stdout(&outputs[4]), "hello from a session\nexit 3\n");
    sb.assert_no_session_dirs();

    // `name` is required, as the README says.
    let nameless: String = spec
        .lines()
        .filter(|l| !l.starts_with("name:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("nameless.yaml"), nameless).unwrap();
    let out = sh(&sb, &dir, "berth run --env nameless.yaml -- true");
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("name"), "{out:?}");
}
