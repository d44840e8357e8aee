//! Bounds on a document's size, nesting and alias expansion, checked in
//! time proportional to its length before the document is parsed.
//!
//! The YAML parser behind specs (libyaml, through `serde_yaml`) spends time
//! proportional to the current flow nesting on every token, so a document
//! of nothing but `[` takes time quadratic in its length to refuse; and an
//! alias names a whole subtree, which `serde_yaml` copies on every use, so a
//! short document can stand for an enormous one ("billion laughs"). Hostile
//! input must be refused in time proportional to its size, so before any
//! parser sees a document:
//!
//! * its length is bounded by [`MAX_DOCUMENT_BYTES`];
//! * one pass over the text follows YAML's tokenisation closely enough to
//!   know where flow collections (`[`, `{`) open and close and where block
//!   collections start (a key or a `- ` indented deeper than its parent),
//!   skipping what is inside quoted scalars, block scalars (`|`, `>`),
//!   comments, tags and plain scalars as libyaml does, and refuses nesting
//!   deeper than [`MAX_NESTING`], counting flow and block levels alike;
//! * the same pass refuses more than [`MAX_ALIASES`] aliases (`*name`);
//! * while the parsed document is built, aliases included, more than
//!   [`MAX_VALUES`] values are refused, which bounds what nested aliases can
//!   expand to.
//!
//! JSON documents get the same size and nesting bounds from a pass that
//! follows JSON's tokens (strings and their escapes).
//!
//! Each refusal names the line and column where the bound was crossed.

use std::fmt;

/// The largest spec (or asset map) document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The deepest nesting accepted: flow collections (`[`, `{`) and block
/// collections (indented mappings and sequences) count alike.
pub const MAX_NESTING: usize = 64;

/// The most aliases (`*name`) a YAML document may use.
pub const MAX_ALIASES: usize = 1024;

/// The most values (scalars, sequences and mappings, every alias expanded)
/// a parsed YAML document may hold.
pub const MAX_VALUES: usize = 500_000;

/// A bound a document crossed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// What is wrong.
    pub(crate) message: String,
    /// The line, counted from 1.
    pub(crate) line: usize,
    /// The column, counted from 1.
    pub(crate) column: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// Refuses a document longer than [`MAX_DOCUMENT_BYTES`], naming the line
/// where the limit falls.
fn check_size(text: &str) -> Result<(), Violation> {
    if text.len() <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    let before = &text.as_bytes()[..MAX_DOCUMENT_BYTES];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
    Err(Violation {
        message: format!(
            "the document is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
            text.len()
        ),
        line,
        column: column + 1,
    })
}

fn too_deep() -> String {
    format!("the document nests deeper than {MAX_NESTING} levels")
}

/// Checks a JSON document's size and nesting in one pass.
pub(super) fn check_json(text: &str) -> Result<(), Violation> {
    check_size(text)?;
    let mut depth = 0usize;
    let mut line = 1;
    let mut line_start = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let column = text[line_start..at].chars().count() + 1;
                    return Err(Violation {
                        message: too_deep(),
                        line,
                        column,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => {
                line += 1;
                line_start = at + 1;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a YAML document's size, nesting and aliases in one pass.
pub(super) fn check_yaml(text: &str) -> Result<(), Violation> {
    check_size(text)?;
    check_yaml_structure(text)
}

/// Checks a YAML document's nesting and aliases in one pass, whatever its
/// size: for data files (input files), which may be large but must not
/// make the parser's time grow faster than their length.
pub(crate) fn check_yaml_structure(text: &str) -> Result<(), Violation> {
    YamlScan::new(text).run()
}

/// A position in the text, as libyaml counts it: characters, not bytes.
#[derive(Debug, Clone, Copy)]
struct Mark {
    index: usize,
    line: usize,
    column: usize,
}

/// One pass over YAML text that mirrors libyaml's scanner in what decides
/// nesting: where tokens start, what a flow or block collection is, and
/// what the scalars, comments and tags it skips span. It builds no tokens.
///
/// Where libyaml would stop with an error, this pass carries on: anything
/// after that point costs libyaml nothing, and carrying on can only find
/// more, never less.
struct YamlScan<'a> {
    text: &'a [u8],
    pos: usize,
    mark: Mark,
    /// Open flow collections.
    flow: usize,
    /// The column of the innermost block collection, -1 outside any.
    indent: isize,
    /// The columns of the block collections around it.
    indents: Vec<isize>,
    simple_key_allowed: bool,
    /// Where a possible simple key starts, in block context.
    block_key: Option<Mark>,
    aliases: usize,
}

/// How far (in characters) a simple key may run before its `:`; libyaml's
/// own limit.
const SIMPLE_KEY_REACH: usize = 1024;

impl<'a> YamlScan<'a> {
    fn new(text: &'a str) -> YamlScan<'a> {
        YamlScan {
            text: text.as_bytes(),
            pos: 0,
            mark: Mark {
                index: 0,
                line: 1,
                column: 0,
            },
            flow: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            block_key: None,
            aliases: 0,
        }
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            message,
            line: self.mark.line,
            column: self.mark.column + 1,
        }
    }

    fn at(&self, ahead: usize) -> Option<u8> {
        self.text.get(self.pos + ahead).copied()
    }

    fn is(&self, ahead: usize, byte: u8) -> bool {
        self.at(ahead) == Some(byte)
    }

    /// The length of the line break at `pos + ahead`, if one is there:
    /// `\r\n`, `\r`, `\n`, NEL, LS or PS, as libyaml counts them.
    fn break_at(&self, ahead: usize) -> Option<usize> {
        let rest = self.text.get(self.pos + ahead..)?;
        match rest {
            [b'\r', b'\n', ..] => Some(2),
            [b'\r' | b'\n', ..] => Some(1),
            [0xC2, 0x85, ..] => Some(2),
            [0xE2, 0x80, 0xA8 | 0xA9, ..] => Some(3),
            _ => None,
        }
    }

    fn blank_at(&self, ahead: usize) -> bool {
        matches!(self.at(ahead), Some(b' ' | b'\t'))
    }

    /// Blank, a break, or the end of the text.
    fn blankz_at(&self, ahead: usize) -> bool {
        self.at(ahead).is_none() || self.blank_at(ahead) || self.break_at(ahead).is_some()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Moves past one character that is not a break.
    fn skip(&mut self) {
        let Some(first) = self.at(0) else {
            return;
        };
        let width = match first {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        self.pos = (self.pos + width).min(self.text.len());
        self.mark.index += 1;
        self.mark.column += 1;
    }

    /// Moves past the break at the current position.
    fn skip_break(&mut self) {
        let width = self.break_at(0).unwrap_or(1);
        self.pos = (self.pos + width).min(self.text.len());
        self.mark.index += 1;
        self.mark.line += 1;
        self.mark.column = 0;
    }

    /// Moves past one character, break or not.
    fn advance(&mut self) {
        if self.break_at(0).is_some() {
            self.skip_break();
        } else {
            self.skip();
        }
    }

    fn skip_to_break(&mut self) {
        while !self.at_end() && self.break_at(0).is_none() {
            self.skip();
        }
    }

    fn depth(&self) -> usize {
        self.indents.len() + self.flow
    }

    fn check_depth(&self, at: Mark) -> Result<(), Violation> {
        if self.depth() > MAX_NESTING {
            Err(Violation {
                message: too_deep(),
                line: at.line,
                column: at.column + 1,
            })
        } else {
            Ok(())
        }
    }

    /// A block collection starts at `at` when it is deeper than the current
    /// one.
    fn roll_indent(&mut self, at: Mark) -> Result<(), Violation> {
        let column = at.column as isize;
        if self.flow == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.check_depth(at)?;
        }
        Ok(())
    }

    /// Block collections deeper than `column` end.
    fn unroll_indent(&mut self, column: isize) {
        if self.flow != 0 {
            return;
        }
        while self.indent > column {
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    fn save_simple_key(&mut self) {
        if self.flow == 0 && self.simple_key_allowed {
            self.block_key = Some(self.mark);
        }
    }

    fn remove_simple_key(&mut self) {
        if self.flow == 0 {
            self.block_key = None;
        }
    }

    fn stale_simple_key(&mut self) {
        if let Some(key) = self.block_key
            && (key.line < self.mark.line || key.index + SIMPLE_KEY_REACH < self.mark.index)
        {
            self.block_key = None;
        }
    }

    fn run(mut self) -> Result<(), Violation> {
        loop {
            self.scan_to_next_token();
            self.stale_simple_key();
            self.unroll_indent(self.mark.column as isize);
            let Some(c) = self.at(0) else {
                return Ok(());
            };
            let here = self.mark;
            if here.column == 0 && c == b'%' {
                // A directive takes its line.
                self.skip_to_break();
            } else if here.column == 0 && self.document_marker() {
                self.unroll_indent(-1);
                self.remove_simple_key();
                self.simple_key_allowed = false;
                for _ in 0..3 {
                    self.skip();
                }
            } else if c == b'[' || c == b'{' {
                self.save_simple_key();
                self.flow += 1;
                self.check_depth(here)?;
                self.simple_key_allowed = true;
                self.skip();
            } else if c == b']' || c == b'}' {
                if self.flow == 0 {
                    self.block_key = None;
                } else {
                    self.flow -= 1;
                }
                self.simple_key_allowed = false;
                self.skip();
            } else if c == b',' {
                self.remove_simple_key();
                self.simple_key_allowed = true;
                self.skip();
            } else if c == b'-' && self.blankz_at(1) {
                if self.flow == 0 {
                    self.roll_indent(here)?;
                }
                self.remove_simple_key();
                self.simple_key_allowed = true;
                self.skip();
            } else if c == b'?' && (self.flow > 0 || self.blankz_at(1)) {
                if self.flow == 0 {
                    self.roll_indent(here)?;
                }
                self.remove_simple_key();
                self.simple_key_allowed = self.flow == 0;
                self.skip();
            } else if c == b':' && (self.flow > 0 || self.blankz_at(1)) {
                if self.flow == 0 {
                    match self.block_key.take() {
                        Some(key) => {
                            self.roll_indent(key)?;
                            self.simple_key_allowed = false;
                        }
                        None => {
                            self.roll_indent(here)?;
                            self.simple_key_allowed = true;
                        }
                    }
                } else {
                    self.simple_key_allowed = false;
                }
                self.skip();
            } else if c == b'*' || c == b'&' {
                if c == b'*' {
                    self.aliases += 1;
                    if self.aliases > MAX_ALIASES {
                        return Err(self.violation(format!(
                            "the document uses more than {MAX_ALIASES} aliases"
                        )));
                    }
                }
                self.save_simple_key();
                self.simple_key_allowed = false;
                self.skip();
                while self
                    .at(0)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.skip();
                }
            } else if c == b'!' {
                self.save_simple_key();
                self.simple_key_allowed = false;
                self.scan_tag();
            } else if (c == b'|' || c == b'>') && self.flow == 0 {
                self.remove_simple_key();
                self.simple_key_allowed = true;
                self.scan_block_scalar();
            } else if c == b'\'' || c == b'"' {
                self.save_simple_key();
                self.simple_key_allowed = false;
                self.scan_quoted_scalar(c);
            } else if self.starts_plain_scalar(c) {
                self.save_simple_key();
                self.simple_key_allowed = false;
                self.scan_plain_scalar();
            } else {
                // libyaml stops here ("cannot start any token").
                self.advance();
            }
        }
    }

    /// `---` or `...` followed by a blank, a break or the end.
    fn document_marker(&self) -> bool {
        let three = |byte| (0..3).all(|k| self.is(k, byte));
        (three(b'-') || three(b'.')) && self.blankz_at(3)
    }

    /// Skips blanks, comments and breaks up to the next token.
    fn scan_to_next_token(&mut self) {
        loop {
            if self.mark.column == 0 && self.text[self.pos..].starts_with("\u{feff}".as_bytes()) {
                self.skip();
            }
            while self.is(0, b' ')
                || ((self.flow > 0 || !self.simple_key_allowed) && self.is(0, b'\t'))
            {
                self.skip();
            }
            if self.is(0, b'#') {
                self.skip_to_break();
            }
            if self.break_at(0).is_none() {
                return;
            }
            self.skip_break();
            if self.flow == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    /// Whether `c` starts a plain scalar here, as libyaml decides.
    fn starts_plain_scalar(&self, c: u8) -> bool {
        let indicator = self.blankz_at(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c);
        !indicator
            || (c == b'-' && !self.blank_at(1))
            || (self.flow == 0 && (c == b'?' || c == b':') && !self.blankz_at(1))
    }

    /// A tag: `!<verbatim>`, or a handle and suffix made of URI characters
    /// (without `,`, `[` and `]`, which end a shorthand tag).
    fn scan_tag(&mut self) {
        self.skip();
        if self.is(0, b'<') {
            self.skip();
            while self
                .at(0)
                .is_some_and(|b| uri_byte(b) || b",[]".contains(&b))
            {
                self.skip();
            }
            if self.is(0, b'>') {
                self.skip();
            }
            return;
        }
        while self.at(0).is_some_and(uri_byte) {
            self.skip();
        }
    }

    /// A single- or double-quoted scalar, over as many lines as it takes.
    fn scan_quoted_scalar(&mut self, quote: u8) {
        self.skip();
        loop {
            if self.at_end() {
                return;
            }
            if self.mark.column == 0 && self.document_marker() {
                // libyaml stops: a document marker inside a quoted scalar.
                return;
            }
            let c = self.at(0);
            if quote == b'\'' && c == Some(b'\'') {
                if self.is(1, b'\'') {
                    self.skip();
                    self.skip();
                    continue;
                }
                self.skip();
                return;
            }
            if quote == b'"' && c == Some(b'"') {
                self.skip();
                return;
            }
            if quote == b'"' && c == Some(b'\\') {
                self.skip();
                if !self.at_end() {
                    self.advance();
                }
                continue;
            }
            self.advance();
        }
    }

    /// A plain scalar: it runs to `: `, ` #`, a flow indicator inside a
    /// flow collection, or a line indented no deeper than its collection.
    fn scan_plain_scalar(&mut self) {
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if self.mark.column == 0 && self.document_marker() {
                break;
            }
            if self.is(0, b'#') {
                break;
            }
            while !self.blankz_at(0) {
                let c = self.at(0).unwrap_or(0);
                if self.flow > 0 && c == b':' && self.at(1).is_some_and(|n| b",?[]{}".contains(&n))
                {
                    // libyaml stops here ("found unexpected ':'").
                    return;
                }
                if (c == b':' && self.blankz_at(1)) || (self.flow > 0 && b",[]{}".contains(&c)) {
                    break;
                }
                self.skip();
            }
            if !(self.blank_at(0) || self.break_at(0).is_some()) {
                break;
            }
            while self.blank_at(0) || self.break_at(0).is_some() {
                if self.blank_at(0) {
                    self.skip();
                } else {
                    self.skip_break();
                    leading_blanks = true;
                }
            }
            if self.flow == 0 && (self.mark.column as isize) < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }

    /// A literal (`|`) or folded (`>`) block scalar: its header, then every
    /// line indented at least as deep as its content, which libyaml takes
    /// from the header's indentation indicator or its first non-empty line.
    fn scan_block_scalar(&mut self) {
        self.skip();
        let mut increment = 0isize;
        let digit = |b: Option<u8>| b.filter(u8::is_ascii_digit).map(|d| isize::from(d - b'0'));
        if matches!(self.at(0), Some(b'+' | b'-')) {
            self.skip();
            if let Some(d) = digit(self.at(0)) {
                if d == 0 {
                    return;
                }
                increment = d;
                self.skip();
            }
        } else if let Some(d) = digit(self.at(0)) {
            if d == 0 {
                return;
            }
            increment = d;
            self.skip();
            if matches!(self.at(0), Some(b'+' | b'-')) {
                self.skip();
            }
        }
        while self.blank_at(0) {
            self.skip();
        }
        if self.is(0, b'#') {
            self.skip_to_break();
        }
        if !self.blankz_at(0) {
            // libyaml stops: the header must end its line.
            return;
        }
        if self.break_at(0).is_some() {
            self.skip_break();
        }
        let mut indent = if increment > 0 {
            if self.indent >= 0 {
                self.indent + increment
            } else {
                increment
            }
        } else {
            0
        };
        if !self.block_scalar_breaks(&mut indent) {
            return;
        }
        while self.mark.column as isize == indent && !self.at_end() {
            self.skip_to_break();
            if self.at_end() {
                return;
            }
            self.skip_break();
            if !self.block_scalar_breaks(&mut indent) {
                return;
            }
        }
    }

    /// Skips the indentation and empty lines before a block scalar's next
    /// content line, settling the scalar's indentation if it is not yet
    /// known. False where libyaml stops (a tab in the indentation).
    fn block_scalar_breaks(&mut self, indent: &mut isize) -> bool {
        let mut max_indent = 0isize;
        loop {
            while (*indent == 0 || (self.mark.column as isize) < *indent) && self.is(0, b' ') {
                self.skip();
            }
            max_indent = max_indent.max(self.mark.column as isize);
            if (*indent == 0 || (self.mark.column as isize) < *indent) && self.is(0, b'\t') {
                return false;
            }
            if self.break_at(0).is_none() {
                break;
            }
            self.skip_break();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        true
    }
}

/// Parses YAML text into a value, refusing to build more than
/// [`MAX_VALUES`] values, or values nested deeper than [`MAX_NESTING`]:
/// `serde_yaml` replays an anchored subtree for every alias as the value is
/// built, so counting what is built bounds the work an alias bomb can
/// cause, and an alias cannot make the value deeper than its text allows.
/// Run [`check_yaml`] first.
pub(super) fn parse_yaml_value(text: &str) -> Result<serde_yaml::Value, serde_yaml::Error> {
    use serde::de::DeserializeSeed as _;
    let budget = std::cell::Cell::new(MAX_VALUES);
    BoundedValue {
        budget: &budget,
        depth: 0,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Builds a [`serde_yaml::Value`] while counting down a budget of values.
struct BoundedValue<'b> {
    budget: &'b std::cell::Cell<usize>,
    /// How many collections hold the value being built.
    depth: usize,
}

impl BoundedValue<'_> {
    /// Refuses a collection that would be nested too deep.
    fn open_collection<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_NESTING {
            return Err(E::custom(format!(
                "the document nests deeper than {MAX_NESTING} levels once its aliases are expanded"
            )));
        }
        self.spend()
    }

    /// The builder for a value inside this one (a collection).
    fn inner(&self) -> BoundedValue<'_> {
        BoundedValue {
            budget: self.budget,
            depth: self.depth + 1,
        }
    }

    fn spend<E: serde::de::Error>(&self) -> Result<(), E> {
        let left = self.budget.get();
        if left == 0 {
            return Err(E::custom(format!(
                "the document holds more than {MAX_VALUES} values once its aliases are expanded"
            )));
        }
        self.budget.set(left - 1);
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = serde_yaml::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedValue<'_> {
    type Value = serde_yaml::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::Number(v.into()))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.spend()?;
        Ok(serde_yaml::Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.open_collection()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.inner())? {
            items.push(item);
        }
        Ok(serde_yaml::Value::Sequence(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.open_collection()?;
        let mut mapping = serde_yaml::Mapping::new();
        while let Some(key) = map.next_key_seed(self.inner())? {
            let value = map.next_value_seed(self.inner())?;
            // A key given twice would silently lose one of its values
            // (`limits` twice, the second one empty: no limits at all).
            if mapping.contains_key(&key) {
                use serde::de::Error as _;
                return Err(A::Error::custom(format!(
                    "the key `{}` appears twice in one mapping",
                    describe_key(&key)
                )));
            }
            mapping.insert(key, value);
        }
        Ok(serde_yaml::Value::Mapping(mapping))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error as _, VariantAccess as _};
        self.spend()?;
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(A::Error::custom("an empty YAML tag"));
        }
        let value = contents.newtype_variant_seed(BoundedValue {
            budget: self.budget,
            depth: self.depth,
        })?;
        Ok(serde_yaml::Value::Tagged(Box::new(
            serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new(tag),
                value,
            },
        )))
    }
}

/// A character of a tag's URI, as libyaml accepts it in a shorthand tag.
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b";/?:@&=+$.%!~*'()_-".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<(usize, usize)> {
        match check_yaml(text) {
            Ok(()) => None,
            Err(v) => {
                assert!(v.message.contains("nests deeper"), "{v}");
                Some((v.line, v.column))
            }
        }
    }

    #[test]
    fn ordinary_documents_pass() {
        let texts = [
            "type: local\nname: x\nsetup: {commands: [a, b]}\n",
            "a:\n  b:\n    - c\n    - [d, {e: f}]\n",
            "k: 'it''s [[[['\nj: \"[[[[\\\" {{{{\"\n",
            "script: |\n  [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n  done\nnext: 1\n",
            "a: b # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
            "a: x[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
            "- &anchor {a: 1}\n- *anchor\n- <<: *anchor\n",
            "",
        ];
        for text in texts {
            assert_eq!(check_yaml(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn flow_nesting_is_bounded_wherever_it_hides() {
        let deep = "[".repeat(MAX_NESTING + 1);
        assert_eq!(depth_error(&deep), Some((1, MAX_NESTING + 1)));
        assert_eq!(
            depth_error(&format!("a:\n  b: {deep}")),
            Some((2, 6 + MAX_NESTING - 2))
        );
        // After a quoted key, a comment-like `#` inside the quotes is text.
        assert!(depth_error(&format!("\"x #\": {deep}")).is_some());
        // A plain scalar with a quote in it does not open a quoted scalar.
        assert!(depth_error(&format!("a: it's\nb: {deep}")).is_some());
        // A block scalar ends where a line is indented less than its content.
        assert!(depth_error(&format!("- key: |\n    text\n  key2: {deep}")).is_some());
        // A shorthand tag ends at `,` inside a flow collection.
        assert!(depth_error(&format!("[!a,{deep}]")).is_some());
        let exactly = "[".repeat(MAX_NESTING);
        assert_eq!(depth_error(&exactly), None);
    }

    #[test]
    fn block_nesting_is_bounded() {
        let mut text = String::new();
        for level in 0..=MAX_NESTING {
            text.push_str(&" ".repeat(level));
            text.push_str("k:\n");
        }
        assert_eq!(depth_error(&text), Some((MAX_NESTING + 1, MAX_NESTING + 1)));
        let mut dashes = String::new();
        for level in 0..=MAX_NESTING {
            dashes.push_str(&"- ".repeat(level + 1));
            dashes.push('\n');
        }
        assert!(depth_error(&dashes).is_some());
    }

    #[test]
    fn aliases_and_size_are_bounded() {
        let mut text = "a: &a x\nb: [".to_owned();
        text.push_str(&"*a, ".repeat(MAX_ALIASES + 1));
        text.push_str("]\n");
        let err = check_yaml(&text).unwrap_err();
        assert!(err.message.contains("aliases"), "{err}");
        assert_eq!(err.line, 2);

        let big = "a: b\n".repeat(MAX_DOCUMENT_BYTES / 5 + 1);
        let err = check_yaml(&big).unwrap_err();
        assert!(err.message.contains("bytes"), "{err}");
        assert_eq!(err.line, MAX_DOCUMENT_BYTES / 5 + 1);
    }

    #[test]
    fn aliases_cannot_deepen_a_value_beyond_the_bound() {
        let half = MAX_NESTING / 2 + 1;
        let text = format!(
            "a: &a {}{}\nb: {}*a{}\n",
            "[".repeat(half),
            "]".repeat(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        assert_eq!(check_yaml(&text), Ok(()));
        let err = parse_yaml_value(&text).unwrap_err().to_string();
        assert!(err.contains("once its aliases are expanded"), "{err}");
        let exactly = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(parse_yaml_value(&exactly).is_ok());
        let over = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(parse_yaml_value(&over).is_err());
    }

    #[test]
    fn json_nesting_skips_strings() {
        assert_eq!(
            check_json("{\"a\": \"[[[[[[\\\"[[[[\", \"b\": [[1]]}"),
            Ok(())
        );
        let err = check_json(&format!("{{\"a\":\n{}", "[".repeat(MAX_NESTING))).unwrap_err();
        assert_eq!((err.line, err.column), (2, MAX_NESTING));
    }
}

/// A mapping key as a short text for a message.
fn describe_key(key: &serde_yaml::Value) -> String {
    let text = match key {
        serde_yaml::Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Parses JSON text into a value like `serde_json::from_str`, but refuses
/// a key that appears twice in one object instead of keeping the last.
pub(super) fn parse_json_value(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = UniqueKeys.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a [`serde_json::Value`], refusing duplicate object keys.
#[derive(Clone, Copy)]
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(UniqueKeys)?;
            if object.contains_key(&key) {
                let shown: String = key.chars().take(80).collect();
                return Err(A::Error::custom(format!(
                    "the key `{shown}` appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}
