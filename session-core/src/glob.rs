//! berth's one glob dialect.
//!
//! Every glob in berth (snapshot keep/ignore rules, `get_file_contents`
//! patterns) is compiled here, so they all mean the same thing: `*` and `?`
//! may cross `/` (so `*.pyc` matches `a/b/c.pyc`, as existing specs expect),
//! `**/` matches zero or more directories (`src/**/*.py` matches `src/a.py`),
//! `[...]` classes and `{a,b}` alternatives work, and `\` escapes.

use std::sync::OnceLock;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Plain globs up to this many bytes in all (no `[...]` class, no `{a,b}`
/// alternative) are compiled on first use: their automaton cannot come
/// near the compiler's size limits, so the parse alone says whether they
/// are valid. Any other list is compiled when it is made, so a limit is an
/// error there.
const LAZY_BYTES: usize = 1024;

/// A compiled list of globs matched against `/`-separated relative paths.
#[derive(Debug, Clone)]
pub struct GlobList {
    patterns: Vec<String>,
    globs: Vec<globset::Glob>,
    /// Built on the first match: a session that never snapshots (one
    /// `berth run`) never pays for the automaton of its ignore rules.
    set: OnceLock<GlobSet>,
}

impl GlobList {
    /// Compiles `patterns`; an invalid one is [`Error::InvalidGlob`].
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<GlobList> {
        let globs = patterns
            .iter()
            .map(|pattern| compile(pattern.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let list = GlobList {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            globs,
            set: OnceLock::new(),
        };
        let plain = list.patterns.iter().map(String::len).sum::<usize>() <= LAZY_BYTES
            && !list.patterns.iter().any(|p| p.contains(['[', '{']));
        if !plain {
            let set = list.build()?;
            let _ = list.set.set(set);
        }
        Ok(list)
    }

    fn build(&self) -> Result<GlobSet> {
        let mut builder = GlobSetBuilder::new();
        for glob in &self.globs {
            builder.add(glob.clone());
        }
        builder.build().map_err(|err| Error::InvalidGlob {
            pattern: self.patterns.join(", "),
            message: err.to_string(),
        })
    }

    fn set(&self) -> &GlobSet {
        self.set.get_or_init(|| {
            self.build()
                .expect("plain globs within LAZY_BYTES compile (see `plain_globs_compile_lazily`)")
        })
    }

    /// Whether any glob matches `path`.
    pub fn is_match(&self, path: &str) -> bool {
        // An empty list is the common case (no ignore globs), asked once
        // per file of a walk.
        !self.patterns.is_empty() && self.set().is_match(path)
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the list has no globs.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Whether `text` contains glob syntax (and so is not a plain path).
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', '{'])
}

fn compile(pattern: &str) -> Result<globset::Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
        .map_err(|err| Error::InvalidGlob {
            pattern: pattern.to_owned(),
            message: err.kind().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect() {
        let check = |pattern: &str, path: &str| GlobList::new(&[pattern]).unwrap().is_match(path);
        assert!(check("*.pyc", "a.pyc"));
        assert!(check("*.pyc", "deep/er/a.pyc"));
        assert!(check("venv/*", "venv/lib/python/x.py"));
        assert!(!check("venv/*", "venv"));
        assert!(check("src/**/*.py", "src/a.py"));
        assert!(check("src/**/*.py", "src/x/y/a.py"));
        assert!(!check("src/**/*.py", "lib/a.py"));
        assert!(check("{a,b}.txt", "b.txt"));
        assert!(!check("a.txt", "xa.txt"));
        assert!(matches!(
            GlobList::new(&["a["]),
            Err(Error::InvalidGlob { .. })
        ));
        assert!(is_glob("*.py") && !is_glob("src/main.py"));
    }

    /// The largest plain lists, of the tokens that cost the automaton
    /// most, compile when first matched.
    #[test]
    fn plain_globs_compile_lazily() {
        for token in ["*", "?", "**/", "/**", "\\*", "é"] {
            let pattern = token.repeat(LAZY_BYTES / token.len());
            let list = GlobList::new(&[&pattern[..LAZY_BYTES.min(pattern.len())]]).unwrap();
            assert!(list.set.get().is_none(), "{token}: compiled early");
            let _ = list.is_match("a/b/c");
            assert!(list.set.get().is_some());
        }
        let mut many = Vec::new();
        let mut bytes = 0;
        for i in 0.. {
            let pattern = format!("{i:x}/*.py");
            if bytes + pattern.len() > LAZY_BYTES {
                break;
            }
            bytes += pattern.len();
            many.push(pattern);
        }
        let many = GlobList::new(&many).unwrap();
        assert!(many.set.get().is_none());
        assert!(many.is_match("1f/x/y.py"));
        // Classes and alternatives are compiled at once.
        assert!(GlobList::new(&["{a,b}"]).unwrap().set.get().is_some());
    }
}
