//! Two versions of an article's text, compared sentence by sentence and
//! rendered as one flow: removed sentences struck through, added ones
//! marked, long unchanged stretches folded. Sentences, not words, because
//! Chinese and Japanese text has no spaces to split at, and an edited
//! article usually changes whole sentences.

use super::page::esc;

/// Largest comparison table (sentences x sentences) worked out exactly;
/// past it, what lies between the common start and end is shown as
/// replaced (a longest-common-subsequence table of 4M cells is 8 MB).
const MAX_CELLS: usize = 4_000_000;

/// Unchanged sentences shown on each side of a change.
const CONTEXT: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// `text` cut after each sentence end (Latin and CJK), each piece keeping
/// its punctuation; blank pieces dropped.
pub(super) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '。' | '！' | '？' | '；' | '\n' => true,
            '.' | '!' | '?' => chars.peek().is_none_or(|(_, n)| n.is_whitespace()),
            _ => false,
        };
        if end {
            let stop = i + c.len_utf8();
            out.push(&text[start..stop]);
            start = stop;
        }
    }
    out.push(&text[start..]);
    out.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// The edit from `a` to `b`: a longest common subsequence of sentences.
pub(super) fn diff<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..].iter().rev().zip(b[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<Op<'a>> = a[..head].iter().map(|s| Op::Same(s)).collect();
    if ma.len().saturating_mul(mb.len()) > MAX_CELLS {
        ops.extend(ma.iter().map(|s| Op::Removed(s)));
        ops.extend(mb.iter().map(|s| Op::Added(s)));
    } else {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u16; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1].saturating_add(1)
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() && j < mb.len() {
            if ma[i] == mb[j] {
                ops.push(Op::Same(ma[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push(Op::Removed(ma[i]));
                i += 1;
            } else {
                ops.push(Op::Added(mb[j]));
                j += 1;
            }
        }
        ops.extend(ma[i..].iter().map(|s| Op::Removed(s)));
        ops.extend(mb[j..].iter().map(|s| Op::Added(s)));
    }
    ops.extend(a[a.len() - tail..].iter().map(|s| Op::Same(s)));
    ops
}

/// The change from text `a` to text `b` as HTML (escaped): `<del>` for
/// removed sentences, `<ins>` for added ones, unchanged stretches folded to
/// their first and last sentences.
pub(super) fn render(a: &str, b: &str) -> String {
    let (sa, sb) = (sentences(a), sentences(b));
    let ops = diff(&sa, &sb);
    let (removed, added) = ops.iter().fold((0, 0), |(r, a), op| match op {
        Op::Removed(_) => (r + 1, a),
        Op::Added(_) => (r, a + 1),
        Op::Same(_) => (r, a),
    });
    let mut out = format!("<p class=dim>{removed} sentences removed, {added} added</p><div class=diff>");
    let mut k = 0;
    while k < ops.len() {
        let run = ops[k..].iter().take_while(|o| matches!(o, Op::Same(_))).count();
        if run == 0 {
            match ops[k] {
                Op::Removed(s) => out.push_str(&format!("<del>{}</del> ", esc(s))),
                Op::Added(s) => out.push_str(&format!("<ins>{}</ins> ", esc(s))),
                Op::Same(_) => unreachable!("a run of one"),
            }
            k += 1;
            continue;
        }
        let (first, last) = (k == 0, k + run == ops.len());
        let keep_head = if first { 0 } else { CONTEXT };
        let keep_tail = if last { 0 } else { CONTEXT };
        for (n, op) in ops[k..k + run].iter().enumerate() {
            let Op::Same(s) = op else { continue };
            if n < keep_head || n >= run.saturating_sub(keep_tail) {
                out.push_str(&format!("<span>{}</span> ", esc(s)));
            } else if n == keep_head {
                let folded = run.saturating_sub(keep_head + keep_tail);
                out.push_str(&format!("<p class=dim>… {folded} unchanged sentences …</p>"));
            }
        }
        k += run;
    }
    out.push_str("</div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_latin_and_cjk() {
        assert_eq!(
            sentences("One. Two 3.5 go! 第一句。第二句？end"),
            ["One.", "Two 3.5 go!", "第一句。", "第二句？", "end"]
        );
        assert!(sentences("  ").is_empty());
    }

    #[test]
    fn diff_keeps_order_and_marks_edits() {
        let a = ["A.", "B.", "C.", "D."];
        let b = ["A.", "C.", "X.", "D.", "E."];
        let ops = diff(&a, &b);
        assert_eq!(
            ops,
            vec![Op::Same("A."), Op::Removed("B."), Op::Same("C."), Op::Added("X."), Op::Same("D."), Op::Added("E.")]
        );
        // Rebuilding either side from the ops gives it back.
        let old: Vec<&str> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Same(s) | Op::Removed(s) => Some(*s),
                Op::Added(_) => None,
            })
            .collect();
        assert_eq!(old, a);
    }

    #[test]
    fn render_escapes_folds_and_marks() {
        let same: String = (0..20).map(|i| format!("Same {i}. ")).collect();
        let a = format!("{same}Old <b>claim</b>. {same}");
        let b = format!("{same}新的说法。 {same}");
        let html = render(&a, &b);
        assert!(html.contains("<del>Old &lt;b&gt;claim&lt;/b&gt;.</del>"), "{html}");
        assert!(html.contains("<ins>新的说法。</ins>"), "{html}");
        assert!(html.contains("18 unchanged sentences"), "{html}");
        assert!(html.contains("1 sentences removed, 1 added"), "{html}");
        assert!(!html.contains("Same 5."), "folded: {html}");
        assert!(html.contains("Same 19.") && html.contains("Same 1."), "context kept: {html}");
    }

    #[test]
    fn a_huge_difference_is_shown_as_replaced() {
        let a: Vec<String> = (0..3000).map(|i| format!("a{i}.")).collect();
        let b: Vec<String> = (0..3000).map(|i| format!("b{i}.")).collect();
        let (ra, rb): (Vec<&str>, Vec<&str>) =
            (a.iter().map(|s| s.as_str()).collect(), b.iter().map(|s| s.as_str()).collect());
        let ops = diff(&ra, &rb);
        assert_eq!(ops.len(), 6000);
        assert!(matches!(ops[0], Op::Removed("a0.")) && matches!(ops[3000], Op::Added("b0.")));
    }
}
