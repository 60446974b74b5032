//! `index.html` of the offline layout: one row per article of the snapshot
//! (title linking the local copy, date, source URL, images archived and
//! failed, and each failure with its reason). Plain HTML, no scripts, no
//! external resources.

use std::fmt::Write as _;

use super::RestoreOptions;
use super::offline::{Listed, href};
use crate::store::manifest::ManifestHeader;

pub(super) use quick_xml::escape::escape as esc;

/// The page.
pub(super) fn render(header: &ManifestHeader, listed: &[Listed], opts: &RestoreOptions) -> String {
    let mut h = String::with_capacity(4096 + listed.len() * 512);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Kura snapshot {started}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}}.failed{{color:#a00}}\
         ul{{margin:0;padding-left:1.2em}}code{{word-break:break-all}}</style>\n</head>\n<body>\n\
         <h1>Snapshot of {started}</h1>\n<p>Job <code>{job}</code>, {n} article(s){filter}. Sources: {sources}.</p>\n\
         <table>\n<tr><th>Article</th><th>Date</th><th>Source</th><th>Images</th><th>Failures</th></tr>\n",
        started = esc(header.started.format("%Y-%m-%d %H:%M UTC").to_string()),
        job = esc(&header.job),
        n = listed.len(),
        filter = if opts.article.is_some() || !opts.include.is_empty() { " (filtered)" } else { "" },
        sources = esc(header.sources.join(", ")),
    );
    for item in listed {
        let e = &item.entry;
        let title = match &item.local {
            Some(rel) => format!("<a href=\"{}\">{}</a>", esc(href(rel)), esc(&item.title)),
            None => format!("{} <span class=\"failed\">(not restored)</span>", esc(&item.title)),
        };
        let source = e.final_url.as_deref().unwrap_or(&e.url);
        let _ = write!(
            h,
            "<tr><td>{title}{error}</td><td>{date}</td><td><a href=\"{src}\">{src}</a></td>\
             <td>{ok} archived, {bad} failed</td><td>",
            error =
                item.error.as_deref().map(|m| format!("<div class=\"failed\">{}</div>", esc(m))).unwrap_or_default(),
            date = esc(item.date.as_deref().unwrap_or("")),
            src = esc(source),
            ok = item.archived,
            bad = item.failed.len(),
        );
        if !item.failed.is_empty() {
            h.push_str("<ul>");
            for f in &item.failed {
                let _ = write!(
                    h,
                    "<li class=\"failed\"><code>{}</code>: {}</li>",
                    esc(&f.url),
                    esc(f.error.as_deref().unwrap_or("no content"))
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n</body>\n</html>\n");
    h
}
