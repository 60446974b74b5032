//! Error messages for people: an error and its causes on one line.

/// `e` and its causes on one line, each said once. Many errors name their
/// cause in their own message (`cannot write X: disk full`) and also give
/// it as their source, so printing the chain as it is would say the cause
/// twice; a cause whose text is in the message of the error just above it
/// is left out (only there: a short cause such as `EOF` is not lost
/// because some other part of the line happens to contain it).
pub fn line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut above = line.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !above.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        above = text;
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {path}: {source}")]
    struct Write {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{what}")]
    struct Context {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    }

    fn context(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Context {
        Context { what, source: Box::new(source) }
    }

    #[test]
    fn each_cause_is_said_once() {
        let disk = std::io::Error::other("no space left on device");
        let err = context("archive failed", Write { path: "/a", source: disk });
        assert_eq!(line(&err), "archive failed: cannot write /a: no space left on device");
        // A cause the message does not name is still shown.
        let err = context("cannot reach the store", std::io::Error::other("refused"));
        assert_eq!(line(&err), "cannot reach the store: refused");
        // A cause named only further up is still said where it comes.
        let err = context("reading the EOF marker", Write { path: "/x", source: std::io::Error::other("EOF") });
        assert_eq!(line(&err), "reading the EOF marker: cannot write /x: EOF");
    }
}
