//! What installing berth brings beside the binary: shell completions and
//! manual pages, both generated from the command line's definitions, so
//! they name every command the binary has.

use crate::common::{Sandbox, code, stderr, stdout};

/// The commands `berth [COMMAND…] --help` lists (help left out).
fn commands_listed(sb: &Sandbox, path: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let out = sb.run(&args);
    assert_eq!(code(&out), 0, "{out:?}");
    let help = stdout(&out);
    let Some(list) = help.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    list.lines()
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Runs the generated bash completion for the words typed so far (the
/// last one being completed) and returns what it offers.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.last().unwrap();
    let previous = words[words.len() - 2];
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _berth berth '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completion_offers_berths_commands_and_flags() {
    let sb = Sandbox::new();
    let out = sb.run(["completions", "bash"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let script = sb.write("berth.bash", &stdout(&out));

    let commands = commands_listed(&sb, &[]);
    assert!(commands.contains(&"snapshot".to_owned()), "{commands:?}");
    let offered = bash_complete(&script, &["berth", ""]);
    for command in &commands {
        assert!(offered.contains(command), "{command} not in {offered:?}");
    }
    assert_eq!(bash_complete(&script, &["berth", "sn"]), ["snapshot"]);
    assert_eq!(
        bash_complete(&script, &["berth", "snapshot", "--ig"]),
        ["--ignore"]
    );
    let shells = bash_complete(&script, &["berth", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_owned()), "{shells:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let sb = Sandbox::new();
    let commands = commands_listed(&sb, &[]);
    for (shell, header) in [("zsh", "#compdef berth"), ("fish", "complete -c berth")] {
        let out = sb.run(["completions", shell]);
        assert_eq!(code(&out), 0, "{out:?}");
        let script = stdout(&out);
        assert!(script.contains(header), "{shell}: {script}");
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell} lacks {command}");
        }
    }
    let out = sb.run(["completions", "tcsh"]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("tcsh"), "{out:?}");
}

#[test]
fn man_prints_berth1_and_writes_a_page_per_command() {
    let sb = Sandbox::new();
    let out = sb.run(["man"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let page = stdout(&out);
    assert!(page.contains(".TH berth 1"), "{page}");
    let commands = commands_listed(&sb, &[]);
    for command in &commands {
        assert!(page.contains(command.as_str()), "berth.1 lacks {command}");
    }

    let dir = sb.files().join("man1");
    let out = sb.run(["man".as_ref(), "--out-dir".as_ref(), dir.as_os_str()]);
    assert_eq!(code(&out), 0, "{out:?}");
    let mut expected = vec!["berth.1".to_owned()];
    for command in &commands {
        expected.push(format!("berth-{command}.1"));
        for sub in commands_listed(&sb, &[command.as_str()]) {
            expected.push(format!("berth-{command}-{sub}.1"));
        }
    }
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    assert!(expected.contains(&"berth-plugins-test.1".to_owned()));
    let run = std::fs::read_to_string(dir.join("berth-run.1")).unwrap();
    assert!(
        run.contains(".TH berth\\-run 1") || run.contains(".TH berth-run 1"),
        "{run}"
    );
    assert!(run.contains("\\-\\-checkpoint"), "{run}");
}
