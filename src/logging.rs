//! Log setup: `tracing` to stderr and optionally a file, both through a background writer
//! thread so no shard ever blocks on a log write.
//!
//! Owns: the subscriber and its writer guards. `RUST_LOG` overrides the configured level.

use anyhow::Context;
use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Keeps the background writers alive; logs are flushed when it drops.
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

pub fn init(level: &str, file: Option<&Path>) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (stderr, stderr_guard) = tracing_appender::non_blocking(std::io::stderr());
    let mut guards = vec![stderr_guard];
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating log folder {}", dir.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            let (file_writer, file_guard) = tracing_appender::non_blocking(f);
            guards.push(file_guard);
            builder.with_writer(stderr.and(file_writer)).try_init()
        }
        None => builder.with_writer(stderr).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))?;
    Ok(LogGuard { _guards: guards })
}
