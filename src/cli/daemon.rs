//! `kura daemon`: every scheduled job on its schedule.

use super::Global;
use anyhow::Result;

/// Run every scheduled job on its schedule until SIGINT/SIGTERM.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Exit 0 after a signal.
pub fn run(_args: Args, g: &Global) -> Result<u8> {
    let (config, root) = g.context_with_config()?;
    super::runtime()?.block_on(async {
        // The daemon counts signals: after the first it finishes the run in
        // flight, after the second it returns at once.
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            loop {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                tx.send_modify(|n| *n += 1);
            }
        });
        kura::jobs::daemon(config, root, rx).await;
    });
    Ok(0)
}
