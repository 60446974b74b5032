//! Placeholders: image CDNs answer a Referer they refuse with a 200 and a
//! stock picture ("this image comes from ... and may not be quoted"). A
//! browser-exact fetch gets that too, which is what the reader saw; the run
//! says so and still keeps the real picture.
//!
//! The rule: an answer is a placeholder when its digest is on
//! `defaults.placeholder_digests`, or when one origin answered the same bytes
//! for two different image paths to requests that carried a Referer and a
//! request without Referer or cookies then gets a different picture (or
//! nothing). Such an entry is asked for once more without Referer and
//! cookies; a different real picture becomes its content and the
//! placeholder is kept as what was shown. The same bytes again prove no
//! Referer dependence: a picture used twice is not flagged.

use std::collections::hash_map::Entry as Slot;

use url::Url;

use super::Ctx;
use crate::extract::media;
use crate::fetch::{Accept, FetchRequest};
use crate::store::id::BlobId;

/// Image entries a host answered with the same bytes, until a second path
/// shows them to be a placeholder.
pub(super) struct Suspect {
    /// The first path seen.
    path: String,
    /// Entries waiting for the verdict (the first path, under one or more
    /// Referers).
    waiting: Vec<usize>,
    confirmed: bool,
}

impl Ctx {
    /// Called once image entry `i` has stored a body fetched from
    /// `answered_by`: flags and recovers placeholders by the rule above.
    pub(super) async fn check_placeholder(self: &std::sync::Arc<Self>, i: usize, answered_by: &Url) {
        let (blob, referer_sent) = {
            let entries = self.entries.lock().expect("no panics while held");
            (entries[i].blob, entries[i].referer.is_some())
        };
        let Some(blob) = blob else { return };
        if self.opts.placeholder_digests.contains(&blob) {
            self.recover(i, blob, true).await;
            return;
        }
        if !referer_sent {
            return;
        }
        let key = (answered_by.origin().ascii_serialization(), blob);
        let earlier = {
            let mut suspects = self.suspects.lock().expect("no panics while held");
            match suspects.entry(key) {
                Slot::Vacant(v) => {
                    v.insert(Suspect { path: answered_by.path().to_string(), waiting: vec![i], confirmed: false });
                    return;
                }
                Slot::Occupied(mut o) => {
                    let s = o.get_mut();
                    if s.confirmed {
                        vec![]
                    } else if s.path == answered_by.path() {
                        // The same path under another query or Referer is
                        // no evidence yet.
                        s.waiting.push(i);
                        return;
                    } else {
                        s.confirmed = true;
                        std::mem::take(&mut s.waiting)
                    }
                }
            }
        };
        for first in earlier {
            let c = self.clone();
            self.spawn(Box::pin(async move {
                let _slot = c.slots.acquire().await.expect("the semaphore is never closed");
                c.recover(first, blob, false).await;
            }));
        }
        self.recover(i, blob, false).await;
    }

    /// Asks for entry `i` once more without Referer or cookies. `known`: the
    /// digest is a listed placeholder, flagged whatever the answer.
    async fn recover(&self, i: usize, shown: BlobId, known: bool) {
        let Some(url) = Url::parse(&self.entries.lock().expect("no panics while held")[i].url).ok() else { return };
        let mut req = FetchRequest::new(url);
        req.accept = Accept::Image;
        let answer = self.fetcher.fetch(req).await.result.ok();
        let real = answer.and_then(|r| Some((media::classify_image(&r.body, r.content_type.as_deref()).ok()?, r)));
        match real {
            Some((info, r)) if BlobId::of(&r.body) != shown => match self.store(r.body.clone()).await {
                Ok(s) => {
                    self.progress.add_placeholder(true);
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
                        e.status = Some(r.status);
                        e.content_type = r.content_type.clone();
                        e.etag = r.validators.etag.clone();
                        e.last_modified = r.validators.last_modified.clone();
                        e.headers =
                            r.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("set-cookie")).cloned().collect();
                    });
                }
                Err(err) => self.fail_fatal(err),
            },
            // The same bytes without a Referer: no Referer dependence.
            Some(_) if !known => {}
            _ => {
                self.progress.add_placeholder(false);
                self.update(i, |e| e.placeholder = true);
            }
        }
    }
}
