//! `kura repair`: rebuild derived parts of the archive.

use super::Global;
use anyhow::Result;

/// Repair parts of the archive.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Rebuild the sled index from the packs and manifests.
    Index,
}

/// Always exit 0 once repaired.
pub fn run(args: Args, g: &Global) -> Result<u8> {
    let What::Index = args.what;
    let archive = g.context()?.open()?;
    let r = kura::store::repair_index(&archive)?;
    eprintln!("index rebuilt: {} packs, {} snapshots", r.packs_added, r.snapshots_added);
    Ok(0)
}
