//! Placeholders: image CDNs answer a Referer they refuse with a 200 and a
//! stock picture ("this image comes from ... and may not be quoted"). A
//! browser-exact fetch gets that too, which is what the reader saw; the run
//! says so and still keeps the real picture.
//!
//! The rule: an answer is a placeholder when its digest is on
//! `defaults.placeholder_digests`, or when one origin answered the same bytes
//! for two different image paths to requests that carried a Referer and a
//! request without Referer or cookies then gets a different picture. Such
//! an entry is asked for once more without Referer and cookies; a different
//! real picture becomes its content and the placeholder is kept as what was
//! shown. One such request that gets another picture decides for every
//! entry with those bytes; the same bytes again (a picture used twice, or a
//! stock picture for deleted images) or no picture (a CDN that wants a
//! Referer) prove nothing, and after three different paths prove nothing
//! the bytes are cleared and nothing more is asked. A listed digest is
//! flagged whatever the second answer; only the heuristic needs a second
//! path, so one placeholder alone in a run, off the list, is not caught.
//!
//! Memory: bytes seen for one path only are remembered for the last
//! [`MAX_SEEN`] of them (their entries stay in memory meanwhile, pinned, as
//! a verdict may rewrite them); the second path must come within that
//! window, as it does when a CDN answers a page's pictures with one stock
//! image.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};

use url::Url;

use super::Ctx;
use crate::extract::media;
use crate::fetch::{Accept, FetchRequest};
use crate::store::id::BlobId;

/// Different paths tested, per origin and bytes, before the bytes are taken
/// for a picture used several times: a CDN may send one stock picture both
/// for deleted images (the same without a Referer) and to refused
/// Referers, so one test is not enough, and a few cost little.
const MAX_TESTS: usize = 3;

/// Bytes seen for one path only, remembered at once; older ones are
/// forgotten (and their entries unpinned).
const MAX_SEEN: usize = 8192;

/// What a run knows about the image bytes each origin answered.
#[derive(Default)]
pub(super) struct Suspects {
    map: HashMap<(String, BlobId), Suspect>,
    /// Keys in the order they were first seen.
    order: VecDeque<(String, BlobId)>,
}

impl Suspects {
    /// Forgets the oldest bytes seen for one path only, past [`MAX_SEEN`];
    /// returns the entries that waited for them.
    fn forget_oldest(&mut self) -> Vec<usize> {
        let mut freed = Vec::new();
        while self.map.len() > MAX_SEEN {
            let Some(key) = self.order.pop_front() else { break };
            if let Some(Suspect::Seen { .. }) = self.map.get(&key)
                && let Some(Suspect::Seen { waiting, .. }) = self.map.remove(&key)
            {
                freed.extend(waiting);
            }
        }
        freed
    }
}

/// What a run knows about bytes one origin answered for images.
pub(super) enum Suspect {
    /// Seen for one path only (under one or more Referers or queries):
    /// the entries that got them wait for a verdict.
    Seen { path: String, waiting: Vec<usize> },
    /// Seen for several paths: entries wait while up to [`MAX_TESTS`]
    /// paths are asked again without a Referer, one at a time.
    Open { waiting: Vec<(usize, String)>, tested: Vec<String>, cleared: Vec<usize>, testing: bool },
    /// A test got another picture: every entry that gets these bytes is
    /// asked again.
    Placeholder,
}

impl Suspect {
    /// Takes the next waiting entry whose path has not been tested, if a
    /// test may start; marks it as being tested.
    fn next_test(&mut self) -> Option<usize> {
        let Suspect::Open { waiting, tested, testing, .. } = self else { return None };
        if *testing || tested.len() >= MAX_TESTS {
            return None;
        }
        let at = waiting.iter().position(|(_, p)| !tested.contains(p))?;
        let (j, path) = waiting.swap_remove(at);
        tested.push(path);
        *testing = true;
        Some(j)
    }
}

/// What asking again without a Referer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A different picture, now the entry's content.
    Recovered,
    /// The same bytes.
    Same,
    /// No picture (an error, an HTML page, nothing).
    Nothing,
}

impl Ctx {
    /// Called once image entry `i` has stored a body fetched from
    /// `answered_by`: flags and recovers placeholders by the rule above.
    pub(super) async fn check_placeholder(self: &std::sync::Arc<Self>, i: usize, answered_by: &Url) {
        let (blob, referer_sent) = self.read(i, |e| (e.blob, e.referer.is_some()));
        let Some(blob) = blob else { return };
        if self.opts.placeholder_digests.contains(&blob) {
            self.recover(i, blob, true).await;
            return;
        }
        if !referer_sent {
            return;
        }
        let key = (answered_by.origin().ascii_serialization(), blob);
        let path = answered_by.path().to_string();
        let mut test = {
            let mut suspects = self.suspects.lock().expect("no panics while held");
            let s = match suspects.map.entry(key.clone()) {
                Slot::Vacant(v) => {
                    v.insert(Suspect::Seen { path, waiting: vec![i] });
                    self.entries.pin(i);
                    suspects.order.push_back(key);
                    for j in suspects.forget_oldest() {
                        self.entries.unpin(j);
                    }
                    return;
                }
                Slot::Occupied(o) => o.into_mut(),
            };
            match s {
                Suspect::Placeholder => None,
                // The same path under another query or Referer is no
                // evidence yet.
                Suspect::Seen { path: first, waiting } if *first == path => {
                    waiting.push(i);
                    self.entries.pin(i);
                    return;
                }
                Suspect::Seen { path: first, waiting } => {
                    let mut all: Vec<(usize, String)> = waiting.drain(..).map(|j| (j, first.clone())).collect();
                    all.push((i, path));
                    self.entries.pin(i);
                    *s = Suspect::Open { waiting: all, tested: vec![], cleared: vec![], testing: false };
                    Some(s.next_test())
                }
                Suspect::Open { waiting, tested, testing, .. } => {
                    if tested.len() >= MAX_TESTS && !*testing {
                        // Tested enough: a picture used many times.
                        return;
                    }
                    waiting.push((i, path));
                    self.entries.pin(i);
                    Some(s.next_test())
                }
            }
        };
        let Some(mut next) = test.take() else {
            // Proven a placeholder here: flagged whatever the second answer.
            self.recover(i, blob, true).await;
            return;
        };
        // Tests run one at a time, in the task that found the need.
        while let Some(j) = next {
            let answer = self.recover(j, blob, false).await;
            // Recovered, its entry is final; cleared, a later verdict
            // reaches it as a change of its own.
            self.entries.unpin(j);
            let mut suspects = self.suspects.lock().expect("no panics while held");
            let Some(s) = suspects.map.get_mut(&key) else { return };
            if answer == Answer::Recovered {
                let (waiting, cleared) = match std::mem::replace(s, Suspect::Placeholder) {
                    Suspect::Open { waiting, cleared, .. } => (waiting, cleared),
                    _ => (vec![], vec![]),
                };
                drop(suspects);
                // Tested before the verdict and answered the same without a
                // Referer: the reader was shown the placeholder all the same.
                for c in cleared {
                    self.progress.add_placeholder(false);
                    self.entries.late(c, super::entries::Late::Placeholder);
                }
                for (w, _) in waiting {
                    let c = self.clone();
                    self.spawn(Box::pin(async move {
                        c.recover(w, blob, true).await;
                        c.entries.unpin(w);
                    }));
                }
                return;
            }
            if let Suspect::Open { testing, tested, waiting, cleared } = s {
                *testing = false;
                cleared.push(j);
                if tested.len() >= MAX_TESTS {
                    // Cleared: nothing more is asked for these bytes.
                    for (w, _) in waiting.drain(..) {
                        self.entries.unpin(w);
                    }
                }
            }
            next = s.next_test();
        }
    }

    /// Asks for entry `i` once more without Referer or cookies. `known`: the
    /// bytes are a placeholder (listed, or proven in this run), flagged
    /// whatever the answer.
    async fn recover(&self, i: usize, shown: BlobId, known: bool) -> Answer {
        let Some(url) = Url::parse(&self.read(i, |e| e.url.clone())).ok() else {
            return Answer::Nothing;
        };
        let mut req = FetchRequest::new(url);
        req.accept = Accept::Image;
        let answer = self.fetcher.fetch(req).await.result.ok();
        let real = answer.and_then(|r| Some((media::classify_image(&r.body, r.content_type.as_deref()).ok()?, r)));
        match real {
            Some((info, r)) if BlobId::of(&r.body) != shown => match self.store(r.body.clone()).await {
                Ok(s) => {
                    self.progress.add_placeholder(true);
                    self.progress.add_bytes(r.body.len() as u64);
                    // The entry's content is now the recovered picture, so
                    // its headers are that response's; `referer` still
                    // says what the reader's browser sent.
                    self.update(i, |e| {
                        e.placeholder = true;
                        e.shown = Some(shown);
                        e.blob = Some(s.id);
                        e.size = s.size;
                        e.stored_size = s.stored_size;
                        e.image = Some(info);
                        super::fill_response(e, &r);
                        // The browser-exact request's redirects led to the
                        // placeholder, not to this picture.
                        e.hops.clear();
                    });
                    Answer::Recovered
                }
                Err(err) => {
                    self.fail_fatal(err);
                    Answer::Nothing
                }
            },
            // By behaviour alone, only another picture proves a Referer
            // dependence: the same bytes are a picture used twice, and no
            // answer may be a CDN that wants a Referer.
            other if !known => {
                if other.is_some() {
                    Answer::Same
                } else {
                    Answer::Nothing
                }
            }
            other => {
                self.progress.add_placeholder(false);
                self.update(i, |e| e.placeholder = true);
                if other.is_some() { Answer::Same } else { Answer::Nothing }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_seen_once_are_forgotten_oldest_first_and_only_those() {
        let mut s = Suspects::default();
        let key = |n: usize| ("https://cdn.example".to_string(), BlobId::of(&n.to_le_bytes()));
        // An Open suspect is evidence in progress: never forgotten.
        s.map.insert(
            key(0),
            Suspect::Open { waiting: vec![(0, "/a".into())], tested: vec![], cleared: vec![], testing: false },
        );
        s.order.push_back(key(0));
        for n in 1..=MAX_SEEN + 3 {
            s.map.insert(key(n), Suspect::Seen { path: format!("/{n}"), waiting: vec![n, n + 100_000] });
            s.order.push_back(key(n));
        }
        let freed = s.forget_oldest();
        assert_eq!(freed, [1, 100_001, 2, 100_002, 3, 100_003, 4, 100_004]);
        assert_eq!(s.map.len(), MAX_SEEN);
        assert!(matches!(s.map.get(&key(0)), Some(Suspect::Open { .. })));
        assert!(s.map.contains_key(&key(5)));
        assert!(s.forget_oldest().is_empty());
    }
}
