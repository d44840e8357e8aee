//! berth's one glob dialect.
//!
//! Every glob in berth (snapshot keep/ignore rules, `get_file_contents`
//! patterns) is compiled here, so they all mean the same thing: `*` and `?`
//! may cross `/` (so `*.pyc` matches `a/b/c.pyc`, as existing specs expect),
//! `**/` matches zero or more directories (`src/**/*.py` matches `src/a.py`),
//! `[...]` classes and `{a,b}` alternatives work, and `\` escapes.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled list of globs matched against `/`-separated relative paths.
#[derive(Debug, Clone)]
pub struct GlobList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl GlobList {
    /// Compiles `patterns`; an invalid one is [`Error::InvalidGlob`].
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<GlobList> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(compile(pattern.as_ref())?);
        }
        let set = builder.build().map_err(|err| Error::InvalidGlob {
            pattern: patterns
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
            message: err.to_string(),
        })?;
        Ok(GlobList {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
        })
    }

    /// Whether any glob matches `path`.
    pub fn is_match(&self, path: &str) -> bool {
        // An empty list is the common case (no ignore globs), asked once
        // per file of a walk.
        !self.patterns.is_empty() && self.set.is_match(path)
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
}
