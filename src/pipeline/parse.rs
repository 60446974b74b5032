//! Parsing documents for references, bounded in memory. A parsed tree
//! costs many times its text, so the parses running at once share a budget
//! of estimated bytes rather than a count: many small articles parse side
//! by side, one huge page parses alone, and a page past
//! `RunOptions::max_document_elements` is not parsed at all. Parses run on
//! the blocking pool, so a large one never stalls the fetch tasks.

use tokio::sync::Semaphore;
use url::Url;

use super::Ctx;
use crate::extract::{self, Extracted};
use crate::referrer::Policy;

/// Estimated bytes of parse trees alive at once, all parses together. One
/// document costing more still parses, alone.
pub(super) const PARSE_BUDGET: usize = 96 << 20;

/// The budget's unit: a permit is a KiB, so the semaphore's count fits
/// whatever the budget.
const UNIT: usize = 1024;

/// The semaphore that holds [`PARSE_BUDGET`].
pub(super) fn budget() -> Semaphore {
    Semaphore::new(PARSE_BUDGET / UNIT)
}

impl Ctx {
    /// The references of the HTML document `html` at `url`, as
    /// [`extract::extract_html`] finds them, once the document's estimated
    /// parse cost fits in the run's budget.
    pub(super) async fn extract_document(&self, html: String, url: &Url, policy: Option<Policy>) -> Extracted {
        let shape = extract::scan(&html);
        let max = self.opts.max_document_elements;
        if shape.elements > max {
            return Extracted::unparsed(
                url,
                policy,
                format!(
                    "the document has {} elements, more than the {max} that are parsed \
                     (defaults.max_document_elements); it is stored, but what it references was not fetched",
                    shape.elements
                ),
            );
        }
        let cost = shape.parse_cost(html.len()).min(PARSE_BUDGET).div_ceil(UNIT).max(1);
        let _permits = self
            .parse_budget
            .acquire_many(u32::try_from(cost).expect("the budget fits in u32 units"))
            .await
            .expect("the semaphore is never closed");
        let url = url.clone();
        let mut ex = tokio::task::spawn_blocking(move || extract::extract_html_shaped(&html, shape, &url, policy))
            .await
            .expect("extraction never panics");
        if let Some(why) = self.cap_references(&mut ex.refs) {
            ex.limit = Some(format!("the document {why}"));
        }
        ex
    }

    /// Keeps the first `defaults.max_document_references` of a document's
    /// (or stylesheet's) references; says how many were left, if any.
    pub(super) fn cap_references(&self, refs: &mut Vec<extract::Reference>) -> Option<String> {
        let (found, max) = (refs.len(), self.opts.max_document_references);
        (found > max).then(|| {
            refs.truncate(max);
            format!(
                "references {found} resources; the first {max} were fetched \
                 (raise defaults.max_document_references to fetch more)"
            )
        })
    }
}
