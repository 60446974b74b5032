//! `kura serve`: a read-only web app over an archive, for reading and
//! searching what was archived.
//!
//! Archived pages are hostile input. A document is served only inside a
//! sandboxed frame, with a Content-Security-Policy that sandboxes it again
//! (no scripts, event handlers, forms, popups or navigation of the top
//! window) and allows loads from the app alone; its references are
//! rewritten by [`crate::restore::Viewer`] (the offline restore's mapping)
//! to the app's own copies, and a meta refresh is removed. The app fetches
//! nothing and writes nothing into the archive: its search index and caches
//! live in the cache directory.
//!
//! Parts: `library` (snapshots opened for viewing, through
//! `restore::ViewFiles` in the cache directory, and their blobs), `search` (the tantivy index: a rebuildable cache), `app` (routes and
//! handlers), `text_diff` (two versions of an article's text, compared),
//! `page` (the app's own HTML, every value escaped).

mod app;
mod library;
mod page;
mod search;
mod text_diff;

pub use search::{Filters, Hit, SearchError, SearchIndex, text_of};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::jobs::Config;
use crate::store::archive::Archive;

/// How often the app looks for snapshots committed since it started.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (loopback unless the user says otherwise).
    pub bind: SocketAddr,
    /// Where the search index and view files live (caches: removable at
    /// any time).
    pub cache_dir: PathBuf,
    /// Rebuild the search index from scratch, and the snapshots' view files
    /// as they are next opened.
    pub reindex: bool,
    /// The configuration, for the jobs' last and next runs.
    pub config: Option<Config>,
}

/// Errors of starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The search index could not be opened or built.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (choose another with --bind)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A cache could not be cleared for `--reindex`.
    #[error("cannot remove {path} (remove it by hand; it is a cache): {source}")]
    Cache {
        /// The cache.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// A server whose index covers every snapshot present when it started,
/// bound and ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    state: Arc<app::State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.listener.local_addr().ok()).finish()
    }
}

impl Server {
    /// Indexes the archive's snapshots (on the blocking pool), then binds.
    pub async fn start(archive: Archive, opts: ServeOptions) -> Result<Server, ServeError> {
        let dir = opts.cache_dir.join("search");
        let views = opts.cache_dir.join("views");
        if opts.reindex && views.exists() {
            std::fs::remove_dir_all(&views).map_err(|source| ServeError::Cache { path: views.clone(), source })?;
        }
        let (archive2, reindex) = (archive.clone(), opts.reindex);
        let index = tokio::task::spawn_blocking(move || {
            let index = SearchIndex::open(&dir, reindex)?;
            index.sync(&archive2)?;
            Ok::<_, SearchError>(index)
        })
        .await
        .expect("indexing does not panic")?;
        let listener = tokio::net::TcpListener::bind(opts.bind)
            .await
            .map_err(|source| ServeError::Bind { addr: opts.bind, source })?;
        let state = Arc::new(app::State::new(archive, opts.cache_dir.join("views"), index, opts.config));
        Ok(Server { listener, router: app::router(state.clone()), state })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, indexing snapshots committed
    /// meanwhile (and dropping forgotten ones) every two seconds.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = self.state.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let s = state.clone();
                let done = tokio::task::spawn_blocking(move || s.index.sync(&s.library.archive)).await;
                if let Ok(Err(e)) = done {
                    tracing::warn!("search index not updated: {e}");
                }
            }
        });
        let result = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await;
        watcher.abort();
        result
    }
}
