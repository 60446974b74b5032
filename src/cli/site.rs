//! `kura site`: the sample site, served until interrupted.

use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

/// Serve the sample site on loopback until interrupted (for benchmarks and trying things out).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Articles on the sample site.
    #[arg(long, default_value_t = 36)]
    articles: usize,
    /// Delay added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Items in the feed (default: all).
    #[arg(long)]
    feed_items: Option<usize>,
    /// Write Hexo posts using the site's images into this directory.
    #[arg(long)]
    posts_dir: Option<PathBuf>,
}

/// Prints the site's URLs, then serves until Ctrl-C; exit 0.
pub fn run(args: Args, out: &mut impl Write) -> Result<u8> {
    super::runtime()?.block_on(async {
        let config = kura_site::SiteConfig {
            articles: args.articles,
            latency_ms: args.latency_ms,
            feed_items: args.feed_items,
            ..Default::default()
        };
        let handle = kura_site::serve(config).await?;
        let s = handle.site();
        if let Some(dir) = &args.posts_dir {
            kura_site::write_local_posts(dir, &s, args.articles.min(50))?;
        }
        writeln!(
            out,
            "site {}\ncdn {}\nwx {}\nassets {}\nfeed {}\nsitemap {}",
            s.site, s.cdn, s.wx_cdn, s.assets, s.feed, s.sitemap
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
        handle.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(0)
}
