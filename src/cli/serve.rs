//! `kura serve`: browse and search the archive in a browser.

use super::Global;
use anyhow::Result;
use std::io::Write;
use std::net::SocketAddr;

/// Serve a read-only web app over the archive: snapshots, articles as they
/// were archived, and full-text search.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (loopback unless you choose otherwise)
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Rebuild the search index from the archive first, and the snapshots'
    /// view files as they are opened
    #[arg(long)]
    reindex: bool,
}

/// Exit 0 after SIGINT or SIGTERM.
pub fn run(args: Args, g: &Global, out: &mut impl Write) -> Result<u8> {
    let ctx = g.context()?;
    let archive = ctx.open()?;
    let cache_dir = super::cache_dir(&ctx, &archive)?;
    let opts = kura::serve::ServeOptions { bind: args.bind, cache_dir, reindex: args.reindex, config: ctx.config };
    super::runtime()?.block_on(async {
        eprintln!("indexing snapshots for search...");
        let server = kura::serve::Server::start(archive, opts).await?;
        writeln!(out, "serving {} on http://{}/ (Ctrl-C stops)", ctx.root.display(), server.addr())?;
        out.flush()?;
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
        };
        server.run(stop).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
