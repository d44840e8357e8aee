//! The `commands.entry_file` format string.
//!
//! It follows Python's `str.format` with one allowed key: `{entry_file}` is
//! replaced by the entry's name, `{{` and `}}` are literal braces, and
//! anything else in braces (`{}`, `{name}`, `{entry_file!r}`,
//! `{entry_file:>8}`) is refused, as is a brace without its partner.

/// One piece of a parsed format string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Text copied as is (braces already unescaped).
    Literal(&'a str),
    /// The `{entry_file}` field.
    EntryFile,
}

/// Splits `format` into pieces, or says what is wrong with it.
fn parse(format: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = format;
    while let Some(at) = rest.find(['{', '}']) {
        if at > 0 {
            pieces.push(Piece::Literal(&rest[..at]));
        }
        let brace = &rest[at..at + 1];
        let after = &rest[at + 1..];
        if after.starts_with(brace) {
            pieces.push(Piece::Literal(brace));
            rest = &after[1..];
            continue;
        }
        if brace == "}" {
            return Err("a single `}` has no opening `{` (write `}}` for a literal brace)".into());
        }
        let Some(end) = after.find('}') else {
            return Err("a `{` is not closed (write `{{` for a literal brace)".into());
        };
        let field = &after[..end];
        if field != "entry_file" {
            return Err(format!(
                "unknown placeholder `{{{field}}}`: only `{{entry_file}}` is allowed \
                 (write `{{{{` and `}}}}` for literal braces)"
            ));
        }
        pieces.push(Piece::EntryFile);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

/// Checks that `format` is a valid entry-file format string.
pub(super) fn validate(format: &str) -> Result<(), String> {
    parse(format).map(drop)
}

/// Formats `format` with `entry_file` = `name`.
///
/// Fails when the format is invalid or the result is empty.
pub(super) fn render(format: &str, name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(format.len() + name.len());
    for piece in parse(format)? {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::EntryFile => out.push_str(name),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "formatting with entry_file `{name}` gives an empty file name"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_style_escapes() {
        assert_eq!(
            parse("{{x}}-{entry_file}.py").unwrap(),
            [
                Piece::Literal("{"),
                Piece::Literal("x"),
                Piece::Literal("}"),
                Piece::Literal("-"),
                Piece::EntryFile,
                Piece::Literal(".py"),
            ]
        );
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("main.py").unwrap(), [Piece::Literal("main.py")]);
    }

    #[test]
    fn refuses_everything_else() {
        for (format, fragment) in [
            ("{", "not closed"),
            ("a{entry_file", "not closed"),
            ("}", "single `}`"),
            ("{entry_file}}", "single `}`"),
            ("{}", "unknown placeholder `{}`"),
            ("{name}", "unknown placeholder `{name}`"),
            ("{entry_file!r}", "unknown placeholder `{entry_file!r}`"),
            ("{entry_file:>8}", "unknown placeholder"),
            ("{ entry_file }", "unknown placeholder"),
            ("{{{x}", "unknown placeholder `{x}`"),
        ] {
            let err = validate(format).unwrap_err();
            assert!(err.contains(fragment), "{format:?}: {err}");
        }
    }

    #[test]
    fn renders_and_refuses_an_empty_result() {
        assert_eq!(render("{entry_file}.py", "main").unwrap(), "main.py");
        assert_eq!(render("{{{entry_file}}}", "m").unwrap(), "{m}");
        assert_eq!(render("{entry_file}{entry_file}", "a").unwrap(), "aa");
        assert!(render("{entry_file}", "").unwrap_err().contains("empty"));
        assert!(render("", "main").unwrap_err().contains("empty"));
    }
}
