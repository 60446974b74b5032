//! Local sources: files stored as they are, and Markdown/HTML posts (Hexo,
//! Jekyll, Hugo) whose images are fetched as the published post would load
//! them: with the post's public URL as referrer source when the front
//! matter or config gives one, else with no referrer at all.

use super::Ctx;
use crate::extract::RefKind;
use crate::referrer::Policy;
use crate::sources::post;
use crate::store::manifest::Kind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

fn is_post(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("md" | "markdown" | "html" | "htm")
    )
}

pub(super) async fn local_source(ctx: Arc<Ctx>, path: PathBuf) {
    let writer = ctx.writer.clone();
    let paths = vec![path];
    let stored = tokio::task::spawn_blocking(move || {
        let mut w = writer.lock().expect("no panics while held");
        crate::sources::files::archive_files(&mut w, &paths, 1, &|_| {})
    })
    .await
    .expect("file reading does not panic");
    let entries = match stored {
        Ok(e) => e,
        Err(err) => {
            ctx.fail_fatal(err);
            return;
        }
    };
    for entry in entries {
        let file = Url::parse(&entry.url).ok().and_then(|u| u.to_file_path().ok());
        let post_file = entry.error.is_none() && file.as_deref().is_some_and(is_post);
        if entry.error.is_some() {
            ctx.progress.add_failure();
        }
        let i = ctx.push(entry);
        if let (true, Some(file)) = (post_file, file) {
            local_post(&ctx, i, &file).await;
        }
        ctx.entries.finish(i);
    }
}

async fn local_post(ctx: &Arc<Ctx>, i: usize, file: &Path) {
    let parsed = {
        let (file, site) = (file.to_path_buf(), ctx.opts.site_url.clone());
        tokio::task::spawn_blocking(move || post::parse_post_file(&file, site.as_ref()))
            .await
            .expect("parsing does not panic")
    };
    let p = match parsed {
        Ok(p) => p,
        Err(err) => {
            // The file itself is stored; only its images are lost.
            ctx.fail(i, format!("post could not be parsed, images not fetched: {err}"), None);
            return;
        }
    };
    ctx.progress.add_article();
    let file_url = ctx.read(i, |e| e.url.clone());
    ctx.update(i, |e| {
        e.kind = Some(Kind::Article);
        e.title = p.title.clone();
        e.final_url = p.public_url.as_ref().map(|u| u.to_string());
    });
    let source = p.public_url.clone();
    let base = source.clone().or_else(|| Url::parse(&file_url).ok());
    for fi in &p.front_images {
        let resolved = match &base {
            Some(b) => b.join(fi.url.trim()),
            None => Url::parse(fi.url.trim()),
        };
        match resolved {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                ctx.queue_image(u.into(), source.clone(), Policy::DEFAULT, file_url.clone(), None).await
            }
            _ => tracing::debug!("front matter {} = {:?} is not a fetchable URL", fi.field, fi.url),
        }
    }
    if let Some(base) = base {
        let ex = ctx.extract_document(p.body_html, &base, None).await;
        if let Some(why) = ex.limit {
            ctx.fail(i, why, None);
        }
        for r in ex.refs.into_iter().filter(|r| r.kind == RefKind::Image) {
            ctx.queue_image(r.url.into(), source.clone(), r.policy, file_url.clone(), None).await;
        }
    }
}
