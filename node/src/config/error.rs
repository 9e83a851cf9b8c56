//! Configuration errors: every one names file, line, column, dotted key and reason.
//!
//! The format is the compiler's `file:line:column: ...`, so editors and CI logs make it
//! clickable, followed by the Junos-style key path an SRX administrator would type after
//! `edit`: `vpn.toml:23:14: security.ike.gateway.gw-b.ike-policy: references undefined
//! ike policy "ike-pl" (defined: ike-pol)`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Io {
        /// The file asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. Holds every problem found, in
    /// file order, so an operator fixes them in one pass instead of one per reload.
    #[error("{}", DiagnosticList(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The individual problems (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(d) => d,
        }
    }
}

/// One problem at one place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to `Config::parse` or `Config::load`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte range in the file the problem points at.
    pub span: Range<usize>,
    /// Dotted key path (`security.ike.gateway.gw-b.ike-policy`); empty when the problem
    /// is not inside any key (a syntax error before the first table, say).
    pub key: String,
    /// What is wrong, and where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

struct DiagnosticList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics against one source text, turning byte offsets into line:column.
pub(crate) struct Diagnostics<'a> {
    file: &'a str,
    text: &'a str,
    list: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            list: Vec::new(),
        }
    }

    /// Records a problem at `span` under `key`.
    pub(crate) fn push(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(self.text, span.start);
        self.list.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            span,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The collected problems in file order (validation walks the model, not the file).
    pub(crate) fn into_error(mut self) -> ConfigError {
        self.list.sort_by_key(|d| d.span.start);
        ConfigError::Invalid(self.list)
    }
}

/// 1-based line and character column of byte `offset` (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Joins keys into a dotted path, quoting those that are not bare TOML keys
/// (`routing-options.static.route."10.2.0.0/16".next-hop`), so the path can be pasted back.
pub(crate) fn key_path<S: AsRef<str>>(keys: &[S]) -> String {
    let mut out = String::new();
    for (i, k) in keys.iter().enumerate() {
        let k = k.as_ref();
        if i > 0 {
            out.push('.');
        }
        let bare = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if bare {
            out.push_str(k);
        } else {
            out.push('"');
            out.push_str(&k.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nb = \"é\" x\n";
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 9));
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn key_path_quotes_non_bare_keys() {
        assert_eq!(
            key_path(&[
                "routing-options",
                "static",
                "route",
                "10.2.0.0/16",
                "next-hop"
            ]),
            "routing-options.static.route.\"10.2.0.0/16\".next-hop"
        );
    }
}
