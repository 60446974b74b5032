//! The `kura` command line: parses, resolves nothing itself, and hands each
//! command to its file in `src/cli/`.
//!
//! Exit codes: 0 success; 1 problems found (verify, restore, export
//! errors); 2 usage, configuration or could-not-run errors; 3 snapshot
//! committed but nothing could be archived.

mod cli;

// glibc's malloc under a run's many small allocations, made on one tokio
// thread and freed on another, spent a third of a run's CPU on arena locks
// and consolidation (perf on benches/scale.sh, 10,000 pages: 36 s, against
// 21 s with jemalloc). Two arenas and returning dirty pages after half a
// second keep the peak where glibc's was (137 against 147 MB); jemalloc's
// defaults held 230 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (a C string; the symbol is the
/// prefixed name tikv-jemallocator builds jemalloc with).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 69] = b"narenas:2,background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0\0";

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "Archive web articles and every image they reference: deduplicated, compressed, verifiable."
)]
#[command(
    after_help = "Exit codes: 0 success; 1 problems found (verify, restore); 2 usage or could-not-run error; 3 snapshot committed but nothing could be archived.\nLogging: RUST_LOG (e.g. RUST_LOG=kura=debug)."
)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Archive(cli::archive::Args),
    #[cfg(feature = "demo")]
    Demo(cli::demo::Args),
    #[cfg(feature = "demo")]
    Site(cli::site::Args),
    Snapshots(cli::snapshots::Args),
    Ls(cli::ls::Args),
    Cat(cli::cat::Args),
    Verify(cli::verify::Args),
    Restore(cli::restore::Args),
    Stats(cli::stats::Args),
    Export(cli::export::Args),
    Diff(cli::diff::Args),
    Prune(cli::prune::Args),
    Repair(cli::repair::Args),
    /// Remove stale locks of an archive in object storage
    Unlock(cli::unlock::Args),
    /// Copy snapshots and their data to another archive (local or s3://)
    Copy(cli::copy::Args),
    Forget(cli::forget::Args),
    Run(cli::run::Args),
    Daemon(cli::daemon::Args),
    Jobs(cli::jobs::Args),
    #[cfg(feature = "serve")]
    Serve(cli::serve::Args),
    Config(cli::config::Args),
}

/// glibc gives every thread that allocates its own arena and keeps freed
/// bodies in it; with many threads handling megabyte bodies that tripled
/// peak RSS (1,000-article site: 234 MB with default arenas, 132 MB with 2).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,kura=info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let Cli { global: g, command } = Cli::parse();
    // Output goes through writeln! so a closed pipe (`kura ls | head`) is an
    // error treated as success, not a panic.
    let out = &mut std::io::stdout().lock();
    let result = match command {
        Command::Archive(a) => cli::archive::run(a, &g, out),
        #[cfg(feature = "demo")]
        Command::Demo(a) => cli::demo::run(a, &g, out),
        #[cfg(feature = "demo")]
        Command::Site(a) => cli::site::run(a, out),
        Command::Snapshots(a) => cli::snapshots::run(a, &g, out),
        Command::Ls(a) => cli::ls::run(a, &g, out),
        Command::Cat(a) => cli::cat::run(a, &g, out),
        Command::Verify(a) => cli::verify::run(a, &g, out),
        Command::Restore(a) => cli::restore::run(a, &g, out),
        Command::Stats(a) => cli::stats::run(a, &g, out),
        Command::Export(a) => cli::export::run(a, &g, out),
        Command::Diff(a) => cli::diff::run(a, &g, out),
        Command::Prune(a) => cli::prune::run(a, &g, out),
        Command::Repair(a) => cli::repair::run(a, &g),
        Command::Unlock(a) => cli::unlock::run(a, &g, out),
        Command::Copy(a) => cli::copy::run(a, &g, out),
        Command::Forget(a) => cli::forget::run(a, &g, out),
        Command::Run(a) => cli::run::run(a, &g, out),
        Command::Daemon(a) => cli::daemon::run(a, &g),
        Command::Jobs(a) => cli::jobs::run(a, &g, out),
        #[cfg(feature = "serve")]
        Command::Serve(a) => cli::serve::run(a, &g, out),
        Command::Config(a) => cli::config::run(a, &g, out),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("kura: error: {}", kura::error::line(err.as_ref()));
            ExitCode::from(2)
        }
    }
}
