//! POSIX shell quoting: turning an argv into a command string that a shell
//! splits back into exactly the same words.

use std::borrow::Cow;

/// Quotes one word for a POSIX shell. Words made only of characters no
/// shell treats specially stay as they are; anything else (spaces, quotes,
/// `$`, globs, `~`, newlines, the empty word) is wrapped in single quotes,
/// inside which only `'` itself needs care: it becomes `'\''`.
pub(crate) fn quote_word(word: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return Cow::Borrowed(word);
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// Quotes every word and joins them with single spaces.
pub(crate) fn join_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|word| quote_word(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The shell string that runs exactly `argv` in place of the shell that
/// reads it: `exec` and the quoted words. With no shell left in between,
/// the program's exit status, or the signal that killed it, is what the
/// backend sees, and no shell reports the signal on stderr. A program
/// whose name starts with `-` follows `--`, so `exec` does not read it as
/// an option.
pub(crate) fn exec_argv<S: AsRef<str>>(argv: &[S]) -> String {
    let words = join_argv(argv);
    match argv.first() {
        Some(program) if program.as_ref().starts_with('-') => format!("exec -- {words}"),
        _ => format!("exec {words}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(
            join_argv(&["ls", "-la", "src/main.rs", "a=b", "x@y:1,2%+"]),
            "ls -la src/main.rs a=b x@y:1,2%+"
        );
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote_word("a b"), "'a b'");
        assert_eq!(quote_word("$HOME"), "'$HOME'");
        assert_eq!(quote_word(""), "''");
        assert_eq!(quote_word("it's"), "'it'\\''s'");
        assert_eq!(quote_word("\"q\""), "'\"q\"'");
        assert_eq!(quote_word("*.py"), "'*.py'");
        assert_eq!(quote_word("~"), "'~'");
        assert_eq!(quote_word("a\nb"), "'a\nb'");
        assert_eq!(quote_word("#x"), "'#x'");
        assert_eq!(quote_word("é"), "'é'");
    }

    #[test]
    fn exec_replaces_the_shell_with_the_program() {
        assert_eq!(exec_argv(&["ls", "-la"]), "exec ls -la");
        assert_eq!(exec_argv(&["-x", "y"]), "exec -- -x y");
        // The shell itself is gone: the program's pid is the shell's, and a
        // signal that kills the program is the status of `sh -c`.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(exec_argv(&["sh", "-c", "kill -TERM $$"]))
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
    }

    /// The real test: `sh` splits the joined string back into the argv.
    #[test]
    fn the_shell_gets_the_same_words_back() {
        let words = [
            "printf",
            "%s|",
            "a b",
            "$HOME",
            "",
            "it's",
            "\"double\"",
            "back\\slash",
            "`date`",
            "$(id)",
            "semi;colon",
            "new\nline",
            "tab\t",
            "*",
            "!bang",
            "-n",
        ];
        let script = join_argv(&words);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}");
        let expected: String = words[2..].iter().map(|w| format!("{w}|")).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{script}");
    }
}
