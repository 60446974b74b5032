//! The app's own HTML: small pages without scripts or outside assets.
//! Every value printed goes through [`esc`].

/// `s` escaped for HTML text and quoted attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query parameter value.
pub(super) fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:70em;padding:1em}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.2em .5em;text-align:left;\
vertical-align:top;overflow-wrap:anywhere}code{font-size:90%}.bad{color:#a00}.dim{color:#666}\
iframe{width:100%;height:75vh;border:1px solid #aaa}form{margin:1em 0}input[name=q]{width:30em;max-width:90%}\
nav a{margin-right:1em}.diff del{background:#fdd;color:#700}.diff ins{background:#dfd;color:#060;\
text-decoration:none}";

/// A whole page: `title` (escaped here) and `body` (already escaped HTML).
pub(super) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=referrer content=no-referrer>\
         <title>{} · Kura</title><style>{STYLE}</style></head><body><nav><a href=\"/\">Snapshots</a>\
         <a href=\"/search\">Search</a></nav>{body}</body></html>",
        esc(title)
    )
}

/// The search form, filled with the query and filters given.
pub(super) fn search_form(q: &str, f: &super::Filters) -> String {
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    format!(
        "<form action=\"/search\" method=get><input name=q value=\"{}\" placeholder=\"words or 中文\"> \
         job <input name=job size=8 value=\"{}\"> host <input name=host size=12 value=\"{}\"> \
         snapshot <input name=snapshot size=10 value=\"{}\"> <button>Search</button></form>",
        esc(q),
        v(&f.job),
        v(&f.host),
        v(&f.snapshot)
    )
}
