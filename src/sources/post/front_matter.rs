//! Front matter: finding the `---` (YAML) or `+++` (TOML) block at the top of
//! a post and reading it into a small format-neutral value tree, with errors
//! that point at the line in the file.

use super::PostError;

/// A front matter value, with YAML and TOML scalars flattened to text (a
/// post's date stays exactly as written, whatever the format's date type).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Text(String),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
    Null,
}

impl Value {
    /// The value as a trimmed, non-empty string, if it is a scalar.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) if !s.trim().is_empty() => Some(s.trim()),
            _ => None,
        }
    }

    /// Looks up a key in a map.
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A post split into its front matter (parsed) and its body.
pub(super) struct Split<'a> {
    /// The front matter fields (`Value::Map`), or `Value::Null` if none.
    pub fields: Value,
    /// Everything after the closing delimiter line, as written.
    pub body: &'a str,
}

/// Splits `text` (BOM already removed) into front matter and body. Blank
/// lines before the opening delimiter are allowed (some Hexo exports have one).
pub(super) fn split(text: &str) -> Result<Split<'_>, PostError> {
    let mut lines = Lines { text, offset: 0, number: 0 };
    let opener = loop {
        match lines.next() {
            Some(line) if line.content.trim().is_empty() => continue,
            Some(line) => break line,
            None => {
                return Ok(Split { fields: Value::Null, body: text });
            }
        }
    };
    let kind = match opener.content.trim_end() {
        "---" => Kind::Yaml,
        "+++" => Kind::Toml,
        _ => {
            return Ok(Split { fields: Value::Null, body: text });
        }
    };
    let start = opener.end;
    let close = loop {
        match lines.next() {
            Some(line) if kind.closes(line.content.trim_end()) => break line,
            Some(_) => continue,
            None => {
                return Err(PostError::Unterminated { delimiter: kind.delimiter(), line: opener.number });
            }
        }
    };
    let source = &text[start..close.start];
    if flow_depth(source) > MAX_DEPTH {
        return Err(PostError::TooDeep { line: opener.number + 1, limit: MAX_DEPTH });
    }
    let fields = match kind {
        Kind::Yaml => parse_yaml(source, opener.number)?,
        Kind::Toml => parse_toml(source, opener.number)?,
    };
    if !matches!(fields, Value::Map(_) | Value::Null) {
        return Err(PostError::NotAMapping { line: opener.number + 1 });
    }
    Ok(Split { fields, body: &text[close.end..] })
}

/// Deepest nesting of `[` and `{` accepted in front matter. Real posts nest
/// two or three levels; YAML and TOML parsers slow down badly long before
/// they reach their own recursion limits.
const MAX_DEPTH: usize = 64;

/// The deepest nesting of `[` and `{`, counted everywhere, quoted strings
/// included: an over-estimate that no real front matter comes near, and
/// that no quoting trick can hide nesting from. Linear in the input.
fn flow_depth(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in source.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[derive(Clone, Copy)]
enum Kind {
    Yaml,
    Toml,
}

impl Kind {
    fn delimiter(self) -> &'static str {
        match self {
            Kind::Yaml => "---",
            Kind::Toml => "+++",
        }
    }

    fn closes(self, line: &str) -> bool {
        // YAML documents may also end with `...`.
        line == self.delimiter() || matches!(self, Kind::Yaml) && line == "..."
    }
}

struct Line<'a> {
    /// The line without its terminator (`\r` stripped too).
    content: &'a str,
    /// Byte offset of the line's start.
    start: usize,
    /// Byte offset just past its terminator.
    end: usize,
    /// 1-based line number.
    number: usize,
}

struct Lines<'a> {
    text: &'a str,
    offset: usize,
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.offset >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.offset..];
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let raw = &rest[..len];
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let content = content.strip_suffix('\r').unwrap_or(content);
        let line = Line { content, start: self.offset, end: self.offset + len, number: self.number + 1 };
        self.offset += len;
        self.number += 1;
        Some(line)
    }
}

/// `opener_line` is the file line of the `---`; YAML line 1 is the next one.
fn parse_yaml(source: &str, opener_line: usize) -> Result<Value, PostError> {
    match serde_yaml::from_str::<serde_yaml::Value>(source) {
        Ok(value) => Ok(from_yaml(value)),
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let line = opener_line + line;
            let message = shift_yaml_lines(&e.to_string(), opener_line);
            // The primary location is already in our message's prefix.
            let message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
            Err(PostError::Yaml { line, column, message })
        }
    }
}

/// serde_yaml's messages count lines from the start of the front matter;
/// shift every `line N` so that all of them are file lines.
fn shift_yaml_lines(message: &str, offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find("line ") {
        let (head, tail) = rest.split_at(pos + "line ".len());
        out.push_str(head);
        let digits = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        match tail[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn parse_toml(source: &str, opener_line: usize) -> Result<Value, PostError> {
    match toml::from_str::<toml::Table>(source) {
        Ok(table) => Ok(from_toml(toml::Value::Table(table))),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start).min(source.len());
            let offset = (0..=offset).rev().find(|&i| source.is_char_boundary(i)).unwrap_or(0);
            let before = &source[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(PostError::Toml { line: opener_line + line, column, message: e.message().trim().to_string() })
        }
    }
}

fn from_yaml(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Text(b.to_string()),
        Y::Number(n) => Value::Text(n.to_string()),
        Y::String(s) => Value::Text(s),
        Y::Sequence(items) => Value::List(items.into_iter().map(from_yaml).collect()),
        Y::Mapping(map) => Value::Map(
            map.into_iter().filter_map(|(k, v)| from_yaml(k).text().map(|k| (k.to_string(), from_yaml(v)))).collect(),
        ),
        Y::Tagged(tagged) => from_yaml(tagged.value),
    }
}

fn from_toml(value: toml::Value) -> Value {
    use toml::Value as T;
    match value {
        T::String(s) => Value::Text(s),
        T::Integer(i) => Value::Text(i.to_string()),
        T::Float(f) => Value::Text(f.to_string()),
        T::Boolean(b) => Value::Text(b.to_string()),
        T::Datetime(d) => Value::Text(d.to_string()),
        T::Array(items) => Value::List(items.into_iter().map(from_toml).collect()),
        T::Table(table) => Value::Map(table.into_iter().map(|(k, v)| (k, from_toml(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_front_matter() {
        let s = split("# Title\n\ntext\n").unwrap();
        assert_eq!(s.fields, Value::Null);
        assert_eq!(s.body, "# Title\n\ntext\n");
    }

    #[test]
    fn yaml_and_body_offsets() {
        let s = split("---\ntitle: 标题\n---\nbody\n").unwrap();
        assert_eq!(s.fields.get("title").and_then(Value::text), Some("标题"));
        assert_eq!(s.body, "body\n");
    }

    #[test]
    fn yaml_closed_by_dots() {
        let s = split("---\ntitle: x\n...\nbody").unwrap();
        assert_eq!(s.body, "body");
    }

    #[test]
    fn empty_front_matter() {
        let s = split("---\n---\nbody").unwrap();
        assert_eq!(s.fields, Value::Null);
        assert_eq!(s.body, "body");
    }

    #[test]
    fn toml_datetime_kept_as_written() {
        let s = split("+++\ndate = 2024-01-05T10:00:00+08:00\n+++\n").unwrap();
        assert_eq!(s.fields.get("date").and_then(Value::text), Some("2024-01-05T10:00:00+08:00"));
        assert_eq!(s.body, "");
    }

    #[test]
    fn yaml_scalar_is_not_a_mapping() {
        let err = split("---\njust a sentence\n---\n").err().unwrap();
        assert!(matches!(err, PostError::NotAMapping { line: 2 }), "{err:?}");
    }

    #[test]
    fn yaml_message_lines_are_file_lines() {
        let err = split("\n---\ntitle: ok\ntags: [a, b\nimage: x.jpg\n---\n").err().unwrap();
        let PostError::Yaml { line, message, .. } = err else { panic!("{err:?}") };
        assert_eq!(line, 5);
        assert!(!message.contains("line 5 column"), "primary location removed: {message}");
        assert!(message.contains("flow sequence at line 4 column 7"), "{message}");
    }

    #[test]
    fn shift_lines() {
        assert_eq!(
            shift_yaml_lines("x at line 1 column 2, y at line 10 column 1", 3),
            "x at line 4 column 2, y at line 13 column 1"
        );
        assert_eq!(shift_yaml_lines("no numbers; line x", 3), "no numbers; line x");
    }

    #[test]
    fn toml_error_line_is_file_line() {
        let err = split("\n+++\ntitle = \"ok\"\ndate = = 1\n+++\n").err().unwrap();
        match err {
            PostError::Toml { line, column, .. } => assert_eq!((line, column), (4, 8)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_refused_unread_and_real_nesting_is_fine() {
        let deep = format!("---\ntags: {}\n---\nbody", "[".repeat(400_000));
        let err = split(&deep).err().unwrap();
        assert!(matches!(err, PostError::TooDeep { line: 2, limit: 64 }), "{err:?}");
        assert!(err.to_string().contains("the post is stored"));
        let toml = format!("+++\na = {}\n+++\n", "{x = ".repeat(100));
        assert!(matches!(split(&toml).err().unwrap(), PostError::TooDeep { .. }));
        let fine = "---\ntags: [a, [b, {c: [d]}]]\ntitle: \"[[[ not nesting ]]]\"\n---\nbody";
        assert_eq!(split(fine).unwrap().body, "body");
    }
}
