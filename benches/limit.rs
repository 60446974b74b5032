//! The "practical limit" of the end-to-end benchmark (`benches/e2e.sh`): SHA-256
//! (`kura::store::BlobId::of`) and zstd level 3 (`zstd::bulk::compress`) over every file
//! of a directory, in-process, on one thread. No deduplication, no I/O in the timed
//! part: each file is read first, then hashed and compressed under the clock, so the
//! figure is the CPU cost any archiver that hashes and compresses every byte must pay.
//!
//! Usage: `cargo bench --bench limit -- DIR`. Prints one line of JSON:
//! `{"files":..,"bytes":..,"compressed":..,"read_seconds":..,"seconds":..}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kura::store::BlobId;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).ok_or_else(|| anyhow::anyhow!("usage: limit DIR"))?;
    let mut files = Vec::new();
    files_under(Path::new(&dir), &mut files)?;
    files.sort();
    let (mut bytes, mut compressed) = (0u64, 0u64);
    let (mut read, mut work) = (Duration::ZERO, Duration::ZERO);
    // Keeps the optimiser from dropping the hashes.
    let mut fold = 0u8;
    for path in &files {
        let t = Instant::now();
        let data = std::fs::read(path)?;
        read += t.elapsed();
        let t = Instant::now();
        let id = BlobId::of(&data);
        let z = zstd::bulk::compress(&data, 3)?;
        work += t.elapsed();
        fold ^= id.as_bytes()[0];
        bytes += data.len() as u64;
        compressed += z.len() as u64;
    }
    println!(
        "{{\"files\":{},\"bytes\":{bytes},\"compressed\":{compressed},\"read_seconds\":{:.3},\"seconds\":{:.3},\"fold\":{fold}}}",
        files.len(),
        read.as_secs_f64(),
        work.as_secs_f64()
    );
    Ok(())
}
