//! Configuration diagnostics: a byte span turned into file, line and column,
//! and "did you mean" hints for misspelt keys and values.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong. Never contains a header value.
    pub message: String,
    /// A suggestion, such as "did you mean `schedule`?".
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.column, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..offset].chars().count() + 1)
}

/// Builds a diagnostic at byte `offset`.
pub fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Diagnostic {
    let (line, column) = line_col(text, offset);
    Diagnostic { path: path.to_path_buf(), line, column, message: message.into(), hint: None }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" and "unknown
/// variant `x`, expected `a` or `b`": the closest expected name, if close.
pub fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    closest(given, &candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `given` by edit distance, if it is close enough
/// to be a typo (at most a third of the characters differ).
pub fn closest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let given_l = given.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&given_l, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count().max(given.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "a = 1\nbb = 2\n  ccc = 3";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
        assert_eq!(line_col(t, t.len()), (3, 10));
        // Columns count characters, not bytes.
        assert_eq!(line_col("名前 = 1", "名前 ".len()), (1, 4));
    }

    #[test]
    fn hints_for_typos_only() {
        let m = "unknown field `schedul`, expected one of `name`, `sources`, `schedule`, `tags`";
        assert_eq!(did_you_mean(m).as_deref(), Some("did you mean `schedule`?"));
        let m = "unknown variant `run_once`, expected `run-once` or `skip`";
        assert_eq!(did_you_mean(m).as_deref(), Some("did you mean `run-once`?"));
        let m = "unknown field `colour`, expected one of `name`, `sources`";
        assert_eq!(did_you_mean(m), None);
        assert_eq!(did_you_mean("missing field `name`"), None);
        assert_eq!(closest("alow_private", &["allow_private", "robots"]), Some("allow_private"));
    }
}
